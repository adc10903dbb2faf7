"""The per-patient fit problem: series -> residuals and Jacobian over blocks, the parameter
space (internal log/natural scale with bounds), starting values and the covariance.

Shared by the single-series fit (:mod:`cartkinetics.fit.individual`), the joint fit of two
infusions (:mod:`cartkinetics.fit.joint`) and the multi-output fit
(:mod:`cartkinetics.fit.multi_output`); public so that these modules import no private names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.likelihood import (
    PreparedSeries,
    ResidualModel,
    loglik_terms,
    residual_vector,
    row_neg2ll_derivatives,
)
from cartkinetics.fit.multistart import SIGMA_BOUNDS
from cartkinetics.solvers.status import SUCCESS

Z95 = 1.959963984540054
PENALTY = 1e4  # residual value returned where the model cannot be solved


def get_model(model: Any):
    """A library model by name (``models.get``), or the Model object given."""
    from cartkinetics import models

    return models.get(model) if isinstance(model, str) else model


def fix_order_of(model: Any) -> list[str]:
    """Parameters fixed first (at typical values) when a series is too short for all of
    them: the model's ``fix_order``, else the parameters in reverse order."""
    if getattr(model, "fix_order", ()):
        return list(model.fix_order)
    return list(reversed(model.param_names))


def series_key(series: Any) -> tuple[str, int, str]:
    """(patient, infusion, assay) of a Series (or of any object with those attributes)."""
    key = getattr(series, "key", None)
    if key is not None:
        return tuple(key)  # type: ignore[return-value]
    return (
        str(getattr(series, "patient", "")),
        int(getattr(series, "infusion", 1)),
        str(getattr(series, "assay", "")),
    )


# ----------------------------------------------------------------------------- problem
@dataclass
class Block:
    """One series inside a (possibly joint) fit."""

    data: PreparedSeries
    dose: Any
    pmap: np.ndarray  # model parameter j -> internal index, -1 if fixed
    pfixed: np.ndarray  # values of fixed model parameters (natural scale)
    covariates: dict | None = None
    observation: str | None = None  # model output compared with this block (default: problem's)
    residual: ResidualModel | None = None  # per-block residual (default: the problem's)
    cache: tuple | None = None  # (theta bytes, ln f, d ln f / d theta) of the last evaluation


