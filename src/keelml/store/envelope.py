"""The artifact envelope: a signed header, then the (optionally AES-256-GCM encrypted) payload.

Layout: MAGIC | 4-byte big-endian header length | canonical JSON header | payload.
The header holds the artifact id (SHA-256 of the plaintext), the payload's SHA-256, the wrapped
data key and nonce when encrypted, the signer's key id and an Ed25519 signature over the rest.
A signature check needs no decryption, so the whole store can be verified cheaply.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from keelml.errors import IntegrityError
from keelml.store.keys import KeyRing, public_key_id

MAGIC = b"KEEL\x01"
REPAIR = ("if you did not expect this, treat the store as tampered with; otherwise re-run the pipeline: "
          "a damaged artifact is recomputed and rewritten (`keel verify` lists them all)")
MAX_HEADER = 64 * 1024


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(plaintext: bytes, *, codec: str, keys: KeyRing, encrypt: bool) -> tuple[str, bytes]:
    """Return (artifact id, envelope bytes) for plaintext."""
    artifact_id = sha256_hex(plaintext)
    enc: dict[str, str] | None = None
    payload = plaintext
    if encrypt:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        payload = AESGCM(data_key).encrypt(nonce, plaintext, artifact_id.encode())
        enc = {
            "alg": "AES-256-GCM",
            "nonce": base64.b64encode(nonce).decode(),
            "wrap": "AES-KW",
            "wrapped_key": base64.b64encode(aes_key_wrap(keys.master_key, data_key)).decode(),
        }
    header: dict[str, Any] = {
        "v": 1,
        "id": artifact_id,
        "codec": codec,
        "size": len(plaintext),
        "payload_sha256": sha256_hex(payload),
        "enc": enc,
        "key_id": keys.key_id,
    }
    header["sig"] = base64.b64encode(keys.sign(canonical_json(header))).decode()
    raw_header = canonical_json(header)
    return artifact_id, MAGIC + struct.pack(">I", len(raw_header)) + raw_header + payload


def split(blob: bytes, *, where: str) -> tuple[dict[str, Any], bytes]:
    """Parse an envelope into (header, payload) without checking anything else."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise IntegrityError(
            f"{where} is not a keelml artifact (bad magic bytes)",
            expected="a file written by keelml's artifact store",
            fix=REPAIR,
        )
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if length > MAX_HEADER or start + length > len(blob):
        raise IntegrityError(f"{where} has a corrupt header", fix=REPAIR)
    try:
        header = json.loads(blob[start : start + length])
    except ValueError:
        raise IntegrityError(f"{where} has an unreadable header", fix=REPAIR) from None
    if not isinstance(header, dict):
        raise IntegrityError(f"{where} has a malformed header", fix=REPAIR)
    return header, blob[start + length :]


def check(blob: bytes, *, expected_id: str, trusted: dict[str, Ed25519PublicKey], where: str) -> dict[str, Any]:
    """Verify signature, id and payload digest; return the header. Raises IntegrityError."""
    header, payload = split(blob, where=where)
    key = trusted.get(str(header.get("key_id")))
    if key is None:
        raise IntegrityError(
            f"{where} is signed by an untrusted key {header.get('key_id')!r}",
            expected="a signature by this project's signing key",
            fix="artifacts from another project cannot be read here; copy the data, not the store's files",
        )
    unsigned = {k: v for k, v in header.items() if k != "sig"}
    try:
        key.verify(base64.b64decode(str(header.get("sig", ""))), canonical_json(unsigned))
    except (InvalidSignature, ValueError):
        raise IntegrityError(
            f"{where}: signature check failed (the header was altered)",
            expected="an untouched artifact signed by this project",
            fix=REPAIR,
        ) from None
    if header.get("id") != expected_id:
        raise IntegrityError(f"{where}: holds artifact {header.get('id')!r}, not {expected_id!r}",
                             fix=REPAIR)
    if sha256_hex(payload) != header.get("payload_sha256"):
        raise IntegrityError(
            f"{where}: payload digest mismatch (bytes changed on disk)",
            expected=f"SHA-256 {header.get('payload_sha256')}",
            fix=REPAIR,
        )
    return header


def open_payload(blob: bytes, header: dict[str, Any], keys: KeyRing, *, where: str) -> bytes:
    """Decrypt (if needed) a checked envelope and confirm the plaintext digest."""
    _, payload = split(blob, where=where)
    enc = header.get("enc")
    plaintext = payload
    if enc:
        try:
            data_key = aes_key_unwrap(keys.master_key, base64.b64decode(enc["wrapped_key"]))
            plaintext = AESGCM(data_key).decrypt(
                base64.b64decode(enc["nonce"]), payload, str(header["id"]).encode()
            )
        except (InvalidUnwrap, InvalidTag, KeyError, ValueError):
            raise IntegrityError(
                f"{where}: cannot decrypt with this project's master key",
                expected="the master key that encrypted this store",
                fix="set the right key file or $KEEL_MASTER_KEY; keys are never stored inside the store",
            ) from None
    if sha256_hex(plaintext) != header["id"]:
        raise IntegrityError(f"{where}: content digest mismatch", fix=REPAIR)
    return plaintext


def trusted_from(keys: KeyRing, extra: list[Ed25519PublicKey] | None = None) -> dict[str, Ed25519PublicKey]:
    trusted = {keys.key_id: keys.public_key}
    for key in extra or []:
        trusted[public_key_id(key)] = key
    return trusted
