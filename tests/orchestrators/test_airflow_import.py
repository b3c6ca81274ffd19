"""The exported DAG file, imported by Apache Airflow itself: its tasks, commands and dependencies.

Airflow is not in the `dev` extra (it is large and pins much of its world): `make test-airflow` runs
this file in a venv of its own, with KEEL_REQUIRE_AIRFLOW=1 so that a missing Airflow fails there.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from tests.helpers import keel_here
from tests.orchestrators.conftest import small_spec
from tests.orchestrators.test_export import graph_edges


def _airflow_installed() -> bool:
    return importlib.util.find_spec("airflow") is not None


@pytest.mark.skipif(not _airflow_installed() and os.environ.get("KEEL_REQUIRE_AIRFLOW") != "1",
                    reason="apache-airflow is not installed (it is not in the dev extra); `make test-airflow` "
                           "installs it in .venv-airflow and runs this test")
def test_airflow_imports_the_dag_with_the_graph_of_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    spec = small_spec(tmp_path / "project", tune=True)
    result = keel_here("export", "airflow", str(spec), "-o", str(tmp_path / "dags"))
    assert result.returncode == 0, result.stderr
    path = tmp_path / "dags" / "orch_test.py"
    module_spec = importlib.util.spec_from_file_location("keel_exported_dag", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # imports airflow and builds the DAG, as the scheduler's parser does
    dag = module.dag
    steps, edges = graph_edges(spec)
    assert dag.dag_id == "orch-test"
    assert sorted(dag.task_ids) == sorted(steps)
    found = {(up, task.task_id) for task in dag.tasks for up in task.upstream_task_ids}
    assert found == edges
    assert {task.task_id: task.bash_command for task in dag.tasks}["register"] == f"keel run {spec} --step register"
    assert type(dag.tasks[0]).__name__ == "BashOperator"
    assert sorted(t.task_id for t in dag.tasks if not t.upstream_task_ids) == ["ingest", "ingest_test"]
