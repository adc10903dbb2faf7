"""Small numba building blocks of the solver kernel (no model functions here).

Development note: numba's file cache does not track dependencies, and the functions marked
inline="always" are compiled into ``_kernels``; after editing this file, touch ``_kernels.py``
so that its cache is rebuilt.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

_F1 = types.Array(types.float64, 1, "A")
_F2 = types.Array(types.float64, 2, "A")
#: signature of rhs(t, y, p, piece, dydt) as the solver kernel calls it
RHS_SIG = types.void(types.float64, _F1, _F1, types.int64, _F1)
#: signature of jac(t, y, p, piece, J) and dfdp(t, y, p, piece, Jp)
JAC_SIG = types.void(types.float64, _F1, _F1, types.int64, _F2)


@njit(cache=True, inline="always")  # inlined: array-argument calls cost refcounting
def lu_factor(A, piv):  # pragma: no cover - numba
    """In-place LU with partial pivoting of a small dense matrix; returns False if singular.

    The diagonal holds the reciprocals of U's pivots (for :func:`lu_solve`)."""
    n = A.shape[0]
    for k in range(n):
        # pivot row: largest magnitude in column k
        imax = k
        vmax = abs(A[k, k])
        for i in range(k + 1, n):
            v = abs(A[i, k])
            if v > vmax:
                vmax = v
                imax = i
        piv[k] = imax
        if vmax == 0.0 or not math.isfinite(vmax):
            return False
        if imax != k:
            for j in range(n):
                tmp = A[k, j]
                A[k, j] = A[imax, j]
                A[imax, j] = tmp
        inv = 1.0 / A[k, k]
        for i in range(k + 1, n):
            A[i, k] *= inv
            lik = A[i, k]
            if lik != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= lik * A[k, j]
        # the reciprocal pivot on the diagonal: lu_solve multiplies (a Rosenbrock step solves
        # with one factorisation 6-8 times; the divisions sat on the back substitution's
        # dependency chain)
        A[k, k] = inv
    return True


@njit(cache=True, inline="always")  # inlined: array-argument calls cost refcounting
def lu_solve(LU, piv, b, off):  # pragma: no cover - numba
    """Solve in place for the block b[off:off+n] with the factors of lu_factor."""
    n = LU.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            tmp = b[off + k]
            b[off + k] = b[off + p]
            b[off + p] = tmp
    for i in range(n):
        s = b[off + i]
        for j in range(i):
            s -= LU[i, j] * b[off + j]
        b[off + i] = s
    for i in range(n - 1, -1, -1):
        s = b[off + i]
        for j in range(i + 1, n):
            s -= LU[i, j] * b[off + j]
        b[off + i] = s * LU[i, i]  # LU[i, i] = 1 / U[i, i] (lu_factor)


@njit(cache=True, inline="always")  # inlined: array-argument calls cost refcounting
def all_finite(x):  # pragma: no cover - numba
    for i in range(x.shape[0]):
        if not math.isfinite(x[i]):
            return False
    return True


@njit(cache=True, inline="always")  # inlined: array-argument calls cost refcounting
def error_norm(err, y0, y1, rtol, atol):  # pragma: no cover - numba
    """Hairer's RMS norm of err / (atol + rtol max(|y0|, |y1|))."""
    return math.sqrt(error_norm2(err, y0, y1, rtol, atol))


@njit(cache=True, inline="always")  # inlined: array-argument calls cost refcounting
def error_norm2(err, y0, y1, rtol, atol):  # pragma: no cover - numba
    """Square of :func:`error_norm` (the mean of squares; saves a sqrt per step)."""
    n = err.shape[0]
    s = 0.0
    for i in range(n):
        sk = atol[i] + rtol * max(abs(y0[i]), abs(y1[i]))
        q = err[i] / sk
        s += q * q
    return s / n


@njit(cache=True)
def check_inputs(t0, t_eval, y0, p, bps, jumps, rtol, atol, max_steps, first_step):
    """True if the inputs of one solve are usable (finite, sorted, t_eval >= t0)."""
    if not math.isfinite(t0) or not all_finite(y0) or not all_finite(p):
        return False
    if not (rtol > 0.0) or not math.isfinite(rtol) or max_steps <= 0:
        return False
    if not (first_step >= 0.0) or not math.isfinite(first_step):
        return False
    for i in range(atol.shape[0]):
        if not (atol[i] >= 0.0) or not math.isfinite(atol[i]):
            return False
        if atol[i] == 0.0 and rtol == 0.0:
            return False
    nt = t_eval.shape[0]
    for i in range(nt):
        if not math.isfinite(t_eval[i]) or t_eval[i] < t0:
            return False
        if i > 0 and t_eval[i] < t_eval[i - 1]:
            return False
    nb = bps.shape[0]
    for k in range(nb):
        b = bps[k]
        if math.isnan(b) or b < t0 or b == -np.inf:
            return False
        if k > 0 and b < bps[k - 1]:
            return False
        if math.isfinite(b):
            for i in range(jumps.shape[1]):
                if not math.isfinite(jumps[k, i]):
                    return False
    return True


@njit(cache=True)
def missing_jac(t, y, p, piece, J):  # pragma: no cover - numba
    """Placeholder bound when a model has no Jacobian (the kernels then use differences)."""
    for i in range(J.shape[0]):
        for j in range(J.shape[1]):
            J[i, j] = np.nan


@njit(cache=True)
def missing_dfdp(t, y, p, piece, Jp):  # pragma: no cover - numba
    """Placeholder bound when a model has no df/dp (sensitivities are then refused)."""
    for i in range(Jp.shape[0]):
        for j in range(Jp.shape[1]):
            Jp[i, j] = np.nan
