"""Find the malformed records of delimited text before polars parses it, by physical line.

A record is malformed when its field count differs from the header's (or, without a header, from
the most common count), or when its quoting is broken: a quote inside an unquoted field, text after
a closing quote, or a quote opened and never closed (such as a truncated last line). Lines are
classified with vectorized polars string operations over an Arrow view of the bytes (one copy of
the text); only lines with an odd number of quote characters, which may start a quoted field that
spans lines, are paired up in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from keelml.errors import DataError
from keelml.spec.data import CsvOptions

NEWLINE_CHUNK = 1 << 24
MAX_RECORD_BYTES = 1 << 20  # a quoted field may span lines, but not more than this many bytes


@dataclass(frozen=True)
class Reject:
    """A malformed record: its first physical line (1-based), its text and why it was rejected."""

    line: int
    raw: str
    reason: str


@dataclass(frozen=True)
class LineScan:
    """What the scan found: the rejected records, how many records were kept, and the header's width."""

    rejects: list[Reject]
    kept: int
    expected: int | None
    spans: list[tuple[int, int]]
    dangling: int | None = None
    """Index of a last quote-opening line left unpaired (its record may go on past ``data``)."""

    def without_rejects(self, data: bytes) -> bytes:
        """``data`` with every rejected record's lines removed (one copy; ``data`` itself if none)."""
        if not self.spans:
            return data
        view = memoryview(data)
        pieces, start = [], 0
        for begin, end in self.spans:
            pieces.append(view[start:begin])
            start = end
        pieces.append(view[start:])
        return b"".join(pieces)


def scan_lines(data: bytes, opts: CsvOptions, location: str, *, width: int | None = None,
               line_offset: int = 0, check: bool = True) -> LineScan:
    """Classify every physical line of UTF-8 ``data`` and find the malformed records.

    A header with broken quoting, or a file whose records are mostly malformed (read with the wrong
    delimiter, format or header), is a DataError rather than a quarantine. For a later chunk of a
    file, ``width`` is the field count found before, ``line_offset`` the physical lines before the
    chunk (for line numbers), and ``check=False`` leaves the "mostly malformed" test to the caller.
    """
    bounds = _line_bounds(data)
    n = len(bounds) - 1
    stats = _line_stats(data, bounds, opts)
    candidate = ~(stats["blank"] | stats["comment"])
    candidate[: min(opts.skip_rows, n)] = False
    index = np.flatnonzero(candidate)
    fields, wellformed, odd = stats["fields"], stats["wellformed"], stats["odd"]
    patterns = _Patterns(opts)

    def text(first: int, last: int) -> str:
        return data[bounds[first]:bounds[last + 1]].decode("utf-8", errors="replace")

    expected: int | None = width
    start = 0
    if opts.has_header and len(index) and width is None:
        header = int(index[0])
        start = 1
        if odd[header]:
            partner = _next_odd(index, odd, 1)
            ok, width = (False, 0) if partner is None else patterns.check(text(header, partner))
            if not ok or partner is None:
                raise _broken_header(location, header, opts)
            start = int(np.searchsorted(index, partner)) + 1
            expected = width
        elif not wellformed[header]:
            raise _broken_header(location, header, opts)
        else:
            expected = int(fields[header])
    body = index[start:]
    if expected is None:
        single = body[~odd[body] & wellformed[body]]
        if len(single):
            values, counts = np.unique(fields[single], return_counts=True)
            expected = int(values[np.argmax(counts)])

    rejects: list[tuple[int, int, str]] = []  # (first line index, last line index, reason)
    consumed = np.zeros(n, dtype=bool)
    kept = 0
    dangling: int | None = None
    odd_body = body[odd[body]]
    i = 0
    while i < len(odd_body):
        first = int(odd_body[i])
        if i + 1 < len(odd_body) and bounds[int(odd_body[i + 1]) + 1] - bounds[first] <= MAX_RECORD_BYTES:
            last = int(odd_body[i + 1])
            ok, width = patterns.check(text(first, last))
            if ok and (expected is None or width == expected):
                consumed[first:last + 1] = True
                kept += 1
                i += 2
                continue
        if i + 1 == len(odd_body):
            dangling = first
        rejects.append((first, first, f"line {first + 1 + line_offset} has broken quoting "
                        "(a quote is opened but not closed)"))
        consumed[first] = True
        i += 1
    alone = body[~consumed[body]]
    broken = alone[~wellformed[alone]]
    counted = alone[wellformed[alone]]
    wrong = counted[fields[counted] != expected] if expected is not None else counted[:0]
    kept += len(counted) - len(wrong)
    if check:
        check_mostly_parsed(len(rejects) + len(broken) + len(wrong), kept, expected, opts, location)
    rejects.extend((int(line), int(line), f"line {line + 1 + line_offset} has broken quoting "
                    "(a quote inside an unquoted field, or text after a closing quote)") for line in broken)
    rejects.extend((int(line), int(line), f"line {line + 1 + line_offset} has {_fields(int(fields[line]))}, "
                    f"expected {expected}") for line in wrong)
    rejects.sort()
    found = [Reject(first + 1 + line_offset, text(first, last).rstrip("\r\n"), reason)
             for first, last, reason in rejects]
    spans = [(int(bounds[first]), int(bounds[last + 1])) for first, last, _ in rejects]
    return LineScan(found, kept, expected, spans, dangling)


