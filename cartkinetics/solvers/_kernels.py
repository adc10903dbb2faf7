"""Generic numba stepping code: one compiled kernel for every model.

The model functions arrive as numba *first-class functions* (``numba.types.FunctionType``
with the fixed signatures of contracts.md), so the kernel is compiled once, cached on disk, and
shared by all models; a new model only compiles its own three small functions. (Specialising
on dispatcher arguments instead would recompile the whole solver for each model in every
process: numba cannot file-cache such specialisations.)

Compile time (measured with an empty cache, CPU seconds on the shared 2-core machine): the
first plain solve compiles ``solve_plain`` in about 8 s (was 15 s for the single eager
kernel), a first sensitivity solve compiles ``solve_serial`` in about 10 s more; both load from
the cache in well under a second. What made the difference: no slice assignment in the kernel
(numba compiles its broadcasting error messages, about 3 s), ``integrate`` inlined into the
entry points (every call level re-optimises the whole linked code below it), and the
sensitivity branches written ``if sens is not None and sens`` so that passing ``sens=None``
prunes them before typing.

Augmented state layout (sensitivity mode): ``y[:n]`` the states, then ``S[:, j]`` (n values)
for parameter j at ``y[n + j n : n + (j + 1) n]``.
"""

# ruff: noqa: E501
import math
import threading

import numpy as np
from numba import njit, types

from cartkinetics.solvers._core import (
    JAC_SIG,
    RHS_SIG,
    all_finite,
    check_inputs,
    error_norm,
    lu_factor,
    lu_solve,
)

__all__ = ["JAC_SIG", "RHS_SIG", "solve_plain", "solve_serial"]  # noqa: F822 (module __getattr__)

_RHS_T = types.FunctionType(RHS_SIG)
_JAC_T = types.FunctionType(JAC_SIG)

_EPS = 2.220446049250313e-16
_SQRT_EPS = 1.4901161193847656e-08
_SWITCH = -1  # internal: the explicit method detected stiffness


@njit(cache=True)
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


@njit(cache=True)
def _eval(rhs, jac, dfdp, t, y, p, piece, n, npar, sens, has_jac, out, J, Jp, ytmp, ftmp):
    """out = f(t, y) for the plain or the augmented (states + sensitivities) system."""
    if sens is not None and sens:
        rhs(t, y[:n], p, piece, out[:n])
        _jacobian(rhs, jac, dfdp, t, y, p, piece, n, has_jac, J, out, ytmp, ftmp)
        dfdp(t, y[:n], p, piece, Jp)
        for j in range(npar):
            base = n + j * n
            for i in range(n):
                s = Jp[i, j]
                for k in range(n):
                    s += J[i, k] * y[base + k]
                out[base + i] = s
        return
    rhs(t, y, p, piece, out)  # no slicing: views cost reference counting on every call


@njit(cache=True)
def _hinit(rhs, jac, dfdp, t, y, f0, p, piece, n, npar, sens, has_jac, order, hmax, rtol, atol, ytmp, f1, J, Jp, yt2, ft2):
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
    _eval(rhs, jac, dfdp, t + h, ytmp, p, piece, n, npar, sens, has_jac, f1, J, Jp, yt2, ft2)
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
    return min(100.0 * h, h1, hmax)


@njit(cache=True)
def _write_until(t_eval, ie, tnew, out, ynew):
    nt = t_eval.shape[0]
    while ie < nt and t_eval[ie] <= tnew:
        for k in range(ynew.shape[0]):
            out[ie, k] = ynew[k]
        ie += 1
    return ie


