"""Benchmarks: scripts, not tests. Each prints a table and writes JSON to bench/results/.

Run them as modules from the repository root, so the project and the shared helpers
(serving.py, timing.py, photos.py) import as packages:

    .venv/bin/python -m bench.engine
    .venv/bin/python -m bench.over_http --int8
"""
