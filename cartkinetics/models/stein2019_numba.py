"""Fused numba kernel for the closed-form Stein 2019 model: curves and outcomes per patient.

Why a kernel of its own: the model's vectorised ``solve_batch`` evaluates on one shared grid
with NumPy temporaries (about 13 s per 1e6 patients x 280 times), and on a shared grid the
peak -- a kink at each patient's own Tmax -- falls between grid points (Cmax biased low by
~1 % at the median, up to 30 % for fast expanders). Here every patient gets the shared grid
plus the times of his own kinks (each infusion's start and Tmax, comedication start), the
curve is evaluated there in one pass, and the outcomes come from the same outcome code as
everywhere else (:func:`cartkinetics.outcomes.outcomes_into`). Between kinks the curve is a
positive sum of exponentials, hence convex, so the maximum is at a kink: Cmax/Tmax are exact.

Curve of one patient = sum over components k (split doses, a second infusion) of
``amp_k * stein(t - start_k; params_k, comedication days_k)`` for ``t >= start_k``, the
formula of :mod:`cartkinetics.models.stein2019` (comedication multiplies rho from its day).
The tests check it against ``models.get("stein2019").solve_batch`` and an independent
closed form.

Outcomes use :func:`cartkinetics.outcomes.outcomes_into` (the kernel behind
``batch_curve_outcomes``) because every patient has his own grid here.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cartkinetics.outcomes import N_OUTCOMES as _N_OUT
from cartkinetics.outcomes import outcomes_into
from cartkinetics.solvers.status import INVALID_INPUT, SUCCESS


@njit(cache=True)
def _growth(tau: float, t_toci: float, t_ster: float, a: float, b: float) -> float:
    """int_0^tau F(s) ds with F = (1 + a [s >= t_toci]) (1 + b [s >= t_ster])."""
    g = tau
    if tau > t_toci:
        g += a * (tau - t_toci)
    if tau > t_ster:
        g += b * (tau - t_ster)
    both = max(t_toci, t_ster)
    if tau > both:
        g += a * b * (tau - both)
    return g


@njit(cache=True)
def _valid(p: np.ndarray) -> bool:
    for j in range(6):
        if not math.isfinite(p[j]):
            return False
    return p[0] >= 1.0 and p[1] > 0.0 and p[2] > 0.0 and p[3] > 0.0 and p[5] > 0.0 and (
        0.0 <= p[4] <= 1.0
    )


@njit(cache=True)
def _patient_grid(base: np.ndarray, extra: np.ndarray, n_extra: int, out: np.ndarray) -> int:
    """Sorted union of the shared grid and this patient's kink times inside its range,
    written into ``out``; returns its length. ``extra[:n_extra]`` is sorted in place."""
    for i in range(1, n_extra):  # insertion sort: a handful of values
        v = extra[i]
        j = i - 1
        while j >= 0 and extra[j] > v:
            extra[j + 1] = extra[j]
            j -= 1
        extra[j + 1] = v
    nb = base.shape[0]
    i = 0
    j = 0
    k = 0
    t_end = base[nb - 1]
    while i < nb or j < n_extra:
        if j >= n_extra or (i < nb and base[i] <= extra[j]):
            v = base[i]
            i += 1
        else:
            v = extra[j]
            j += 1
            if v < base[0] or v > t_end:
                continue
        if k > 0 and v - out[k - 1] <= 1e-9:
            continue
        out[k] = v
        k += 1
    return k


# per-component constants: start, ln R0, rho, Tmax, t_toci, t_ster, A, B, alpha, beta,
# then 6 work slots of _curve (exp(-alpha d), exp(-beta d), last d, last step, step factors)
_NC = 16


@njit(cache=True)
def _constants(
    start: float, p: np.ndarray, t_toci: float, t_ster: float, f_toci: float, f_ster: float,
    amp: float, c: np.ndarray,
) -> None:
    """Precompute what does not depend on time (one log per component, not per time)."""
    foldx, tmax, cmax, alpha, fb, beta = p[0], p[1], p[2], p[3], p[4], p[5]
    lf = math.log(foldx)
    log_r0 = math.log(cmax) - lf + math.log(amp)
    rho = lf / tmax
    peak = math.exp(log_r0 + rho * _growth(tmax, t_toci, t_ster, f_toci - 1.0, f_ster - 1.0))
    c[0] = start
    c[1] = log_r0
    c[2] = rho
    c[3] = tmax
    c[4] = t_toci
    c[5] = t_ster
    c[6] = peak * (1.0 - fb)
    c[7] = peak * fb
    c[8] = alpha
    c[9] = beta


@njit(cache=True)
def _curve(
    t: np.ndarray, cst: np.ndarray, k_from: int, k_to: int, f_toci: float, f_ster: float,
    out: np.ndarray,
) -> None:
    """Sum of components k_from..k_to-1 at the sorted times t (cst: (K, _NC) constants).

    In the decline phase exp(-alpha d) is updated by the factor of the last step while the
    grid step repeats (most of the grid), instead of two exp() per point: ~250 products in
    a row lose ~1e-14 relative, far below any other error here.
    """
    a = f_toci - 1.0
    b = f_ster - 1.0
    for k in range(k_from, k_to):
        cst[k, 12] = -1.0  # no previous decline point yet
        cst[k, 13] = -1.0
    for i in range(t.shape[0]):
        s = 0.0
        for k in range(k_from, k_to):
            c = cst[k]
            tau = t[i] - c[0]
            if tau < 0.0:
                continue
            if tau < c[3]:
                s += math.exp(c[1] + c[2] * _growth(tau, c[4], c[5], a, b))
                continue
            d = tau - c[3]
            if c[12] >= 0.0:
                h = d - c[12]
                if abs(h - c[13]) > 1e-12 * (1.0 + h):
                    c[14] = math.exp(-c[8] * h)
                    c[15] = math.exp(-c[9] * h)
                    c[13] = h
                c[10] *= c[14]
                c[11] *= c[15]
            else:
                c[10] = math.exp(-c[8] * d)
                c[11] = math.exp(-c[9] * d)
            c[12] = d
            s += c[6] * c[10] + c[7] * c[11]
        out[i] = s


@njit(cache=True)
def _patient_constants(
    starts: np.ndarray, pars: np.ndarray, amp: np.ndarray, toci: np.ndarray, ster: np.ndarray,
    f_toci: float, f_ster: float, cst: np.ndarray,
) -> None:
    for k in range(starts.shape[0]):
        _constants(starts[k], pars[k], toci[k], ster[k], f_toci, f_ster, amp[k], cst[k])


_BLOCK = 64  # patients per parallel task: work buffers are allocated once per block


@njit(cache=True, parallel=True)
def stein_outcomes(
    base: np.ndarray,
    starts: np.ndarray,
    pars: np.ndarray,
    amp: np.ndarray,
    toci: np.ndarray,
    ster: np.ndarray,
    n_first: int,
    second_day: float,
    f_toci: float,
    f_ster: float,
    lloq: float,
    out: np.ndarray,
    status: np.ndarray,
) -> None:
    """Outcomes of m patients.

    Parameters
    ----------
    base : (nt,) shared grid, days since the first infusion
    starts, amp, toci, ster : (m, K) component start day, amplitude, comedication days
        (since the component's start; inf = none)
    pars : (m, K, 6) Stein parameters per component
    n_first : components 0..n_first-1 belong to the first infusion (split doses)
    second_day : day of the second infusion (NaN: none); components n_first.. start there
    out : (m, 2 * n_out) first-infusion outcomes, then second-infusion outcomes (days since
        the second infusion; NaN when there is none)
    status : (m,) 0 success, 4 invalid parameters
    """
    m, K = starts.shape
    n_out = _N_OUT
    has_second = math.isfinite(second_day)
    n_blocks = (m + _BLOCK - 1) // _BLOCK
    for blk in prange(n_blocks):
        extra = np.empty(4 * K + 1)
        tbuf = np.empty(base.shape[0] + 4 * K + 1)
        cbuf = np.empty(base.shape[0] + 4 * K + 1)
        cst = np.empty((K, _NC))
        for r in range(blk * _BLOCK, min(m, (blk + 1) * _BLOCK)):
            _one_patient(
                base, starts[r], pars[r], amp[r], toci[r], ster[r], n_first, second_day,
                has_second, f_toci, f_ster, lloq, out[r], n_out, extra, tbuf, cbuf, cst,
            )
            status[r] = SUCCESS if math.isfinite(cst[0, 0]) else INVALID_INPUT


@njit(cache=True)
def _one_patient(
    base: np.ndarray, starts: np.ndarray, pars: np.ndarray, amp: np.ndarray,
    toci: np.ndarray, ster: np.ndarray, n_first: int, second_day: float, has_second: bool,
    f_toci: float, f_ster: float, lloq: float, out: np.ndarray, n_out: int,
    extra: np.ndarray, tbuf: np.ndarray, cbuf: np.ndarray, cst: np.ndarray,
) -> None:
    """Outcomes of one patient into ``out``; an invalid parameter set leaves NaN and sets
    ``cst[0, 0]`` to NaN (the caller's status flag)."""
    K = starts.shape[0]
    for q in range(out.shape[0]):
        out[q] = np.nan
    for k in range(K):
        if not _valid(pars[k]):
            cst[0, 0] = np.nan
            return
    ne = 0
    for k in range(K):
        extra[ne] = starts[k]
        extra[ne + 1] = starts[k] + pars[k, 1]
        ne += 2
        if math.isfinite(toci[k]):
            extra[ne] = starts[k] + toci[k]
            ne += 1
        if math.isfinite(ster[k]):
            extra[ne] = starts[k] + ster[k]
            ne += 1
    nt = _patient_grid(base, extra, ne, tbuf)
    _patient_constants(starts, pars, amp, toci, ster, f_toci, f_ster, cst)
    t = tbuf[:nt]
    if not has_second:
        c = cbuf[:nt]
        _curve(t, cst, 0, K, f_toci, f_ster, c)
        outcomes_into(t, c, lloq, False, out[:n_out])
        return
    # first infusion: its own components, up to the second infusion day
    n1 = 0
    while n1 < nt and t[n1] <= second_day:
        n1 += 1
    t1 = t[:n1]
    c1 = cbuf[:n1]
    _curve(t1, cst, 0, n_first, f_toci, f_ster, c1)
    outcomes_into(t1, c1, lloq, False, out[:n_out])
    # second infusion: the whole curve from its day, in days since it (shifted in place)
    i0 = n1 - 1 if n1 > 0 and t[n1 - 1] == second_day else n1
    c2 = cbuf[i0:nt]
    _curve(t[i0:], cst, 0, K, f_toci, f_ster, c2)
    t2 = t[i0:]
    for i in range(t2.shape[0]):
        t2[i] -= second_day
    outcomes_into(t2, c2, lloq, False, out[n_out:])


@njit(cache=True, parallel=True)
def stein_curves(
    t: np.ndarray,
    starts: np.ndarray,
    pars: np.ndarray,
    amp: np.ndarray,
    toci: np.ndarray,
    ster: np.ndarray,
    f_toci: float,
    f_ster: float,
) -> np.ndarray:
    """Full curves (m, nt) on one grid (for prediction bands); NaN rows for invalid sets."""
    m, K = starts.shape
    C = np.empty((m, t.shape[0]))
    for r in prange(m):
        ok = True
        for k in range(K):
            if not _valid(pars[r, k]):
                ok = False
        if ok:
            cst = np.empty((K, _NC))
            _patient_constants(starts[r], pars[r], amp[r], toci[r], ster[r], f_toci, f_ster, cst)
            _curve(t, cst, 0, K, f_toci, f_ster, C[r])
        else:
            for i in range(t.shape[0]):
                C[r, i] = np.nan
    return C
