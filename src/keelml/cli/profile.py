"""`keel profile`: per-column statistics of a data file, as a table, JSON or an offline HTML page.

The data layer and the HTML page load inside the command, so `keel --help` stays fast.
"""

from __future__ import annotations

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


def profile(
    data: str | None = DATA_ARGUMENT,
    as_json: bool = typer.Option(False, "--json", help="Print the profile (keelml.profile/1) as JSON."),
    html_path: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML page here."),
    contract_path: Path | None = typer.Option(None, "--contract", help="Take column types, roles and "
                                              "categories from this contract YAML."),
    spec: Path | None = DATA_SPEC_OPTION,
    role: Role = ROLE_OPTION,
    fmt: str | None = FORMAT_OPTION,
    delimiter: str | None = DELIMITER_OPTION,
    no_header: bool = NO_HEADER_OPTION,
    null_value: list[str] | None = NULL_VALUE_OPTION,
    chunk_rows: int | None = CHUNK_ROWS_OPTION,
) -> None:
    """Profile DATA: counts, missing values, distinct values, quantiles, histograms, top categories."""
    from keelml.data.profile import profile_frame

    if html_path is not None:
        check_writable(html_path, "--html")
    contract = load_contract(contract_path) if contract_path is not None else None
    options = DataOptions(data, spec, role, fmt, delimiter, no_header, null_value)
    source, location, _ = resolve_source(options)
    rows = auto_chunk_rows(location, chunk_rows)
    if rows:
        from keelml.data.profile_stream import profile_chunks

        result = profile_chunks(lambda: (c.frame for c in strict_chunks(source, location, rows)), contract)
    else:
        with out_of_memory_hint(location):
            result = profile_frame(load_data(options).frame, contract)
    if html_path is not None:
        from keelml.report.profile_report import render_profile_page

        page = render_profile_page(result, source=location)
        write_output(html_path, page.encode("utf-8"), "--html")
    if as_json:
        print_json(result)
        return
    _print_table(result, location)
    if html_path is not None:
        out.print(f"HTML profile written to {html_path}", markup=False, soft_wrap=True)


def _print_table(result: dict[str, Any], location: str) -> None:
    from keelml.report.profile_report import column_summary, percent

    version = result["contract_version"]
    out.print(f"{clean(location)}: {result['rows']} rows, {len(result['columns'])} columns"
              + (f" (contract {version})" if version else ""), markup=False, soft_wrap=True)
    table = Table(show_edge=False, header_style="bold")
    for name in ("column", "type", "missing", "distinct", "summary"):
        table.add_column(name, justify="right" if name in ("missing", "distinct") else "left")
    for col in result["columns"]:
        table.add_row(safe_text(col["name"], 40), safe_text(col["type"]), safe_text(percent(col["null_fraction"])),
                      safe_text(col["distinct"]), safe_text(column_summary(col)))
    out.print(table)