@njit(cache=True)
def _piece_erk(rhs, jac, dfdp, t, tend, y, p, piece, n, npar, sens, has_jac, etab, eorder, ethresh, detect,
               rtol, atol, max_steps, first_step, t_eval, ie, out, stats, work):
    """Explicit embedded RK (FSAL) from t to tend with Hairer's PI control and dense output.

    Returns (status, t, ie); status _SWITCH when ``detect`` and Hairer's stiffness test fired.
    (Arguments are packed in tuples: CPython turns calls with more than 30 arguments into
    tuple concatenations, which numba cannot type with first-class functions.)
    """
    ea, eb, ee, ec, edense = etab
    K, ytmp, ynew, errv, bth, J, Jp, yt2, ft2 = work
    N = y.shape[0]
    s = ea.shape[0]
    nt = t_eval.shape[0]
    nd = edense.shape[1]
    _eval(rhs, jac, dfdp, t, y, p, piece, n, npar, sens, has_jac, K[0], J, Jp, yt2, ft2)
    stats[2] += 1
    if not all_finite(K[0]):
        return 3, t, ie
    hmax = tend - t
    if first_step > 0.0:
        h = min(first_step, hmax)
    else:
        h = _hinit(rhs, jac, dfdp, t, y, K[0], p, piece, n, npar, sens, has_jac, eorder, hmax, rtol, atol, ytmp, K[1], J, Jp, yt2, ft2)
        stats[2] += 1
    beta = 0.04
    expo1 = 1.0 / eorder - 0.75 * beta
    safe = 0.9
    facc1 = 5.0  # 1 / facmin (step may shrink by 5)
    facc2 = 0.1  # 1 / facmax (step may grow by 10)
    facold_beta = 1e-4 ** 0.04
    reject = False
    n_nonfinite = 0
    iasti = 0
    nonsti = 0
    while True:
        if stats[0] + stats[1] >= max_steps:
            return 1, t, ie
        if 0.1 * abs(h) <= abs(t) * _EPS or h <= 0.0:
            return (3 if n_nonfinite > 0 else 2), t, ie
        last = False
        if t + 1.01 * h >= tend:
            h = tend - t
            last = True
        # hot loop: the model is called directly in plain mode (a call through the _eval
        # helper with its many array arguments costs reference counting, measured 8x slower).
        # Measured alternatives that were slower: stage-outer/state-inner sums, and writing
        # into a whole scratch array copied into K instead of passing the row K[i].
        for i in range(1, s - 1):
            for k in range(N):
                acc = 0.0
                for j in range(i):
                    acc += ea[i, j] * K[j, k]
                ytmp[k] = y[k] + h * acc
            if sens is not None and sens:
                _eval(rhs, jac, dfdp, t + ec[i] * h, ytmp, p, piece, n, npar, sens, has_jac, K[i], J, Jp, yt2, ft2)
            else:
                rhs(t + ec[i] * h, ytmp, p, piece, K[i])
        # the FSAL stage is the new solution; ytmp keeps stage s-2 for the stiffness test
        for k in range(N):
            acc = 0.0
            for j in range(s - 1):
                acc += ea[s - 1, j] * K[j, k]
            ynew[k] = y[k] + h * acc
        if sens is not None and sens:
            _eval(rhs, jac, dfdp, t + ec[s - 1] * h, ynew, p, piece, n, npar, sens, has_jac, K[s - 1], J, Jp, yt2, ft2)
        else:
            rhs(t + ec[s - 1] * h, ynew, p, piece, K[s - 1])
        stats[2] += s - 1
        for k in range(N):
            acc = 0.0
            for j in range(s):
                acc += ee[j] * K[j, k]
            errv[k] = h * acc
        err = error_norm(errv, y, ynew, rtol, atol)
        if not math.isfinite(err):
            # overflow or NaN in a trial step: shrink hard; a NaN at every h is NON_FINITE
            n_nonfinite += 1
            stats[1] += 1
            if n_nonfinite >= 30:
                return 3, t, ie
            h *= 0.1
            reject = True
            continue
        n_nonfinite = 0
        fac11 = err ** expo1
        fac = fac11 / facold_beta  # facold ** beta, updated on acceptance only
        fac = max(facc2, min(facc1, fac / safe))
        hnew = h / fac
        if err <= 1.0:
            facold_beta = max(err, 1e-4) ** beta
            stats[0] += 1
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
                    th = (te - t) / h
                    for i in range(s):
                        acc = 0.0
                        thp = th
                        for j in range(nd):
                            acc += edense[i, j] * thp
                            thp *= th
                        bth[i] = acc
                    for k in range(N):
                        acc = 0.0
                        for i in range(s):
                            acc += bth[i] * K[i, k]
                        out[ie, k] = y[k] + h * acc
                ie += 1
            for k in range(N):
                y[k] = ynew[k]
                K[0, k] = K[s - 1, k]
            t = tnew
            if last:
                return 0, t, ie
            if switch:
                return _SWITCH, t, ie
            if reject:
                hnew = min(hnew, h)
            reject = False
            h = min(hnew, tend - t)
        else:
            hnew = h / min(facc1, fac11 / safe)
            reject = True
            stats[1] += 1
            h = hnew


