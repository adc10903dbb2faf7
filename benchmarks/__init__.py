"""Benchmarks of cartkinetics against its peers, measured in the same run.

Run them all with ``python -m benchmarks`` (or ``cartkinetics bench``) from the repository
root; each ``bench_*.py`` script also runs alone. See :mod:`benchmarks.__main__`.
"""
