"""Attacks by someone who can write keel.db but holds no key (issue 13, findings 1 and 11), on a real Adult
project through the `keel` command and the database file:

- a refused model laundered through the step cache (the gate's cached output pointed at an older passing
  verdict) is refused: the edited entry fails its signature, the gate is recomputed, `keel verify` exits 3
  and `keel audit` holds the refusal;
- a verdict never vouches for another model: a bundle whose verdict judged another model is refused at
  registration, promotion and verification (exit 3, audited);
- every edited step_cache row is detected, and a run recomputes exactly those steps, to the same outputs;
- the same model content is the same version: a run that only repairs a damaged artifact, and two runs of
  one spec at once on one store, register one version.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import keel_here, small_adult_project

NAME = "adult-income"
# run 2: a much weaker model, and a gate it fails (its verdict refuses it)
WEAK = ("family: hist_gradient_boosting\n  params: {max_iter: 2, max_depth: 1}", "min_score: 0.80",
        "min_score: 0.86")


@dataclass(frozen=True)
class Project:
    spec: Path
    good: dict[str, Any]  # `keel run --json` of the passing model (v1, staging)
    weak: dict[str, Any]  # `keel run --json` of the refused one (v2, rejected)

    @property
    def db(self) -> Path:
        return self.spec.parent / ".keel" / "keel.db"

    def copy(self, directory: Path) -> Project:
        shutil.copytree(self.spec.parent, directory, symlinks=True)
        return Project(directory / self.spec.name, self.good, self.weak)

    def use(self, which: str) -> None:
        """Make the spec file the good or the weak one."""
        text = (self.spec.parent / f"{which}.yaml").read_text()
        self.spec.write_text(text)


def _run(spec: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = keel_here("run", str(spec), "--json", *args)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def _step(outcome: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in outcome["steps"] if s["name"] == name)


def _sql(db: Path, statement: str, *params: object) -> list[tuple[Any, ...]]:
    """What an attacker with write access to keel.db and no key does: plain SQL on the file."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(statement, params).fetchall()
    conn.close()
    return rows


