"""Hand a spec's step graph to an orchestrator: Airflow DAG files and Kubeflow Pipelines specs."""
