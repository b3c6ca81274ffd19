"""A version's registration status: ``staging`` (its gate passed) or ``rejected`` (its gate refused it), and
`Registration`, the outcome of registering a bundle.

A rejected version is kept for the audit trail (listed with the gate's reasons) but can never be
loaded for serving, exported, resolved as ``latest`` or pointed at by an alias. The status row is
descriptive; the signed gate verdict inside the bundle stays the authority: a version whose signed
verdict did not pass is never treated as accepted, whatever the database says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keelml.errors import KeelError
from keelml.store.artifacts import ArtifactStore

STAGING = "staging"
REJECTED = "rejected"
MAX_STORED_REASONS = 20


def signed_verdict(bundle: Mapping[str, Any], artifacts: ArtifactStore) -> dict[str, Any]:
    """The gate verdict a (signature-checked) bundle names; {} when it names none."""
    entry = bundle["manifest"]["components"].get("verdict")
    return dict(json.loads(artifacts.get(str(entry["sha256"])))) if entry else {}


def failed_reasons(verdict: Mapping[str, Any]) -> list[str]:
    """The reason of every failed check of a verdict (its one-line reason when it lists no checks)."""
    if verdict.get("passed"):
        return []
    reasons = [str(c.get("reason", "")) for c in verdict.get("checks") or [] if not c.get("passed")]
    return (reasons or [str(verdict.get("reason") or "no gate verdict")])[:MAX_STORED_REASONS]


def refuse_rejected(name: str, version: int, reasons: list[str], *, action: str) -> KeelError:
    """The error for any use of a rejected version beyond listing and auditing it."""
    shown = "; ".join(reasons[:3]) or "no reason recorded"
    return KeelError(f"{name} v{version} was rejected by the gate ({shown}); it cannot be {action}",
                     expected="a version whose gate passed (status staging in `keel models list`)",
                     fix=f"pick an accepted version from `keel models show {name}`, or improve the model "
                         "and run the pipeline again")


@dataclass(frozen=True)
class Registration:
    """The outcome of registering a bundle: its version, whether it is new, its status and reasons."""

    name: str
    version: int
    bundle_id: str
    created: bool
    status: str = STAGING  # staging (the gate passed) or rejected (kept for the audit trail)
    reasons: tuple[str, ...] = ()  # the gate's failed checks, for a rejected version

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "bundle_id": self.bundle_id, "created": self.created,
                "status": self.status, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Registration:
        return cls(str(data["name"]), int(data["version"]), str(data["bundle_id"]), bool(data["created"]),
                   str(data["status"]), tuple(str(r) for r in data["reasons"]))
