"""Running a simulation: chunks of virtual patients, in process or on Dask.

The unit of work is a *chunk* of virtual patients (default 20 000): its random numbers come
from ``SeedSequence(seed).spawn(...)[chunk_index]`` -- identical whether the chunk runs here
or on a Dask worker, and independent of the number of workers, since the chunk size is fixed
by the caller, not by the cluster. Every scenario is run on the same virtual patients
(common random numbers: differences between dose levels are not Monte-Carlo noise).

A chunk returns per-patient outcomes only (a few columns per patient); full time courses are
kept for the first ``keep_curves`` patients of each scenario when asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics._dask import child_rng, open_client, run_tasks, write_parquet_atomic
from cartkinetics.errors import CartKineticsError
from cartkinetics.outcomes import OUTCOME_KEYS, batch_curve_outcomes
from cartkinetics.simulate.scenarios import DoseExposure, Scenario
from cartkinetics.simulate.virtual_patients import Population
from cartkinetics.solvers.status import INVALID_INPUT, SUCCESS

INF2_KEYS = tuple(f"inf2_{k}" for k in OUTCOME_KEYS)
TUMOUR_KEYS = ("tumour_nadir", "tumour_nadir_day", "tumour_below_day", "tumour_relapse_day")


# ------------------------------------------------------------------ time grid


def default_grid(starts: list[float], horizon: float = 365.0) -> np.ndarray:
    """Shared time grid (days): fine after each infusion, coarser later.

    After every infusion start s: 0.25-day steps to s+35 (expansion and peak), 2-day steps
    to s+100, 5-day steps to s+``horizon``; the days s+28, 90, 180, 365 are on the grid so
    that the levels reported there are exact, not interpolated.
    """
    pieces = []
    for s in starts:
        pieces += [
            s + np.arange(0.0, 35.0, 0.25),
            s + np.arange(35.0, 100.0, 2.0),
            s + np.arange(100.0, horizon + 1e-9, 5.0),
            s + np.array([28.0, 90.0, 180.0, 365.0, horizon]),
        ]
    t = np.unique(np.concatenate(pieces))
    t_end = max(starts) + horizon
    return t[t <= t_end + 1e-9]


# ------------------------------------------------------------------ plan


@dataclass
class TumourSpec:
    """Tumour outcomes for models with a tumour observation.

    Parameters
    ----------
    observation : str
        Name of the tumour observation (e.g. leukaemic burden).
    threshold : float
        Level counted as response when the tumour falls to or below it.
    relative : bool
        ``threshold`` is a fraction of the baseline level (t = 0) when True.
    """

    observation: str
    threshold: float = 0.01
    relative: bool = True


@dataclass
class Plan:
    """Everything a chunk needs (shipped once to each Dask worker)."""

    model: str
    population: Population
    scenarios: list[Scenario]
    n: int
    chunk_size: int
    entropy: int
    exposure: DoseExposure
    lloq: float
    horizon: float
    times: np.ndarray | None = None
    keep_curves: int = 0
    keep_params: bool = False
    tumour: TumourSpec | None = None
    out_dir: str | None = None
    collect: bool = True
    numba_threads: int | None = None
    solver_options: dict[str, Any] = field(default_factory=dict)

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk_size)

    def grid(self, sc: Scenario) -> np.ndarray:
        """Time grid (days) for a scenario: the user's times or a dense grid around every dose."""
        if self.times is not None:
            return self.times
        starts = [0.0, *sc.split_days]
        if sc.second_infusion_day is not None:
            starts.append(float(sc.second_infusion_day))
        return default_grid(sorted(set(starts)), self.horizon)


# ------------------------------------------------------------------ dosing per patient


def _dose_per_kg(dose_per_kg: float | None, dose: float | None, weight: np.ndarray) -> np.ndarray:
    """Dose per kg of every patient (NaN when the scenario has no dose)."""
    if dose_per_kg is not None:
        return np.full(weight.shape, float(dose_per_kg))
    if dose is not None:
        return float(dose) / weight
    return np.full(weight.shape, np.nan)


