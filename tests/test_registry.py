from __future__ import annotations

import json
from pathlib import Path

import pytest

from keelml.errors import IntegrityError, NotFoundError
from keelml.registry import Registry, build_bundle
from keelml.store.artifacts import ArtifactStore
from keelml.store.keys import KeyRing, create_keys, load_keys
from keelml.store.metadata import MetadataStore


def _bundle(artifacts: ArtifactStore, keys: KeyRing, payload: bytes, *, passed: bool = True,
            name: str = "m") -> str:
    """A bundle whose model is a real skops file (the model codec is always type-audited) and whose other
    components are `payload` bytes; its verdict names the model and metrics it judged."""
    from tests.registry.conftest import tiny_model_bytes

    components = {part: artifacts.put(payload + part.encode(), codec="bytes") for part in ("contract", "metrics")}
    components["model"] = artifacts.put(tiny_model_bytes(), codec="model")
    judged = {part: components[part] for part in ("model", "metrics")}  # what the gate judged, by digest
    components["verdict"] = artifacts.put(json.dumps({"passed": passed, "reason": "test", "judged": judged}).encode(),
                                          codec="json")
    codecs = {k: "model" if k == "model" else "bytes" for k in components}
    bundle = build_bundle(name=name, components=components, codecs=codecs, info={"data_digests": {}}, keys=keys)
    return artifacts.put(json.dumps(bundle).encode(), codec="json")


def test_refused_or_foreign_bundles_are_not_registered(
        artifacts: ArtifactStore, metadata: MetadataStore, keys: KeyRing) -> None:
    registry = Registry(metadata, artifacts, keys)
    with pytest.raises(IntegrityError, match="gate refused"):
        registry.register("m", _bundle(artifacts, keys, b"r", passed=False), run_id="r", summary={})
    with pytest.raises(IntegrityError, match="for model 'other', not 'm'"):
        registry.register("m", _bundle(artifacts, keys, b"o", name="other"), run_id="r", summary={})
    assert registry.models() == []


def test_versions_are_numbered_and_content_is_registered_once(
        artifacts: ArtifactStore, metadata: MetadataStore, keys: KeyRing) -> None:
    registry = Registry(metadata, artifacts, keys)
    first = registry.register("m", _bundle(artifacts, keys, b"one"), run_id="r1", summary={})
    second = registry.register("m", _bundle(artifacts, keys, b"two"), run_id="r2", summary={})
    again = registry.register("m", first.bundle_id, run_id="r3", summary={})
    assert (first.version, second.version) == (1, 2)
    assert again.version == 1 and not again.created
    assert [r["version"] for r in registry.versions("m")] == [1, 2]
    row, bundle = registry.bundle("m")
    assert row["version"] == 2 and bundle["manifest"]["signed_by"] == keys.key_id
    assert registry.verify_all() == (2, [])


def test_altered_manifest_is_refused(artifacts: ArtifactStore, metadata: MetadataStore, keys: KeyRing) -> None:
    bundle_id = _bundle(artifacts, keys, b"x")
    bundle = json.loads(artifacts.get(bundle_id))
    bundle["manifest"]["info"]["data_digests"] = {"train": "forged"}
    forged_id = artifacts.put(json.dumps(bundle).encode(), codec="json")
    with pytest.raises(IntegrityError, match="signature is invalid"):
        Registry(metadata, artifacts, keys).register("m", forged_id, run_id="r", summary={})


def test_bundle_signed_by_another_key_is_refused(tmp_path: Path, artifacts: ArtifactStore,
                                                 metadata: MetadataStore, keys: KeyRing) -> None:
    stranger = create_keys(tmp_path / "stranger")
    components = {"model": artifacts.put(b"m", codec="bytes")}
    bundle = build_bundle(name="m", components=components, codecs={"model": "bytes"}, info={}, keys=stranger)
    bundle_id = artifacts.put(json.dumps(bundle).encode(), codec="json")
    with pytest.raises(IntegrityError, match="untrusted key"):
        Registry(metadata, artifacts, keys).register("m", bundle_id, run_id="r", summary={})


def test_missing_component_is_detected(artifacts: ArtifactStore, metadata: MetadataStore, keys: KeyRing) -> None:
    registry = Registry(metadata, artifacts, keys)
    reg = registry.register("m", _bundle(artifacts, keys, b"y"), run_id="r", summary={})
    _, bundle = registry.bundle("m", reg.version)
    metrics_id = bundle["manifest"]["components"]["metrics"]["sha256"]
    (Path(artifacts.root) / "objects" / metrics_id[:2] / metrics_id).unlink()
    count, problems = registry.verify_all()
    assert count == 1 and len(problems) == 1 and "missing" in problems[0]


def test_unknown_names_and_versions(artifacts: ArtifactStore, metadata: MetadataStore, keys: KeyRing) -> None:
    registry = Registry(metadata, artifacts, keys)
    with pytest.raises(NotFoundError, match="no model named 'ghost'"):
        registry.versions("ghost")
    registry.register("m", _bundle(artifacts, keys, b"z"), run_id="r", summary={})
    with pytest.raises(NotFoundError, match="has no version 7"):
        registry.bundle("m", 7)


CONCURRENT = """
import json, sys
from pathlib import Path
from keelml.registry import Registry, build_bundle
from keelml.store.artifacts import ArtifactStore
from keelml.store.keys import load_keys
from keelml.store.metadata import MetadataStore
from tests.registry.conftest import tiny_model_bytes
root, tag = Path(sys.argv[1]), sys.argv[2]
keys = load_keys(root / "keys", environ={})
artifacts = ArtifactStore(str(root / "store"), keys)
registry = Registry(MetadataStore(f"sqlite:///{root / 'keel.db'}"), artifacts, keys)
model = artifacts.put(tiny_model_bytes(), codec="model")
for i in range(15):
    comp = {"model": model, "metrics": artifacts.put(f'{{"tag": "{tag}-{i}"}}'.encode(), codec="json")}
    comp["verdict"] = artifacts.put(json.dumps({"passed": True, "judged": dict(comp)}).encode(), codec="json")
    bundle = build_bundle(name="m", components=comp, info={}, keys=keys,
                          codecs={"model": "model", "metrics": "json", "verdict": "json"})
    registry.register("m", artifacts.put(json.dumps(bundle).encode(), codec="json"), run_id=tag, summary={})
"""


def test_two_processes_registering_at_once_get_distinct_versions(tmp_path: Path) -> None:
    import subprocess
    import sys

    create_keys(tmp_path / "keys")
    MetadataStore(f"sqlite:///{tmp_path / 'keel.db'}").close()
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path), tag]) for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    keys = load_keys(tmp_path / "keys", environ={})
    registry = Registry(MetadataStore(f"sqlite:///{tmp_path / 'keel.db'}"),
                        ArtifactStore(str(tmp_path / "store"), keys), keys)
    versions = registry.versions("m")
    assert [v["version"] for v in versions] == list(range(1, 31))
    assert len({v["bundle_id"] for v in versions}) == 30
