"""Promotion with infra validation: check a version over real HTTP in a fresh process, then move the alias.

`Registry.promote` verifies a version and moves the alias; it starts no server and makes no HTTP
call, so library users and tests promote quickly. `promote_validated` is what `keel models
promote` runs: serve the version in a fresh process and compare its answers with the predictions
recorded at evaluation (`keelml.serve.infra.infra_validate`, which checks the bundle's signature
and components before it starts anything), record the outcome in the audit log
(``infra_validation``), and only then move the alias through `Registry.promote` (full
verification, right before the move), with the outcome in the promotion's audit record.

A mismatch refuses the promotion (IntegrityError, exit 3); a validation that could not run (the
server did not start, no recorded predictions) refuses it too (KeelError, exit 2). Rollback needs
none of this: it returns to a version that was validated when it was promoted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keelml.errors import IntegrityError, KeelError
from keelml.names import PRODUCTION, check_alias, check_text, check_version
from keelml.serve.infra import InfraReport, infra_validate

if TYPE_CHECKING:
    from keelml.registry import AliasChange
    from keelml.registry.project import Project

SKIPPED = "infra validation skipped"
Validator = Callable[..., "InfraReport"]


@dataclass(frozen=True)
class Promotion:
    """The alias change, and the infra validation that allowed it (None when skipped or not needed)."""

    change: AliasChange
    infra: InfraReport | None
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        validation: Any = SKIPPED if self.skipped else (summary(self.infra) if self.infra else None)
        return {**self.change.as_dict(), "infra_validation": validation}


def summary(report: InfraReport) -> dict[str, Any]:
    """The facts of an infra validation worth keeping in the audit log (JSON-safe)."""
    worst = report.max_abs_diff
    return {"passed": report.passed, "reason": report.reason[:500], "rows": report.rows,
            "mismatches": report.mismatches, "max_abs_diff": worst if math.isfinite(worst) else str(worst),
            "engine": report.engine, "seconds": report.seconds}


def promote_validated(project: Project, name: str, version: int | str, *, alias: str = PRODUCTION,
                      reason: str, actor: str | None = None, skip_infra_validation: bool = False,
                      sample: int | None = 200, serve: dict[str, Any] | None = None,
                      validate: Validator | None = None) -> Promotion:
    """Verify `name` v`version`, infra-validate it (unless skipped), then point name@alias at it."""
    registry = project.registry
    number = check_version(version)
    check_alias(alias)
    why = str(check_text(reason, what="reason", required=True))
    # an unknown model or version exits 2 before any process starts; a rejected version never moves
    registry.accepted_version(name, number, action=f"promoted to {alias}")
    if registry.aliases(name).get(alias) == number:  # nothing moves, nothing to validate
        return Promotion(registry.promote(name, number, alias=alias, reason=why, actor=actor), None)
    if skip_infra_validation:
        change = registry.promote(name, number, alias=alias, reason=f"{why} [{SKIPPED}]", actor=actor,
                                  details={"infra_validation": f"{SKIPPED} (--skip-infra-validation)"})
        return Promotion(change, None, skipped=True)
    if validate is None:
        validate = infra_validate
    report = validate(project, name, number, sample, serve=serve)
    facts = summary(report)
    outcome = "promotion allowed" if report.passed else "promotion refused"
    project.audit.append("infra_validation", actor=actor, name=name, version=number, alias=alias,
                         outcome=outcome, **facts)
    if not report.passed:
        what = f"promotion of {name} v{number} to {alias} refused: infra validation failed: {report.reason}"
        fix = (f"investigate with `keel serve {name}/{number}`; re-run the pipeline if the bundle predates "
               "recorded predictions; in an emergency only, --skip-infra-validation (recorded in the audit log)")
        expected = "the version, served over HTTP by a fresh process, answers as recorded at evaluation"
        if report.mismatches:
            raise IntegrityError(what, expected=expected, fix=fix)
        raise KeelError(what, expected=expected, fix=fix)
    change = registry.promote(name, number, alias=alias, reason=why, actor=actor,
                              details={"infra_validation": facts})
    return Promotion(change, report)
