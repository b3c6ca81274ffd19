"""`keel audit [--verify]`: the append-only, hash-chained audit log."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from keelml.cli.common import SPEC_OPTION, open_from_spec
from keelml.cli.output import out, print_json
from keelml.errors import IntegrityError


def audit(verify: bool = typer.Option(False, "--verify", help="Check every record's hash, chain link and "
                                                              "signature; exit 3 naming the first bad one."),
          limit: int | None = typer.Option(None, "--limit", min=1, help="Show only the newest N records."),
          spec: Path = SPEC_OPTION, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registration, promotion, rollback, key event, verification failure, import and export."""
    project = open_from_spec(spec)
    try:
        report = project.audit.verify() if verify else None
        records = project.audit.records(limit=limit)
    finally:
        project.close()
    if as_json:
        result: dict[str, object] = {"records": records}
        if report is not None:
            result["verified"] = {"ok": report.ok, "count": report.count, "head": report.head,
                                  "problem": report.problem, "bad_record": report.bad_seq,
                                  "problems": list(report.problems)}
        print_json(result)
    else:
        table = Table("seq", "time (UTC)", "actor", "event", "details")
        for row in records:
            table.add_row(str(row["seq"]), row["at"][:19], Text(row["actor"]), row["event"],
                          Text(json.dumps(row["details"], sort_keys=True)))
        out.print(table)
    if report is not None and not report.ok:
        raise IntegrityError(str(report.problem), expected="an unbroken chain of records, each matching its hash",
                             fix="treat the metadata database as tampered with; compare it with a backup")
    if report is not None and not as_json:
        out.print(f"audit log verified: {report.count} records, head {report.head[:16]}", markup=False)