def _factors(model: Any, factors: dict[str, float], P: np.ndarray) -> None:
    for name, f in factors.items():
        P[:, model.param_names.index(model.parameter(name).name)] *= float(f)


# ------------------------------------------------------------------ closed-form Stein
# models whose ``simulation_kernels()`` give Stein-form numba kernels (stein_curves,
# stein_outcomes): components of one closed-form curve per infusion or split dose


def _stein_scenario(
    plan: Plan, model: Any, sc: Scenario, P: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Component arrays (starts, pars, amp, toci, ster) for the Stein kernel."""
    m = P.shape[0]
    ex = plan.exposure
    base = P.copy()
    _factors(model, sc.parameter_factors, base)
    j_cmax = model.param_names.index("cmax")
    d1 = _dose_per_kg(sc.dose_per_kg, sc.dose, weight)
    if ex.exponent != 0.0 and np.all(np.isfinite(d1)):
        base[:, j_cmax] *= (d1 / ex.reference_per_kg) ** ex.exponent
    comps = [(s, f, base) for s, f in zip(sc.split_days, sc.split_fractions, strict=True)]
    if sc.second_infusion_day is not None:
        second = P.copy()
        _factors(model, sc.parameter_factors, second)
        _factors(model, sc.second_factors, second)
        if not sc.lymphodepletion:
            _factors(model, sc.no_lymphodepletion_factors, second)
        if sc.second_dose_per_kg is not None or sc.second_dose is not None:
            d2 = _dose_per_kg(sc.second_dose_per_kg, sc.second_dose, weight)
        else:
            d2 = d1
        if ex.exponent != 0.0 and np.all(np.isfinite(d2)):
            second[:, j_cmax] *= (d2 / ex.reference_per_kg) ** ex.exponent
        comps.append((float(sc.second_infusion_day), 1.0, second))
    K = len(comps)
    starts = np.empty((m, K))
    amp = np.empty((m, K))
    pars = np.empty((m, K, 6))
    toci = np.full((m, K), np.inf)
    ster = np.full((m, K), np.inf)
    for k, (s, f, Pk) in enumerate(comps):
        starts[:, k] = s
        amp[:, k] = f
        pars[:, k, :] = Pk
        # comedication day relative to this component's start (given after it started)
        if sc.tocilizumab_day is not None and sc.tocilizumab_day >= s:
            toci[:, k] = sc.tocilizumab_day - s
        if sc.corticosteroid_day is not None and sc.corticosteroid_day >= s:
            ster[:, k] = sc.corticosteroid_day - s
    return starts, pars, amp, toci, ster


def _run_stein(
    plan: Plan, model: Any, sc: Scenario, P: np.ndarray, weight: np.ndarray,
    cache: list[Any] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
    kernels = model.simulation_kernels()
    stein_curves, stein_outcomes = kernels.stein_curves, kernels.stein_outcomes
    arrays = _stein_scenario(plan, model, sc, P, weight)
    starts, pars, amp, toci, ster = arrays
    grid = plan.grid(sc)
    if cache is not None:
        # scenarios that give every patient the same curve (dose levels of the published
        # Stein model, dose_exponent 0) are computed once
        for key_grid, key_arrays, d2, value in cache:
            if (
                d2 == sc.second_infusion_day
                and np.array_equal(key_grid, grid)
                and all(np.array_equal(x, y) for x, y in zip(key_arrays, arrays, strict=True))
            ):
                return value
    m = P.shape[0]
    f_toci = float(model.comedication_factors.get("tocilizumab", 1.0))
    f_ster = float(model.comedication_factors.get("corticosteroids", 1.0))
    n_out = len(OUTCOME_KEYS)
    out = np.empty((m, 2 * n_out))
    status = np.empty(m, dtype=np.int64)
    d2 = np.nan if sc.second_infusion_day is None else float(sc.second_infusion_day)
    stein_outcomes(
        grid, starts, pars, amp, toci, ster, len(sc.split_days), d2, f_toci, f_ster,
        float(plan.lloq), out, status,
    )
    res = {k: out[:, i] for i, k in enumerate(OUTCOME_KEYS)}
    if sc.second_infusion_day is not None:
        res.update({k: out[:, n_out + i] for i, k in enumerate(INF2_KEYS)})
    curves = None
    if plan.keep_curves:
        q = min(plan.keep_curves, m)
        curves = stein_curves(
            grid, starts[:q], pars[:q], amp[:q], toci[:q], ster[:q], f_toci, f_ster
        )
    if cache is not None:
        cache.append((grid, arrays, sc.second_infusion_day, (res, status, curves)))
    return res, status, curves


# ------------------------------------------------------------------ ODE models

#: blood volume used to turn a dose in cells into cells/uL of blood (models whose dose is a
#: blood concentration, e.g. Liu 2022's nTN0): 70 mL/kg, a textbook adult value.
BLOOD_ML_PER_KG = 70.0


def _dose_scale_to_model(model: Any, weight: np.ndarray) -> np.ndarray:
    """Factor turning cells into the model's dose unit, per patient."""
    unit = str(model.dose_unit)
    if unit.startswith("cells/uL"):
        return 1.0 / (BLOOD_ML_PER_KG * weight * 1000.0)
    return np.ones_like(weight)


def _solve_ode(
    model: Any, t: np.ndarray, P: np.ndarray, Y0: np.ndarray | None, later: np.ndarray,
    later_amount: np.ndarray, t0: float, options: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """States (m, nt, n), parameters used and status for per-patient doses.

    ``later`` (k,) days of doses after ``t0`` with per-patient amounts ``later_amount``
    (m, k) in dose units (added to the model's dose state). ``Y0`` None: the model's initial
    state from the parameters (day-0 dose already in the dose parameter). Runs the numba
    batch solver on all patients at once.
    """
    from cartkinetics.models._solver_adapter import (
        batch_breakpoints,
        batch_initial_states,
        ode_system,
    )
    from cartkinetics.solvers import solve_batch

    spec = model.spec
    m, n = P.shape[0], model.n_states
    if Y0 is None:
        Y0 = batch_initial_states(model, P)
    bps = jumps = None
    if model.n_breaks:
        # equations that switch at parameter-dependent times (e.g. Stein's Tmax): the solver
        # stops and restarts there; doses after day 0 would shift its piece count
        if later.size or t0 != 0.0:
            raise CartKineticsError(
                f"model {model.name} switches its equations at parameter-dependent times: "
                "split doses and second infusions are not supported for it (for Stein 2019 "
                "use the closed form 'stein2019')")
        bps = batch_breakpoints(model, P)
        jumps = np.zeros((m, model.n_breaks, n))
    elif later.size:
        if spec.dose_state is None:
            raise CartKineticsError(f"model {model.name} takes no doses after day 0")
        k = model.state_names.index(spec.dose_state)
        bps = np.broadcast_to(later, (m, later.size)).copy()
        jumps = np.zeros((m, later.size, n))
        jumps[:, :, k] = later_amount * spec.dose_scale
    opts = {"rtol": 1e-6, "atol": 1e-10, "method": "auto", "max_steps": 100_000}
    opts.update(options)
    atol = np.full(n, float(opts["atol"]))
    res = solve_batch(
        ode_system(model), t, Y0, P, breakpoints=bps, jumps=jumps, method=opts["method"],
        rtol=float(opts["rtol"]), atol=atol, max_steps=int(opts["max_steps"]), t0=float(t0),
    )
    status = np.asarray(res.status, dtype=np.int64).copy()
    status[~np.all(np.isfinite(P), axis=1)] = INVALID_INPUT
    return np.asarray(res.y), P, status


def _run_ode(
    plan: Plan, model: Any, sc: Scenario, P: np.ndarray, weight: np.ndarray,
    cache: list[Any] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
    """Mechanistic models: the dose enters the initial state / dose compartment.

    Split doses are later doses into the dose state; a second infusion restarts the batch
    solve at its day from each patient's state there, plus the dose, with the lymphocyte
    state reset when the model has one (``model.lymphodepletion_reset``) and lymphodepletion
    is given.
    """
    spec = getattr(model, "spec", None)
    if spec is None:
        raise CartKineticsError(f"model {model.name} is neither closed-form Stein nor an ODE model")
    if sc.second_factors or sc.no_lymphodepletion_factors:
        raise CartKineticsError(
            f"model {model.name}: second_factors / no_lymphodepletion_factors apply to "
            "closed-form models; a mechanistic model's second infusion is a dose event"
        )
    if sc.tocilizumab_day is not None or sc.corticosteroid_day is not None:
        raise CartKineticsError(f"model {model.name} has no comedication effect")
    base = P.copy()
    _factors(model, sc.parameter_factors, base)
    grid = plan.grid(sc)
    m = P.shape[0]
    d1 = _dose_per_kg(sc.dose_per_kg, sc.dose, weight)
    scale = _dose_scale_to_model(model, weight)
    split = np.array(sc.split_days)
    fr = np.array(sc.split_fractions)
    if np.all(np.isfinite(d1)):
        amounts = (d1 * weight * scale)[:, None] * fr[None, :]  # (m, n_split) dose units
        if spec.dose_parameter is not None and split[0] == 0.0:
            base[:, model.param_names.index(spec.dose_parameter)] = (
                amounts[:, 0] * spec.dose_scale)
            later, later_amount = split[1:], amounts[:, 1:]
            y0 = None
        else:
            later, later_amount = split, amounts
            y0 = None
            if split[0] == 0.0:
                # a day-0 dose into the dose state: part of the initial state
                y0 = np.zeros((m, model.n_states))
                f = model.functions
                for i in range(m):
                    f.init(base[i], y0[i])
                y0[:, model.state_names.index(spec.dose_state)] += amounts[:, 0] * spec.dose_scale
                later, later_amount = split[1:], amounts[:, 1:]
    else:
        if sc.second_infusion_day is not None or len(split) > 1:
            raise CartKineticsError(
                f"model {model.name}: split doses and second infusions need a dose "
                "(dose_per_kg or dose)")
        if model.default_dose is not None:
            raise CartKineticsError(
                f"model {model.name} needs a dose: give dose_per_kg or dose (its default is "
                f"{model.default_dose:g} {model.dose_unit})")
        later, later_amount, y0 = np.empty(0), np.empty((m, 0)), None  # dose in the parameters
    d2 = sc.second_infusion_day
    t1 = grid if d2 is None else grid[grid <= d2]
    Y, P_used, status = _solve_ode(model, t1, base, y0, later, later_amount, 0.0,
                                   plan.solver_options)
    obs1 = model.observe_batch(t1, Y, P_used)
    obs1[status != SUCCESS] = np.nan
    names = model.obs_names
    C1 = obs1[:, names.index(model.primary_observation), :]
    res = batch_curve_outcomes(t1, C1, plan.lloq)
    full_obs = obs1
    if d2 is not None:
        if sc.second_dose_per_kg is not None or sc.second_dose is not None:
            dd2 = _dose_per_kg(sc.second_dose_per_kg, sc.second_dose, weight)
        else:
            dd2 = d1
        y_d = Y[:, -1, :].copy()  # state at the second infusion day, before its dose
        k = model.state_names.index(spec.dose_state) if spec.dose_state else None
        if k is None:
            raise CartKineticsError(f"model {model.name} takes no doses after day 0")
        y_d[:, k] += dd2 * weight * scale * spec.dose_scale
        if sc.lymphodepletion:
            for state, param in model.lymphodepletion_reset.items():
                y_d[:, model.state_names.index(state)] = P_used[:, model.param_names.index(param)]
        t2 = grid[grid >= d2]
        Y2, _, st2 = _solve_ode(model, t2, P_used, y_d, np.empty(0), np.empty((m, 0)), d2,
                                plan.solver_options)
        status = np.where(status != SUCCESS, status, st2)
        obs2 = model.observe_batch(t2, Y2, P_used)
        obs2[status != SUCCESS] = np.nan
        C2 = obs2[:, names.index(model.primary_observation), :]
        r2 = batch_curve_outcomes(t2 - d2, C2, plan.lloq)
        res.update({f"inf2_{key}": v for key, v in r2.items()})
        full_obs = np.concatenate([obs1[:, :, :-1], obs2], axis=2)  # after the dose at d2
    if plan.tumour is not None:
        tu = plan.tumour
        if tu.observation not in names:
            raise CartKineticsError(
                f"model {model.name} has no observation {tu.observation!r}; it has {names}")
        res.update(tumour_outcomes(grid, full_obs[:, names.index(tu.observation), :],
                                   tu.threshold, tu.relative))
    C = full_obs[:, names.index(model.primary_observation), :]
    curves = C[: min(plan.keep_curves, m)].copy() if plan.keep_curves else None
    return res, status, curves


def tumour_outcomes(
    t: np.ndarray, B: np.ndarray, threshold: float, relative: bool = True
) -> dict[str, np.ndarray]:
    """Tumour response outcomes per curve.

    Parameters
    ----------
    t : (nt,) days
    B : (m, nt) tumour level (model units)
    threshold : float
        Response level: absolute, or a fraction of the level at t[0] when ``relative``.

    Returns
    -------
    dict of (m,) arrays: ``tumour_nadir`` (lowest level), ``tumour_nadir_day``,
    ``tumour_below_day`` (first day at or below the threshold; NaN if never) and
    ``tumour_relapse_day`` (first day back above the threshold after having been below;
    NaN if no relapse within the horizon). Levels between grid points are not interpolated:
    days are grid days.
    """
    B = np.atleast_2d(np.asarray(B, dtype=float))
    thr = threshold * B[:, :1] if relative else np.full((B.shape[0], 1), float(threshold))
    finite = np.all(np.isfinite(B), axis=1)
    Bf = np.where(np.isfinite(B), B, np.inf)
    i_nadir = np.argmin(Bf, axis=1)
    nadir = Bf[np.arange(B.shape[0]), i_nadir]
    below = B <= thr
    ever = below.any(axis=1)
    i_below = np.argmax(below, axis=1)
    # relapse: above the threshold at a grid point after the first point below it
    after = np.arange(B.shape[1])[None, :] > i_below[:, None]
    up = (B > thr) & after & ever[:, None]
    relapsed = up.any(axis=1)
    i_up = np.argmax(up, axis=1)
    nan = np.full(B.shape[0], np.nan)
    return {
        "tumour_nadir": np.where(finite, nadir, nan),
        "tumour_nadir_day": np.where(finite, t[i_nadir], nan),
        "tumour_below_day": np.where(finite & ever, t[i_below], nan),
        "tumour_relapse_day": np.where(finite & relapsed, t[i_up], nan),
    }


# ------------------------------------------------------------------ one chunk


def chunk_rng(entropy: int, chunk: int) -> np.random.Generator:
    """The generator of chunk ``chunk``: ``SeedSequence(entropy).spawn(n)[chunk]``."""
    return child_rng(entropy, chunk)


def run_chunk(plan: Plan, chunk: int) -> dict[str, Any]:
    """Simulate chunk ``chunk`` under every scenario.

    Returns
    -------
    dict with ``table`` (DataFrame, one row per patient x scenario, or None when written to
    ``plan.out_dir`` and not collected), ``curves`` (scenario index -> (q, nt) or absent),
    ``rows`` (number of rows).
    """
    from cartkinetics import models

    if plan.numba_threads:
        import numba

        numba.set_num_threads(max(1, min(plan.numba_threads, numba.config.NUMBA_NUM_THREADS)))
    model = models.get(plan.model)
    start = chunk * plan.chunk_size
    m = min(plan.chunk_size, plan.n - start)
    rng = chunk_rng(plan.entropy, chunk)
    P, covs = plan.population.sample(rng, m, model)
    weight = covs["weight"]
    runner = _run_stein if model.simulation_kernels is not None else _run_ode
    frames = []
    curves: dict[int, np.ndarray] = {}
    cache: list[Any] = []
    for s_idx, sc in enumerate(plan.scenarios):
        res, status, cur = runner(plan, model, sc, P, weight, cache)
        cols: dict[str, Any] = {
            "scenario": np.full(m, s_idx, dtype=np.int32),
            "patient": np.arange(start, start + m, dtype=np.int64),
            "weight": weight,
            "dose_per_kg": _dose_per_kg(sc.dose_per_kg, sc.dose, weight),
            "status": status,
        }
        cols.update(res)
        if plan.keep_params:
            for j, name in enumerate(model.param_names):
                cols[f"param_{name}"] = P[:, j]
        frames.append(pd.DataFrame(cols))
        if cur is not None and start < plan.keep_curves:
            curves[s_idx] = cur[: plan.keep_curves - start]
    if plan.out_dir is not None:
        path = Path(plan.out_dir) / "outcomes"
        path.mkdir(parents=True, exist_ok=True)
        out = pd.concat(frames, ignore_index=True)
        write_parquet_atomic(out, path / f"part-{chunk:06d}.parquet")
    rows = sum(len(f) for f in frames)
    return {"tables": frames if plan.collect else None, "curves": curves, "rows": rows}


# ------------------------------------------------------------------ drivers


def run_local(plan: Plan, progress: bool) -> list[dict[str, Any]]:
    """All chunks in this process (numba threads inside each chunk)."""
    chunks = range(plan.n_chunks)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="simulate", unit="chunk")
    return [run_chunk(plan, c) for c in chunks]


def run_dask(
    plan: Plan, workers: int | None, scheduler: str | None, progress: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Chunks on a dask.distributed cluster: a new LocalCluster of ``workers`` processes, or
    the existing cluster at ``scheduler``. Results come back in chunk order."""
    with open_client(workers=workers, scheduler=scheduler) as (client, info):
        if workers and plan.numba_threads is None:
            plan.numba_threads = max(1, (os.cpu_count() or 1) // workers)
        results: list[dict[str, Any] | None] = [None] * plan.n_chunks
        for i, res in run_tasks(client, run_chunk, [(c,) for c in range(plan.n_chunks)],
                                shared=(plan,), progress=progress, desc="simulate"):
            results[i] = res
        return [r for r in results if r is not None], info


def check_memory(plan: Plan) -> None:
    """Refuse a run whose collected outcomes would not fit comfortably in memory."""
    if not plan.collect:
        return
    per_row = 8 * (8 + 2 * len(OUTCOME_KEYS))
    total = plan.n * len(plan.scenarios) * per_row
    if total > 8e9:
        raise CartKineticsError(
            f"{plan.n} patients x {len(plan.scenarios)} scenarios would collect "
            f"~{total / 1e9:.0f} GB of outcomes; write Parquet partitions with out=DIR and "
            "collect=False"
        )


__all__ = ["Plan", "TumourSpec", "default_grid", "run_chunk", "run_local", "run_dask",
           "tumour_outcomes", "chunk_rng"]
