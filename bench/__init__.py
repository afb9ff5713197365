"""Benchmarks: scripts that measure the project and rewrite the tables of BENCHMARKS.md.

Run them all with ``python -m bench.run_all`` (see BENCHMARKS.md for the options).
"""
