"""Simulation-based calibration (Talts et al. 2018) of the hierarchical Stein 2019 fit.

A thin wrapper around :func:`cartkinetics.validate.sbc.sbc_stein_main` (the study itself is
:class:`cartkinetics.validate.sbc.SBCStudy`; on Dask and resumable: ``cartkinetics validate
sbc``). For each replication: draw every population quantity from the model's own prior,
simulate a small cohort with the model library's closed form, censor at the LLOQ, fit with
nutpie, and record the rank of the true value among thinned posterior draws. Chi-square test
per quantity, rank histograms and ECDF-difference plots with simultaneous bands in ``--out``.
Replicate r is seeded from ``SeedSequence(--seed)`` child r.

    PYTHONPATH=. python benchmarks/sbc_stein.py --reps 100 --out sbc_out [--workers 2]
"""

from __future__ import annotations

from cartkinetics.validate.sbc import sbc_stein_main as main

if __name__ == "__main__":
    raise SystemExit(main())
