"""`keel verify`: re-hash and re-check the signature of everything in the store."""

from __future__ import annotations

from pathlib import Path

import typer

from keelml.cli.common import open_from_spec, record_failure
from keelml.cli.output import out, print_json
from keelml.errors import IntegrityError


def verify(
    spec: Path = typer.Argument(Path("pipeline.yaml"), help="The pipeline spec whose store to verify."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Check every artifact's signature and digest, every version against its signed registration record and
    its bundle, every alias against its signed moves, every step cache entry's signature, the audit chain
    against its signed head, and that the metadata points at real artifacts and audit records."""
    project = open_from_spec(spec)
    try:
        report = project.artifacts.verify_all()
        bundles, bundle_problems = project.registry.verify_all()  # versions, aliases, references into the log
        entries, cache_problems = project.step_cache.verify_all()
        missing = sorted(a for a in project.referenced_artifacts() if not project.artifacts.exists(a))
        audit = project.audit.verify()  # the chain and its end against the signed head
        problems = [*report.problems, *bundle_problems, *cache_problems,
                    *(f"artifact {m[:12]} is referenced but missing" for m in missing),
                    *(audit.problems or ([audit.problem] if audit.problem else []))]
        if audit.problem:
            record_failure(project, list(audit.problems or [audit.problem]))
    finally:
        project.close()
    if as_json:
        print_json({"ok": not problems, "artifacts_checked": report.checked, "bundles_checked": bundles,
                    "step_cache_entries_checked": entries,
                    "leftover_temp_files": report.leftover_temp_files, "audit_records_checked": audit.count,
                    "problems": problems})
    else:
        out.print(f"checked {report.checked} artifacts, {bundles} model bundles, {entries} step cache entries and "
                  f"{audit.count} audit records")
        if report.leftover_temp_files:
            out.print(f"{report.leftover_temp_files} unfinished temporary file(s) from interrupted writes "
                      "(harmless: never referenced)")
        for problem in problems:  # every one, not only the first: each category is checked to the end
            out.print(f"problem: {problem}", markup=False, soft_wrap=True)
    if problems:
        raise IntegrityError(
            f"{len(problems)} integrity problem(s): " + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more (listed above)" if len(problems) > 5 else ""),
            expected="every artifact, bundle, version, alias move, step cache entry and audit record signed by "
                     "this project and matching",
            fix="treat the store as tampered with: restore it from a backup, or delete it and re-run the pipeline",
        )
    if not as_json:
        out.print("[green]store verified[/green]: every signature and digest matches")
