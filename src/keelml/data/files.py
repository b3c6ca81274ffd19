"""Opening data files (local paths or fsspec URLs), listing batches of them, and digesting them,
without loading a data library.

fsspec (and the protocol driver it loads, such as s3fs) is imported only when a location is a URL.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from keelml.errors import DataError

CHUNK_SIZE = 1 << 20
PATH_FIX = (
    "check data.train.path (or data.test.path); relative paths are resolved against "
    "the directory that holds the spec file"
)


def is_url(location: str) -> bool:
    return "://" in location


@contextmanager
def open_binary(location: str) -> Iterator[IO[bytes]]:
    """Open a local path or an fsspec URL for binary reading; a missing file is a DataError."""
    try:
        if is_url(location):
            import fsspec

            with fsspec.open(location, "rb") as handle:
                yield handle
        else:
            path = Path(location)
            if not path.is_file():
                raise FileNotFoundError(location)
            with path.open("rb") as handle:
                yield handle
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(
            f"data file not found: {location}",
            expected="an existing, readable data file at that resolved path",
            fix=PATH_FIX,
        ) from None
    except PermissionError:
        raise DataError(
            f"data file is not readable (permission denied): {location}",
            expected="a data file the user running keel may read",
            fix="fix the file's permissions (e.g. chmod o+r), or run keel as its owner",
        ) from None


def read_bytes(location: str) -> bytes:
    with open_binary(location) as handle:
        return handle.read()


def file_digest(location: str) -> str:
    """SHA-256 hex digest of a file's bytes, streamed in 1 MiB chunks (local path or fsspec URL)."""
    digest = hashlib.sha256()
    with open_binary(location) as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


GLOB_CHARS = "*?["


def is_batch(location: str) -> bool:
    """True when a location names several files: a glob pattern or a directory."""
    if any(ch in location for ch in GLOB_CHARS):
        return True
    if is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        return bool(fs.isdir(path))
    return Path(location).is_dir()


def list_batch(location: str) -> list[tuple[str, str]]:
    """The files of a glob or directory as (name relative to its base, location), sorted by name.

    A directory contributes its regular files whose names do not start with "." or "_" (such as
    _SUCCESS markers); subdirectories are not entered. A glob contributes the regular files it matches
    (``**`` matches across directories). A location matching no file is a DataError naming it.
    """
    globbing = any(ch in location for ch in GLOB_CHARS)
    if is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        if globbing:
            found = [p for p in fs.glob(path) if fs.isfile(p)]
            base = _glob_base(path)
        else:
            base = path.rstrip("/")
            found = [p for p in fs.ls(path, detail=False) if fs.isfile(p) and not _hidden(p)]
        pairs = [(_relative(p, base), fs.unstrip_protocol(p)) for p in found]
    else:
        if globbing:
            found = [p for p in glob.glob(location, recursive=True) if os.path.isfile(p)]
            base = _glob_base(location)
        else:
            base = location
            found = [str(p) for p in Path(location).iterdir() if p.is_file() and not _hidden(p.name)]
        pairs = [(_relative(p, base), p) for p in found]
    if not pairs:
        raise DataError(
            f"no data files match {location}",
            expected="a glob matching at least one file, or a directory holding data files",
            fix="check the pattern or directory in data.train.path (or data.test.path); hidden files "
            "and names starting with '_' in a directory are skipped",
        )
    return sorted(pairs)


def batch_digest(files: Sequence[tuple[str, str]]) -> str:
    """SHA-256 over each file's name and SHA-256, in order: renaming, adding or editing a file changes it."""
    digest = hashlib.sha256()
    for name, location in files:
        digest.update(f"{name}\0{file_digest(location)}\n".encode())
    return digest.hexdigest()


def _glob_base(pattern: str) -> str:
    first = min(pattern.index(ch) for ch in GLOB_CHARS if ch in pattern)
    return pattern[:first].rsplit("/", 1)[0] if "/" in pattern[:first] else ""


def _relative(path: str, base: str) -> str:
    path = path.replace(os.sep, "/")
    base = base.replace(os.sep, "/").rstrip("/")
    return path[len(base) + 1:] if base and path.startswith(base + "/") else path


def _hidden(name: str) -> bool:
    return name.rsplit("/", 1)[-1].startswith((".", "_"))
