"""A pickle with a __reduce__ payload is refused everywhere a model file is read; it never runs."""

from __future__ import annotations

import base64
import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
from tests.registry.conftest import MakeBundle

from keelml.errors import IntegrityError
from keelml.registry import Registry
from keelml.store.artifacts import ArtifactStore
from keelml.store.envelope import canonical_json
from keelml.store.keys import KeyRing, create_keys
from keelml.store.metadata import MetadataStore
from keelml.store.trust import TrustStore, public_key_pem


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))  # unpickling creates the marker file


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Guard for the tests below: loading this pickle really would create its marker."""
    marker = tmp_path / "proof"
    handle = pickle.loads(_evil_pickle(marker))
    handle.close()
    assert marker.exists()


def test_a_pickled_model_in_the_registry_is_refused(tmp_path: Path, registry: Registry,
                                                    make_bundle: MakeBundle) -> None:
    marker = tmp_path / "PWNED"
    evil_bundle = make_bundle(model=_evil_pickle(marker), tag="evil")
    with pytest.raises(IntegrityError, match="component 'model': refusing to load a pickle"):
        registry.register("m", evil_bundle, run_id="r", summary={})
    registry.register("m", make_bundle(tag="good"), run_id="r", summary={})
    # Written into the registry behind its back (its repository, past every check; signed by this project's key):
    assert registry.repository.add_version("m", evil_bundle, run_id="r", summary={}, facts={}, status="staging",
                                           reasons=[], actor=None) == (2, True)
    for attempt in (lambda: registry.verify("m", 2), lambda: registry.load_model("m", 2),
                    lambda: registry.promote("m", 2, reason="x"),
                    lambda: registry.export_bundle("m", 2, tmp_path / "out.keel")):
        with pytest.raises(IntegrityError, match="refusing to load a pickle"):
            attempt()
    assert not marker.exists() and not (tmp_path / "out.keel").exists()
    assert registry.aliases("m") == {}
    assert registry.audit.records(event="verification_failure")


def test_a_pickled_model_in_an_import_archive_is_refused(tmp_path: Path, make_bundle: MakeBundle,
                                                         artifacts: ArtifactStore, keys: KeyRing) -> None:
    marker = tmp_path / "PWNED"
    bundle_id = make_bundle(model=_evil_pickle(marker), tag="evil")
    bundle = json.loads(artifacts.get(bundle_id))
    manifest = bundle["manifest"]
    header = {"format": "keelml.export/1", "name": "m", "version": 1, "bundle": bundle_id, "signed_by": keys.key_id,
              "exported_at": 0, "components": {}, "lineage": {}}
    members = {"keel-export.json": canonical_json(header),
               "keel-export.sig": base64.b64encode(keys.sign(canonical_json(header))),
               "manifest.json": canonical_json(manifest), "manifest.sig": bundle["signature"].encode()}
    for part, entry in manifest["components"].items():
        members[f"components/{part}"] = artifacts.get(entry["sha256"])
    archive = tmp_path / "evil.keel"
    with tarfile.open(archive, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    other_keys = create_keys(tmp_path / "b" / "keys")
    other = Registry(MetadataStore(f"sqlite:///{tmp_path / 'b' / 'keel.db'}"),
                     ArtifactStore(str(tmp_path / "b" / "store"), other_keys), other_keys)
    trust = TrustStore(tmp_path / "b" / "keys")
    trust.add("sender", public_key_pem(keys))
    with pytest.raises(IntegrityError, match="'components/model': refusing to load a pickle"):
        other.import_bundle(archive, trust)
    assert not marker.exists() and other.models() == []