class Problem:
    """Internal parameter vector theta -> residual vector and Jacobian over blocks."""

    def __init__(
        self,
        model: Any,
        blocks: list[Block],
        names: list[str],
        is_log: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        residual: ResidualModel,
        observation: str,
    ) -> None:
        self.model = model
        self.blocks = blocks
        self.names = list(names)  # internal names (without ln sigma)
        self.is_log = np.asarray(is_log, dtype=bool)
        self.k = len(names)
        self.residual = residual
        self.with_sigma = residual.estimate_sigma
        self.observation = observation
        lo, hi = np.asarray(lower, float), np.asarray(upper, float)
        if self.with_sigma:
            lo = np.append(lo, math.log(SIGMA_BOUNDS[0]))
            hi = np.append(hi, math.log(SIGMA_BOUNDS[1]))
        self.lower, self.upper = lo, hi
        # optional Gaussian prior on internal (log) parameters: MAP instead of ML
        self.prior_mu = np.full(self.n_theta, np.nan)
        self.prior_sd = np.full(self.n_theta, np.nan)
        self.nfev = 0
        self.njev = 0
        self.solver_failures = 0
        self._sens_ok = True

    @property
    def n_theta(self) -> int:
        return self.k + (1 if self.with_sigma else 0)

    @property
    def has_prior(self) -> bool:
        return bool(np.any(np.isfinite(self.prior_sd)))

    def prior_term(self, theta: np.ndarray) -> float:
        """-2 log prior (up to a constant): sum ((theta - mu) / sd)^2 over the prior entries."""
        m = np.isfinite(self.prior_sd)
        if not m.any():
            return 0.0
        return float(np.sum(((theta[m] - self.prior_mu[m]) / self.prior_sd[m]) ** 2))

    def objective(self, theta: np.ndarray) -> float:
        """What the fit minimises: -2 log L, plus -2 log prior for a MAP fit."""
        return self.neg2ll(theta) + self.prior_term(theta)

    def sigma(self, theta: np.ndarray, b: Block | None = None) -> float:
        """Residual SD on the ln scale: estimated (last element of theta) or fixed."""
        if self.with_sigma:
            return float(math.exp(theta[self.k]))
        if b is not None and b.residual is not None:
            return b.residual.sigma
        return self.residual.sigma

    def res_of(self, b: Block) -> ResidualModel:
        """The residual model of block ``b`` (its own, else the problem's)."""
        return b.residual if b.residual is not None else self.residual

    def block_params(self, theta: np.ndarray, b: Block) -> np.ndarray:
        """Natural-scale model parameters of block ``b`` at internal vector ``theta``."""
        p = b.pfixed.copy()
        free = b.pmap >= 0
        idx = b.pmap[free]
        vals = theta[idx]
        p[free] = np.where(self.is_log[idx], np.exp(vals), vals)
        return p

    def predict(self, theta: np.ndarray, b: Block, jac: bool):
        """ln f at the block's times and d ln f / d theta (n, k); None on solver failure."""
        p = self.block_params(theta, b)
        t = b.data.t
        kw = {} if b.covariates is None else {"covariates": b.covariates}
        oname = b.observation or self.observation
        if not jac and self._sens_ok and self.model.is_closed_form:
            # closed form: sensitivities cost about a solve; compute them now and keep them for
            # the Jacobian call that least_squares makes at an accepted point
            lf, J = self.predict(theta, b, jac=True)
            return lf, None
        if jac and b.cache is not None and b.cache[0] == theta.tobytes():
            return b.cache[1], b.cache[2]
        if not jac:
            sol = self.model.solve(t, p, b.dose, **kw)
            obs = np.asarray(sol.observed[oname], dtype=float)
            if sol.status != SUCCESS or not np.all(np.isfinite(obs)) or np.any(obs <= 0):
                return None, None
            return np.log(obs), None
        obs = dobs = None
        status = SUCCESS
        if self._sens_ok:
            try:
                kws = dict(kw)
                if oname != self.model.primary_observation:
                    kws["observation"] = oname
                obs, dobs, status = self.model.sensitivities(t, p, b.dose, **kws)
                obs = np.asarray(obs, float)
                dobs = np.asarray(dobs, float)
            except NotImplementedError:
                self._sens_ok = False
        bad_grad = status == SUCCESS and dobs is not None and not np.all(np.isfinite(dobs))
        if not self._sens_ok or bad_grad:
            return self._predict_fd(theta, b, kw)
        if status != SUCCESS or not np.all(np.isfinite(obs)) or np.any(obs <= 0):
            return None, None
        lf = np.log(obs)
        J = np.zeros((t.size, self.k))
        dl = dobs / obs[:, None]
        for j in np.flatnonzero(b.pmap >= 0):
            i = b.pmap[j]
            J[:, i] += dl[:, j] * (p[j] if self.is_log[i] else 1.0)
        b.cache = (theta.tobytes(), lf, J)
        return lf, J

    def _predict_fd(self, theta: np.ndarray, b: Block, kw: dict):
        """Forward differences in theta through one solve_batch call."""
        used = sorted({int(i) for i in b.pmap[b.pmap >= 0]})
        h = 1e-6
        rows = [self.block_params(theta, b)]
        for i in used:
            th = theta.copy()
            th[i] += h * max(1.0, abs(th[i]))
            rows.append(self.block_params(th, b))
        sol = self.model.solve_batch(b.data.t, np.array(rows), b.dose, **kw)
        obs = np.asarray(sol.observed[b.observation or self.observation], float)
        if sol.status[0] != SUCCESS or not np.all(np.isfinite(obs[0])) or np.any(obs[0] <= 0):
            return None, None
        with np.errstate(divide="ignore", invalid="ignore"):
            lobs = np.log(obs)
        J = np.zeros((b.data.t.size, self.k))
        for r, i in enumerate(used, start=1):
            step = h * max(1.0, abs(theta[i]))
            if sol.status[r] == SUCCESS and np.all(np.isfinite(lobs[r])):
                J[:, i] = (lobs[r] - lobs[0]) / step
        return lobs[0], J

    def residuals(self, theta: np.ndarray, jac: bool = False):
        """Residual vector at ``theta`` (M3 elements for BLQ rows), and its Jacobian with
        ``jac=True``."""
        if jac:
            self.njev += 1
        else:
            self.nfev += 1
        rs, Js = [], []
        nq_total = 0
        for b in self.blocks:
            lf, J = self.predict(theta, b, jac)
            if lf is None:
                self.solver_failures += 1
                m = b.data.n
                rs.append(np.full(m, PENALTY / math.sqrt(max(m, 1))))
                if jac:
                    Js.append(np.zeros((m, self.n_theta)))
                continue
            sig = self.sigma(theta, b)
            r, Jb = residual_vector(lf, J, b.data, self.res_of(b), sig, with_sigma=False)
            nq_total += b.data.n_quantified
            if jac:
                if self.with_sigma:
                    # d r / d ln sigma = -(dr/dz) z for each element; from the
                    # Jacobian with respect to ln f: dz/dlnf = -1/sigma, dz/dlns = -z
                    _, Js_full = residual_vector(
                        lf, np.zeros((lf.size, 0)), b.data, self.res_of(b), sig, with_sigma=True
                    )
                    Jb = np.hstack([Jb, Js_full[: lf.size, -1:]])
                Js.append(Jb)
            rs.append(r)
        if self.with_sigma:
            nq = sum(b.data.n_quantified for b in self.blocks)
            K = 1.0 - 2.0 * nq * math.log(SIGMA_BOUNDS[0])
            val = math.sqrt(max(2.0 * nq * math.log(self.sigma(theta)) + K, 0.0))
            rs.append(np.array([val]))
            if jac:
                row = np.zeros((1, self.n_theta))
                row[0, -1] = nq / val if val > 0 else 0.0
                Js.append(row)
        m = np.isfinite(self.prior_sd)
        if m.any():
            idx = np.flatnonzero(m)
            rs.append((theta[idx] - self.prior_mu[idx]) / self.prior_sd[idx])
            if jac:
                rows = np.zeros((idx.size, self.n_theta))
                rows[np.arange(idx.size), idx] = 1.0 / self.prior_sd[idx]
                Js.append(rows)
        r = np.concatenate(rs)
        if jac:
            return np.vstack(Js)
        return r

    def neg2ll(self, theta: np.ndarray) -> float:
        """-2 log L (exact, with constants) at theta; inf on solver failure."""
        total = 0.0
        for b in self.blocks:
            lf, _ = self.predict(theta, b, jac=False)
            if lf is None:
                return math.inf
            total += -2.0 * float(
                np.sum(loglik_terms(lf, b.data, self.res_of(b), self.sigma(theta, b)))
            )
        return total

    def information(self, theta: np.ndarray) -> np.ndarray:
        """Gauss-Newton observed information H of -2 log L (n_theta x n_theta)."""
        H = np.zeros((self.n_theta, self.n_theta))
        for b in self.blocks:
            lf, J = self.predict(theta, b, jac=True)
            if lf is None:
                return np.full((self.n_theta, self.n_theta), np.nan)
            d = row_neg2ll_derivatives(lf, b.data, self.res_of(b), self.sigma(theta, b))
            k = self.k
            H[:k, :k] += J.T @ (d["duu"][:, None] * J)
            if self.with_sigma:
                # chain rule: s = ln sigma is the internal coordinate already
                H[:k, k] += J.T @ d["dus"]
                H[k, :k] = H[:k, k]
                H[k, k] += float(np.sum(d["dss"]))
        m = np.isfinite(self.prior_sd)
        H[m, m] += 2.0 / self.prior_sd[m] ** 2
        return H

    def batch_neg2ll(self, thetas: np.ndarray) -> np.ndarray:
        """Objective for many theta rows (one solve_batch per block); used by the global step."""
        out = np.array([self.prior_term(th) for th in thetas])
        for b in self.blocks:
            P = np.array([self.block_params(th, b) for th in thetas])
            kw = {} if b.covariates is None else {"covariates": b.covariates}
            try:
                sol = self.model.solve_batch(b.data.t, P, b.dose, **kw)
            except Exception:  # a batch that cannot be solved at all: score rows one by one
                out += np.array([self.neg2ll(th) for th in thetas])  # prior already in
                continue
            obs = np.asarray(sol.observed[b.observation or self.observation], float)
            st = np.asarray(sol.status)
            for r in range(thetas.shape[0]):
                if st[r] != 0 or not np.all(np.isfinite(obs[r])) or np.any(obs[r] <= 0):
                    out[r] = np.inf
                    continue
                out[r] += -2.0 * float(
                    np.sum(
                        loglik_terms(
                            np.log(obs[r]), b.data, self.res_of(b), self.sigma(thetas[r], b)
                        )
                    )
                )
        return out


