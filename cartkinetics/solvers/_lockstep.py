"""Lock-step explicit kernel: plain Tsit5 / DOPRI5 solves, two problems stepped side by side.

Why: one explicit solve is a chain of dependent operations (stage sum -> model -> next stage
sum -> ... -> error norm -> log / exp of the step-size controller -> next step), so a single
problem keeps the core waiting on latencies (the model's divisions, store-to-load forwarding
of the stage vectors, libm) rather than on throughput. Two independent problems advanced
stage by stage, one after the other, let the out-of-order core overlap the two chains.
Measured on the benchmark model (benchmarks/bench_solvers.py, Tsit5, 1,000 patients, one
thread, CPU time, 12 fresh processes): median 19.3 us per patient (19.0-21.9) against 27.6
(27.3-28.2) for the generic kernel (``_kernels.solve_erk``; 26.2 since it too is compiled
without loop vectorisation), with bitwise identical results: each problem goes through the
same operations in the same order, only the interleaving of problems differs, so results do
not depend on which problems share a call, the thread count or the batch order.

What made it fast (each measured):

- no array bound to a new name inside the step loop: every binding costs two atomic
  reference-count updates. Inlined helpers taking arrays, tuple unpacking per step and
  ``P[m]`` views per step made a first version 4-5x slower than the generic kernel; here the
  lane views are made once per call, each lane's parameters are copied into a lane buffer,
  and the rare paths (new problem, new piece, piece end, finish) are calls taking the lane
  index (one call site each: smaller code, 7.6 s to compile with an empty cache).
- compiled without LLVM loop vectorisation (``_kernels.compile_entry``): the vectorised
  stage loops load four doubles at once right after the model stored them one by one, and
  the failed store-to-load forwarding made the kernel 2x slower (38 vs 20 us per patient).
- two lanes: three lanes in this layout ran at 40 us (35 us with the stage sums as loops over
  the lanes); an earlier layout (a call site per lane for the rare paths) gave 19 us with
  three lanes but took 12.8 s to compile, 25 us with four, and with two varied from 19 to
  28 us between processes (code placement); this one ran at 19.7-21.9 us in 58 fresh
  processes, and at 25.4 us in one benchmark process (docs/benchmarks.md).
- inlining the model into the kernel (a per-model kernel) was measured too and gained 1 %:
  the model call is not the cost, its latency is, so the kernel stays generic (the model's
  functions are first-class function arguments, compiled once for every model and cached).

Entry point ``solve_explicit`` has the signature of ``_kernels.solve_erk`` (``kind``,
``has_jac`` and ``autonomous`` are ignored: callers send only plain solves with an explicit
7-stage FSAL method here). Development note: numba's cache
does not see edits of the helpers imported from ``_kernels`` / ``_core`` (inlined here);
touch this file after editing them.
"""

# ruff: noqa: E501
import math

import numpy as np
from numba import njit, types

from cartkinetics.solvers._core import all_finite, check_inputs
from cartkinetics.solvers._kernels import (
    ETAB_T,
    accept_factor,
    apply_break,
    dense_weights,
    erk_coefficients,
    hinit,
    lazy_entries,
    pi_control,
    reject_factor,
    signature,
    step_head,
    write_until,
)
from cartkinetics.solvers.status import (
    INVALID_INPUT,
    NON_FINITE,
    STAT_F_EVALUATIONS,
    STAT_REJECTED,
    STAT_STEPS,
    SUCCESS,
    TAKE_STEP,
)

__all__ = ["solve_explicit"]  # noqa: F822 (module __getattr__)

# per-lane scalars: floats S[l, :] and integers I[l, :]
_T, _H, _TEND, _LFAC, _TFIN = 0, 1, 2, 3, 4
_Q, _PIECE, _IB, _IE, _REJ, _LAST, _NNF, _PHASE = 0, 1, 2, 3, 4, 5, 6, 7
# lane phases: needs a problem, starts a piece, steps, has nothing left to do
_NEED, _START, _STEP, _IDLE = 0, 1, 2, 3
# slots of the work-array tuple ``work`` (made in ``_solve_lockstep``): the arrays of hinit and
# apply_break
_W_J, _W_JP, _W_YT2, _W_FT2, _W_YS, _W_FS, _W_FB, _W_FA = 0, 1, 2, 3, 4, 5, 6, 7


