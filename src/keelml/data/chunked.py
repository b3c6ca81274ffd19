"""Read a data source in chunks of rows, so a file larger than memory can be validated and profiled.

CSV is cut at line ends into blocks of ``chunk_rows`` physical lines; each block goes through the
same steps as the whole-file reader (decoding, the malformed-record scan with file line numbers,
the same parse, strip, null and blank-row rules), so the rows and rejects of all chunks together are
those of :func:`keelml.data.sources.read_files`. A quoted field that spans lines past the end of a
block is carried into the next block. Parquet is read by record batches; JSON lines is read whole
and then sliced (it has no streaming reader here).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from keelml.data.budget import DEFAULT_CHUNK_ROWS
from keelml.data.csvlines import MAX_RECORD_BYTES, check_mostly_parsed, scan_lines
from keelml.data.encoding import to_utf8
from keelml.data.files import open_binary
from keelml.data.sources import (
    MAX_RAW_CHARS,
    REJECT_SCHEMA,
    Files,
    _apply_replace,
    _batch_name,
    _files,
    _read_typed,
    parse_csv_text,
)
from keelml.errors import DataError
from keelml.spec.data import CsvOptions, SourceSpec, format_of_name

BLOCK_BYTES = 1 << 22


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of a source (``offset`` rows come before them) and the records rejected among them."""

    frame: pl.DataFrame
    rejects: pl.DataFrame
    offset: int