# ----------------------------------------------------------------------------- starts
def data_start(model: Any, series: Any) -> dict[str, float]:
    """Starting values (natural scale) derived from the observations.

    Observed Cmax and its day seed ``cmax`` and ``tmax``; for Stein-type models the early
    log-slope seeds ``foldx``, the slope after the peak ``alpha``, the terminal slope
    ``beta`` and the late level ``fb``. Other parameters start at typical values.
    """
    names = model.param_names
    start = dict(zip(names, model.typical.tolist(), strict=True))
    day = np.asarray(series.day, float)
    val = np.asarray(series.value, float)
    q = ~np.asarray(series.blq, bool) & np.isfinite(val) & (val > 0)
    if q.sum() == 0:
        return start
    tq, cq = day[q], val[q]
    i = int(np.argmax(cq))
    cmax, tmax = float(cq[i]), float(tq[i])
    par = {p.name: p for p in model.parameters}

    def put(name: str, v: float) -> None:
        if name in par and np.isfinite(v):
            p = par[name]
            lo = p.lower if p.lower > 0 else 1e-12
            start[name] = float(min(max(v, lo * 1.0001), p.upper * 0.9999))

    put("cmax", cmax)
    if tmax > 0:
        put("tmax", tmax)
    if {"foldx", "alpha", "beta", "fb"} <= set(par) and "tmax" in par:
        T = start["tmax"]
        early = np.flatnonzero((tq < tmax) & (tq > 0))
        if early.size:
            j = early[0]
            rho = math.log(cmax / cq[j]) / max(tmax - tq[j], 1e-3)
            put("foldx", min(max(math.exp(min(rho * T, 30.0)), 10.0), 1e7))
        after = np.flatnonzero(tq > tmax)
        if after.size:
            j = after[0]
            a = -math.log(cq[j] / cmax) / max(tq[j] - tmax, 1e-3)
            put("alpha", min(max(a, 0.02), 2.0))
        late = np.flatnonzero(tq > tmax + 30)
        if late.size >= 2:
            j0, j1 = late[0], late[-1]
            bta = -math.log(cq[j1] / cq[j0]) / max(tq[j1] - tq[j0], 1e-3)
            bta = min(max(bta, 1e-4), 0.1)
            put("beta", bta)
            put("fb", min(max(cq[j1] / (cmax * math.exp(-bta * (tq[j1] - tmax))), 1e-5), 0.5))
        elif late.size == 1:
            j1 = late[0]
            bta = start["beta"]
            put("fb", min(max(cq[j1] / (cmax * math.exp(-bta * (tq[j1] - tmax))), 1e-5), 0.5))
    return start


