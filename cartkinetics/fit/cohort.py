"""Fit every series of a kinetics data set; first vs second infusion from the fits.

:func:`fit_cohort` runs :func:`cartkinetics.fit.individual.fit_series` on each series, in
parallel across series when ``n_jobs > 1`` (a process pool by default: the fit is Python and
numpy code holding the GIL most of the time, so threads do not help; measured in
``benchmarks/bench_fit.py``). Each series is fitted inside its own ``try``: a failure is a
status and a reason in its row, never an exception stopping the others.

:func:`compare_fits` runs the paired comparison of :func:`cartkinetics.compare.compare_infusions`
on the model-based Cmax, Tmax and AUC0-28 (same output keys as with NCA tables).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.individual import OK_STATUSES, FitResult, failed_fit, fit_series
from cartkinetics.fit.likelihood import ResidualModel
from cartkinetics.fit.problem import series_key

if TYPE_CHECKING:
    from cartkinetics.fit.distributed import StreamedCohortFit


def _as_series_list(data: Any, assay: str | None = None) -> list[Any]:
    """Series from a KineticsData, a path/DataFrame (read_kinetics) or a list of Series."""
    if isinstance(data, (list, tuple)):
        return list(data)
    if isinstance(data, (str, Path, pd.DataFrame)):
        from cartkinetics.data import read_kinetics

        data = read_kinetics(data)
    if hasattr(data, "series"):
        return list(data.series(assay) if assay else data.series())
    raise CartKineticsError(
        f"fit_cohort expects KineticsData, a path, a DataFrame or a list of Series; got "
        f"{type(data).__name__}"
    )


def fit_series_isolated(series: Any, model: Any, fit_kws: dict[str, Any]) -> FitResult:
    """:func:`fit_series` with any exception turned into a failed result (status ``error``,
    the exception in ``message``): the per-series unit of work of :func:`fit_cohort`, in
    process, in a process pool or on a Dask worker."""
    return _safe_fit((series, model, fit_kws))


def fit_joint_isolated(group: list[Any], model: Any, fit_kws: dict[str, Any]) -> Any:
    """:func:`cartkinetics.fit.joint.fit_joint` with any exception turned into a failed
    result: the per-patient unit of work of ``fit_cohort(joint=True)``."""
    return _safe_joint((group, model, fit_kws))


def joint_groups(series: list[Any]) -> list[list[Any]]:
    """Series of the same patient and assay with two or more infusions, in infusion order."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for s in series:
        p, _, a = series_key(s)
        groups.setdefault((p, a), []).append(s)
    return [sorted(g, key=lambda s: s.infusion) for g in groups.values() if len(g) >= 2]


def censoring_of(fit_kws: dict[str, Any]) -> str:
    """The BLQ handling the fit options select ("M3" unless told otherwise)."""
    return fit_kws.get("censoring") or (
        fit_kws["residual"].censoring if fit_kws.get("residual") else "M3"
    )


def joint_kws(fit_kws: dict[str, Any]) -> dict[str, Any]:
    """The fit options passed on to the joint fits (profiles are per-series only)."""
    return {k: v for k, v in fit_kws.items() if k not in ("profile",)}


def _safe_fit(args: tuple[Any, Any, dict]) -> FitResult:
    series, model, kws = args
    try:
        return fit_series(series, model, **kws)
    except Exception as exc:  # bad input of one series must not stop the cohort
        name = model if isinstance(model, str) else getattr(model, "name", str(model))
        res = ResidualModel(censoring=kws.get("censoring") or "M3")
        return failed_fit(series, name, "error", f"{type(exc).__name__}: {exc}", res)


def _safe_joint(args: tuple[list[Any], Any, dict]) -> Any:
    from cartkinetics.fit.joint import fit_joint

    group, model, kws = args
    try:
        return fit_joint(group, model, **kws)
    except Exception as exc:
        from cartkinetics.fit.joint import JointFitResult

        return JointFitResult(
            patient=str(group[0].patient), assay=str(group[0].assay),
            model=model if isinstance(model, str) else getattr(model, "name", ""),
            status="error", message=f"{type(exc).__name__}: {exc}",
            censoring=kws.get("censoring") or "M3",
        )


