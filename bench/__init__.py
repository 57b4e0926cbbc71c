"""The benchmark of issue 13: a workload generator (generate.py) and the measurements (run.py).

Not part of the test suite; run it with ``make bench N=12000`` (README, "Benchmark").
"""
