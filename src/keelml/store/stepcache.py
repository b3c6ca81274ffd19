"""The signed step cache: the runner's recorder over the metadata store.

Every `step_cache` row is signed with the project's Ed25519 key over what it claims: the cache key,
the scope (pipeline), the step and its outputs (output name -> artifact id). A lookup checks that
signature and that the row belongs to the step asking; a row that fails (edited, copied under another
key, unsigned, signed by another key) is refused: a `verification_failure` audit record, then an
IntegrityError naming the problem, which the runner turns into a recomputation. Artifacts are
content-addressed and shared (the same bytes from two steps are one artifact), so the binding of an
output to the step and key that produced it lives here, in the signed entry, not in the artifact.

Unsigned columns (`parts`, `created_at`, `run_id`) only explain why a key changed; nothing trusts them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keelml.errors import IntegrityError
from keelml.store.audit import AuditLog
from keelml.store.envelope import canonical_json, trusted_from
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore

ENTRY_FORMAT = "keelml.step_cache/1"
FIX = ("nothing to do for a run: it recomputes the step and signs a new entry; if you did not expect this, "
       "treat the metadata database as tampered with (`keel audit` lists the refusals)")


def signed_content(*, key: str, scope: str, step: str, outputs: Mapping[str, str]) -> bytes:
    """The bytes an entry's signature covers."""
    return canonical_json({"format": ENTRY_FORMAT, "cache_key": key, "scope": scope, "step": step,
                           "outputs": dict(sorted(outputs.items()))})


class StepCache:
    """The runner's `Recorder`: signed cache entries (lookup, remember) and the run log (metadata store)."""

    def __init__(self, metadata: MetadataStore, keys: KeyRing, audit: AuditLog | None = None,
                 trusted: Mapping[str, Ed25519PublicKey] | None = None) -> None:
        self._meta = metadata
        self._keys = keys
        self._audit = audit
        self._trusted = dict(trusted) if trusted is not None else trusted_from(keys)

    @property
    def metadata(self) -> MetadataStore:
        return self._meta

    def lookup(self, key: str, *, step: str) -> dict[str, str] | None:
        """The outputs cached under `key` for `step`; None when there is no entry.

        An entry that does not verify is refused: audited, then raised as an IntegrityError.
        """
        row = self._meta.cache_entry(key)
        if row is None:
            return None
        problem = self.problem(row, key=key, step=step)
        if problem is not None:
            if self._audit is not None:
                with suppress(Exception):  # the refusal is what the caller must see
                    self._audit.append("verification_failure", what="step_cache", step=step, cache_key=key,
                                       problem=problem[:500])
            raise IntegrityError(f"the cached result of step {step!r} under key {key[:12]} {problem}",
                                 expected="a step cache entry signed by this project for this step and key",
                                 fix=FIX)
        return dict(row["outputs"])

    def problem(self, row: Mapping[str, Any], *, key: str | None = None, step: str | None = None) -> str | None:
        """None when the row is an entry this project signed (for `key` and `step` when given); else why not."""
        outputs = row.get("outputs")
        if not isinstance(outputs, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in outputs.items()):
            return "has malformed outputs (not a JSON table of output names and artifact ids)"
        if key is not None and row.get("cache_key") != key:
            return f"is stored under key {str(row.get('cache_key'))[:12]}, not {key[:12]}"
        if step is not None and row.get("step") != step:
            return f"was made by step {row.get('step')!r}, not {step!r}"
        if not row.get("sig") or not row.get("signed_by"):
            return "is not signed (written by an older keelml, or inserted into the database by hand)"
        public = self._trusted.get(str(row["signed_by"]))
        if public is None:
            return f"is signed by an unknown key {row['signed_by']!r}"
        content = signed_content(key=str(row["cache_key"]), scope=str(row["scope"]), step=str(row["step"]),
                                 outputs=outputs)
        try:
            public.verify(base64.b64decode(str(row["sig"]), validate=True), content)
        except (InvalidSignature, ValueError):
            return ("does not match its signature (its key, step or outputs were changed in the database, "
                    "or it was copied from another entry)")
        return None

    def remember(self, *, key: str, scope: str, step: str, outputs: Mapping[str, str],
                 parts: Mapping[str, Any], run_id: str) -> None:
        """Sign and store the entry (replacing any row under the same key)."""
        sig = base64.b64encode(self._keys.sign(signed_content(key=key, scope=scope, step=step,
                                                              outputs=outputs))).decode()
        self._meta.put_cache_entry(key=key, scope=scope, step=step, outputs=outputs, parts=parts, run_id=run_id,
                                   signed_by=self._keys.key_id, sig=sig)

    def verify_all(self) -> tuple[int, list[str]]:
        """Check every entry's signature; returns (entries checked, one problem per refused entry)."""
        problems = []
        rows = self._meta.cache_entries()
        for row in rows:
            problem = self.problem(row)
            if problem is not None:
                problems.append(f"step cache entry {str(row['cache_key'])[:12]} (step {row['step']!r}) {problem}")
        return len(rows), problems

    # the run log: the metadata store's, unchanged ----------------------------------------------
    def previous_parts(self, scope: str, step: str) -> dict[str, Any] | None:
        return self._meta.previous_parts(scope, step)

    def record_step(self, *, run_id: str, name: str, status: str, key: str, duration_s: float,
                    explain: list[str], inputs: Mapping[str, str],
                    outputs: Mapping[str, tuple[str, str, int]]) -> None:
        self._meta.record_step(run_id=run_id, name=name, status=status, key=key, duration_s=duration_s,
                               explain=explain, inputs=inputs, outputs=outputs)
