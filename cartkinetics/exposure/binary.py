"""Binary and ordinal outcomes against exposure.

For each outcome (response, MRD-negative CR, CRS or ICANS grade >= 2) and exposure metric:

* **Firth's penalised logistic regression** of the outcome on log2(exposure) (Firth 1993;
  Heinze & Schemper 2002), fitted by ``firthmodels`` (a maintained implementation checked
  against R logistf): finite estimates under separation and less small-sample bias;
  profile penalised-likelihood 95% CI and penalised likelihood-ratio p-value, as logistf
  reports them. This is the primary estimate.
* **Maximum-likelihood logistic regression** (``statsmodels`` Logit) beside it, with the
  Wald CI and the likelihood-ratio p-value, reported only when the ML estimate exists (no
  complete or quasi-complete separation).
* **Exact tests** that need no model: Mann-Whitney U of exposure between patients with and
  without the outcome (exact distribution when there are no ties), Fisher's and Boschloo's
  exact tests of the outcome above versus at-or-below the median exposure. Each carries
  the smallest p-value its group sizes can reach.
* **Observed proportions by exposure quartile** with Clopper-Pearson 95% CIs
  (:func:`cartkinetics.endpoints.proportion`).
* **Proportional odds** (``statsmodels`` OrderedModel, logit link) of a grade on
  log2(exposure) where at least three grades are observed.

The coefficient of log2(exposure) is the log odds ratio per doubling of exposure.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

FIRTH_METHOD = (
    "Firth penalised logistic regression on log2(exposure) (firthmodels); profile penalised-"
    "likelihood 95% CI; penalised likelihood-ratio p"
)
ML_METHOD = "maximum-likelihood logistic regression (statsmodels Logit); Wald 95% CI; LR p"
ORDINAL_METHOD = "proportional-odds logistic regression (statsmodels OrderedModel); Wald 95% CI"
MIN_EVENTS_PER_VARIABLE = 10


@dataclass
class RegressionFit:
    """Coefficient of log2(exposure) from one estimator.

    Attributes
    ----------
    estimator : str
        ``"firth"``, ``"ml"``, ``"ordinal"``, ``"cox"`` or ``"firth_cox"``.
    exists : bool
        False when the estimate does not exist (separation, monotone likelihood) or the fit
        failed; ``note`` says why and the numbers are NaN.
    coef, se : float
        Log odds (or hazard) ratio per doubling of exposure and its standard error.
    ci_low, ci_high : float
        95% confidence limits of ``coef``.
    p : float
        Two-sided p-value of coef = 0 (``p_method`` names the test).
    intercept : float
        Intercept (logistic only; log odds at exposure 1 unit).
    cov : ndarray or None
        2 x 2 covariance of (coef, intercept) for the logistic curve's band.
    """

    estimator: str
    exists: bool
    coef: float = math.nan
    se: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    p_method: str = ""
    intercept: float = math.nan
    cov: np.ndarray | None = None
    method: str = ""
    note: str = ""

    @property
    def ratio(self) -> tuple[float, float, float]:
        """exp(coef) with its limits: odds (hazard) ratio per doubling of exposure."""
        return math.exp(self.coef), math.exp(self.ci_low), math.exp(self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (NaN -> None)."""
        def num(v: float) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        out = {"estimator": self.estimator, "exists": self.exists, "coef": num(self.coef),
               "se": num(self.se), "ci_low": num(self.ci_low), "ci_high": num(self.ci_high),
               "p": num(self.p), "p_method": self.p_method, "method": self.method,
               "note": self.note}
        if self.exists:
            r = self.ratio
            out.update(ratio=num(r[0]), ratio_ci_low=num(r[1]), ratio_ci_high=num(r[2]))
        return out


def separation(x: np.ndarray, y: np.ndarray) -> str | None:
    """``"complete"`` or ``"quasi-complete"`` separation of a binary y by one covariate
    (with intercept), else None. Under either, the ML logistic estimate does not exist."""
    x1, x0 = x[y == 1], x[y == 0]
    if x1.size == 0 or x0.size == 0:
        return "complete"
    if x0.max() < x1.min() or x1.max() < x0.min():
        return "complete"
    if x0.max() <= x1.min() or x1.max() <= x0.min():
        return "quasi-complete"
    return None


def _design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([x, np.ones_like(x)])


