"""One patient, several model outputs in one likelihood (e.g. CAR-T and leukaemia burden).

Each observed series is compared with its own model output (``{"car_t": s1, "leukaemia":
s2}`` for Liu 2022); the log-likelihood is the sum of the per-output likelihoods of
:mod:`cartkinetics.fit.likelihood` (log-normal, BLQ rows by M3), all with the same parameter
vector. The residual SD on the ln scale is one shared ``sigma`` (estimated by default when the
model publishes none), or fixed per output with ``sigma={"car_t": 0.5, ...}``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.individual import OK_STATUSES
from cartkinetics.fit.likelihood import ResidualModel, loglik_terms, prepare
from cartkinetics.fit.multistart import fit_multistart
from cartkinetics.fit.problem import (
    Z95,
    Block,
    Problem,
    covariance,
    get_model,
    parameter_space,
    to_internal,
)
from cartkinetics.fit.results import FitResultBase


@dataclass(repr=False)
class MultiFitResult(FitResultBase):
    """Fit of several outputs of one patient.

    Attributes
    ----------
    patient, model, status, message, censoring
    params, stderr, ci : dicts over the model parameters (fixed ones: SE NaN)
    free : list of fitted parameter names
    neg2ll, aic, bic : float
    neg2ll_by_output : dict output -> -2 log L of that output's rows
    n_obs, n_blq : dict output -> counts
    predictions : dict output -> DataFrame (day, value, blq, pred, ires)
    """

    patient: str
    model: str
    status: str
    message: str
    censoring: str
    params: dict[str, float] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    free: list[str] = field(default_factory=list)
    neg2ll: float = math.nan
    aic: float = math.nan
    bic: float = math.nan
    sigma: float = math.nan
    neg2ll_by_output: dict[str, float] = field(default_factory=dict)
    n_obs: dict[str, int] = field(default_factory=dict)
    n_blq: dict[str, int] = field(default_factory=dict)
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form of the multi-output fit (estimates, SEs, -2 log L, status)."""
        rec: dict[str, Any] = {"patient": self.patient, "model": self.model,
                               "status": self.status, "message": self.message,
                               "censoring": self.censoring, "neg2ll": self.neg2ll,
                               "aic": self.aic, "sigma": self.sigma}
        for k in self.free:
            rec[k] = self.params[k]
            rec[f"{k}_se"] = self.stderr.get(k, math.nan)
        for o, v in self.neg2ll_by_output.items():
            rec[f"neg2ll_{o}"] = v
        return rec

    def plot(self, axes: Any = None) -> Any:
        """One panel per output: observed (BLQ open), fitted curve, log y."""
        import matplotlib.pyplot as plt

        outs = list(self.predictions)
        if axes is None:
            _, axes = plt.subplots(1, len(outs), figsize=(3.4 * len(outs), 2.8), squeeze=False)
            axes = axes[0]
        m = get_model(self.model)
        for ax, o in zip(axes, outs, strict=False):
            pr = self.predictions[o]
            q = ~pr["blq"].to_numpy(bool)
            ax.plot(pr["day"][q], pr["value"][q], "o", ms=4, color="C0")
            ax.plot(pr["day"][~q], pr["value"][~q], "o", mfc="none", ms=5, color="C0")
            t = np.linspace(0, max(float(pr["day"].max()), 1.0), 300)
            sol = m.solve(t, self.params)
            ax.plot(t, sol.observed[o], color="C1")
            ax.set_yscale("log")
            ax.set_title(f"{self.patient}: {o}", fontsize=8)
        return axes


