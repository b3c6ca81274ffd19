"""Which model version is monitored, and what it is compared with: its bundle's profile and contract.

``resolve_model`` is the one place a model reference (``NAME``, ``NAME/3``, ``NAME@production``)
becomes a verified bundle; aliases work once the registry has them (``Registry.resolve``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keelml.data.contract import Contract
from keelml.data.frames import decode_table
from keelml.data.profile import profile_frame
from keelml.errors import DataError, KeelError, NotFoundError

if TYPE_CHECKING:
    from keelml.registry.project import Project

_REF = re.compile(r"^(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[a-z][a-z0-9_-]{0,31}))?$")


@dataclass(frozen=True)
class Reference:
    """The monitored version and what drift is measured against."""

    name: str
    version: int
    profile: dict[str, Any]
    contract: Contract
    primary: Mapping[str, Any] | None


def parse_model_ref(text: str) -> tuple[str, int | str | None]:
    """``NAME`` -> (name, None); ``NAME/3`` -> (name, 3); ``NAME@alias`` -> (name, "alias")."""
    match = _REF.match(text)
    if not match:
        raise KeelError(f"{text!r} is not a model reference", expected="NAME, NAME/VERSION or NAME@ALIAS",
                        fix="list models with `keel models list`")
    if match.group("version"):
        return match.group("name"), int(match.group("version"))
    return match.group("name"), match.group("alias")


def resolve_model(project: Project, name: str, ref: int | str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(version row, verified bundle): the latest version, a numbered one, or an alias's."""
    registry: Any = project.registry
    if isinstance(ref, str):
        resolver = getattr(registry, "resolve", None)
        if resolver is None:
            raise NotFoundError(f"{name}@{ref}: this version of keelml has no registry aliases",
                                expected="NAME or NAME/VERSION", fix=f"monitor {name} (the latest version) instead")
        ref = int(resolver(name, ref))
    row, bundle = registry.bundle(name, ref)
    return dict(row), dict(bundle)


def load_reference(project: Project, name: str, ref: int | str | None,
                   profile_path: Path | None = None) -> Reference:
    """The version's contract and training profile (or the given profile file), with the prediction's."""
    row, bundle = resolve_model(project, name, ref)
    components = bundle["manifest"]["components"]

    def component(part: str) -> bytes | None:
        entry = components.get(part)
        return project.artifacts.get(str(entry["sha256"])) if entry else None

    contract = Contract.model_validate(json.loads(component("contract") or b"{}"))
    profile = read_profile(profile_path) if profile_path is not None else json.loads(component("profile") or b"null")
    if profile is None:
        raise NotFoundError(f"{name} v{row['version']} has no training profile in its bundle",
                            expected="a bundle registered by a keelml version with the profile step",
                            fix="re-run the pipeline, or give a profile with --reference profile.json")
    predictions = component("predictions")  # held-out predictions recorded at evaluation, when the bundle has them
    if predictions is not None and not any(c["name"] == "prediction" for c in profile["columns"]):
        profile = with_prediction(profile, predictions)
    primary = (row.get("metrics") or {}).get("primary")
    return Reference(name, int(row["version"]), profile, contract, primary)


def with_prediction(profile: Mapping[str, Any], table: bytes) -> dict[str, Any]:
    """The profile plus a ``prediction`` column profiled from a stored predictions table."""
    frame = decode_table(table)
    if "prediction" not in frame.columns:
        return dict(profile)
    extra = profile_frame(frame.select("prediction"), bins=int(profile.get("settings", {}).get("bins", 20)))
    return {**profile, "columns": [*profile["columns"], *extra["columns"]]}


def read_profile(path: Path) -> dict[str, Any]:
    """A profile JSON file (``keel profile --json``), checked to be one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the reference profile {path}: {type(exc).__name__}",
                        expected="a JSON profile written by `keel profile --json`",
                        fix="check --reference") from None
    if not isinstance(data, dict) or data.get("format") != "keelml.profile/1" or not isinstance(
            data.get("columns"), list):
        raise DataError(f"{path} is not a keelml profile", expected="format keelml.profile/1",
                        fix="write one with `keel profile DATA --json > profile.json`")
    return data
