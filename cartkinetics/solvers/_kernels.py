"""Generic numba stepping code: one compiled kernel for every model.

The model functions arrive as numba *first-class functions* (``numba.types.FunctionType``
with the fixed signatures of contracts.md), so the kernel is compiled once, cached on disk, and
shared by all models; a new model only compiles its own three small functions. (Specialising
on dispatcher arguments instead would recompile the whole solver for each model in every
process: numba cannot file-cache such specialisations.)

Compile time (measured with an empty cache, CPU seconds on the shared 2-core machine; see
docs/benchmarks.md for the figures): one implementation, ``_solve``, is compiled for several
signatures (``_ENTRIES``), each holding one method family, so that a first solve compiles one
method: ``solve_erk`` (Tsit5 / DOPRI5 one problem at a time, and the explicit part of auto) or
``solve_ros`` (Rodas, and the rest of an auto solve after a switch), and their sensitivity
forms. A first auto solve of a stiff problem compiles both; a kernel holding both methods,
which every first solve paid before, took 10.9 s. What made the difference: one method per
entry point (the other's tableau is typed None, its code pruned before typing, as the
sensitivity code is with ``sens=None``; -4 s for a first auto solve), no slice assignment in
the kernel (numba compiles its broadcasting error messages, about 3 s), the per-problem solve
written out in the entry point, neither called (every call level re-optimises the whole linked
code below it: 2.8 s) nor inlined by numba (which copies the inlined IR twice: 0.5 s per entry
point), helpers compiled without the CPython wrapper nobody calls (0.4 s).

Speed (profiled with perf on the benchmark's Tsit5 solve): what cost time was not arithmetic
but atomic reference counting (a row view ``K[i]`` made for every model call, slices
``y[:n]`` in the sensitivity evaluation: 25% of a plain and ~60% of a sensitivity solve), short
loops over a run-time stage count, and two ``pow`` a step; hence row views made once per
piece, the unrolled 7-stage explicit step, one ``log`` and one ``exp`` per step in the
controller, and copies of length n for the model in sensitivity mode.

Augmented state layout (sensitivity mode): ``y[:n]`` the states, then ``S[:, j]`` (n values)
for parameter ``sidx[j]`` at ``y[n + j n : n + (j + 1) n]``. ``sidx`` (int64) selects the
parameters whose sensitivities are propagated (e.g. only the free parameters of a fit: Liu
2022 with 4 of 12 free integrates 15 equations instead of 39); the model's dfdp still fills
the full n x npar Jp, and ``dtb`` / the initial sensitivities have one column per selected
parameter.
"""

# ruff: noqa: E501
import math
import threading

import numpy as np
from numba import njit, types
from numba.core import config as _numba_config
from numba.core.compiler_lock import global_compiler_lock

from cartkinetics.solvers._core import (
    JAC_SIG,
    RHS_SIG,
    all_finite,
    check_inputs,
    error_norm2,
    lu_factor,
    lu_solve,
)
from cartkinetics.solvers.status import (
    INVALID_INPUT,
    KIND_AUTO,
    KIND_ROSENBROCK,
    MAX_STEPS,
    NON_FINITE,
    STAT_F_EVALUATIONS,
    STAT_JACOBIANS,
    STAT_LU,
    STAT_REJECTED,
    STAT_STEPS,
    STAT_SWITCHED,
    STEP_TOO_SMALL,
    SUCCESS,
    SWITCH,
    TAKE_STEP,
)

__all__ = ["JAC_SIG", "RHS_SIG", "solve_erk", "solve_ros", "solve_sens_erk", "solve_sens_ros", "solve_serial"]  # noqa: F822 (module __getattr__)

_RHS_T = types.FunctionType(RHS_SIG)
_JAC_T = types.FunctionType(JAC_SIG)

_EPS = 2.220446049250313e-16
_SQRT_EPS = 1.4901161193847656e-08
# error_model="numpy" everywhere: a division by zero gives inf/NaN (then caught as a
# non-finite error norm or state) instead of a ZeroDivisionError check on every division,
# which kept the error norm from vectorising; the results are the same IEEE operations
_LOG_1EM4 = math.log(1e-4)


@njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _jacobian(rhs, jac, dfdp, t, y, p, piece, n, has_jac, J, f0, ytmp, ftmp):
    """df/dy of the model at (t, y[:n]); forward differences if the model has no jac."""
    if has_jac:
        jac(t, y[:n], p, piece, J)
    else:
        for m in range(n):
            for i in range(n):  # element loops: slice assignment compiles slowly
                ytmp[i] = y[i]
            dm = _SQRT_EPS * max(abs(y[m]), 1.0)
            ytmp[m] += dm
            rhs(t, ytmp[:n], p, piece, ftmp[:n])
            for i in range(n):
                J[i, m] = (ftmp[i] - f0[i]) / dm


@njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _eval(rhs, jac, dfdp, t, y, p, piece, n, sidx, sens, has_jac, out, J, Jp, ytmp, ftmp, ys, fs):
    """out = f(t, y) for the plain or the augmented (states + sensitivities) system.

    Sensitivity column j is d/d p[sidx[j]]: the model fills all of Jp, only the selected
    columns are propagated."""
    if sens is not None and sens:
        # the model sees copies of length n (ys, fs): slices y[:n] cost two atomic reference
        # count updates each, measured as most of the time of a sensitivity solve
        for i in range(n):
            ys[i] = y[i]
        rhs(t, ys, p, piece, fs)
        if has_jac:
            jac(t, ys, p, piece, J)
        else:
            _jacobian(rhs, jac, dfdp, t, y, p, piece, n, has_jac, J, fs, ytmp, ftmp)
        dfdp(t, ys, p, piece, Jp)
        for i in range(n):
            out[i] = fs[i]
        for j in range(sidx.shape[0]):
            base = n + j * n
            c = sidx[j]
            for i in range(n):
                s = Jp[i, c]
                for k in range(n):
                    s += J[i, k] * y[base + k]
                out[base + i] = s
        return
    rhs(t, y, p, piece, out)  # no slicing: views cost reference counting on every call


@njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def hinit(rhs, jac, dfdp, t, y, f0, p, piece, n, sidx, sens, has_jac, order, hmax, rtol, atol, ytmp, f1, J, Jp, yt2, ft2, ys, fs):
    """Hairer's automatic initial step (HINIT of DOPRI5), RMS norms; one f evaluation."""
    N = y.shape[0]
    dnf = 0.0
    dny = 0.0
    for i in range(N):
        sk = atol[i] + rtol * abs(y[i])
        dnf += (f0[i] / sk) ** 2
        dny += (y[i] / sk) ** 2
    if dnf <= 1e-10 or dny <= 1e-10:
        h = 1e-6
    else:
        h = 0.01 * math.sqrt(dny / dnf)
    h = min(h, hmax)
    for i in range(N):
        ytmp[i] = y[i] + h * f0[i]
    _eval(rhs, jac, dfdp, t + h, ytmp, p, piece, n, sidx, sens, has_jac, f1, J, Jp, yt2, ft2, ys, fs)
    der2 = 0.0
    for i in range(N):
        sk = atol[i] + rtol * abs(y[i])
        der2 += ((f1[i] - f0[i]) / sk) ** 2
    der2 = math.sqrt(der2 / N) / h
    der12 = max(abs(der2), math.sqrt(dnf / N))
    if not math.isfinite(der12):
        h1 = h * 1e-3
    elif der12 <= 1e-15:
        h1 = max(1e-6, h * 1e-3)
    else:
        h1 = (0.01 / der12) ** (1.0 / order)
    # not below 1e4 ulps of t: a state that is exactly 0 with a large derivative (a
    # sensitivity at a breakpoint, e.g. Stein's d E / d alpha at Tmax) has the scale atol in
    # the norms, and the guess could fall under step_head's rounding floor (10 ulps), a
    # STEP_TOO_SMALL failure at the piece's first step that a looser rtol made likelier; a
    # larger first step is only rejected and shrunk by the controller
    return max(min(100.0 * h, h1, hmax), min(hmax, 1e4 * abs(t) * _EPS))


@njit(cache=True, inline="always", error_model="numpy")
def pi_control(order, facc2):
    """Hairer's PI step-size controller for an error estimate of order ``order``: its constants
    ``ctl`` = (expo1, beta, safe, facc1, facc2, lclamp1, lclamp2) and the initial
    log(facold ** beta). facc1 = 1 / facmin (a step may shrink by 5), facc2 = 1 / facmax."""
    beta = 0.04
    safe = 0.9
    facc1 = 5.0
    # log(fac) beyond lclamp1 / lclamp2: fac is clamped (no exp needed)
    ctl = (1.0 / order - 0.75 * beta, beta, safe, facc1, facc2, math.log(facc1 * safe),
           math.log(facc2 * safe))
    return ctl, beta * _LOG_1EM4  # facold = 1e-4 at the start


@njit(cache=True, inline="always", error_model="numpy")
def accept_factor(lerr, lfacold, ctl):
    """Hairer's PI controller after an accepted step: (fac, new log facold ** beta).

    fac = err ** expo1 / facold ** beta / safe clamped to [facc2, facc1], from log(err) with
    one exp, none when the factor is clamped; the new step is h / fac.
    """
    expo1, beta, safe, facc1, facc2, lclamp1, lclamp2 = ctl
    z = expo1 * lerr - lfacold
    if z <= lclamp2:
        fac = facc2
    elif z >= lclamp1:
        fac = facc1
    else:
        fac = max(facc2, min(facc1, math.exp(z) / safe))
    return fac, beta * max(lerr, _LOG_1EM4)  # log(max(err, 1e-4) ** beta)


@njit(cache=True, inline="always", error_model="numpy")
def reject_factor(lerr, ctl):
    """Step shrink factor after a rejected step (the new step is h / factor)."""
    expo1, beta, safe, facc1, facc2, lclamp1, lclamp2 = ctl
    return min(facc1, math.exp(expo1 * lerr) / safe)


@njit(cache=True, inline="always", error_model="numpy")
def step_head(nsteps, max_steps, t, h, tend, n_nonfinite):
    """Checks before a step: (status, h, last). status TAKE_STEP: take the step, with h cut to
    end exactly at tend when within 1 % of it (last); else the failure status to return."""
    if nsteps >= max_steps:
        return MAX_STEPS, h, False
    if 0.1 * abs(h) <= abs(t) * _EPS or h <= 0.0:
        return (NON_FINITE if n_nonfinite > 0 else STEP_TOO_SMALL), h, False
    if t + 1.01 * h >= tend:
        return TAKE_STEP, tend - t, True
    return TAKE_STEP, h, False