def fit_outputs(
    outputs: dict[str, Any],
    model: Any,
    *,
    free: list[str] | None = None,
    fixed: dict[str, float] | None = None,
    censoring: str = "M3",
    sigma: float | dict[str, float] | str | None = None,
    error: str = "normal",
    n_starts: int = 3,
    n_candidates: int = 40,
    max_nfev: int = 400,
    dose: Any = None,
    seed: int = 0,
) -> MultiFitResult:
    """Fit several outputs of one patient's model in one likelihood.

    Parameters
    ----------
    outputs : dict output name -> Series
        The model output each series is compared with (``model.observations`` names).
    model : str or Model
    free : list of names, optional
        Parameters to estimate (default: all not in ``fixed``).
    fixed : dict name -> value, optional
        Parameters held at given values (e.g. a patient's baseline burden); the others not in
        ``free`` stay at the model's typical values.
    censoring : {"M3", "M1"}
    sigma : float, dict output -> float, "estimate" or None
        Residual SD on the ln scale; None: the model's published value, else one shared
        estimated sigma.
    n_starts, n_candidates, max_nfev, seed : as in ``fit_series`` (the same vectorised
        multi-start, :func:`cartkinetics.fit.multistart.fit_multistart`; fewer starts by
        default because each costs ODE sensitivity solves: 10 starts from 100 candidates found
        the same optima as 3 from 40 for the 14 Liu 2022 CR patients, in twice the time)
    dose : passed to the model

    Returns
    -------
    MultiFitResult
    """
    tic = time.perf_counter()
    model = get_model(model)
    if not outputs:
        raise CartKineticsError("fit_outputs needs at least one output series")
    for o in outputs:
        if o not in model.observations:
            raise CartKineticsError(
                f"model {model.name} has no output {o!r}; it has {list(model.observations)}"
            )
    fixed = dict(fixed or {})
    if free is not None:
        unknown = set(free) - set(model.param_names)
        if unknown:
            raise CartKineticsError(f"free names unknown parameters {sorted(unknown)}")
        for p in model.parameters:
            if p.name not in free and p.name not in fixed:
                fixed[p.name] = p.value
    estimate = sigma == "estimate" or (sigma is None and not model.residual_sd)
    base_sigma = model.residual_sd or 0.5
    blocks, n_total = [], 0
    first = next(iter(outputs.values()))
    out = MultiFitResult(patient=str(getattr(first, "patient", "")), model=model.name,
                         status="converged", message="", censoring=censoring)
    _, free_names, names, is_log, lo, hi = parameter_space(model, fixed)
    pnames = model.param_names
    pmap = np.array([free_names.index(n) if n in free_names else -1 for n in pnames])
    pfixed = np.array([fixed.get(n, model.parameter(n).value) for n in pnames], float)
    for o, s in outputs.items():
        s_sig = sigma.get(o, base_sigma) if isinstance(sigma, dict) else (
            float(sigma) if isinstance(sigma, (int, float)) else base_sigma)
        res_o = ResidualModel(error=error, sigma=float(s_sig), censoring=censoring,
                              estimate_sigma=estimate)
        d = prepare(s, censoring)
        out.n_obs[o] = int(len(s.day))
        out.n_blq[o] = int(np.sum(s.blq))
        if d.n_quantified == 0:
            out.status = "all_blq"
            out.message = f"output {o}: every observation is below the LLOQ"
            return out
        n_total += d.n
        blocks.append(Block(data=d, dose=dose if dose is not None else getattr(s, "dose", None),
                             pmap=pmap, pfixed=pfixed, observation=o, residual=res_o))
    k_free = len(free_names) + (1 if estimate else 0)
    if n_total < k_free:
        out.status = "too_few_points"
        out.message = f"{n_total} observation(s) for {k_free} free parameter(s)"
        return out
    residual = blocks[0].residual
    assert residual is not None
    problem = Problem(model, blocks, names, is_log, lo, hi, residual, model.primary_observation)
    start = {n: float(pfixed[j]) if pmap[j] < 0 else float(model.parameter(n).value)
             for j, n in enumerate(pnames)}
    theta0 = to_internal(start, names, is_log, lo, hi)
    if estimate:
        theta0 = np.append(theta0, math.log(base_sigma))
    spread = np.array([math.sqrt(model.bsv.get(n, 0.25)) for n in free_names]
                      + ([0.3] if estimate else []))
    rng = np.random.default_rng(seed)
    th, res_lm, m2ll, _ = fit_multistart(problem, theta0, names, n_candidates, n_starts, spread,
                                       rng, max_nfev)
    if not np.isfinite(m2ll):
        out.status, out.message = "solver_failure", "the model could not be solved at the optimum"
        return out
    out.free = list(free_names)
    out.neg2ll = float(m2ll)
    out.aic = out.neg2ll + 2 * problem.n_theta
    out.bic = out.neg2ll + problem.n_theta * math.log(n_total)
    out.sigma = problem.sigma(th) if estimate else math.nan
    p = problem.block_params(th, blocks[0])
    out.params = dict(zip(pnames, p.tolist(), strict=True))
    cov, cov_ok, at_b = covariance(problem.information(th), th, problem.lower, problem.upper)
    se = np.sqrt(np.diag(cov))
    for i, n in enumerate(free_names):
        out.stderr[n] = float(out.params[n] * se[i]) if is_log[i] else float(se[i])
        with np.errstate(over="ignore"):
            out.ci[n] = ((float(np.exp(th[i] - Z95 * se[i])), float(np.exp(th[i] + Z95 * se[i])))
                         if is_log[i] else (th[i] - Z95 * se[i], th[i] + Z95 * se[i]))
    for n in pnames:
        out.stderr.setdefault(n, math.nan)
    for o, b in zip(outputs, blocks, strict=True):
        s = outputs[o]
        lf, _ = problem.predict(th, b, jac=False)
        out.neg2ll_by_output[o] = -2.0 * float(
            np.sum(loglik_terms(lf, b.data, problem.res_of(b), problem.sigma(th, b)))
        )
        sol = model.solve(np.asarray(s.day, float), p, b.dose)
        pred = np.asarray(sol.observed[o], float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ires = np.where(~np.asarray(s.blq) & (np.asarray(s.value) > 0),
                            np.log(np.asarray(s.value, float)) - np.log(pred), np.nan)
        out.predictions[o] = pd.DataFrame({"day": s.day, "value": s.value, "blq": s.blq,
                                           "pred": pred, "ires": ires})
    if not res_lm.success:
        out.status = "not_converged"
    elif not cov_ok or at_b:
        out.status = "converged_singular"
    out.message = (
        f"{out.status.replace('_', ' ')} ({censoring}); outputs {list(outputs)} in one "
        f"likelihood; fitted {free_names}"
        + (f"; at a bound: {[free_names[i] for i in at_b if i < len(free_names)]}" if at_b else "")
    )
    out.elapsed = time.perf_counter() - tic
    return out
