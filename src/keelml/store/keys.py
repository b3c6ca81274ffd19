"""Project keys: an AES-256 master key and an Ed25519 signing key, from 0600 files or the environment."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from keelml.errors import KeyMaterialError
from keelml.store.atomic import TEMP_PREFIX, atomic_write_bytes, fsync_dir, private_dirs

MASTER_ENV = "KEEL_MASTER_KEY"
SIGNING_ENV = "KEEL_SIGNING_KEY"
MASTER_FILE = "master.key"
SIGNING_FILE = "signing.key"
PENDING_FILE = "master.key.next"
RETIRED_DIR = "retired"


@dataclass(frozen=True)
class KeyRing:
    """The keys a project needs. repr() never shows key material.

    `master_key` wraps new data keys. `other_master_keys` (a rotation's pending key, retired keys)
    only unwrap data keys that were wrapped with them. A KMS-backed ring would override
    `wrap_data_key` and `unwrap_data_key` and hold no key bytes.
    """

    master_key: bytes = field(repr=False)
    signing_key: Ed25519PrivateKey = field(repr=False)
    source: str = "file"
    other_master_keys: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def master_key_id(self) -> str:
        """A fingerprint naming the master key (safe to store: a hash of 256 random bits)."""
        return master_key_id(self.master_key)

    def wrap_data_key(self, data_key: bytes) -> tuple[str, bytes]:
        """(id of the wrapping master key, the data key wrapped with AES-KW)."""
        return self.master_key_id, aes_key_wrap(self.master_key, data_key)

    def unwrap_data_key(self, wrapped: bytes, kek: str | None) -> bytes | None:
        """The data key, or None when no master key this ring holds can unwrap it."""
        candidates = [self.master_key, *self.other_master_keys]
        if kek is not None:
            candidates = [k for k in candidates if master_key_id(k) == kek]
        for key in candidates:
            try:
                return aes_key_unwrap(key, wrapped)
            except (InvalidUnwrap, ValueError):
                continue
        return None

    def knows_master(self, kek: str) -> bool:
        return any(master_key_id(k) == kek for k in (self.master_key, *self.other_master_keys))

    @property
    def key_id(self) -> str:
        """Fingerprint of the signing public key (safe to log and store)."""
        return public_key_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data)


def master_key_id(key: bytes) -> str:
    return "aes:" + hashlib.sha256(b"keelml master key id\x00" + key).hexdigest()[:16]


def public_key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def _decode(value: str, what: str, length: int) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != length:
        raise KeyMaterialError(
            f"the {what} is not valid",
            expected=f"{length} bytes, base64-encoded",
            fix="restore the key from your backup, or create a new project with `keel init`",
        )
    return raw


def read_key_file(path: Path, what: str, length: int) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyMaterialError(
            f"the {what} file {path} is readable by other users (mode {oct(mode)})",
            expected="mode 0600 (only the owner may read it)",
            fix=f"run: chmod 600 {path}",
        )
    return _decode(path.read_text(encoding="ascii"), what, length)


def key_files_exist(keys_dir: Path) -> bool:
    return (keys_dir / MASTER_FILE).exists() or (keys_dir / SIGNING_FILE).exists()


def keys_in_environment(environ: Mapping[str, str] | None = None) -> bool:
    """True when both key variables are set; one without the other is an error."""
    env = os.environ if environ is None else environ
    master, signing = bool(env.get(MASTER_ENV)), bool(env.get(SIGNING_ENV))
    if master != signing:
        given, missing = (MASTER_ENV, SIGNING_ENV) if master else (SIGNING_ENV, MASTER_ENV)
        raise KeyMaterialError(
            f"${given} is set but ${missing} is not",
            expected="both key variables, or neither (then the key files are used)",
            fix=f"set ${missing} too, or unset ${given}",
        )
    return master and signing


def load_keys(keys_dir: Path, environ: Mapping[str, str] | None = None) -> KeyRing:
    """Keys from the environment when both variables are set, else from the key files."""
    env = os.environ if environ is None else environ
    if keys_in_environment(env):
        master = _decode(env[MASTER_ENV], f"master key in ${MASTER_ENV}", 32)
        seed = _decode(env[SIGNING_ENV], f"signing key in ${SIGNING_ENV}", 32)
        return KeyRing(master, Ed25519PrivateKey.from_private_bytes(seed), source="env")
    master_path, signing_path = keys_dir / MASTER_FILE, keys_dir / SIGNING_FILE
    if not (master_path.exists() and signing_path.exists()):
        raise KeyMaterialError(
            f"the project keys are missing from {keys_dir}",
            expected=f"{MASTER_FILE} and {SIGNING_FILE} there, or ${MASTER_ENV} and ${SIGNING_ENV} set",
            fix="run `keel init DIR` for a new project, or restore the keys of this store from your backup",
        )
    master = read_key_file(master_path, "master key", 32)
    seed = read_key_file(signing_path, "signing key", 32)
    others = [read_key_file(p, "master key", 32) for p in extra_master_key_files(keys_dir)]
    return KeyRing(master, Ed25519PrivateKey.from_private_bytes(seed), source="file", other_master_keys=tuple(others))


def extra_master_key_files(keys_dir: Path) -> list[Path]:
    """A rotation's pending key and the retired keys: they only unwrap what they wrapped."""
    pending = keys_dir / PENDING_FILE
    retired = sorted((keys_dir / RETIRED_DIR).glob("master-*.key")) if (keys_dir / RETIRED_DIR).is_dir() else []
    return [*([pending] if pending.exists() else []), *retired]


def create_keys(keys_dir: Path) -> KeyRing:
    """Create fresh keys as 0600 files, all at once; refuses to overwrite existing ones.

    Both files are written into a private temporary directory that is then renamed into place,
    so a crash leaves either no keys or both, and of two processes racing only one can win.
    """
    already = KeyMaterialError(
        f"keys already exist in {keys_dir}",
        expected="an empty keys directory",
        fix="keep the existing keys (data encrypted with them needs them), or move them away first",
    )
    if key_files_exist(keys_dir):
        raise already
    private_dirs(keys_dir.parent)
    staging = keys_dir.parent / f"{TEMP_PREFIX}keys-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    os.chmod(staging, 0o700)  # whatever the umask
    master = os.urandom(32)
    signing = Ed25519PrivateKey.generate()
    seed = signing.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    try:
        atomic_write_bytes(staging / MASTER_FILE, base64.b64encode(master) + b"\n", mode=0o600)
        atomic_write_bytes(staging / SIGNING_FILE, base64.b64encode(seed) + b"\n", mode=0o600)
        try:
            os.rename(staging, keys_dir)  # atomic; fails if another process's keys are already there
        except OSError:
            raise already from None
        fsync_dir(keys_dir.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return KeyRing(master, signing, source="file")
