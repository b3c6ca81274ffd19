"""Sealed files (the prediction log's): the artifact envelope, opened by whoever holds a ring that sealed them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from keelml.errors import IntegrityError, KeyMaterialError
from keelml.store.keys import create_keys
from keelml.store.sealed import (
    LOG_KEY_ENV,
    LOG_KEY_FILE_ENV,
    log_key_for,
    log_key_from_env,
    log_ring,
    open_sealed,
    reading_rings,
    seal_file,
)


def test_sealed_by_the_project_or_its_derived_log_key_and_opened_by_the_project(tmp_path: Path) -> None:
    keys = create_keys(tmp_path / "keys")
    secret = b"Canary-Zq7Xv in a row of the log"
    for ring in (keys, log_ring(log_key_for(keys))):
        blob = seal_file(secret, ring, codec="parquet")
        assert secret not in blob and blob.startswith(b"KEEL\x01")
        assert open_sealed(blob, reading_rings(keys, environ={}), where="f") == secret
    other = create_keys(tmp_path / "other")
    with pytest.raises(IntegrityError, match="does not hold"):
        open_sealed(seal_file(secret, other, codec="parquet"), reading_rings(keys, environ={}), where="f")
    blob = bytearray(seal_file(secret, keys, codec="parquet"))
    blob[-3] ^= 1
    with pytest.raises(IntegrityError, match="payload digest mismatch"):
        open_sealed(bytes(blob), [keys], where="f")


def test_the_log_key_comes_from_a_variable_or_a_file(tmp_path: Path) -> None:
    key = b"k" * 32
    (tmp_path / "key").write_text(base64.b64encode(key).decode() + "\n")
    assert log_key_from_env({}) is None
    assert log_key_from_env({LOG_KEY_ENV: base64.b64encode(key).decode()}) == key
    assert log_key_from_env({LOG_KEY_FILE_ENV: str(tmp_path / "key")}) == key
    with pytest.raises(KeyMaterialError, match="not valid"):
        log_key_from_env({LOG_KEY_ENV: "c2hvcnQ="})
    with pytest.raises(KeyMaterialError, match="cannot read"):
        log_key_from_env({LOG_KEY_FILE_ENV: str(tmp_path / "missing")})
    assert len(reading_rings(None, environ={LOG_KEY_ENV: base64.b64encode(key).decode()})) == 1


def test_a_large_payload_is_encrypted_in_chunks_exactly_as_aes_gcm_in_one_call(tmp_path: Path) -> None:
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from keelml.store.envelope import CHUNK, _encrypt

    key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(12)
    for size in (0, CHUNK, CHUNK + 1, 3 * CHUNK + 7):
        data = os.urandom(size)
        assert bytes(_encrypt(key, nonce, memoryview(data), b"id")) == AESGCM(key).encrypt(nonce, data, b"id")
    keys = create_keys(tmp_path / "keys")
    data = os.urandom(3 * CHUNK + 7)
    assert open_sealed(seal_file(memoryview(data), keys, codec="parquet"), [keys], where="f") == data
