"""Aliases (production, staging, any name) pointing at model versions, with their full history.

Every change writes, in one transaction, the alias row, a history row (who, when, from which
version, to which, why) and an audit record (`RegistryRepository.try_move_alias`). Two processes
moving the same alias at once cannot both win: the update is a compare-and-swap on the version the
change was computed from.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from keelml.errors import NotFoundError
from keelml.store.audit import default_actor

if TYPE_CHECKING:
    from keelml.registry.repository import RegistryRepository


@dataclass(frozen=True)
class AliasChange:
    """One move of an alias (or, with changed=False, a request that found it already there)."""

    name: str
    alias: str
    action: str  # promotion | rollback
    from_version: int | None
    to_version: int
    actor: str
    at: float
    reason: str
    changed: bool = True
    audit_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ANY = object()


def move_alias(repository: RegistryRepository, *, name: str, alias: str, version: int, action: str,
               reason: str, actor: str | None, expected: object = ANY,
               details: dict[str, Any] | None = None) -> AliasChange:
    """Point name@alias at version, recording history and audit atomically.

    `expected` is the version the caller saw the alias at (ANY: whatever it is now); if the
    alias moved meanwhile, the change is refused rather than applied on top of someone else's.
    """
    who = (actor or default_actor())[:128]
    for _attempt in range(50):
        current = repository.aliases(name).get(alias)
        if expected is not ANY and current != expected:
            raise NotFoundError(
                f"{name}@{alias} moved while this {action} was prepared (now v{current}, expected v{expected})",
                expected="no concurrent alias change", fix="look at `keel models history NAME` and try again")
        now = time.time()
        if current == version:
            return AliasChange(name, alias, action, current, version, who, now, reason, changed=False)
        seq = repository.try_move_alias(name=name, alias=alias, current=current, version=version, action=action,
                                        actor=who, at=now, reason=reason, details=details or {})
        if seq is not None:
            return AliasChange(name, alias, action, current, version, who, now, reason, audit_seq=seq)
    raise RuntimeError(f"could not move {name}@{alias}: too much concurrent change")
