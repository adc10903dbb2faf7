"""cartkinetics: CAR-T cellular kinetics in Python.

Published ODE models of CAR-T expansion, contraction and persistence solved by numba
solvers; per-patient (lmfit) and hierarchical (PyMC) fits with BLQ values handled by
Beal's M3 likelihood; first-versus-second infusion comparisons; cohort endpoints
(response, Kaplan-Meier survival, safety); dose-scenario simulation, on Dask when asked.

Submodules load on first use so that ``import cartkinetics`` stays fast and never pulls
in PyMC, Dask or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

from cartkinetics.errors import CartKineticsError

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    "read_kinetics": "cartkinetics.data",
    "read_patients": "cartkinetics.data",
    "write_nonmem": "cartkinetics.data",
    "KineticsData": "cartkinetics.data",
    "Series": "cartkinetics.data",
    "nca": "cartkinetics.noncompartmental",
    "compare_infusions": "cartkinetics.compare",
    "curve_outcomes": "cartkinetics.outcomes",
    "batch_curve_outcomes": "cartkinetics.outcomes",
    "auc_linlog": "cartkinetics.outcomes",
    "fit_series": "cartkinetics.fit",
    "fit_cohort": "cartkinetics.fit",
    "fit_population": "cartkinetics.fit.population",
    "read_cohort": "cartkinetics.endpoints",
    "cohort_endpoints": "cartkinetics.endpoints",
    "exposure_response": "cartkinetics.exposure",
    "exposure_draws": "cartkinetics.exposure",
}
_SUBMODULES = {
    "models",
    "solvers",
    "fit",
    "endpoints",
    "example",
    "outcomes",
    "data",
    "noncompartmental",
    "simulate",
    "exposure",
}

__all__ = ["CartKineticsError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"cartkinetics.{name}")
    raise AttributeError(f"module 'cartkinetics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
