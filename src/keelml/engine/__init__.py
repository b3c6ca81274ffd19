"""The small DAG runner: steps, graphs, content-addressed cache keys, execution."""
