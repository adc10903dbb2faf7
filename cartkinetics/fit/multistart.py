"""Multi-start local search shared by every lmfit fit (series, joint, several outputs).

Why a vectorised inner loop
---------------------------
Stein's kink at Tmax makes the likelihood of a sparse series multimodal: each interval between
two sampling days can hold its own local optimum for Tmax. Finding the best one needs many
local searches, and one lmfit/TRF local fit costs 5-10 ms of mostly per-call Python overhead
(Parameters objects, an SVD per iteration, one model call per residual and per Jacobian). Here
all starts descend *together*: one Levenberg-Marquardt iteration is one batched call of the
model's ``sensitivities_batch`` for every start still moving, the residual vectors and
Jacobians of :func:`cartkinetics.fit.likelihood.residual_vector` computed for the whole
stack at once (normal error), and one batched solve of the damped normal equations. lmfit then
runs once, from the best point found, for the final polish (TRF with native bounds and the
analytic Jacobian); the result and its covariance come from that lmfit fit.

Starting points: the data-derived start, the best of ``n_candidates`` random points drawn
around it with the model's between-subject SDs (screened by one ``solve_batch``), and, for
models with a ``tmax`` parameter, one start with ``tmax`` in the middle of every interval
between consecutive sampling days (where the local optima are).

The vectorised loop needs the model's ``sensitivities_batch`` with every option of the fit
(covariates, non-primary observation); when it is missing the multi-start falls back to
screening the candidates and running lmfit from the ``n_starts`` best.
"""

from __future__ import annotations

import inspect
import math
import threading
import warnings
from typing import Any

import numpy as np
from scipy import special

LOG_2PI = math.log(2.0 * math.pi)
SIGMA_BOUNDS = (1e-3, 10.0)  # bounds of an estimated ln-scale residual SD
MAX_ITER = 50  # vectorised LM iterations (lmfit finishes the descent of the best point)
N_POLISH = 2  # lmfit polishes: the best end point and the next distinct one within ...
POLISH_MARGIN = 1.0  # ... this many units of -2 log L


def _batch_kwargs(model: Any, block: Any, primary: str) -> dict | None:
    """Keyword arguments for ``model.sensitivities_batch`` for this block, None if unusable."""
    fn = getattr(model, "sensitivities_batch", None)
    if fn is None:
        return None
    try:
        sig = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    kw: dict[str, Any] = {}
    if block.dose is not None:
        if "dose" not in sig:
            return None
        kw["dose"] = block.dose
    if block.covariates is not None:
        if "covariates" not in sig:
            return None
        kw["covariates"] = block.covariates
    oname = block.observation or primary
    if oname != model.primary_observation:
        if "observation" not in sig:
            return None
        kw["observation"] = oname
    return kw