@njit(cache=True, error_model="numpy")
def _finish(l, status, t_eval, OUT, STATS, STATUS, I, ST):
    """Lane l's problem ends with ``status`` (int64): NaN outputs after the last reached one,
    status and counters written (as at the end of a problem in ``_kernels._solve``)."""
    m = I[l, _Q]
    if status != SUCCESS:
        for i in range(I[l, _IE], t_eval.shape[0]):
            for k in range(OUT.shape[2]):
                OUT[m, i, k] = np.nan
    STATUS[m] = status
    for i in range(ST.shape[1]):
        STATS[m, i] = ST[l, i]
    I[l, _PHASE] = _NEED


@njit(cache=True, error_model="numpy")
def _load(l, rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, SIDX, n, eorder, rtol, ATOL, max_steps,
          first_step, OUT, STATS, STATUS, IDX, nxt, S, I, ST, Y, KK, YT, PL, work):
    """Rare path: give lane l a problem (IDX[nxt], ...) and start its pieces until it can step
    (phase _STEP) or no problem is left (_IDLE). Returns the next position in IDX.

    The same operations as the start of a problem in ``_kernels._solve`` and of ``_piece_erk``."""
    J, Jp, yt2, ft2, ys, fs = work[_W_J], work[_W_JP], work[_W_YT2], work[_W_FT2], work[_W_YS], work[_W_FS]
    y, K0, K1, ytmp, pl = Y[l], KK[l, 0], KK[l, 1], YT[l], PL[l]
    nt = t_eval.shape[0]
    N = y.shape[0]
    while True:
        phase = I[l, _PHASE]
        if phase == _NEED:
            if nxt >= IDX.shape[0]:
                I[l, _PHASE] = _IDLE
                return nxt
            m = IDX[nxt]
            nxt += 1
            if m < 0 or m >= P.shape[0]:
                continue
            I[l, _Q] = m
            I[l, _IE] = 0
            for i in range(P.shape[1]):
                pl[i] = P[m, i]
            for i in range(ST.shape[1]):
                ST[l, i] = 0
            for i in range(nt):
                for k in range(N):
                    OUT[m, i, k] = np.nan
            if not check_inputs(t0[m], t_eval, Y0[m], P[m], BPS[m], JUMPS[m], rtol, ATOL[m], max_steps, first_step):
                _finish(l, np.int64(INVALID_INPUT), t_eval, OUT, STATS, STATUS, I, ST)
                continue
            if nt == 0:
                _finish(l, np.int64(SUCCESS), t_eval, OUT, STATS, STATUS, I, ST)
                continue
            for k in range(N):
                y[k] = Y0[m, k]
            S[l, _T] = t0[m]
            S[l, _TFIN] = t_eval[nt - 1]
            I[l, _IE] = write_until(t_eval, 0, t0[m], OUT[m], y)
            I[l, _IB] = 0
            I[l, _PIECE] = 0
            _next_piece(l, rhs, jac, dfdp, t_eval, BPS, JUMPS, DTB, SIDX, n, OUT, STATS, STATUS, S, I, ST, Y, PL, work)
            continue
        if phase == _START:
            m = I[l, _Q]
            t = S[l, _T]
            ib = I[l, _IB]
            tend = S[l, _TFIN]
            if ib < BPS.shape[1] and BPS[m, ib] < tend:
                tend = BPS[m, ib]
            S[l, _TEND] = tend
            piece = I[l, _PIECE]
            rhs(t, y, pl, piece, K0)
            ST[l, STAT_F_EVALUATIONS] += 1
            if not all_finite(K0):
                _finish(l, np.int64(NON_FINITE), t_eval, OUT, STATS, STATUS, I, ST)
                continue
            hmax = tend - t
            if first_step > 0.0:
                h = min(first_step, hmax)
            else:
                h = hinit(rhs, jac, dfdp, t, y, K0, pl, piece, n, SIDX, None, False, eorder, hmax, rtol, ATOL[m],
                           ytmp, K1, J, Jp, yt2, ft2, ys, fs)
                ST[l, STAT_F_EVALUATIONS] += 1
            S[l, _H] = h
            S[l, _LFAC] = pi_control(eorder, 0.1)[1]
            I[l, _REJ] = 0
            I[l, _NNF] = 0
            I[l, _PHASE] = _STEP
            continue
        return nxt


