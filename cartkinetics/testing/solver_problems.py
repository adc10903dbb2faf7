"""Solver test problems: numba model functions with known answers (closed forms, stiff
reference problems), shared by the solver tests and benchmarks.

Importing this module compiles (or loads from numba's cache) the problems' functions.
"""

# ruff: noqa: E501
import math

import numpy as np
from numba import njit

from cartkinetics.solvers import OdeSystem


# --- logistic growth: y' = r y (1 - y / K), closed form -------------------------------------
@njit(cache=True)
def logistic_rhs(t, y, p, piece, dydt):
    dydt[0] = p[0] * y[0] * (1.0 - y[0] / p[1])


@njit(cache=True)
def logistic_jac(t, y, p, piece, J):
    J[0, 0] = p[0] * (1.0 - 2.0 * y[0] / p[1])


@njit(cache=True)
def logistic_dfdp(t, y, p, piece, Jp):
    Jp[0, 0] = y[0] * (1.0 - y[0] / p[1])
    Jp[0, 1] = p[0] * y[0] * y[0] / (p[1] * p[1])


def logistic_exact(t, y0, r, K):
    """Closed-form logistic solution y(t) from y0 with rate r and capacity K."""
    return K / (1.0 + (K / y0 - 1.0) * np.exp(-r * t))


LOGISTIC = OdeSystem(logistic_rhs, logistic_jac, logistic_dfdp, 1, 2, name="logistic", autonomous=True)


# --- harmonic oscillator with a time-dependent forcing (non-autonomous) -----------------------
@njit(cache=True)
def forced_rhs(t, y, p, piece, dydt):
    dydt[0] = y[1]
    dydt[1] = -p[0] * p[0] * y[0] + math.cos(t)


@njit(cache=True)
def forced_jac(t, y, p, piece, J):
    J[0, 0] = 0.0
    J[0, 1] = 1.0
    J[1, 0] = -p[0] * p[0]
    J[1, 1] = 0.0


def forced_exact(t, w):
    """y(0) = (1, 0): y = (1 - 1/(w^2-1)) cos(w t) + cos(t)/(w^2-1)."""
    a = 1.0 / (w * w - 1.0)
    y0 = (1.0 - a) * np.cos(w * t) + a * np.cos(t)
    y1 = -(1.0 - a) * w * np.sin(w * t) - a * np.sin(t)
    return np.stack([y0, y1], axis=-1)


FORCED = OdeSystem(forced_rhs, forced_jac, None, 2, 1, name="forced")


# --- Robertson chemical kinetics (stiff) ------------------------------------------------------
@njit(cache=True)
def robertson_rhs(t, y, p, piece, dydt):
    dydt[0] = -p[0] * y[0] + p[1] * y[1] * y[2]
    dydt[1] = p[0] * y[0] - p[1] * y[1] * y[2] - p[2] * y[1] * y[1]
    dydt[2] = p[2] * y[1] * y[1]


@njit(cache=True)
def robertson_jac(t, y, p, piece, J):
    J[0, 0] = -p[0]
    J[0, 1] = p[1] * y[2]
    J[0, 2] = p[1] * y[1]
    J[1, 0] = p[0]
    J[1, 1] = -p[1] * y[2] - 2.0 * p[2] * y[1]
    J[1, 2] = -p[1] * y[1]
    J[2, 0] = 0.0
    J[2, 1] = 2.0 * p[2] * y[1]
    J[2, 2] = 0.0


ROBERTSON = OdeSystem(robertson_rhs, robertson_jac, None, 3, 3, name="robertson", autonomous=True)
ROBERTSON_P = np.array([0.04, 1e4, 3e7])


# --- a stiff CAR-T-like model: effector E, memory M, exhausted X, tumour T --------------------
# rates span 1e-4 (memory death) to 1e2 /day (fast exhaustion <-> recovery exchange E <-> X)
@njit(cache=True)
def cart_rhs(t, y, p, piece, dydt):
    E, M, X, T = y[0], y[1], y[2], y[3]
    rho, k1, k2, kmem, kback, dE, dM, dX, kill, gT, K = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]
    stim = T / (T + K)
    dydt[0] = rho * stim * E - k1 * E + k2 * X - kmem * E - dE * E + kback * stim * M
    dydt[1] = kmem * E - kback * stim * M - dM * M
    dydt[2] = k1 * E - k2 * X - dX * X
    dydt[3] = gT * T - kill * E * T / (T + K + E)


