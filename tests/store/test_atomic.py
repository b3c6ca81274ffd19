from __future__ import annotations

import os
from pathlib import Path

import pytest

from keelml.store.atomic import atomic_write_bytes


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