# ----------------------------------------------------------------------------- result

def screen_series(data: PreparedSeries, n_free: int) -> tuple[str, str] | None:
    """Status and reason when a series cannot be fitted; None when it can."""
    if data.n == 0:
        return "too_few_points", "no observation enters the likelihood"
    if data.n_quantified == 0:
        return "all_blq", (
            f"all {data.n_censored} observation(s) are below the LLOQ: the curve is not "
            "identifiable (only upper limits)"
        )
    if data.n < n_free:
        return "too_few_points", (
            f"{data.n} observation(s) for {n_free} free parameter(s): fewer points than "
            "parameters"
        )
    if data.n_quantified < 2:
        return "too_few_points", "a single quantified observation cannot define a curve"
    ly = data.log_y[~data.censored]
    if data.n_quantified >= 2 and np.ptp(ly) < 1e-10 and data.n_censored == 0:
        return "constant", (
            f"all {data.n_quantified} quantified values are equal ({math.exp(ly[0]):g}): "
            "no expansion or decline to fit"
        )
    return None


def resolve_residual(model: Any, residual: ResidualModel | None, censoring: str | None,
                      sigma: float | str | None, error: str | None) -> ResidualModel:
    """The residual model of a fit: ``residual`` as given, else built from ``censoring``
    (default M3), ``sigma`` (a number: fixed; "estimate"; default the model's published SD)
    and ``error``."""
    if residual is None:
        published = getattr(model, "residual_sd", None)
        estimate = False
        s = published if published else 0.5
        if sigma == "estimate" or (sigma is None and not published):
            estimate = True
        elif sigma is not None:
            s = float(sigma)
        residual = ResidualModel(
            error=error or "normal", sigma=float(s), censoring=censoring or "M3",
            estimate_sigma=estimate,
        )
    elif censoring is not None and censoring != residual.censoring:
        residual = ResidualModel(
            error=residual.error, sigma=residual.sigma, nu=residual.nu, censoring=censoring,
            estimate_sigma=residual.estimate_sigma,
        )
    return residual


