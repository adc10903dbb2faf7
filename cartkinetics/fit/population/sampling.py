"""Sampling: nutpie/PyMC NUTS, initial points, the numpy log-likelihood.

Part of :mod:`cartkinetics.fit.population` (split from one module; names re-exported there).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.population.data import PopulationData


def erfcx(x: float) -> float:
    """exp(x^2) erfc(x) in double precision (compiled by numba inside the log-density).

    Direct product below x = 26 (erfc is still a normal number there; relative error about
    x^2 * 1e-16); above, the asymptotic series 1/(x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) -
    15/(8x^6) + 105/(16x^8)), whose truncation error is below 1e-12 there.
    """
    if x < 26.0:
        return math.exp(x * x) * math.erfc(x)
    r = 1.0 / (x * x)
    return (1.0 + r * (-0.5 + r * (0.75 + r * (-1.875 + r * 6.5625)))) / (
        x * 1.7724538509055159
    )


_ERFCX_REGISTERED = False


def register_cacheable_erfcx() -> bool:
    """Give PyTensor's numba backend an ``erfcx`` it can cache on disk.

    The censored (M3) rows' log-CDF uses ``erfcx``, which PyTensor's numba backend calls
    through a scipy Cython function pointer; numba cannot cache such code, so the whole
    log-density was compiled again in every process (about 15 s for Stein on the example
    cohort). With this pure-numba implementation (:func:`erfcx`, equal to
    ``scipy.special.erfcx`` to 1e-12 relative, see tests) the compiled log-density is cached in
    PyTensor's compile directory and a later process with the same model and data loads it.
    Returns True when the implementation is registered.
    """
    global _ERFCX_REGISTERED
    if _ERFCX_REGISTERED:
        return True
    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_and_cache_key,
        )
        from pytensor.scalar.math import Erfcx
    except ImportError:  # another PyTensor layout: keep PyTensor's own implementation
        return False

    @register_funcify_and_cache_key(Erfcx)
    def _numba_funcify_erfcx(op: Any, node: Any = None, **kwargs: Any) -> tuple[Any, str]:
        return numba_njit(erfcx), "cartkinetics.fit.population._erfcx-v1"

    _ERFCX_REGISTERED = True
    return True


def sample(
    pm_model: Any,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int | None,
    sampler: str,
    progress: bool,
    target_accept: float,
    cores: int | None,
    low_rank: bool = False,
    init: Any = "support_point",
    init_jitter: float = 1.0,
) -> tuple[Any, dict[str, Any]]:
    """Sample with nutpie (numba backend) or PyMC NUTS; returns (idata, timing/info).

    ``init_jitter``: half-width of the uniform jitter of a computed or given start on every
    unconstrained coordinate (nutpie; PyMC's NUTS always jitters by 1). ``init`` may be a
    list of points (constrained values of the free variables): each chain then starts at one
    of them (nutpie: picked by the chain's seed; PyMC: in turn), jittered."""
    import pymc as pm

    info: dict[str, Any] = {"sampler": sampler,
                            "init": init if isinstance(init, str) else
                            f"{len(init)} given points, jittered" if isinstance(init, list)
                            else "given point, jittered"}
    start = initial_point(pm_model, init, seed, info)
    # several starts: nutpie compiles with the first, the chains pick theirs in _with_jitter
    pool = start if isinstance(start, list) else None
    if pool is not None:
        start = pool[0]
    # "map": every chain at the computed start; "dispersed" or a given point: each chain
    # jittered around it (uniform +-1 on every unconstrained coordinate, nutpie's and
    # PyMC's jitter), so that R-hat can see chains that settle in different modes
    jitter = init != "map"
    if sampler == "nutpie":
        try:
            import nutpie

            register_cacheable_erfcx()
            t0 = time.perf_counter()
            # from a computed start without jitter every chain starts there (the jitter would
            # move each patient's random effects off it)
            init_kw = {} if start is None else {"initial_points": start}
            scaled = start is not None and jitter and (init_jitter != 1.0 or pool is not None)
            if start is not None and (not jitter or scaled):
                init_kw["jitter_rvs"] = set()
            compiled = nutpie.compile_pymc_model(pm_model, backend="numba", **init_kw)
            if scaled:
                compiled = _with_jitter(compiled, init_jitter, None if pool is None else
                                        unconstrained_points(pm_model, pool))
                info["init_jitter"] = float(init_jitter)
            info["compile_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            idata = nutpie.sample(
                compiled,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                seed=seed,
                progress_bar=progress,
                save_warmup=False,
                target_accept=target_accept,
                low_rank_modified_mass_matrix=low_rank,
            )
            info["sample_seconds"] = time.perf_counter() - t0
            return idata, info
        except Exception as exc:  # e.g. an Op without a numba implementation
            warnings.warn(
                f"nutpie could not sample this model ({type(exc).__name__}: {exc}); "
                "falling back to PyMC NUTS",
                RuntimeWarning,
                stacklevel=3,
            )
            info["sampler"] = "pymc"
            info["fallback_reason"] = f"{type(exc).__name__}: {exc}"
    elif sampler != "pymc":
        raise CartKineticsError(f"sampler must be 'nutpie' or 'pymc', got {sampler!r}")
    t0 = time.perf_counter()
    with pm_model:
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores if cores is not None else min(chains, 2),
            random_seed=seed,
            progressbar=progress,
            target_accept=target_accept,
            compute_convergence_checks=False,
            **({} if start is None else {
                "initvals": start if pool is None else
                [pool[c % len(pool)] for c in range(chains)],
                "init": "jitter+adapt_diag" if jitter else "adapt_diag"}),
        )
    info["compile_seconds"] = float("nan")
    info["sample_seconds"] = time.perf_counter() - t0
    return idata, info


def _with_jitter(compiled: Any, half_width: float, pool: np.ndarray | None = None) -> Any:
    """nutpie's compiled model whose chains start at its (unjittered) initial point, or at a
    row of ``pool`` (unconstrained points, picked by the chain's seed), plus a
    uniform(-half_width, half_width) jitter on every unconstrained coordinate, drawn from the
    chain's seed (nutpie's own jitter has half-width 1). nutpie calls the function once per
    chain, in any order, with a seed fixed by the sampler's seed and the chain: the starts
    are reproducible."""
    import dataclasses

    base = compiled.initial_point_func

    def jittered(seed: Any) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if pool is None:
            x = np.array(base(seed), dtype="float64", order="C")
        else:
            x = np.array(pool[rng.integers(len(pool))], dtype="float64", order="C")
        x += rng.uniform(-half_width, half_width, x.shape)
        return x

    return dataclasses.replace(compiled, initial_point_func=jittered)


def unconstrained_points(pm_model: Any, points: list[dict[str, Any]]) -> np.ndarray:
    """``points`` (constrained values of the free variables) on the samplers' unconstrained
    scale, one row each, the free variables flattened in model order (nutpie's layout)."""
    names = [pm_model.rvs_to_values[v].name for v in pm_model.free_RVs]
    rows = []
    for p in points:
        ip = _transformed(pm_model, p)
        rows.append(np.concatenate([np.asarray(ip[n], dtype="float64").ravel()
                                    for n in names]))
    return np.array(rows)


def _transformed(pm_model: Any, point: dict[str, Any]) -> dict[str, np.ndarray]:
    """``point`` (constrained values of the free variables) as the values of the model's
    value variables (unconstrained, keyed by their names), without jitter."""
    from pymc.initial_point import make_initial_point_fn

    return make_initial_point_fn(model=pm_model, overrides=point, jitter_rvs=set(),
                                 return_transformed=True)(0)


# the between-patient SDs: held at their start (the prior's median) while the other
# parameters move to their conditional mode, where the hierarchical posterior has none
_INIT_HELD = ("omega", "omega_re")


def initial_point(pm_model: Any, init: Any, seed: int | None, info: dict[str, Any]
                  ) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]] | None:
    """The chains' start for ``init`` (None: the sampler's own, jittered per chain).

    ``"map"``: the posterior mode of every parameter except the between-patient SDs, which
    stay at their prior medians (PyMC's ``find_MAP`` over the other variables, L-BFGS-B with
    the model's gradient): each patient's random effects start at that patient's conditional
    mode, the empirical-Bayes estimates a NONMEM or Monolix user starts from. The mode is that
    of the constrained parameters' density (find_MAP's objective, without the Jacobians of
    the transforms). Returns the point in the constrained space (``initvals`` convention);
    the optimiser's time and the log density there go to ``info["init_seconds"]`` and
    ``info["init_logp"]``.
    """
    if isinstance(init, dict):  # a given point (constrained values of the free variables)
        return {k: np.asarray(v) for k, v in init.items()}
    if isinstance(init, list) and init and all(isinstance(p, dict) for p in init):
        return [{k: np.asarray(v) for k, v in p.items()} for p in init]
    if init == "support_point":
        return None
    if init not in ("map", "dispersed"):
        raise CartKineticsError(
            f"init must be 'support_point', 'map', 'dispersed', a dict or a list of dicts, "
            f"got {init!r}"
        )
    import pymc as pm

    t0 = time.perf_counter()
    moving = [v for v in pm_model.free_RVs if v.name not in _INIT_HELD]
    with pm_model:
        # tight tolerances: SciPy's default relative reduction of f stops L-BFGS-B with
        # gradients of ~0.1 left on the population means
        point, raw = pm.find_MAP(vars=moving, progressbar=False, seed=seed, maxeval=5000,
                                 return_raw=True,
                                 options={"ftol": 1e-15, "gtol": 1e-8, "maxiter": 5000})
    info["init_seconds"] = time.perf_counter() - t0
    start = {v.name: np.asarray(point[v.name]) for v in pm_model.free_RVs}
    if raw is not None:
        info["init_logp"] = -float(raw.fun)
    else:
        # find_MAP stopped at maxeval (e.g. a patient's mode on the kink at Tmax = a sampling
        # day, where L-BFGS-B cannot meet its tolerance) and returns its last point without
        # the optimiser's result: the log density there, as find_MAP's objective
        info["init_logp"] = float(pm_model.compile_logp(jacobian=False)(
            _transformed(pm_model, start)))
        info["init_note"] = "find_MAP stopped at its evaluation limit (5000)"
    return start


