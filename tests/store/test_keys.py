from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from keelml.errors import KeyMaterialError
from keelml.store.keys import create_keys, load_keys


def test_created_key_files_are_owner_only(tmp_path: Path) -> None:
    keys = create_keys(tmp_path / "keys")
    for name in ("master.key", "signing.key"):
        mode = stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode)
        assert mode == 0o600
    again = load_keys(tmp_path / "keys", environ={})
    assert again.master_key == keys.master_key
    assert again.key_id == keys.key_id


def test_repr_never_shows_key_material(tmp_path: Path) -> None:
    keys = create_keys(tmp_path / "keys")
    text = repr(keys)
    assert base64.b64encode(keys.master_key).decode() not in text
    assert keys.master_key.hex() not in text


def test_refuses_to_overwrite_keys(tmp_path: Path) -> None:
    create_keys(tmp_path / "keys")
    with pytest.raises(KeyMaterialError, match="already exist"):
        create_keys(tmp_path / "keys")


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    create_keys(tmp_path / "keys")
    os.chmod(tmp_path / "keys" / "master.key", 0o644)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        load_keys(tmp_path / "keys", environ={})


def test_missing_keys_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError) as info:
        load_keys(tmp_path / "nokeys", environ={})
    assert "keel init" in str(info.value)


def test_keys_from_environment(tmp_path: Path) -> None:
    env = {"KEEL_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "KEEL_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode()}
    keys = load_keys(tmp_path / "absent", environ=env)
    assert keys.source == "env"
    bad = {**env, "KEEL_MASTER_KEY": "not base64!"}
    with pytest.raises(KeyMaterialError, match="32 bytes"):
        load_keys(tmp_path / "absent", environ=bad)