@njit(cache=True)
def _piece_ros(rhs, jac, dfdp, t, tend, y, p, piece, n, npar, sens, has_jac, autonomous, rtab, rgamma, rorder,
               rtol, atol, max_steps, first_step, t_eval, ie, out, stats, work):
    """Rosenbrock (Rodas) from t to tend with the model Jacobian, PI control, dense output.

    In sensitivity mode the augmented Jacobian is block lower triangular (J on the diagonal,
    X_j = d(J S_j + Jp_j)/dy below, by forward differences), so one n x n LU serves all blocks.
    Returns (status, t, ie).
    """
    ra, rC, rc, rd, rb, re, rH = rtab
    K, f0, dT, ytmp, ynew, errv, W, piv, X, J, Jp, yt2, ft2, Jt, Jpt = work
    N = y.shape[0]
    s = ra.shape[0]
    nt = t_eval.shape[0]
    nH = rH.shape[0]
    hmax = tend - t
    _eval(rhs, jac, dfdp, t, y, p, piece, n, npar, sens, has_jac, f0, J, Jp, yt2, ft2)
    stats[2] += 1
    if not all_finite(f0):
        return 3, t, ie
    if first_step > 0.0:
        h = min(first_step, hmax)
    else:
        h = _hinit(rhs, jac, dfdp, t, y, f0, p, piece, n, npar, sens, has_jac, rorder, hmax, rtol, atol, ytmp, ynew, J, Jp, yt2, ft2)
        stats[2] += 1
    beta = 0.04
    expo1 = 1.0 / rorder - 0.75 * beta
    safe = 0.9
    facc1 = 5.0
    facc2 = 1.0 / 6.0
    facold_beta = 1e-4 ** 0.04
    reject = False
    fresh = False  # f0, J, dT, X valid for (t, y)
    n_nonfinite = 0
    while True:
        if stats[0] + stats[1] >= max_steps:
            return 1, t, ie
        if 0.1 * abs(h) <= abs(t) * _EPS or h <= 0.0:
            return (3 if n_nonfinite > 0 else 2), t, ie
        last = False
        if t + 1.01 * h >= tend:
            h = tend - t
            last = True
        if not fresh:
            if sens is not None and sens:  # the augmented evaluation also fills J
                _eval(rhs, jac, dfdp, t, y, p, piece, n, npar, sens, has_jac, f0, J, Jp, yt2, ft2)
            else:
                rhs(t, y, p, piece, f0)
                if has_jac:
                    jac(t, y, p, piece, J)
                else:
                    _jacobian(rhs, jac, dfdp, t, y, p, piece, n, has_jac, J, f0, yt2, ft2)
            stats[2] += 1
            stats[3] += 1
            if autonomous:
                for k in range(N):
                    dT[k] = 0.0
            else:
                dt_ = _SQRT_EPS * max(abs(t), 1.0)
                _eval(rhs, jac, dfdp, t + dt_, y, p, piece, n, npar, sens, has_jac, ytmp, Jt, Jpt, yt2, ft2)
                stats[2] += 1
                for k in range(N):
                    dT[k] = (ytmp[k] - f0[k]) / dt_
            if sens is not None and sens:
                # X_j[:, m] = d(J S_j + Jp_j)/dy_m by forward differences on the model Jacobians
                for m in range(n):
                    for k in range(n):
                        yt2[k] = y[k]
                    dm = _SQRT_EPS * max(abs(y[m]), 1.0)
                    yt2[m] += dm
                    if has_jac:
                        jac(t, yt2[:n], p, piece, Jt)
                    else:
                        rhs(t, yt2[:n], p, piece, ft2[:n])
                        for k in range(n):
                            ft2[n + k] = ft2[k]
                        for mm in range(n):
                            for k in range(n):
                                ytmp[k] = yt2[k]
                            dmm = _SQRT_EPS * max(abs(yt2[mm]), 1.0)
                            ytmp[mm] += dmm
                            rhs(t, ytmp[:n], p, piece, ft2[:n])
                            for k in range(n):
                                Jt[k, mm] = (ft2[k] - ft2[n + k]) / dmm
                    dfdp(t, yt2[:n], p, piece, Jpt)
                    for j in range(npar):
                        base = n + j * n
                        for i in range(n):
                            acc = Jpt[i, j]
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
        stats[4] += 1
        if not lu_factor(W, piv):
            h *= 0.5
            reject = True
            stats[1] += 1
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
                    _eval(rhs, jac, dfdp, t + rc[i] * h, ytmp, p, piece, n, npar, sens, has_jac, ynew, Jt, Jpt, yt2, ft2)
                else:
                    rhs(t + rc[i] * h, ytmp, p, piece, ynew)
                stats[2] += 1
            hd = h * rd[i]
            for k in range(N):
                acc = 0.0
                for j in range(i):
                    acc += rC[i, j] * K[j, k]
                K[i, k] = ynew[k] + hd * dT[k] + acc * inv_h
            # solve the (block lower triangular) system in place
            lu_solve(W, piv, K[i], 0)
            if sens is not None and sens:
                for j in range(npar):
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
        err = error_norm(errv, y, ynew, rtol, atol)
        if not math.isfinite(err):
            n_nonfinite += 1
            stats[1] += 1
            if n_nonfinite >= 30:
                return 3, t, ie
            h *= 0.1
            reject = True
            continue
        n_nonfinite = 0
        fac11 = err ** expo1
        fac = fac11 / facold_beta  # facold ** beta, updated on acceptance only
        fac = max(facc2, min(facc1, fac / safe))
        hnew = h / fac
        if err <= 1.0:
            facold_beta = max(err, 1e-4) ** beta
            stats[0] += 1
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
                return 0, t, ie
            if reject:
                hnew = min(hnew, h)
            reject = False
            h = min(hnew, tend - t)
        else:
            hnew = h / min(facc1, fac11 / safe)
            reject = True
            stats[1] += 1
            h = hnew


