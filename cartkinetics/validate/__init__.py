"""Validation studies of the fits, in process or on Dask, resumable.

    >>> from cartkinetics.validate import FitCoverageStudy, SBCStudy, BootstrapStudy, run_study
    >>> res = run_study(FitCoverageStudy(), 200, seed=2026, out="cov", workers=2)
    >>> res.summary_table          # coverage with Wilson intervals

Studies (one replicate = one task's unit; replicate r seeded from SeedSequence(seed) child r):

* ``fit-coverage`` (:class:`~cartkinetics.validate.coverage.FitCoverageStudy`): coverage of
  the per-series fits' 95% intervals over simulated Stein 2019 series;
* ``bootstrap`` (:class:`~cartkinetics.validate.coverage.BootstrapStudy`): coverage of the
  parametric-bootstrap intervals of model Cmax, Tmax, AUC0-28;
* ``sbc`` (:class:`~cartkinetics.validate.sbc.SBCStudy`): simulation-based calibration of the
  hierarchical Stein 2019 fit.

Command line: ``cartkinetics validate {fit-coverage,sbc,bootstrap} --replicates N --out DIR
[--workers N | --scheduler ADDR] [--resume]``.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "run_study": "cartkinetics.validate.study",
    "Study": "cartkinetics.validate.study",
    "StudyResult": "cartkinetics.validate.study",
    "FitCoverageStudy": "cartkinetics.validate.coverage",
    "BootstrapStudy": "cartkinetics.validate.coverage",
    "wilson_interval": "cartkinetics.validate.coverage",
    "SBCStudy": "cartkinetics.validate.sbc",
}

STUDIES = {"fit-coverage": "FitCoverageStudy", "bootstrap": "BootstrapStudy", "sbc": "SBCStudy"}

__all__ = [*_LAZY, "STUDIES"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cartkinetics.validate' has no attribute {name!r}")


def plot_for(result: Any, ax: Any = None, **kw: Any) -> Any:
    """The main figure of a study result: coverage forest, or the ECDF difference of the
    first SBC quantity (all quantities: ``sbc.plot_ecdf_differences``)."""
    if result.study == "sbc":
        from cartkinetics.validate.sbc import plot_ecdf_difference

        t = result.table[result.table["status"] == "ok"]
        col = next(c for c in t.columns if c.startswith("rank["))
        return plot_ecdf_difference(t[col].to_numpy(int), result.config["thin_to"], ax=ax,
                                    title=col[5:-1], **kw)
    from cartkinetics.validate.coverage import plot_coverage

    return plot_coverage(result.summary_table, ax=ax, title=result.study)
