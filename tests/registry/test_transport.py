"""Export and import: a verified round trip, and every kind of tampered or hostile archive refused by name."""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.registry.conftest import put_bundle

from keelml.errors import InputError, IntegrityError
from keelml.registry import Registry, build_bundle
from keelml.store.artifacts import ArtifactStore
from keelml.store.envelope import canonical_json
from keelml.store.keys import KeyRing, create_keys
from keelml.store.metadata import MetadataStore
from keelml.store.trust import TrustStore, public_key_pem


@dataclass
class Side:
    keys: KeyRing
    artifacts: ArtifactStore
    registry: Registry
    trust: TrustStore
    root: Path


def _side(root: Path) -> Side:
    keys = create_keys(root / "keys")
    artifacts = ArtifactStore(str(root / "store"), keys)
    registry = Registry(MetadataStore(f"sqlite:///{root / 'keel.db'}"), artifacts, keys)
    return Side(keys, artifacts, registry, TrustStore(root / "keys"), root)


@pytest.fixture
def sides(tmp_path: Path) -> tuple[Side, Side, Path]:
    """Project a with model m v1 exported to an archive; project b trusts a's key."""
    a, b = _side(tmp_path / "a"), _side(tmp_path / "b")
    a.registry.register("m", put_bundle(a.artifacts, a.keys, train_digest="cd" * 32), run_id="run-a",
                        summary={}, lineage={"spec": {"path": "p.yaml", "digest": "ef" * 32}})
    archive = tmp_path / "m.keel"
    a.registry.export_bundle("m", 1, archive)
    b.trust.add("team-a", public_key_pem(a.keys))
    return a, b, archive


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _objects(side: Side) -> list[Path]:
    objects = side.root / "store" / "objects"
    return sorted(objects.rglob("*")) if objects.exists() else []


def test_round_trip_reencrypts_and_keeps_the_origin(sides: tuple[Side, Side, Path]) -> None:
    a, b, archive = sides
    assert set(_members(archive)) == {"keel-export.json", "keel-export.sig", "manifest.json", "manifest.sig",
                                      "components/model", "components/contract", "components/metrics",
                                      "components/cv", "components/verdict"}
    reg = b.registry.import_bundle(archive, b.trust, actor="importer")
    assert (reg.name, reg.version, reg.created) == ("m", 1, True)
    report = b.registry.verify("m", 1)
    assert report["signed_by"] == b.keys.key_id and report["model_types"] >= 0
    for entry in report["components"].values():  # re-encrypted under b's keys
        header = b.artifacts.header(entry["sha256"])
        assert header["key_id"] == b.keys.key_id and header["enc"]["kek"] == b.keys.master_key_id
    facts = b.registry.lineage("m", 1)
    assert facts["origin"]["trusted_as"] == "team-a" and facts["origin"]["signed_by"] == a.keys.key_id
    assert facts["data_digests"] == {"train": "cd" * 32} and facts["spec"]["digest"] == "ef" * 32
    _, bundle = b.registry.bundle("m", 1)
    assert bundle["manifest"]["imported_from"]["manifest"]["signed_by"] == a.keys.key_id
    events = [(r["event"], r["actor"]) for r in b.registry.audit.records()]
    assert ("registration", "importer") in events and ("import", "importer") in events
    assert [r["event"] for r in a.registry.audit.records()] == ["registration", "export"]
    again = b.registry.import_bundle(archive, b.trust)
    assert (again.version, again.created) == (1, False)
    assert b.registry.load_model("m").model.predict([[3.0]])[0] == 1


def test_an_untrusted_signer_is_refused(tmp_path: Path, sides: tuple[Side, Side, Path]) -> None:
    _, _, archive = sides
    c = _side(tmp_path / "c")
    untrusted = r"'manifest.json' is signed by .* which this project does not trust"
    with pytest.raises(IntegrityError, match=untrusted) as info:
        c.registry.import_bundle(archive, c.trust)
    assert "keel keys trust" in str(info.value)
    assert c.registry.models() == [] and _objects(c) == []
    assert c.registry.audit.records(event="verification_failure")


@pytest.mark.parametrize("member", ["keel-export.json", "keel-export.sig", "manifest.json", "manifest.sig",
                                    "components/model", "components/contract", "components/metrics",
                                    "components/cv", "components/verdict"])