def check_mostly_parsed(rejected: int, kept: int, expected: int | None, opts: CsvOptions, location: str) -> None:
    """A file whose records are mostly malformed is read with the wrong options: stop, don't quarantine it."""
    if rejected == 0 or rejected <= kept:
        return
    shape = f"{expected} fields" if expected is not None else "fields"
    raise DataError(
        f"{location}: {rejected} of {rejected + kept} records are malformed (not {shape} "
        f"separated by {opts.delimiter!r}" + (" like the header)" if opts.has_header else ")"),
        expected="a file whose records mostly parse with the data.*.csv options; a few malformed records "
        "are quarantined, not most of a file",
        fix="check data.*.csv (delimiter, quote_char, has_header, skip_rows, encoding) and data.*.format "
        "against the file",
    )


def _line_bounds(data: bytes) -> np.ndarray:
    """Byte offsets where each physical line starts, plus the end of the data (length lines + 1)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    parts = [np.zeros(1, dtype=np.int64)]
    for start in range(0, len(raw), NEWLINE_CHUNK):
        parts.append(np.flatnonzero(raw[start:start + NEWLINE_CHUNK] == 10).astype(np.int64) + start + 1)
    bounds = np.concatenate(parts)
    if bounds[-1] != len(data):
        bounds = np.append(bounds, len(data))
    return bounds


def _line_stats(data: bytes, bounds: np.ndarray, opts: CsvOptions) -> dict[str, np.ndarray]:
    """Per physical line: blank, comment, odd quote count, well-formed quoting, field count.

    Lines are a polars column over an Arrow view of the bytes (one copy of the text); only lines
    holding a quote character are matched against the record regular expressions.
    """
    _single_byte(opts.delimiter, "delimiter")
    arrow = pa.LargeStringArray.from_buffers(len(bounds) - 1, pa.py_buffer(bounds), pa.py_buffer(data))
    line = pl.col("line")
    quote = opts.quote_char
    if quote:
        _single_byte(quote, "quote_char")
    frame = pl.DataFrame({"line": pl.from_arrow(arrow)}).with_columns(
        blank=line.str.contains(r"^[ \t\r\n]*$"),
        comment=line.str.starts_with(opts.comment_prefix) if opts.comment_prefix else pl.lit(False),
        quotes=line.str.count_matches(quote, literal=True).cast(pl.Int64) if quote else pl.lit(0, pl.Int64),
        fields=line.str.count_matches(opts.delimiter, literal=True).cast(pl.Int64) + 1,
    )
    del arrow
    stats = {name: frame[name].to_numpy().copy() for name in ("blank", "comment", "fields")}
    quotes = frame["quotes"].to_numpy()
    stats["odd"] = quotes % 2 == 1
    stats["wellformed"] = np.ones(len(quotes), dtype=bool)
    quoted = np.flatnonzero(quotes)
    if len(quoted):
        rust = _Patterns(opts, rust=True)
        checked = frame.select(line.gather(pl.Series(quoted))).select(
            wellformed=line.str.contains(rust.record),
            fields=line.str.count_matches(f"{rust.quoted}|{rust.delim}").cast(pl.Int64)
            - line.str.count_matches(rust.quoted).cast(pl.Int64) + 1,
        )
        stats["wellformed"][quoted] = checked["wellformed"].to_numpy()
        stats["fields"][quoted] = checked["fields"].to_numpy()
    return stats


def _single_byte(char: str, key: str) -> int:
    encoded = char.encode()
    if len(encoded) != 1:
        raise DataError(
            f"data.*.csv.{key} {char!r} is not a single-byte character",
            expected=f"an ASCII {key} such as ',' ';' '|' or a tab",
            fix=f"change data.*.csv.{key}",
        )
    return encoded[0]


class _Patterns:
    """Regular expressions for one record, in Rust (polars) or Python syntax."""

    def __init__(self, opts: CsvOptions, *, rust: bool = False) -> None:
        def esc(ch: str) -> str:
            return f"\\x{{{ord(ch):X}}}" if rust else f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF else re.escape(ch)

        self.delim = esc(opts.delimiter)
        quote = esc(opts.quote_char) if opts.quote_char else ""
        self.quoted = f"{quote}(?:[^{quote}]|{quote}{quote})*{quote}" if quote else "(?!)"
        field = f"(?:{self.quoted}|[^{quote}{self.delim}\\r\\n]*)"
        self.record = f"^{field}(?:{self.delim}{field})*\\r?\\n?$"

    def check(self, text: str) -> tuple[bool, int]:
        """Whether ``text`` (one record, possibly several lines) is well formed, and its field count."""
        if re.fullmatch(self.record, text) is None:
            return False, 0
        return True, len(re.findall(f"{self.quoted}|{self.delim}", text)) - len(re.findall(self.quoted, text)) + 1


def _next_odd(index: np.ndarray, odd: np.ndarray, start: int) -> int | None:
    later = index[start:][odd[index[start:]]]
    return int(later[0]) if len(later) else None


def _broken_header(location: str, line: int, opts: CsvOptions) -> DataError:
    return DataError(
        f"{location}: the header (line {line + 1}) has broken quoting",
        expected=f"a header of column names separated by {opts.delimiter!r}, quoted with {opts.quote_char!r}",
        fix="repair the header line, or check data.*.csv.quote_char / skip_rows / has_header",
    )


def _fields(count: int) -> str:
    return f"{count} field" if count == 1 else f"{count} fields"
