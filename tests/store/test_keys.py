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


def test_only_one_key_variable_is_an_error(tmp_path: Path) -> None:
    env = {"KEEL_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    with pytest.raises(KeyMaterialError, match=r"\$KEEL_SIGNING_KEY too"):
        load_keys(tmp_path, environ=env)


RACE = """
import sys
from pathlib import Path
from keelml.errors import KeyMaterialError
from keelml.store.keys import create_keys
try:
    print(create_keys(Path(sys.argv[1])).key_id)
except KeyMaterialError:
    print("lost")
"""


def test_racing_key_creation_has_exactly_one_winner(tmp_path: Path) -> None:
    import subprocess
    import sys

    for attempt in range(5):
        keys_dir = tmp_path / f"k{attempt}" / "keys"
        procs = [subprocess.Popen([sys.executable, "-c", RACE, str(keys_dir)], stdout=subprocess.PIPE, text=True)
                 for _ in range(3)]
        outcomes = [p.communicate(timeout=60)[0].strip() for p in procs]
        winners = [o for o in outcomes if o != "lost"]
        assert len(winners) == 1, outcomes
        assert load_keys(keys_dir, environ={}).key_id == winners[0]
        assert [p.name for p in keys_dir.parent.iterdir()] == ["keys"]  # no staging leftovers
