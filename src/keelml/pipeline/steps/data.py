"""Data steps: ingest a source, validate it against the contract, profile it, split it.

What a step computes with (polars, scikit-learn, skops, and the keelml modules that load them) is
imported inside the step: a fully cached run decodes no table and fits nothing, so it must not pay for
importing them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keelml.data.contract import Contract, contract_from_yaml
from keelml.errors import DataError
from keelml.spec.data import ContractSpec, SourceSpec, ValidationSpec


def ingest(*, params: Mapping[str, Any], location: str, files: Sequence[tuple[str, str]] | None = None,
           frame: Any = None) -> dict[str, Any]:
    """Read one source into a table, its malformed records into ``rejects``, and per-file counts.

    params carry the source options and the source's digest; ``files`` are a batch's (name, location)
    pairs and ``frame`` an already-read SQL result or DataFrame from the API (both as digested).
    """
    from keelml.data.sources import frame_with_rejects, read_files

    source = SourceSpec.model_validate(params["source"])
    if frame is not None:
        raw, rejects, summary = frame_with_rejects(source, frame, location)
    else:
        raw, rejects, summary = read_files(source, files if files is not None else location)
    return {"raw": raw, "rejects": rejects, "summary": summary}


def _with_reader_rejects(report: Mapping[str, Any], rejects: Any) -> dict[str, Any]:
    """A source's validation report counting the records the reader rejected as quarantined rows."""
    count = 0 if rejects is None else rejects.height
    return {**report, "rows_in": report["rows_in"] + count,
            "rows_quarantined": report["rows_quarantined"] + count, "rows_rejected_by_reader": count}


def validate(*, params: Mapping[str, Any], raw: Any, raw_test: Any = None, rejects: Any = None,
             rejects_test: Any = None, pii_key: bytes | None = None) -> dict[str, Any]:
    """Infer (or load) the contract from training data; split every source into valid and quarantined rows.

    Declared drop_columns are removed first; a dataset-level failure (validation rules) stops the run.
    Records the reader could not parse (``rejects``) join the quarantine; their raw text is withheld
    when the contract marks personal data that must not be stored.
    """
    import polars as pl

    from keelml.data.anomalies import enforce
    from keelml.data.infer import infer_contract
    from keelml.data.validate import validate_frame

    if params.get("declared_contract"):
        contract = contract_from_yaml(params["declared_contract"], source=params["declared_contract_path"])
        if contract.target != params["target"]:
            raise DataError(
                f"{params['declared_contract_path']} declares target {contract.target!r} "
                f"but data.target is {params['target']!r}",
                expected="the same target column in the spec and the contract",
                fix="make data.target and the contract's target agree",
            )
    else:
        contract = infer_contract(
            raw, target=params["target"], options=ContractSpec.model_validate(params["options"]),
            drop_columns=params["drop_columns"], sensitive_columns=params["sensitive_columns"],
        )
    rules = ValidationSpec.model_validate(params.get("validation", {}))
    sources = {"train": (raw, rejects)}
    if raw_test is not None:
        sources["test"] = (raw_test, rejects_test)
    outputs: dict[str, Any] = {"contract": contract.model_dump(mode="json")}
    reports: dict[str, Any] = {}
    quarantines: list[Any] = []
    withhold = any(c.pii is not None and c.pii_action != "keep" for c in contract.columns)
    for role, (frame, reader_rejects) in sources.items():
        frame = frame.drop([c for c in params["drop_columns"] if c in frame.columns])
        result = validate_frame(frame, contract, options=rules, dedupe=role == "train", pii_key=pii_key)
        enforce(result.report, role)
        outputs[role] = result.valid
        reports[role] = _with_reader_rejects(result.report, reader_rejects)
        if reader_rejects is not None and withhold and "_raw" in reader_rejects.columns:
            reader_rejects = reader_rejects.with_columns(pl.lit(None, dtype=pl.String).alias("_raw"))
        quarantines.extend(q.with_columns(pl.lit(role).alias("_source"))
                           for q in (result.quarantine, reader_rejects) if q is not None)
    outputs["quarantine"] = pl.concat(quarantines, how="diagonal_relaxed")
    outputs["report"] = reports
    return outputs


def profile(*, params: Mapping[str, Any], train: Any, contract: Mapping[str, Any]) -> dict[str, Any]:
    """Profile the validated training table: the reference later data is compared with."""
    from keelml.data.profile import profile_frame

    return {"profile": profile_frame(train, Contract.model_validate(contract), bins=params["bins"],
                                     top=params["top"])}


def split(*, params: Mapping[str, Any], train: Any, test: Any = None) -> dict[str, Any]:
    """Hold out a stratified test set, unless a separate test source was given."""
    from keelml.data.split import split_frame

    if test is not None:
        return {"train": train, "test": test}
    fit, held_out = split_frame(train, target=params["target"], test_size=params["test_size"],
                                stratify=params["stratify"], seed=params["seed"])
    return {"train": fit, "test": held_out}
