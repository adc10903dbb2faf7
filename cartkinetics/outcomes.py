"""Exposure outcomes of one concentration-time curve: the same code for every path.

Observed series (NCA), fitted model curves and simulated virtual patients all reduce
to the same quantities here, so that a Cmax or an AUC0-28 means the same thing
wherever it appears:

- ``cmax``  expansion peak level (assay units: copies/ug genomic DNA or cells/uL); see
  "Expansion peak" below
- ``tmax``  time of the expansion peak (days since infusion)
- ``auc_0_28``  area under the curve from the first time to day 28 (units x day)
- ``auc_0_last``  area to the last time point given
- ``c_day28``, ``c_day90``, ``c_day180``, ``c_day365``  level at those days
- ``persistence``  last time the curve is at or above the LLOQ (days); equals the last
  time point when the curve never falls below the LLOQ (``persistence_censored`` = 1)

Areas use the linear-up / log-down trapezoidal rule (linear where the level rises or
either end is zero, logarithmic where it falls), the convention of NCA software
(Phoenix "linear up log down"); on a dense model curve both rules converge to the
integral. Levels between grid points are interpolated the same way.

Expansion peak (Cmax, Tmax)
---------------------------
The one definition used for observed series (NCA), fitted and simulated curves
(``EXPANSION_PEAK_RULE``, :func:`expansion_start`):

* a curve that starts at day 0 and *falls* from there (the infused cells seen in blood,
  then distributing out of it: Singh 2021 puts the dose into the observed blood
  compartment) has its expansion peak at the highest level *after the first local
  minimum*; the infusion itself is never Cmax;
* any other curve (it rises from its first point, or its first point is after day 0) has
  its peak at its highest level, as in any NCA (the first time when tied);
* a curve that falls from day 0 and never rises again has no expansion peak: Cmax and
  Tmax are NaN (and NCA says so in its ``note``).

Example: levels 180,000 (day 0), 5 (day 0.25), 7, 9, ..., 35,770 (day 14.25), falling
after: Cmax = 35,770 at day 14.25, not 180,000 at day 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

OUTCOME_KEYS: tuple[str, ...] = (
    "cmax",
    "tmax",
    "auc_0_28",
    "auc_0_last",
    "c_day28",
    "c_day90",
    "c_day180",
    "c_day365",
    "persistence",
    "persistence_censored",
)
LEVEL_DAYS = np.array([28.0, 90.0, 180.0, 365.0])
N_OUTCOMES = len(OUTCOME_KEYS)
_N_OUT = N_OUTCOMES

#: the definition of Cmax/Tmax, stated in NCA output and docs (see the module docstring)
EXPANSION_PEAK_RULE = (
    "Cmax/Tmax = expansion peak: the highest level, or, when the curve starts at day 0 and "
    "falls (the infused cells), the highest level after its first local minimum"
)


@njit(cache=True)
def _expansion_start(t: np.ndarray, c: np.ndarray) -> int:
    """First index of the expansion phase (where the search for the peak starts).

    0 unless the curve starts at day 0 and falls; then the index of the first local
    minimum. -1 when the curve falls from day 0 and never rises again (no expansion peak).
    """
    n = t.shape[0]
    if n < 2 or t[0] != 0.0 or not c[1] < c[0]:
        return 0
    i = 1
    while i < n - 1 and c[i + 1] <= c[i]:
        i += 1
    if i == n - 1:
        return -1
    return i


@njit(cache=True)
def _interp_linlog(t0: float, c0: float, t1: float, c1: float, t: float) -> float:
    """Level at t in [t0, t1]: log-linear on a decline between positive levels, else linear."""
    if t1 == t0:
        return c1
    f = (t - t0) / (t1 - t0)
    if c1 < c0 and c1 > 0.0 and c0 > 0.0:
        return c0 * math.exp(f * math.log(c1 / c0))
    return c0 + f * (c1 - c0)


@njit(cache=True)
def _segment_area(t0: float, c0: float, t1: float, c1: float) -> float:
    dt = t1 - t0
    if dt <= 0.0:
        return 0.0
    if c1 < c0 and c1 > 0.0 and c0 > 0.0:
        return (c0 - c1) * dt / math.log(c0 / c1)
    return 0.5 * (c0 + c1) * dt


@njit(cache=True)
def _auc_linlog(t: np.ndarray, c: np.ndarray, t_end: float) -> float:
    """Linear-up/log-down area from t[0] to min(t_end, t[-1])."""
    area = 0.0
    for i in range(t.shape[0] - 1):
        if t[i] >= t_end:
            break
        if t[i + 1] <= t_end:
            area += _segment_area(t[i], c[i], t[i + 1], c[i + 1])
        else:
            c_end = _interp_linlog(t[i], c[i], t[i + 1], c[i + 1], t_end)
            if c[i + 1] > 0.0:
                area += _segment_area(t[i], c[i], t_end, c_end)
            else:
                # the segment falls to 0: the curve is linear there, so is its part
                area += 0.5 * (c[i] + c_end) * (t_end - t[i])
            break
    return area


@njit(cache=True)
def _level_at(t: np.ndarray, c: np.ndarray, day: float) -> float:
    n = t.shape[0]
    if n == 0 or day < t[0] or day > t[n - 1]:
        return np.nan
    for i in range(n - 1):
        if t[i + 1] >= day:
            return _interp_linlog(t[i], c[i], t[i + 1], c[i + 1], day)
    return c[n - 1]


@njit(cache=True)
def _curvature(t: np.ndarray, c: np.ndarray, i: int) -> float:
    """Second divided difference of ln c at points i-1, i, i+1 (c > 0 assumed)."""
    y0, y1, y2 = math.log(c[i - 1]), math.log(c[i]), math.log(c[i + 1])
    d01 = (y1 - y0) / (t[i] - t[i - 1])
    d12 = (y2 - y1) / (t[i + 1] - t[i])
    return (d12 - d01) / (t[i + 1] - t[i - 1])


@njit(cache=True)
def _smooth_peak(t: np.ndarray, c: np.ndarray, i: int) -> bool:
    """True when the peak looks smooth, so that a parabola may refine it.

    A kink (Stein's switch at Tmax) has near-zero curvature of ln c on each side and a
    large one at the peak; a smooth maximum has similar curvature on all three.
    """
    for j in range(i - 2, i + 3):
        if not c[j] > 0.0:
            return False
    a = _curvature(t, c, i)
    al = _curvature(t, c, i - 1)
    ar = _curvature(t, c, i + 1)
    if not (a < 0.0 and al < 0.0 and ar < 0.0):
        return False
    # curvatures are negative: compare magnitudes
    return 0.5 * a >= al >= 2.0 * a and 0.5 * a >= ar >= 2.0 * a


@njit(cache=True)
def _outcomes_one(
    t: np.ndarray, c: np.ndarray, lloq: float, refine_peak: bool, out: np.ndarray
) -> None:
    n = t.shape[0]
    for k in range(out.shape[0]):
        out[k] = np.nan
    if n == 0:
        return
    for i in range(n):
        if not math.isfinite(c[i]):
            return  # a failed solve has no outcomes; the caller reports its status
    start = _expansion_start(t, c)
    imax = start
    if start >= 0:
        for i in range(start + 1, n):
            if c[i] > c[imax]:
                imax = i
    if imax < 0:
        cmax = np.nan  # falls from the infusion and never rises: no expansion peak
        tmax = np.nan
    else:
        cmax = c[imax]
        tmax = t[imax]
    if refine_peak and max(start, 1) < imax < n - 2 and _smooth_peak(t, c, imax):
        # parabola through ln c at three grid points: sub-grid peak of a smooth curve
        x0, x1, x2 = t[imax - 1], t[imax], t[imax + 1]
        y0, y1 = math.log(c[imax - 1]), math.log(c[imax])
        d01 = (y1 - y0) / (x1 - x0)
        a = _curvature(t, c, imax)
        tv = 0.5 * (x0 + x1) - d01 / (2.0 * a)
        if x0 < tv < x2:
            yv = y1 + (tv - x1) * (d01 + a * (tv - x0))
            tmax = tv
            cmax = math.exp(yv)
    out[0] = cmax
    out[1] = tmax
    out[2] = _auc_linlog(t, c, 28.0) if t[n - 1] >= 28.0 else np.nan
    out[3] = _auc_linlog(t, c, t[n - 1])
    for k in range(LEVEL_DAYS.shape[0]):
        out[4 + k] = _level_at(t, c, LEVEL_DAYS[k])
    if math.isfinite(lloq):
        last = -1
        for i in range(n):
            if c[i] >= lloq:
                last = i
        if last == -1:
            out[8] = 0.0
            out[9] = 0.0
        elif last == n - 1:
            out[8] = t[n - 1]
            out[9] = 1.0
        else:
            c0, c1 = c[last], c[last + 1]
            t0, t1 = t[last], t[last + 1]
            if c1 > 0.0:
                f = math.log(lloq / c0) / math.log(c1 / c0)
            else:
                f = (c0 - lloq) / (c0 - c1)
            out[8] = t0 + f * (t1 - t0)
            out[9] = 0.0


# public name of the kernel for numba callers that build their own grids per patient:
# outcomes_into(t, c, lloq, refine_peak, out) fills out[:N_OUTCOMES] in OUTCOME_KEYS order
outcomes_into = _outcomes_one


@njit(cache=True, parallel=True)
def _batch_outcomes(
    t: np.ndarray, C: np.ndarray, lloq: np.ndarray, refine_peak: bool
) -> np.ndarray:
    m = C.shape[0]
    out = np.empty((m, _N_OUT))
    for j in prange(m):
        _outcomes_one(t, C[j], lloq[j], refine_peak, out[j])
    return out


def _as_curve(t: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.ascontiguousarray(t, dtype=np.float64)
    c = np.ascontiguousarray(c, dtype=np.float64)
    if t.ndim != 1 or t.shape[0] != c.shape[-1]:
        raise ValueError(f"times {t.shape} and levels {c.shape} do not match")
    if t.shape[0] > 1 and np.any(np.diff(t) < 0):
        raise ValueError("times must be sorted in increasing order")
    return t, c


def expansion_start(t: np.ndarray, c: np.ndarray) -> int:
    """Index where the search for the expansion peak starts (``EXPANSION_PEAK_RULE``).

    Parameters
    ----------
    t : array, days since infusion (sorted)
    c : array, levels (any unit; values below the LLOQ may be given as 0)

    Returns
    -------
    int
        0 for a curve that rises from its first point or starts after day 0; the index of
        the first local minimum for a curve that starts at day 0 and falls; -1 when such
        a curve never rises again (no expansion peak).
    """
    t, c = _as_curve(t, c)
    return int(_expansion_start(t, c))


def expansion_peak(t: np.ndarray, c: np.ndarray) -> int:
    """Index of the expansion peak (first time of the highest level after
    :func:`expansion_start`), or -1 when there is none. Observed peaks are not refined."""
    t, c = _as_curve(t, c)
    start = int(_expansion_start(t, c))
    if start < 0 or c.size == 0:
        return -1
    return start + int(np.argmax(c[start:]))


def auc_linlog(t: np.ndarray, c: np.ndarray, t_end: float | None = None) -> float:
    """Area under the curve by linear-up / log-down trapezoids.

    Parameters
    ----------
    t : array, days (sorted)
    c : array, levels (copies/ug or cells/uL), same length
    t_end : float, optional
        Upper limit in days (default: the last time). Inside an interval the level at
        ``t_end`` is interpolated (log-linear on a decline). Past the last time the area
        stops at the last time: extrapolation is the caller's decision.

    Returns
    -------
    float
        Area in level x day (e.g. copies*day/ug).
    """
    t, c = _as_curve(t, c)
    if t.shape[0] < 2:
        return 0.0
    return float(_auc_linlog(t, c, float(t[-1] if t_end is None else t_end)))


def curve_outcomes(
    t: np.ndarray, c: np.ndarray, lloq: float = float("nan"), refine_peak: bool = True
) -> dict[str, float]:
    """Outcomes of one curve (see the module docstring for the keys and units).

    Parameters
    ----------
    t : array, days (sorted)
    c : array, levels in assay units
    lloq : float
        Limit of quantification in the same units, for ``persistence`` (NaN: not computed).
    refine_peak : bool
        Refine Cmax/Tmax between grid points by a parabola on ln c. Use True for dense
        model curves, False for observed data (NCA reports the observed peak).
    """
    t, c = _as_curve(t, c)
    out = np.empty(_N_OUT)
    _outcomes_one(t, c, float(lloq), bool(refine_peak), out)
    return dict(zip(OUTCOME_KEYS, out.tolist(), strict=True))


def batch_curve_outcomes(
    t: np.ndarray, C: np.ndarray, lloq: float | np.ndarray = float("nan"), refine_peak: bool = True
) -> dict[str, np.ndarray]:
    """Outcomes of many curves on one time grid, in parallel numba threads.

    Parameters
    ----------
    t : array (nt,), days
    C : array (m, nt), levels; a row containing NaN (failed solve) gives NaN outcomes
    lloq : float or array (m,)

    Returns
    -------
    dict of arrays (m,), keys ``OUTCOME_KEYS``.
    """
    t, C = _as_curve(t, C)
    C = np.atleast_2d(C)
    lloq_arr = np.broadcast_to(np.asarray(lloq, dtype=np.float64), (C.shape[0],)).copy()
    out = _batch_outcomes(t, C, lloq_arr, bool(refine_peak))
    return {k: out[:, i] for i, k in enumerate(OUTCOME_KEYS)}
