"""Read a data source (CSV, Parquet or JSON lines; local or any fsspec URL) into a polars frame."""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable
from typing import IO

import polars as pl

from keelml.data.files import file_digest, read_bytes
from keelml.errors import DataError
from keelml.spec import CsvOptions, SourceSpec

__all__ = ["file_digest", "read_source"]

def read_source(source: SourceSpec, location: str) -> pl.DataFrame:
    """Read one source from its resolved location; CSV cells stay strings, Parquet/JSONL stay typed."""
    fmt = source.resolved_format()
    if fmt == "csv":
        df = _read_csv(read_bytes(location), source.csv, location)
    elif fmt == "parquet":
        df = _read_typed(location, "Parquet", lambda f: pl.read_parquet(f))
    else:
        df = _read_typed(location, "JSON lines", lambda f: pl.read_ndjson(f))
    if df.height == 0:
        raise DataError(
            f"{location} has no data rows",
            expected="at least one row of data",
            fix="check that the file is the right one and is not empty (or only a header / blank lines)",
        )
    return _apply_replace(df, source.replace, location)


def _read_typed(location: str, kind: str, reader: Callable[[IO[bytes]], pl.DataFrame]) -> pl.DataFrame:
    """Read a Parquet or JSONL file with ``reader``; parse failures become DataErrors."""
    data = read_bytes(location)
    if not data.strip():
        raise DataError(
            f"{location} is empty",
            expected=f"a {kind} file with at least one row",
            fix="check the path, or regenerate the file",
        )
    try:
        return reader(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise DataError(
            f"{location} could not be read as {kind}: {_first_line(exc)}",
            expected=f"a valid {kind} file",
            fix="check data.*.format (auto picks it from the file extension) and that the file is intact",
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_csv(data: bytes, opts: CsvOptions, location: str) -> pl.DataFrame:
    """Parse CSV bytes with every column as a string, then strip, null-convert and drop blank rows."""
    if not data.strip():
        raise DataError(
            f"{location} is empty",
            expected="a delimited text file with at least one row",
            fix="check the path, or regenerate the file",
        )
    text = _decode(data, opts, location)
    _check_field_counts(text, opts, location)
    try:
        df = pl.read_csv(
            data,
            has_header=opts.has_header,
            separator=opts.delimiter,
            comment_prefix=opts.comment_prefix,
            quote_char=opts.quote_char,
            skip_rows=opts.skip_rows,
            infer_schema=False,
            null_values=None,
            empty_string_is_null=False,
            encoding=opts.encoding,
            raise_if_empty=True,
        )
    except pl.exceptions.NoDataError:
        raise DataError(
            f"{location} has no data after skipping {opts.skip_rows} row(s) and comments",
            expected="rows of delimited values",
            fix="lower data.*.csv.skip_rows or check data.*.csv.comment_prefix",
        ) from None
    except pl.exceptions.PolarsError as exc:
        raise DataError(
            f"{location} could not be parsed as delimited text: {_first_line(exc)}",
            expected=f"every row to have the same number of fields, separated by {opts.delimiter!r}",
            fix="check data.*.csv (delimiter, quote_char, skip_rows, has_header) against the file",
        ) from None
    df = _name_columns(df, opts, location)
    cells = pl.col(pl.String)
    if opts.strip_whitespace:
        df = df.with_columns(cells.str.strip_chars())
    if opts.null_values:
        df = df.with_columns(pl.when(cells.is_in(opts.null_values)).then(None).otherwise(cells).name.keep())
    blank = pl.all_horizontal((cells.is_null()) | (cells.str.strip_chars() == ""))
    return df.filter(~blank)


def _decode(data: bytes, opts: CsvOptions, location: str) -> str:
    """The file as text; invalid UTF-8 is a DataError unless the encoding is utf8-lossy."""
    try:
        return data.decode("utf-8", errors="replace" if opts.encoding == "utf8-lossy" else "strict")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{location} is not valid UTF-8 (bad byte at offset {exc.start})",
            expected="a UTF-8 encoded text file",
            fix="convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`), "
            "or set data.*.csv.encoding: utf8-lossy to replace undecodable bytes",
        ) from None


def _check_field_counts(text: str, opts: CsvOptions, location: str) -> None:
    """Find rows whose field count differs from the header's (or the most common), which polars pads.

    Lines holding the quote character are left to the parser (they may contain quoted delimiters);
    the check is skipped entirely when a quoted field may span lines (an odd quote count on a line).
    """
    lines = pl.Series("line", text.split("\n"), dtype=pl.String).str.strip_suffix("\r")
    frame = pl.DataFrame({"line": lines}).with_row_index("lineno", offset=1).slice(opts.skip_rows)
    if opts.comment_prefix:
        frame = frame.filter(~pl.col("line").str.starts_with(opts.comment_prefix))
    frame = frame.filter(pl.col("line").str.strip_chars() != "")
    if frame.height == 0:
        return
    quote = opts.quote_char
    if quote:
        quotes = frame["line"].str.count_matches(quote, literal=True)
        if (quotes % 2 == 1).any():
            return
    frame = frame.with_columns(fields=pl.col("line").str.count_matches(opts.delimiter, literal=True) + 1)
    counts = frame["fields"]
    expected = int(counts[0] if opts.has_header else counts.mode().sort()[0])
    if quote:
        frame = frame.filter(~pl.col("line").str.contains(quote, literal=True))
    bad = frame.filter(pl.col("fields") != expected)
    if bad.height:
        lineno, fields = int(bad["lineno"][0]), int(bad["fields"][0])
        raise DataError(
            f"{location}: line {lineno} has {fields} field(s) but the file has {expected} columns "
            f"({bad.height} such line(s) in total)",
            expected=f"every row to have {expected} fields separated by {opts.delimiter!r}",
            fix="repair or remove that line, or check data.*.csv.delimiter / quote_char / skip_rows",
        )


def _name_columns(df: pl.DataFrame, opts: CsvOptions, location: str) -> pl.DataFrame:
    """Apply ``columns`` (names for a headerless file, or renames of the header) and strip names."""
    if opts.columns is None:
        if not opts.has_header:
            return df
        names = [name.strip() for name in df.columns] if opts.strip_whitespace else df.columns
        return df.rename(dict(zip(df.columns, names, strict=True)))
    if len(opts.columns) != df.width:
        raise DataError(
            f"{location} has {df.width} columns but data.*.csv.columns lists {len(opts.columns)} names",
            expected=f"exactly {df.width} column names, one per field, in file order",
            fix="make csv.columns match the file's fields (or check the delimiter)",
        )
    if len(set(opts.columns)) != len(opts.columns):
        dupes = sorted({c for c in opts.columns if opts.columns.count(c) > 1})
        raise DataError(
            f"data.*.csv.columns repeats the name(s) {', '.join(dupes)}",
            expected="distinct column names",
            fix="give each column a unique name",
        )
    return df.rename(dict(zip(df.columns, opts.columns, strict=True)))


def _apply_replace(df: pl.DataFrame, replace: dict[str, dict[str, str]], location: str) -> pl.DataFrame:
    """Rewrite values per column; non-string columns are mapped as text and cast back when possible."""
    for column, mapping in replace.items():
        if column not in df.columns:
            close = difflib.get_close_matches(column, df.columns, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(
                f"replace names the column {column!r}, which is not in {location}",
                expected="one of: " + ", ".join(df.columns),
                fix=f"{hint}fix the column name under data.*.replace",
            )
        dtype = df.schema[column]
        if dtype == pl.String:
            df = df.with_columns(pl.col(column).replace(mapping))
            continue
        text = df[column].cast(pl.String).replace(mapping)
        back = text.cast(dtype, strict=False)
        df = df.with_columns(back if back.null_count() == text.null_count() else text)
    return df
