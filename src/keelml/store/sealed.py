"""Sealed files: data files kept outside the artifact store (the prediction log), in the artifact envelope.

A sealed file is exactly an artifact's envelope (`envelope.py`: signed header, AES-256-GCM payload
under a fresh data key wrapped by a master key, the plaintext's SHA-256 as associated data), but it
is named by its writer, not by its digest, so opening it takes the id from its own (signed) header.

Which keys seal it:

- in a project, the project's own keys (`KeyRing`: the master key wraps, the signing key signs);
- a server started from an exported bundle has no store and no project key: it seals with a *log
  key*, 32 bytes given in ``KEEL_LOG_KEY`` (base64) or in the file named by ``KEEL_LOG_KEY_FILE``.
  `keel containerize` writes the log key `log_key_for(project keys)` derives from the project's
  master key (HKDF-SHA256), so the project reads such logs with its own keys and no extra setting;
  the log key opens and signs prediction logs only, never artifacts.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keelml.errors import IntegrityError, KeyMaterialError
from keelml.store import envelope
from keelml.store.keys import KeyRing

MAGIC = envelope.MAGIC
SEALED_SUFFIX = ".sealed"  # a sealed file's name ends in it (the prediction log: *.parquet.sealed)
LOG_KEY_ENV = "KEEL_LOG_KEY"
LOG_KEY_FILE_ENV = "KEEL_LOG_KEY_FILE"
_FIX = ("if you did not expect this, treat the file as tampered with and move it out; a file sealed by "
        "another project or log key cannot be read with these keys")


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"keelml " + label).derive(secret)


def log_key_for(project_keys: KeyRing) -> bytes:
    """The log key a server without a store uses for this project (derived from the current master key)."""
    return _log_key(project_keys.master_key)


def _log_key(master_key: bytes) -> bytes:
    return _derive(master_key, b"prediction log key")


def log_ring(log_key: bytes) -> KeyRing:
    """The key ring a log key stands for: a wrapping key and an Ed25519 signing key, both derived from it."""
    seed = _derive(log_key, b"prediction log signing key")
    return KeyRing(_derive(log_key, b"prediction log master key"), Ed25519PrivateKey.from_private_bytes(seed),
                   source="log-key")


def reading_rings(project_keys: KeyRing | None, environ: Mapping[str, str] | None = None) -> list[KeyRing]:
    """Every ring that may have sealed this project's logs: its own keys, the log keys derived from each of
    its master keys (current, pending, retired: logs written by exported servers) and ``KEEL_LOG_KEY``."""
    rings: list[KeyRing] = []
    if project_keys is not None:
        rings.append(project_keys)
        for master in (project_keys.master_key, *project_keys.other_master_keys):
            rings.append(log_ring(_log_key(master)))
    given = log_key_from_env(environ)
    if given is not None:
        rings.append(log_ring(given))
    return rings


def log_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The log key from ``KEEL_LOG_KEY`` (base64) or the file ``KEEL_LOG_KEY_FILE`` names; None when neither is set."""
    env = os.environ if environ is None else environ
    text, where = env.get(LOG_KEY_ENV, ""), f"${LOG_KEY_ENV}"
    if not text and env.get(LOG_KEY_FILE_ENV):
        where = f"the file ${LOG_KEY_FILE_ENV} names ({env[LOG_KEY_FILE_ENV]})"
        try:
            text = Path(env[LOG_KEY_FILE_ENV]).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyMaterialError(f"cannot read the log key in {where}: {type(exc).__name__}",
                                   expected="a readable file holding 32 bytes, base64-encoded",
                                   fix="mount the file `keel containerize` wrote as secrets/keel_log_key") from None
    if not text:
        return None
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise KeyMaterialError(f"the log key in {where} is not valid", expected="32 bytes, base64-encoded",
                               fix="use the key `keel containerize` wrote to secrets/keel_log_key")
    return raw


def is_sealed(head: bytes) -> bool:
    return head.startswith(MAGIC)


def seal_file(plaintext: envelope.Buffer, ring: KeyRing, *, codec: str) -> bytes:
    """The sealed (encrypted and signed) form of a file's bytes."""
    prefix, payload = sealed_parts(plaintext, ring, codec=codec)
    return prefix + payload


def sealed_parts(plaintext: envelope.Buffer, ring: KeyRing, *, codec: str) -> tuple[bytes, envelope.Buffer]:
    """The sealed form as (prefix, payload), to be written one after the other without another copy."""
    _, prefix, payload = envelope.seal_parts(plaintext, codec=codec, keys=ring, encrypt=True)
    return prefix, payload


def open_sealed(blob: bytes, rings: Sequence[KeyRing], *, where: str) -> bytes:
    """The plaintext of a sealed file, after its signature, payload digest, decryption and content digest.

    The signer must be one of `rings`, and that ring must unwrap the data key; anything else is an
    IntegrityError (exit 3).
    """
    header, _ = envelope.split(blob, where=where)
    ring = next((r for r in rings if r.key_id == header.get("key_id")), None)
    if ring is None:
        raise IntegrityError(f"{where} is sealed by a key this project does not hold ({header.get('key_id')!r})",
                             expected="a file sealed by this project's server (its keys, or its log key)",
                             fix=f"{_FIX} (a server without a store seals with {LOG_KEY_ENV}: set it to read)")
    checked = envelope.check(blob, expected_id=str(header.get("id")), trusted={ring.key_id: ring.public_key},
                             where=where)
    return envelope.open_payload(blob, checked, ring, where=where)
