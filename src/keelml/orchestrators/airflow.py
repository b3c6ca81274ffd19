"""Write an Airflow DAG file: one BashOperator per step running `keel run SPEC --step NAME`.

The file is plain Python with no keelml import, so the Airflow scheduler parses it without keelml
installed; only the workers that run the tasks need the `keel` command.
"""

from __future__ import annotations

import keyword
import re
import shlex

from keelml import __version__
from keelml.errors import InputError
from keelml.orchestrators.topology import StepGraph, task_command

_HEADER = '''"""Airflow DAG for the keelml pipeline {pipeline!r}: written by `keel export airflow` (keelml {version}).

One task per step of the spec's graph; each runs `keel run SPEC --step NAME`, which takes the step's
inputs from the keelml cache written by the tasks before it (so the store must be shared by the
workers) and fails with exit 2, naming the step to run first, if one is missing. Re-export this file
when the spec changes which steps exist (tuning, a test set, the privacy or robustness audits).
"""

from __future__ import annotations

import datetime

try:  # Airflow 3: the task SDK
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2 without the standard provider
    from airflow.operators.bash import BashOperator

with DAG(
    dag_id={dag_id!r},
    description={description!r},
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["keelml"],
) as dag:
'''

_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")


def airflow_dag(graph: StepGraph, *, spec_path: str, keel: str = "keel", dag_id: str | None = None) -> str:
    """The text of a DAG file for `graph`; task ids are the step names, edges exactly the graph's."""
    dag_id = dag_id or graph.pipeline
    if not _DAG_ID.match(dag_id):
        raise InputError(f"--dag-id {dag_id!r} is not a valid Airflow DAG id",
                         expected="1-250 characters from letters, digits, '_', '.' and '-'",
                         fix="pass another --dag-id, or leave it out to use the spec's name")
    lines = [_HEADER.format(pipeline=graph.pipeline, version=__version__, dag_id=dag_id,
                            description=f"keelml pipeline {graph.pipeline}")]
    for step in graph.order:
        if not step.isidentifier() or keyword.iskeyword(step):
            raise InputError(f"step name {step!r} cannot name an Airflow task variable",
                             expected="step names that are Python identifiers",
                             fix="rename the step")
        command = shlex.join(task_command(keel, spec_path, step))
        if any(marker in command for marker in ("{{", "{%", "{#")):
            raise InputError(f"the task command holds a Jinja marker, which Airflow would expand: {command!r}",
                             expected="a spec path and keel command without '{{', '{%' or '{#'",
                             fix="move the spec to a path without braces, or pass --spec-path / --keel-command")
        lines.append(f"    {step} = BashOperator(task_id={step!r}, bash_command={command!r})")
    lines.append("")
    for step in graph.order:
        needs = graph.needs[step]
        if len(needs) == 1:
            lines.append(f"    {needs[0]} >> {step}")
        elif needs:
            lines.append(f"    [{', '.join(needs)}] >> {step}")
    return "\n".join(lines) + "\n"
