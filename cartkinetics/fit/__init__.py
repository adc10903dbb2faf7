"""Model fitting: per-series fits (lmfit) and the shared likelihood.

    >>> from cartkinetics.fit import fit_series, fit_cohort
    >>> res = fit_series(series, "stein2019")          # BLQ rows by Beal's M3; prior="auto":
    >>>                                                # MAP with the published population prior
    >>> cohort = fit_cohort(data, "stein2019", n_jobs=2)
    >>> cohort.table                                   # one row per series
    >>> fit_series(series, "stein2019", prior=None)    # maximum likelihood
    >>> fit_outputs({"car_t": s1, "leukaemia": s2}, "liu2022", free=[...])  # one likelihood

The likelihood (:mod:`cartkinetics.fit.likelihood`) is shared with the hierarchical fit
(:mod:`cartkinetics.fit.population`, imported on demand because it needs PyMC).
"""

from __future__ import annotations

from typing import Any

from cartkinetics.fit.likelihood import ResidualModel, loglik, loglik_terms, neg2ll, prepare

_LAZY = {
    "fit_series": "cartkinetics.fit.individual",
    "FitResult": "cartkinetics.fit.individual",
    "fit_cohort": "cartkinetics.fit.cohort",
    "CohortFit": "cartkinetics.fit.cohort",
    "fit_joint": "cartkinetics.fit.joint",
    "JointFitResult": "cartkinetics.fit.joint",
    "compare_fits": "cartkinetics.fit.cohort",
    "fit_outputs": "cartkinetics.fit.multi_output",
    "MultiFitResult": "cartkinetics.fit.multi_output",
    "fit_population": "cartkinetics.fit.population",
}

__all__ = ["ResidualModel", "loglik", "loglik_terms", "neg2ll", "prepare", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cartkinetics.fit' has no attribute {name!r}")
