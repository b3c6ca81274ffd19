from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from keelml.store.atomic import atomic_write_bytes, private_dirs, private_file


def test_replace_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")

    def crash(*_args: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # temp file cleaned up


def test_mode_is_applied(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "k", b"x", mode=0o600)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000: only an explicit mode keeps a new file or directory private."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_0600_and_new_directories_0700_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    atomic_write_bytes(tmp_path / "a" / "b" / "f", b"x")
    assert (_mode(tmp_path / "a"), _mode(tmp_path / "a" / "b"), _mode(tmp_path / "a" / "b" / "f")) == (
        0o700, 0o700, 0o600)
    private_dirs(tmp_path / "c" / "d")
    assert (_mode(tmp_path / "c"), _mode(tmp_path / "c" / "d")) == (0o700, 0o700)
    os.chmod(tmp_path, 0o755)
    private_dirs(tmp_path / "c")  # existing directories are left as they are
    assert _mode(tmp_path) == 0o755
    private_file(tmp_path / "e")
    assert _mode(tmp_path / "e") == 0o600 and (tmp_path / "e").read_bytes() == b""


def test_a_sqlite_database_is_created_0600_and_an_old_one_tightened(tmp_path: Path, open_umask: None) -> None:
    from sqlalchemy import text

    from keelml.store.metadata import MetadataStore

    store = MetadataStore(f"sqlite:///{tmp_path / 'keel.db'}")
    with store.engine.begin() as conn:  # WAL mode: -wal and -shm appear next to the database
        conn.execute(text("SELECT count(*) FROM runs"))
        created = sorted(p.name for p in tmp_path.iterdir())
        assert {_mode(p) for p in tmp_path.iterdir()} == {0o600}
    store.close()
    assert created[0] == "keel.db" and len(created) == 3
    os.chmod(tmp_path / "keel.db", 0o644)
    MetadataStore(f"sqlite:///{tmp_path / 'keel.db'}").close()
    assert _mode(tmp_path / "keel.db") == 0o600
