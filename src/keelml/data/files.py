"""Opening data files (local paths or fsspec URLs) and digesting them, without loading a data library."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
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
