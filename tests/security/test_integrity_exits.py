"""Integrity failures through the real `keel` entry point: every one exits 3 (a component deleted from the
store too, which used to exit 2 as "not found"), `--debug` adds the traceback but keeps the exit code, and
`keel verify` names every problem in every category (artifacts, bundles, cache rows, audit records), not
only the first. A small project (`keel init` plus two versions registered through the API) keeps it fast."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update
from tests.helpers import keel_here
from tests.registry.conftest import put_bundle

from keelml.registry.project import Project, open_project
from keelml.spec.pipeline import load_spec
from keelml.store import tables


@dataclass
class Proj:
    spec: Path
    bundles: dict[int, str]  # version -> bundle id

    def open(self) -> Project:
        return open_project(load_spec(self.spec), create=False)

    def object(self, artifact_id: str) -> Path:
        return self.spec.parent / ".keel" / "store" / "objects" / artifact_id[:2] / artifact_id

    def component(self, version: int, part: str) -> str:
        with self.open() as project:
            bundle = json.loads(project.artifacts.get(self.bundles[version]))
        return str(bundle["manifest"]["components"][part]["sha256"])

    def audit_events(self) -> list[str]:
        with self.open() as project:
            return [r["event"] for r in project.audit.records()]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Proj:
    directory = tmp_path_factory.mktemp("exits") / "p"
    assert keel_here("init", str(directory)).returncode == 0
    spec = directory / "pipeline.yaml"
    bundles = {}
    with open_project(load_spec(spec), create=False) as project:
        for version, tag in ((1, "one"), (2, "two")):
            bundle_id = put_bundle(project.artifacts, project.keys, tag=tag)
            assert project.registry.register("m", bundle_id, run_id=f"r{version}", summary={}).version == version
            bundles[version] = bundle_id
    return Proj(spec, bundles)


@pytest.fixture
def proj(template: Proj, tmp_path: Path) -> Proj:
    shutil.copytree(template.spec.parent, tmp_path / "p")
    return Proj(tmp_path / "p" / "pipeline.yaml", template.bundles)


def _exit(result: object, code: int, *fragments: str) -> str:
    returncode, stderr = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert returncode == code, (returncode, result.stdout, stderr)  # type: ignore[attr-defined]
    for fragment in fragments:
        assert fragment in stderr, stderr
    return str(stderr)


def test_a_component_deleted_from_the_store_exits_3_on_every_path(proj: Proj, tmp_path: Path) -> None:
    spec = str(proj.spec)
    proj.object(proj.component(1, "contract")).unlink()  # shared by both versions: both lose it
    for command in (("models", "verify", "m/1"), ("models", "show", "m/2"), ("lineage", "m/1"),
                    ("models", "export", "m/1", "-o", str(tmp_path / "out.keel")),
                    ("models", "promote", "m", "2", "--reason", "ship")):
        stderr = _exit(keel_here(*command, "-f", spec), 3, "component 'contract'", "is missing from the store",
                       "expected:", "fix:")
        assert "Traceback" not in stderr
    _exit(keel_here("verify", spec), 3, "component 'contract'")
    assert not (tmp_path / "out.keel").exists()
    assert proj.audit_events().count("verification_failure") >= 5  # each refusal is on the record


def test_a_deleted_bundle_exits_3(proj: Proj) -> None:
    proj.object(proj.bundles[2]).unlink()
    _exit(keel_here("models", "verify", "m/2", "-f", str(proj.spec)), 3, "m version 2: bundle:", "missing")
    assert keel_here("models", "verify", "m/1", "-f", str(proj.spec)).returncode == 0


def test_debug_prints_the_traceback_and_keeps_the_exit_code(proj: Proj) -> None:
    spec = str(proj.spec)
    damaged = proj.object(proj.component(1, "model"))
    blob = bytearray(damaged.read_bytes())
    blob[-10] ^= 0x01
    damaged.write_bytes(bytes(blob))
    plain = _exit(keel_here("models", "verify", "m/1", "-f", spec), 3, "component 'model'")
    assert "Traceback" not in plain
    debug = _exit(keel_here("--debug", "models", "verify", "m/1", "-f", spec), 3, "Traceback", "IntegrityError")
    assert "component 'model'" in debug
    _exit(keel_here("--debug", "models", "show", "../m", "-f", spec), 2, "Traceback", "InputError")  # bad input: 2
    _exit(keel_here("--debug", "models", "show", "ghost", "-f", spec), 2, "NotFoundError")


def test_keel_verify_names_every_problem_in_every_category(proj: Proj) -> None:
    spec = str(proj.spec)
    # artifacts: two altered (version 2's verdict and metrics; each verdict names its own model, so none is shared)
    for artifact in (proj.component(2, "verdict"), proj.component(2, "metrics")):
        blob = bytearray(proj.object(artifact).read_bytes())
        blob[-5] ^= 0x01
        proj.object(artifact).write_bytes(bytes(blob))
    # bundles and cache rows: version 1's bundle deleted; two cache rows point at artifacts that are not there
    proj.object(proj.bundles[1]).unlink()
    ghosts = ["e1" * 32, "e2" * 32]
    with proj.open() as project:
        for i, ghost in enumerate(ghosts):
            project.step_cache.remember(key=f"k{i}", scope="my-model", step="train", outputs={"model": ghost},
                                      parts={}, run_id="r")
        # audit: two records edited in the database (the chain is walked to the end)
        with project.metadata.engine.begin() as conn:
            for seq in (1, 3):
                conn.execute(update(tables.audit_log).where(tables.audit_log.c.seq == seq)
                             .values(details='{"edited":true}'))
    result = keel_here("verify", spec, "--json")
    _exit(result, 3)
    problems = json.loads(result.stdout)["problems"]
    text = "\n".join(problems)
    assert len([p for p in problems if p.startswith("artifact ") and "digest mismatch" in p]) == 2, text
    assert any(p.startswith("m version 1: bundle:") for p in problems), text  # the deleted bundle
    [second] = [p for p in problems if p.startswith("m version 2:")]  # both of its damaged components
    assert "component 'metrics'" in second and "component 'verdict'" in second, text
    for ghost in ghosts:
        assert f"artifact {ghost[:12]} is referenced but missing" in problems
    assert f"artifact {proj.bundles[1][:12]} is referenced but missing" in problems
    assert [p.split(" (")[0] for p in problems if p.startswith("audit record")] == ["audit record 1", "audit record 3"]
    assert len(problems) >= 8
    human = keel_here("verify", spec)  # the text output lists each one too
    _exit(human, 3, f"{len(problems)} integrity problem(s)")
    assert [line for line in human.stdout.splitlines() if line.startswith("problem: ")] == \
        [f"problem: {p}" for p in problems]
