"""What the data commands share: reading DATA (a file, a URL or a spec's source), a contract, safe text.

The data layer (polars), the spec and pydantic load inside the functions, so `keel --help` stays fast.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from keelml.errors import DataError, SpecError
from keelml.store.atomic import atomic_write_bytes

if TYPE_CHECKING:
    import polars as pl

    from keelml.data.chunked import Chunk
    from keelml.data.contract import Contract
    from keelml.spec.data import SourceSpec
    from keelml.spec.pipeline import LoadedSpec


class Role(StrEnum):
    train = "train"
    test = "test"


DATA_ARGUMENT = typer.Argument(None, metavar="DATA", show_default=False,
                               help="A data file (CSV, Parquet, JSON lines) or URL; optional with --spec.")
DATA_SPEC_OPTION = typer.Option(None, "--spec", help="Read DATA with this pipeline spec's options "
                           "(data.train or data.test; without DATA, read that source's file).")
ROLE_OPTION = typer.Option(Role.train, "--role", help="Which source of --spec to take the options from.")
FORMAT_OPTION = typer.Option(None, "--format", help="auto, csv, parquet or jsonl (default: from the file name).")
DELIMITER_OPTION = typer.Option(None, "--delimiter", help="CSV field separator (one character; 'tab' or '\\t').")
NO_HEADER_OPTION = typer.Option(False, "--no-header", help="The CSV file has no header row.")
CHUNK_ROWS_OPTION = typer.Option(None, "--chunk-rows", min=0, show_default=False,
                                 help="Read DATA in chunks of this many lines, so a file larger than memory "
                                 "fits (0: read it whole; default: chunks of 200000 when the file is large for "
                                 "the memory available).")
NULL_VALUE_OPTION = typer.Option(None, "--null-value", help="A CSV cell text meaning missing; repeat the "
                                 "option for several (replaces the default list '', NA, N/A, NaN, null, NULL).")


@dataclass(frozen=True)
class DataOptions:
    """The reading options as given on the command line (None: not given)."""

    data: str | None
    spec: Path | None
    role: Role
    format: str | None
    delimiter: str | None
    no_header: bool
    null_values: list[str] | None


@dataclass(frozen=True)
class LoadedData:
    frame: pl.DataFrame
    location: str
    spec: LoadedSpec | None


def load_data(options: DataOptions) -> LoadedData:
    """Read DATA (or the spec's source) with the spec's and the command line's options."""
    from keelml.data.sources import read_source

    source, location, loaded = resolve_source(options)
    return LoadedData(read_source(source, location), location, loaded)


def resolve_source(options: DataOptions) -> tuple[SourceSpec, str, LoadedSpec | None]:
    """The source to read (the spec's, with the command line's options over it) and its location."""
    from pydantic import ValidationError

    from keelml.spec.data import SourceSpec
    from keelml.spec.pipeline import load_spec

    loaded = load_spec(options.spec) if options.spec is not None else None
    base: dict[str, Any] = {}
    if loaded is not None:
        source = loaded.spec.data.train if options.role is Role.train else loaded.spec.data.test
        if source is None:
            raise SpecError(f"{loaded.path.name} has no data.test source",
                            expected="a spec with data.test when --role test is given",
                            fix="use --role train, or add data.test to the spec")
        base = source.model_dump(mode="json")
    if options.data is None and loaded is None:
        raise DataError("no data given", expected="a data file path or URL, or --spec pipeline.yaml",
                        fix="pass the data file, e.g. `keel profile data.csv`")
    path = options.data if options.data is not None else str(base["path"])
    base["path"] = path
    if options.format is not None:
        base["format"] = options.format
    csv = dict(base.get("csv") or {})
    if options.delimiter is not None:
        csv["delimiter"] = {"tab": "\t", "\\t": "\t"}.get(options.delimiter, options.delimiter)
    if options.no_header:
        csv["has_header"] = False
    if options.null_values is not None:
        csv["null_values"] = list(options.null_values)
    base["csv"] = csv
    try:
        source = SourceSpec.model_validate(base)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        flag = {"format": "--format", "csv.delimiter": "--delimiter"}.get(where, where)
        raise DataError(f"invalid reading option {flag}: {first['msg']}",
                        expected="--format auto|csv|parquet|jsonl and a one-character --delimiter",
                        fix=f"change {flag}") from None
    location = path if options.data is not None or loaded is None else loaded.resolve(path)
    if "://" not in location and not Path(location).is_file():
        raise DataError(f"data file not found: {location}",
                        expected="an existing CSV, Parquet or JSON lines file, or a URL",
                        fix="check the path (relative paths are relative to the current directory)"
                        if options.data is not None else f"check data.{options.role.value}.path in the spec")
    return source, location, loaded


@contextmanager
def out_of_memory_hint(location: str) -> Iterator[None]:
    """A whole-file read that runs out of memory becomes a DataError pointing at --chunk-rows."""
    try:
        yield
    except MemoryError:
        raise DataError(f"{location}: out of memory reading the whole file",
                        expected="a file that fits in the memory this process may use",
                        fix="read it in chunks: --chunk-rows 200000 (docs/data.md, Files larger than memory)",
                        ) from None


def strict_chunks(source: SourceSpec, location: str, chunk_rows: int) -> Iterator[Chunk]:
    """The source's chunks; malformed CSV records are a DataError, as with a whole-file read, raised
    once the file has been read (the message counts them all)."""
    from keelml.data.chunked import iter_chunks

    first: dict[str, Any] | None = None
    total = 0
    for chunk in iter_chunks(source, location, chunk_rows):
        if chunk.rejects.height:
            first = first or chunk.rejects.row(0, named=True)
            total += chunk.rejects.height
        yield chunk
    if first is not None:
        raise DataError(
            f"{location}: {first['_reason']} ({total} malformed record(s) in total)",
            expected="every record to have as many fields as the header, with balanced quotes",
            fix="repair or remove that line, or check data.*.csv.delimiter / quote_char / skip_rows",
        )


def load_contract(path: Path) -> Contract:
    """Read and check a contract YAML file; every problem is a DataError naming the file."""
    from keelml.data.contract import contract_from_yaml

    if not path.is_file():
        raise DataError(f"contract file not found: {path}",
                        expected="a contract YAML file (from `keel contract infer` or a run's report)",
                        fix="check the --contract path, or write one with `keel contract infer DATA --target COL`")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the contract file {path}: {type(exc).__name__}",
                        expected="a readable UTF-8 YAML file", fix="fix the file's permissions or encoding") from None
    return contract_from_yaml(text, source=str(path))


def check_writable(path: Path, flag: str) -> None:
    """Refuse an output path that is a directory (checked before any work is done)."""
    if path.is_dir():
        raise DataError(f"{flag}: {path} is a directory", expected="a file path",
                        fix=f"give a file name, e.g. {path / 'out'}")


def write_output(path: Path, data: bytes, flag: str) -> None:
    """Write an output file atomically (its directory is created); failures are DataErrors."""
    check_writable(path, flag)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise DataError(f"{flag}: cannot write {path}: {exc.strerror or type(exc).__name__}",
                        expected="a writable output path", fix=f"choose another {flag} path") from None


def clean(value: object, width: int | None = None) -> str:
    """Text safe for a terminal: control characters (escape sequences) shown as \\xNN, long text cut."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(value))
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def safe_text(value: object, width: int | None = None, style: str = "") -> Text:
    """A rich Text (never parsed as markup) of ``clean(value)``."""
    return Text(clean(value, width), style=style)
