from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from keelml.errors import IntegrityError, NotFoundError
from keelml.store.artifacts import ArtifactStore
from keelml.store.keys import KeyRing, create_keys


def _file(store: ArtifactStore, artifact_id: str) -> Path:
    return Path(store.root) / "objects" / artifact_id[:2] / artifact_id


def test_round_trip_is_content_addressed(artifacts: ArtifactStore) -> None:
    data = b"hello artifact" * 100
    artifact_id = artifacts.put(data, codec="bytes")
    assert artifact_id == hashlib.sha256(data).hexdigest()
    assert artifacts.get(artifact_id) == data
    assert artifacts.put(data, codec="bytes") == artifact_id  # deduplicated
    assert list(artifacts.ids()) == [artifact_id]


def test_encrypted_at_rest(artifacts: ArtifactStore) -> None:
    secret = b"patient-id,diagnosis\n123,positive\n" * 20
    artifact_id = artifacts.put(secret, codec="bytes")
    raw = _file(artifacts, artifact_id).read_bytes()
    assert b"patient-id" not in raw and b"positive" not in raw
    assert artifacts.header(artifact_id)["enc"]["alg"] == "AES-256-GCM"


def test_encryption_off_stores_plaintext_but_still_signs(tmp_path: Path, keys: KeyRing) -> None:
    store = ArtifactStore(str(tmp_path / "plain"), keys, encrypt=False)
    artifact_id = store.put(b"visible text", codec="text")
    assert b"visible text" in _file(store, artifact_id).read_bytes()
    assert store.header(artifact_id)["enc"] is None
    assert store.verify_all().ok


@pytest.mark.parametrize("offset_from_end", [1, 5, 40])
def test_flipped_payload_bit_is_refused(artifacts: ArtifactStore, offset_from_end: int) -> None:
    artifact_id = artifacts.put(b"x" * 1000, codec="bytes")
    path = _file(artifacts, artifact_id)
    blob = bytearray(path.read_bytes())
    blob[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="digest mismatch"):
        artifacts.get(artifact_id)
    report = artifacts.verify_all()
    assert not report.ok and report.checked == 1


def test_altered_header_breaks_the_signature(artifacts: ArtifactStore) -> None:
    artifact_id = artifacts.put(b"y" * 100, codec="bytes")
    path = _file(artifacts, artifact_id)
    blob = path.read_bytes().replace(b'"codec":"bytes"', b'"codec":"model"')
    path.write_bytes(blob)
    with pytest.raises(IntegrityError, match="signature check failed"):
        artifacts.get(artifact_id)


def test_foreign_key_is_refused(tmp_path: Path, artifacts: ArtifactStore) -> None:
    other = ArtifactStore(str(tmp_path / "other"), create_keys(tmp_path / "other-keys"))
    artifact_id = other.put(b"from elsewhere", codec="bytes")
    target = _file(artifacts, artifact_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(_file(other, artifact_id).read_bytes())
    with pytest.raises(IntegrityError, match="untrusted key"):
        artifacts.get(artifact_id)


def test_swapped_files_are_detected(artifacts: ArtifactStore) -> None:
    first = artifacts.put(b"first", codec="bytes")
    second = artifacts.put(b"second", codec="bytes")
    _file(artifacts, first).write_bytes(_file(artifacts, second).read_bytes())
    with pytest.raises(IntegrityError, match="not"):
        artifacts.get(first)


def test_wrong_master_key_cannot_decrypt(tmp_path: Path, keys: KeyRing) -> None:
    store = ArtifactStore(str(tmp_path / "s"), keys)
    artifact_id = store.put(b"secret", codec="bytes")
    stranger = KeyRing(b"\x00" * 32, keys.signing_key)
    with pytest.raises(IntegrityError, match="cannot decrypt"):
        ArtifactStore(str(tmp_path / "s"), stranger).get(artifact_id)


def test_missing_artifact_and_bad_ids(artifacts: ArtifactStore) -> None:
    with pytest.raises(NotFoundError, match="missing"):
        artifacts.get("0" * 64)
    with pytest.raises(NotFoundError, match="not an artifact id"):
        artifacts.get("../../etc/passwd")


def test_leftover_temp_files_are_not_artifacts(artifacts: ArtifactStore) -> None:
    artifact_id = artifacts.put(b"z", codec="bytes")
    (_file(artifacts, artifact_id).parent / ".tmp-half-written").write_bytes(b"partial")
    report = artifacts.verify_all()
    assert report.ok and report.leftover_temp_files == 1 and report.checked == 1


def test_fsspec_memory_filesystem(keys: KeyRing) -> None:
    store = ArtifactStore("memory://keel-test-store", keys)
    artifact_id = store.put(b"remote bytes", codec="bytes")
    assert store.get(artifact_id) == b"remote bytes"
    assert store.verify_all().ok


def test_put_replaces_a_damaged_copy(artifacts: ArtifactStore) -> None:
    artifact_id = artifacts.put(b"payload" * 10, codec="bytes")
    path = _file(artifacts, artifact_id)
    path.write_bytes(path.read_bytes()[:-5])  # truncated
    assert artifacts.problem(artifact_id) is not None
    assert artifacts.put(b"payload" * 10, codec="bytes") == artifact_id
    assert artifacts.problem(artifact_id) is None and artifacts.get(artifact_id) == b"payload" * 10


def test_turning_encryption_on_reseals_existing_artifacts(tmp_path: Path, keys: KeyRing) -> None:
    plain = ArtifactStore(str(tmp_path / "s"), keys, encrypt=False)
    artifact_id = plain.put(b"sensitive rows", codec="bytes")
    assert b"sensitive rows" in _file(plain, artifact_id).read_bytes()
    encrypted = ArtifactStore(str(tmp_path / "s"), keys, encrypt=True)
    assert encrypted.problem(artifact_id) is None  # resealed in place
    assert b"sensitive rows" not in _file(encrypted, artifact_id).read_bytes()
    assert encrypted.header(artifact_id)["enc"]["alg"] == "AES-256-GCM"
    assert encrypted.get(artifact_id) == b"sensitive rows"
