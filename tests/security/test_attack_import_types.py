"""A trusted partner's archive whose model needs types beyond the importing project's trust policy, through
`keel models import`: refused (exit 3, audit record) with the list of types and the fix, or accepted only
when `--allow-type` names each of them; then recorded in the audit log and in the re-signed bundle, and that
version (no other) loads with exactly those types. Trusting a key accepts its signatures, never its types."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import keel_here
from tests.security.conftest import Importer
from tests.security.crafted import eval_model, json_parts, partner_archive, partner_model

CLASS = "tests.model.custom_estimators.ShrunkLinearRegressor"
FUNCTION = "tests.security.crafted.halve"


def _import(importer: Importer, archive: Path, *types: str, more: tuple[str, ...] = ()
            ) -> subprocess.CompletedProcess[str]:
    flags = [part for t in types for part in ("--allow-type", t)]
    return keel_here("models", "import", str(archive), *flags, *more, "-f", str(importer.spec))


def _archive(importer: Importer, path: Path, model: bytes, tag: str = "1") -> Path:
    parts = {"model": (model, "model"), **json_parts()}
    parts["cv"] = (json.dumps({"folds": 2, "tag": tag}).encode(), "json")  # another tag: another bundle
    return partner_archive(path, importer.partner, parts)


def _failures(importer: Importer) -> list[dict[str, object]]:
    return [r["details"] for r in importer.events() if r["event"] == "verification_failure"]


def test_types_beyond_the_policy_are_refused_with_the_list_and_the_fix(importer: Importer, tmp_path: Path) -> None:
    archive = _archive(importer, tmp_path / "custom.keel", partner_model())
    result = _import(importer, archive)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"needs type(s) beyond this project's trust policy: {CLASS}, {FUNCTION}" in result.stderr
    assert f"--allow-type {CLASS} --allow-type {FUNCTION}" in result.stderr  # the fix, ready to copy
    assert "never its type list" in result.stderr and "Traceback" not in result.stderr
    [failure] = _failures(importer)
    assert CLASS in str(failure["problem"]) and failure["allow_types"] == []
    with importer.open() as project:
        assert project.registry.models() == []


def test_naming_only_some_of_the_types_is_refused_naming_the_rest(importer: Importer, tmp_path: Path) -> None:
    archive = _archive(importer, tmp_path / "custom.keel", partner_model())
    result = _import(importer, archive, CLASS)
    assert result.returncode == 3 and f"beyond this project's trust policy: {FUNCTION}\n" in result.stderr
    assert f"--allow-type {FUNCTION}" in result.stderr and f"--allow-type {CLASS}" not in result.stderr
    assert _failures(importer)[0]["allow_types"] == [CLASS]


def test_naming_every_type_imports_audits_and_loads_that_version_only(importer: Importer, tmp_path: Path) -> None:
    import numpy as np

    archive = _archive(importer, tmp_path / "custom.keel", partner_model())
    result = _import(importer, archive, FUNCTION, CLASS, more=("--actor", "ops"))
    assert result.returncode == 0, result.stderr
    assert f"allowed beyond this project's trust policy, for this version only: {CLASS}, {FUNCTION}" in result.stdout
    [record] = [r for r in importer.events() if r["event"] == "import"]
    assert record["actor"] == "ops" and record["details"]["allowed_types"] == [CLASS, FUNCTION]
    verified = keel_here("models", "verify", "m/1", "-f", str(importer.spec), "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["model_types"] == 2  # exactly the two allowed types
    with importer.open() as project:
        _, bundle = project.registry.bundle("m", 1)
        assert bundle["manifest"]["signed_by"] == project.keys.key_id  # re-signed by the importer
        assert bundle["manifest"]["info"]["trust"]["types"] == [CLASS, FUNCTION]
        assert not {CLASS, FUNCTION} & project.registry.policy.allowed()  # the project's own policy is unchanged
        model = project.registry.load_model("m", 1).model
    x = np.arange(12.0).reshape(-1, 2)
    assert np.allclose(model.predict(x), x[:, 0] * 3 + 1)  # the partner's model, built and working
    # importing it again returns the same version; another version needing the same types is refused again
    assert json.loads(_import(importer, archive, CLASS, FUNCTION, more=("--json",)).stdout)["new_version"] is False
    second = _import(importer, _archive(importer, tmp_path / "second.keel", partner_model(), tag="2"))
    assert second.returncode == 3 and f"{CLASS}, {FUNCTION}" in second.stderr


def test_unneeded_malformed_and_never_trusted_names_are_bad_input(importer: Importer, tmp_path: Path) -> None:
    archive = _archive(importer, tmp_path / "custom.keel", partner_model())
    for extra, message in (("mypkg.models.Other", "--allow-type mypkg.models.Other: the archive's model does not "
                                                  "need it"),
                           ("builtins.eval", "keelml never allows this type"),
                           ("os.system", "keelml never allows this type"),
                           ("keelml.store.keys.load_keys", "keelml never allows this type"),
                           ("not a name", "is not a type name")):
        result = _import(importer, archive, CLASS, FUNCTION, extra)
        assert result.returncode == 2, (extra, result.stdout, result.stderr)
        assert message in result.stderr and "fix:" in result.stderr
    with importer.open() as project:
        assert project.registry.models() == []


def test_the_eval_partial_is_refused_even_when_named(importer: Importer, tmp_path: Path) -> None:
    """The issue's attack: a trusted partner's model calling builtins.eval through functools.partial."""
    marker = tmp_path / "pwned"
    archive = _archive(importer, tmp_path / "eval.keel", eval_model(marker))
    refused = _import(importer, archive)
    assert refused.returncode == 3, refused.stderr
    assert "names builtins.eval, which keelml never allows" in refused.stderr
    assert "builtins.eval" in str(_failures(importer)[0]["problem"])
    named = _import(importer, archive, "builtins.eval")
    assert named.returncode == 2 and "keelml never allows this type" in named.stderr
    assert not marker.exists()
    with importer.open() as project:
        assert project.registry.models() == []