class BatchResiduals:
    """Residual vectors and Jacobians of a :class:`cartkinetics.fit.problem.Problem` for a
    stack of parameter vectors.

    Same elements as ``Problem.residuals`` (quantified ``z``, censored
    ``sqrt(-2 log Phi(zc))``, the ``ln sigma`` element, the prior elements), computed for
    ``m`` internal vectors at once. Normal error only (the Student-t path falls back).
    """

    def __init__(self, problem: Any) -> None:
        self.p = problem
        self.kws = [_batch_kwargs(problem.model, b, problem.observation) for b in problem.blocks]
        self.ok = all(k is not None for k in self.kws) and all(
            problem.res_of(b).error == "normal" for b in problem.blocks
        )
        nth = problem.n_theta
        self._maps = []
        for b in problem.blocks:
            free = np.flatnonzero(b.pmap >= 0)
            idx = b.pmap[free]
            Map = np.zeros((free.size, nth))
            Map[np.arange(free.size), idx] = 1.0  # model parameter -> internal coordinate
            d = b.data
            self._maps.append((free, idx, problem.is_log[idx], Map,
                               np.flatnonzero(~d.censored), np.flatnonzero(d.censored),
                               d.log_y[~d.censored], d.log_lloq[d.censored]))

    def params(self, TH: np.ndarray, b: Any) -> np.ndarray:
        """Model parameter table (m, n_params) of the block for the internal rows TH."""
        i = next(j for j, x in enumerate(self.p.blocks) if x is b)
        free, idx, lg = self._maps[i][:3]
        P = np.tile(b.pfixed, (TH.shape[0], 1))
        V = TH[:, idx]
        with np.errstate(over="ignore"):
            P[:, free] = np.where(lg[None, :], np.exp(V), V)
        return P

    def objective(self, TH: np.ndarray) -> np.ndarray:
        """``sum r^2`` for every row of TH (m, n_theta), one ``solve_batch`` per block; inf
        where the model cannot be solved. Equal to the fit's objective up to a constant."""
        p = self.p
        m = TH.shape[0]
        k = p.k
        F = np.zeros(m)
        if m == 0:
            return F
        nq = 0
        for b in p.blocks:
            P = self.params(TH, b)
            kw = {} if b.covariates is None else {"covariates": b.covariates}
            with np.errstate(all="ignore"):
                sol = p.model.solve_batch(b.data.t, P, b.dose, **kw)
                obs = np.asarray(sol.observed[b.observation or p.observation], float)
                fin = (np.asarray(sol.status) == 0) & np.all(np.isfinite(obs) & (obs > 0), axis=1)
                lf = np.log(np.where(fin[:, None], obs, 1.0))
            sig = (np.exp(TH[:, k]) if p.with_sigma
                   else np.full(m, p.sigma(TH[0], b)))[:, None]
            data = b.data
            q, c = ~data.censored, data.censored
            z = (data.log_y[q][None, :] - lf[:, q]) / sig
            F += np.sum(z * z, axis=1)
            if c.any():
                zc = (data.log_lloq[c][None, :] - lf[:, c]) / sig
                F += -2.0 * np.sum(special.log_ndtr(zc), axis=1)
            F[~fin] = np.inf
            nq += data.n_quantified
        if p.with_sigma:
            F += np.maximum(2.0 * nq * TH[:, k] + 1.0 - 2.0 * nq * math.log(SIGMA_BOUNDS[0]), 0.0)
        pm = np.isfinite(p.prior_sd)
        if pm.any():
            F += np.sum(((TH[:, pm] - p.prior_mu[pm]) / p.prior_sd[pm]) ** 2, axis=1)
        return F

    def __call__(self, TH: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """r (m, M), J (m, M, n_theta), ok (m,) for the rows of TH (m, n_theta)."""
        p = self.p
        m, nth = TH.shape
        k = p.k
        rs, Js = [], []
        good = np.ones(m, bool)
        nq = 0
        for b, kw, mp in zip(p.blocks, self.kws, self._maps, strict=True):
            free, idx, lg, Map, qi, ci, ly, ll = mp
            P = np.tile(b.pfixed, (m, 1))
            with np.errstate(over="ignore"):
                P[:, free] = np.where(lg[None, :], np.exp(TH[:, idx]), TH[:, idx])
            n = b.data.t.size
            with np.errstate(all="ignore"):
                obs, dobs, st = p.model.sensitivities_batch(b.data.t, P, **kw)
                obs = np.asarray(obs, float)
                dobs = np.asarray(dobs, float)[:, :, free]
                fin = (np.asarray(st) == 0) & np.all(np.isfinite(obs) & (obs > 0), axis=1)
                fin &= np.all(np.isfinite(dobs), axis=(1, 2))
                good &= fin
                obs = np.where(fin[:, None], obs, 1.0)
                lf = np.log(obs)
                # d ln f / d theta (m, n, n_theta), through exp for log-scale parameters
                scale = np.where(lg[None, :], P[:, free], 1.0)
                D = ((dobs / obs[:, :, None]) * scale[:, None, :]) @ Map
                D[~fin] = 0.0
            sig = np.exp(TH[:, k]) if p.with_sigma else np.full(m, p.sigma(TH[0], b))
            r = np.empty((m, n))
            w = np.empty((m, n))  # d r / d ln f
            z = (ly[None, :] - lf[:, qi]) / sig[:, None]
            r[:, qi] = z
            w[:, qi] = -1.0 / sig[:, None]
            if ci.size:
                zc = (ll[None, :] - lf[:, ci]) / sig[:, None]
                lcdf = special.log_ndtr(zc)
                rc = np.sqrt(np.maximum(-2.0 * lcdf, 0.0))
                with np.errstate(all="ignore"):
                    lam = np.exp(-0.5 * zc * zc - 0.5 * LOG_2PI - lcdf)
                    drc = np.where(rc > 1e-150, -lam / np.where(rc > 1e-150, rc, 1.0), 0.0)
                r[:, ci] = rc
                w[:, ci] = -drc / sig[:, None]
            J = w[:, :, None] * D
            if p.with_sigma:
                J[:, qi, k] = -z
                if ci.size:
                    J[:, ci, k] = -drc * zc
            nq += qi.size
            rs.append(r)
            Js.append(J)
        if p.with_sigma:
            K = 1.0 - 2.0 * nq * math.log(SIGMA_BOUNDS[0])
            val = np.sqrt(np.maximum(2.0 * nq * TH[:, k] + K, 0.0))
            rs.append(val[:, None])
            Jv = np.zeros((m, 1, nth))
            Jv[:, 0, k] = np.where(val > 0, nq / np.where(val > 0, val, 1.0), 0.0)
            Js.append(Jv)
        pm = np.isfinite(p.prior_sd)
        if pm.any():
            idx = np.flatnonzero(pm)
            rs.append((TH[:, idx] - p.prior_mu[idx]) / p.prior_sd[idx])
            Jp = np.zeros((m, idx.size, nth))
            Jp[:, np.arange(idx.size), idx] = 1.0 / p.prior_sd[idx]
            Js.append(Jp)
        return np.concatenate(rs, axis=1), np.concatenate(Js, axis=1), good


def batched_lm(ev: BatchResiduals, starts: np.ndarray, lower: np.ndarray, upper: np.ndarray,
               max_iter: int = 30, ftol: float = 1e-10, retire_after: int = 10,
               retire_margin: float = 5.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Levenberg-Marquardt from every row of ``starts`` at once, within the bounds.

    Variables at a bound whose gradient points outwards are held there for the step (active
    set); the step of the others is clipped to the box. From iteration ``retire_after`` on, a
    start whose objective is more than ``retire_margin`` above the best is dropped (it cannot
    win: see docs/fitting.md). The loop ends when every remaining start has converged
    (relative decrease below ``ftol``, or damping above 1e8) or after ``max_iter`` iterations;
    the best point then goes to lmfit, which finishes the descent.

    Returns
    -------
    end points (m, n_theta), their objectives ``sum r^2`` (m; inf where the model could not be
    evaluated at the start), iterations run.
    """
    TH = np.clip(np.array(starts, float), lower, upper)
    m, n = TH.shape
    r, J, ok = ev(TH)
    F = np.where(ok, np.sum(r * r, axis=1), np.inf)
    lam = np.full(m, 1e-3)
    active = np.isfinite(F)
    span = upper - lower
    it = 0
    for it in range(1, max_iter + 1):
        if it > retire_after:
            active &= F <= np.min(F) + retire_margin
        ia = np.flatnonzero(active)
        if ia.size == 0:
            break
        Ja, ra, Ta = J[ia], r[ia], TH[ia]
        A = np.einsum("mij,mik->mjk", Ja, Ja)
        g = np.einsum("mij,mi->mj", Ja, ra)
        # active bounds: at a bound with the descent direction (-g) pointing out of the box
        held = ((Ta - lower <= 1e-10 * span) & (g > 0)) | ((upper - Ta <= 1e-10 * span) & (g < 0))
        g = np.where(held, 0.0, g)
        hm = held[:, :, None] | held[:, None, :]
        A = np.where(hm, 0.0, A)
        d = np.diagonal(A, axis1=1, axis2=2)
        d = np.maximum(d, 1e-9 * np.maximum(d.max(axis=1, keepdims=True), 1e-12))
        d = np.where(held, 1.0, d)
        M = A.copy()
        di = np.arange(n)
        M[:, di, di] += lam[ia, None] * d + held
        try:
            step = -np.linalg.solve(M, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -np.einsum("mjk,mk->mj", np.linalg.pinv(M), g)
        trial = np.clip(Ta + step, lower, upper)
        rt, Jt, okt = ev(trial)
        Ft = np.where(okt, np.sum(rt * rt, axis=1), np.inf)
        acc = Ft < F[ia]
        gain = F[ia] - Ft
        moved = np.max(np.abs(trial - Ta), axis=1)
        ai = ia[acc]
        TH[ai], r[ai], J[ai], F[ai] = trial[acc], rt[acc], Jt[acc], Ft[acc]
        lam[ai] = np.maximum(lam[ai] / 3.0, 1e-9)
        lam[ia[~acc]] *= 4.0
        done = (acc & ((gain <= ftol * (1.0 + Ft)) | (moved < 1e-10))) | (~acc & (lam[ia] > 1e8))
        active[ia[done]] = False
    return TH, F, it


def start_points(problem: Any, ev: BatchResiduals | None, theta0: np.ndarray,
                 names: list[str], spread: np.ndarray, n_starts: int, n_candidates: int,
                 rng: np.random.Generator, days: np.ndarray | None) -> np.ndarray:
    """``n_starts`` starting points: the data start, the Tmax scan, the best random points.

    Tmax scan (models with ``log_tmax``): ``tmax`` at the middle of each interval between
    consecutive sampling days (and day 0), nearest to the data start first. The remaining
    places go to the best of ``n_candidates`` points drawn around the data start with
    ``spread`` (the between-subject SDs), screened in one vectorised evaluation.
    """
    starts = [theta0]
    if days is not None and "log_tmax" in names:
        i = names.index("log_tmax")
        d = np.unique(np.concatenate([[0.0], np.asarray(days, float)]))
        mids = 0.5 * (d[:-1] + d[1:])
        mids = mids[(mids > math.exp(problem.lower[i])) & (mids < math.exp(problem.upper[i]))]
        mids = mids[np.argsort(np.abs(np.log(mids) - theta0[i]))]
        for t in mids[: max(n_starts - 1, 0)]:
            th = theta0.copy()
            th[i] = math.log(t)
            starts.append(th)
    n_rand = n_starts - len(starts)
    if n_candidates > 0 and n_rand > 0:
        D = rng.standard_normal((n_candidates, theta0.size)) * spread[None, :]
        C = np.clip(theta0[None, :] + D, problem.lower, problem.upper)
        sc = ev.objective(C) if ev is not None else problem.batch_neg2ll(C)
        order = [int(j) for j in np.argsort(sc) if np.isfinite(sc[j])][:n_rand]
        starts.extend(C[order])
    return np.array(starts[:max(n_starts, 1)])


def _polish_order(TH: np.ndarray, F: np.ndarray, n_polish: int, margin: float) -> list[int]:
    """The best end point, then up to ``n_polish - 1`` distinct others within ``margin``."""
    order = [int(j) for j in np.argsort(F) if np.isfinite(F[j])]
    picked = order[:1]
    for j in order[1:]:
        if len(picked) >= n_polish or F[j] > F[picked[0]] + margin:
            break
        if all(np.max(np.abs(TH[j] - TH[i])) > 1e-3 for i in picked):
            picked.append(j)
    return picked


def _refine_kink(problem: Any, best: tuple, names: list[str], max_nfev: int,
                 days: np.ndarray | None) -> tuple:
    """Polish again with Tmax held at a sampling day when the optimum sits on that day.

    Stein's curve has a kink at Tmax, so an optimum with Tmax on a sampling day is a corner
    of -2 log L, where a gradient method converges slowly in the other parameters. With Tmax
    held there the problem is smooth; the better of the two fits is kept.
    """
    if days is None or "log_tmax" not in names:
        return best
    i = names.index("log_tmax")
    ld = np.log(np.asarray(days, float)[np.asarray(days, float) > 0])
    if ld.size == 0:
        return best
    j = int(np.argmin(np.abs(ld - best[0][i])))
    if abs(ld[j] - best[0][i]) > 1e-4 or not (problem.lower[i] < ld[j] < problem.upper[i]):
        return best
    th0 = best[0].copy()
    th0[i] = ld[j]
    th, out = local_fit(problem, th0, names, max_nfev, hold=i)
    val = problem.objective(th)
    return (th, out, val) if np.isfinite(val) and val < best[2] else best


def fit_multistart(problem: Any, theta0: np.ndarray, names: list[str], n_candidates: int,
                   n_starts: int, spread: np.ndarray, rng: np.random.Generator, max_nfev: int,
                   days: np.ndarray | None = None, max_iter: int | None = None,
                   n_polish: int | None = None, polish_margin: float | None = None,
                   vectorised: bool = True):
    """Multi-start fit of a :class:`cartkinetics.fit.problem.Problem`: the shared global step
    of every lmfit fit.

    ``n_starts`` local searches (see :func:`start_points`) run together in the vectorised
    Levenberg-Marquardt loop (:func:`batched_lm`); lmfit then polishes the best end point and
    gives the result. Without a usable ``sensitivities_batch`` (or with Student-t errors),
    lmfit runs from the ``min(n_starts, 5)`` best screened points instead.
    ``vectorised=False``: lmfit runs from every one of the ``n_starts`` best screened points
    (the data start and the best random candidates; no Tmax scan), the former default.

    Returns
    -------
    theta, lmfit MinimizerResult, objective at theta, number of local searches
    """
    max_iter = MAX_ITER if max_iter is None else max_iter
    n_polish = N_POLISH if n_polish is None else n_polish
    polish_margin = POLISH_MARGIN if polish_margin is None else polish_margin
    ev = BatchResiduals(problem) if vectorised else None
    if n_starts <= 1:
        th, out = local_fit(problem, theta0, names, max_nfev)
        return th, out, problem.objective(th), 1
    if ev is not None and ev.ok:
        S = start_points(problem, ev, theta0, names, spread, n_starts, n_candidates, rng, days)
        TH, F, _ = batched_lm(ev, S, problem.lower, problem.upper, max_iter=max_iter)
        if np.any(np.isfinite(F)):
            best = None
            for j in _polish_order(TH, F, n_polish, polish_margin):
                th, out = local_fit(problem, TH[j], names, max_nfev)
                val = problem.objective(th)
                if best is None or (np.isfinite(val) and val < best[2]):
                    best = (th, out, val)
            if best is not None and np.isfinite(best[2]):
                best = _refine_kink(problem, best, names, max_nfev, days)
                return best[0], best[1], best[2], S.shape[0]
            # the model could not be solved where the polish ended (an ODE at an extreme
            # point): fall through to lmfit from the screened starts
    n_lm = min(n_starts, 5) if vectorised else n_starts
    S = start_points(problem, None, theta0, names, spread, n_lm, n_candidates, rng, None)
    best = None
    for th0 in S:
        th, out = local_fit(problem, th0, names, max_nfev)
        val = problem.objective(th)
        if best is None or (np.isfinite(val) and val < best[2]):
            best = (th, out, val)
    assert best is not None
    return best[0], best[1], best[2], S.shape[0]


_CACHE = threading.local()


def _parameters(all_names: list[str]) -> Any:
    """An lmfit Parameters object with these names, built once per thread and reused: building
    one creates an asteval interpreter, about 1 ms, a large part of a polish from a converged
    point (lmfit deep-copies it inside ``minimize``, so reuse is safe within a thread)."""
    import lmfit

    cache = getattr(_CACHE, "params", None)
    if cache is None:
        cache = _CACHE.params = {}
    key = tuple(all_names)
    pars = cache.get(key)
    if pars is None:
        pars = lmfit.Parameters()
        for nm in all_names:
            pars.add(nm, value=0.0)
        cache[key] = pars
    return pars


def local_fit(problem: Any, theta0: np.ndarray, names: list[str], max_nfev: int,
              hold: int | None = None):
    """One lmfit least_squares run (TRF, native bounds, analytic Jacobian); coordinate
    ``hold`` (an index) stays at its start value."""
    import lmfit

    all_names = names + (["log_sigma"] if problem.with_sigma else [])
    pars = _parameters(all_names)
    for nm, v, lo, hi in zip(all_names, theta0, problem.lower, problem.upper, strict=True):
        par = pars[nm]
        par.set(value=float(v), min=float(lo), max=float(hi), vary=True)
    if hold is not None:
        pars[all_names[hold]].set(vary=False)

    def vec(p: Any) -> np.ndarray:
        return np.array([p[nm].value for nm in all_names])

    def fcn(p: Any) -> np.ndarray:
        return problem.residuals(vec(p), jac=False)

    def jac(p: Any) -> np.ndarray:
        J = problem.residuals(vec(p), jac=True)
        return J if hold is None else np.delete(J, hold, axis=1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = lmfit.minimize(
            fcn, pars, method="least_squares", jac=jac, max_nfev=max_nfev, scale_covar=False,
            calc_covar=False, x_scale="jac", ftol=1e-9, xtol=1e-9, gtol=1e-9,
        )
    return vec(out.params), out
