"""Time to event against exposure, from a landmark.

**The landmark rule.** Exposure such as AUC0-28 is only known once day 28 has passed; a
patient who relapses or dies on day 15 has a short, low exposure *because* of the event,
and comparing survival "from infusion" by such exposure credits the high-exposure group
with time it had to survive to be classified (immortal-time bias). So every survival
analysis here starts at a landmark day L (default 28): only metrics known by day L are
used (``auc_0_X`` with X <= L, ``cmax_by_L``), patients whose event or censoring falls at
or before day L are excluded and counted (event before L / censored before L), and time
is counted from day L (Anderson, Cain & Gelber 1983).

Per endpoint (EFS, OS) and metric:

* Kaplan-Meier by exposure group (tertiles, T1 = lowest; or above / at-or-below the
  median), with the log-rank test: two groups by
  :func:`cartkinetics.endpoints.logrank_test`, three by lifelines'
  ``multivariate_logrank_test``; curves by :func:`cartkinetics.endpoints.kaplan_meier`
  (log-log CI);
* Cox regression on log2(exposure) (lifelines ``CoxPHFitter``): hazard ratio per doubling,
  Wald 95% CI, likelihood-ratio p, and the proportional-hazards check (lifelines
  ``proportional_hazard_test``, rank time transform) when there are >= 3 events; the ML
  estimate is reported only when the partial likelihood is not monotone;
* Firth's penalised Cox regression (Heinze & Schemper 2001; ``firthmodels`` FirthCoxPH) with
  profile penalised-likelihood CI, finite under monotone likelihood (few events).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.exposure.binary import MIN_EVENTS_PER_VARIABLE, RegressionFit

LANDMARK_RULE = (
    "landmark at day {L:g}: exposure known by day {L:g} only; patients whose event or "
    "censoring falls on or before day {L:g} excluded (counted); time counted from day {L:g}"
)
COX_METHOD = ("Cox regression on log2(exposure) (lifelines CoxPHFitter, Efron ties); Wald 95% "
              "CI; likelihood-ratio p")
FIRTH_COX_METHOD = ("Firth penalised Cox regression (firthmodels FirthCoxPH); profile penalised-"
                    "likelihood 95% CI; penalised likelihood-ratio p")


@dataclass
class Landmark:
    """Patients kept at a landmark and the times counted from it.

    Attributes
    ----------
    day : float
        Landmark day L (days since infusion).
    keep : ndarray of bool
        Patients still followed after day L (time > L).
    time : ndarray
        Time from the landmark (days) of the kept patients.
    event : ndarray of bool
    excluded_event, excluded_censored : list of str
        Patients excluded because their event / their censoring was on or before day L.
    """

    day: float
    keep: np.ndarray
    time: np.ndarray
    event: np.ndarray
    excluded_event: list[str]
    excluded_censored: list[str]

    @property
    def rule(self) -> str:
        """The rule in words."""
        return LANDMARK_RULE.format(L=self.day)


def landmark(patients: list[str], time: np.ndarray, event: np.ndarray,
             day: float) -> Landmark:
    """Apply the landmark rule (see the module docstring).

    Parameters
    ----------
    patients : list of str
    time : array_like
        Days from infusion to the event or the last contact.
    event : array_like of bool
    day : float
        Landmark day (>= 0; 0 keeps everybody with time > 0).

    Returns
    -------
    Landmark
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    keep = t > day
    ex_e = [p for p, k, ev in zip(patients, keep, e, strict=True) if not k and ev]
    ex_c = [p for p, k, ev in zip(patients, keep, e, strict=True) if not k and not ev]
    return Landmark(float(day), keep, t[keep] - day, e[keep], ex_e, ex_c)


def exposure_groups(x: np.ndarray, scheme: str = "tertile") -> np.ndarray:
    """Group label per patient: ``T1``/``T2``/``T3`` (tertiles by rank, T1 lowest) or
    ``above median`` / ``at or below median``."""
    x = np.asarray(x, dtype=float)
    if scheme == "median":
        return np.where(x > np.median(x), "above median", "at or below median")
    if scheme != "tertile":
        from cartkinetics.errors import CartKineticsError

        raise CartKineticsError(f"exposure groups: 'tertile' or 'median', not {scheme!r}")
    k = min(3, x.size)
    codes = pd.qcut(pd.Series(x).rank(method="first"), k, labels=False).to_numpy()
    return np.array([f"T{c + 1}" for c in codes])


