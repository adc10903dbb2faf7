"""The PyMC model of the hierarchical fit (build_model).

Part of :mod:`cartkinetics.fit.population` (split from one module; names re-exported there).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.population.constants import (
    DEFAULT_CENTRED,
    ODE_RTOL,
    ORDER_ALPHA_BETA,
    ORDER_SCALE,
)
from cartkinetics.fit.population.data import PopulationData
from cartkinetics.fit.population.design import (
    covariate_design,
    default_effects,
    output_observations,
)
from cartkinetics.fit.population.priors import (
    fixed_values,
    merge_priors,
    omega_prior_arrays,
    upper_limits,
)
from cartkinetics.fit.problem import get_model
from cartkinetics.models import stein2019 as _stein2019
from cartkinetics.units import check_prior_units


def _sd_variable(name: str, spec: dict[str, Any], params: list[str], dims: str,
                 key: str) -> Any:
    """A vector of SDs (one per parameter of ``params``) with the priors of ``spec`` (the
    forms of :func:`omega_prior_arrays`); inside a PyMC model context."""
    import pymc as pm

    family, args = omega_prior_arrays(spec, params, key)
    if family == "gamma":
        return pm.Gamma(name, alpha=args[0], beta=args[1], dims=dims)
    if family == "lognormal":
        return pm.LogNormal(name, mu=np.log(args[0]), sigma=args[1], dims=dims)
    return pm.HalfNormal(name, sigma=args[0], dims=dims)


# the Stein 2019 closed forms live in the model's file; these names stay for callers
stein_log_curve_pt = _stein2019.log_curve_pytensor


stein_log_curve_np = _stein2019.log_curve_numpy


def build_model(
    pdata: PopulationData,
    model: Any = "stein2019",
    *,
    infusion_effect: tuple[str, ...] | list[str] | None = None,
    infusion_effect_random: bool = True,
    covariates: dict[str, list[str]] | None = None,
    residual: str = "normal",
    priors: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
    centred: tuple[str, ...] | list[str] | None = None,
    pooled: tuple[str, ...] | list[str] | None = None,
    mutable_data: bool = False,
    truncate: bool = True,
    observations: dict[str, str] | None = None,
    iov: tuple[str, ...] | list[str] | None = None,
    rtol: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build the PyMC model (see the module docstring for the equations).

    Parameters
    ----------
    pdata : PopulationData (:func:`prepare_population_data`)
    model : str or Model
        ``"stein2019"`` (closed form in PyTensor) or any library ODE model.
    infusion_effect : sequence of parameter names
        Parameters shifted by the second infusion (default: cmax and tmax where the model has
        them, none otherwise). Ignored when no series is a second infusion.
    infusion_effect_random : bool
        Let the infusion effect vary between patients (SD ``tau``), needed for per-patient
        ratios; False gives one shift shared by all patients.
    covariates : dict parameter -> list of covariate columns
        Columns of the patient table (``data.patients``) or ``"dose"`` (per infusion, log).
    residual : "normal" or "student"
        Distribution of ln(observation) around ln(prediction).
    priors : dict, optional
        Overrides of :func:`default_priors` (same structure).
    fixed : dict name -> value, optional
        Parameters held fixed (no mean, no random effect): a number for everyone (e.g. beta
        when the data end before the slow phase), or per patient, a column name of the
        patient table or a mapping patient -> value (a regressor, e.g. Liu 2022's baseline
        leukaemia nB0; natural units of the parameter).
    centred : sequence of parameter names, optional
        Random effects sampled in the centred form ``phi_i ~ N(mu, omega)``; the others use
        the non-centred ``phi_i = mu + omega z_i``. Default ``DEFAULT_CENTRED`` (tmax, cmax,
        alpha: every CK series pins them down, and the non-centred form then mixes poorly:
        bulk ESS of the typical Tmax 37 versus >1000 for 2 x 500 draws on the 20-patient
        recovery cohort); pass ``()`` for the fully non-centred model.
    pooled : sequence of parameter names, optional
        Free parameters estimated at the population level only: a typical value ``mu`` and no
        between-patient random effect (every patient takes ``mu``, plus covariate and infusion
        effects if any). For parameters the data do not identify per patient, whose
        between-patient SD and random effects then mix poorly (Liu 2022's eBp,
        docs/population.md). The posterior's ``omega`` keeps one entry per free parameter,
        0 for the pooled ones; the sampled SDs of the others are ``omega_re`` (dim
        ``param_re``).
    mutable_data : bool
        Hold ``log_y`` and the censoring bounds in ``pm.Data`` containers (``log_y_data``,
        ``log_lower``) so that one compiled model serves many data sets of the same design.
    truncate : bool
        Truncate the centred random effects at the model library's declared upper limits
        (Stein: Tmax <= 60 days, alpha <= 10/day) and, for Stein, add the ordering factor
        sigmoid((ln alpha_i - ln beta_i) / ``ORDER_SCALE``) per patient (``pm.Potential``
        ``alpha_above_beta``). Without them a patient whose peak falls between sampling days
        lets alpha run to infinity (a ridge where NUTS diverges) and a chain can get stuck in
        the label-switched mode alpha <-> beta (docs/population.md).
    observations : dict output assay -> model observation name, optional
        For data with several outputs (``prepare_population_data(assay=[...])``), which
        model observation each output measures, e.g. ``{"qpcr": "car_t", "leukaemia":
        "leukaemia"}`` for Liu 2022; the primary output defaults to the model's primary
        observation. Each output has its own residual SD (``sigma`` over dim ``output``).
    iov : sequence of parameter names, optional
        Between-infusion (inter-occasion) variability, NONMEM/Monolix style: each series
        (patient i, infusion k) adds ``omega_iov[j] * kappa[i, k, j]`` to parameter j, kappa
        standard normal (non-centred), on every infusion alike; prior
        ``omega_iov ~ HalfNormal(IOV_PRIOR_SCALE)`` (``priors={"iov": {name: scale}}``). Needs
        at least one patient with two infusions. With IOV on a parameter, a fixed infusion
        effect on it (``infusion_effect_random=False``) is the usual NONMEM model (occasion
        as a covariate plus IOV); a random effect as well is weakly identified.
    rtol : float, optional
        Relative tolerance of the ODE solves (states and forward sensitivities) in the
        likelihood of an ODE model; default ``ODE_RTOL`` (1e-6). A looser tolerance makes
        each gradient cheaper (Liu 2022: 2755 Tsit5 steps at 1e-4 against 5499 at 1e-6) at
        an error in ln prediction of about 10 x rtol, to weigh against the residual SD
        (docs/population.md). Not used by models with a closed form (refused if given).

    Returns
    -------
    (pm.Model, info dict)
    """
    import pymc as pm
    import pytensor.tensor as pt

    model = get_model(model)
    names = list(model.param_names)
    kinds = model.transforms  # each parameter's declared sampling scale
    fixed, fixed_series = fixed_values(fixed, pdata, model)
    free = [n for n in names if n not in fixed]
    if residual not in ("normal", "student"):
        raise CartKineticsError(f"residual must be 'normal' or 'student', got {residual!r}")
    pri = merge_priors(model, priors)
    # the level parameters' default prior means are published values in the model's unit
    check_prior_units(
        model, pdata.unit, stated=set((priors or {}).get("mu") or {}) | set(fixed),
        what="the default prior (centred on the published values)",
        fix="state the population means of those parameters in the data's unit "
            "(priors={'mu': {name: (ln value, sd)}}), fix them (fixed=), or use data in "
            "the published unit",
    )
    has_second = bool(np.any(pdata.series_infusion >= 2))
    if infusion_effect is None:
        infusion_effect = default_effects(model)
    effects = [e for e in infusion_effect] if has_second else []
    for e in effects:
        if e not in free:
            raise CartKineticsError(
                f"infusion_effect: {e!r} is not a free parameter of {model.name} ({free})"
            )
    design = covariate_design(pdata, covariates, names)
    obs_of = output_observations(model, pdata, observations)
    iov = list(iov or ())
    for n in iov:
        if n not in free:
            raise CartKineticsError(f"iov: {n!r} is not a free parameter of {model.name} ({free})")
    if iov and not has_second:
        raise CartKineticsError(
            "iov: between-infusion variability needs patients with two infusions; these data "
            "have one infusion per patient (it would be confounded with the between-patient SD)"
        )

    coords: dict[str, Any] = {
        "param": free,
        "patient": pdata.patients,
        "series": pdata.series_labels,
        "obs": np.arange(pdata.n_obs),
        "all_param": names,
    }
    pooled = list(pooled or ())
    for n in pooled:
        if n not in free:
            raise CartKineticsError(f"pooled: {n!r} is not a free parameter ({free})")
    if centred is None:
        centred = [n for n in DEFAULT_CENTRED if n in free and n not in pooled]
    else:
        for n in centred:
            if n not in free:
                raise CartKineticsError(f"centred: {n!r} is not a free parameter ({free})")
            if n in pooled:
                raise CartKineticsError(
                    f"{n!r} is both centred and pooled (a pooled parameter has no random effect)"
                )
        centred = list(centred)
    random = [n for n in free if n not in pooled]  # parameters with a random effect
    if pooled and random:
        coords["param_re"] = random
    if [n for n in random if n not in centred]:
        coords["param_nc"] = [n for n in random if n not in centred]
    cen_order = [n for n in free if n in centred]  # the order of ``cen`` below
    if cen_order:
        coords["param_c"] = cen_order
    if effects:
        coords["effect"] = effects
    if iov:
        coords["iov_param"] = iov
    if design is not None and design.names:
        coords["covariate"] = design.names
    multi = pdata.n_outputs > 1
    if multi:
        coords["output"] = list(pdata.outputs)

    mu_mean = np.array([pri["mu"][n][0] for n in free])
    mu_sd = np.array([pri["mu"][n][1] for n in free])
    om_family, om_args = (
        omega_prior_arrays(pri["omega"], random) if random else ("halfnormal", [])
    )
    closed_form = model.closed_form_pytensor is not None
    if rtol is not None and closed_form:
        raise CartKineticsError(
            f"rtol: {model.name} is solved in closed form, so no ODE solver tolerance applies; "
            "leave rtol (--rtol) unset"
        )
    rtol = None if closed_form else float(ODE_RTOL if rtol is None else rtol)
    if rtol is not None and not 0.0 < rtol < 0.1:
        raise CartKineticsError(f"rtol must lie in (0, 0.1), got {rtol:g}")

    with pm.Model(coords=coords) as pm_model:
        mu = pm.Normal("mu", mu=mu_mean, sigma=mu_sd, dims="param")
        cols_pat = {}
        if random:
            # the sampled SDs: over all free parameters ("omega"), or, with pooled parameters,
            # over those with a random effect ("omega_re"; "omega" is then a Deterministic
            # over all free parameters, 0 for the pooled ones, so summaries and simulations
            # index it as before)
            om_name, om_dims = ("omega_re", "param_re") if pooled else ("omega", "param")
            if om_family == "gamma":
                om_re = pm.Gamma(om_name, alpha=om_args[0], beta=om_args[1], dims=om_dims)
            elif om_family == "lognormal":
                om_re = pm.LogNormal(om_name, mu=np.log(om_args[0]), sigma=om_args[1],
                                     dims=om_dims)
            else:
                om_re = pm.HalfNormal(om_name, sigma=om_args[0], dims=om_dims)
        if pooled:
            om_cols = [om_re[random.index(n)] if n in random else pt.as_tensor(0.0)
                       for n in free]
            omega = pm.Deterministic("omega", pt.stack(om_cols), dims="param")
            for n in pooled:
                # no random effect: every patient takes the typical value
                cols_pat[n] = pt.repeat(mu[free.index(n)][None], pdata.n_patients)
        else:
            omega = om_re
        nc = [n for n in random if n not in centred]
        cen = [n for n in random if n in centred]
        if nc:
            # non-centred: phi = mu + omega z, z ~ N(0, 1) (weakly informed parameters)
            jn = [free.index(n) for n in nc]
            z = pm.Normal("z", 0.0, 1.0, dims=("patient", "param_nc"))
            block = mu[jn][None, :] + omega[jn][None, :] * z
            for k, n in enumerate(nc):
                cols_pat[n] = block[:, k]
        if cen:
            # centred: phi ~ N(mu, omega), the better geometry when each patient's data pin
            # the parameter down (Betancourt & Girolami 2015)
            jc = [free.index(n) for n in cen]
            upper = upper_limits(model, cen, kinds, names) if truncate else None
            if upper is not None:
                # truncated at the model library's declared upper limits (Stein: Tmax
                # <= 60 days, alpha <= 10/day): when a patient's peak falls between sampling
                # days the data leave alpha unbounded above and the posterior runs along a
                # ridge of ever sharper peaks, where NUTS diverges (docs/population.md)
                block = pm.TruncatedNormal("phi_c", mu=mu[jc], sigma=omega[jc], upper=upper,
                                           dims=("patient", "param_c"))
            else:
                block = pm.Normal("phi_c", mu=mu[jc], sigma=omega[jc],
                                  dims=("patient", "param_c"))
            for k, n in enumerate(cen):
                cols_pat[n] = block[:, k]
        for fast, slow in model.ordered_rates if truncate and ORDER_ALPHA_BETA else ():
            if fast not in cols_pat or slow not in cols_pat:
                continue
            # Stein's fast contraction is faster than the slow decline (alpha > beta):
            # without an ordering the biexponential has a second, label-switched mode
            # (alpha <-> beta, FB <-> 1 - FB) in which a chain can get stuck. A smooth
            # penalty ln sigmoid((ln alpha - ln beta) / s) per patient: about 0 where the
            # published population lives (ln alpha - ln beta = 3.9), -35 at the switched mode
            gap = (cols_pat[fast] - cols_pat[slow]) / ORDER_SCALE
            pm.Potential(f"{fast}_above_{slow}", pt.sum(-pt.softplus(-gap)))
        phi_pat = pt.stack([cols_pat[n] for n in free], axis=1)  # (patient, param)
        pm.Deterministic("eta", phi_pat - mu[None, :], dims=("patient", "param"))
        phi = phi_pat[pdata.series_patient]  # (series, param)
        if design is not None and design.names:
            b = pm.Normal("b", 0.0, float(pri["b"]), dims=("covariate", "param"))
            mask = np.zeros((len(design.names), len(free)))
            for p, cs in design.targets.items():
                if p in free:
                    for c in cs:
                        mask[design.names.index(c), free.index(p)] = 1.0
            phi = phi + pt.dot(pt.as_tensor(design.X), b * mask)
        if effects:
            eidx = [free.index(e) for e in effects]
            d_mean = np.array([pri["delta"][e][0] for e in effects])
            d_sd = np.array([pri["delta"][e][1] for e in effects])
            delta = pm.Normal("delta", mu=d_mean, sigma=d_sd, dims="effect")
            shift = delta[None, :]
            if infusion_effect_random:
                tau = _sd_variable("tau", pri["tau"], effects, "effect", "tau")
                u = pm.Normal("u", 0.0, 1.0, dims=("patient", "effect"))
                shift = shift + (tau[None, :] * u)[pdata.series_patient]
            else:
                shift = pt.repeat(shift, pdata.n_series, axis=0)
            sec = pt.as_tensor(pdata.second)[:, None]
            phi = pt.inc_subtensor(phi[:, eidx], sec * shift)
        if iov:
            # inter-occasion variability: a deviation per series (patient x infusion)
            iidx = [free.index(n) for n in iov]
            om_iov = _sd_variable("omega_iov", pri["iov"], iov, "iov_param", "iov")
            kappa = pm.Normal("kappa", 0.0, 1.0, dims=("series", "iov_param"))
            phi = pt.inc_subtensor(phi[:, iidx], om_iov[None, :] * kappa)
        # natural-scale parameters per series, fixed ones filled in
        cols = []
        for j, n in enumerate(names):
            if n in fixed:
                cols.append(pt.as_tensor(fixed_series[n]))
            else:
                k = free.index(n)
                cols.append(model.parameters[j].from_scale_pt(phi[:, k]))
        theta = pm.Deterministic("theta", pt.stack(cols, axis=1), dims=("series", "all_param"))

        if closed_form:
            # the model's closed form in PyTensor: per-series parameters on their sampled
            # scale (fixed ones transformed) and on the natural scale
            scaled = {
                n: (pt.as_tensor(model.parameters[j].to_scale(fixed_series[n])) if n in fixed
                    else phi[:, free.index(n)])
                for j, n in enumerate(names)
            }
            natural = {n: theta[:, j] for j, n in enumerate(names)}
            log_pred = model.closed_form_pytensor(
                pt.as_tensor(pdata.t), scaled, natural, pdata.obs_series
            )
        else:
            from cartkinetics.fit.pytensor_ops import ODEObservationOp

            # sensitivities only for the free parameters (the fixed ones are constants)
            op = ODEObservationOp(model, pdata, wrt=free, rtol=rtol,
                                  observations=[obs_of[k] for k in range(pdata.n_outputs)])
            log_pred = op(theta)

        s_pri = pri["sigma"]
        # one residual SD per output (CAR-T levels and leukaemia counts differ in error)
        sdims = "output" if multi else None
        if s_pri[0] == "lognormal":
            sigma = pm.LogNormal("sigma", mu=math.log(s_pri[1]), sigma=s_pri[2], dims=sdims)
        else:
            sigma = pm.HalfNormal("sigma", sigma=s_pri[1], dims=sdims)
        sig_row = sigma[pdata.obs_output] if multi else sigma
        if residual == "normal":
            dist = pm.Normal.dist(mu=log_pred, sigma=sig_row)
        else:
            nu = pm.Gamma("nu", alpha=pri["nu"][1], beta=pri["nu"][2])
            dist = pm.StudentT.dist(nu=nu, mu=log_pred, sigma=sig_row)
        if mutable_data:
            # data containers: nutpie's compiled model can then take new data sets of the
            # same design without recompiling (``compiled.with_data``), e.g. for SBC
            lower = pm.Data("log_lower", pdata.log_lower, dims="obs")
            observed = pm.Data("log_y_data", pdata.log_y, dims="obs")
        else:
            lower, observed = pdata.log_lower, pdata.log_y
        pm.Censored("log_y", dist, lower=lower, upper=None, observed=observed, dims="obs")

    info = {
        "model": model,
        "names": names,
        "free": free,
        "kinds": kinds,
        "fixed": fixed,  # typical values (median over patients for per-patient ones)
        "fixed_series": fixed_series,
        "effects": effects,
        "infusion_effect_random": bool(infusion_effect_random and effects),
        "design": design,
        "residual": residual,
        "priors": pri,
        "stein": closed_form,  # kept for saved results: the model has a PyTensor closed form
        "closed_form": closed_form,
        "centred": centred,
        "pooled": pooled,
        "iov": iov,
        "observations": obs_of,
        "rtol": rtol,  # the ODE solves' relative tolerance (None: closed form)
    }
    return pm_model, info
