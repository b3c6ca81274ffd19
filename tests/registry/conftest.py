"""Fixtures for registry tests: real signed bundles around a tiny real skops model, registered directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache

import pytest

from keelml.registry import Registry, build_bundle
from keelml.store.artifacts import ArtifactStore
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore

MakeBundle = Callable[..., str]


@cache
def tiny_model_bytes() -> bytes:
    """A fitted scikit-learn model saved with keelml's skops writer (fits in milliseconds)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from keelml.model.persist import dump_model

    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    return dump_model(LogisticRegression().fit(x, [0, 0, 1, 1]))


def put_bundle(artifacts: ArtifactStore, keys: KeyRing, *, name: str = "m", tag: str = "1", passed: bool = True,
               model: bytes | None = None, train_digest: str = "ab" * 32) -> str:
    """Store the components and a signed bundle; return the bundle's artifact id."""
    contract = {"target": "y", "task": "binary", "classes": ["0", "1"], "columns": []}
    parts = {
        "model": (model if model is not None else tiny_model_bytes(), "model"),
        "contract": (json.dumps(contract, sort_keys=True, separators=(",", ":")).encode(), "json"),
        "metrics": (json.dumps({"primary": {"name": "roc_auc", "value": 0.9}, "tag": tag}).encode(), "json"),
        "cv": (json.dumps({"folds": 2}).encode(), "json"),
    }
    components = {part: artifacts.put(data, codec=codec) for part, (data, codec) in parts.items()}
    judged = {part: components[part] for part in ("model", "metrics")}  # what the gate judged, by digest
    parts["verdict"] = (json.dumps({"passed": passed, "reason": "test gate", "judged": judged}).encode(), "json")
    components["verdict"] = artifacts.put(parts["verdict"][0], codec="json")
    bundle = build_bundle(name=name, components=components, codecs={p: c for p, (_, c) in parts.items()},
                          info={"data_digests": {"train": train_digest}, "parameters": {"model": {"tag": tag}}},
                          keys=keys)
    return artifacts.put(json.dumps(bundle).encode(), codec="json")


@pytest.fixture
def registry(metadata: MetadataStore, artifacts: ArtifactStore, keys: KeyRing) -> Registry:
    return Registry(metadata, artifacts, keys)


@pytest.fixture
def make_bundle(artifacts: ArtifactStore, keys: KeyRing) -> MakeBundle:
    def make(**kwargs: object) -> str:
        return put_bundle(artifacts, keys, **kwargs)  # type: ignore[arg-type]

    return make
