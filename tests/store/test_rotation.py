"""Encryption details and master-key rotation: AAD binds the id, rotation re-wraps without re-encrypting."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from keelml.errors import IntegrityError, KeyMaterialError
from keelml.store import envelope
from keelml.store.artifacts import ArtifactStore
from keelml.store.audit import AuditLog
from keelml.store.keyproviders import EnvKeyProvider, FileKeyProvider, provider_for
from keelml.store.keys import KeyRing, create_keys, load_keys
from keelml.store.metadata import MetadataStore
from keelml.store.rotation import rotate_master_key


def _file(store: ArtifactStore, artifact_id: str) -> Path:
    return Path(store.root) / "objects" / artifact_id[:2] / artifact_id


def _payload(blob: bytes) -> bytes:
    return envelope.split(blob, where="t")[1]


def test_the_artifact_id_is_bound_as_associated_data(tmp_path: Path, keys: KeyRing) -> None:
    store = ArtifactStore(str(tmp_path / "s"), keys)
    first, second = store.put(b"first payload", codec="bytes"), store.put(b"second payload", codec="bytes")
    # A correctly signed header naming `first`, carrying the ciphertext and data key sealed for `second`.
    header, payload = envelope.split(_file(store, second).read_bytes(), where="t")
    forged = {k: v for k, v in header.items() if k != "sig"}
    forged["id"], forged["size"] = first, len(b"first payload")
    forged["sig"] = base64.b64encode(keys.sign(envelope.canonical_json(forged))).decode()
    raw = envelope.canonical_json(forged)
    _file(store, first).write_bytes(envelope.MAGIC + len(raw).to_bytes(4, "big") + raw + payload)
    with pytest.raises(IntegrityError, match="does not authenticate under its id"):
        store.get(first)


def test_encryption_off_stores_signed_plaintext(tmp_path: Path, keys: KeyRing) -> None:
    store = ArtifactStore(str(tmp_path / "s"), keys, encrypt=False)
    artifact_id = store.put(b"visible bytes", codec="bytes")
    assert b"visible bytes" in _file(store, artifact_id).read_bytes()
    assert store.header(artifact_id)["enc"] is None and store.get(artifact_id) == b"visible bytes"


def test_headers_name_the_wrapping_master_key(tmp_path: Path, keys: KeyRing) -> None:
    store = ArtifactStore(str(tmp_path / "s"), keys)
    enc = store.header(store.put(b"x", codec="bytes"))["enc"]
    assert enc["kek"] == keys.master_key_id and keys.master_key_id.startswith("aes:")
    stranger = KeyRing(os.urandom(32), keys.signing_key)
    with pytest.raises(IntegrityError, match=f"wrapped by master key {keys.master_key_id}"):
        ArtifactStore(str(tmp_path / "s"), stranger).get(store.put(b"y", codec="bytes"))


def _populated(tmp_path: Path, n: int = 12) -> tuple[Path, list[str], dict[str, bytes]]:
    keys_dir = tmp_path / "keys"
    keys = create_keys(keys_dir)
    store = ArtifactStore(str(tmp_path / "store"), keys)
    ids = [store.put(f"artifact {i}".encode() * 50, codec="bytes") for i in range(n)]
    ids.append(ArtifactStore(str(tmp_path / "store"), keys, encrypt=False).put(b"plain", codec="bytes"))
    return keys_dir, ids, {a: _file(store, a).read_bytes() for a in ids}


def test_rotation_rewraps_every_data_key_and_keeps_payloads(tmp_path: Path) -> None:
    keys_dir, ids, before = _populated(tmp_path)
    old = load_keys(keys_dir, environ={})
    metadata = MetadataStore(f"sqlite:///{tmp_path / 'keel.db'}")
    audit = AuditLog(metadata, old)
    report = rotate_master_key(str(tmp_path / "store"), FileKeyProvider(keys_dir), audit=audit, actor="ops")
    new = load_keys(keys_dir, environ={})
    assert new.master_key != old.master_key and report.new_key_id == new.master_key_id
    assert (report.rewrapped, report.unchanged, report.problems) == (12, 1, [])
    store = ArtifactStore(str(tmp_path / "store"), new)
    for artifact_id in ids:
        after = _file(store, artifact_id).read_bytes()
        assert _payload(after) == _payload(before[artifact_id])  # ciphertext untouched
        assert store.get(artifact_id).startswith((b"artifact", b"plain"))
        enc = store.header(artifact_id)["enc"]
        assert enc is None or enc["kek"] == new.master_key_id
    # The old key is retired: kept 0600 in keys/retired, no longer current.
    retired = list((keys_dir / "retired").iterdir())
    assert len(retired) == 1 and stat.S_IMODE(retired[0].stat().st_mode) == 0o600
    assert not (keys_dir / "master.key.next").exists()
    only_old = KeyRing(old.master_key, old.signing_key)
    with pytest.raises(IntegrityError, match="cannot decrypt"):
        ArtifactStore(str(tmp_path / "store"), only_old).get(ids[0])
    rows = audit.records(event="key_rotation")
    assert rows[0]["details"]["new_master_key_id"] == new.master_key_id and rows[0]["actor"] == "ops"
    assert audit.verify().ok
    metadata.close()


def test_an_interrupted_rotation_stays_readable_and_resumes(tmp_path: Path) -> None:
    keys_dir, ids, _ = _populated(tmp_path)
    old = load_keys(keys_dir, environ={})

    def crash(done: int) -> None:
        if done == 5:
            raise KeyboardInterrupt  # the process dies after re-wrapping a few artifacts

    with pytest.raises(KeyboardInterrupt):
        rotate_master_key(str(tmp_path / "store"), FileKeyProvider(keys_dir), progress=crash)
    assert (keys_dir / "master.key.next").exists() and not (tmp_path / "store" / "rotate.lock").exists()
    during = load_keys(keys_dir, environ={})
    assert during.master_key == old.master_key  # not switched yet
    store = ArtifactStore(str(tmp_path / "store"), during)
    assert all(store.get(a) for a in ids)  # half re-wrapped: every artifact still reads
    assert store.verify_all().ok
    report = rotate_master_key(str(tmp_path / "store"), FileKeyProvider(keys_dir))
    assert report.resumed and report.problems == []
    final = load_keys(keys_dir, environ={})
    assert final.master_key_id == report.new_key_id
    store = ArtifactStore(str(tmp_path / "store"), KeyRing(final.master_key, final.signing_key))  # new key only
    assert all(store.get(a) for a in ids)


def test_a_second_rotation_at_the_same_time_is_refused(tmp_path: Path) -> None:
    keys_dir, _, _ = _populated(tmp_path, n=1)
    lock = tmp_path / "store" / "rotate.lock"
    import socket

    lock.write_text(f"{os.getpid()} {socket.gethostname()}")  # held by a live process
    with pytest.raises(KeyMaterialError, match="another key rotation is running"):
        rotate_master_key(str(tmp_path / "store"), FileKeyProvider(keys_dir))
    lock.write_text(f"999999999 {socket.gethostname()}")  # left by a dead one: taken over
    assert rotate_master_key(str(tmp_path / "store"), FileKeyProvider(keys_dir)).rewrapped == 1


def test_providers(tmp_path: Path) -> None:
    env = {"KEEL_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "KEEL_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode()}
    provider = provider_for(tmp_path / "keys", env)
    assert isinstance(provider, EnvKeyProvider) and provider.load().source == "env"
    with pytest.raises(KeyMaterialError, match="cannot rotate a key it does not store"):
        rotate_master_key(str(tmp_path / "store"), provider)
    files = provider_for(tmp_path / "keys", {})
    assert isinstance(files, FileKeyProvider) and not files.exists()
    created = files.create()
    assert files.exists() and files.load().key_id == created.key_id
    assert created.master_key.hex() not in repr(created)
