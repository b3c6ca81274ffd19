"""`keel export airflow|kubeflow`: one task per step of this spec's graph, edges exactly the graph's."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import yaml
from tests.helpers import keel_here
from tests.orchestrators.conftest import small_spec

from keelml.pipeline.graph import standard_graph
from keelml.pipeline.inputs import resolve_inputs
from keelml.spec.pipeline import load_spec


def graph_edges(spec: Path) -> tuple[list[str], set[tuple[str, str]]]:
    """The steps and (upstream, downstream) edges of the graph `keel run` compiles for this spec."""
    loaded = load_spec(spec)
    graph = standard_graph(loaded, resolve_inputs(loaded))
    edges = {(ref.partition(".")[0], step.name) for step in graph.order() for ref in step.dependencies()}
    return [step.name for step in graph.order()], edges


def dag_from_source(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Task ids with their bash commands, and the `a >> b` / `[a, b] >> c` edges, read from the DAG file's AST."""
    tree = ast.parse(text)
    variables: dict[str, str] = {}
    commands: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                getattr(node.value.func, "id", None) == "BashOperator":
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.value.keywords}
            variables[node.targets[0].id] = kwargs["task_id"]  # type: ignore[attr-defined]
            commands[kwargs["task_id"]] = kwargs["bash_command"]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
            ups = node.left.elts if isinstance(node.left, ast.List) else [node.left]
            edges |= {(variables[u.id], variables[node.right.id]) for u in ups}  # type: ignore[attr-defined]
    return commands, edges


def test_airflow_dag_has_one_task_per_step_and_exactly_the_graph_edges(tmp_path: Path) -> None:
    spec = small_spec(tmp_path / "project", tune=True)
    result = keel_here("export", "airflow", str(spec), "-o", str(tmp_path / "dags"), "--json")
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    path = Path(written["output"])
    assert path == tmp_path / "dags" / "orch_test.py"
    assert not (spec.parent / ".keel").exists()  # the export compiled the graph without touching the store
    text = path.read_text()
    commands, edges = dag_from_source(text)
    steps, expected = graph_edges(spec)
    assert list(commands) == steps and "tune" in steps and "ingest_test" in steps
    assert edges == expected
    assert {("tune", "train"), ("split", "tune"), ("gate", "bundle"), ("bundle", "register"),
            ("ingest_test", "validate")} <= edges
    assert commands["train"] == f"keel run {spec} --step train"
    assert "dag_id='orch-test'" in text and "import keelml" not in text
    assert written["steps"] == steps and {tuple(e) for e in written["edges"]} == expected


def test_the_dag_follows_the_spec_and_the_task_command_is_configurable(tmp_path: Path) -> None:
    spec = small_spec(tmp_path / "project", test=False, security=False)
    target = tmp_path / "out" / "custom.py"
    result = keel_here("export", "airflow", str(spec), "-o", str(target), "--spec-path", "/srv/my specs/p.yaml",
                       "--keel-command", "/opt/venv/bin/keel", "--dag-id", "nightly.orch")
    assert result.returncode == 0, result.stderr
    commands, edges = dag_from_source(target.read_text())
    assert list(commands) == ["ingest", "validate", "profile", "split", "train", "evaluate", "model_tests", "export",
                              "gate", "bundle", "register"]
    assert edges == graph_edges(spec)[1]
    assert commands["gate"] == "/opt/venv/bin/keel run '/srv/my specs/p.yaml' --step gate"
    assert "dag_id='nightly.orch'" in target.read_text()


def test_kubeflow_spec_compiles_with_one_container_task_per_step(tmp_path: Path) -> None:
    spec = small_spec(tmp_path / "project", tune=True)
    output = tmp_path / "pipeline.yaml"
    result = keel_here("export", "kubeflow", str(spec), "-o", str(output), "--image", "registry.local/ml/keelml:1")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(output.read_text()))
    ir = documents[0]
    assert ir["pipelineInfo"]["name"] == "orch-test" and ir["schemaVersion"].startswith("2.")
    tasks = ir["root"]["dag"]["tasks"]
    step_of = {task_id: task["taskInfo"]["name"] for task_id, task in tasks.items()}
    steps, expected = graph_edges(spec)
    assert sorted(step_of.values()) == sorted(steps)
    edges = {(step_of[up], step_of[task_id]) for task_id, task in tasks.items()
             for up in task.get("dependentTasks", [])}
    assert edges == expected
    executors = ir["deploymentSpec"]["executors"]
    for task_id, task in tasks.items():
        assert not task["cachingOptions"].get("enableCache")  # keelml's cache decides, not KFP's
        component = ir["components"][task["componentRef"]["name"]]
        container = executors[component["executorLabel"]]["container"]
        assert container["image"] == "registry.local/ml/keelml:1"
        assert container["command"] + container["args"] == ["keel", "run", str(spec), "--step", step_of[task_id]]


def test_kubeflow_default_image_and_output_name(tmp_path: Path, monkeypatch) -> None:
    spec = small_spec(tmp_path / "project", test=False, security=False)
    monkeypatch.chdir(tmp_path)
    result = keel_here("export", "kubeflow", str(spec))
    assert result.returncode == 0, result.stderr
    ir = yaml.safe_load((tmp_path / "orch-test-kfp.yaml").read_text())
    images = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()}
    from keelml import __version__

    assert images == {f"keelml:{__version__}"} and len(ir["root"]["dag"]["tasks"]) == 11


def test_export_errors_say_what_was_expected_and_how_to_fix_it(tmp_path: Path) -> None:
    spec = small_spec(tmp_path / "project")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        (("export", "argo", str(spec)), "unknown export target 'argo'", "airflow (an Airflow DAG file (.py))"),
        (("export", "airflow", str(tmp_path / "missing.yaml")), "spec file not found", "keel init"),
        (("export", "airflow", str(spec), "-o", str(blocker / "dags")), "cannot write to", "writable path"),
        (("export", "kubeflow", str(spec), "-o", str(spec)), "is the spec itself", "-o orch-test-kfp.yaml"),
        (("export", "airflow", str(spec), "--image", "x:1"), "--image applies to `keel export kubeflow`",
         "drop --image"),
        (("export", "kubeflow", str(spec), "--image", "bad image!"), "is not a container image reference",
         "keelml"),
        (("export", "airflow", str(spec), "--dag-id", "no spaces"), "not a valid Airflow DAG id", "--dag-id"),
    ]
    for args, what, fix in cases:
        result = keel_here(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        stderr = " ".join(result.stderr.split())
        assert what in stderr and fix in stderr and "expected:" in stderr and "fix:" in stderr, (args, stderr)
        assert "Traceback" not in result.stderr
    assert spec.read_text().startswith("name: orch-test")  # the refused export left the spec alone


def test_kubeflow_without_kfp_says_which_extra_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    spec = small_spec(tmp_path / "project")
    monkeypatch.setitem(sys.modules, "kfp", None)  # `import kfp` now fails as if it were not installed
    result = keel_here("export", "kubeflow", str(spec), "-o", str(tmp_path / "p.yaml"))
    assert result.returncode == 2 and "the kfp SDK is not installed" in result.stderr
    assert "pip install 'keelml[kubeflow]'" in result.stderr and not (tmp_path / "p.yaml").exists()
    assert not list(tmp_path.glob(".p*.yaml"))  # no temporary file left behind


def test_the_cli_does_not_import_kfp_until_asked() -> None:
    import subprocess
    import sys

    code = "import sys, keelml.cli.main, keelml.cli.export; assert 'kfp' not in sys.modules, 'kfp imported'"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