@njit(cache=True, error_model="numpy")
def _next_piece(l, rhs, jac, dfdp, t_eval, BPS, JUMPS, DTB, SIDX, n, OUT, STATS, STATUS, S, I, ST, Y, PL, work):
    """Rare path, at the start of a problem or the end of a piece: apply the breakpoints at
    lane l's time (jumps, piece count) and start the next piece, or finish the problem at the
    last output time (as in ``_kernels._solve``: a piece ends at the next breakpoint)."""
    m = I[l, _Q]
    t = S[l, _T]
    if not t < S[l, _TFIN]:
        _finish(l, np.int64(SUCCESS), t_eval, OUT, STATS, STATUS, I, ST)
        return
    fb, fa = work[_W_FB], work[_W_FA]
    y, pl = Y[l], PL[l]
    ib = I[l, _IB]
    piece = I[l, _PIECE]
    while ib < BPS.shape[1] and BPS[m, ib] <= t:  # coincident breakpoints too
        apply_break(rhs, jac, dfdp, t, y, pl, piece, ib, n, SIDX, None, JUMPS[m], DTB[m], fb, fa)
        ib += 1
        piece += 1
    I[l, _IB] = ib
    I[l, _PIECE] = piece
    I[l, _PHASE] = _START


def _solve_explicit(rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, SIDX, n, npar, sens, kind, has_jac, autonomous,
                    etab, rtab, reals, ATOL, max_steps, OUT, STATS, STATUS, IDX):  # pragma: no cover - numba
    """Plain explicit solves of the problems IDX, two at a time in lock-step (lanes 0 and 1).

    Each lane runs the loop of ``_kernels._piece_erk`` (Hairer's PI control, FSAL, dense
    output) for its current problem; a lane whose problem ends takes the next one. Releases
    the GIL (see ``_kernels._solve``)."""
    ea, eb, ee, ec, edense = etab
    eorder, ethresh, rgamma, rorder, rtol, first_step = reals
    N = Y0.shape[1]
    L = 2  # lanes: the stages below are written out for each (see the module docstring)
    Y = np.empty((L, N))
    YN = np.empty((L, N))
    YT = np.empty((L, N))
    KK = np.empty((L, 7, N))
    PL = np.empty((L, P.shape[1]))
    # work arrays of hinit / apply_break (the sensitivity ones unused in plain mode)
    work = (np.zeros((n, n)), np.zeros((n, max(npar, 1))), np.empty(N), np.empty(2 * N), np.empty(n), np.empty(n),
            np.empty(n), np.empty(n))
    bth = np.empty(7)
    S = np.zeros((L, 5))
    I = np.zeros((L, 8), dtype=np.int64)  # noqa: E741
    ST = np.zeros((L, STATS.shape[1]), dtype=np.int64)
    ERR = np.empty(L)
    GO = np.zeros(L, dtype=np.bool_)
    # the views the model is called with, made once (a view per call costs reference counting)
    y0, yt0, yn0, p0 = Y[0], YT[0], YN[0], PL[0]
    K00, K01, K02, K03, K04, K05, K06 = KK[0, 0], KK[0, 1], KK[0, 2], KK[0, 3], KK[0, 4], KK[0, 5], KK[0, 6]
    y1, yt1, yn1, p1 = Y[1], YT[1], YN[1], PL[1]
    K10, K11, K12, K13, K14, K15, K16 = KK[1, 0], KK[1, 1], KK[1, 2], KK[1, 3], KK[1, 4], KK[1, 5], KK[1, 6]
    (a10, a20, a21, a30, a31, a32, a40, a41, a42, a43, a50, a51, a52, a53, a54, a60, a61, a62, a63, a64, a65,
     c1, c2, c3, c4, c5, c6, e0, e1, e2, e3, e4, e5, e6) = erk_coefficients(ea, ec, ee)
    nt = t_eval.shape[0]
    ctl = pi_control(eorder, 0.1)[0]  # the step may grow by 10, as in _piece_erk
    nxt = 0
    while True:
        # loop head of each lane: new problems and pieces (calls), then the checks of a step
        for l in range(L):
            while True:
                if I[l, _PHASE] == _NEED or I[l, _PHASE] == _START:
                    nxt = _load(l, rhs, jac, dfdp, t0, t_eval, Y0, P, BPS, JUMPS, DTB, SIDX, n, eorder, rtol, ATOL,
                                max_steps, first_step, OUT, STATS, STATUS, IDX, nxt, S, I, ST, Y, KK, YT, PL, work)
                if I[l, _PHASE] != _STEP:
                    break
                code, h, last = step_head(ST[l, STAT_STEPS] + ST[l, STAT_REJECTED], max_steps, S[l, _T], S[l, _H], S[l, _TEND],
                                           I[l, _NNF])
                if code != TAKE_STEP:
                    _finish(l, code, t_eval, OUT, STATS, STATUS, I, ST)
                    continue
                S[l, _H] = h
                I[l, _LAST] = 1 if last else 0
                break
            GO[l] = I[l, _PHASE] == _STEP
        go0, go1 = GO[0], GO[1]
        if not (go0 or go1):
            break
        tl0, hl0, pc0 = S[0, _T], S[0, _H], I[0, _PIECE]
        tl1, hl1, pc1 = S[1, _T], S[1, _H], I[1, _PIECE]
        # the stages of the two lanes, alternately (sums in the order of _piece_erk); written
        # out per lane: a helper taking the lane's arrays would bind them (reference counting)
        if go0:
            for k in range(N):
                yt0[k] = y0[k] + hl0 * (a10 * K00[k])
            rhs(tl0 + c1 * hl0, yt0, p0, pc0, K01)
        if go1:
            for k in range(N):
                yt1[k] = y1[k] + hl1 * (a10 * K10[k])
            rhs(tl1 + c1 * hl1, yt1, p1, pc1, K11)
        if go0:
            for k in range(N):
                yt0[k] = y0[k] + hl0 * (a20 * K00[k] + a21 * K01[k])
            rhs(tl0 + c2 * hl0, yt0, p0, pc0, K02)
        if go1:
            for k in range(N):
                yt1[k] = y1[k] + hl1 * (a20 * K10[k] + a21 * K11[k])
            rhs(tl1 + c2 * hl1, yt1, p1, pc1, K12)
        if go0:
            for k in range(N):
                yt0[k] = y0[k] + hl0 * (a30 * K00[k] + a31 * K01[k] + a32 * K02[k])
            rhs(tl0 + c3 * hl0, yt0, p0, pc0, K03)
        if go1:
            for k in range(N):
                yt1[k] = y1[k] + hl1 * (a30 * K10[k] + a31 * K11[k] + a32 * K12[k])
            rhs(tl1 + c3 * hl1, yt1, p1, pc1, K13)
        if go0:
            for k in range(N):
                yt0[k] = y0[k] + hl0 * (a40 * K00[k] + a41 * K01[k] + a42 * K02[k] + a43 * K03[k])
            rhs(tl0 + c4 * hl0, yt0, p0, pc0, K04)
        if go1:
            for k in range(N):
                yt1[k] = y1[k] + hl1 * (a40 * K10[k] + a41 * K11[k] + a42 * K12[k] + a43 * K13[k])
            rhs(tl1 + c4 * hl1, yt1, p1, pc1, K14)
        if go0:
            for k in range(N):
                yt0[k] = y0[k] + hl0 * (a50 * K00[k] + a51 * K01[k] + a52 * K02[k] + a53 * K03[k] + a54 * K04[k])
            rhs(tl0 + c5 * hl0, yt0, p0, pc0, K05)
        if go1:
            for k in range(N):
                yt1[k] = y1[k] + hl1 * (a50 * K10[k] + a51 * K11[k] + a52 * K12[k] + a53 * K13[k] + a54 * K14[k])
            rhs(tl1 + c5 * hl1, yt1, p1, pc1, K15)
        if go0:
            for k in range(N):
                yn0[k] = y0[k] + hl0 * (a60 * K00[k] + a61 * K01[k] + a62 * K02[k] + a63 * K03[k] + a64 * K04[k] + a65 * K05[k])
            rhs(tl0 + c6 * hl0, yn0, p0, pc0, K06)
        if go1:
            for k in range(N):
                yn1[k] = y1[k] + hl1 * (a60 * K10[k] + a61 * K11[k] + a62 * K12[k] + a63 * K13[k] + a64 * K14[k] + a65 * K15[k])
            rhs(tl1 + c6 * hl1, yn1, p1, pc1, K16)
        # squared RMS error norms (the values of _core.error_norm2 on the error vector of
        # _piece_erk, each component used as it is computed)
        for l in range(L):
            if GO[l]:
                m = I[l, _Q]
                h = S[l, _H]
                acc = 0.0
                for k in range(N):
                    err = h * (e0 * KK[l, 0, k] + e1 * KK[l, 1, k] + e2 * KK[l, 2, k] + e3 * KK[l, 3, k]
                               + e4 * KK[l, 4, k] + e5 * KK[l, 5, k] + e6 * KK[l, 6, k])
                    q = err / (ATOL[m, k] + rtol * max(abs(Y[l, k]), abs(YN[l, k])))
                    acc += q * q
                ERR[l] = acc / N
        # step-size control, dense output, piece ends (the loop of _piece_erk)
        for l in range(L):
            if not GO[l]:
                continue
            m = I[l, _Q]
            t = S[l, _T]
            h = S[l, _H]
            tend = S[l, _TEND]
            ST[l, STAT_F_EVALUATIONS] += 6
            err2 = ERR[l]
            if not math.isfinite(err2):
                # overflow or NaN in a trial step: shrink hard; a NaN at every h is NON_FINITE
                I[l, _NNF] += 1
                ST[l, STAT_REJECTED] += 1
                if I[l, _NNF] >= 30:
                    _finish(l, np.int64(NON_FINITE), t_eval, OUT, STATS, STATUS, I, ST)
                    continue
                S[l, _H] = h * 0.1
                I[l, _REJ] = 1
                continue
            I[l, _NNF] = 0
            lerr = 0.5 * math.log(err2)  # log(err); -inf for a zero error
            if err2 > 1.0:
                S[l, _H] = h / reject_factor(lerr, ctl)
                I[l, _REJ] = 1
                ST[l, STAT_REJECTED] += 1
                continue
            fac, lfacold = accept_factor(lerr, S[l, _LFAC], ctl)
            S[l, _LFAC] = lfacold
            hnew = h / fac
            ST[l, STAT_STEPS] += 1
            last = I[l, _LAST] != 0
            tnew = tend if last else t + h
            # dense output at the requested times inside (t, tnew]
            ie = I[l, _IE]
            while ie < nt and t_eval[ie] <= tnew:
                te = t_eval[ie]
                if te == tnew:
                    for k in range(N):
                        OUT[m, ie, k] = YN[l, k]
                else:
                    dense_weights(edense, (te - t) / h, bth)
                    b0, b1, b2, b3, b4, b5, b6 = bth[0], bth[1], bth[2], bth[3], bth[4], bth[5], bth[6]
                    for k in range(N):
                        OUT[m, ie, k] = Y[l, k] + h * (b0 * KK[l, 0, k] + b1 * KK[l, 1, k] + b2 * KK[l, 2, k]
                                                       + b3 * KK[l, 3, k] + b4 * KK[l, 4, k] + b5 * KK[l, 5, k]
                                                       + b6 * KK[l, 6, k])
                ie += 1
            I[l, _IE] = ie
            for k in range(N):
                Y[l, k] = YN[l, k]
                KK[l, 0, k] = KK[l, 6, k]
            S[l, _T] = tnew
            if last:
                _next_piece(l, rhs, jac, dfdp, t_eval, BPS, JUMPS, DTB, SIDX, n, OUT, STATS, STATUS, S, I, ST, Y, PL,
                            work)
                continue
            if I[l, _REJ] != 0:
                hnew = min(hnew, h)
            I[l, _REJ] = 0
            S[l, _H] = min(hnew, tend - tnew)


# compiled on first use, without LLVM loop vectorisation (see the module docstring)
__getattr__ = lazy_entries(
    globals(), {"solve_explicit": (_solve_explicit, signature(types.none, ETAB_T, types.none), False)}
)