def firth_logistic(x: np.ndarray, y: np.ndarray, *, confidence: float = 0.95) -> RegressionFit:
    """Firth's penalised logistic regression of y on x (one covariate plus intercept).

    Parameters
    ----------
    x : array_like
        Covariate, e.g. log2(AUC0-28).
    y : array_like of 0/1
    confidence : float
        Level of the profile penalised-likelihood interval.

    Returns
    -------
    RegressionFit
        ``coef`` = slope of x; ``p`` from the penalised likelihood-ratio test; ``se`` the
        Wald standard error from the inverse Fisher information at the estimate.
    """
    from firthmodels import FirthLogisticRegression

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=int)
    if y.min() == y.max():
        return RegressionFit("firth", False, method=FIRTH_METHOD,
                             note="every patient has the same outcome: no contrast to estimate")
    centre = float(np.mean(x))  # centred covariate: better conditioned, same slope
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = FirthLogisticRegression(backend="numpy", max_iter=100, gtol=1e-6, xtol=1e-6)
        m.fit((x - centre)[:, None], y)
        ci = m.conf_int(alpha=1 - confidence, method="pl", max_iter=100, tol=1e-6)
        m.lrt(0)
    bad = [str(w.message) for w in caught if "converge" in str(w.message).lower()]
    b = float(m.coef_[0])
    a = float(m.intercept_) - b * centre
    p_ = 1.0 / (1.0 + np.exp(-(a + b * x)))
    X = _design(x)
    info = X.T @ (X * (p_ * (1 - p_))[:, None])
    cov = np.linalg.inv(info)
    return RegressionFit(
        "firth", bool(m.converged_), coef=b, se=float(math.sqrt(cov[0, 0])),
        ci_low=float(ci[0, 0]), ci_high=float(ci[0, 1]), p=float(m.lrt_pvalues_[0]),
        p_method="penalised likelihood ratio", intercept=a, cov=cov, method=FIRTH_METHOD,
        note="; ".join(dict.fromkeys(bad)),
    )


