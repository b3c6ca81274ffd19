"""`keel audit [--verify]`: the append-only, hash-chained audit log."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from keelml.cli.common import SPEC_OPTION, open_from_spec, record_failure
from keelml.cli.output import out, print_json
from keelml.errors import IntegrityError


def audit(verify: bool = typer.Option(False, "--verify", help="Check every record's hash, chain link and "
                                                              "signature; exit 3 naming the first bad one."),
          limit: int | None = typer.Option(None, "--limit", min=1, help="Show only the newest N records."),
          spec: Path = SPEC_OPTION, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registration, promotion, rollback, key event, verification failure, import and export. With
    --verify: the chain, its end against the signed head (audit-head.json), and the registry's references
    into the log."""
    project = open_from_spec(spec)
    try:
        report = project.audit.verify() if verify else None
        # what the registry's tables point at in the log (alias moves, registrations) must be there and agree
        references = project.registry.audit_references() if verify else []
        chain = list(report.problems or [report.problem]) if report is not None and report.problem else []
        problems = [*chain, *references]
        if problems:
            record_failure(project, problems)
        records = project.audit.records(limit=limit)
    finally:
        project.close()
    if as_json:
        result: dict[str, object] = {"records": records}
        if report is not None:
            result["verified"] = {"ok": not problems, "count": report.count, "head": report.head,
                                  "problem": report.problem, "bad_record": report.bad_seq,
                                  "problems": list(report.problems), "references": references}
        print_json(result)
    else:
        table = Table("seq", "time (UTC)", "actor", "event", "details")
        for row in records:
            table.add_row(str(row["seq"]), row["at"][:19], Text(row["actor"]), row["event"],
                          Text(json.dumps(row["details"], sort_keys=True)))
        out.print(table)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise IntegrityError("; ".join(problems[:5]) + more,
                             expected="an unbroken chain of records, each matching its hash, ending where the signed "
                                      "head says, and every record the registry names present and agreeing",
                             fix="treat the metadata database as tampered with; compare it with a backup")
    if report is not None and not as_json:
        out.print(f"audit log verified: {report.count} records, head {report.head[:16]}", markup=False)
