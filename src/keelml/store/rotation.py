"""`keel keys rotate`: a new master key re-wraps every artifact's data key; payloads are not re-encrypted.

Crash safety, in order:
1. the new key is written (fsync, 0600) as keys/master.key.next before anything is wrapped with it;
   readers load it too, so artifacts already re-wrapped stay readable while the old key is current;
2. each artifact is rewritten atomically (temp file, fsync, rename) with only its header changed;
3. the rotation is recorded in the audit log, then one rename makes the new key current, and the old
   one moves to keys/retired/ (kept only to unwrap what a concurrent writer sealed with it);
4. a last pass re-wraps anything still wrapped by another key.
A rotation killed at any point is finished by running `keel keys rotate` again (it resumes with the
staged key instead of making another).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from keelml.errors import IntegrityError, KeyMaterialError
from keelml.store.artifacts import ArtifactStore
from keelml.store.atomic import private_dirs
from keelml.store.audit import AuditLog
from keelml.store.keyproviders import KeyProvider
from keelml.store.keys import KeyRing
from keelml.store.process import pid_alive


@dataclass
class RotationReport:
    """What a rotation did."""

    old_key_id: str
    new_key_id: str
    rewrapped: int = 0
    unchanged: int = 0
    resumed: bool = False
    problems: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _rotation_lock(path: Path) -> Iterator[None]:
    """One rotation at a time per store; a lock left by a dead process on this host is taken over."""
    private_dirs(path.parent)
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            owner = path.read_text(encoding="ascii", errors="replace").split()
            if len(owner) == 2 and not pid_alive(int(owner[0] or 0), owner[1]):
                path.unlink(missing_ok=True)
                continue
            raise KeyMaterialError(f"another key rotation is running (lock {path}, held by {' '.join(owner)})",
                                   expected="one rotation at a time",
                                   fix=f"wait for it; if no rotation is running, delete {path}") from None
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()} {socket.gethostname()}")
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _rewrap_all(artifacts: ArtifactStore, ring: KeyRing,
                progress: Callable[[int], None] | None) -> tuple[int, int, list[str]]:
    """(re-wrapped, left as they were, problems) over every artifact in the store."""
    rewrapped, unchanged, problems = 0, 0, []
    for done, artifact_id in enumerate(list(artifacts.ids()), start=1):
        try:
            if artifacts.rewrap(artifact_id, ring):
                rewrapped += 1
            else:
                unchanged += 1
        except IntegrityError as exc:
            problems.append(exc.what)
        if progress is not None:
            progress(done)
    return rewrapped, unchanged, problems


def rotate_master_key(store_root: str, provider: KeyProvider, *, audit: AuditLog | None = None,
                      actor: str | None = None, progress: Callable[[int], None] | None = None) -> RotationReport:
    """Rotate the master key of the store at `store_root` (see the module docstring)."""
    current = provider.load()
    lock = Path(store_root) / "rotate.lock"
    with _rotation_lock(lock):
        staged = provider.stage_master_key()
        report = RotationReport(current.master_key_id, staged.master_key_id,
                                resumed=current.knows_master(staged.master_key_id))
        report.rewrapped, report.unchanged, report.problems = _rewrap_all(
            ArtifactStore(store_root, staged), staged, progress)
        if audit is not None:
            audit.append("key_rotation", actor=actor, old_master_key_id=report.old_key_id,
                         new_master_key_id=report.new_key_id, rewrapped=report.rewrapped,
                         resumed=report.resumed, problems=len(report.problems))
        provider.commit_master_key()
        final = provider.load()
        # Anything a concurrent writer sealed with the old key before the switch: wrap it again.
        stragglers, _, problems = _rewrap_all(ArtifactStore(store_root, final), final, None)
        report.rewrapped += stragglers
        report.problems += [p for p in problems if p not in report.problems]
    return report
