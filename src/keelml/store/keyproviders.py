"""Where a project's keys come from: key files (0600) or environment variables, behind one interface.

A provider loads the KeyRing, creates keys for a new project, and stages and commits a new master
key for `keel keys rotate`. A KMS-backed provider would implement the same methods and return a
KeyRing whose `wrap_data_key` / `unwrap_data_key` call the KMS.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from keelml.errors import KeyMaterialError
from keelml.store.atomic import atomic_write_bytes, fsync_dir, private_dirs
from keelml.store.keys import (
    MASTER_ENV,
    MASTER_FILE,
    PENDING_FILE,
    RETIRED_DIR,
    KeyRing,
    create_keys,
    key_files_exist,
    keys_in_environment,
    load_keys,
    read_key_file,
)


class KeyProvider(Protocol):
    """The keys of one project."""

    source: str

    def exists(self) -> bool:
        """True when this provider holds keys (files present, variables set)."""

    def load(self) -> KeyRing:
        """The current keys (plus any pending or retired master keys, for unwrapping only)."""

    def create(self) -> KeyRing:
        """Fresh keys for a new project; refuses to replace existing ones."""

    def stage_master_key(self) -> KeyRing:
        """A ring whose master key is the new one (created, or the one a crashed rotation left)."""

    def commit_master_key(self) -> str:
        """Make the staged key current and retire the old one; returns the retired key's id."""


class FileKeyProvider:
    """keys/master.key and keys/signing.key (0600); a rotation stages keys/master.key.next."""

    source = "file"

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir

    def exists(self) -> bool:
        return key_files_exist(self.keys_dir)

    def load(self) -> KeyRing:
        return load_keys(self.keys_dir, environ={})

    def create(self) -> KeyRing:
        return create_keys(self.keys_dir)

    def stage_master_key(self) -> KeyRing:
        current = self.load()
        pending = self.keys_dir / PENDING_FILE
        if not pending.exists():
            # Written (and fsynced) before any artifact is wrapped with it: a crash cannot lose it.
            atomic_write_bytes(pending, base64.b64encode(os.urandom(32)) + b"\n", mode=0o600)
            current = self.load()
        new_master = read_key_file(pending, "staged master key", 32)
        others = tuple(k for k in (current.master_key, *current.other_master_keys) if k != new_master)
        return KeyRing(new_master, current.signing_key, source="file", other_master_keys=others)

    def commit_master_key(self) -> str:
        current = self.load()
        pending = self.keys_dir / PENDING_FILE
        if not pending.exists():
            raise KeyMaterialError("no staged master key to commit", expected=f"{pending} from `keel keys rotate`",
                                   fix="run `keel keys rotate`")
        old_id = current.master_key_id
        retired = self.keys_dir / RETIRED_DIR
        private_dirs(retired)
        # 1. keep a copy of the old key (unwrap only); 2. one atomic rename makes the new key current.
        atomic_write_bytes(retired / f"master-{old_id.removeprefix('aes:')}.key",
                           (self.keys_dir / MASTER_FILE).read_bytes(), mode=0o600)
        os.replace(pending, self.keys_dir / MASTER_FILE)
        fsync_dir(self.keys_dir)
        return old_id


class EnvKeyProvider:
    """$KEEL_MASTER_KEY and $KEEL_SIGNING_KEY (base64). keel cannot create or rotate them."""

    source = "env"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def exists(self) -> bool:
        return keys_in_environment(self.environ)

    def load(self) -> KeyRing:
        return load_keys(Path("/nonexistent-keel-keys"), environ=self.environ)

    def create(self) -> KeyRing:
        raise KeyMaterialError("keys given in environment variables cannot be created by keel",
                               expected="key files created by `keel init`", fix="unset the key variables, or set them")

    def stage_master_key(self) -> KeyRing:
        raise KeyMaterialError(
            f"the master key comes from ${MASTER_ENV}; keel cannot rotate a key it does not store",
            expected="key files (keys/master.key) for `keel keys rotate`",
            fix="unset the key variables and rotate with the key files, then export the new key from the file",
        )

    def commit_master_key(self) -> str:
        return self.stage_master_key().master_key_id


def provider_for(keys_dir: Path, environ: Mapping[str, str] | None = None) -> KeyProvider:
    """The environment when both key variables are set, else the key files in keys_dir."""
    env = EnvKeyProvider(environ)
    return env if env.exists() else FileKeyProvider(keys_dir)