class ParameterSpace(NamedTuple):
    """The parameters one fit estimates (a tuple: ``fixed, free, names, is_log, lower, upper``).

    ``fixed``: name -> natural-scale value of the parameters held fixed; ``free``: the
    estimated ones in model order; ``names``: their internal names (``log_<name>`` on the
    log scale); ``is_log``: which are on the log scale; ``lower``, ``upper``: internal-scale
    bounds.
    """

    fixed: dict[str, float]
    free: list[str]
    names: list[str]
    is_log: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True)
class FitSettings:
    """How a prepared single-series problem is fitted (the options of
    :func:`cartkinetics.fit.individual.fit_series`, resolved: no None left).

    Attributes
    ----------
    n_starts, n_candidates : int
        Local optimisations, and the candidate points screened to pick their starts.
    multistart : {"vectorised", "lmfit"}
    max_nfev : int
        Function evaluations per local optimisation.
    prior : None, "population" or dict name -> (value, omega)
    uncertainty : {"auto", "sir", "bootstrap"}
    n_boot : int
        SIR draws or bootstrap replicates (0: none).
    profile : bool, str or sequence of str
        Profile-likelihood CIs ("auto": where Wald is not trusted).
    outcomes : bool
        Compute Cmax, Tmax, AUC0-28 of the fitted curve with their CIs.
    seed : int
    """

    n_starts: int
    n_candidates: int
    multistart: str
    max_nfev: int
    prior: Any
    uncertainty: str
    n_boot: int
    profile: Any
    outcomes: bool
    seed: int


def parameter_space(model: Any, fixed: dict[str, float] | None,
                    bounds: dict[str, tuple[float, float]] | None = None) -> ParameterSpace:
    """Free model parameters, their internal names, log flags and internal-scale bounds.

    ``bounds``: name -> (lower, upper) on the natural scale, replacing the model's bounds
    for this fit (e.g. from lmfit Parameters' ``min`` / ``max``).
    """
    fixed = dict(fixed or {})
    bounds = dict(bounds or {})
    unknown = (set(fixed) | set(bounds)) - set(model.param_names)
    if unknown:
        raise CartKineticsError(
            f"fixed / bounds name unknown parameters {sorted(unknown)}; model {model.name} has "
            f"{model.param_names}"
        )
    free, names, is_log, lo, hi = [], [], [], [], []
    for p in model.parameters:
        if p.name in fixed:
            continue
        free.append(p.name)
        lower, upper = bounds.get(p.name, (p.lower, p.upper))
        if not lower < upper:
            raise CartKineticsError(
                f"bounds of {p.name}: lower {lower} must be below upper {upper}")
        if p.log_scale:
            names.append(f"log_{p.name}")
            is_log.append(True)
            lo_v = lower if lower > 0 else max(p.value * 1e-8, 1e-300)
            hi_v = upper if np.isfinite(upper) else p.value * 1e8
            lo.append(math.log(lo_v))
            hi.append(math.log(hi_v))
        else:
            names.append(p.name)
            is_log.append(False)
            lo.append(lower if np.isfinite(lower) else -1e10)
            hi.append(upper if np.isfinite(upper) else 1e10)
    return ParameterSpace(fixed, free, names, np.array(is_log), np.array(lo), np.array(hi))


