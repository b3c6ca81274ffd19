"""The application layer: a spec compiled to the standard graph, run with a project's services.

    inputs.py      the sources a run reads, checked and digested before anything is written
    graph.py       standard_graph: the pure graph of steps (no keys, no database)
    steps/         the step functions (data, training, evaluation, audits, release)
    services.py    what the runner hands to steps at run time, and the codecs
    production.py  the production version a candidate is compared with; registering a candidate
    promotion.py   promotion with infra validation
    run.py         run(): the Python API's and `keel run`'s entry point
"""

from keelml.pipeline.run import RunOutcome, run

__all__ = ["RunOutcome", "run"]