def test_a_flipped_byte_in_any_file_is_refused_naming_it(tmp_path: Path, sides: tuple[Side, Side, Path],
                                                         member: str) -> None:
    _, b, archive = sides
    members = _members(archive)
    data = bytearray(members[member])
    data[len(data) // 2] ^= 0x01
    members[member] = bytes(data)
    with pytest.raises(IntegrityError, match=f"'{member}'"):
        b.registry.import_bundle(_write(tmp_path / "flipped.keel", members), b.trust)
    assert b.registry.models() == []


@pytest.mark.parametrize("member", ["keel-export.json", "keel-export.sig", "manifest.json", "manifest.sig",
                                    "components/model", "components/cv"])
def test_a_removed_file_is_refused_naming_it(tmp_path: Path, sides: tuple[Side, Side, Path], member: str) -> None:
    _, b, archive = sides
    members = _members(archive)
    del members[member]
    with pytest.raises(IntegrityError, match=f"'{member}' is missing"):
        b.registry.import_bundle(_write(tmp_path / "removed.keel", members), b.trust)


@pytest.mark.parametrize("added", ["notes.txt", "components/extra"])
def test_an_added_file_is_refused_naming_it(tmp_path: Path, sides: tuple[Side, Side, Path], added: str) -> None:
    _, b, archive = sides
    members = {**_members(archive), added: b"surprise"}
    with pytest.raises(IntegrityError, match=f"unexpected file '{added}'"):
        b.registry.import_bundle(_write(tmp_path / "added.keel", members), b.trust)


def test_another_signer_is_refused(tmp_path: Path, sides: tuple[Side, Side, Path]) -> None:
    a, b, archive = sides
    members = _members(archive)
    mallory = create_keys(tmp_path / "mallory")
    # Re-signed by mallory under a's key id: the signature does not verify with a's key.
    manifest = json.loads(members["manifest.json"])
    forged = build_bundle(name="m", components={k: v["sha256"] for k, v in manifest["components"].items()},
                          codecs={k: v["codec"] for k, v in manifest["components"].items()},
                          info=manifest["info"], keys=mallory)
    members["manifest.sig"] = forged["signature"].encode()
    forged["manifest"]["signed_by"] = a.keys.key_id
    members["manifest.json"] = canonical_json(forged["manifest"])
    with pytest.raises(IntegrityError, match="signature in 'manifest.sig' does not match 'manifest.json'"):
        b.registry.import_bundle(_write(tmp_path / "resigned.keel", members), b.trust)
    # Signed by mallory under mallory's own (untrusted) id.
    members["manifest.json"] = canonical_json({**forged["manifest"], "signed_by": mallory.key_id})
    with pytest.raises(IntegrityError, match="'manifest.json' is signed by .* does not trust"):
        b.registry.import_bundle(_write(tmp_path / "mallory.keel", members), b.trust)


def test_a_raw_byte_flip_anywhere_is_refused(tmp_path: Path, sides: tuple[Side, Side, Path]) -> None:
    _, b, archive = sides
    raw = archive.read_bytes()
    for offset in (100, 700, len(raw) // 3, len(raw) // 2, len(raw) - 3000):
        flipped = bytearray(raw)
        flipped[offset] ^= 0x20
        target = tmp_path / f"raw-{offset}.keel"
        target.write_bytes(bytes(flipped))
        try:
            b.registry.import_bundle(target, b.trust)
        except IntegrityError:
            continue
        # A flip in tar padding changes nothing that is read: the import must then equal the original.
        assert b.registry.verify("m", 1)["bundle"]


def _hostile(path: Path, entry: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        entry.size = len(data) if entry.isreg() else 0
        tar.addfile(entry, io.BytesIO(data) if entry.isreg() else None)
    return path


@pytest.mark.parametrize(("name", "fragment"), [
    ("/etc/passwd", "absolute path"), ("../x", "'..'"), ("components/../../x", "'..'"),
    ("..%2fx", "encoded form"), ("%2e%2e/x", "encoded form"), ("file://x/y", "URL"), ("a\\..\\b", "backslash"),
    ("C:/x", "absolute path"), ("./manifest.json", "not a plain relative path"),
])
def test_unsafe_entry_names_are_refused(tmp_path: Path, sides: tuple[Side, Side, Path], name: str,
                                        fragment: str) -> None:
    _, b, _ = sides
    before = _objects(b)
    with pytest.raises(IntegrityError, match=fragment):
        b.registry.import_bundle(_hostile(tmp_path / "evil.keel", tarfile.TarInfo(name), b"x"), b.trust)
    assert _objects(b) == before and not (tmp_path / "x").exists()


def test_links_devices_duplicates_and_oversize_are_refused(tmp_path: Path, sides: tuple[Side, Side, Path]) -> None:
    _, b, archive = sides
    canary = tmp_path / "outside-canary.txt"
    canary.write_text("CANARY-never-read")
    for kind, fragment in ((tarfile.SYMTYPE, "symbolic link"), (tarfile.LNKTYPE, "hard link"),
                           (tarfile.DIRTYPE, "directory"), (tarfile.CHRTYPE, "device or special"),
                           (tarfile.FIFOTYPE, "device or special")):
        entry = tarfile.TarInfo("components/model")
        entry.type, entry.linkname = kind, str(canary)
        with pytest.raises(IntegrityError, match=fragment):
            b.registry.import_bundle(_hostile(tmp_path / "link.keel", entry), b.trust)
    members = list(_members(archive).items())
    dup = tmp_path / "dup.keel"
    with tarfile.open(dup, "w") as tar:
        for name, data in [*members, members[0]]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(IntegrityError, match="appears twice"):
        b.registry.import_bundle(dup, b.trust)
    with pytest.raises(IntegrityError, match="more than 5 entries"):
        b.registry.import_bundle(archive, b.trust, max_members=5)
    with pytest.raises(IntegrityError, match="'keel-export.json' is too large"):
        b.registry.import_bundle(archive, b.trust, max_member_bytes=200)
    with pytest.raises(IntegrityError, match="is too large"):
        b.registry.import_bundle(archive, b.trust, max_total_bytes=2000)
    assert b.registry.models() == [] and canary.read_text() == "CANARY-never-read"


def test_the_archive_must_be_a_regular_local_file(tmp_path: Path, sides: tuple[Side, Side, Path]) -> None:
    _, b, _ = sides
    fifo = tmp_path / "fifo.keel"
    os.mkfifo(fifo)  # opening it for reading would block: it must be refused without being opened
    with pytest.raises(InputError, match="not a regular file"):
        b.registry.import_bundle(fifo, b.trust)
    with pytest.raises(InputError, match="is a URL"):
        b.registry.import_bundle(Path("file://etc/passwd"), b.trust)
    not_tar = tmp_path / "x.keel"
    not_tar.write_bytes(b"\x1f\x8b compressed or random bytes" * 40)
    with pytest.raises(IntegrityError, match="not a readable keelml export archive"):
        b.registry.import_bundle(not_tar, b.trust)


def test_a_gate_refused_model_cannot_be_imported(tmp_path: Path, sides: tuple[Side, Side, Path]) -> None:
    a, b, _ = sides
    refused = put_bundle(a.artifacts, a.keys, tag="refused", passed=False)
    # a's registry refuses to register it; craft its archive as a hostile exporter holding a's key would.
    members = _refused_archive(a, refused)
    with pytest.raises(IntegrityError, match="gate refused"):
        b.registry.import_bundle(_write(tmp_path / "refused.keel", members), b.trust)


def _refused_archive(a: Side, bundle_id: str) -> dict[str, bytes]:
    import base64

    bundle = json.loads(a.artifacts.get(bundle_id))
    manifest = bundle["manifest"]
    header = {"format": "keelml.export/1", "name": "m", "version": 9, "bundle": bundle_id,
              "signed_by": a.keys.key_id, "exported_at": 0, "components": {}, "lineage": {}}
    members = {"keel-export.json": canonical_json(header),
               "keel-export.sig": base64.b64encode(a.keys.sign(canonical_json(header))),
               "manifest.json": canonical_json(manifest), "manifest.sig": bundle["signature"].encode()}
    for part, entry in manifest["components"].items():
        members[f"components/{part}"] = a.artifacts.get(entry["sha256"])
    return members


def test_export_refuses_to_overwrite_and_unknown_versions(tmp_path: Path, sides: tuple[Side, Side, Path]) -> None:
    a, _, archive = sides
    with pytest.raises(InputError, match="already exists"):
        a.registry.export_bundle("m", 1, archive)
    from keelml.errors import NotFoundError

    with pytest.raises(NotFoundError):
        a.registry.export_bundle("m", 7, tmp_path / "new.keel")
    with pytest.raises(InputError):
        a.registry.export_bundle("../m", 1, tmp_path / "new.keel")
