"""The standard steps: pure functions from artifacts (and named services) to artifacts.

Each takes its inputs as keyword arguments and `params` (the JSON part of its cache key) and returns
a dict of outputs; `keelml.pipeline.graph` wires them.
"""