def to_internal(values: dict[str, float], names: list[str], is_log: np.ndarray,
                 lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Natural-scale ``values`` as the internal vector (log where ``is_log``), clipped just
    inside the bounds ``lo``, ``hi``."""
    th = np.array(
        [
            math.log(values[n[4:]]) if lg else values[n]
            for n, lg in zip(names, is_log, strict=True)
        ]
    )
    span = hi - lo
    return np.clip(th, lo + 1e-6 * span, hi - 1e-6 * span)


def covariance(H: np.ndarray, theta: np.ndarray, lower: np.ndarray, upper: np.ndarray):
    """Cov = 2 H^-1 of -2 log L, restricted to the identifiable parameters.

    Parameters stuck at a bound are left out. When H is singular (a direction of the
    parameter space leaves the likelihood unchanged, e.g. Stein's foldx, tmax and cmax with a
    single point before the peak), parameters loading on the null directions get NaN
    variances and the others the restricted (pseudo-) inverse.
    """
    n = H.shape[0]
    cov = np.full((n, n), np.nan)
    if not np.all(np.isfinite(H)):
        return cov, False, []
    span = upper - lower
    at_b = (theta - lower < 1e-5 * span) | (upper - theta < 1e-5 * span)
    keep = np.flatnonzero(~at_b)
    ok = True
    if keep.size:
        Hk = 0.5 * (H[np.ix_(keep, keep)] + H[np.ix_(keep, keep)].T)
        dg = np.sqrt(np.clip(np.diag(Hk), 0, None))
        live = dg > 1e-12 * max(dg.max(), 1e-300)
        nan_par = ~live
        li = np.flatnonzero(live)
        if li.size:
            S = Hk[np.ix_(li, li)] / np.outer(dg[li], dg[li])  # unit diagonal
            w, V = np.linalg.eigh(S)
            null = w < 1e-11 * max(w.max(), 1e-300)
            if null.any():
                load = np.sqrt(np.sum(V[:, null] ** 2, axis=1))
                nan_par[li[load > 1e-2]] = True
            wi = np.where(null, 0.0, 1.0 / np.where(null, 1.0, w))
            inv = (V * wi) @ V.T / np.outer(dg[li], dg[li])
            sub = np.full((keep.size, keep.size), np.nan)
            sub[np.ix_(li, li)] = 2.0 * inv
            sub[nan_par, :] = np.nan
            sub[:, nan_par] = np.nan
            cov[np.ix_(keep, keep)] = sub
        ok = not nan_par.any()
    return cov, ok, list(np.flatnonzero(at_b))


def set_prior(problem: Problem, model: Any, free: list[str], is_log: np.ndarray,
               prior: Any) -> None:
    """Attach a Gaussian prior on the internal parameters (MAP instead of ML): None,
    "population" (the model's published typical values and BSV) or name -> (mean, sd)."""
    if prior is None:
        return
    if prior == "population":
        spec = {n: (model.parameter(n).value, math.sqrt(model.bsv[n])) for n in free
                if n in model.bsv}
        if not spec:
            raise CartKineticsError(
                f"model {model.name} publishes no between-subject variability: "
                "prior='population' is not available (pass a dict name -> (value, omega))"
            )
    elif isinstance(prior, dict):
        spec = {n: (float(v[0]), float(v[1])) for n, v in prior.items()}
        unknown = set(spec) - set(free)
        if unknown:
            raise CartKineticsError(
                f"prior names parameters that are not fitted: {sorted(unknown)}"
            )
    else:
        raise CartKineticsError(
            f"prior must be 'auto', None, 'population' or a dict, got {prior!r}")
    for n, (v, om) in spec.items():
        i = free.index(n)
        if not (om > 0 and v > 0 or not is_log[i]):
            raise CartKineticsError(f"prior for {n}: need value > 0 and omega > 0")
        problem.prior_mu[i] = math.log(v) if is_log[i] else v
        problem.prior_sd[i] = om
