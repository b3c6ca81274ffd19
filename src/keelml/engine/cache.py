"""Cache keys: SHA-256 over the step's name and version, resolved parameters and input digests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from keelml.engine.step import Step


def key_parts(step: Step, input_digests: Mapping[str, str]) -> dict[str, Any]:
    """Everything a step's result depends on, as plain JSON."""
    return {
        "step": step.name,
        "version": step.version,
        "params": json.loads(json.dumps(step.params, sort_keys=True, default=str)),
        "inputs": dict(sorted(input_digests.items())),
    }


def cache_key(parts: Mapping[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat  # an empty mapping contributes nothing: {} -> {x: 1} reads as "x added"
    return {prefix: value}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def explain_change(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Human reasons why a key differs from the step's previous key."""
    if previous is None:
        return ["first run of this step (no earlier result in this store)"]
    reasons: list[str] = []
    if previous.get("version") != current.get("version"):
        reasons.append(f"step version changed: {previous.get('version')} -> {current.get('version')}")
    old_p = _flatten(previous.get("params", {}), "")
    new_p = _flatten(current.get("params", {}), "")
    for name in sorted(set(old_p) | set(new_p)):
        if name not in old_p:
            reasons.append(f"parameter {name} added: {_short(new_p[name])}")
        elif name not in new_p:
            reasons.append(f"parameter {name} removed (was {_short(old_p[name])})")
        elif old_p[name] != new_p[name]:
            reasons.append(f"parameter {name} changed: {_short(old_p[name])} -> {_short(new_p[name])}")
    old_i, new_i = previous.get("inputs", {}), current.get("inputs", {})
    for name in sorted(set(old_i) | set(new_i)):
        if old_i.get(name) != new_i.get(name):
            was, now = str(old_i.get(name, "none"))[:12], str(new_i.get(name, "none"))[:12]
            reasons.append(f"input {name} changed: {was} -> {now}")
    return reasons or ["same key as before, but its cached outputs are missing from the store"]
