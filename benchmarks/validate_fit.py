"""Validation of the per-series fits (issue #5 acceptance); prints tables, saves a figure.

A thin wrapper: the study lives in :mod:`cartkinetics.validate.fit_recovery` (sections 1-4,
same options and output as before) and :mod:`cartkinetics.validate.coverage` (the simulated
Stein 2019 series; the coverage study on Dask: ``cartkinetics validate fit-coverage``).

Run:  cd /work/main && PYTHONPATH=. python benchmarks/validate_fit.py [--n 200] [--jobs 2]
      [--skip-real] [--skip-mechanistic]
"""

from __future__ import annotations

from cartkinetics.validate.coverage import DAYS, auc_0_28_closed, boot_ci, simulate  # noqa: F401
from cartkinetics.validate.fit_recovery import main

if __name__ == "__main__":
    main()
