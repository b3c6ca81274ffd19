"""Read a data source into a polars frame: CSV, Parquet or JSON lines files (local paths or fsspec
URLs; one file, or a directory or glob of batch files), a SQL query's result, or an in-memory frame.

Malformed CSV records (wrong field count, broken quoting) do not stop the read: they are removed
from the data and returned as reader rejects (``_file``, ``_line``, ``_raw``, ``_reason``).
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable, Sequence
from typing import IO, Any

import polars as pl

from keelml.data.csvlines import Reject, scan_lines
from keelml.data.encoding import to_utf8
from keelml.data.files import file_digest, is_batch, list_batch, read_bytes
from keelml.data.sql import read_sql
from keelml.errors import DataError
from keelml.spec.data import CsvOptions, SourceSpec, format_of_name

__all__ = ["REJECT_SCHEMA", "file_digest", "frame_with_rejects", "read_files", "read_source",
           "read_source_with_rejects"]

REJECT_SCHEMA = pl.Schema({"_file": pl.String, "_line": pl.Int64, "_raw": pl.String, "_reason": pl.String})
MAX_RAW_CHARS = 65_536
Files = Sequence[tuple[str, str]]


def read_source(source: SourceSpec, location: str | Files) -> pl.DataFrame:
    """Read one source strictly: a malformed CSV record is a DataError (pipelines quarantine them)."""
    raw, rejects = read_source_with_rejects(source, location)
    if rejects.height:
        first = rejects.row(0, named=True)
        single = isinstance(location, str) and not is_batch(location)
        where = location if single else f"{_batch_name(location)}: {first['_file']}"
        raise DataError(
            f"{where}: {first['_reason']} ({rejects.height} malformed record(s) in total)",
            expected="every record to have as many fields as the header, with balanced quotes",
            fix="repair or remove that line, or check data.*.csv.delimiter / quote_char / skip_rows",
        )
    return raw


def read_source_with_rejects(source: SourceSpec, location: str | Files) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read one source; return its rows and the malformed CSV records removed from them (REJECT_SCHEMA).

    ``location`` is the resolved file, directory, glob or URL (for ``format: sql``, the database
    URL), or the (name, location) pairs of a batch. CSV cells stay strings; other sources keep types.
    """
    raw, rejects, _ = read_files(source, location)
    return raw, rejects


def read_files(source: SourceSpec, location: str | Files) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Like :func:`read_source_with_rejects`, plus a summary: rows and rejects in total and per file."""
    fmt = source.resolved_format()
    if fmt == "sql":
        if not isinstance(location, str):
            raise TypeError("a SQL source is read from its database URL")
        return frame_with_rejects(source, read_sql(source, location), "the query result")
    if fmt == "dataframe":
        raise DataError(
            "a format: dataframe source has no file to read",
            expected="the frame passed to keelml.pipeline.run(spec, frames={'train': df})",
            fix="pass the DataFrame with frames=, or give the source a path",
        )
    files = _files(source, location)
    frames: list[pl.DataFrame] = []
    rejects: list[dict[str, Any]] = []
    per_file: list[dict[str, Any]] = []
    for name, where in files:
        frame, found = _read_file(source, name, where)
        frames.append(frame)
        rejects.extend({"_file": name, "_line": r.line, "_raw": r.raw[:MAX_RAW_CHARS], "_reason": r.reason}
                       for r in found)
        per_file.append({"name": name, "rows": frame.height, "rejected": len(found)})
    raw = _concat(frames, files)
    where = files[0][1] if len(files) == 1 else f"{len(files)} files of {_batch_name(location)}"
    if raw.height == 0:
        raise DataError(
            f"{where} has no data rows",
            expected="at least one row of data",
            fix="check that the file is the right one and is not empty (or only a header / blank lines)",
        )
    summary = {"rows": raw.height, "rejected": len(rejects), "files": per_file}
    return _apply_replace(raw, source.replace, where), pl.DataFrame(rejects, schema=REJECT_SCHEMA), summary


def frame_with_rejects(source: SourceSpec, frame: pl.DataFrame, where: str) -> tuple[
        pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """An already-read frame (a SQL result or a DataFrame from the API) as a source: replace applied."""
    if frame.height == 0:
        raise DataError(
            f"{where} has no rows",
            expected="at least one row of data",
            fix="check the query (or the DataFrame passed to frames=)",
        )
    summary = {"rows": frame.height, "rejected": 0, "files": []}
    return _apply_replace(frame, source.replace, where), pl.DataFrame(schema=REJECT_SCHEMA), summary


def _files(source: SourceSpec, location: str | Files) -> list[tuple[str, str]]:
    if not isinstance(location, str):
        return list(location)
    if is_batch(location):
        return list_batch(location)
    return [(source.path or location, location)]


def _batch_name(location: str | Files) -> str:
    return location if isinstance(location, str) else "the batch"


def _read_file(source: SourceSpec, name: str, location: str) -> tuple[pl.DataFrame, list[Reject]]:
    fmt = source.format if source.format in ("csv", "parquet", "jsonl") else format_of_name(name)
    if fmt == "csv":
        return _read_csv(location, source.csv)
    reader: Callable[[IO[bytes]], pl.DataFrame] = pl.read_parquet if fmt == "parquet" else pl.read_ndjson
    return _read_typed(location, "Parquet" if fmt == "parquet" else "JSON lines", reader), []


def _concat(frames: list[pl.DataFrame], files: Sequence[tuple[str, str]]) -> pl.DataFrame:
    """Batch files stacked in order; every file must have the first file's columns, in its order."""
    first = frames[0]
    for frame, (name, _) in zip(frames[1:], files[1:], strict=True):
        if frame.columns != first.columns:
            raise DataError(
                f"batch file {name} has the columns {frame.columns}, but {files[0][0]} has {first.columns}",
                expected="every file of a batch to have the same columns in the same order",
                fix=f"fix or remove {name}, or narrow the glob in data.*.path",
            )
    if len(frames) == 1:
        return first
    try:
        return pl.concat(frames, how="vertical_relaxed")
    except pl.exceptions.PolarsError as exc:
        raise DataError(
            f"the batch files' column types do not agree: {_first_line(exc)}",
            expected="the same type for a column in every file",
            fix="rewrite the odd file with matching types",
        ) from None


