"""`keel validate`: check a data file against a contract; accepted and quarantined rows, with reasons.

The data layer and the spec load inside the command, so `keel --help` stays fast.
"""

from __future__ import annotations

import io
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from keelml.cli.data_input import (
    CHUNK_ROWS_OPTION,
    DATA_ARGUMENT,
    DATA_SPEC_OPTION,
    DELIMITER_OPTION,
    FORMAT_OPTION,
    NO_HEADER_OPTION,
    NULL_VALUE_OPTION,
    ROLE_OPTION,
    DataOptions,
    Role,
    check_writable,
    clean,
    load_contract,
    load_data,
    out_of_memory_hint,
    resolve_source,
    safe_text,
    strict_chunks,
    write_output,
)
from keelml.cli.output import out, print_json
from keelml.data.budget import auto_chunk_rows
from keelml.errors import DataError

EXAMPLES = 10


def validate(
    data: str | None = DATA_ARGUMENT,
    contract_path: Path | None = typer.Option(None, "--contract", help="The contract YAML (default: the spec's "
                                              "contract.path)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
    quarantine: Path | None = typer.Option(None, "--quarantine", help="Write the quarantined rows (every input "
                                           "column as text, plus _row and _reason) to this .parquet or .csv file."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any row is quarantined."),
    spec: Path | None = DATA_SPEC_OPTION,
    role: Role = ROLE_OPTION,
    fmt: str | None = FORMAT_OPTION,
    delimiter: str | None = DELIMITER_OPTION,
    no_header: bool = NO_HEADER_OPTION,
    null_value: list[str] | None = NULL_VALUE_OPTION,
    chunk_rows: int | None = CHUNK_ROWS_OPTION,
) -> None:
    """Validate DATA against a contract: rows that break it are quarantined with every reason."""
    from keelml.data.validate import validate_frame

    if quarantine is not None:
        check_writable(quarantine, "--quarantine")
        if quarantine.suffix.lower() not in (".parquet", ".pq", ".csv"):
            raise DataError(f"--quarantine {quarantine}: unknown file type {quarantine.suffix or '(none)'!r}",
                            expected="a file name ending in .parquet or .csv",
                            fix=f"use e.g. {quarantine.with_suffix('.parquet').name}")
    if contract_path is None and spec is not None:
        from keelml.spec.pipeline import load_spec

        loaded_spec = load_spec(spec)
        if loaded_spec.spec.contract.path:
            contract_path = Path(loaded_spec.resolve(loaded_spec.spec.contract.path))
    if contract_path is None:
        raise DataError("no contract given", expected="--contract contract.yaml",
                        fix="write one with `keel contract infer DATA --target COL -o contract.yaml`")
    contract = load_contract(contract_path)
    options = DataOptions(data, spec, role, fmt, delimiter, no_header, null_value)
    source, location, _ = resolve_source(options)
    size = auto_chunk_rows(location, chunk_rows)
    if size:
        report, rows = _validate_in_chunks(source, location, contract, quarantine, size)
    else:
        with out_of_memory_hint(location):
            loaded = load_data(options)
            result = validate_frame(loaded.frame, contract, require_target=contract.target in loaded.frame.columns)
        if quarantine is not None:
            _write_quarantine(result.quarantine, quarantine)
        report, rows = result.report, result.quarantine
    summary = _summary(location, report, rows, quarantine)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    if strict and summary["rows_quarantined"]:
        raise typer.Exit(1)


def _validate_in_chunks(source: Any, location: str, contract: Any, quarantine: Path | None,
                        chunk_rows: int) -> tuple[dict[str, Any], Any]:
    """Validate chunk by chunk, writing quarantined rows as they are found; the report of the whole file."""
    from keelml.data.sink import FrameSink
    from keelml.data.stream import validate_chunks

    with FrameSink(quarantine, "--quarantine") if quarantine is not None else nullcontext() as sink:
        result = validate_chunks(strict_chunks(source, location, chunk_rows), contract,
                                 on_quarantine=sink.write if sink is not None else None)
        if sink is not None:
            sink.commit()
    return result.report, result.quarantine


def _summary(location: str, report: dict[str, Any], rows: Any, path: Path | None) -> dict[str, Any]:
    """The JSON outcome: counts (accepted + quarantined = input rows), per-column violations, examples."""
    examples = rows.head(EXAMPLES).select("_row", "_reason").to_dicts()
    return {
        "data": location,
        "contract_version": report["contract_version"],
        "rows_in": report["rows_in"],
        "rows_accepted": report["rows_valid"],
        "rows_quarantined": report["rows_quarantined"],
        "columns": report["columns"],
        "extra_columns": report["extra_columns"],
        "missing_columns": report["missing_columns"],
        "quarantine_file": str(path) if path is not None else None,
        "examples": [{"row": e["_row"], "reason": e["_reason"]} for e in examples],
    }


def _write_quarantine(rows: Any, path: Path) -> None:
    buffer = io.BytesIO()
    if path.suffix.lower() == ".csv":
        rows.write_csv(buffer)
    else:
        rows.write_parquet(buffer, compression="zstd")
    write_output(path, buffer.getvalue(), "--quarantine")


def _print_summary(summary: dict[str, Any]) -> None:
    accepted, quarantined = summary["rows_accepted"], summary["rows_quarantined"]
    out.print(f"{clean(summary['data'])}: {summary['rows_in']} rows: {accepted} accepted, {quarantined} quarantined "
              f"(contract {summary['contract_version']})", markup=False, soft_wrap=True)
    table = Table(title="violations by kind, per column", show_edge=False, header_style="bold")
    for name in ("column", "type", "null", "domain", "range", "null fraction", "max allowed"):
        table.add_column(name, justify="left" if name == "column" else "right")
    for name, col in summary["columns"].items():
        counts = col["violations"]
        fraction = safe_text(f"{col['null_fraction']:.2%}", style="red" if col["exceeded"] else "")
        table.add_row(safe_text(name, 40), *(safe_text(counts[k], style="red" if counts[k] else "dim")
                                            for k in ("type", "null", "domain", "range")),
                      fraction, safe_text(f"{col['max_null_fraction']:.2%}"))
    out.print(table)
    if summary["missing_columns"]:
        out.print("columns of the contract absent from the data: "
                  + ", ".join(clean(c, 40) for c in summary["missing_columns"]), markup=False, soft_wrap=True)
    if summary["extra_columns"]:
        out.print("columns not in the contract (not checked): "
                  + ", ".join(clean(c, 40) for c in summary["extra_columns"]), markup=False, soft_wrap=True)
    for example in summary["examples"]:
        out.print(f"  row {example['row']}: {clean(example['reason'], 200)}", markup=False, soft_wrap=True)
    if quarantined > len(summary["examples"]):
        more = quarantined - len(summary["examples"])
        hint = "" if summary["quarantine_file"] else "; --quarantine FILE writes them all"
        out.print(f"  ... and {more} more quarantined row(s){hint}", markup=False, soft_wrap=True)
    if summary["quarantine_file"]:
        out.print(f"quarantined rows written to {summary['quarantine_file']}", markup=False, soft_wrap=True)