def ml_logistic(x: np.ndarray, y: np.ndarray, *, confidence: float = 0.95) -> RegressionFit:
    """Maximum-likelihood logistic regression of y on x (statsmodels Logit), or a
    non-existing fit with the reason under separation."""
    import statsmodels.api as sm

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=int)
    sep = separation(x, y)
    if y.min() == y.max():
        return RegressionFit("ml", False, method=ML_METHOD,
                             note="every patient has the same outcome: no contrast to estimate")
    if sep is not None:
        return RegressionFit("ml", False, method=ML_METHOD,
                             note=f"{sep} separation: the ML estimate does not exist (infinite)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.Logit(y, _design(x)).fit(disp=False, maxiter=200)
    if not res.mle_retvals.get("converged", False):
        return RegressionFit("ml", False, method=ML_METHOD, note="ML fit did not converge")
    ci = np.asarray(res.conf_int(alpha=1 - confidence))
    return RegressionFit(
        "ml", True, coef=float(res.params[0]), se=float(res.bse[0]), ci_low=float(ci[0, 0]),
        ci_high=float(ci[0, 1]), p=float(res.llr_pvalue), p_method="likelihood ratio",
        intercept=float(res.params[1]), cov=np.asarray(res.cov_params()), method=ML_METHOD,
    )


def ordinal_logistic(x: np.ndarray, grade: np.ndarray, *,
                     confidence: float = 0.95) -> RegressionFit:
    """Proportional-odds logistic regression of an ordered grade on x (statsmodels
    OrderedModel); needs at least three observed grades (two: use the logistic of
    grade >= threshold)."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    x = np.asarray(x, dtype=float)
    g = np.asarray(grade, dtype=int)
    levels = np.unique(g)
    if levels.size < 3:
        same = (": the logistic regression of grade >= threshold is that model"
                if levels.size == 2 else "")
        return RegressionFit(
            "ordinal", False, method=ORDINAL_METHOD,
            note=f"only grade(s) {', '.join(map(str, levels))} observed: the proportional-odds "
            f"model needs three or more{same}")
    cat = pd.Series(pd.Categorical(g, categories=levels, ordered=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = OrderedModel(cat, x[:, None], distr="logit").fit(method="bfgs", disp=False,
                                                                 maxiter=500)
    params, bse, pv = (np.asarray(v, dtype=float) for v in (res.params, res.bse, res.pvalues))
    ok = bool(res.mle_retvals.get("converged", False)) and math.isfinite(float(bse[0]))
    if not ok:
        return RegressionFit("ordinal", False, method=ORDINAL_METHOD,
                             note="proportional-odds fit did not converge (too few patients "
                             "per grade, or separation)")
    ci = np.asarray(res.conf_int(alpha=1 - confidence))
    return RegressionFit(
        "ordinal", True, coef=float(params[0]), se=float(bse[0]),
        ci_low=float(ci[0, 0]), ci_high=float(ci[0, 1]), p=float(pv[0]),
        p_method="Wald", method=ORDINAL_METHOD,
        note="proportional-odds assumption: one odds ratio for every grade cut-off (not tested)",
    )


def _min_p_mannwhitney(n1: int, n0: int) -> float:
    return min(1.0, 2.0 / math.comb(n1 + n0, n1))


def _min_p_fisher(table: np.ndarray) -> float:
    """Smallest two-sided Fisher p over all 2x2 tables with the same margins."""
    from scipy.stats import fisher_exact

    r1 = int(table[0].sum())
    c1 = int(table[:, 0].sum())
    n = int(table.sum())
    best = 1.0
    for a in range(max(0, r1 + c1 - n), min(r1, c1) + 1):
        t = np.array([[a, r1 - a], [c1 - a, n - r1 - c1 + a]])
        best = min(best, float(fisher_exact(t).pvalue))
    return best


def exact_tests(exposure: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Model-free tests of exposure against a binary outcome.

    Parameters
    ----------
    exposure : array_like
        Exposure per patient (any scale; only ranks and the median are used).
    y : array_like of 0/1

    Returns
    -------
    dict
        ``mann_whitney``: U, p, method, smallest attainable p, median exposure with and
        without the outcome; ``fisher``: the 2x2 table (rows above / at-or-below median
        exposure; columns with / without the outcome), sample odds ratio, p and smallest
        attainable p; ``boschloo``: p (n <= 100).
    """
    from scipy.stats import boschloo_exact, fisher_exact, mannwhitneyu

    x = np.asarray(exposure, dtype=float)
    y = np.asarray(y, dtype=int)
    x1, x0 = x[y == 1], x[y == 0]
    out: dict[str, Any] = {}
    if x1.size and x0.size:
        ties = np.unique(x).size < x.size
        method = "asymptotic" if (ties and x.size > 50) else ("exact" if not ties else
                                                              "permutation")
        if method == "permutation":
            from scipy.stats import PermutationMethod

            try:  # seeded: the same p-value on every run (rng= since scipy 1.15)
                perm = PermutationMethod(n_resamples=20000, rng=1)
            except TypeError:  # pragma: no cover (older scipy)
                perm = PermutationMethod(n_resamples=20000, random_state=1)
            res = mannwhitneyu(x1, x0, alternative="two-sided", method=perm)
        else:
            res = mannwhitneyu(x1, x0, alternative="two-sided", method=method)
        out["mann_whitney"] = {
            "u": float(res.statistic), "p": float(res.pvalue), "method":
            f"Mann-Whitney U, two-sided, {method}", "n_with": int(x1.size),
            "n_without": int(x0.size), "median_with": float(np.median(x1)),
            "median_without": float(np.median(x0)),
            "min_attainable_p": _min_p_mannwhitney(x1.size, x0.size),
        }
    high = x > np.median(x)
    table = np.array([[np.sum(high & (y == 1)), np.sum(high & (y == 0))],
                      [np.sum(~high & (y == 1)), np.sum(~high & (y == 0))]], dtype=int)
    if table.sum(axis=0).min() > 0 and table.sum(axis=1).min() > 0:
        f = fisher_exact(table)
        out["fisher"] = {
            "table": table.tolist(), "odds_ratio": float(f.statistic), "p": float(f.pvalue),
            "method": "Fisher exact, two-sided; rows above / at-or-below the median exposure",
            "min_attainable_p": _min_p_fisher(table),
        }
        if x.size <= 100:
            b = boschloo_exact(table, alternative="two-sided")
            out["boschloo"] = {"p": float(b.pvalue), "method": "Boschloo exact, two-sided"}
    return out


def quartile_table(exposure: np.ndarray, y: np.ndarray, *, groups: int = 4) -> pd.DataFrame:
    """Observed proportion with the outcome per exposure quantile group, Clopper-Pearson 95%.

    Returns
    -------
    DataFrame
        ``group`` (Q1 = lowest), ``n``, ``events``, ``proportion``, ``ci_low``, ``ci_high``,
        ``exposure_median``, ``exposure_min``, ``exposure_max``.
    """
    from cartkinetics.endpoints.response import proportion

    x = np.asarray(exposure, dtype=float)
    y = np.asarray(y, dtype=int)
    k = max(1, min(groups, x.size))
    codes = pd.qcut(pd.Series(x).rank(method="first"), k, labels=False)
    rows = []
    for q in range(k):
        m = (codes == q).to_numpy()
        r = proportion(int(y[m].sum()), int(m.sum()))
        rows.append({"group": f"Q{q + 1}", "n": r.n, "events": r.k, "proportion": r.rate,
                     "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "exposure_median": float(np.median(x[m])),
                     "exposure_min": float(x[m].min()), "exposure_max": float(x[m].max())})
    return pd.DataFrame(rows)


def small_sample_note(n: int, events: int, tests: dict[str, Any] | None = None) -> str:
    """Plain words on what a cohort of this size can and cannot tell ("" when enough)."""
    fewer = min(events, n - events)
    if fewer >= MIN_EVENTS_PER_VARIABLE or fewer == 0:  # 0: the fit says "same outcome"
        return ""
    text = (f"{n} patients, {events} with the outcome and {n - events} without: fewer than "
            f"{MIN_EVENTS_PER_VARIABLE} in the smaller group, so the association cannot be "
            "estimated with useful precision; read the width of the confidence interval, not "
            "the p-value")
    if tests and "mann_whitney" in tests:
        mp = tests["mann_whitney"]["min_attainable_p"]
        if mp > 0.05:
            text += (f"; with these group sizes the exact Mann-Whitney test cannot give a "
                     f"p-value below {mp:.3g}, whatever the data")
    return text


@dataclass
class BinaryAnalysis:
    """One binary outcome against one exposure metric.

    Attributes
    ----------
    outcome, outcome_label : str
        Key (e.g. ``crs_ge2``) and definition.
    metric, unit : str
        Exposure metric and its unit.
    patients : list of str
    exposure : ndarray
        Exposure per patient (metric unit).
    y : ndarray of int
        Outcome per patient (1 = yes).
    firth, ml : RegressionFit
        Coefficient of log2(exposure): log odds ratio per doubling.
    tests : dict
        See :func:`exact_tests`.
    quartiles : DataFrame
        See :func:`quartile_table`.
    ordinal : RegressionFit or None
        Proportional-odds fit of the grade (toxicity outcomes).
    note : str
        Small-sample statement ("" when the cohort is large enough).
    excluded : list of str
        Patients left out (exposure missing or not positive), with the reason.
    """

    outcome: str
    outcome_label: str
    metric: str
    unit: str
    patients: list[str]
    exposure: np.ndarray
    y: np.ndarray
    firth: RegressionFit
    ml: RegressionFit
    tests: dict[str, Any]
    quartiles: pd.DataFrame
    ordinal: RegressionFit | None = None
    note: str = ""
    excluded: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Patients analysed."""
        return int(self.y.size)

    @property
    def events(self) -> int:
        """Patients with the outcome."""
        return int(self.y.sum())

    def predict(self, exposure: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, ...]:
        """Firth-fitted P(outcome) at ``exposure`` (metric unit) with a pointwise Wald band
        on the logit scale: (p, low, high)."""
        from scipy.stats import norm

        f = self.firth
        lx = np.log2(np.asarray(exposure, dtype=float))
        eta = f.intercept + f.coef * lx
        if f.cov is None:
            return (1 / (1 + np.exp(-eta)),) * 3
        X = np.column_stack([lx, np.ones_like(lx)])
        se = np.sqrt(np.einsum("ij,jk,ik->i", X, f.cov, X))
        z = norm.ppf(0.5 + confidence / 2)
        sig = lambda v: 1 / (1 + np.exp(-v))
        return sig(eta), sig(eta - z * se), sig(eta + z * se)

    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """Probability of the outcome against exposure (see
        :func:`cartkinetics.exposure.plots.plot_probability`)."""
        from cartkinetics.exposure.plots import plot_probability

        return plot_probability(self, ax=ax, **kw)


def binary_analysis(
    outcome: str,
    label: str,
    metric: str,
    unit: str,
    patients: list[str],
    exposure: np.ndarray,
    y: np.ndarray,
    grade: np.ndarray | None = None,
) -> BinaryAnalysis:
    """Every binary-outcome analysis of one (outcome, metric) pair.

    Patients with a missing or non-positive exposure (log undefined) are left out of the
    regressions and named in ``excluded``; the rank tests and quartiles use the same set.
    """
    x = np.asarray(exposure, dtype=float)
    yy = np.asarray(y, dtype=int)
    keep = np.isfinite(x) & (x > 0)
    excluded = [f"{p}: {metric} = {v:g} (log2 undefined)" if np.isfinite(v) else
                f"{p}: {metric} missing" for p, v, k in zip(patients, x, keep, strict=True)
                if not k]
    pats = [p for p, k in zip(patients, keep, strict=True) if k]
    x, yy = x[keep], yy[keep]
    lx = np.log2(x)
    firth = firth_logistic(lx, yy) if x.size >= 2 else RegressionFit("firth", False,
                                                                     note="fewer than 2 "
                                                                     "patients")
    ml = ml_logistic(lx, yy) if x.size >= 2 else RegressionFit("ml", False)
    tests = exact_tests(x, yy) if x.size >= 2 else {}
    ordinal = None
    if grade is not None:
        ordinal = ordinal_logistic(lx, np.asarray(grade, dtype=int)[keep])
    return BinaryAnalysis(
        outcome, label, metric, unit, pats, x, yy, firth, ml, tests,
        quartile_table(x, yy) if x.size else pd.DataFrame(), ordinal,
        small_sample_note(int(yy.size), int(yy.sum()), tests), excluded,
    )