@njit(cache=True)
def _apply_break(rhs, jac, dfdp, t, y, p, piece, k, n, npar, sens, jumps, dtb, fb, fa):
    """Add jumps[k] at breakpoint k; in sens mode S += (f_before - f_after) dtb/dp."""
    if sens is not None and sens:
        rhs(t, y[:n], p, piece, fb)
    for i in range(n):
        y[i] += jumps[k, i]
    if sens is not None and sens:
        rhs(t, y[:n], p, piece + 1, fa)
        for j in range(npar):
            g = dtb[k, j]
            if g != 0.0:
                base = n + j * n
                for i in range(n):
                    y[base + i] += (fb[i] - fa[i]) * g


# inlined (numba IR) into the entry points: numba re-optimises the whole linked code of every
# callee at each call level, so each level of wrappers costs seconds of compilation
@njit(cache=True, inline="always")
def integrate(rhs, jac, dfdp, t0, t_eval, y0, p, bps, jumps, dtb, n, npar, sens, kind, has_jac, autonomous,
              etab, rtab, reals, atol, max_steps, out, stats, y, fb, fa, work_e, work_r):
    """Solve one problem over all pieces; returns the status code and fills out (nt, N), stats.

    kind: 0 explicit, 1 Rosenbrock, 2 auto (explicit, switching to Rosenbrock for the rest of
    the solve when Hairer's stiffness test fires 15 times). stats: accepted steps, rejected
    steps, f evaluations, Jacobians, LU factorisations, 1 if auto switched to the stiff method.
    etab = (a, b, e, c, dense) and rtab = (a, C, c, d, b, e, H) are the tableaus; reals =
    (explicit error order, stiffness threshold, gamma, Rosenbrock error order, rtol, first_step).
    """
    eorder, ethresh, rgamma, rorder, rtol, first_step = reals
    N = y0.shape[0]
    nt = t_eval.shape[0]
    for i in range(stats.shape[0]):
        stats[i] = 0
    for i in range(nt):
        for k in range(N):
            out[i, k] = np.nan
    if not check_inputs(t0, t_eval, y0, p, bps, jumps, rtol, atol, max_steps, first_step):
        return 4
    if nt == 0:
        return 0
    for k in range(N):
        y[k] = y0[k]
    # the workspace is shared by the problems of a chunk: start every problem from zero
    # Jacobians (models may write only their non-zero entries), so that results never depend
    # on the other problems of the batch
    J, Jp, Jt, Jpt = work_r[9], work_r[10], work_r[13], work_r[14]
    for i in range(n):
        for k in range(n):
            J[i, k] = 0.0
            Jt[i, k] = 0.0
        for k in range(Jp.shape[1]):
            Jp[i, k] = 0.0
            Jpt[i, k] = 0.0
    t = t0
    ie = _write_until(t_eval, 0, t, out, y)
    nb = bps.shape[0]
    ib = 0
    piece = 0
    while ib < nb and bps[ib] <= t0:
        _apply_break(rhs, jac, dfdp, t0, y, p, piece, ib, n, npar, sens, jumps, dtb, fb, fa)
        ib += 1
        piece += 1
    t_final = t_eval[nt - 1]
    stiff = kind == 1
    status = 0
    while t < t_final:
        tend = t_final
        if ib < nb and bps[ib] < tend:
            tend = bps[ib]
        if not stiff:
            status, t, ie = _piece_erk(rhs, jac, dfdp, t, tend, y, p, piece, n, npar, sens, has_jac, etab, eorder,
                                       ethresh, kind == 2, rtol, atol, max_steps, first_step, t_eval, ie, out, stats,
                                       work_e)
            if status == _SWITCH:
                stiff = True
                stats[5] = 1
                status = 0
                continue  # the rest of this piece with the Rosenbrock method
        else:
            status, t, ie = _piece_ros(rhs, jac, dfdp, t, tend, y, p, piece, n, npar, sens, has_jac, autonomous, rtab,
                                       rgamma, rorder, rtol, atol, max_steps, first_step, t_eval, ie, out, stats,
                                       work_r)
        if status != 0:
            break
        if ib < nb and bps[ib] == tend and t < t_final:
            _apply_break(rhs, jac, dfdp, t, y, p, piece, ib, n, npar, sens, jumps, dtb, fb, fa)
            ib += 1
            piece += 1
            while ib < nb and bps[ib] == tend:  # coincident breakpoints
                _apply_break(rhs, jac, dfdp, t, y, p, piece, ib, n, npar, sens, jumps, dtb, fb, fa)
                ib += 1
                piece += 1
    if status != 0:
        for i in range(ie, nt):
            for k in range(N):
                out[i, k] = np.nan
    return status


