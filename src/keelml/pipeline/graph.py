"""The standard graph of a spec, built from the spec and its input digests alone.

    ingest -> validate -> profile, split -> [tune] -> train -> evaluate -> model_tests, export, privacy,
           robustness, [compare] -> gate -> bundle -> register

Building it opens no store and needs no key: steps name the services they need (`Step.services`:
a signer, a PII key, the trial store, the backend, the production loader, the registrar) and the
runner supplies them at run time (`keelml.pipeline.services`). So `keel export` and `--explain`
read the graph without touching key material.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from keelml import __version__
from keelml.engine.graph import Graph
from keelml.engine.step import Step
from keelml.evaluation.gate import compares_with_production
from keelml.model.export import onnx_available
from keelml.model.functions import sources_digest
from keelml.model.trust import TrustPolicy
from keelml.pipeline.inputs import Inputs
from keelml.pipeline.steps import audits, data, evaluation, release, training
from keelml.spec.pipeline import LoadedSpec, PipelineSpec

# A step's version is part of its cache key: the package version (any release invalidates caches)
# and a per-step number to bump when a step's behaviour changes between releases.
STEP_VERSIONS = {"ingest": 2, "validate": 3, "split": 1, "tune": 2, "train": 4, "evaluate": 2, "model_tests": 1,
                 "gate": 6, "bundle": 4, "register": 1, "profile": 1, "export": 1, "privacy": 1, "robustness": 1,
                 "compare": 1}
RESOURCE_KEYS = {"n_jobs", "threads"}  # how many processes and threads: speed, never results
GATE_ACTIONS = {"promote"}  # what happens after the verdict: not part of the verdict or the model
PROFILE_PARAMS = {"bins": 20, "top": 50}
CODEC_OF = {"model": "model", "contract": "json", "metrics": "json", "cv": "json", "verdict": "json",
            "profile": "json", "onnx": "bytes", "engine": "json", "holdout": "table", "predictions": "table"}


class Outputs:
    """The step outputs a run reads back, by reference ("step.output")."""

    CONTRACT = "validate.contract"
    VALIDATION = "validate.report"
    PROFILE = "profile.profile"
    CV = "train.cv"
    TIMINGS: ClassVar[dict[str, str]] = {"train": "train.timings", "tune": "tune.timings"}  # in no bundle
    METRICS = "evaluate.metrics"
    ANALYSIS = "evaluate.analysis"
    TESTS = "model_tests.results"
    VERDICT = "gate.verdict"
    BUNDLE = "bundle.bundle"
    REGISTRATION = "register.registration"
    AUDITS: ClassVar[dict[str, str]] = {"privacy": "privacy.report", "robustness": "robustness.report"}


def version(step: str) -> str:
    return f"{__version__}/{STEP_VERSIONS[step]}"


def standard_graph(loaded: LoadedSpec, inputs: Inputs, production: Mapping[str, Any] | None = None, *,
                   signer: str = "") -> Graph:
    """The standard graph for a spec. Reads only file digests, never the data itself.

    ``production`` ({name, version, bundle}) is the version the `compare` step measures against,
    when the spec compares with production; ``signer`` is the id of the public key that signs
    bundles. Both are identities, part of cache keys, and neither needs a key or a database.
    """
    spec = loaded.spec
    resources = spec.model.model_dump(include=RESOURCE_KEYS)
    train_inputs = {"train": "split.train", "contract": "validate.contract"}
    audited = {"model": "train.model", "test": "split.test", "contract": "validate.contract"}
    gate_inputs = {"metrics": Outputs.METRICS, "analysis": Outputs.ANALYSIS, "tests": Outputs.TESTS}
    steps = [*_data_steps(spec, inputs)]
    if spec.tune is not None:
        steps.append(Step(
            "tune", training.tune, inputs=dict(train_inputs),
            refs={"train_id": "split.train", "contract_id": "validate.contract"},
            outputs={"tuning": "json", "timings": "json"}, version=version("tune"),
            params={"pipeline": spec.name, "metric": spec.evaluate.metric, "version": version("tune"),
                    "model": spec.model.model_dump(mode="json", exclude={*RESOURCE_KEYS, "learning_curve"}),
                    "tune": spec.tune.model_dump(mode="json", exclude={"n_jobs"})},
            bound={"resources": {"n_jobs": spec.tune.n_jobs, "threads": spec.model.threads}},
            services=("trial_log", "trial_storage", "backend")))
        train_inputs["tuning"] = "tune.tuning"
    steps += [
        Step("train", training.train, inputs=train_inputs,
             outputs={"model": "model", "cv": "json", "timings": "json"}, version=version("train"),
             params={**spec.model.model_dump(mode="json", exclude=RESOURCE_KEYS), **_preprocess_params(spec),
                     "metric": spec.evaluate.metric},
             bound={"resources": resources}, services=("backend",)),
        Step("evaluate", evaluation.evaluate, inputs=audited,
             outputs={"metrics": "json", "analysis": "json", "predictions": "table"}, version=version("evaluate"),
             params=spec.evaluate.model_dump(mode="json"), bound={"resources": resources}),
        Step("model_tests", evaluation.model_tests, inputs=audited, outputs={"results": "json"},
             version=version("model_tests"), params=spec.tests.model_dump(mode="json"),
             bound={"resources": resources}),
        Step("export", training.export, inputs=audited, outputs={"onnx": "bytes", "engine": "json"},
             version=version("export"), params={"onnx": onnx_available()}, bound={"resources": resources}),
    ]
    security = spec.security
    common = {"sample_rows": security.sample_rows, "seed": security.seed}
    with_train = {**audited, "train": "split.train"}
    if security.privacy:
        steps.append(Step("privacy", audits.privacy, inputs=with_train, outputs={"report": "json"},
                          version=version("privacy"), bound={"resources": resources}, services=("backend",),
                          params={**common, "max_membership_auc": security.max_membership_auc,
                                  "attribute_advantage_flag": security.attribute_advantage_flag}))
        gate_inputs["privacy"] = Outputs.AUDITS["privacy"]
    if security.robustness:
        steps.append(Step("robustness", audits.robustness, inputs=with_train, outputs={"report": "json"},
                          version=version("robustness"), bound={"resources": resources}, services=("backend",),
                          params={**common, **security.model_dump(
                              mode="json", include={"noise_scale", "swap_fraction", "max_flip_rate", "attack",
                                                    "attack_rows"})}))
        gate_inputs["robustness"] = Outputs.AUDITS["robustness"]
    if compares_with_production(spec.gate.model_dump()):
        # production enters by identity (name, version, bundle digest): promoting or rolling back
        # another version changes this step's key, so a cached comparison is never reused against it
        steps.append(Step("compare", evaluation.compare, inputs=audited, outputs={"comparison": "json"},
                          version=version("compare"), bound={"resources": resources}, services=("load_reference",),
                          params={"production": dict(production) if production else None,
                                  "metric": spec.evaluate.metric, "slice_bins": spec.evaluate.slice_bins,
                                  "min_slice_rows": spec.gate.min_slice_rows,
                                  "agreement_tolerance": spec.gate.agreement_tolerance}))
        gate_inputs["comparison"] = "compare.comparison"
    steps += [
        # the gate reads its inputs by value and names each by digest in the verdict, with the model's
        Step("gate", evaluation.gate, inputs=gate_inputs, outputs={"verdict": "json"}, version=version("gate"),
             refs={"model_id": "train.model", **{f"{arg}_id": ref for arg, ref in gate_inputs.items()}},
             params={**spec.gate.model_dump(mode="json", exclude=GATE_ACTIONS), **security.gate_limits()}),
        Step("bundle", release.bundle,
             refs={"model": "train.model", "contract": Outputs.CONTRACT, "metrics": Outputs.METRICS,
                   "cv": Outputs.CV, "verdict": Outputs.VERDICT, "profile": Outputs.PROFILE, "onnx": "export.onnx",
                   "engine": "export.engine", "holdout": "split.test", "predictions": "evaluate.predictions"},
             outputs={"bundle": "json"}, version=version("bundle"), services=("sign",),
             params={"name": spec.name, "codecs": CODEC_OF, "data_digests": _digests(inputs),
                     "signing_key": signer, "parameters": lineage_parameters(loaded),
                     "trust": TrustPolicy.from_spec(spec.model, spec.preprocess).as_dict()}),
        Step("register", release.register, refs={"bundle": Outputs.BUNDLE},
             inputs={"verdict": Outputs.VERDICT, "metrics": Outputs.METRICS}, outputs={"registration": "json"},
             version=version("register"), params={"name": spec.name, "promote": spec.gate.promote},
             services=("register_candidate",)),
    ]
    return Graph(steps)


def _digests(inputs: Inputs) -> dict[str, str]:
    return {role: digest for role, (_, digest) in inputs.sources.items()}


def _data_steps(spec: PipelineSpec, inputs: Inputs) -> list[Step]:
    """ingest (and ingest_test), validate, profile and split."""
    source = spec.data
    ingest_outputs = {"raw": "table", "rejects": "table", "summary": "json"}
    validate_inputs = {"raw": "ingest.raw", "rejects": "ingest.rejects"}
    validate_outputs = {"contract": "json", "train": "table", "quarantine": "table", "report": "json"}
    split_inputs = {"train": "validate.train"}
    found = []
    roles = {"train": ("ingest", source.train), **({"test": ("ingest_test", source.test)} if source.test else {})}
    for role, (name, role_source) in roles.items():
        location, digest = inputs.sources[role]
        found.append(Step(name, data.ingest, outputs=ingest_outputs, version=version("ingest"),
                          params={"source": role_source.model_dump(mode="json"), "digest": digest},
                          bound={"location": location, **inputs.bound.get(role, {})}))
    if source.test is not None:
        validate_inputs.update({"raw_test": "ingest_test.raw", "rejects_test": "ingest_test.rejects"})
        validate_outputs["test"] = "table"
        split_inputs["test"] = "validate.test"
    return [*found,
            Step("validate", data.validate, inputs=validate_inputs, outputs=validate_outputs,
                 version=version("validate"), services=("pii_key",),
                 params={"target": source.target, "drop_columns": source.drop_columns,
                         "sensitive_columns": source.sensitive_columns,
                         "options": spec.contract.model_dump(mode="json"),
                         "validation": spec.validation.model_dump(mode="json"), **inputs.declared}),
            Step("profile", data.profile, inputs={"train": "validate.train", "contract": "validate.contract"},
                 outputs={"profile": "json"}, version=version("profile"), params=PROFILE_PARAMS),
            Step("split", data.split, inputs=split_inputs, outputs={"train": "table", "test": "table"},
                 version=version("split"), params={"target": source.target, **spec.split.model_dump(mode="json")})]


def _preprocess_params(spec: PipelineSpec) -> dict[str, Any]:
    """The train step's preprocess parameters; with user functions, a digest of their source files."""
    params: dict[str, Any] = {"preprocess": spec.preprocess.model_dump(mode="json")}
    if spec.preprocess.functions:
        params["preprocess_sources"] = sources_digest(spec.preprocess.functions)
    return params


def lineage_parameters(loaded: LoadedSpec) -> dict[str, Any]:
    """The spec settings that shape a model and its evaluation, recorded in its signed bundle."""
    spec = loaded.spec
    return {"model": spec.model.model_dump(mode="json", exclude=RESOURCE_KEYS),
            "split": spec.split.model_dump(mode="json"), "evaluate": spec.evaluate.model_dump(mode="json"),
            "gate": spec.gate.model_dump(mode="json", exclude=GATE_ACTIONS),
            "contract": spec.contract.model_dump(mode="json"),
            "target": spec.data.target, "drop_columns": list(spec.data.drop_columns)}
