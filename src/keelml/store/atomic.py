"""Private files: atomic writes (temp file in the same directory, fsync, rename, fsync the directory),
and the modes every file (0600) and directory (0700) keelml creates gets, whatever the umask.

Everything keelml writes may hold data (artifacts, the prediction log, reports, the metadata
database) or keys, so only the owner may read it. Writers go through `atomic_write_bytes`,
`private_dirs` and `private_file`; the modes are set explicitly, not left to the process umask.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path

TEMP_PREFIX = ".tmp-"
FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents, each new one with mode 0700 (existing ones are left alone)."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    if missing:
        fsync_dir(missing[-1].parent)


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist; tighten a file of ours readable by others."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(path)
        return
    os.fchmod(fd, FILE_MODE)
    os.close(fd)


def tighten(path: Path) -> None:
    """Mode 0600 for an existing file this user owns that group or others may use (best effort)."""
    try:
        info = path.stat()
        if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.getuid():
            os.chmod(path, FILE_MODE)
    except OSError:
        pass


def open_private(path: Path, flags: int) -> int:
    """os.open with mode 0600 for a new file (whatever the umask); an existing file of ours is tightened."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    info = os.fstat(fd)
    if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.getuid():
        os.fchmod(fd, FILE_MODE)
    return fd


def private_sqlite_files(url: str) -> None:
    """A SQLite database file is created 0600 before SQLite opens it (its -wal and -shm files take its
    mode); an existing one, and its -wal and -shm, are tightened to 0600."""
    from sqlalchemy.engine import make_url  # SQLAlchemy: keel --help imports this module

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        private_file(path)
        for suffix in ("-wal", "-shm", "-journal"):
            tighten(path.with_name(path.name + suffix))


def atomic_write_bytes(path: Path, data: bytes | Sequence[bytes | bytearray | memoryview], *,
                       mode: int = FILE_MODE) -> None:
    """Write data (bytes, or parts written one after the other) to path so that a reader (or a crash) sees
    either nothing or all of it."""
    if not path.parent.is_dir():
        private_dirs(path.parent)  # makes the new directories' entries durable too
    tmp = path.parent / f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # os.open's mode is filtered by the umask
            for part in [data] if isinstance(data, bytes) else data:
                handle.write(part)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)