def row_sigma(sigma: np.ndarray, pdata: PopulationData) -> np.ndarray:
    """Residual SD of every row from draws of ``sigma``: (...) for one output, (..., n_outputs)
    for several -> (..., 1) or (..., n_obs), broadcastable against (..., n_obs)."""
    sig = np.asarray(sigma)
    if pdata.n_outputs > 1:
        return sig[..., pdata.obs_output]
    return sig[..., None]


def log_likelihood_np(
    log_pred: np.ndarray,
    pdata: PopulationData,
    sigma: np.ndarray,
    nu: np.ndarray | None = None,
) -> np.ndarray:
    """Pointwise log-likelihood of each observation (M3 for censored rows).

    Parameters
    ----------
    log_pred : (..., n_obs) ln prediction
    sigma, nu : (...) residual SD (ln scale) and Student-t degrees of freedom (None: normal)

    Returns
    -------
    (..., n_obs) ln p(ln y | prediction) for quantified rows (density of ln y) and
    ln P(ln Y < ln LLOQ) for censored rows, the same terms as ``pm.Censored``.
    """
    from scipy import stats

    sig = row_sigma(sigma, pdata)
    if nu is None:
        dist = stats.norm(loc=log_pred, scale=sig)
    else:
        dist = stats.t(df=np.asarray(nu)[..., None], loc=log_pred, scale=sig)
    return np.where(pdata.censored, dist.logcdf(pdata.log_y), dist.logpdf(pdata.log_y))