def iter_chunks(source: SourceSpec, location: str | Files, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
    """The rows of a CSV, Parquet or JSON lines source (a file, directory, glob or batch), chunk by chunk.

    Empty chunks are skipped. A source with no rows at all, batch files whose columns disagree, or a
    CSV file whose records are mostly malformed raise the same DataErrors as the whole-file reader
    (the last two only once the offending file has been read).
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    fmt = source.resolved_format()
    if fmt in ("sql", "dataframe"):
        raise DataError(f"a format: {fmt} source cannot be read in chunks",
                        expected="a CSV, Parquet or JSON lines file",
                        fix="read it whole (leave out --chunk-rows)")
    files = _files(source, location)
    where = files[0][1] if len(files) == 1 else f"{len(files)} files of {_batch_name(location)}"
    columns: list[str] | None = None
    offset = 0
    for name, path in files:
        kind = source.format if source.format in ("csv", "parquet", "jsonl") else format_of_name(name)
        frames = _csv_chunks(path, name, source.csv, chunk_rows) if kind == "csv" else _typed_chunks(
            path, kind, chunk_rows)
        for frame, rejects in frames:
            if columns is None:
                columns = frame.columns
            elif frame.columns != columns:
                raise DataError(
                    f"batch file {name} has the columns {frame.columns}, but {files[0][0]} has {columns}",
                    expected="every file of a batch to have the same columns in the same order",
                    fix=f"fix or remove {name}, or narrow the glob in data.*.path",
                )
            if frame.height == 0 and rejects.height == 0:
                continue
            yield Chunk(_apply_replace(frame, source.replace, where), rejects, offset)
            offset += frame.height
    if offset == 0:
        raise DataError(
            f"{where} has no data rows",
            expected="at least one row of data",
            fix="check that the file is the right one and is not empty (or only a header / blank lines)",
        )


def _typed_chunks(location: str, kind: str, chunk_rows: int) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    empty = pl.DataFrame(schema=REJECT_SCHEMA)
    if kind == "jsonl":
        frame = _read_typed(location, "JSON lines", pl.read_ndjson)
        for part in frame.iter_slices(chunk_rows):
            yield part, empty
        return

    with open_binary(location) as handle:
        try:
            reader = pq.ParquetFile(handle)
            batches = reader.iter_batches(batch_size=chunk_rows)
            schema = reader.schema_arrow
            yielded = False
            for batch in batches:
                yielded = True
                yield _from_arrow(pa.Table.from_batches([batch], schema=schema)), empty
            if not yielded:
                yield _from_arrow(schema.empty_table()), empty
        except (pa.ArrowInvalid, OSError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"{location} could not be read as Parquet: {text}",
                expected="a valid Parquet file",
                fix="check data.*.format (auto picks it from the file extension) and that the file is intact",
            ) from None


def _from_arrow(table: object) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _csv_chunks(location: str, name: str, opts: CsvOptions,
                chunk_rows: int) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(rows, rejects) per block of lines of one CSV file."""
    _check_streamable(opts, location)
    later = opts.model_copy(update={"has_header": False, "skip_rows": 0, "columns": None})
    names: list[str] | None = None
    width: int | None = None
    lines_before = rejected = kept = 0
    pending, want, block = b"", max(chunk_rows, opts.skip_rows + 2), 1 << 16
    with open_binary(location) as handle:
        while True:
            raw, rest, eof = _next_block(handle, pending, want, block)
            if names is None and not raw.strip():
                if eof:
                    raise DataError(f"{location} is empty", expected="a delimited text file with at least one row",
                                    fix="check the path, or regenerate the file")
                pending, want = raw + rest, want * 2
                continue
            text = to_utf8(raw, opts.encoding, location)
            scan = scan_lines(text, opts if names is None else later, location, width=width,
                              line_offset=lines_before, check=False)
            cut = _carry_from(raw, scan.dangling, eof) if names is not None or scan.expected is not None else 0
            if cut is not None and not eof:
                if cut == 0:  # the whole block belongs to a later record (or holds no header yet): read more
                    pending, want = raw + rest, want * 2
                    continue
                raw, rest = raw[:cut], raw[cut:] + rest
                text = to_utf8(raw, opts.encoding, location)
                scan = scan_lines(text, opts if names is None else later, location, width=width,
                                  line_offset=lines_before, check=False)
            rejected += len(scan.rejects)
            kept += scan.kept
            rejects = pl.DataFrame(
                [{"_file": name, "_line": r.line, "_raw": r.raw[:MAX_RAW_CHARS], "_reason": r.reason}
                 for r in scan.rejects], schema=REJECT_SCHEMA)
            body = scan.without_rejects(text)
            if names is None:
                frame = parse_csv_text(body, opts, location)
                names, width = frame.columns, scan.expected
            elif scan.kept:
                frame = parse_csv_text(body, later, location, names)
            else:
                frame = pl.DataFrame(schema=dict.fromkeys(names, pl.String))
            yield frame, rejects
            lines = raw.count(b"\n")
            lines_before += lines
            block = min(max(len(raw) // max(lines, 1) * chunk_rows // 4, 1 << 16), BLOCK_BYTES)
            if eof and not rest:
                break
            pending, want = rest, chunk_rows
    check_mostly_parsed(rejected, kept, width, opts, location)


def line_blocks(location: str, lines: int) -> Iterator[bytes]:
    """The bytes of a file in blocks of ``lines`` whole lines (the last block may end without a newline)."""
    with open_binary(location) as handle:
        pending, eof = b"", False
        while not eof:
            block, pending, eof = _next_block(handle, pending, lines)
            if block:
                yield block


def _carry_from(raw: bytes, dangling: int | None, eof: bool) -> int | None:
    """Where to cut a block so that an unclosed quoted record starting at line ``dangling`` moves on."""
    if eof or dangling is None:
        return None
    start = _after_newlines(raw, dangling)
    return start if len(raw) - start <= MAX_RECORD_BYTES else None


def _next_block(handle: IO[bytes], pending: bytes, lines: int, block: int = BLOCK_BYTES) -> tuple[bytes, bytes, bool]:
    """``pending`` plus more of the file (read ``block`` bytes at a time), cut after ``lines`` line ends;
    the rest; whether the file ended."""
    parts, count, eof = [pending], pending.count(b"\n"), False
    while count < lines:
        more = handle.read(block)
        if not more:
            eof = True
            break
        parts.append(more)
        count += more.count(b"\n")
    data = b"".join(parts)
    if eof:
        return data, b"", True
    cut = _after_newlines(data, lines)
    return data[:cut], data[cut:], False


def _after_newlines(data: bytes, lines: int) -> int:
    """The offset just after the ``lines``-th line end of ``data`` (0 for none)."""
    if lines <= 0:
        return 0
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    return int(ends[lines - 1]) + 1 if len(ends) >= lines else len(data)


def _check_streamable(opts: CsvOptions, location: str) -> None:
    if opts.encoding in ("utf8", "utf8-lossy"):
        return
    name = codecs.lookup(opts.encoding).name
    if not name.startswith("utf-8") and "\n".encode(name) != b"\n":
        raise DataError(
            f"{location} is encoded as {name}, which cannot be read in chunks",
            expected="an encoding where a line ends with the byte 0x0A (utf8, latin-1, cp1252 ...)",
            fix="convert the file to UTF-8 (e.g. `iconv -f utf-16 -t utf-8`), or read it whole (--chunk-rows 0)",
        )