@njit(cache=True)
def _workspace(n, npar, N, sens, se, sr):
    """Work arrays of the solves of one batch chunk, allocated once (per-problem allocation
    was a measurable share of a 35 us solve)."""
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
    J = np.zeros((n, n))
    Jt = np.zeros((n, n))
    Jp = np.zeros((n, max(npar, 1)))
    Jpt = np.zeros((n, max(npar, 1)))
    W = np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    X = np.zeros((max(npar, 1) if sens is not None and sens else 1, n, n))
    fb = np.empty(n)
    fa = np.empty(n)
    work_e = (Ke, ytmp, ynew, errv, bth, J, Jp, yt2, ft2)
    work_r = (Kr, f0, dT, ytmp, ynew, errv, W, piv, X, J, Jp, yt2, ft2, Jt, Jpt)
    return y, fb, fa, work_e, work_r


@njit(cache=True, inline="always")
def _serial(rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, n, npar, sens, kind, has_jac, autonomous,
            etab, rtab, reals, ATOL, max_steps, OUT, STATS, STATUS):
    y, fb, fa, work_e, work_r = _workspace(n, npar, Y0.shape[1], sens, etab[0].shape[0], rtab[0].shape[0])
    for m in range(P.shape[0]):
        STATUS[m] = integrate(rhs, jac, dfdp, t0[m], t_eval, Y0[m], P[m], BPS[m], JUMPS[m], DTB[m], n, npar, sens,
                              kind, has_jac, autonomous, etab, rtab, reals, ATOL[m], max_steps, OUT[m], STATS[m],
                              y, fb, fa, work_e, work_r)