def _run(func: Any, tasks: list, n_jobs: int, backend: str) -> list:
    if n_jobs is None or n_jobs == 0:
        n_jobs = os.cpu_count() or 1
    n_jobs = max(1, min(int(n_jobs), len(tasks)))
    if n_jobs == 1 or len(tasks) <= 1:
        return [func(t) for t in tasks]
    if backend == "thread":
        with ThreadPoolExecutor(max_workers=n_jobs) as ex:
            return list(ex.map(func, tasks))
    if backend != "process":
        raise CartKineticsError(f"backend must be 'process' or 'thread', got {backend!r}")
    chunk = max(1, len(tasks) // (4 * n_jobs))
    # numba's parallel outcomes use OpenMP threads, which make fork() unsafe: start the
    # workers from a clean server process instead
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as ex:
        return list(ex.map(func, tasks, chunksize=chunk))


@dataclass
class CohortFit:
    """Fits of every series of a data set.

    Attributes
    ----------
    results : list of FitResult (one per series, in data order)
    joint : list of JointFitResult (patients with two infusions, when ``joint=True``)
    model : str
    censoring : str
    """

    results: list[FitResult]
    model: str
    censoring: str
    joint: list[Any] = field(default_factory=list)

    @property
    def table(self) -> pd.DataFrame:
        """One row per series: status, message, estimates, SEs, CIs, model outcomes."""
        return pd.DataFrame([r.row() for r in self.results])

    def to_frame(self) -> pd.DataFrame:
        """The per-series fit table (estimates, SEs, outcomes with CIs, status) as a DataFrame."""
        return self.table

    to_dataframe = to_frame

    def estimators(self) -> dict[str, int]:
        """Number of series per estimator (e.g. ``{'MAP (population prior)': 12}``)."""
        out: dict[str, int] = {}
        for r in self.results:
            out[r.estimator] = out.get(r.estimator, 0) + 1
        return out

    def estimator_label(self) -> str:
        """The estimator in words: ``'MAP (population prior)'``, or one entry per estimator
        with its number of series when the series were fitted differently."""
        ests = self.estimators()
        if len(ests) == 1:
            return next(iter(ests))
        return ", ".join(f"{k} ({v} series)" for k, v in ests.items()) or "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: model, censoring, counts per status and estimator, one record per
        series (:meth:`FitResult.to_dict`) and per joint fit (:meth:`JointFitResult.to_dict`)."""
        return {"model": self.model, "censoring": self.censoring,
                "n_series": len(self.results), "status_counts": self.counts(),
                "estimators": self.estimators(),
                "fits": [r.to_dict() for r in self.results],
                "joint": [j.to_dict() for j in self.joint]}

    def _head(self) -> str:
        st = ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items()))
        est = ", ".join(f"{k} {v}" for k, v in self.estimators().items())
        joint = f"; {len(self.joint)} joint fit(s)" if self.joint else ""
        return (f"{self.model} fits of {len(self.results)} series ({self.censoring}; "
                f"estimator: {est or 'none'}): {st or 'none'}{joint}")

    def _brief(self) -> pd.DataFrame:
        cols = ["patient", "infusion", "assay", "status", "model_cmax", "model_tmax",
                "model_auc_0_28"]
        t = self.table
        if t.empty:
            return pd.DataFrame(columns=cols)
        return t[[c for c in cols if c in t.columns]].rename(
            columns=lambda c: c.removeprefix("model_"))

    def summary(self) -> str:
        """Readable report: statuses, estimator, one line per series (model Cmax, Tmax,
        AUC0-28), the reasons of the failed fits and the joint fits."""
        lines = [self._head()]
        b = self._brief()
        if len(b):
            lines.append(b.to_string(index=False, float_format=lambda v: f"{v:.4g}",
                                     na_rep="NA"))
        for r in self.results:
            if not r.ok:
                lines.append(f"note: {r.patient} infusion {r.infusion} {r.assay}: {r.status}: "
                             f"{r.message}")
        lines += [j.summary() for j in self.joint]
        return "\n".join(lines)

    def __repr__(self) -> str:
        b = self._brief()
        shown = b.head(8).to_string(index=False, float_format=lambda v: f"{v:.4g}",
                                     na_rep="NA") if len(b) else ""
        more = f"\n... {len(b) - 8} more series" if len(b) > 8 else ""
        return (f"CohortFit({self._head()}\n{shown}{more}\n.table, .summary(), .plot() "
                "for the rest)")

    def _repr_html_(self) -> str:
        import html

        return (f"<p><b>{html.escape(self._head())}</b></p>"
                + self._brief().to_html(index=False, na_rep="NA",
                                        float_format=lambda v: f"{v:.4g}"))

    def records(self) -> list[dict[str, Any]]:
        """The CLI --json records (one per series)."""
        return [r.record() for r in self.results]

    def joint_table(self) -> pd.DataFrame:
        """One row per joint (first + second infusion) fit: ratios of Cmax and Tmax with CIs."""
        return pd.DataFrame([j.row() for j in self.joint])

    def outcome_table(self) -> pd.DataFrame:
        """patient, infusion, assay, unit, cmax, tmax, auc_0_28 (model-based) of usable fits
        (levels in ``unit``, tmax in days, the area in unit x day)."""
        rows = []
        for r in self.results:
            if r.status not in OK_STATUSES:
                continue
            rows.append(
                {
                    "patient": r.patient,
                    "infusion": r.infusion,
                    "assay": r.assay,
                    "unit": r.unit,
                    "cmax": r.outcomes.get("cmax", math.nan),
                    "tmax": r.outcomes.get("tmax", math.nan),
                    "auc_0_28": r.outcomes.get("auc_0_28", math.nan),
                }
            )
        return pd.DataFrame(rows, columns=["patient", "infusion", "assay", "unit", "cmax",
                                           "tmax", "auc_0_28"])

    def compare(self, assay: str | None = None, **kws: Any) -> dict[str, Any]:
        """First vs second infusion on model-based Cmax, Tmax, AUC0-28 (see compare_fits)."""
        return compare_fits(self, assay=assay, **kws)

    def counts(self) -> dict[str, int]:
        """Number of series per fit status (e.g. ``{'converged': 12, 'too_few_points': 1}``)."""
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def plot(self, ax: Any = None, fig: Any = None, *, ncols: int = 4, axes: Any = None,
             band: bool = False) -> Any:
        """Observed series and fitted curves.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw every series on this Axes (observed points, BLQ open at the LLOQ, fitted
            curve; one colour per series; log scale) and return it.
        fig : matplotlib Figure, optional
            Without ``ax``: the grid of one panel per series (:meth:`FitResult.plot`) is drawn
            in this figure (a new one when omitted).
        ncols : int
            Columns of the grid.
        axes : array of Axes, optional
            Deprecated alias (the grid on these Axes); use ``ax=`` or ``fig=``.
        band : bool
            Draw each curve's 95% band (on the single Axes).

        Returns
        -------
        matplotlib Axes (``ax`` given) or ndarray of Axes (the grid, one per series)
        """
        import matplotlib.pyplot as plt
        import numpy as np

        if axes is not None:
            import warnings

            warnings.warn("CohortFit.plot(axes=) is deprecated: pass ax= (one Axes) or fig= "
                          "(a grid)", DeprecationWarning, stacklevel=2)
            if ax is None and np.ndim(axes) == 0:
                ax = axes
        if ax is not None and axes is None:
            return self._plot_one(ax, band)
        n = len(self.results)
        nrows = max(1, math.ceil(n / ncols))
        if axes is not None:
            grid = np.asarray(axes, dtype=object)
            fig = grid.flat[0].figure
        else:
            if fig is None:
                fig = plt.figure(figsize=(3.2 * ncols, 2.5 * nrows))
            grid = np.asarray(fig.subplots(nrows, ncols, squeeze=False), dtype=object)
        for a, r in zip(grid.flat, self.results, strict=False):
            r.plot(ax=a)
            a.set_xlabel("")
            a.set_ylabel("")
            if a.get_legend():
                a.get_legend().remove()
        for a in list(grid.flat)[n:]:
            a.set_visible(False)
        fig.tight_layout()
        return grid

    def _plot_one(self, ax: Any, band: bool) -> Any:
        """Every series and its fitted curve on one Axes."""
        import numpy as np

        units = set()
        for k, r in enumerate(self.results):
            c = f"C{k % 10}"
            units.add(r.unit)
            pr = r.predictions
            label = f"{r.patient} inf {r.infusion}"
            t_end = 28.0
            if pr is not None and len(pr):
                q = ~pr["blq"].to_numpy(bool) & (pr["value"].to_numpy(float) > 0)
                b = pr["blq"].to_numpy(bool)
                ax.plot(pr["day"][q], pr["value"][q], "o", color=c, ms=3)
                if b.any():
                    ax.plot(pr["day"][b], pr["value"][b], "o", mfc="none", color=c, ms=4)
                t_end = max(t_end, 1.1 * float(pr["day"].max()))
            if r.curve is not None:
                t = r.curve["t"]
                w = t <= t_end
                ax.plot(t[w], r.curve["pred"][w], "-", color=c, lw=1.2, label=label)
                if band and "lo" in r.curve and np.any(np.isfinite(r.curve["lo"])):
                    ax.fill_between(t[w], r.curve["lo"][w], r.curve["hi"][w], color=c,
                                    alpha=0.15, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("day since infusion")
        units.discard("")
        ax.set_ylabel(units.pop() if len(units) == 1 else "level (assay units)")
        ax.set_title(f"{self.model}: {len(self.results)} series (open: BLQ at the LLOQ)",
                     fontsize=9)
        if 0 < len(self.results) <= 10:
            ax.legend(fontsize=7)
        return ax


def fit_cohort(
    data: Any,
    model: Any = "stein2019",
    *,
    assay: str | None = None,
    n_jobs: int = 1,
    backend: str = "process",
    joint: bool = False,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    **fit_kws: Any,
) -> CohortFit | StreamedCohortFit:
    """Fit every series of a data set.

    Parameters
    ----------
    data : KineticsData, path, DataFrame or list of Series
    model : str or Model (a name is passed to worker processes; a Model object needs
        ``backend="thread"`` or ``n_jobs=1`` unless it pickles)
    assay : str, optional
        Only the series of this assay.
    n_jobs : int
        Parallel workers across series (1: serial; 0 or None: one per core).
    backend : {"process", "thread"}
    joint : bool
        Also fit each patient with two infusions jointly (shared parameters, infusion-
        specific ``cmax`` and ``tmax``; see :func:`cartkinetics.fit.joint.fit_joint`).
    client : dask.distributed.Client, optional
        Fit on this Dask cluster (series in chunks spread over the workers; same numbers as
        in process). See :func:`cartkinetics.fit.distributed.fit_cohort_distributed`.
    workers : int, optional
        Fit on a new local Dask cluster of this many worker processes (0: in process).
    scheduler : str, optional
        Fit on the existing Dask cluster at this address (``tcp://host:8786``).
    out : path, optional
        Stream the per-series table to Parquet partitions in this folder instead of holding
        the fits in memory; returns a :class:`~cartkinetics.fit.distributed.StreamedCohortFit`.
    resume : bool
        With ``out``: keep the partitions already written (same data and options) and fit
        only the rest.
    progress : bool
        Progress bar on stderr (Dask and streamed runs).
    **fit_kws
        Passed to :func:`fit_series` (prior, censoring, sigma, n_starts, n_boot, profile,
        ...). ``prior="auto"`` (default, as ``cartkinetics fit``): maximum a posteriori with
        the model's published population prior where the model has one in the data's unit
        (Stein 2019), else maximum likelihood; ``prior=None``: maximum likelihood. Each
        result's ``estimator`` says which was used.

    Returns
    -------
    CohortFit
        ``.table`` has one row per series with ``status`` and ``message``
        (a ``StreamedCohortFit`` reading the partitions when ``out`` is given).
    """
    series = _as_series_list(data, assay)
    if client is not None or workers or scheduler is not None or out is not None:
        from cartkinetics.fit.distributed import fit_cohort_distributed

        return fit_cohort_distributed(
            series, model, client=client, workers=workers or None, scheduler=scheduler,
            out=out, resume=resume, progress=progress, joint=joint, **fit_kws,
        )
    name = model if isinstance(model, str) else getattr(model, "name", str(model))
    results = _run(_safe_fit, [(s, model, fit_kws) for s in series], n_jobs, backend)
    censoring = censoring_of(fit_kws)
    result = CohortFit(results=results, model=name, censoring=censoring)
    if joint:
        jkws = joint_kws(fit_kws)
        result.joint = _run(_safe_joint, [(g, model, jkws) for g in joint_groups(series)],
                            n_jobs, backend)
    return result


def compare_fits(fits: CohortFit | pd.DataFrame, *, assay: str | None = None,
                 **kws: Any) -> dict[str, Any]:
    """Paired first-vs-second infusion comparison on model-based outcomes.

    Runs :func:`cartkinetics.compare.compare_infusions` on the fitted curves' Cmax, Tmax
    and AUC0-28 (usable fits only), so the output keys are those of the NCA-based
    comparison; ``"basis"`` says ``"model"``.

    Parameters
    ----------
    fits : CohortFit, or a table with patient, infusion, cmax, tmax, auc_0_28
    assay : str, optional
        Restrict to one assay (needed when a data set mixes assays).
    **kws : passed to compare_infusions
    """
    from cartkinetics.compare import compare_infusions

    table = fits.outcome_table() if isinstance(fits, CohortFit) else fits
    out = compare_infusions(table, assay=assay, **kws)
    out["basis"] = "model"
    return out
