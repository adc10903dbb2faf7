"""Kaplan-Meier survival with log-log confidence intervals, medians, landmarks, follow-up.

The estimator and its pointwise interval come from ``scipy.stats.ecdf`` on
``scipy.stats.CensoredData.right_censored``: ``sf.confidence_interval(method="log-log")``
is the Kalbfleisch-Prentice "exponential Greenwood" interval, the one R survival
(``conf.type="log-log"``) and lifelines' ``KaplanMeierFitter`` report. scipy leaves the
interval undefined (NaN) where S(t) = 1 or S(t) = 0; there it is set to 1 or 0, as
lifelines does.

Medians follow lifelines' convention: the first time at which S(t) <= 0.5, "not reached"
when the curve stays above 0.5. Its 95% CI is read where the log-log confidence limits
cross 0.5 (Brookmeyer-Crowley with the log-log transform; lifelines
``median_survival_times(kmf.confidence_interval_)``). All times are in days.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cartkinetics.errors import CartKineticsError

KM_METHOD = "Kaplan-Meier (scipy.stats.ecdf), 95% CI log-log (exponential Greenwood)"
MEDIAN_METHOD = (
    "median = first time S(t) <= 0.5; 95% CI where the log-log limits cross 0.5 "
    "(Brookmeyer-Crowley)"
)
FOLLOW_UP_METHOD = (
    "median of all patients' follow-up times (deaths included), range; "
    "and reverse Kaplan-Meier median (death censored)"
)
LOGRANK_METHOD = "log-rank test (scipy.stats.logrank), chi-square with 1 df"


def _first_crossing(times: np.ndarray, curve: np.ndarray, level: float = 0.5) -> float | None:
    below = np.flatnonzero(curve <= level + 1e-12)
    return float(times[below[0]]) if below.size else None


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve with its pointwise confidence interval.

    Attributes
    ----------
    time : ndarray
        Distinct observed times (events and censorings), days, ascending.
    survival, ci_low, ci_high : ndarray
        S(t) and its confidence limits just after each time (right-continuous steps).
    at_risk, events, censored : ndarray
        Patients at risk just before each time, events and censorings at it.
    n : int
        Patients.
    confidence : float
        Confidence level of the interval.
    method : str
        Estimator and interval, named.
    """

    time: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    n: int
    confidence: float = 0.95
    method: str = KM_METHOD

    @property
    def n_events(self) -> int:
        """Total number of events."""
        return int(self.events.sum())

    @property
    def max_time(self) -> float:
        """Last observed time (days); the curve is not defined beyond it."""
        return float(self.time[-1]) if self.time.size else 0.0

    def evaluate(self, t: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """S(t) and its limits at arbitrary times (days; 1 before the first time).

        Times beyond the last observed time return NaN (the estimate is not defined), unless
        the curve has reached 0 (the last patient had the event): it then stays 0.
        """
        t = np.atleast_1d(np.asarray(t, dtype=float))
        idx = np.searchsorted(self.time, t, side="right") - 1
        ended = self.survival.size > 0 and self.survival[-1] <= 0.0
        out = []
        for arr in (self.survival, self.ci_low, self.ci_high):
            vals = np.where(idx >= 0, arr[np.clip(idx, 0, None)], 1.0)
            out.append(vals if ended else np.where(t > self.max_time, np.nan, vals))
        return out[0], out[1], out[2]

    def number_at_risk(self, t: float | Sequence[float]) -> np.ndarray:
        """Patients still followed at time t (time >= t), days."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        # at-risk just before each distinct time, counted from the end
        total_after = np.concatenate([np.cumsum((self.events + self.censored)[::-1])[::-1], [0]])
        idx = np.searchsorted(self.time, t, side="left")
        return total_after[idx].astype(int)

    @property
    def median(self) -> float | None:
        """Median survival (days) or None when not reached."""
        return _first_crossing(self.time, self.survival)

    @property
    def median_ci(self) -> tuple[float | None, float | None]:
        """Confidence limits of the median (days); None where not reached."""
        return _first_crossing(self.time, self.ci_low), _first_crossing(self.time, self.ci_high)

    def table(self) -> pd.DataFrame:
        """Tidy KM table: time, at_risk, events, censored, survival, ci_low, ci_high."""
        return pd.DataFrame(
            {
                "time": self.time,
                "at_risk": self.at_risk,
                "events": self.events,
                "censored": self.censored,
                "survival": self.survival,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
            }
        )


def _check_time_event(
    time: ArrayLike, event: ArrayLike, what: str
) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    if t.ndim != 1 or t.shape != e.shape:
        raise CartKineticsError(f"{what}: time and event must be 1-D arrays of equal length")
    if t.size == 0:
        raise CartKineticsError(f"{what}: no patients")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise CartKineticsError(f"{what}: times must be finite and >= 0 (days)")
    return t, e


def kaplan_meier(time: ArrayLike, event: ArrayLike, *, confidence: float = 0.95) -> KaplanMeier:
    """Kaplan-Meier estimate with a log-log (exponential Greenwood) confidence interval.

    Parameters
    ----------
    time : array_like
        Time to event or to last contact (days).
    event : array_like of bool
        True for an event, False for a right-censored observation.
    confidence : float
        Confidence level of the pointwise interval.

    Returns
    -------
    KaplanMeier
    """
    from scipy.stats import CensoredData, ecdf

    t, e = _check_time_event(time, event, "Kaplan-Meier")
    res = ecdf(CensoredData.right_censored(t, ~e)).sf
    with warnings.catch_warnings():
        # scipy warns where the log-log interval is undefined (S = 0 or 1); handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = res.confidence_interval(confidence, method="log-log")
    times = np.asarray(res.quantiles, dtype=float)
    surv = np.asarray(res.probabilities, dtype=float)
    low = np.asarray(ci.low.probabilities, dtype=float).copy()
    high = np.asarray(ci.high.probabilities, dtype=float).copy()
    # undefined where S is 1 or 0: the interval collapses onto the estimate (as lifelines)
    for arr in (low, high):
        undefined = np.isnan(arr)
        arr[undefined & (surv >= 1.0 - 1e-15)] = 1.0
        arr[undefined & (surv <= 1e-15)] = 0.0
    events = np.array([np.sum(e & (t == x)) for x in times], dtype=int)
    censored = np.array([np.sum(~e & (t == x)) for x in times], dtype=int)
    at_risk = np.array([np.sum(t >= x) for x in times], dtype=int)
    method = KM_METHOD if confidence == 0.95 else KM_METHOD.replace("95%", f"{confidence:.0%}")
    return KaplanMeier(times, surv, low, high, at_risk, events, censored, int(t.size),
                       confidence, method)


def landmark_estimates(km: KaplanMeier, landmarks: Sequence[float]) -> dict[str, dict]:
    """S(t) with its limits and the number at risk at each landmark time.

    Parameters
    ----------
    km : KaplanMeier
    landmarks : sequence of float
        Times (days), e.g. (365, 730) for 1 and 2 years.

    Returns
    -------
    dict
        ``str(int(day))`` (or ``str(day)`` for fractional days) -> ``{"estimate",
        "ci_low", "ci_high", "at_risk"}``. Beyond the last follow-up time the estimate
        is not defined: ``None`` values with ``"note"``.
    """
    out: dict[str, dict] = {}
    for day in landmarks:
        day = float(day)
        key = str(int(day)) if day.is_integer() else str(day)
        est, lo, hi = (float(v[0]) for v in km.evaluate(day))
        entry = {
            "estimate": None if np.isnan(est) else est,
            "ci_low": None if np.isnan(lo) else lo,
            "ci_high": None if np.isnan(hi) else hi,
            "at_risk": int(km.number_at_risk(day)[0]),
        }
        if np.isnan(est):
            entry["note"] = f"beyond the last follow-up time ({km.max_time:g} days)"
        out[key] = entry
    return out


def follow_up(time: ArrayLike, event: ArrayLike) -> dict:
    """Median follow-up, simple and by reverse Kaplan-Meier.

    Parameters
    ----------
    time : array_like
        Follow-up time (days to death or last contact).
    event : array_like of bool
        Death flag.

    Returns
    -------
    dict
        ``median``, ``min``, ``max`` of all patients' times (deaths included: the way the
        study reports "540 days (range 70-1290)"), ``reverse_km_median`` (median of the
        Kaplan-Meier curve with censoring as the event, deaths censored; None if not
        reached) and ``method``.
    """
    t, e = _check_time_event(time, event, "follow-up")
    rev = kaplan_meier(t, ~e)
    return {
        "median": float(np.median(t)),
        "min": float(np.min(t)),
        "max": float(np.max(t)),
        "reverse_km_median": rev.median,
        "method": FOLLOW_UP_METHOD,
    }


def logrank_test(time: ArrayLike, event: ArrayLike, group: ArrayLike) -> dict:
    """Two-group log-rank test.

    Parameters
    ----------
    time, event : array_like
        Survival times (days) and event flags.
    group : array_like
        Group label per patient; exactly two distinct labels.

    Returns
    -------
    dict
        ``groups`` (labels), ``n`` and ``events`` per group, ``chi2`` (= scipy's statistic
        squared, 1 df), ``p`` (two-sided) and ``method``.
    """
    from scipy.stats import CensoredData, logrank

    t, e = _check_time_event(time, event, "log-rank")
    g = pd.Series(np.asarray(group, dtype=object)).astype("string")
    if g.isna().any():
        raise CartKineticsError("log-rank: group labels are missing for some patients")
    labels = sorted(g.unique().tolist())
    if len(labels) != 2:
        raise CartKineticsError(
            f"log-rank needs exactly two groups; got {len(labels)}: {', '.join(labels)}"
        )
    masks = [(g == lab).to_numpy() for lab in labels]
    x = CensoredData.right_censored(t[masks[0]], ~e[masks[0]])
    y = CensoredData.right_censored(t[masks[1]], ~e[masks[1]])
    res = logrank(x, y)
    return {
        "groups": labels,
        "n": [int(m.sum()) for m in masks],
        "events": [int(e[m].sum()) for m in masks],
        "chi2": float(res.statistic) ** 2,
        "p": float(res.pvalue),
        "method": LOGRANK_METHOD,
    }


@dataclass(frozen=True)
class SurvivalEndpoint:
    """One survival endpoint (OS or EFS) as reported.

    Attributes
    ----------
    name : str
        ``"os"`` or ``"efs"``.
    km : KaplanMeier
    landmarks : dict
        See :func:`landmark_estimates`.
    """

    name: str
    km: KaplanMeier
    landmarks: dict

    def to_dict(self) -> dict:
        """The --json form: ``events, median, median_ci, landmarks, method``."""
        return {
            "events": self.km.n_events,
            "median": self.km.median,
            "median_ci": list(self.km.median_ci),
            "landmarks": {k: {kk: v[kk] for kk in ("estimate", "ci_low", "ci_high", "at_risk")}
                          for k, v in self.landmarks.items()},
            "method": f"{self.km.method}; {MEDIAN_METHOD}",
        }


def survival_endpoint(
    name: str, time: ArrayLike, event: ArrayLike, landmarks: Sequence[float] = (365.0, 730.0)
) -> SurvivalEndpoint:
    """Kaplan-Meier curve, median and landmark estimates for one endpoint."""
    km = kaplan_meier(time, event)
    return SurvivalEndpoint(name, km, landmark_estimates(km, landmarks))