@njit(cache=True, inline="always", error_model="numpy")
def erk_coefficients(ea, ec, ee):
    """The coefficients of a 7-stage FSAL pair as scalars (kept in registers by the unrolled
    steppers; read from the arrays they are reloaded after every store):
    a10, a20, a21, ..., a65, c1, ..., c6, e0, ..., e6."""
    return (ea[1, 0], ea[2, 0], ea[2, 1], ea[3, 0], ea[3, 1], ea[3, 2], ea[4, 0], ea[4, 1], ea[4, 2], ea[4, 3],
            ea[5, 0], ea[5, 1], ea[5, 2], ea[5, 3], ea[5, 4], ea[6, 0], ea[6, 1], ea[6, 2], ea[6, 3], ea[6, 4],
            ea[6, 5], ec[1], ec[2], ec[3], ec[4], ec[5], ec[6], ee[0], ee[1], ee[2], ee[3], ee[4], ee[5], ee[6])


@njit(cache=True, inline="always", error_model="numpy")
def dense_weights(edense, th, bth):
    """bth[i] = b_i(theta) = sum_j edense[i, j] theta ** (j + 1): the weights of the stages in
    the dense output y(t + theta h) = y + h sum_i b_i(theta) k_i."""
    for i in range(edense.shape[0]):
        acc = 0.0
        thp = th
        for j in range(edense.shape[1]):
            acc += edense[i, j] * thp
            thp *= th
        bth[i] = acc


@njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def write_until(t_eval, ie, tnew, out, ynew):
    nt = t_eval.shape[0]
    while ie < nt and t_eval[ie] <= tnew:
        for k in range(ynew.shape[0]):
            out[ie, k] = ynew[k]
        ie += 1
    return ie


@njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _piece_erk(rhs, jac, dfdp, t, tend, y, p, piece, n, sidx, sens, has_jac, etab, eorder, ethresh, detect,
               rtol, atol, max_steps, first_step, t_eval, ie, out, stats, work):
    """Explicit embedded RK (FSAL) from t to tend with Hairer's PI control and dense output.

    Returns (status, t, ie); status SWITCH when ``detect`` and Hairer's stiffness test fired.
    (Arguments are packed in tuples: CPython turns calls with more than 30 arguments into
    tuple concatenations, which numba cannot type with first-class functions.)
    """
    ea, eb, ee, ec, edense = etab
    K, ytmp, ynew, errv, bth, J, Jp, yt2, ft2, ys, fs = work
    N = y.shape[0]
    s = ea.shape[0]
    nt = t_eval.shape[0]
    # 7-stage FSAL pairs (Tsit5, DOPRI5; api._tableaus refuses others), unrolled: stage rows as
    # views made once per piece (a view made per call costs atomic reference counting),
    # coefficients in locals (reloaded from memory after every store otherwise), no short
    # generic loops. Sums in the textbook order (same rounding as a loop over the stages).
    K0, K1, K2, K3, K4, K5, K6 = K[0], K[1], K[2], K[3], K[4], K[5], K[6]
    (a10, a20, a21, a30, a31, a32, a40, a41, a42, a43, a50, a51, a52, a53, a54, a60, a61, a62, a63, a64, a65,
     c1, c2, c3, c4, c5, c6, e0, e1, e2, e3, e4, e5, e6) = erk_coefficients(ea, ec, ee)
    _eval(rhs, jac, dfdp, t, y, p, piece, n, sidx, sens, has_jac, K0, J, Jp, yt2, ft2, ys, fs)
    stats[STAT_F_EVALUATIONS] += 1
    if not all_finite(K0):
        return NON_FINITE, t, ie
    hmax = tend - t
    if first_step > 0.0:
        h = min(first_step, hmax)
    else:
        h = hinit(rhs, jac, dfdp, t, y, K0, p, piece, n, sidx, sens, has_jac, eorder, hmax, rtol, atol, ytmp, K1, J, Jp, yt2, ft2, ys, fs)
        stats[STAT_F_EVALUATIONS] += 1
    ctl, lfacold = pi_control(eorder, 0.1)  # the step may grow by 10
    reject = False
    n_nonfinite = 0
    iasti = 0
    nonsti = 0
    while True:
        code, h, last = step_head(stats[STAT_STEPS] + stats[STAT_REJECTED], max_steps, t, h, tend, n_nonfinite)
        if code != TAKE_STEP:
            return code, t, ie
        # hot loop: the model is called directly in plain mode (a call through the _eval
        # helper with its many array arguments costs reference counting, measured 8x slower)
        for k in range(N):
            ytmp[k] = y[k] + h * (a10 * K0[k])
        if sens is not None and sens:
            _eval(rhs, jac, dfdp, t + c1 * h, ytmp, p, piece, n, sidx, sens, has_jac, K1, J, Jp, yt2, ft2, ys, fs)
        else:
            rhs(t + c1 * h, ytmp, p, piece, K1)
        for k in range(N):
            ytmp[k] = y[k] + h * (a20 * K0[k] + a21 * K1[k])
        if sens is not None and sens:
            _eval(rhs, jac, dfdp, t + c2 * h, ytmp, p, piece, n, sidx, sens, has_jac, K2, J, Jp, yt2, ft2, ys, fs)
        else:
            rhs(t + c2 * h, ytmp, p, piece, K2)
        for k in range(N):
            ytmp[k] = y[k] + h * (a30 * K0[k] + a31 * K1[k] + a32 * K2[k])
        if sens is not None and sens:
            _eval(rhs, jac, dfdp, t + c3 * h, ytmp, p, piece, n, sidx, sens, has_jac, K3, J, Jp, yt2, ft2, ys, fs)
        else:
            rhs(t + c3 * h, ytmp, p, piece, K3)
        for k in range(N):
            ytmp[k] = y[k] + h * (a40 * K0[k] + a41 * K1[k] + a42 * K2[k] + a43 * K3[k])
        if sens is not None and sens:
            _eval(rhs, jac, dfdp, t + c4 * h, ytmp, p, piece, n, sidx, sens, has_jac, K4, J, Jp, yt2, ft2, ys, fs)
        else:
            rhs(t + c4 * h, ytmp, p, piece, K4)
        for k in range(N):
            ytmp[k] = y[k] + h * (a50 * K0[k] + a51 * K1[k] + a52 * K2[k] + a53 * K3[k] + a54 * K4[k])
        if sens is not None and sens:
            _eval(rhs, jac, dfdp, t + c5 * h, ytmp, p, piece, n, sidx, sens, has_jac, K5, J, Jp, yt2, ft2, ys, fs)
        else:
            rhs(t + c5 * h, ytmp, p, piece, K5)
        # the FSAL stage is the new solution; ytmp keeps stage 5 for the stiffness test
        for k in range(N):
            ynew[k] = y[k] + h * (a60 * K0[k] + a61 * K1[k] + a62 * K2[k] + a63 * K3[k] + a64 * K4[k]
                                  + a65 * K5[k])
        if sens is not None and sens:
            _eval(rhs, jac, dfdp, t + c6 * h, ynew, p, piece, n, sidx, sens, has_jac, K6, J, Jp, yt2, ft2, ys, fs)
        else:
            rhs(t + c6 * h, ynew, p, piece, K6)
        for k in range(N):
            errv[k] = h * (e0 * K0[k] + e1 * K1[k] + e2 * K2[k] + e3 * K3[k] + e4 * K4[k] + e5 * K5[k]
                           + e6 * K6[k])
        stats[STAT_F_EVALUATIONS] += s - 1
        # squared RMS norm: err <= 1 iff err2 <= 1, and err ** x = exp(x / 2 log err2), so one
        # log and two exp per step replace a sqrt and two pow (pow was ~10% of a solve)
        err2 = error_norm2(errv, y, ynew, rtol, atol)
        if not math.isfinite(err2):
            # overflow or NaN in a trial step: shrink hard; a NaN at every h is NON_FINITE
            n_nonfinite += 1
            stats[STAT_REJECTED] += 1
            if n_nonfinite >= 30:
                return NON_FINITE, t, ie
            h *= 0.1
            reject = True
            continue
        n_nonfinite = 0
        lerr = 0.5 * math.log(err2)  # log(err); -inf for a zero error
        if err2 <= 1.0:
            fac, lfacold = accept_factor(lerr, lfacold, ctl)
            hnew = h / fac
            stats[STAT_STEPS] += 1
            switch = False
            if detect:
                # Hairer's test: h * |lambda| from the two last stages, both at c = 1
                stnum = 0.0
                stden = 0.0
                for k in range(N):
                    stnum += (K[s - 1, k] - K[s - 2, k]) ** 2
                    stden += (ynew[k] - ytmp[k]) ** 2
                if stden > 0.0:
                    hlamb = h * math.sqrt(stnum / stden)
                    if hlamb > ethresh:
                        nonsti = 0
                        iasti += 1
                        if iasti >= 15:
                            switch = True
                    else:
                        nonsti += 1
                        if nonsti >= 6:
                            iasti = 0
            tnew = tend if last else t + h
            # dense output at the requested times inside (t, tnew]
            while ie < nt and t_eval[ie] <= tnew:
                te = t_eval[ie]
                if te == tnew:
                    for k in range(N):
                        out[ie, k] = ynew[k]
                else:
                    dense_weights(edense, (te - t) / h, bth)
                    b0, b1, b2, b3, b4, b5, b6 = bth[0], bth[1], bth[2], bth[3], bth[4], bth[5], bth[6]
                    for k in range(N):
                        out[ie, k] = y[k] + h * (b0 * K0[k] + b1 * K1[k] + b2 * K2[k] + b3 * K3[k]
                                                 + b4 * K4[k] + b5 * K5[k] + b6 * K6[k])
                ie += 1
            for k in range(N):
                y[k] = ynew[k]
                K[0, k] = K[s - 1, k]
            t = tnew
            if last:
                return SUCCESS, t, ie
            if switch:
                return SWITCH, t, ie
            if reject:
                hnew = min(hnew, h)
            reject = False
            h = min(hnew, tend - t)
        else:
            hnew = h / reject_factor(lerr, ctl)
            reject = True
            stats[STAT_REJECTED] += 1
            h = hnew


@njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _piece_ros(rhs, jac, dfdp, t, tend, y, p, piece, n, sidx, sens, has_jac, autonomous, rtab, rgamma, rorder,
               rtol, atol, max_steps, first_step, t_eval, ie, out, stats, work):
    """Rosenbrock (Rodas) from t to tend with the model Jacobian, PI control, dense output.

    In sensitivity mode the augmented Jacobian is block lower triangular (J on the diagonal,
    X_j = d(J S_j + Jp_j)/dy below, by forward differences), so one n x n LU serves all blocks.
    Returns (status, t, ie).
    """
    ra, rC, rc, rd, rb, re, rH = rtab
    K, f0, dT, ytmp, ynew, errv, W, piv, X, J, Jp, yt2, ft2, Jt, Jpt, ys, fs = work
    N = y.shape[0]
    s = ra.shape[0]
    nt = t_eval.shape[0]
    nH = rH.shape[0]
    hmax = tend - t
    _eval(rhs, jac, dfdp, t, y, p, piece, n, sidx, sens, has_jac, f0, J, Jp, yt2, ft2, ys, fs)
    stats[STAT_F_EVALUATIONS] += 1
    if not all_finite(f0):
        return NON_FINITE, t, ie
    if first_step > 0.0:
        h = min(first_step, hmax)
    else:
        h = hinit(rhs, jac, dfdp, t, y, f0, p, piece, n, sidx, sens, has_jac, rorder, hmax, rtol, atol, ytmp, ynew, J, Jp, yt2, ft2, ys, fs)
        stats[STAT_F_EVALUATIONS] += 1
    ctl, lfacold = pi_control(rorder, 1.0 / 6.0)  # the step may grow by 6
    reject = False
    fresh = False  # f0, J, dT, X valid for (t, y)
    n_nonfinite = 0
    while True:
        code, h, last = step_head(stats[STAT_STEPS] + stats[STAT_REJECTED], max_steps, t, h, tend, n_nonfinite)
        if code != TAKE_STEP:
            return code, t, ie
        if not fresh:
            if sens is not None and sens:  # the augmented evaluation also fills J
                _eval(rhs, jac, dfdp, t, y, p, piece, n, sidx, sens, has_jac, f0, J, Jp, yt2, ft2, ys, fs)
            else:
                rhs(t, y, p, piece, f0)
                if has_jac:
                    jac(t, y, p, piece, J)
                else:
                    _jacobian(rhs, jac, dfdp, t, y, p, piece, n, has_jac, J, f0, yt2, ft2)
            stats[STAT_F_EVALUATIONS] += 1
            stats[STAT_JACOBIANS] += 1
            if autonomous:
                for k in range(N):
                    dT[k] = 0.0
            else:
                dt_ = _SQRT_EPS * max(abs(t), 1.0)
                _eval(rhs, jac, dfdp, t + dt_, y, p, piece, n, sidx, sens, has_jac, ytmp, Jt, Jpt, yt2, ft2, ys, fs)
                stats[STAT_F_EVALUATIONS] += 1
                for k in range(N):
                    dT[k] = (ytmp[k] - f0[k]) / dt_
            if sens is not None and sens:
                # X_j[:, m] = d(J S_j + Jp_j)/dy_m by forward differences on the model Jacobians
                for m in range(n):
                    for k in range(n):
                        ys[k] = y[k]
                    dm = _SQRT_EPS * max(abs(y[m]), 1.0)
                    ys[m] += dm
                    if has_jac:
                        jac(t, ys, p, piece, Jt)
                    else:
                        rhs(t, ys, p, piece, fs)
                        for mm in range(n):
                            for k in range(n):
                                yt2[k] = ys[k]
                            dmm = _SQRT_EPS * max(abs(ys[mm]), 1.0)
                            yt2[mm] += dmm
                            rhs(t, yt2[:n], p, piece, ft2[:n])
                            for k in range(n):
                                Jt[k, mm] = (ft2[k] - fs[k]) / dmm
                    dfdp(t, ys, p, piece, Jpt)
                    for j in range(sidx.shape[0]):
                        base = n + j * n
                        c = sidx[j]
                        for i in range(n):
                            acc = Jpt[i, c]
                            for k in range(n):
                                acc += Jt[i, k] * y[base + k]
                            X[j, i, m] = (acc - f0[base + i]) / dm
            fresh = True
        # W = I / (h gamma) - J, factorised once per step
        hg = 1.0 / (h * rgamma)
        inv_h = 1.0 / h
        for i in range(n):
            for k in range(n):
                W[i, k] = -J[i, k]
            W[i, i] += hg
        stats[STAT_LU] += 1
        if not lu_factor(W, piv):
            h *= 0.5
            reject = True
            stats[STAT_REJECTED] += 1
            continue
        for i in range(s):
            if i == 0:
                for k in range(N):
                    ynew[k] = f0[k]
            else:
                for k in range(N):
                    acc = 0.0
                    for j in range(i):
                        acc += ra[i, j] * K[j, k]
                    ytmp[k] = y[k] + acc
                if sens is not None and sens:
                    _eval(rhs, jac, dfdp, t + rc[i] * h, ytmp, p, piece, n, sidx, sens, has_jac, ynew, Jt, Jpt, yt2, ft2, ys, fs)
                else:
                    rhs(t + rc[i] * h, ytmp, p, piece, ynew)
                stats[STAT_F_EVALUATIONS] += 1
            hd = h * rd[i]
            for k in range(N):
                acc = 0.0
                for j in range(i):
                    acc += rC[i, j] * K[j, k]
                K[i, k] = ynew[k] + hd * dT[k] + acc * inv_h
            # solve the (block lower triangular) system in place
            lu_solve(W, piv, K[i], 0)
            if sens is not None and sens:
                for j in range(sidx.shape[0]):
                    base = n + j * n
                    for r in range(n):
                        acc = 0.0
                        for m in range(n):
                            acc += X[j, r, m] * K[i, m]
                        K[i, base + r] += acc
                    lu_solve(W, piv, K[i], base)
        for k in range(N):
            acc = 0.0
            acce = 0.0
            for j in range(s):
                acc += rb[j] * K[j, k]
                acce += re[j] * K[j, k]
            ynew[k] = y[k] + acc
            errv[k] = acce
        # squared RMS norm: err <= 1 iff err2 <= 1, and err ** x = exp(x / 2 log err2), so one
        # log and two exp per step replace a sqrt and two pow (pow was ~10% of a solve)
        err2 = error_norm2(errv, y, ynew, rtol, atol)
        if not math.isfinite(err2):
            n_nonfinite += 1
            stats[STAT_REJECTED] += 1
            if n_nonfinite >= 30:
                return NON_FINITE, t, ie
            h *= 0.1
            reject = True
            continue
        n_nonfinite = 0
        lerr = 0.5 * math.log(err2)  # log(err); -inf for a zero error
        if err2 <= 1.0:
            fac, lfacold = accept_factor(lerr, lfacold, ctl)
            hnew = h / fac
            stats[STAT_STEPS] += 1
            tnew = tend if last else t + h
            while ie < nt and t_eval[ie] <= tnew:
                te = t_eval[ie]
                if te == tnew:
                    for k in range(N):
                        out[ie, k] = ynew[k]
                else:
                    th = (te - t) / h
                    for k in range(N):
                        inner = 0.0
                        for r in range(nH - 1, -1, -1):
                            acc = 0.0
                            for j in range(s):
                                acc += rH[r, j] * K[j, k]
                            inner = acc + th * inner
                        out[ie, k] = (1.0 - th) * y[k] + th * (ynew[k] + (1.0 - th) * inner)
                ie += 1
            for k in range(N):
                y[k] = ynew[k]
            t = tnew
            fresh = False
            if last:
                return SUCCESS, t, ie
            if reject:
                hnew = min(hnew, h)
            reject = False
            h = min(hnew, tend - t)
        else:
            hnew = h / reject_factor(lerr, ctl)
            reject = True
            stats[STAT_REJECTED] += 1
            h = hnew


@njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def apply_break(rhs, jac, dfdp, t, y, p, piece, k, n, sidx, sens, jumps, dtb, fb, fa):
    """Add jumps[k] at breakpoint k; in sens mode S += (f_before - f_after) dtb/dp
    (dtb columns are the selected parameters sidx)."""
    if sens is not None and sens:
        rhs(t, y[:n], p, piece, fb)
    for i in range(n):
        y[i] += jumps[k, i]
    if sens is not None and sens:
        rhs(t, y[:n], p, piece + 1, fa)
        for j in range(sidx.shape[0]):
            g = dtb[k, j]
            if g != 0.0:
                base = n + j * n
                for i in range(n):
                    y[base + i] += (fb[i] - fa[i]) * g


@njit(cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _workspace(n, npar, ns, N, sens, se, sr):
    """Work arrays of the solves of one kernel call, allocated once (per-problem allocation
    was a measurable share of a 35 us solve). All np.empty: _solve zeroes the Jacobians of
    every problem and everything else is written before it is read; each distinct np.zeros /
    np.empty call signature compiles its own implementation (0.1 s each)."""
    y = np.empty(N)
    Ke = np.empty((se, N))
    Kr = np.empty((sr, N))
    ytmp = np.empty(N)
    ynew = np.empty(N)
    errv = np.empty(N)
    f0 = np.empty(N)
    dT = np.empty(N)
    yt2 = np.empty(N)
    ft2 = np.empty(2 * N)
    bth = np.empty(se)
    J = np.empty((n, n))
    Jt = np.empty((n, n))
    Jp = np.empty((n, max(npar, 1)))
    Jpt = np.empty((n, max(npar, 1)))
    W = np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    X = np.empty((max(ns, 1) if sens is not None and sens else 1, n, n))
    fb = np.empty(n)
    fa = np.empty(n)
    ys = np.empty(n)
    fs = np.empty(n)
    work_e = (Ke, ytmp, ynew, errv, bth, J, Jp, yt2, ft2, ys, fs)
    work_r = (Kr, f0, dT, ytmp, ynew, errv, W, piv, X, J, Jp, yt2, ft2, Jt, Jpt, ys, fs)
    return y, fb, fa, work_e, work_r


# slots of work_r (above) that _solve reads: the Jacobians, cleared before every problem
_WR_J, _WR_JP, _WR_JT, _WR_JPT = 9, 10, 13, 14


def _solve(rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, SIDX, n, npar, sens, kind, has_jac, autonomous,
           etab, rtab, reals, ATOL, max_steps, OUT, STATS, STATUS, IDX):  # pragma: no cover - numba
    """Solve the problems IDX one after the other (the entry points: see ``_ENTRIES``).

    Each problem is solved over all its pieces: status code to STATUS[m], output rows to
    OUT[m] (nt, N), counters to STATS[m]: accepted steps, rejected steps, f evaluations,
    Jacobians, LU factorisations, 1 if auto switched to the stiff method. kind: 0 explicit,
    1 Rosenbrock, 2 auto (explicit, switching to Rosenbrock for the rest of the solve when
    Hairer's stiffness test fires 15 times). etab = (a, b, e, c, dense) and rtab = (a, C, c, d,
    b, e, H) are the tableaus, or None in an entry point compiled without that method; reals
    = (explicit error order, stiffness threshold, gamma, Rosenbrock error order, rtol,
    first_step); sens: None (plain solves, the sensitivity code is not compiled) or a bool.

    An auto solve in an entry point without Rosenbrock stops at the switch with STATUS
    SWITCH, the switch time and state written to t0[m] and Y0[m]; an entry point without
    the explicit method resumes the problems whose STATUS is SWITCH on entry (stats and the
    output rows up to t0[m] those of the explicit part: the same operations as a switch
    inside one call, so the same results). STATUS is output only otherwise.

    Releases the GIL so that the Python API can run shares of a batch on several threads
    (each problem is solved by the same code whatever the thread count, hence identical
    results). The body of the per-problem solve is written out here, not called: numba
    re-optimises the whole linked code of every callee at each call level (a separate
    ``integrate`` cost 2.8 s more per entry point) and its IR inlining copies the callee's IR
    twice (0.5 s per entry point)."""
    eorder, ethresh, rgamma, rorder, rtol, first_step = reals
    se = np.int64(1)  # not the literal 1: one _workspace specialisation for every entry point
    sr = np.int64(1)
    if etab is not None:  # pruned before typing when etab is None, as below
        se = etab[0].shape[0]
    if rtab is not None:
        sr = rtab[0].shape[0]
    N = Y0.shape[1]
    nt = t_eval.shape[0]
    y, fb, fa, work_e, work_r = _workspace(n, npar, SIDX.shape[0], N, sens, se, sr)
    J, Jp, Jt, Jpt = work_r[_WR_J], work_r[_WR_JP], work_r[_WR_JT], work_r[_WR_JPT]
    # counters in a private array, copied at the end: the rows of STATS of problems solved by
    # other threads share cache lines (false sharing on every step otherwise)
    st = np.empty(STATS.shape[1], dtype=np.int64)
    for q in range(IDX.shape[0]):
        m = IDX[q]
        if m < 0 or m >= P.shape[0]:
            continue
        p, bps, jumps, dtb, atol, out = P[m], BPS[m], JUMPS[m], DTB[m], ATOL[m], OUT[m]
        resume = False
        if etab is None:
            resume = STATUS[m] == SWITCH
        status = SUCCESS
        if resume:
            for i in range(st.shape[0]):
                st[i] = STATS[m, i]
        else:
            for i in range(st.shape[0]):
                st[i] = 0
            for i in range(nt):
                for k in range(N):
                    out[i, k] = np.nan
            if not check_inputs(t0[m], t_eval, Y0[m], p, bps, jumps, rtol, atol, max_steps, first_step):
                status = INVALID_INPUT
            elif sens is not None and sens:
                # the selected columns index Jp and fill the augmented state: never read out of bounds
                if N != n * (1 + SIDX.shape[0]) or dtb.shape[1] < SIDX.shape[0]:
                    status = INVALID_INPUT
                for j in range(SIDX.shape[0]):
                    if SIDX[j] < 0 or SIDX[j] >= npar:
                        status = INVALID_INPUT
        # an entry point compiled without the explicit method solves with Rosenbrock (the only
        # one that resumes auto solves); one without Rosenbrock refuses kind 1 instead of looping
        stiff = kind == KIND_ROSENBROCK or etab is None
        if stiff and rtab is None:
            status = INVALID_INPUT
        t = t0[m]
        if status == SUCCESS and nt > 0:
            for k in range(N):
                y[k] = Y0[m, k]
            # the workspace is shared by the problems of a call: start every problem from zero
            # Jacobians (models may write only their non-zero entries), so that results never
            # depend on the other problems of the batch
            for i in range(n):
                for k in range(n):
                    J[i, k] = 0.0
                    Jt[i, k] = 0.0
                for k in range(Jp.shape[1]):
                    Jp[i, k] = 0.0
                    Jpt[i, k] = 0.0
            nb = bps.shape[0]
            ib = 0
            if resume:
                # the explicit part wrote the outputs up to t and applied the breakpoints up to
                # t (the switch happens inside a piece, so none lies at t itself)
                ie = 0
                while ie < nt and t_eval[ie] <= t:
                    ie += 1
                while ib < nb and bps[ib] <= t:
                    ib += 1
                piece = ib
            else:
                ie = write_until(t_eval, 0, t, out, y)
                piece = 0
                while ib < nb and bps[ib] <= t:
                    apply_break(rhs, jac, dfdp, t, y, p, piece, ib, n, SIDX, sens, jumps, dtb, fb, fa)
                    ib += 1
                    piece += 1
            t_final = t_eval[nt - 1]
            while t < t_final:
                tend = t_final
                if ib < nb and bps[ib] < tend:
                    tend = bps[ib]
                if not stiff:
                    if etab is not None:  # pruned (never typed) in an entry point without it
                        status, t, ie = _piece_erk(rhs, jac, dfdp, t, tend, y, p, piece, n, SIDX, sens, has_jac,
                                                   etab, eorder, ethresh, kind == KIND_AUTO, rtol, atol, max_steps,
                                                   first_step, t_eval, ie, out, st, work_e)
                    if status == SWITCH:
                        st[STAT_SWITCHED] = 1
                        if rtab is None:
                            break  # the caller resumes with the Rosenbrock entry point
                        stiff = True
                        status = SUCCESS
                        continue  # the rest of this piece with the Rosenbrock method
                else:
                    if rtab is not None:
                        status, t, ie = _piece_ros(rhs, jac, dfdp, t, tend, y, p, piece, n, SIDX, sens, has_jac,
                                                   autonomous, rtab, rgamma, rorder, rtol, atol, max_steps,
                                                   first_step, t_eval, ie, out, st, work_r)
                if status != SUCCESS:
                    break
                if ib < nb and bps[ib] == tend and t < t_final:
                    apply_break(rhs, jac, dfdp, t, y, p, piece, ib, n, SIDX, sens, jumps, dtb, fb, fa)
                    ib += 1
                    piece += 1
                    while ib < nb and bps[ib] == tend:  # coincident breakpoints
                        apply_break(rhs, jac, dfdp, t, y, p, piece, ib, n, SIDX, sens, jumps, dtb, fb, fa)
                        ib += 1
                        piece += 1
            if status != SUCCESS and status != SWITCH:
                for i in range(ie, nt):
                    for k in range(N):
                        out[i, k] = np.nan
        STATUS[m] = status
        if status == SWITCH:  # hand the switch point to the Rosenbrock entry point
            t0[m] = t
            for k in range(N):
                Y0[m, k] = y[k]
        for i in range(st.shape[0]):
            STATS[m, i] = st[i]


def _c(nd, dtype=types.float64):
    return types.Array(dtype, nd, "C")


_f8, _i8, _b1 = types.float64, types.int64, types.boolean
#: types of the tableaus: explicit (a, b, e, c, dense), Rosenbrock (a, C, c, d, b, e, H), and
#: reals (explicit error order, stiffness threshold, gamma, Rosenbrock error order, rtol,
#: first_step)
ETAB_T = types.Tuple((_c(2), _c(1), _c(1), _c(1), _c(2)))
RTAB_T = types.Tuple((_c(2), _c(2), _c(1), _c(1), _c(1), _c(1), _c(2)))
REALS_T = types.UniTuple(_f8, 6)


def signature(sens, etab, rtab):
    """Signature of an entry point: ``sens`` types.none or boolean, ``etab`` / ``rtab`` the
    tableau type or types.none (the method left out)."""
    return types.void(
        _RHS_T, _JAC_T, _JAC_T,
        _c(1), _c(1), _c(2), _c(2), _c(2), _c(3), _c(3),  # t0, t_eval, Y0, P, BPS, JUMPS, DTB
        _c(1, _i8),  # SIDX: sensitivity column j is d/d P[:, SIDX[j]]
        _i8, _i8, sens, _i8, _b1, _b1,  # n, npar, sens, kind, has_jac, autonomous
        etab, rtab, REALS_T,
        _c(2), _i8,  # ATOL, max_steps
        _c(3), _c(2, _i8), _c(1, _i8),  # OUT, STATS, STATUS
        _c(1, _i8),  # IDX: the problems this call solves (a thread's share of a batch)
    )


_none = types.none
_SENS_ARG, _ETAB_ARG, _RTAB_ARG = 13, 17, 18  # positions in signature()


def entry_arguments(kernel, sens: bool, etab: tuple, rtab: tuple) -> tuple:
    """(sens, etab, rtab) as the entry point ``kernel`` takes them: None where its signature
    has None (a plain entry point, or a method it was compiled without)."""
    sig = kernel.signatures[0]
    return tuple(None if sig[i] == _none else v
                 for i, v in ((_SENS_ARG, sens), (_ETAB_ARG, etab), (_RTAB_ARG, rtab)))


# Entry points: (implementation, signature, LLVM loop vectorisation), compiled (or loaded from
# numba's cache) on first use, not at import. Each plain or sensitivity entry holds one method
# family, so that a first solve compiles one method: the other tableau is typed None and its
# code pruned before typing, as the sensitivity code is with sens None. Callers of these run
# an auto solve in two calls (api._run): the explicit entry stops a problem where the
# stiffness test fires (STATUS SWITCH, the switch time and state written to t0[m], Y0[m], so
# callers pass copies, the counters to STATS[m]) and the Rosenbrock entry continues it.
# ``solve_serial`` holds both methods and switches inside the call (for callers inside numba
# code: the PyTensor Op). Loop vectorisation: plain solves without it (bitwise the same
# results, 5% faster for "auto" on the benchmark: the vectorised stage loops load four doubles
# right after the model stored them one by one, and store-to-load forwarding fails);
# sensitivity solves, with n (1 + n_params) equations, keep it.
_ENTRIES = {
    "solve_erk": (_solve, signature(_none, ETAB_T, _none), False),
    "solve_ros": (_solve, signature(_none, _none, RTAB_T), False),
    "solve_sens_erk": (_solve, signature(_b1, ETAB_T, _none), True),
    "solve_sens_ros": (_solve, signature(_b1, _none, RTAB_T), True),
    "solve_serial": (_solve, signature(_b1, ETAB_T, RTAB_T), True),
}


def compile_entry(impl, sig, vectorize: bool = True):
    """Compile (or load from numba's cache) an entry point with the signature ``sig``.

    ``vectorize=False`` turns LLVM loop vectorisation off for this function only: numba reads
    the setting while it optimises, under its compiler lock, so holding the lock while the
    setting is changed keeps every other compilation as it is."""
    with global_compiler_lock:
        old = _numba_config.LOOP_VECTORIZE
        _numba_config.LOOP_VECTORIZE = old if vectorize else 0
        try:
            return njit(sig, cache=True, nogil=True, error_model="numpy", no_cfunc_wrapper=True)(impl)
        finally:
            _numba_config.LOOP_VECTORIZE = old


def lazy_entries(namespace: dict, entries: dict):
    """A module ``__getattr__`` that compiles (or loads from the cache) each entry point of
    ``entries`` (name -> (implementation, signature, vectorize)) on first access and keeps it in the
    module's ``namespace``; one lock per module, so two threads never compile it twice."""
    lock = threading.Lock()
    module = namespace["__name__"]

    def __getattr__(name: str):
        entry = entries.get(name)
        if entry is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        with lock:
            func = namespace.get(name)
            if func is None:
                func = compile_entry(*entry)
                namespace[name] = func
        return func

    return __getattr__


__getattr__ = lazy_entries(globals(), _ENTRIES)