@njit(cache=True)
def cart_jac(t, y, p, piece, J):
    E, M, T = y[0], y[1], y[3]
    rho, k1, k2, kmem, kback, dE, dM, dX, kill, gT, K = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]
    stim = T / (T + K)
    dstim = K / ((T + K) ** 2)
    J[0, 0] = rho * stim - k1 - kmem - dE
    J[0, 1] = kback * stim
    J[0, 2] = k2
    J[0, 3] = rho * dstim * E + kback * dstim * M
    J[1, 0] = kmem
    J[1, 1] = -kback * stim - dM
    J[1, 2] = 0.0
    J[1, 3] = -kback * dstim * M
    J[2, 0] = k1
    J[2, 1] = 0.0
    J[2, 2] = -k2 - dX
    J[2, 3] = 0.0
    den = T + K + E
    J[3, 0] = -kill * T * (T + K) / (den * den)
    J[3, 1] = 0.0
    J[3, 2] = 0.0
    J[3, 3] = gT - kill * E * (K + E) / (den * den)


CART = OdeSystem(cart_rhs, cart_jac, None, 4, 11, name="cart_stiff", autonomous=True)
#                  rho  k1     k2    kmem  kback dE   dM    dX   kill gT    K
CART_P = np.array([2.5, 100.0, 50.0, 0.05, 0.5, 0.1, 1e-4, 0.3, 3.0, 0.05, 1e7])
CART_Y0 = np.array([1e6, 0.0, 0.0, 1e9])
# the same model without the fast exchange (not stiff)
CART_P_NONSTIFF = CART_P.copy()
CART_P_NONSTIFF[1] = 0.2
CART_P_NONSTIFF[2] = 0.1


# --- two-phase kinetics with a parameter-dependent switch (Stein-like) -----------------------
# p = (rho, alpha, beta, gamma, tmax); piece 0: expansion, piece 1: decline + memory
@njit(cache=True)
def twophase_rhs(t, y, p, piece, dydt):
    if piece == 0:
        dydt[0] = p[0] * y[0] * (1.0 - y[0] / 1e8)
        dydt[1] = 0.0
    else:
        dydt[0] = -(p[1] + p[2]) * y[0]
        dydt[1] = p[2] * y[0] - p[3] * y[1] * (1.0 + y[1] / 1e7)


@njit(cache=True)
def twophase_jac(t, y, p, piece, J):
    J[:, :] = 0.0
    if piece == 0:
        J[0, 0] = p[0] * (1.0 - 2.0 * y[0] / 1e8)
    else:
        J[0, 0] = -(p[1] + p[2])
        J[1, 0] = p[2]
        J[1, 1] = -p[3] * (1.0 + 2.0 * y[1] / 1e7)


@njit(cache=True)
def twophase_dfdp(t, y, p, piece, Jp):
    Jp[:, :] = 0.0
    if piece == 0:
        Jp[0, 0] = y[0] * (1.0 - y[0] / 1e8)
    else:
        Jp[0, 1] = -y[0]
        Jp[0, 2] = -y[0]
        Jp[1, 2] = y[0]
        Jp[1, 3] = -y[1] * (1.0 + y[1] / 1e7)


TWOPHASE = OdeSystem(twophase_rhs, twophase_jac, twophase_dfdp, 2, 5, name="twophase", autonomous=True)
TWOPHASE_P = np.array([0.9, 0.25, 0.05, 0.02, 9.0])


def twophase_batch(m: int = 6, seed: int = 3):
    """m TWOPHASE parameter sets (CV about 10%) with the switch at each set's p[4]: returns
    (P, breakpoints (m, 1), dtb_dp (m, 1, 5) = d breakpoint / dp)."""
    rng = np.random.default_rng(seed)
    P = TWOPHASE_P * np.exp(0.1 * rng.standard_normal((m, 5)))
    dtb = np.zeros((m, 1, 5))
    dtb[:, 0, 4] = 1.0
    return P, P[:, 4:5], dtb


# --- one-compartment decay with piece-dependent rate (doses as jumps) -------------------------
@njit(cache=True)
def decay_rhs(t, y, p, piece, dydt):
    dydt[0] = -p[min(piece, p.shape[0] - 1)] * y[0]


@njit(cache=True)
def decay_jac(t, y, p, piece, J):
    J[0, 0] = -p[min(piece, p.shape[0] - 1)]


DECAY = OdeSystem(decay_rhs, decay_jac, None, 1, 3, name="decay3", autonomous=True)


# --- failure makers --------------------------------------------------------------------------
@njit(cache=True)
def nan_rhs(t, y, p, piece, dydt):
    # sqrt of a negative number after t = 1 gives NaN
    dydt[0] = -y[0] + np.sqrt(1.0 - t) if t <= 1.0 else np.nan


@njit(cache=True)
def square_rhs(t, y, p, piece, dydt):
    dydt[0] = p[0] * y[0] * y[0]


NAN_SYS = OdeSystem(nan_rhs, None, None, 1, 1, name="nan_after_1")
SQUARE = OdeSystem(square_rhs, None, None, 1, 1, name="square", autonomous=True)
