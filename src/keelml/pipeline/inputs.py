"""What a run reads from outside the store: its data sources (location and SHA-256) and a declared contract.

Every input is checked and digested before anything is written, so bad input leaves no trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keelml.data.inputs import resolve_source
from keelml.errors import SpecError
from keelml.model.functions import resolve_function
from keelml.spec.pipeline import LoadedSpec


@dataclass(frozen=True)
class Inputs:
    """What a run reads from outside the store: data sources (location, SHA-256) and a declared contract.

    ``bound`` holds, per role, what ``ingest`` needs besides the location: the files of a batch, or
    the frame of a SQL source or of a DataFrame passed to ``run(frames=...)``.
    """

    sources: dict[str, tuple[str, str]]
    declared: dict[str, Any]
    bound: dict[str, dict[str, Any]] = field(default_factory=dict)


def resolve_inputs(loaded: LoadedSpec, frames: Mapping[str, Any] | None = None) -> Inputs:
    """Check and digest every input before anything is written (bad input leaves no trace).

    ``frames`` maps a role (train, test) to a pandas or polars DataFrame that replaces the spec's
    source for that role.
    """
    spec = loaded.spec
    if spec.preprocess.functions:  # an unimportable user function is a spec error before anything runs
        for ref in spec.preprocess.functions:
            resolve_function(ref)
    roles = {"train": spec.data.train, **({"test": spec.data.test} if spec.data.test is not None else {})}
    frames = dict(frames or {})
    unknown = sorted(set(frames) - set(roles))
    if unknown:
        raise SpecError(f"frames names the role(s) {', '.join(map(repr, unknown))}, which the spec does not have",
                        expected="one of: " + ", ".join(roles),
                        fix="use frames={'train': df} (and 'test' only when the spec has data.test)")
    resolved = {role: resolve_source(loaded, source, role, frames.get(role)) for role, source in roles.items()}
    sources = {role: (r.location, r.digest) for role, r in resolved.items()}
    bound = {role: r.bound for role, r in resolved.items()}
    declared: dict[str, Any] = {}
    if spec.contract.path:
        contract_path = Path(loaded.resolve(spec.contract.path))
        if not contract_path.is_file():
            raise SpecError(f"contract.path: file not found: {contract_path}",
                            expected="a contract YAML file (e.g. one written by a previous run's report)",
                            fix="fix contract.path or remove it to infer the contract from the data")
        try:
            text = contract_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"contract.path: cannot read {contract_path}: {type(exc).__name__}",
                            expected="a readable UTF-8 YAML contract file",
                            fix="fix contract.path, the file's permissions or its encoding") from None
        declared = {"declared_contract": text, "declared_contract_path": str(spec.contract.path)}
    return Inputs(sources, declared, bound)


def placeholder_inputs(loaded: LoadedSpec) -> Inputs:
    """Inputs with empty locations and digests: enough to learn a graph's shape (they change keys, never edges)."""
    roles = ["train", *(["test"] if loaded.spec.data.test is not None else [])]
    return Inputs(sources={role: ("", "") for role in roles}, declared={})
