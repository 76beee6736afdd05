"""Benchmarks and fault drills.

`python -m bench` runs the end-to-end benchmark; `python -m bench.drills` runs the fault drills.
"""