def _versions(spec: Path) -> list[tuple[int, str]]:
    result = keel_here("models", "show", NAME, "--spec", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    return [(int(v["version"]), str(v["status"])) for v in json.loads(result.stdout)]


def _verify(spec: Path) -> tuple[int, dict[str, Any]]:
    result = keel_here("verify", str(spec), "--json")
    return result.returncode, json.loads(result.stdout)


def _failures(spec: Path) -> list[dict[str, Any]]:
    result = keel_here("audit", "--spec", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    return [r["details"] for r in json.loads(result.stdout)["records"] if r["event"] == "verification_failure"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """One Adult project (1500 + 600 rows, 2 folds) with v1 (passed, staging) and v2 (refused, rejected)."""
    spec = small_adult_project(tmp_path_factory.mktemp("cache") / "p", train_rows=1500, test_rows=600, cv_folds=2)
    good = spec.read_text()
    weak = good.replace("family: hist_gradient_boosting", WEAK[0]).replace(WEAK[1], WEAK[2])
    assert weak != good and "max_iter: 2" in weak and WEAK[2] in weak
    (spec.parent / "good.yaml").write_text(good)
    (spec.parent / "weak.yaml").write_text(weak)
    code, first = _run(spec)
    assert code == 0 and first["model"]["version"] == 1 and first["model"]["status"] == "staging", first
    spec.write_text(weak)
    code, second = _run(spec)
    assert code == 4 and second["model"]["version"] == 2 and second["model"]["status"] == "rejected", second
    assert second["primary_metric"]["value"] < 0.86 < first["primary_metric"]["value"]
    spec.write_text(good)
    return Project(spec, first, second)


def test_a_refused_model_is_not_laundered_through_the_gates_cache_entry(project: Project, tmp_path: Path) -> None:
    p = project.copy(tmp_path / "p")
    p.use("weak")
    passing = _step(p.good, "gate")["outputs"]["verdict"]  # v1's verdict: intact, signed by this project
    refused_key = _step(p.weak, "gate")["cache_key"]
    # the attack: one UPDATE points the weak model's gate result at the passing verdict
    _sql(p.db, "UPDATE step_cache SET outputs = ? WHERE cache_key = ?", json.dumps({"verdict": passing}),
         refused_key)
    code, report = _verify(p.spec)
    assert code == 3 and not report["ok"]
    assert any("step cache entry" in problem and "'gate'" in problem for problem in report["problems"]), report

    code, outcome = _run(p.spec)
    assert code == 4, outcome  # still refused by the gate
    gate = _step(outcome, "gate")
    assert gate["status"] == "ran" and "does not match its signature" in gate["cache_refused"]
    assert gate["outputs"]["verdict"] == _step(p.weak, "gate")["outputs"]["verdict"]  # its own verdict again
    assert outcome["gate"]["passed"] is False
    assert outcome["model"]["version"] == 2 and outcome["model"]["status"] == "rejected"
    assert any(note.startswith("refused the cached result of step 'gate'") for note in outcome["notes"])
    assert _versions(p.spec) == [(1, "staging"), (2, "rejected")]  # no third, promotable version
    [record] = [f for f in _failures(p.spec) if f.get("what") == "step_cache"]
    assert record["step"] == "gate" and record["cache_key"] == refused_key
    assert _verify(p.spec)[0] == 0  # the recomputed entry is signed again
    assert keel_here("audit", "--verify", "--spec", str(p.spec)).returncode == 0


def _forged_bundle(p: Project) -> str:
    """v2's bundle with v1's passing verdict, signed with the project's key: what the bundle step signed when
    its gate input came from a laundered cache entry. Returns its artifact id."""
    from keelml.registry import build_bundle
    from keelml.registry.project import open_store

    with open_store(p.spec.parent / ".keel") as opened:
        manifest = json.loads(opened.artifacts.get(p.weak["model"]["bundle"]))["manifest"]
        components = {part: entry["sha256"] for part, entry in manifest["components"].items()}
        components["verdict"] = _step(p.good, "gate")["outputs"]["verdict"]
        forged = build_bundle(name=NAME, components=components, info=manifest["info"], keys=opened.keys,
                              codecs={part: entry["codec"] for part, entry in manifest["components"].items()})
        return opened.artifacts.put(json.dumps(forged).encode(), codec="json")


def test_a_verdict_never_vouches_for_another_model(project: Project, tmp_path: Path) -> None:
    """The second wall: should a passing verdict ever be bundled with another model, registration, promotion
    and verification refuse it (exit 3), each with an audit record."""
    from keelml.errors import IntegrityError
    from keelml.registry.project import open_store

    p = project.copy(tmp_path / "p")
    forged = _forged_bundle(p)
    with open_store(p.spec.parent / ".keel") as opened, pytest.raises(IntegrityError, match="judged another"):
        opened.registry.register(NAME, forged, run_id="attack", summary={})
    assert _versions(p.spec) == [(1, "staging"), (2, "rejected")]
    # an attacker without the key cannot make such a bundle; with one lying around, one writes it as v3 through the
    # registry's repository, past every check (its registration record signed with that key)
    with open_store(p.spec.parent / ".keel") as opened:
        assert opened.registry.repository.add_version(NAME, forged, run_id="attack", summary={}, facts={},
                                                      status="staging", reasons=[], actor=None) == (3, True)
    for command in (("models", "verify", f"{NAME}/3"), ("models", "promote", NAME, "3", "--reason", "laundered")):
        result = keel_here(*command, "--spec", str(p.spec))
        assert result.returncode == 3, (command, result.stdout, result.stderr)
        assert "judged another model and metrics than this bundle holds" in result.stderr, result.stderr
    code, report = _verify(p.spec)
    assert code == 3 and any("judged another" in problem for problem in report["problems"]), report
    assert keel_here("models", "show", NAME, "--spec", str(p.spec), "--json").returncode == 0
    refusals = [f for f in _failures(p.spec) if "judged another" in f.get("problem", "")]
    assert len(refusals) >= 3 and {f.get("version") for f in refusals} >= {None, 3}
    with open_store(p.spec.parent / ".keel") as opened:
        assert opened.registry.aliases(NAME) == {}  # nothing was promoted


EDITS = ("outputs", "copied entry", "step", "scope", "unsigned", "signer")


def _tamper(db: Path) -> dict[str, str]:
    """Edit every step_cache row, cycling through the kinds of edit; returns {cache key: step} edited."""
    rows = _sql(db, "SELECT cache_key, step, outputs, scope, signed_by, sig FROM step_cache ORDER BY cache_key")
    edited = {}
    for index, (key, step, outputs, *_) in enumerate(rows):
        kind = EDITS[index % len(EDITS)]
        other = rows[(index + 1) % len(rows)]
        if kind == "outputs":  # another intact, signed artifact under the same output name(s)
            moved = dict.fromkeys(json.loads(outputs), next(iter(json.loads(other[2]).values())))
            _sql(db, "UPDATE step_cache SET outputs = ? WHERE cache_key = ?", json.dumps(moved), key)
        elif kind == "copied entry":  # another step's whole signed entry, under this key
            _sql(db, "UPDATE step_cache SET step = ?, outputs = ?, scope = ?, signed_by = ?, sig = ? "
                     "WHERE cache_key = ?", *other[1:], key)
        elif kind == "step":
            _sql(db, "UPDATE step_cache SET step = ? WHERE cache_key = ?", "gate" if step != "gate" else "train", key)
        elif kind == "scope":
            _sql(db, "UPDATE step_cache SET scope = 'another-pipeline' WHERE cache_key = ?", key)
        elif kind == "unsigned":
            _sql(db, "UPDATE step_cache SET sig = NULL, signed_by = NULL WHERE cache_key = ?", key)
        else:
            _sql(db, "UPDATE step_cache SET signed_by = 'ed25519:0000000000000000' WHERE cache_key = ?", key)
        edited[key] = step
    return edited


def test_every_edited_step_cache_row_is_detected_and_recomputed(project: Project, tmp_path: Path) -> None:
    p = project.copy(tmp_path / "p")
    edited = _tamper(p.db)
    assert len(edited) >= 15  # every step of both runs (the data steps are shared)
    code, report = _verify(p.spec)
    assert code == 3 and report["step_cache_entries_checked"] == len(edited)
    cache_problems = [problem for problem in report["problems"] if problem.startswith("step cache entry")]
    assert len(cache_problems) == len(edited)  # one per row, every row
    assert {key[:12] for key in edited} == {problem.split()[3] for problem in cache_problems}

    code, outcome = _run(p.spec)  # the good spec: every entry it looks up was edited
    assert code == 0, outcome
    assert all(s["status"] == "ran" and s["cache_refused"] for s in outcome["steps"]), outcome["steps"]
    # recomputed to the very same outputs (but the timings, and the registration, which created nothing now),
    # and the same version
    def outputs(run: dict[str, Any]) -> dict[str, Any]:
        return {f"{s['name']}.{name}": digest for s in run["steps"] for name, digest in s["outputs"].items()
                if name not in ("timings", "registration")}

    assert outputs(outcome) == outputs(p.good)
    assert outcome["model"]["version"] == 1 and outcome["model"]["new_version"] is False
    assert len([f for f in _failures(p.spec) if f.get("what") == "step_cache"]) == len(outcome["steps"])
    # what the run did not look up (the weak run's own steps) is still reported, and nothing else
    code, report = _verify(p.spec)
    left = {key for key in edited if key not in {s["cache_key"] for s in outcome["steps"]}}
    assert code == (3 if left else 0) and len(report["problems"]) == len(left)


def _damage(project: Path, artifact_id: str) -> None:
    path = project / ".keel" / "store" / "objects" / artifact_id[:2] / artifact_id
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x01
    path.write_bytes(bytes(blob))


def test_a_run_that_repairs_a_damaged_model_registers_no_new_version(project: Project, tmp_path: Path) -> None:
    p = project.copy(tmp_path / "p")
    train = _step(p.good, "train")
    _damage(p.spec.parent, train["outputs"]["model"])
    code, outcome = _run(p.spec)
    assert code == 0, outcome
    assert _step(outcome, "train")["status"] == "ran"  # the model was refitted: new timings, same content
    assert _step(outcome, "train")["outputs"]["timings"] != train["outputs"]["timings"]
    assert _step(outcome, "train")["outputs"]["cv"] == train["outputs"]["cv"]
    assert outcome["model"]["bundle"] == p.good["model"]["bundle"]
    assert (outcome["model"]["version"], outcome["model"]["new_version"]) == (1, False)
    assert _versions(p.spec) == [(1, "staging"), (2, "rejected")]


def test_one_spec_run_twice_at_once_registers_one_version(tmp_path: Path) -> None:
    spec = small_adult_project(tmp_path / "p", train_rows=1500, test_rows=600, cv_folds=2)
    env = {**os.environ, "NO_COLOR": "1"}
    runs = [subprocess.Popen([sys.executable, "-m", "keelml", "run", str(spec), "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outcomes = []
    for process in runs:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        outcomes.append(json.loads(out))
    assert {o["model"]["version"] for o in outcomes} == {1}
    assert len({o["model"]["bundle"] for o in outcomes}) == 1
    assert sorted(o["model"]["new_version"] for o in outcomes) == [False, True]
    assert _versions(spec) == [(1, "staging")]
