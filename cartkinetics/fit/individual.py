"""Per-series fits (MAP or maximum likelihood) with lmfit, BLQ rows by Beal's M3.

How the M3 likelihood is given to lmfit (the choice, and why)
-------------------------------------------------------------
lmfit's least-squares methods minimise ``sum(r**2)``. We hand them a residual vector whose
squared sum *is* -2 log L up to a constant (see
:func:`cartkinetics.fit.likelihood.residual_vector`):

* quantified rows: the signed standardised residual ``z = (ln y - ln f)/sigma``;
* censored rows: ``sqrt(-2 log Phi((ln LLOQ - ln f)/sigma))`` (real, because Phi <= 1);
* with ``sigma`` estimated, one extra element ``sqrt(2 n_q ln sigma + K)`` that carries the
  normalising ``ln sigma`` terms (``K`` keeps it real above the lower bound of sigma).

The minimiser is therefore the exact maximum-likelihood estimate, and we keep what a
least-squares method does well: bounds handled natively by scipy's trust-region-reflective
``least_squares`` (``method="least_squares"`` in lmfit, no bound transformation), an
analytic Jacobian (the model's sensitivities, analytic for Stein 2019, chained through the
likelihood), and quick convergence on the many quantified rows. A scalar minimiser
(``reduce_fcn``) would give the same optimum but lose the Jacobian structure and be several
times slower. lmfit's own covariance (``J^T J`` scaled by the reduced chi-square) is *not*
used: it is wrong for a likelihood with censored rows. The covariance comes from the
observed information of -2 log L in the Gauss-Newton form
``H = sum_i d2(-2 log L_i)/d(ln f_i)^2 grad(ln f_i) grad(ln f_i)^T`` (exact second
derivatives of each row's term, including the M3 term through the inverse Mills ratio, and
of ``ln sigma`` when estimated; model curvature neglected), ``Cov = 2 H^-1``. This stays
valid at Stein's Tmax kink, where finite differences of the gradient are not.

Parameters are fitted on the log scale (``log_<name>``) for every parameter whose declared
``transform`` is log or logit (``Parameter.log_scale``), with the model's bounds. Starting
values come from the data (observed Cmax and its day seed ``cmax`` and ``tmax``; early slope,
contraction and terminal slopes seed Stein's ``foldx``, ``alpha``, ``beta`` and ``fb``). The
global step (:mod:`cartkinetics.fit.multistart`, shared with the joint and multi-output fits)
runs ``n_starts`` local searches together in a vectorised Levenberg-Marquardt loop (the data
start, a Tmax scan over the sampling intervals, the best random candidates) and lmfit polishes
the best end point: the result is an lmfit fit.

Estimator: ``prior="auto"`` (the default, the same as ``cartkinetics fit``; see
:func:`resolve_prior`) gives the maximum a posteriori (empirical-Bayes) estimate with the
model's published population distribution (``ln p ~ N(ln typical, bsv)``) as prior, entered as
one more residual element per parameter, when the model publishes one in the data's unit, and
maximum likelihood otherwise; ``prior=None`` is maximum likelihood.
Sparse series under M3 have flat likelihood directions along which ML drifts (a censored
value always prefers a lower prediction); the prior holds them (see docs/fitting.md).

Derived outcomes (Cmax, Tmax, AUC0-28, AUC0-inf, levels at days 28/90/180/365, persistence
above the LLOQ) come from :func:`cartkinetics.outcomes.batch_curve_outcomes` on the model
curve; their 95% CIs are percentile intervals of a parametric bootstrap: ``n_boot`` draws of
the log-parameters from N(estimate, Cov), each curve solved in one ``solve_batch`` call; for a
MAP fit (by default) of draws from the posterior by sampling importance resampling, which
captures the non-Gaussian posterior of Tmax at Stein's kink (``uncertainty``).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.likelihood import (
    PreparedSeries,
    ResidualModel,
    prepare,
)
from cartkinetics.fit.multistart import fit_multistart
from cartkinetics.fit.problem import (  # noqa: F401  (re-exported: the problem layer)
    PENALTY,
    Z95,
    Block,
    FitSettings,
    ParameterSpace,
    Problem,
    covariance,
    data_start,
    fix_order_of,
    get_model,
    parameter_space,
    resolve_residual,
    screen_series,
    series_key,
    set_prior,
    to_internal,
)
from cartkinetics.fit.results import FitResultBase, json_safe
from cartkinetics.outcomes import OUTCOME_KEYS, batch_curve_outcomes
from cartkinetics.units import check_prior_units

DERIVED_KEYS = (
    "cmax",
    "tmax",
    "auc_0_28",
    "auc_0_inf",
    "c_day28",
    "c_day90",
    "c_day180",
    "c_day365",
    "persistence",
)
# fit statuses; a fit is usable when its status is in OK_STATUSES
OK_STATUSES = ("converged", "converged_singular")
STATUSES = (
    "converged",
    "converged_singular",
    "not_converged",
    "too_few_points",
    "all_blq",
    "constant",
    "solver_failure",
    "error",
)


@dataclass(repr=False)
class FitResult(FitResultBase):
    """Result of one series fit (see :func:`fit_series`).

    Attributes
    ----------
    patient, infusion, assay : series key
    model : str
    status : str
        One of ``STATUSES``: ``converged`` (estimates and covariance), ``converged_singular``
        (estimates; information matrix singular: some SEs are NaN), ``not_converged``,
        ``too_few_points``, ``all_blq``, ``constant``, ``solver_failure``, ``error``.
    message : str
        Sentence explaining the status (and notes on the data).
    censoring : str
        "M3" or "M1" (always stated).
    residual_model : str
        Description of the residual error.
    params : dict name -> estimate (natural scale; includes fixed ones)
    stderr : dict name -> SE (natural scale, delta method; NaN if not available)
    ci : dict name -> (lo, hi) 95% CI (Wald on the fitted scale, back-transformed; or
        profile-likelihood when ``profile=True``)
    ci_method : str
    correlation : DataFrame (fitted parameters)
    condition_number : float
        Ratio of the largest to the smallest eigenvalue of the correlation matrix.
    neg2ll, aic, bic : float
        -2 log L (likelihood only, also for MAP fits) and the criteria built on it.
    objective : float
        What was minimised: -2 log L, plus -2 log prior for a MAP fit.
    estimator : str
        "ML" or "MAP (population prior)".
    n_obs, n_blq, n_used, n_free : int
    sigma : float (ln-scale residual SD, fitted or fixed)
    residual_sd : float (SD of the ln-scale residuals of quantified rows)
    predictions : DataFrame (one row per series row)
        ``day, value, blq, used, pred, ires, iwres, censored, p_below_lloq``; censored rows
        have ``ires = iwres = NaN`` (no fake residual) and ``p_below_lloq`` = the model's
        probability of a value below the limit.
    outcomes : dict key -> estimate (``DERIVED_KEYS``); outcomes_ci : dict key -> (lo, hi)
    outcome_method : str
    sir_mean : dict name -> SIR-weighted mean (geometric for log-scale parameters), when SIR
        intervals were computed (the posterior mean of a MAP fit)
    """

    patient: str
    infusion: int
    assay: str
    model: str
    status: str
    message: str
    censoring: str
    residual_model: str = ""
    params: dict[str, float] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    ci_method: str = ""
    free: list[str] = field(default_factory=list)
    correlation: pd.DataFrame | None = None
    covariance: np.ndarray | None = None  # internal scale (log params [, ln sigma])
    internal_names: list[str] = field(default_factory=list)
    condition_number: float = math.nan
    neg2ll: float = math.nan
    aic: float = math.nan
    bic: float = math.nan
    objective: float = math.nan  # -2 log L (+ -2 log prior for a MAP fit)
    estimator: str = "ML"
    n_obs: int = 0
    n_blq: int = 0
    n_used: int = 0
    n_free: int = 0
    sigma: float = math.nan
    residual_sd: float = math.nan
    predictions: pd.DataFrame | None = None
    outcomes: dict[str, float] = field(default_factory=dict)
    outcomes_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    outcome_method: str = ""
    lloq: float = math.nan
    unit: str = ""
    nfev: int = 0
    n_starts: int = 0
    elapsed: float = 0.0
    curve: dict[str, np.ndarray] | None = None  # t, pred, lo, hi for plots
    at_bounds: list[str] = field(default_factory=list)
    # SIR mean of each fitted parameter (exp of the mean log for log-scale parameters): the
    # posterior mean of a MAP fit; empty when SIR was not used
    sir_mean: dict[str, float] = field(default_factory=dict)
    # the model's ``sparse_series_note`` capability: ML summaries carry the note
    sparse_series_note: bool = False
    # natural-scale bounds used by the fit (model bounds unless lmfit Parameters changed them)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def lmfit_params(self) -> Any:
        """The fit as lmfit ``Parameters`` (natural scale): value = estimate, ``min`` /
        ``max`` = the bounds used, ``vary`` = fitted. Change bounds or ``vary`` and pass them
        back as ``fit_series(series, model, params=...)`` to refit."""
        import lmfit

        out = lmfit.Parameters()
        for name, value in self.params.items():
            lo, hi = self.bounds.get(name, (-np.inf, np.inf))
            v = float(value) if np.isfinite(value) else None
            out.add(name, value=v, min=lo, max=hi, vary=name in self.free)
        return out

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.patient, self.infusion, self.assay)

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    # ------------------------------------------------------------------ tables
    def to_dict(self) -> dict[str, Any]:
        """One flat record, JSON-safe (NaN and infinities as None): the row of
        :meth:`row` (the fit table's row; levels in ``unit``, times in days)."""
        return {k: json_safe(v) for k, v in self.row().items()}

    def row(self) -> dict[str, Any]:
        """One flat record with NaN for missing values: a row of ``CohortFit.table``."""
        rec: dict[str, Any] = {
            "patient": self.patient,
            "infusion": self.infusion,
            "assay": self.assay,
            "unit": self.unit,
            "model": self.model,
            "status": self.status,
            "message": self.message,
            "censoring": self.censoring,
            "estimator": self.estimator,
            "n_obs": self.n_obs,
            "n_blq": self.n_blq,
            "n_used": self.n_used,
            "neg2ll": self.neg2ll,
            "aic": self.aic,
            "bic": self.bic,
            "sigma": self.sigma,
            "residual_sd": self.residual_sd,
            "condition_number": self.condition_number,
        }
        for k, v in self.params.items():
            rec[k] = v
            rec[f"{k}_se"] = self.stderr.get(k, math.nan)
            lo, hi = self.ci.get(k, (math.nan, math.nan))
            rec[f"{k}_lo"], rec[f"{k}_hi"] = lo, hi
        for k in DERIVED_KEYS:
            rec[f"model_{k}"] = self.outcomes.get(k, math.nan)
            lo, hi = self.outcomes_ci.get(k, (math.nan, math.nan))
            rec[f"model_{k}_lo"], rec[f"model_{k}_hi"] = lo, hi
        return rec

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per quantity (parameter or derived outcome), with the
        estimate, SE, 95% CI and the method of the interval."""
        return self.to_dataframe()

    def to_dataframe(self) -> pd.DataFrame:
        """Long table: one row per quantity (parameter or derived outcome)."""
        rows = []
        for k, v in self.params.items():
            lo, hi = self.ci.get(k, (math.nan, math.nan))
            rows.append(
                {
                    "patient": self.patient,
                    "infusion": self.infusion,
                    "assay": self.assay,
                    "kind": "parameter" if k in self.free else "fixed",
                    "name": k,
                    "estimate": v,
                    "se": self.stderr.get(k, math.nan),
                    "lo": lo,
                    "hi": hi,
                    "method": self.ci_method if k in self.free else "fixed",
                }
            )
        for k in DERIVED_KEYS:
            lo, hi = self.outcomes_ci.get(k, (math.nan, math.nan))
            rows.append(
                {
                    "patient": self.patient,
                    "infusion": self.infusion,
                    "assay": self.assay,
                    "kind": "outcome",
                    "name": k,
                    "estimate": self.outcomes.get(k, math.nan),
                    "se": math.nan,
                    "lo": lo,
                    "hi": hi,
                    "method": self.outcome_method,
                }
            )
        return pd.DataFrame(rows)

    def record(self) -> dict[str, Any]:
        """The CLI --json record (keys fixed by issue #5)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            return x

        def ci(k: str) -> list | None:
            lo, hi = self.outcomes_ci.get(k, (math.nan, math.nan))
            return None if not (math.isfinite(lo) and math.isfinite(hi)) else [lo, hi]

        return {
            "patient": self.patient,
            "infusion": int(self.infusion),
            "unit": self.unit,
            "assay": self.assay,
            "model": self.model,
            "status": self.status,
            "message": self.message,
            "n_obs": int(self.n_obs),
            "n_blq": int(self.n_blq),
            "params": {k: clean(float(v)) for k, v in self.params.items()},
            "stderr": {k: clean(float(v)) for k, v in self.stderr.items()},
            "cmax": clean(self.outcomes.get("cmax", math.nan)),
            "cmax_ci": ci("cmax"),
            "tmax": clean(self.outcomes.get("tmax", math.nan)),
            "tmax_ci": ci("tmax"),
            "auc_0_28": clean(self.outcomes.get("auc_0_28", math.nan)),
            "auc_0_28_ci": ci("auc_0_28"),
            "aic": clean(self.aic),
            "censoring": self.censoring,
            "estimator": self.estimator,
        }

    # ------------------------------------------------------------------ report
    def summary(self) -> str:
        """Readable report (in the spirit of lmfit's fit_report), censoring stated."""
        lines = [
            f"[[Fit]] {self.model}: patient {self.patient}, infusion {self.infusion}, "
            f"assay {self.assay}",
            f"    status            = {self.status}",
            f"    message           = {self.message}",
            f"    censoring         = {self.censoring}",
            f"    residual model    = {self.residual_model}",
            f"    estimator         = {self.estimator}",
            *(
                [
                    "    note              = ML of a single sparse series is biased where the data"
                    " are",
                    "                        thin (Cmax up between sparse rise samples, levels in"
                    " an all-BLQ",
                    "                        tail down; docs/fitting.md, Validation): for sparse"
                    " series",
                    "                        prefer prior='population' (MAP)",
                ]
                if self.estimator == "ML" and self.sparse_series_note
                else []
            ),
            f"    observations      = {self.n_obs} ({self.n_blq} BLQ), {self.n_used} in likelihood",
            f"    free parameters   = {self.n_free}",
            f"    function evals    = {self.nfev} ({self.n_starts} local start(s))",
            f"    -2 log L          = {self.neg2ll:.4f}",
            f"    AIC / BIC         = {self.aic:.4f} / {self.bic:.4f}",
            f"    sigma (ln scale)  = {self.sigma:.4g}",
            f"    residual SD (ln)  = {self.residual_sd:.4g}",
            f"    condition number  = {self.condition_number:.4g}",
        ]
        if not self.params:
            return "\n".join(lines)
        lines.append(f"[[Parameters]] (95% CI: {self.ci_method})")
        for k, v in self.params.items():
            if k not in self.free:
                lines.append(f"    {k:<10s} = {v:.6g} (fixed)")
                continue
            se = self.stderr.get(k, math.nan)
            lo, hi = self.ci.get(k, (math.nan, math.nan))
            rse = 100 * se / abs(v) if v else math.nan
            bound = "  at bound" if k in self.at_bounds else ""
            lines.append(
                f"    {k:<10s} = {v:.6g} +/- {se:.3g} ({rse:.1f}%)  [{lo:.4g}, {hi:.4g}]{bound}"
            )
        if self.correlation is not None:
            lines.append("[[Correlations]] (|r| > 0.5)")
            c = self.correlation
            names = list(c.columns)
            pairs = [
                (abs(c.iloc[i, j]), names[i], names[j], c.iloc[i, j])
                for i in range(len(names))
                for j in range(i + 1, len(names))
                if abs(c.iloc[i, j]) > 0.5
            ]
            for _, a, b, r in sorted(pairs, reverse=True):
                lines.append(f"    C({a}, {b}) = {r:+.3f}")
        if self.outcomes:
            lines.append(f"[[Derived outcomes]] (95% CI: {self.outcome_method})")
            for k in DERIVED_KEYS:
                v = self.outcomes.get(k, math.nan)
                lo, hi = self.outcomes_ci.get(k, (math.nan, math.nan))
                lines.append(f"    {k:<12s} = {v:.5g}  [{lo:.4g}, {hi:.4g}]")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _head(self) -> str:
        return (f"{self.model} fit of patient {self.patient}, infusion {self.infusion}, "
                f"{self.assay} ({self.unit or 'unit not stated'}): {self.status}; "
                f"{self.estimator}, {self.censoring}; {self.n_obs} obs ({self.n_blq} BLQ)")

    def __repr__(self) -> str:
        parts = [self._head()]
        if self.params:
            parts.append("params " + ", ".join(
                f"{k} {_num(v)}" + ("" if k in self.free else " (fixed)")
                for k, v in self.params.items()))
        if self.outcomes:
            out = []
            for k in ("cmax", "tmax", "auc_0_28"):
                lo, hi = self.outcomes_ci.get(k, (math.nan, math.nan))
                out.append(f"{k} {_num(self.outcomes.get(k, math.nan))} "
                           f"[{_num(lo)}, {_num(hi)}]")
            parts.append("; ".join(out))
        if math.isfinite(self.neg2ll):
            parts.append(f"-2 log L {self.neg2ll:.4g}, AIC {self.aic:.4g}")
        if not self.ok:
            parts.append(self.message[:300])
        return "FitResult(" + "; ".join(parts) + "; .summary() for the report)"

    def _repr_html_(self) -> str:
        import html

        msg = f"<p>{html.escape(self.message)}</p>" if self.message else ""
        table = (self.to_frame().drop(columns=["patient", "infusion", "assay"])
                 .to_html(index=False, na_rep="NA", float_format=lambda v: f"{v:.4g}")
                 if self.params else "")
        return f"<p><b>{html.escape(self._head())}</b></p>{msg}{table}"

    def plot(self, ax: Any = None, band: bool = True) -> Any:
        """Observed points (BLQ as open markers at the LLOQ), fitted curve, 95% band, log y.

        Parameters
        ----------
        ax : matplotlib Axes, optional (a new figure when omitted)
        band : bool
            Draw the 95% band of the curve.

        Returns
        -------
        matplotlib Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        pr = self.predictions
        if pr is not None and len(pr):
            q = ~pr["blq"].to_numpy(bool) & (pr["value"].to_numpy(float) > 0)
            ax.plot(pr["day"][q], pr["value"][q], "o", color="C0", ms=4, label="observed")
            b = pr["blq"].to_numpy(bool)
            if b.any():
                ax.plot(
                    pr["day"][b], pr["value"][b], "o", mfc="none", color="C0", ms=5,
                    label="BLQ (at LLOQ)",
                )
        if self.curve is not None:
            t = self.curve["t"]
            # draw the curve over the sampled period (+10%), not the extrapolation to day 365
            t_end = 28.0
            if pr is not None and len(pr):
                t_end = max(t_end, 1.1 * float(pr["day"].max()))
            w = t <= t_end
            ax.plot(t[w], self.curve["pred"][w], "-", color="C1", lw=1.5,
                    label=f"{self.model} fit")
            if band and "lo" in self.curve and np.any(np.isfinite(self.curve["lo"])):
                ax.fill_between(
                    t[w], self.curve["lo"][w], self.curve["hi"][w], color="C1", alpha=0.2, lw=0,
                    label="95% band",
                )
            if pr is not None and len(pr):
                v = pr["value"].to_numpy(float)
                v = v[v > 0]
                if v.size:
                    ax.set_ylim(v.min() / 30.0, v.max() * 30.0)
        if math.isfinite(self.lloq):
            ax.axhline(self.lloq, color="grey", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("day since infusion")
        ax.set_ylabel(self.unit or "level")
        ax.set_title(f"{self.patient} inf {self.infusion} ({self.status})", fontsize=9)
        return ax


# ----------------------------------------------------------------------------- helpers
def _num(v: float) -> str:
    """A number in 4 significant digits (NA when missing), for reprs."""
    try:
        return f"{float(v):.4g}" if math.isfinite(float(v)) else "NA"
    except (TypeError, ValueError):
        return str(v)


def _outcome_grid(t_last: float) -> np.ndarray:
    """Dense day grid: 0.2 d to day 40, 0.5 d to day 60, then 2 d to max(365, last)."""
    t_end = max(365.0, float(t_last))
    g = np.concatenate(
        [
            np.arange(0.0, 40.0, 0.2),
            np.arange(40.0, 60.0, 0.5),
            np.arange(60.0, t_end, 2.0),
            [28.0, 90.0, 180.0, 365.0, t_end],
        ]
    )
    return np.unique(np.round(g, 9))


def _auc_inf(t: np.ndarray, C: np.ndarray, auc_last: np.ndarray) -> np.ndarray:
    """AUC0-inf = AUC0-last (lin-up/log-down) + C_last / lambda_z, lambda_z from the curve's
    last two grid points; NaN where the curve is not declining (not finite)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = -(np.log(C[:, -1]) - np.log(C[:, -2])) / (t[-1] - t[-2])
        tail = np.where(lam > 1e-12, C[:, -1] / lam, np.nan)
    return auc_last + tail


def _derived(
    model: Any,
    grid: np.ndarray,
    P: np.ndarray,
    dose: Any,
    lloq: float,
    observation: str,
    covariates: dict | None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    kw = {} if covariates is None else {"covariates": covariates}
    sol = model.solve_batch(grid, P, dose, **kw)
    C = np.asarray(sol.observed[observation], float)
    ok = (np.asarray(sol.status) == 0) & np.all(np.isfinite(C), axis=1)
    C = np.where(ok[:, None], C, np.nan)
    out = batch_curve_outcomes(grid, C, lloq)
    res = {k: out[k] for k in OUTCOME_KEYS}
    res["auc_0_inf"] = _auc_inf(grid, C, out["auc_0_last"])
    _refine_peak(model, grid, C, P, dose, observation, kw, res)
    return res, C, ok


def _refine_peak(model, grid, C, P, dose, observation, kw, res) -> None:
    """Cmax/Tmax on a 100x finer grid between the neighbours of each curve's grid peak.

    A kinked peak (Stein's switch at Tmax) falls between grid points; the parabola of
    ``curve_outcomes`` only refines smooth peaks. Curves sharing a peak index are solved
    together on one fine window; all windows then go through one ``batch_curve_outcomes``
    call on a common unit grid (the peak does not depend on where the window starts).
    """
    fin = np.all(np.isfinite(C), axis=1)
    if not fin.any():
        return
    imax = np.full(C.shape[0], -1)
    imax[fin] = np.argmax(C[fin], axis=1)
    u = np.linspace(0.0, 1.0, 201)
    rows_all, curves, starts, widths = [], [], [], []
    for i in np.unique(imax[imax >= 0]):
        rows = np.flatnonzero(imax == i)
        a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        if b <= a:
            continue
        sol = model.solve_batch(a + (b - a) * u, P[rows], dose, **kw)
        Cf = np.asarray(sol.observed[observation], float)
        good = np.all(np.isfinite(Cf), axis=1)
        rows_all.append(rows[good])
        curves.append(Cf[good])
        starts.append(np.full(int(good.sum()), a))
        widths.append(np.full(int(good.sum()), b - a))
    if not rows_all:
        return
    rows = np.concatenate(rows_all)
    if rows.size == 0:
        return
    o = batch_curve_outcomes(u, np.vstack(curves))
    better = o["cmax"] > res["cmax"][rows]
    res["cmax"][rows[better]] = o["cmax"][better]
    res["tmax"][rows[better]] = (np.concatenate(starts) + np.concatenate(widths) * o["tmax"])[
        better
    ]


def _from_lmfit(model: Any, params: Any, fixed: dict[str, float] | None,
                start: dict[str, float] | None
                ) -> tuple[dict[str, float], dict[str, float] | None, dict[str, tuple]]:
    """``fixed``, ``start`` and natural-scale bounds from lmfit ``Parameters`` (``vary=False``
    -> fixed at its value, else a starting value within ``min`` / ``max``); explicit
    ``fixed`` / ``start`` entries win over the Parameters'."""
    if params is None:
        return dict(fixed or {}), start, {}
    unknown = [n for n in params if n not in model.param_names]
    if unknown:
        raise CartKineticsError(
            f"params name unknown parameters {unknown}; model {model.name} has "
            f"{model.param_names}")
    fx: dict[str, float] = {}
    st: dict[str, float] = {}
    bounds: dict[str, tuple] = {}
    for name, par in params.items():
        if not par.vary:
            fx[name] = float(par.value)
            continue
        if par.value is not None and np.isfinite(par.value):
            st[name] = float(par.value)
        bounds[name] = (float(par.min), float(par.max))
    fx.update(fixed or {})
    st.update(start or {})
    return fx, (st or None), bounds


def failed_fit(series: Any, model_name: str, status: str, message: str,
               residual: ResidualModel, data: PreparedSeries | None = None) -> FitResult:
    """The FitResult of a series that could not be fitted (``status`` says why)."""
    key = series_key(series)
    blq = np.asarray(getattr(series, "blq", []), bool)
    return FitResult(
        patient=key[0], infusion=key[1], assay=key[2], model=model_name, status=status,
        message=message, censoring=residual.censoring, residual_model=residual.describe(),
        n_obs=int(blq.size), n_blq=int(blq.sum()), n_used=0 if data is None else data.n,
        unit=str(getattr(series, "unit", "")),
    )


# ----------------------------------------------------------------------------- public
def fit_series(
    series: Any,
    model: Any = "stein2019",
    *,
    censoring: str | None = None,
    sigma: float | str | None = None,
    error: str | None = None,
    residual: ResidualModel | None = None,
    fixed: dict[str, float] | None = None,
    start: dict[str, float] | None = None,
    n_starts: int | None = None,
    n_candidates: int | None = None,
    outcomes: bool = True,
    params: Any = None,
    n_boot: int = 500,
    profile: bool | str | tuple[str, ...] | list[str] = "auto",
    dose: Any = None,
    covariates: dict | None = None,
    observation: str | None = None,
    max_nfev: int = 400,
    reduce: bool = True,
    prior: str | dict[str, tuple[float, float]] | None = "auto",
    seed: int = 0,
    multistart: str | None = None,
    uncertainty: str = "auto",
) -> FitResult:
    """Fit one series (patient x infusion x assay): maximum a posteriori with the model's
    published population prior where there is one (``prior="auto"``), else maximum likelihood.

    Parameters
    ----------
    series : cartkinetics.data.Series
        Days since that infusion, values (assay units), per-row LLOQ and BLQ flags.
    model : str or Model
        Library name (default ``"stein2019"``) or a Model object.
    censoring : {"M3", "M1"}, optional
        M3 (default): BLQ rows enter as P(Y < LLOQ); M1: BLQ rows discarded.
    sigma : float or "estimate", optional
        Residual SD on the ln scale. Default: the model's published residual SD, fixed
        (0.56 for Stein 2019); estimated when the model has none or ``"estimate"``.
    error : {"normal", "student_t"}, optional
    residual : ResidualModel, optional
        Full residual description (overrides ``sigma`` and ``error``).
    fixed : dict name -> value, optional
        Parameters held fixed (natural scale).
    params : lmfit.Parameters, optional
        Per-fit parameter settings as lmfit users give them, e.g. ``res.lmfit_params()`` of an
        earlier fit with bounds or ``vary`` changed: ``vary=False`` fixes a parameter at its
        value, ``min`` / ``max`` replace the model's bounds (natural scale) and the value is
        the starting value. ``fixed`` and ``start`` entries take precedence.
    start : dict name -> value, optional
        Starting values overriding the data-derived ones.
    n_starts : int, optional
        Local searches of the global step (default 25 vectorised for closed-form models, 5
        lmfit fits for ODE models; 1: one lmfit fit from the data start).
        They run together in a vectorised Levenberg-Marquardt loop
        (:mod:`cartkinetics.fit.multistart`): the data start, Tmax at the middle of each
        interval between sampling days (Stein's kink makes each interval a possible local
        optimum), and the best of ``n_candidates`` random points; lmfit then polishes the
        best end point(s) and gives the result. Over 200 simulated 12-point Stein series
        this finds an optimum at least as good as the former default (lmfit from the 5 best
        of 100 candidates) in all but one (0.010 units of -2 log L lower there, on a flat
        ridge) and a better one in 17 (ML, M3), in 40% of its time (docs/fitting.md).
    n_candidates : int, optional
        Random points screened by the global step (default 200 vectorised, 100 lmfit), drawn
        around the start with the model's BSV (one vectorised ``solve_batch``).
    outcomes : bool
        Compute derived outcomes with bootstrap CIs.
    n_boot : int
        Parametric bootstrap draws for the derived outcomes' CIs.
    profile : bool, "auto" or list of names
        Profile-likelihood 95% CIs instead of Wald: True for every fitted parameter, a list
        for those parameters, "auto" (default) for the parameters whose Wald SE is not available
        (non-identifiable directions, where the profile is the only honest interval).
    dose : optional
        Passed to the model (default: the series' dose, else the model default).
    covariates : dict, optional
        Passed to the model (e.g. Stein's ``tocilizumab_day``).
    observation : str, optional
        Model observation compared with the data (default: the primary observation).
    max_nfev : int
        Maximum residual evaluations per local fit.
    reduce : bool
        When the series has fewer points than free parameters (but at least two quantified
        values), fix parameters at their published typical values in the order of
        the model's ``fix_order`` (Stein 2019: beta, fb, foldx, alpha) until it does not; the
        message names them. False: report ``too_few_points`` instead.
    prior : "auto", None, "population" or dict name -> (typical value, omega)
        "auto" (default, as ``cartkinetics fit``): ``"population"`` when the model publishes
        between-subject variability (Stein 2019) and the data are in the unit of its
        published levels, else None (:func:`resolve_prior`; the fallback to ML for data in
        another unit is said in the result's ``message``). None: maximum likelihood.
        ``"population"``: maximum a posteriori with the
        model's published population distribution as prior, ln p ~ N(ln typical, omega^2)
        with ``omega^2 = model.bsv`` (the empirical-Bayes / POSTHOC estimate of
        pharmacometrics). It keeps sparse series from drifting along flat likelihood
        directions (e.g. a censored rise pushing foldx up); CIs then come from sampling
        importance resampling of the posterior (``uncertainty``). -2 log L is still reported
        without the prior term.
    seed : int
        Seed of the global screen and the bootstrap.
    multistart : {"vectorised", "lmfit"}, optional
        Default: "vectorised" for closed-form models, "lmfit" for ODE models (there the
        batched ODE sensitivities cost more than the lmfit overhead they save, and in one of
        15 test series the vectorised path stopped at a worse point).
        "vectorised": as described under ``n_starts``. "lmfit": every local search
        is an lmfit fit, from the data start and the ``n_starts - 1`` best screened random
        points (the former default with ``n_starts=5, n_candidates=100``). Models without a
        batched sensitivity routine (or Student-t errors) use the lmfit path with at most 5
        starts.
    uncertainty : {"auto", "sir", "bootstrap"}
        How parameter CIs and derived-outcome CIs are computed. "bootstrap": Wald intervals
        of the parameters and a parametric bootstrap of the outcomes from N(estimate, Cov).
        "sir": sampling importance resampling of exp(-objective/2) (the posterior of a MAP
        fit; the likelihood on the fitted log scale for ML): 40,000 multivariate-t
        proposals around the estimate, weighted quantiles for the parameters, ``n_boot``
        resampled draws for the outcomes. "auto" (default): "sir" for a MAP fit
        (``prior`` given), "bootstrap" for ML. Profile intervals (``profile``) override
        either for the parameters they name.

    Returns
    -------
    FitResult
        Never raises for a series that cannot be fitted: the status says why.
    """
    tic = time.perf_counter()
    model = get_model(model)
    fixed, start, bounds = _from_lmfit(model, params, fixed, start)
    prior, prior_note = resolve_prior(prior, model, str(getattr(series, "unit", "") or ""))
    residual = resolve_residual(model, residual, censoring, sigma, error)
    obs_name = observation or model.primary_observation
    if obs_name not in model.observations:
        raise CartKineticsError(
            f"model {model.name} has no observation {obs_name!r}; it has {list(model.observations)}"
        )
    try:
        data = prepare(series, residual.censoring)
    except CartKineticsError as exc:
        return failed_fit(series, model.name, "error", str(exc), residual)
    fixed_d, free, names, is_log, lo, hi = parameter_space(model, fixed, bounds)
    n_free = len(free) + (1 if residual.estimate_sigma else 0)
    auto_fixed: list[str] = []
    if reduce and data.n_quantified >= 2 and data.n < n_free:
        # fewer points than parameters: fix the least identifiable ones at their published
        # typical values, in the model's order, until the data can carry the rest
        order = [n for n in fix_order_of(model) if n in free]
        need = n_free - data.n
        auto_fixed = order[:need]
        if len(auto_fixed) == need:
            fx = dict(fixed or {})
            fx.update({n: float(model.parameter(n).value) for n in auto_fixed})
            fixed_d, free, names, is_log, lo, hi = parameter_space(model, fx, bounds)
            n_free = len(free) + (1 if residual.estimate_sigma else 0)
        else:
            auto_fixed = []
    bad = screen_series(data, n_free)
    if bad is not None:
        return failed_fit(series, model.name, bad[0], bad[1], residual, data)
    if uncertainty not in ("auto", "sir", "bootstrap"):
        raise CartKineticsError(
            f"uncertainty must be 'auto', 'sir' or 'bootstrap', got {uncertainty!r}")
    if multistart is None:
        # closed-form models: vectorised; ODE models keep lmfit from each start (measured:
        # docs/fitting.md, Global step)
        multistart = "vectorised" if model.is_closed_form else "lmfit"
    if multistart not in ("vectorised", "lmfit"):
        raise CartKineticsError(f"multistart must be 'vectorised' or 'lmfit', got {multistart!r}")
    if n_starts is None:
        n_starts = 25 if multistart == "vectorised" else 5
    if n_candidates is None:
        n_candidates = 200 if multistart == "vectorised" else 100
    if dose is None:
        dose = getattr(series, "dose", None)
    try:
        settings = FitSettings(
            n_starts=n_starts, n_candidates=n_candidates, multistart=multistart,
            max_nfev=max_nfev, prior=prior, uncertainty=uncertainty, n_boot=n_boot,
            profile=profile, outcomes=outcomes, seed=seed,
        )
        res = _fit_prepared(
            series, model, data, residual, ParameterSpace(fixed_d, free, names, is_log, lo, hi),
            settings, start=start, dose=dose, covariates=covariates, obs_name=obs_name, tic=tic,
        )
        if prior_note:
            res.message += "; " + prior_note
        res.bounds = {p.name: bounds.get(p.name, (float(p.lower), float(p.upper)))
                      for p in model.parameters}
        if auto_fixed:
            res.message += (
                f"; {data.n} observation(s) for {len(free) + len(auto_fixed)} parameters: "
                f"{auto_fixed} fixed at the published typical values"
            )
        return res
    except CartKineticsError:
        raise
    except Exception as exc:  # a numerical failure of one series never escapes as a crash
        return failed_fit(series, model.name, "error", f"{type(exc).__name__}: {exc}", residual,
                          data)


PRIOR_CHOICES = ("auto", "population", None)


def resolve_prior(prior: Any, model: Any, units: Any = ()) -> tuple[Any, str]:
    """The estimator behind ``prior="auto"`` (the default of :func:`fit_series`,
    :func:`cartkinetics.fit.cohort.fit_cohort`, :func:`cartkinetics.fit.joint.fit_joint` and
    ``cartkinetics fit``), decided in this one place.

    Parameters
    ----------
    prior : "auto", "population", None or dict name -> (value, omega)
        "auto": ``"population"`` (maximum a posteriori with the model's published population
        distribution as prior) when the model publishes between-subject variability and the
        data are in the unit of its level parameters (Stein 2019: copies/ug); otherwise None
        (maximum likelihood). Any other value is returned unchanged.
    model : str or Model
    units : str or iterable of str
        Unit(s) of the data to be fitted (e.g. ``"copies/ug"``).

    Returns
    -------
    (prior, note)
        The prior to use (None, "population" or the dict given) and a sentence saying why
        "auto" fell back to maximum likelihood for a model that has a population prior
        (data in another unit than the prior's), else "".
    """
    if isinstance(prior, str) and prior.lower() in ("none", "ml"):
        return None, ""
    if prior != "auto":
        return prior, ""
    from cartkinetics.units import level_parameters, same_unit

    model = get_model(model)
    if not getattr(model, "bsv", None):
        return None, ""
    units = {units} if isinstance(units, str) else set(units or ())
    published = {p.unit for p in model.parameters if p.name in level_parameters(model)}
    other = sorted({u for u in units if u for m in published if not same_unit(u, m)})
    if other:
        return None, (
            f"prior='auto': the data are in {', '.join(other)} but the {model.name} population "
            f"prior is in {', '.join(sorted(published))}: fitted by maximum likelihood, "
            "without the prior"
        )
    return "population", ""



def _fit_prepared(series: Any, model: Any, data: Any, residual: ResidualModel,
                  space: ParameterSpace, settings: FitSettings, *, start: dict | None,
                  dose: Any, covariates: dict | None, obs_name: str, tic: float) -> FitResult:
    """Fit a series whose data, residual model and parameter space are prepared."""
    fixed_d, free, names, is_log, lo, hi = space
    s = settings
    n_starts, n_candidates, outcomes, n_boot = s.n_starts, s.n_candidates, s.outcomes, s.n_boot
    profile, max_nfev, seed, prior = s.profile, s.max_nfev, s.seed, s.prior
    multistart, uncertainty = s.multistart, s.uncertainty
    rng = np.random.default_rng(seed)
    pnames = model.param_names
    typical = dict(zip(pnames, model.typical.tolist(), strict=True))
    pmap = np.array([free.index(n) if n in free else -1 for n in pnames])
    pfixed = np.array([fixed_d.get(n, typical[n]) for n in pnames], dtype=float)
    block = Block(data=data, dose=dose, pmap=pmap, pfixed=pfixed, covariates=covariates)
    problem = Problem(model, [block], names, is_log, lo, hi, residual, obs_name)
    if prior == "population":
        check_prior_units(
            model, series.unit, what="the population prior",
            fix="fit without it (prior=None, maximum likelihood; CLI --prior none), state a "
                "prior in the data's unit (prior={name: (value, omega)}), or use data in "
                "the prior's unit",
        )
    set_prior(problem, model, free, is_log, prior)
    s0 = data_start(model, series)
    if start:
        s0.update({k: float(v) for k, v in start.items()})
    theta0 = to_internal(s0, names, is_log, lo, hi)
    if residual.estimate_sigma:
        theta0 = np.append(theta0, math.log(residual.sigma))
    spread = np.array(
        [math.sqrt(model.bsv.get(n, 0.25)) if lg else 0.0 for n, lg in zip(free, is_log,
                                                                          strict=True)]
    )
    if residual.estimate_sigma:
        spread = np.append(spread, 0.3)
    th, out, m2ll, n_used_starts = fit_multistart(
        problem, theta0, names, n_candidates, n_starts, spread, rng, max_nfev,
        days=np.asarray(series.day, float), vectorised=multistart == "vectorised",
    )
    key = series_key(series)
    res = FitResult(
        estimator="MAP (population prior)" if problem.has_prior else "ML",
        patient=key[0], infusion=key[1], assay=key[2], model=model.name, status="converged",
        message="", censoring=residual.censoring, residual_model=residual.describe(),
        n_obs=int(np.asarray(series.day).size), n_blq=data.n_blq_total, n_used=data.n,
        n_free=problem.n_theta, free=list(free), unit=str(getattr(series, "unit", "")),
        nfev=problem.nfev + problem.njev, n_starts=n_used_starts,
        sparse_series_note=bool(getattr(model, "sparse_series_note", False)),
    )
    lq = np.asarray(getattr(series, "lloq", []), float)
    lq = lq[np.isfinite(lq) & (lq > 0)]
    res.lloq = float(np.median(lq)) if lq.size else math.nan
    if not np.isfinite(m2ll):
        res.status = "solver_failure"
        res.message = (
            f"the model could not be solved at the best point found "
            f"({problem.solver_failures} failed solve(s))"
        )
        return res
    notes = list(data.notes)
    success = bool(getattr(out, "success", False))
    # TRF may stop on max_nfev; a stationary point is still accepted when the gradient is ~0
    r_at = problem.residuals(th, jac=False)
    J_at = problem.residuals(th, jac=True)
    grad = 2.0 * J_at.T @ r_at
    span = problem.upper - problem.lower
    interior = (th - problem.lower > 1e-5 * span) & (problem.upper - th > 1e-5 * span)
    gnorm = float(np.max(np.abs(grad[interior]))) if interior.any() else 0.0
    if not success and gnorm > 1e-2:
        res.status = "not_converged"
        notes.insert(0, f"optimizer stopped: {getattr(out, 'message', '')} (max |gradient| "
                        f"{gnorm:.3g})")
    sig = problem.sigma(th)
    res.sigma = sig
    res.objective = float(m2ll)
    res.neg2ll = float(problem.neg2ll(th)) if problem.has_prior else float(m2ll)
    k = problem.n_theta
    res.aic = res.neg2ll + 2 * k
    res.bic = res.neg2ll + k * math.log(max(data.n, 1))
    p_full = problem.block_params(th, block)
    res.params = {n: float(v) for n, v in zip(pnames, p_full, strict=True)}
    if residual.estimate_sigma:
        res.params["sigma"] = sig
    # covariance and standard errors
    H = problem.information(th)
    cov, cov_ok, at_b = covariance(H, th, problem.lower, problem.upper)
    int_names = names + (["log_sigma"] if residual.estimate_sigma else [])
    all_free = list(free) + (["sigma"] if residual.estimate_sigma else [])
    res.internal_names = int_names
    res.covariance = cov
    res.at_bounds = [all_free[i] for i in at_b]
    se_int = np.sqrt(np.diag(cov))
    is_log_all = np.append(is_log, True) if residual.estimate_sigma else is_log
    for i, n in enumerate(all_free):
        v = res.params[n]
        s = se_int[i]
        if is_log_all[i]:
            res.stderr[n] = float(v * s)
            with np.errstate(over="ignore"):
                res.ci[n] = (float(np.exp(th[i] - Z95 * s)), float(np.exp(th[i] + Z95 * s)))
        else:
            res.stderr[n] = float(s)
            res.ci[n] = (float(th[i] - Z95 * s), float(th[i] + Z95 * s))
    for n in pnames:
        if n not in free:
            res.stderr[n] = math.nan
    res.ci_method = "Wald on the log scale (Gauss-Newton observed information of -2 log L)"
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.sqrt(np.diag(cov))
        corr = cov / np.outer(d, d)
    res.correlation = pd.DataFrame(corr, index=all_free, columns=all_free)
    fin = np.isfinite(d)
    if fin.sum() >= 1:
        w = np.linalg.eigvalsh(corr[np.ix_(fin, fin)])
        res.condition_number = float(w.max() / w.min()) if w.min() > 0 else math.inf
    if res.status == "converged" and (not cov_ok or at_b):
        res.status = "converged_singular"
        why = []
        if at_b:
            why.append(f"parameter(s) at a bound: {res.at_bounds}")
        if not cov_ok:
            nid = [n for n in all_free if n not in res.at_bounds and not np.isfinite(res.stderr[n])]
            why.append(f"information matrix singular: {nid} not identifiable from these data")
        notes.append("; ".join(why) + "; their SEs are NaN")
    sir = None
    use_sir = uncertainty == "sir" or (uncertainty == "auto" and problem.has_prior)
    if use_sir and res.ok and n_boot > 0:
        sir = _sir_draws(problem, th, cov, SIR_PROPOSALS, n_boot, rng)
        if sir[0] is None:
            notes.append(f"SIR intervals not available ({sir[2]}): Wald and bootstrap used")
            sir = None
        else:
            res.sir_mean = {n: float(np.exp(sir[4][i]) if is_log_all[i] else sir[4][i])
                            for i, n in enumerate(all_free)}
            for i, n in enumerate(all_free):
                lo_i, hi_i = sir[3][i]
                res.ci[n] = ((float(np.exp(lo_i)), float(np.exp(hi_i))) if is_log_all[i]
                             else (float(lo_i), float(hi_i)))
            res.ci_method = (
                f"sampling importance resampling (SIR) of the {_sir_target(problem)}: "
                f"weighted 2.5-97.5% quantiles, effective sample size {sir[1]:.0f}"
            )
    if profile and res.ok:
        if profile is True:
            which = list(all_free)
        elif profile == "auto":
            which = [n for n in all_free if not np.isfinite(res.stderr.get(n, np.nan))]
        else:
            which = [n for n in profile if n in all_free]
        if which:
            _profile_cis(problem, th, res, all_free, is_log_all, which)
    # predictions and residuals, per series row
    res.predictions = _prediction_table(series, data, problem, th, block, sig, residual)
    q = res.predictions["ires"].to_numpy(float)
    q = q[np.isfinite(q)]
    res.residual_sd = float(np.sqrt(np.mean(q * q))) if q.size else math.nan
    # derived outcomes
    if outcomes:
        try:
            _bootstrap_outcomes(model, problem, block, th, cov, res, n_boot, rng, obs_name,
                                sir=sir)
        except Exception as exc:  # outcomes are extras: report, do not lose the fit
            notes.append(f"derived outcomes failed: {type(exc).__name__}: {exc}")
    head = {
        "converged": "converged",
        "converged_singular": "converged",
        "not_converged": "did not converge",
    }[res.status]
    res.message = f"{head} ({res.censoring}, {data.n_censored} censored row(s) in the likelihood)"
    if notes:
        res.message += "; " + "; ".join(notes)
    res.elapsed = time.perf_counter() - tic
    return res


def _prediction_table(series, data, problem, th, block, sig, residual) -> pd.DataFrame:
    day = np.asarray(series.day, float)
    value = np.asarray(series.value, float)
    blq = np.asarray(series.blq, bool)
    n = day.size
    pred = np.full(n, np.nan)
    used = np.zeros(n, bool)
    used[data.rows] = True
    p = problem.block_params(th, block)
    kw = {} if block.covariates is None else {"covariates": block.covariates}
    sol = problem.model.solve(np.clip(day, 0, None), p, block.dose, **kw)
    pred[:] = np.asarray(sol.observed[problem.observation], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ires = np.where(~blq & (value > 0), np.log(value) - np.log(pred), np.nan)
        lim = value
        zc = (np.log(lim) - np.log(pred)) / sig
    if residual.error == "normal":
        pb = special.ndtr(zc)
    else:
        from scipy import stats

        pb = stats.t.cdf(zc, residual.nu)
    return pd.DataFrame(
        {
            "day": day,
            "value": value,
            "blq": blq,
            "used": used,
            "pred": pred,
            "ires": np.where(used, ires, np.nan),
            "iwres": np.where(used, ires / sig, np.nan),
            "censored": blq & used,
            "p_below_lloq": np.where(blq, pb, np.nan),
        }
    )


def _sir_target(problem: Problem) -> str:
    return ("posterior (likelihood x population prior)" if problem.has_prior
            else "likelihood (flat prior on the fitted log-parameters)")


SIR_DF = 4.0  # degrees of freedom of the multivariate-t SIR proposal
SIR_SCALES = (1.5,)  # proposal covariance inflation(s); several: an equal-weight mixture
SIR_PROPOSALS = 40_000  # proposals per fit: the weights of a sparse Stein series are uneven
# (effective sample size about 1% of the proposals at a Tmax kink), so many are needed


def _sir_draws(problem: Problem, th: np.ndarray, cov: np.ndarray, n_prop: int, n_keep: int,
               rng: np.random.Generator, df: float | None = None,
               scales: tuple[float, ...] | None = None):
    """Sampling importance resampling (Rubin 1988; Dosne et al. 2016 for pharmacometric
    models) of ``exp(-objective / 2)``: the posterior for a MAP fit, the likelihood on the
    fitted (log) scale for ML.

    Proposals: a multivariate t (``df`` degrees of freedom) centred on the estimate with the
    covariance inflated by ``scale**2``; parameters at a bound stay there; proposals outside
    the bounds get weight 0. Weight = exp(-(objective - objective at the estimate) / 2) /
    proposal density. Stein's kink at Tmax makes the objective non-quadratic in Tmax (the
    likelihood changes slope wherever Tmax crosses a sampling day), which the Gaussian
    approximation behind Wald and the covariance bootstrap misses and the weights capture.

    Returns
    -------
    (draws (n_keep, n_theta) resampled with probability proportional to the weights,
    effective sample size, reason when not available, weighted 2.5/97.5% quantiles per
    coordinate, weighted mean of the coordinates) -- draws None when not available.
    """
    n = problem.n_theta
    var = np.diag(cov)
    span = problem.upper - problem.lower
    at_b = (th - problem.lower < 1e-5 * span) | (problem.upper - th < 1e-5 * span)
    free = np.isfinite(var) & (var > 0)
    if np.any(~free & ~at_b):
        return None, 0.0, "a parameter is not identifiable (no finite variance)", None, None
    if not free.any():
        return None, 0.0, "every parameter at a bound", None, None
    df = SIR_DF if df is None else df
    scales = SIR_SCALES if scales is None else scales
    sub = cov[np.ix_(free, free)]
    sub = 0.5 * (sub + sub.T)
    w_e, V = np.linalg.eigh(sub)
    w_e = np.clip(w_e, 1e-300, None)
    L = V * np.sqrt(w_e)
    d = int(free.sum())
    Z = rng.standard_normal((n_prop, d))
    u = rng.chisquare(df, n_prop) / df
    comp = rng.integers(0, len(scales), n_prop)
    sc = np.asarray(scales, float)
    X = np.tile(th, (n_prop, 1))
    X[:, free] += (Z @ L.T) * (sc[comp] / np.sqrt(u))[:, None]
    inside = np.all((X >= problem.lower) & (X <= problem.upper), axis=1)
    # mixture density (up to a common constant) at each proposal, in the standardised
    # coordinates y = L^-1 (x - th): component s has density s^-d (1 + |y|^2/(s^2 df))^-(df+d)/2
    y2 = np.sum(Z * Z, axis=1) / u * sc[comp] ** 2
    dens = np.mean([s ** (-d) * (1.0 + y2 / (s * s * df)) ** (-0.5 * (df + d)) for s in sc],
                   axis=0)
    logq = np.log(dens)
    from cartkinetics.fit.multistart import BatchResiduals

    ev = BatchResiduals(problem)
    Xi = X[inside]
    if ev.ok:
        F = ev.objective(Xi)
        F0 = float(ev.objective(th[None, :])[0])
    else:
        F = problem.batch_neg2ll(Xi)
        F0 = problem.objective(th)
    logw = np.where(np.isfinite(F), -0.5 * (F - F0) - logq[inside], -np.inf)
    if not np.any(np.isfinite(logw)):
        return None, 0.0, "no proposal could be evaluated", None, None
    w = np.exp(logw - np.max(logw))
    w /= w.sum()
    ess = float(1.0 / np.sum(w * w))
    if ess < 50:
        return None, ess, f"effective sample size {ess:.0f} < 50", None, None
    qs = []
    for i in range(n):
        o = np.argsort(Xi[:, i])
        cw = np.cumsum(w[o])
        qs.append((float(Xi[o[np.searchsorted(cw, 0.025)], i]),
                   float(Xi[o[min(np.searchsorted(cw, 0.975), o.size - 1)], i])))
    keep = rng.choice(Xi.shape[0], size=n_keep, replace=True, p=w)
    return Xi[keep], ess, "", qs, w @ Xi


def _bootstrap_outcomes(model, problem, block, th, cov, res, n_boot, rng, obs_name,
                        sir=None) -> None:
    grid = _outcome_grid(float(np.max(block.data.t)) if block.data.n else 365.0)
    k = problem.k
    p_hat = problem.block_params(th, block)
    res.curve = {"t": grid, "pred": np.full(grid.size, np.nan), "lo": np.full(grid.size, np.nan),
                 "hi": np.full(grid.size, np.nan)}
    cov_k = cov[:k, :k]
    finite = np.isfinite(np.diag(cov_k))
    span = problem.upper[:k] - problem.lower[:k]
    at_b = (th[:k] - problem.lower[:k] < 1e-5 * span) | (problem.upper[:k] - th[:k] < 1e-5 * span)
    free_idx = np.flatnonzero(finite)
    P = p_hat[None, :]
    why = ""
    if sir is not None:
        Pd = np.array([problem.block_params(d, block) for d in sir[0]]).reshape(-1, p_hat.size)
        P = np.vstack([P, Pd])
    elif n_boot <= 0:
        why = "no bootstrap requested"
    elif free_idx.size == 0 or np.any(~finite & ~at_b):
        # a non-identifiable parameter has no finite variance: a bootstrap holding it fixed
        # would give intervals that are far too narrow, so none is given
        why = "some parameters are not identifiable (no finite variance), so no CI"
    else:
        sub = cov_k[np.ix_(free_idx, free_idx)]
        sub = 0.5 * (sub + sub.T)
        w, V = np.linalg.eigh(sub)
        L = V * np.sqrt(np.clip(w, 0, None))
        draws = np.tile(th[:k], (n_boot, 1))
        draws[:, free_idx] += rng.standard_normal((n_boot, free_idx.size)) @ L.T
        inside = np.all((draws >= problem.lower[:k]) & (draws <= problem.upper[:k]), axis=1)
        Pd = np.array([problem.block_params(np.append(d, th[k:]), block)
                       for d in draws[inside]]).reshape(-1, p_hat.size)
        P = np.vstack([P, Pd])
    # the estimate and every draw in one batch (row 0 is the estimate)
    out, C, ok = _derived(model, grid, P, block.dose, res.lloq, obs_name, block.covariates)
    res.outcomes = {key: float(out[key][0]) for key in DERIVED_KEYS}
    res.outcomes["persistence_censored"] = float(out["persistence_censored"][0])
    res.curve["pred"] = C[0]
    ok_d = ok[1:]
    n_ok = int(ok_d.sum())
    if why or n_ok < 20:
        res.outcome_method = "point estimate only: " + (
            why or f"only {n_ok} bootstrap draws inside the bounds")
        res.outcomes_ci = {key: (math.nan, math.nan) for key in DERIVED_KEYS}
        return
    res.outcome_method = (
        f"sampling importance resampling of the {_sir_target(problem)}: {n_boot} draws "
        f"(effective sample size {sir[1]:.0f}), percentile 2.5-97.5%"
        if sir is not None else
        f"parametric bootstrap: {n_boot} draws of the fitted log-parameters from "
        f"N(estimate, covariance), percentile 2.5-97.5%; {n_ok} draws inside the bounds and "
        "solved"
    )
    for key in DERIVED_KEYS:
        v = out[key][1:][ok_d]
        v = v[np.isfinite(v)]
        res.outcomes_ci[key] = (
            (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))
            if v.size >= 20
            else (math.nan, math.nan)
        )
    band = np.percentile(C[1:][ok_d], [2.5, 97.5], axis=0)  # ok rows are finite
    res.curve["lo"], res.curve["hi"] = band[0], band[1]


def _profile_cis(problem, th, res, all_free, is_log_all, which) -> None:
    """Profile-likelihood 95% CIs: -2 log L rises by chi2(1, 0.95) = 3.841 from its minimum."""
    from scipy.optimize import brentq, least_squares

    target = res.objective + 3.841458820694124
    n = problem.n_theta

    def prof(i: int, v: float, warm: np.ndarray) -> tuple[float, np.ndarray]:
        others = [j for j in range(n) if j != i]

        def full(x: np.ndarray) -> np.ndarray:
            t = np.empty(n)
            t[i] = v
            t[others] = x
            return t

        x0 = np.clip(warm[others], problem.lower[others] + 1e-9, problem.upper[others] - 1e-9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = least_squares(
                lambda x: problem.residuals(full(x)),
                x0,
                jac=lambda x: problem.residuals(full(x), jac=True)[:, others],
                bounds=(problem.lower[others], problem.upper[others]),
                method="trf", x_scale="jac", max_nfev=200,
            )
        t = full(sol.x)
        return problem.objective(t), t

    for i, name in enumerate(all_free):
        if name not in which:
            continue
        lims = []
        s = math.sqrt(res.covariance[i, i]) if np.isfinite(res.covariance[i, i]) else 0.5
        for sign in (-1.0, 1.0):
            bound = problem.lower[i] if sign < 0 else problem.upper[i]
            step = max(s, 0.05)
            prev_v, warm = th[i], th.copy()
            lim = math.nan
            for _ in range(12):
                v = th[i] + sign * step
                if (sign < 0 and v <= bound) or (sign > 0 and v >= bound):
                    v = bound
                val, warm_new = prof(i, v, warm)
                if val >= target:
                    a, b = (prev_v, v)
                    def gap(x: float, i: int = i, warm: np.ndarray = warm) -> float:
                        return prof(i, x, warm)[0] - target

                    try:
                        lim = brentq(gap, min(a, b), max(a, b), xtol=1e-4)
                    except ValueError:
                        lim = v
                    break
                if v == bound:
                    lim = bound  # likelihood flat up to the bound: CI open there
                    break
                prev_v, warm = v, warm_new
                step *= 2.0
            lims.append(lim)
        lo_i, hi_i = lims
        if is_log_all[i]:
            with np.errstate(over="ignore"):
                res.ci[name] = (float(np.exp(lo_i)), float(np.exp(hi_i)))
        else:
            res.ci[name] = (lo_i, hi_i)
    method = "profile likelihood (-2 log L + 3.84)"
    res.ci_method = (
        method if set(which) == set(all_free) else f"{res.ci_method}; {method} for {which}"
    )
