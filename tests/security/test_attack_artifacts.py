"""Attacks by an artifact supplier: pickles under every extension, untrusted skops types, hostile archives,
tampered bundles, wrong keys and edited audit records. Each asserts the refusal and that nothing ran."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import update
from tests.registry.test_transport import Side, _members, _side, _write, sides  # noqa: F401  (fixture)

from keelml.errors import IntegrityError
from keelml.model.persist import load_model
from keelml.registry.transport import read_archive
from keelml.store import tables

EXTENSIONS = [".skops", ".pkl", ".joblib", ".keel", ".json", ".zip", ".onnx", ""]


class _Payload:
    """Unpickling this would create the marker file (it never must)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _pickle_file(tmp_path: Path, extension: str) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / f"model{extension}"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    return path, marker


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_pickle_payload_refused_by_load_model(tmp_path: Path, extension: str) -> None:
    path, marker = _pickle_file(tmp_path, extension)
    with pytest.raises(IntegrityError, match="pickle"):
        load_model(path.read_bytes())
    assert not marker.exists()


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_pickle_payload_refused_by_models_import(tmp_path: Path, sides: tuple[Side, Side, Path],  # noqa: F811
                                                 extension: str) -> None:
    _, b, _ = sides
    path, marker = _pickle_file(tmp_path, extension)
    with pytest.raises(IntegrityError, match="not a readable keelml export archive"):
        b.registry.import_bundle(path, b.trust)
    assert not marker.exists() and b.registry.models() == []


def test_pickle_payload_as_the_model_inside_a_signed_looking_archive(tmp_path: Path,
                                                                      sides: tuple[Side, Side, Path]  # noqa: F811
                                                                      ) -> None:
    _, b, archive = sides
    marker = tmp_path / "pwned"
    members = {**_members(archive), "components/model": pickle.dumps(_Payload(marker))}
    with pytest.raises(IntegrityError):
        b.registry.import_bundle(_write(tmp_path / "evil.keel", members), b.trust)
    assert not marker.exists() and b.registry.models() == []


class Untrusted:
    """A type no allowlist holds."""

    def __init__(self) -> None:
        self.x = 1


@pytest.mark.parametrize("obj", [Untrusted(), os.system, {"callable": eval}], ids=["class", "os.system", "eval"])
def test_skops_file_with_untrusted_types_refused(obj: object) -> None:
    import skops.io as sio

    with pytest.raises(IntegrityError, match="refusing to load"):
        load_model(sio.dumps(obj))


def _tar_with(tmp_path: Path, info: tarfile.TarInfo, data: bytes = b"x") -> Path:
    path = tmp_path / "hostile.keel"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        if info.isreg():
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        else:
            tar.addfile(info)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(("info", "problem"), [
    (_entry("../../etc/cron.d/evil"), "'..'"),
    (_entry("components/../../outside"), "'..'"),
    (_entry("/etc/passwd"), "absolute"),
    (_entry("components/model", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (_entry("components/model", tarfile.LNKTYPE, "/root/.ssh/id_rsa"), "hard link"),
    (_entry("dev", tarfile.CHRTYPE), "device"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device"])
def test_hostile_archive_entries_refused(tmp_path: Path, info: tarfile.TarInfo, problem: str) -> None:
    before = set(tmp_path.parent.rglob("*"))
    with pytest.raises(IntegrityError, match=problem):
        read_archive(_tar_with(tmp_path, info))
    assert set(tmp_path.parent.rglob("*")) - before == {tmp_path / "hostile.keel"}  # nothing extracted


@pytest.mark.parametrize("change", ["flip", "extra", "missing"])
def test_tampered_bundle_archive_refused(tmp_path: Path, sides: tuple[Side, Side, Path],  # noqa: F811
                                         change: str) -> None:
    _, b, archive = sides
    members = _members(archive)
    if change == "flip":
        data = bytearray(members["components/model"])
        data[len(data) // 3] ^= 0x40
        members["components/model"] = bytes(data)
    elif change == "extra":
        members["components/backdoor"] = b"import os"
    else:
        del members["manifest.sig"]
    with pytest.raises(IntegrityError):
        b.registry.import_bundle(_write(tmp_path / f"{change}.keel", members), b.trust)
    assert b.registry.models() == []


def test_archive_signed_with_a_wrong_key_refused(tmp_path: Path, sides: tuple[Side, Side, Path]) -> None:  # noqa: F811
    _, _, archive = sides
    stranger = _side(tmp_path / "stranger")
    with pytest.raises(IntegrityError, match="does not trust"):
        stranger.registry.import_bundle(archive, stranger.trust)
    assert stranger.registry.models() == []


@pytest.mark.parametrize("column", ["details", "actor", "event"])
def test_edited_audit_record_is_detected(sides: tuple[Side, Side, Path], column: str) -> None:  # noqa: F811
    a, _, _ = sides
    assert a.registry.audit.verify().problem is None
    value = {"details": '{"name":"m","version":2}', "actor": "someone-else", "event": "rollback"}[column]
    with a.registry.audit._meta.engine.begin() as conn:  # an insider edits the database directly
        conn.execute(update(tables.audit_log).where(tables.audit_log.c.seq == 1).values({column: value}))
    report = a.registry.audit.verify()
    assert report.problem is not None and report.bad_seq == 1