def _c(nd, dtype=types.float64):
    return types.Array(dtype, nd, "C")


_f8, _i8, _b1 = types.float64, types.int64, types.boolean
#: explicit signature of the entry points: compiled once and cached for all models
SOLVE_SERIAL_SIG = types.void(
    _RHS_T, _JAC_T, _JAC_T,
    _c(1), _c(1), _c(2), _c(2), _c(2), _c(3), _c(3),  # t0, t_eval, Y0, P, BPS, JUMPS, DTB
    _i8, _i8, _b1, _i8, _b1, _b1,  # n, npar, sens, kind, has_jac, autonomous
    _c(2), _c(1), _c(1), _c(1), _c(2), _f8, _f8,  # explicit tableau, error order, stiff threshold
    _c(2), _c(2), _f8, _c(1), _c(1), _c(1), _c(1), _c(2), _f8,  # Rosenbrock tableau, error order
    _f8, _c(2), _i8, _f8,  # rtol, ATOL, max_steps, first_step
    _c(3), _c(2, _i8), _c(1, _i8),  # OUT, STATS, STATUS
)


def _solve_serial(rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, n, npar, sens, kind, has_jac, autonomous,
                  ea, eb, ee, ec, edense, eorder, ethresh, ra, rC, rgamma, rc, rd, rb, re, rH, rorder,
                  rtol, ATOL, max_steps, first_step, OUT, STATS, STATUS):  # pragma: no cover - numba
    """Solve problems one after the other; releases the GIL so that the Python API can run
    chunks of a batch on several threads (each problem is solved by the same code whatever
    the thread count, hence identical results). Plain (sens False) or sensitivity solves."""
    etab = (ea, eb, ee, ec, edense)
    rtab = (ra, rC, rc, rd, rb, re, rH)
    reals = (eorder, ethresh, rgamma, rorder, rtol, first_step)
    _serial(rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, n, npar, sens, kind, has_jac, autonomous,
            etab, rtab, reals, ATOL, max_steps, OUT, STATS, STATUS)


def _solve_plain(rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, n, npar, sens, kind, has_jac, autonomous,
                 ea, eb, ee, ec, edense, eorder, ethresh, ra, rC, rgamma, rc, rd, rb, re, rH, rorder,
                 rtol, ATOL, max_steps, first_step, OUT, STATS, STATUS):  # pragma: no cover - numba
    """As solve_serial without sensitivities (``sens`` is ignored): the sensitivity code is
    pruned before typing (``sens`` is None below), so plain solves never compile it."""
    etab = (ea, eb, ee, ec, edense)
    rtab = (ra, rC, rc, rd, rb, re, rH)
    reals = (eorder, ethresh, rgamma, rorder, rtol, first_step)
    _serial(rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, n, npar, None, kind, has_jac, autonomous,
            etab, rtab, reals, ATOL, max_steps, OUT, STATS, STATUS)


# Entry points are compiled (or loaded from numba's cache) on first use, not at import, so that
# plain solves never compile the sensitivity code: ``_kernels.solve_serial`` (module
# __getattr__) keeps its historical name, signature and meaning for callers inside numba code.
_ENTRIES = {"solve_serial": _solve_serial, "solve_plain": _solve_plain}
_ENTRY_LOCK = threading.Lock()


def __getattr__(name: str):
    impl = _ENTRIES.get(name)
    if impl is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _ENTRY_LOCK:
        func = globals().get(name)
        if func is None:
            func = njit(SOLVE_SERIAL_SIG, cache=True, nogil=True)(impl)
            globals()[name] = func
    return func
