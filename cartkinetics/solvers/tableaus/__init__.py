"""Butcher / Rosenbrock tableaus: each solver *is* its tableau (one small file per method).

The numba stepping code in :mod:`cartkinetics.solvers._kernels` reads the coefficients of any
tableau of the two families below, so adding a method means adding a file here. (The explicit
stepper is unrolled for 7-stage first-same-as-last pairs such as Tsit5 and DOPRI5, measured 35%
faster than loops over a run-time stage count; the Rosenbrock stepper takes any stage count.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExplicitTableau:
    """Explicit embedded Runge-Kutta pair with first-same-as-last stage and dense output.

    Attributes
    ----------
    name : str
    a : (s, s) array, strictly lower triangular; row s-1 equals ``b`` (FSAL).
    b : (s,) weights of the propagated solution.
    e : (s,) error weights ``b - b_hat`` (error estimate = h * sum_i e_i k_i).
    c : (s,) stage times as fractions of the step.
    dense : (s, d) polynomial dense output, ``y(t + theta h) = y + h sum_i b_i(theta) k_i`` with
        ``b_i(theta) = sum_j dense[i, j] theta**(j + 1)``.
    order : int, order of the propagated solution.
    error_order : int, exponent order of the error estimate (``min(p, p_hat) + 1``).
    stiff_threshold : float, ``h * rho`` above which a step is counted as stiff (Hairer's test
        on the two last stages, both at ``c = 1``), a little below the real stability boundary.
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    e: np.ndarray
    c: np.ndarray
    dense: np.ndarray
    order: int
    error_order: int
    stiff_threshold: float


@dataclass(frozen=True)
class RosenbrockTableau:
    """Rosenbrock (Rodas-type) method in the transformed form of Hairer & Wanner (IV.7).

    Stage ``i`` solves ``(I/(h gamma) - J) k_i = f(t + c_i h, y + sum_j a_ij k_j)
    + sum_j (C_ij / h) k_j + h d_i df/dt``; ``y_new = y + sum_i b_i k_i``, error
    ``sum_i e_i k_i``; dense output ``y(theta) = (1 - theta) y + theta (y_new + (1 - theta)
    (K_1 + theta (K_2 + theta K_3 ...)))`` with ``K_j = sum_i H[j, i] k_i``.
    """

    name: str
    a: np.ndarray
    C: np.ndarray
    gamma: float
    c: np.ndarray
    d: np.ndarray
    b: np.ndarray
    e: np.ndarray
    H: np.ndarray
    order: int
    error_order: int


def stiffly_accurate_weights(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights of a stiffly accurate Rodas method: b = last row of ``a`` plus the last stage,
    error = last stage (the embedded solution is the previous stage)."""
    s = a.shape[0]
    b = np.zeros(s)
    b[: s - 1] = a[s - 1, : s - 1]
    b[s - 1] = 1.0
    e = np.zeros(s)
    e[s - 1] = 1.0
    return b, e
