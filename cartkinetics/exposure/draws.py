"""Exposure-response over posterior draws of each patient's exposure.

A hierarchical fit (:func:`cartkinetics.fit_population`) gives, for every patient, a
posterior distribution of Cmax, AUC0-28 ... rather than one number. Here the regression of
the outcome on log2(exposure) is repeated for each joint posterior draw of all patients'
exposures, which carries the uncertainty of the kinetics into the association:

* the spread of the per-draw estimates (2.5-97.5% quantiles) is the part of the
  uncertainty that comes from the kinetics alone;
* the total uncertainty mixes, for each draw d, the estimate's own sampling distribution
  N(coef_d, se_d^2) (one normal draw per posterior draw, the way multiple imputation
  combines imputations); its 2.5-97.5% quantiles are the reported interval.

Binary outcomes use Firth's logistic regression (finite under separation, which a single
draw can show by chance), survival outcomes Firth's Cox regression from the landmark.

Input is a table of draws: rows = patients (index), columns = draws, values in the metric's
unit. :func:`exposure_draws` makes it from a :class:`~cartkinetics.fit.population.PopulationFit`
(Cmax and Tmax of the Stein 2019 model are its parameters; AUC0-28 and the other
outcomes come from the fitted curves through :mod:`cartkinetics.outcomes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError

DRAWS_METHOD = (
    "regression repeated over joint posterior draws of the patients' exposure; interval = "
    "2.5-97.5% quantiles of coef_d + se_d z_d (kinetics and sampling uncertainty combined)"
)


def exposure_draws(fit: Any, metric: str = "auc_0_28", *, infusion: int | str = "last",
                   max_draws: int = 1000) -> pd.DataFrame:
    """Posterior draws of one exposure metric per patient from a hierarchical fit.

    Parameters
    ----------
    fit : PopulationFit
        Result of :func:`cartkinetics.fit_population`.
    metric : str
        ``cmax``, ``tmax`` (Stein 2019 parameters: their posterior draws directly) or an
        outcome of :data:`cartkinetics.outcomes.OUTCOME_KEYS` (``auc_0_28``, ``c_day28``,
        ``persistence`` ...) computed from each drawn curve.
    infusion : int or "last"
        The infusion whose exposure is used (default each patient's last).
    max_draws : int
        At most this many draws (thinned evenly).

    Returns
    -------
    DataFrame
        Index ``patient``, columns ``0..n_draws-1``; ``attrs`` hold ``metric``, ``unit``
        (the fit's observation unit, x day for areas) and ``infusion``.
    """
    from cartkinetics.exposure.metrics import metric_unit

    names = list(fit.info.get("names", []))
    # a model whose parameters are the outcomes themselves (Stein 2019's cmax, tmax): the
    # sampled parameter is the exposure, exactly; otherwise computed from each drawn curve
    outcome_params = getattr(getattr(fit, "model", None), "outcome_parameters", ())
    if metric in outcome_params and metric in names:
        arr = fit.theta[:, :, names.index(metric)]
    else:
        draws = fit.outcome_draws(max_draws=max_draws)
        if metric not in draws:
            raise CartKineticsError(
                f"exposure draws: the fit has no outcome {metric!r}; available: "
                f"{', '.join(sorted(draws))}"
            )
        arr = draws[metric]
    step = max(1, arr.shape[0] // max_draws)
    arr = np.asarray(arr)[::step]
    keys = list(fit.data.series_keys)
    by_patient: dict[str, tuple[int, int]] = {}
    for s, (p, k, _) in enumerate(keys):
        k = int(k)
        if infusion == "last":
            if p not in by_patient or k > by_patient[p][0]:
                by_patient[p] = (k, s)
        elif k == int(infusion):
            by_patient[p] = (k, s)
    if not by_patient:
        raise CartKineticsError(f"exposure draws: no series of infusion {infusion}")
    pats = sorted(by_patient)
    out = pd.DataFrame(arr[:, [by_patient[p][1] for p in pats]].T,
                       index=pd.Index(pats, name="patient"))
    out.attrs.update(metric=metric, unit=metric_unit(metric, getattr(fit.data, "unit", "")),
                     infusion={p: by_patient[p][0] for p in pats})
    return out


@dataclass
class DrawsAnalysis:
    """An association estimated over posterior draws of exposure.

    Attributes
    ----------
    kind : str
        ``"logistic"`` (odds ratio per doubling) or ``"cox"`` (hazard ratio per doubling).
    outcome, metric : str
    n_draws, n : int
        Draws used and patients.
    coef_draws, se_draws : ndarray
        Per-draw estimate and standard error (Firth).
    coef, ci_low, ci_high : float
        Median and 95% interval of the combined distribution (see the module docstring).
    kinetics_low, kinetics_high : float
        2.5-97.5% quantiles of the per-draw estimates alone.
    method : str
    """

    kind: str
    outcome: str
    metric: str
    n_draws: int
    n: int
    coef_draws: np.ndarray
    se_draws: np.ndarray
    coef: float
    ci_low: float
    ci_high: float
    kinetics_low: float
    kinetics_high: float
    method: str = DRAWS_METHOD

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (ratios per doubling)."""
        return {"kind": self.kind, "outcome": self.outcome, "metric": self.metric,
                "n_draws": self.n_draws, "n": self.n,
                "ratio": math.exp(self.coef), "ratio_ci_low": math.exp(self.ci_low),
                "ratio_ci_high": math.exp(self.ci_high),
                "ratio_kinetics_only_low": math.exp(self.kinetics_low),
                "ratio_kinetics_only_high": math.exp(self.kinetics_high),
                "method": self.method}


def _combine(kind: str, outcome: str, metric: str, b: np.ndarray, se: np.ndarray, n: int,
             seed: int) -> DrawsAnalysis:
    ok = np.isfinite(b) & np.isfinite(se)
    if not ok.any():
        raise CartKineticsError(f"exposure draws: no draw gave an estimate for {outcome}")
    b, se = b[ok], se[ok]
    rng = np.random.default_rng(seed)
    mix = b + se * rng.standard_normal(b.size)
    lo, mid, hi = np.quantile(mix, [0.025, 0.5, 0.975])
    klo, khi = np.quantile(b, [0.025, 0.975])
    return DrawsAnalysis(kind, outcome, metric, int(b.size), n, b, se, float(mid), float(lo),
                         float(hi), float(klo), float(khi))


def _log2_draws(draws: pd.DataFrame) -> np.ndarray:
    """log2 of a draws table; refuses zero, negative or missing draws (naming patients)."""
    arr = draws.to_numpy(float)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        pats = [str(p) for p, b in zip(draws.index, bad.any(axis=1), strict=True) if b]
        raise CartKineticsError(
            f"exposure draws: {int(bad.sum())} draw(s) missing, zero or negative for "
            f"{', '.join(pats[:10])}; log2 exposure is undefined there")
    return np.log2(arr)


def logistic_over_draws(draws: pd.DataFrame, outcome: pd.Series, *, name: str = "outcome",
                        seed: int = 0) -> DrawsAnalysis:
    """Firth logistic regression of a binary outcome on log2(exposure), once per draw.

    Parameters
    ----------
    draws : DataFrame
        Rows patients (index), columns draws; exposure in the metric unit (> 0).
    outcome : Series
        0/1 per patient (index = patient); patients in both are used.
    name : str
        Outcome name carried into the result.
    seed : int
        Seed of the normal draws that add the sampling uncertainty.
    """
    import warnings

    from firthmodels import FirthLogisticRegression

    common = [p for p in draws.index if p in outcome.index]
    if len(common) < 3:
        raise CartKineticsError("exposure draws: fewer than 3 patients with draws and outcome")
    X = _log2_draws(draws.loc[common])
    y = outcome.loc[common].to_numpy(int)
    b, se = np.full(X.shape[1], np.nan), np.full(X.shape[1], np.nan)
    if y.min() == y.max():
        raise CartKineticsError(f"exposure draws: every patient has the same {name} outcome")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in range(X.shape[1]):
            m = FirthLogisticRegression(backend="numpy", max_iter=100).fit(X[:, d:d + 1], y)
            b[d], se[d] = float(m.coef_[0]), float(m.bse_[0])
    return _combine("logistic", name, str(draws.attrs.get("metric", "")), b, se, len(common),
                    seed)


def cox_over_draws(draws: pd.DataFrame, time: pd.Series, event: pd.Series, *,
                   landmark_day: float = 28.0, name: str = "efs",
                   seed: int = 0) -> DrawsAnalysis:
    """Firth Cox regression of survival from the landmark on log2(exposure), once per draw.

    The landmark rule of :mod:`cartkinetics.exposure.survival` applies (patients with the
    event or censoring on or before ``landmark_day`` excluded, time from the landmark); the
    metric must be known by the landmark (e.g. AUC0-28 with the default day 28).
    """
    from firthmodels import FirthCoxPH

    from cartkinetics.exposure.metrics import known_by

    metric = str(draws.attrs.get("metric", ""))
    kb = known_by(metric)
    if kb is not None and kb > landmark_day:
        raise CartKineticsError(
            f"{metric} is known only at day {kb:g}, after the landmark (day {landmark_day:g})")
    common = [p for p in draws.index if p in time.index]
    t = time.loc[common].to_numpy(float)
    e = event.loc[common].to_numpy(bool)
    keep = t > landmark_day
    X = _log2_draws(draws.loc[common])[keep]
    t, e = t[keep] - landmark_day, e[keep]
    if e.sum() == 0:
        raise CartKineticsError(f"exposure draws: no {name} event after the landmark")
    b, se = np.full(X.shape[1], np.nan), np.full(X.shape[1], np.nan)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d in range(X.shape[1]):
            m = FirthCoxPH(backend="numpy", max_iter=100).fit(X[:, d:d + 1], (e, t))
            b[d], se[d] = float(m.coef_[0]), float(m.bse_[0])
    return _combine("cox", name, metric, b, se, int(keep.sum()), seed)
