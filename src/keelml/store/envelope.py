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
from typing import Any, TypeAlias

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keelml.errors import IntegrityError
from keelml.store.keys import KeyRing, public_key_id

MAGIC = b"KEEL\x01"
REPAIR = ("if you did not expect this, treat the store as tampered with; otherwise re-run the pipeline: "
          "a damaged artifact is recomputed and rewritten (`keel verify` lists them all)")
MAX_HEADER = 64 * 1024
CHUNK = 1 << 20  # larger payloads are encrypted a chunk at a time (see _encrypt)
Buffer: TypeAlias = bytes | bytearray | memoryview


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_hex(data: Buffer) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(plaintext: bytes, *, codec: str, keys: KeyRing, encrypt: bool) -> tuple[str, bytes]:
    """Return (artifact id, envelope bytes) for plaintext."""
    artifact_id, prefix, payload = seal_parts(plaintext, codec=codec, keys=keys, encrypt=encrypt)
    return artifact_id, prefix + payload


def seal_parts(plaintext: Buffer, *, codec: str, keys: KeyRing, encrypt: bool) -> tuple[str, bytes, Buffer]:
    """(artifact id, envelope prefix, payload): the envelope is the prefix (magic, length, signed header) then
    the payload, given apart so that a large one is written without being copied again."""
    artifact_id = sha256_hex(plaintext)
    enc: dict[str, str] | None = None
    payload = plaintext
    if encrypt:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        payload = _encrypt(data_key, nonce, plaintext, artifact_id.encode())
        enc = {"alg": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode(), **_wrapped(data_key, keys)}
    return artifact_id, _prefix(artifact_id, codec, len(plaintext), payload, enc, keys), payload


def _encrypt(key: bytes, nonce: bytes, plaintext: Buffer, aad: bytes) -> Buffer:
    """AES-256-GCM: the ciphertext then the 16-byte tag, exactly what AESGCM.encrypt returns.

    A large payload is encrypted a chunk at a time into one buffer: cryptography's one-shot call
    holds the interpreter lock for the whole payload, so a server sealing its prediction log would
    stall its requests (about 0.1 s for 64 MiB).
    """
    if len(plaintext) <= CHUNK:
        return AESGCM(key).encrypt(nonce, bytes(plaintext), aad)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    size = len(plaintext)
    out = bytearray(size + 16)
    source, target = memoryview(plaintext).cast("B"), memoryview(out)
    for start in range(0, size, CHUNK):
        chunk = source[start:start + CHUNK]
        encryptor.update_into(chunk, target[start:start + len(chunk) + 15])
    encryptor.finalize()
    out[size:] = encryptor.tag
    return out


def _wrapped(data_key: bytes, keys: KeyRing) -> dict[str, str]:
    kek, wrapped = keys.wrap_data_key(data_key)
    return {"wrap": "AES-KW", "kek": kek, "wrapped_key": base64.b64encode(wrapped).decode()}


def _assemble(artifact_id: str, codec: str, size: int, payload: bytes, enc: dict[str, str] | None,
              keys: KeyRing) -> bytes:
    """Header (signed with the project's key) and payload, in the envelope layout."""
    return _prefix(artifact_id, codec, size, payload, enc, keys) + payload


def _prefix(artifact_id: str, codec: str, size: int, payload: Buffer, enc: dict[str, str] | None,
            keys: KeyRing) -> bytes:
    """The envelope up to its payload: magic, header length and the header signed with the project's key."""
    header: dict[str, Any] = {
        "v": 1,
        "id": artifact_id,
        "codec": codec,
        "size": size,
        "payload_sha256": sha256_hex(payload),
        "enc": enc,
        "key_id": keys.key_id,
    }
    header["sig"] = base64.b64encode(keys.sign(canonical_json(header))).decode()
    raw_header = canonical_json(header)
    return MAGIC + struct.pack(">I", len(raw_header)) + raw_header


def rewrap(blob: bytes, header: dict[str, Any], keys: KeyRing, *, where: str) -> bytes | None:
    """The same envelope with its data key re-wrapped by keys' current master key and re-signed.

    The payload (ciphertext) is kept byte for byte. None when there is nothing to do: the artifact
    is not encrypted, or already wrapped by the current master key. `header` must be checked.
    """
    enc = header.get("enc")
    if not enc or enc.get("kek") == keys.master_key_id:
        return None
    _, payload = split(blob, where=where)
    data_key = _unwrap(enc, keys, where=where)
    new_enc = {**{k: v for k, v in enc.items() if k not in ("wrap", "kek", "wrapped_key")}, **_wrapped(data_key, keys)}
    return _assemble(str(header["id"]), str(header["codec"]), int(header["size"]), payload, new_enc, keys)


def _unwrap(enc: dict[str, Any], keys: KeyRing, *, where: str) -> bytes:
    kek = enc.get("kek")
    try:
        data_key = keys.unwrap_data_key(base64.b64decode(enc["wrapped_key"]), kek if isinstance(kek, str) else None)
    except (KeyError, ValueError, TypeError):
        data_key = None
    if data_key is None:
        which = f" (it was wrapped by master key {kek}; this project's is {keys.master_key_id})" \
            if isinstance(kek, str) and not keys.knows_master(kek) else ""
        raise IntegrityError(
            f"{where}: cannot decrypt with this project's master key{which}",
            expected="the master key that encrypted this store",
            fix="set the right key file or $KEEL_MASTER_KEY; keys are never stored inside the store",
        )
    return data_key


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
        data_key = _unwrap(enc, keys, where=where)
        try:
            # The artifact id is the associated data: a payload moved under another id fails here.
            plaintext = AESGCM(data_key).decrypt(
                base64.b64decode(enc["nonce"]), payload, str(header["id"]).encode()
            )
        except (InvalidTag, KeyError, ValueError):
            raise IntegrityError(
                f"{where}: decryption failed (the ciphertext does not authenticate under its id)",
                expected="the payload sealed for this artifact id",
                fix=REPAIR,
            ) from None
    if sha256_hex(plaintext) != header["id"]:
        raise IntegrityError(f"{where}: content digest mismatch", fix=REPAIR)
    return plaintext


def trusted_from(keys: KeyRing, extra: list[Ed25519PublicKey] | None = None) -> dict[str, Ed25519PublicKey]:
    trusted = {keys.key_id: keys.public_key}
    for key in extra or []:
        trusted[public_key_id(key)] = key
    return trusted
