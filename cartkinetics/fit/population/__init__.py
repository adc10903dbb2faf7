"""Hierarchical Bayesian fits with PyMC: partial pooling across patients and an infusion effect.

Model (one assay, e.g. qPCR transgene copies/ug, time in days since each infusion)::

    phi[i, j]      = mu[j] + x_i . b[:, j] + omega[j] * z[i, j]            patient i, parameter j
    phi[i, k, j]   = phi[i, j] + 1{k >= 2} (delta[j] + tau[j] u[i, j])    infusion k, j in effects
    theta[i, k, j] = exp(phi[i, k, j])            (logistic for fractions bounded by 1, e.g. FB)
    log y[i, k, t] ~ Normal(log f(t; theta[i, k]), sigma)    or Student-t(nu, ...)
    y below the LLOQ: P(log y < log LLOQ) (Beal's M3, through ``pm.Censored``)

``z`` and ``u`` are standard normal (non-centred parameterisation; the parameters every CK
series pins down, ``DEFAULT_CENTRED`` = tmax, cmax, alpha, are sampled in the equivalent
centred form ``phi[i, j] ~ Normal(mu[j], omega[j])``, truncated at the model library's declared
upper limits (Stein: Tmax <= 60 d, alpha <= 10/day), see ``centred`` and ``truncate``; for Stein
the prior also holds the factor sigmoid((ln alpha_i - ln beta_i) / 0.1) per patient, which
removes the bi-exponential's label-switched mode); the patient's random effect
``omega * z`` is shared by both infusions, so the first-versus-second comparison is paired; the
infusion effect of patient i on parameter j is ``delta[j] + tau[j] * u[i, j]`` (``tau``: its
between-patient SD). For Stein 2019 the default effects sit on log Cmax and log Tmax, so
``exp(delta_cmax)`` is the typical Cmax ratio (second / first) and
``Tmax_typ * (exp(delta_tmax) - 1)`` the typical Tmax difference in days.

Default priors (see :func:`default_priors`, ``docs/population.md``; every one can be replaced
by passing ``priors=``):

* ``mu[j] ~ Normal(log(typical_j), 1.0)``: centred on the model's published typical values
  (Stein 2019 Table 1 for ``stein2019``); SD 1 on the log scale lets the cohort's typical value
  lie within a factor ~7 of the published one (95%).
* ``omega[j] ~ LogNormal(ln sqrt(omega2_published), 0.5)``: prior median equals the published
  between-subject SD (Stein 2019: omega^2 2.4, 0.38, 0.65, 0.91, 0.80, 0.86), zero density at
  omega = 0 (no funnel at small omega for the centred effects); LogNormal(0, 1)
  where nothing was published.
* ``delta[j] ~ Normal(0, 0.7)`` (no effect a priori; a 95% range of ratios 0.25-4);
  ``tau[j] ~ LogNormal(ln 0.2, 0.75)`` (``TAU_PRIOR``: zero density at 0, no funnel).
* ``sigma ~ LogNormal(log(residual_sd_published), 0.5)`` (Stein: 0.56 on ln scale), else
  ``HalfNormal(1.0)``; Student-t residuals add ``nu ~ Gamma(2, 0.1)`` (Juarez & Steel 2010).
* covariate coefficients ``b ~ Normal(0, 0.5)`` per standardised covariate (numeric covariates
  centred and scaled by their SD; dose on log scale; categorical ones as 0/1 indicators
  against the most frequent level).

Closed-form models (``stein2019``) are written directly in PyTensor; ODE models go through
:class:`cartkinetics.fit.pytensor_ops.ODEObservationOp` (numba solver with forward
sensitivities, one call for all series).
"""

from __future__ import annotations

import time
from typing import Any

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.population.constants import (  # noqa: F401  (re-exported)
    BFMI_MIN,
    DEFAULT_CENTRED,
    DEFAULT_SEED,
    DEFAULT_TARGET_ACCEPT,
    ESS_MIN,
    FREE_VARS,
    IOV_PRIOR_SCALE,
    ODE_RTOL,
    OMEGA_SD_LOG,
    OMEGA_SD_LOG_UNPUBLISHED,
    ORDER_ALPHA_BETA,
    ORDER_SCALE,
    RHAT_MAX,
    TAU_PRIOR,
)
from cartkinetics.fit.population.data import (  # noqa: F401  (re-exported)
    PopulationData,
    prepare_population_data,
    series_list,
)
from cartkinetics.fit.population.design import (  # noqa: F401  (re-exported)
    CovariateDesign,
    covariate_design,
    default_effects,
    output_observations,
)
from cartkinetics.fit.population.model import (  # noqa: F401  (re-exported)
    build_model,
    stein_log_curve_np,
    stein_log_curve_pt,
)
from cartkinetics.fit.population.priors import (  # noqa: F401  (re-exported)
    default_priors,
    fixed_values,
    merge_priors,
    omega_prior_arrays,
    upper_limits,
)
from cartkinetics.fit.population.result import (  # noqa: F401  (re-exported)
    PopulationFit,
    add_groups,
)
from cartkinetics.fit.population.sampling import (  # noqa: F401  (re-exported)
    erfcx,
    initial_point,
    log_likelihood_np,
    register_cacheable_erfcx,
    row_sigma,
    sample,
)

# old private names, kept for callers
_initial_point = initial_point
_erfcx = erfcx