def monotone_likelihood(x: np.ndarray, time: np.ndarray, event: np.ndarray) -> bool:
    """True when the Cox partial likelihood in one covariate is monotone (the ML estimate is
    infinite): at every event the patient's x is the largest of its risk set, or at every
    event the smallest."""
    x, t, e = (np.asarray(v) for v in (x, time, event))
    if not e.any():
        return True
    up = down = True
    for i in np.flatnonzero(e):
        risk = x[t >= t[i]]
        up &= bool(x[i] >= risk.max())
        down &= bool(x[i] <= risk.min())
    return up or down


def cox_ml(x: np.ndarray, time: np.ndarray, event: np.ndarray,
           confidence: float = 0.95) -> tuple[RegressionFit, dict[str, Any] | None]:
    """Cox regression of time on x (lifelines), and the proportional-hazards test.

    Returns
    -------
    fit : RegressionFit
    ph_test : dict or None
        ``statistic``, ``p``, ``method`` (>= 3 events), else None.
    """
    from lifelines import CoxPHFitter

    x, t, e = (np.asarray(v, dtype=float) for v in (x, time, event))
    if e.sum() == 0:
        return RegressionFit("cox", False, method=COX_METHOD, note="no event"), None
    if monotone_likelihood(x, t, e.astype(bool)):
        return RegressionFit("cox", False, method=COX_METHOD,
                             note="monotone partial likelihood (every event at the highest or "
                             "every event at the lowest exposure at risk): the ML estimate does "
                             "not exist"), None
    df = pd.DataFrame({"T": t, "E": e, "x": x})
    cph = CoxPHFitter(alpha=1 - confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cph.fit(df, "T", "E")
    s = cph.summary.loc["x"]
    lr = cph.log_likelihood_ratio_test()
    fit = RegressionFit(
        "cox", True, coef=float(s["coef"]), se=float(s["se(coef)"]),
        ci_low=float(s[f"coef lower {confidence:.0%}"]),
        ci_high=float(s[f"coef upper {confidence:.0%}"]), p=float(lr.p_value),
        p_method="likelihood ratio", method=COX_METHOD,
    )
    ph = None
    if e.sum() >= 3:
        from lifelines.statistics import proportional_hazard_test

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = proportional_hazard_test(cph, df, time_transform="rank")
        ph = {"statistic": float(np.asarray(r.test_statistic).ravel()[0]),
              "p": float(np.asarray(r.p_value).ravel()[0]),
              "method": "Grambsch-Therneau test of scaled Schoenfeld residuals against rank "
                        "of time (lifelines proportional_hazard_test)"}
    return fit, ph


def cox_firth(x: np.ndarray, time: np.ndarray, event: np.ndarray,
              confidence: float = 0.95) -> RegressionFit:
    """Firth's penalised Cox regression of time on x (firthmodels FirthCoxPH)."""
    from firthmodels import FirthCoxPH

    x, t, e = (np.asarray(v, dtype=float) for v in (x, time, event))
    if e.sum() == 0:
        return RegressionFit("firth_cox", False, method=FIRTH_COX_METHOD, note="no event")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = FirthCoxPH(backend="numpy", max_iter=200, max_halfstep=25)
        m.fit(x[:, None], (e.astype(bool), t))
        ci = m.conf_int(alpha=1 - confidence, method="pl", max_iter=100, tol=1e-6)
        m.lrt(0)
    bad = [str(w.message) for w in caught if "converge" in str(w.message).lower()]
    return RegressionFit(
        "firth_cox", bool(m.converged_), coef=float(m.coef_[0]), se=float(m.bse_[0]),
        ci_low=float(ci[0, 0]), ci_high=float(ci[0, 1]), p=float(m.lrt_pvalues_[0]),
        p_method="penalised likelihood ratio", method=FIRTH_COX_METHOD,
        note="; ".join(dict.fromkeys(bad)),
    )


def group_logrank(time: np.ndarray, event: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Log-rank test across exposure groups (2 groups: cartkinetics.endpoints.logrank_test;
    more: lifelines multivariate_logrank_test)."""
    labels = sorted(set(groups.tolist()))
    if len(labels) < 2:
        return {"p": None, "note": "one group only"}
    if len(labels) == 2:
        from cartkinetics.endpoints.survival import logrank_test

        return logrank_test(time, event, groups)
    from lifelines.statistics import multivariate_logrank_test

    r = multivariate_logrank_test(time, groups, event)
    return {"groups": labels, "n": [int(np.sum(groups == g)) for g in labels],
            "events": [int(np.sum(event[groups == g])) for g in labels],
            "chi2": float(r.test_statistic), "df": len(labels) - 1, "p": float(r.p_value),
            "method": f"log-rank test, {len(labels)} groups (lifelines "
                      f"multivariate_logrank_test), chi-square with {len(labels) - 1} df"}


@dataclass
class SurvivalAnalysis:
    """One time-to-event endpoint against one exposure metric, from a landmark.

    Attributes
    ----------
    endpoint, endpoint_label : str
        ``efs`` / ``os`` and its name.
    metric, unit : str
    landmark : Landmark
    patients : list of str
        Patients analysed (followed beyond the landmark, exposure known).
    exposure : ndarray
    time, event : ndarray
        From the landmark (days) and event flags.
    groups : ndarray of str
        Exposure group per patient (``group_scheme``).
    km : dict
        Group label -> :class:`cartkinetics.endpoints.KaplanMeier`.
    logrank : dict
    cox, firth_cox : RegressionFit
        Log hazard ratio per doubling of exposure.
    ph_test : dict or None
    note : str
    excluded : list of str
        Patients without a usable exposure.
    """

    endpoint: str
    endpoint_label: str
    metric: str
    unit: str
    landmark: Landmark
    patients: list[str]
    exposure: np.ndarray
    time: np.ndarray
    event: np.ndarray
    group_scheme: str
    groups: np.ndarray
    km: dict[str, Any]
    logrank: dict[str, Any]
    cox: RegressionFit
    firth_cox: RegressionFit
    ph_test: dict[str, Any] | None = None
    note: str = ""
    excluded: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Patients analysed."""
        return int(self.time.size)

    @property
    def events(self) -> int:
        """Events after the landmark."""
        return int(self.event.sum())

    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """Kaplan-Meier by exposure group (see
        :func:`cartkinetics.exposure.plots.plot_km_by_exposure`)."""
        from cartkinetics.exposure.plots import plot_km_by_exposure

        return plot_km_by_exposure(self, ax=ax, **kw)


def survival_analysis(
    endpoint: str,
    label: str,
    metric: str,
    unit: str,
    patients: list[str],
    exposure: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    landmark_day: float = 28.0,
    group_scheme: str = "tertile",
) -> SurvivalAnalysis:
    """Every survival analysis of one (endpoint, metric) pair from the landmark."""
    from cartkinetics.endpoints.survival import kaplan_meier

    x = np.asarray(exposure, dtype=float)
    lm = landmark(patients, time, event, landmark_day)
    usable = np.isfinite(x) & (x > 0)
    excluded = [f"{p}: {metric} missing or not positive"
                for p, k, u in zip(patients, lm.keep, usable, strict=True) if k and not u]
    sel = lm.keep & usable
    pats = [p for p, s in zip(patients, sel, strict=True) if s]
    ok = usable[lm.keep]
    t, e, xs = lm.time[ok], lm.event[ok], x[sel]
    groups = exposure_groups(xs, group_scheme) if xs.size else np.array([], dtype=str)
    km = {g: kaplan_meier(t[groups == g], e[groups == g]) for g in sorted(set(groups))}
    lr = group_logrank(t, e, groups) if xs.size >= 2 else {"p": None}
    lx = np.log2(xs) if xs.size else xs
    if xs.size >= 2:
        cox, ph = cox_ml(lx, t, e)
        firth = cox_firth(lx, t, e)
    else:
        cox = RegressionFit("cox", False, note="fewer than 2 patients after the landmark")
        firth = RegressionFit("firth_cox", False, note="fewer than 2 patients")
        ph = None
    note = ""
    if int(e.sum()) < MIN_EVENTS_PER_VARIABLE:
        note = (f"{int(t.size)} patients followed beyond day {landmark_day:g}, {int(e.sum())} "
                f"event(s): fewer than {MIN_EVENTS_PER_VARIABLE} events, so the hazard ratio "
                "cannot be estimated with useful precision; read the confidence interval, not "
                "the p-value")
    return SurvivalAnalysis(endpoint, label, metric, unit, lm, pats, xs, t, e, group_scheme,
                            groups, km, lr, cox, firth, ph, note, excluded)
