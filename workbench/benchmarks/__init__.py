"""Measurements of the engine and the nodes; each module runs as `python -m workbench.benchmarks.NAME`."""