def fit_population(
    data: Any,
    model: Any = "stein2019",
    *,
    assay: str | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: str = "nutpie",
    progress: bool = True,
    target_accept: float | None = None,
    cores: int | None = None,
    infusion_effect: tuple[str, ...] | list[str] | None = None,
    infusion_effect_random: bool = True,
    covariates: dict[str, list[str]] | None = None,
    residual: str = "normal",
    priors: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
    centred: tuple[str, ...] | list[str] | None = None,
    pooled: tuple[str, ...] | list[str] | None = None,
    truncate: bool = True,
    observations: dict[str, str] | None = None,
    censoring: str = "M3",
    warn: bool = True,
    low_rank_mass_matrix: bool = False,
    init: Any = "support_point",
    iov: tuple[str, ...] | list[str] | None = None,
    init_jitter: float = 1.0,
    rtol: float | None = None,
) -> PopulationFit:
    """Hierarchical Bayesian fit of a kinetics data set (see the module docstring).

    Parameters
    ----------
    data : KineticsData, list of Series, DataFrame or CSV path
    model : str or Model, default ``"stein2019"``
    assay : str or sequence of str, optional
        Assay to fit when the data hold several; a sequence fits several outputs jointly
        (the first is the CAR-T level; see :func:`prepare_population_data`).
    draws, tune, chains : int
        Posterior draws and warm-up iterations per chain, number of chains.
    seed : int, optional
        Seed of the sampler, of the start and of the posterior predictive draws. Default
        ``DEFAULT_SEED`` (fixed, so a fit is reproducible by default: the same seed gives the
        same draws on the same machine); the seed used is recorded in
        ``fit.info["settings"]["seed"]`` and in ``to_dict()["seed"]``. Pass other seeds to
        check that an answer does not depend on one.
    sampler : "nutpie" (default, numba-compiled) or "pymc"
        nutpie falls back to PyMC NUTS (with a warning) when it cannot compile the model.
    progress : bool
        Show the sampler's progress bar.
    target_accept : float, optional
        NUTS target acceptance; default ``DEFAULT_TARGET_ACCEPT`` (0.9: smaller steps, fewer
        divergences in hierarchical funnels).
    infusion_effect, infusion_effect_random, covariates, residual, priors, fixed, centred
        See :func:`build_model`; so are ``pooled``, ``truncate``, ``observations`` and
        ``iov`` (between-infusion variability on any free parameter).
    censoring : "M3" (default) or "M1" (BLQ rows discarded; for comparison only)
    warn : bool
        Warn when a diagnostic fails (R-hat > 1.01, ESS < 400, divergences, E-BFMI < 0.3).
    low_rank_mass_matrix : bool
        nutpie's low-rank modified mass matrix (adapts to correlated parameters; costs a little
        per step). Default False (diagonal).
    init : "support_point" (default), "map", "dispersed", dict or list of dicts
        Where the chains start. ``"support_point"``: PyMC's support point with nutpie's
        jitter, a different start per chain. ``"dispersed"``: the conditional mode below,
        jittered per chain (uniform +-1 on every unconstrained coordinate), so chains start
        apart around a mode. A dict: that point (constrained values of the free variables,
        PyMC's ``initvals``), jittered per chain. A list of dicts: each chain starts at one of
        them (nutpie: picked by the chain's seed; PyMC: in turn), jittered, e.g. draws of an
        earlier fit (``fit_until_converged``'s later rounds). ``"map"``: every chain starts
        at the conditional posterior mode with the between-patient SDs at their prior medians (see
        :func:`initial_point`); for ODE models whose patients' parameters have more than one
        local mode, where warm-up from a jittered start can leave chains in different modes.
        R-hat then checks the chains' mixing around that start, not whether the posterior has
        other modes.
    init_jitter : float
        Half-width of the uniform jitter of a ``"dispersed"`` or given start on every
        unconstrained coordinate (default 1, nutpie's and PyMC's own). Smaller values keep the
        chains near a start known to lie in the bulk (``fit_until_converged`` restarts stuck
        chains from posterior draws with ``RESTART_JITTER``). nutpie only; PyMC's NUTS
        jitters by 1.
    rtol : float, optional
        Relative tolerance of the ODE solves in the likelihood (ODE models only; default
        ``ODE_RTOL``, 1e-6); see :func:`build_model`. Recorded in ``info["rtol"]``.

    Returns
    -------
    PopulationFit
    """
    pdata = (
        data
        if isinstance(data, PopulationData)
        else prepare_population_data(data, assay, censoring=censoring)
    )
    if draws < 1 or tune < 0 or chains < 1:
        raise CartKineticsError("draws and chains must be >= 1 and tune >= 0")
    if target_accept is None:
        target_accept = DEFAULT_TARGET_ACCEPT
    seed = DEFAULT_SEED if seed is None else int(seed)
    t0 = time.perf_counter()
    pm_model, info = build_model(
        pdata,
        model,
        infusion_effect=infusion_effect,
        infusion_effect_random=infusion_effect_random,
        covariates=covariates,
        residual=residual,
        priors=priors,
        fixed=fixed,
        centred=centred,
        pooled=pooled,
        truncate=truncate,
        observations=observations,
        iov=iov,
        rtol=rtol,
    )
    info["build_seconds"] = time.perf_counter() - t0
    idata, sinfo = sample(
        pm_model,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        sampler=sampler,
        progress=progress,
        target_accept=target_accept,
        cores=cores,
        low_rank=low_rank_mass_matrix,
        init=init,
        init_jitter=init_jitter,
    )
    info["sampling"] = sinfo
    info["settings"] = {"draws": draws, "tune": tune, "chains": chains, "seed": seed,
                        "target_accept": target_accept}
    fit = PopulationFit(idata, pdata, info)
    t0 = time.perf_counter()
    add_groups(idata, pdata, info, seed, fit)
    sinfo["postprocess_seconds"] = time.perf_counter() - t0
    fit.pm_model = pm_model
    fit.diagnostics(warn=warn)
    return fit