def _read_typed(location: str, kind: str, reader: Callable[[IO[bytes]], pl.DataFrame]) -> pl.DataFrame:
    """Read a Parquet or JSONL file with ``reader``; parse failures become DataErrors."""
    data = read_bytes(location)
    if not data or data.isspace():
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


def _read_csv(location: str, opts: CsvOptions) -> tuple[pl.DataFrame, list[Reject]]:
    """Parse CSV with every column as a string, minus malformed records; then strip, null-convert and
    drop blank rows. Holds at most about two copies of the file at once (its bytes and one derived
    copy: the classified lines, the UTF-8 re-encoding or the text without rejects) besides the frame."""
    data = read_bytes(location)
    if not data or data.isspace():
        raise DataError(
            f"{location} is empty",
            expected="a delimited text file with at least one row",
            fix="check the path, or regenerate the file",
        )
    text = to_utf8(data, opts.encoding, location)
    del data
    scan = scan_lines(text, opts, location)
    text = scan.without_rejects(text)  # polars parses exactly the bytes that were scanned
    return parse_csv_text(text, opts, location), scan.rejects


def parse_csv_text(text: bytes, opts: CsvOptions, location: str, names: list[str] | None = None) -> pl.DataFrame:
    """Parse UTF-8 delimited text free of malformed records: every column a string, cells stripped and
    null-converted, blank rows dropped. With ``names`` (a later chunk of a file) the text has no header
    or skipped rows and its columns get those names."""
    try:
        header = opts.has_header
        if names is not None:  # a made-up header, so polars reads the chunk as it reads a whole file
            lead = "x" if opts.comment_prefix and opts.comment_prefix.startswith("k") else "k"
            text = opts.delimiter.join(f"{lead}{i}" for i in range(len(names))).encode() + b"\n" + text
            header = True
        frame = pl.scan_csv(text, has_header=header, separator=opts.delimiter, comment_prefix=opts.comment_prefix,
                            quote_char=opts.quote_char, skip_lines=opts.skip_rows if names is None else 0,
                            infer_schema=False, null_values=None, empty_string_is_null=False, encoding="utf8",
                            raise_if_empty=True, glob=False)
        found = frame.collect_schema().names()
        if names is None:
            frame = _name_columns(frame, found, opts, location)
        else:
            frame = frame.rename(dict(zip(found, names, strict=True)))
        cells = pl.col(pl.String)
        if opts.strip_whitespace:
            frame = frame.with_columns(cells.str.strip_chars())
        if opts.null_values:
            frame = frame.with_columns(pl.when(cells.is_in(opts.null_values)).then(None).otherwise(cells).name.keep())
        empty = (cells == "") if opts.strip_whitespace else (cells.str.strip_chars() == "")
        blank = pl.all_horizontal(cells.is_null() | empty)
        return frame.filter(~blank).collect()
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


def _name_columns(frame: pl.LazyFrame, columns: list[str], opts: CsvOptions, location: str) -> pl.LazyFrame:
    """Apply ``columns`` (names for a headerless file, or renames of the header) and strip names."""
    if opts.columns is None:
        if not opts.has_header:
            return frame
        names = [name.strip() for name in columns] if opts.strip_whitespace else columns
        return frame.rename(dict(zip(columns, names, strict=True)))
    if len(opts.columns) != len(columns):
        raise DataError(
            f"{location} has {len(columns)} columns but data.*.csv.columns lists {len(opts.columns)} names",
            expected=f"exactly {len(columns)} column names, one per field, in file order",
            fix="make csv.columns match the file's fields (or check the delimiter)",
        )
    if len(set(opts.columns)) != len(opts.columns):
        dupes = sorted({c for c in opts.columns if opts.columns.count(c) > 1})
        raise DataError(
            f"data.*.csv.columns repeats the name(s) {', '.join(dupes)}",
            expected="distinct column names",
            fix="give each column a unique name",
        )
    return frame.rename(dict(zip(columns, opts.columns, strict=True)))


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
