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

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError
from cartkinetics.models import stein2019 as _stein2019
from cartkinetics.units import check_prior_units

# diagnostics thresholds (Vehtari et al. 2021; Betancourt 2016)
RHAT_MAX = 1.01
ESS_MIN = 400.0
BFMI_MIN = 0.3

# the population part of the model: variable names of every sampled quantity
_FREE_VARS = ("mu", "omega", "omega_re", "z", "phi_c", "delta", "tau", "u", "omega_iov",
              "kappa", "b", "sigma", "nu")
# random effects sampled centred by default: the parameters every CK series pins down
# (peak level, peak time, contraction rate); the others non-centred (see build_model)
DEFAULT_CENTRED = ("tmax", "cmax", "alpha")
# a model's ordered rates (Stein 2019: alpha, the fast contraction, above the patient's beta,
# the slow decline; ``Model.ordered_rates``) kept in order by a smooth penalty of this scale
# (ln units)
ORDER_ALPHA_BETA = True
ORDER_SCALE = 0.1
# seed of fit_population when none is given: a fixed default, so that the same command on the
# same machine gives the same draws; recorded in ``info["settings"]["seed"]`` and the JSON
DEFAULT_SEED = 20190505
# NUTS target acceptance of fit_population (nutpie's own default is 0.8)
DEFAULT_TARGET_ACCEPT = 0.9
# default prior of the between-patient SDs: LogNormal(ln published SD, 0.5), i.e. 95% of
# its mass within a factor 0.38-2.7 of the published value; LogNormal(0, 1) where the model
# publishes no variability
OMEGA_SD_LOG = 0.5
OMEGA_SD_LOG_UNPUBLISHED = 1.0
# default prior of the between-patient SD of the infusion effects (tau): LogNormal with median
# 0.2 and SD 0.75 on the log scale (95% within 0.046-0.87), i.e. patients' second/first ratios
# spread by a factor ~1.2 typically, up to ~2.4. It replaced HalfNormal(0.3) (the same
# median), whose density does not vanish at tau = 0: with 7-20 pairs the data cannot rule out
# tau near 0, the posterior of ln tau then had a long left tail (a funnel with the
# non-centred u), and tau was the quantity with the lowest bulk and tail ESS of the fit
# (docs/population.md, "Why the default fit mixed slowly")
TAU_PRIOR = ("lognormal", 0.2, 0.75)
# default prior of the between-infusion (inter-occasion) SDs: HalfNormal(0.3) on the log (or
# logit) scale, i.e. occasions of one patient differing by a factor up to ~1.8 (95%); NONMEM
# and Monolix analyses of CAR-T or mAb kinetics report IOV of 0.1-0.5
IOV_PRIOR_SCALE = 0.3


# =============================================================================== data
@dataclass
class PopulationData:
    """Observations of one assay arranged for the hierarchical model.

    Attributes
    ----------
    assay, unit : str
    patients : list of str (one entry per patient, the order of the ``patient`` dimension)
    series_keys : list of (patient, infusion, assay)
    series_patient : (n_series,) int, index into ``patients``
    series_infusion : (n_series,) int, infusion number (1, 2, ...)
    series_dose : (n_series,) float, dose of that infusion (NaN if unknown)
    obs_series : (n_obs,) int, index into ``series_keys``
    t : (n_obs,) days since that series' infusion
    value : (n_obs,) observed level (the LLOQ for BLQ rows)
    lloq : (n_obs,) per-row limit (NaN where none)
    censored : (n_obs,) bool, below the LLOQ (M3)
    log_y : (n_obs,) ln(value)
    log_lower : (n_obs,) ln(LLOQ) on censored rows, -inf elsewhere (``pm.Censored`` lower)
    patient_table : DataFrame or None, covariates indexed by patient
    outputs : list of str, the assays in the likelihood (``outputs[0]`` = ``assay``, the
        primary one: Cmax, Tmax and AUC refer to it); several for a joint fit of e.g. CAR-T
        levels and leukaemia counts
    output_units : list of str, the unit of each output
    obs_output : (n_obs,) int, index into ``outputs`` of each row
    """

    assay: str
    unit: str
    patients: list[str]
    series_keys: list[tuple[str, int, str]]
    series_patient: np.ndarray
    series_infusion: np.ndarray
    series_dose: np.ndarray
    obs_series: np.ndarray
    t: np.ndarray
    value: np.ndarray
    lloq: np.ndarray
    censored: np.ndarray
    log_y: np.ndarray
    log_lower: np.ndarray
    patient_table: pd.DataFrame | None = None
    censoring: str = "M3"
    notes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    output_units: list[str] = field(default_factory=list)
    obs_output: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.outputs:
            self.outputs = [self.assay]
            self.output_units = [self.unit]
        if self.obs_output is None:
            self.obs_output = np.zeros(self.n_obs, dtype=np.int64)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    @property
    def primary(self) -> np.ndarray:
        """(n_obs,) bool, rows of the primary output (the CAR-T levels)."""
        return self.obs_output == 0

    @property
    def n_patients(self) -> int:
        return len(self.patients)

    @property
    def n_series(self) -> int:
        return len(self.series_keys)

    @property
    def n_obs(self) -> int:
        return int(self.t.shape[0])

    @property
    def second(self) -> np.ndarray:
        """(n_series,) 1.0 for a second (or later) infusion, else 0.0."""
        return (self.series_infusion >= 2).astype(float)

    @property
    def series_labels(self) -> list[str]:
        return [f"{p}/inf{k}" for p, k, _ in self.series_keys]

    def frame(self) -> pd.DataFrame:
        """One row per observation (patient, infusion, day, value, lloq, censored)."""
        return pd.DataFrame(
            {
                "patient": [self.series_keys[s][0] for s in self.obs_series],
                "infusion": self.series_infusion[self.obs_series],
                "day": self.t,
                "value": self.value,
                "lloq": self.lloq,
                "censored": self.censored,
                "output": [self.outputs[k] for k in self.obs_output],
            }
        )


def _series_list(data: Any) -> tuple[list[Any], pd.DataFrame | None]:
    """Series objects and the patient table from KineticsData, a list of Series or a file."""
    if isinstance(data, (str, Path, pd.DataFrame)):
        from cartkinetics.data import read_kinetics

        data = read_kinetics(data)
    if hasattr(data, "series") and callable(data.series):
        patients = getattr(data, "patients", None)
        return list(data.series()), patients
    if isinstance(data, (list, tuple)):
        return list(data), None
    raise CartKineticsError(
        "population fit: expected KineticsData (cartkinetics.read_kinetics), a list of Series, "
        f"a DataFrame or a file path, got {type(data).__name__}"
    )


def prepare_population_data(
    data: Any, assay: str | list[str] | tuple[str, ...] | None = None, censoring: str = "M3"
) -> PopulationData:
    """Arrange one assay's series (or several outputs) for the hierarchical model.

    Parameters
    ----------
    data : KineticsData, list of Series, DataFrame or path
        Kinetics data (``cartkinetics.read_kinetics``); used and censored rows enter.
    assay : str or sequence of str, optional
        Assay to fit (``"qpcr"``, ``"flow"``, ...). Needed when the data hold several: levels of
        different assays are never mixed in one residual error. A sequence fits several
        outputs jointly, each with its own residual SD, the first being the primary one (the
        CAR-T levels whose Cmax, Tmax and AUC are reported), e.g. ``["qpcr", "leukaemia"]``
        for Liu 2022's CAR-T and leukaemia counts; ``build_model(observations=...)`` then
        maps each to a model observation.
    censoring : "M3" (default) or "M1"
        BLQ rows as ln P(Y < LLOQ) (M3), or discarded (M1, for comparison only); the rows
        are prepared by :func:`cartkinetics.fit.likelihood.prepare`.

    Returns
    -------
    PopulationData
        One series per (patient, infusion) with primary-assay rows; rows of the other outputs
        join their patient's and infusion's series (a series of an output alone is noted and
        left out).
    """
    series, patients_table = _series_list(data)
    if not series:
        raise CartKineticsError("population fit: the data contain no usable series")
    assays = sorted({s.assay for s in series})
    if assay is None:
        if len(assays) > 1:
            raise CartKineticsError(
                f"population fit: the data hold several assays {assays}; pass assay= to choose "
                "one (levels of different assays are not mixed in one likelihood)"
            )
        assay = assays[0]
    outputs = [assay] if isinstance(assay, str) else [str(a) for a in assay]
    if not outputs or len(set(outputs)) != len(outputs):
        raise CartKineticsError(f"population fit: assay must name distinct assays, got {assay}")
    units = []
    for a in outputs:
        chosen_a = [s for s in series if s.assay == a]
        if not chosen_a:
            raise CartKineticsError(f"population fit: no series of assay {a!r}; found {assays}")
        us = sorted({s.unit for s in chosen_a})
        if len(us) > 1:
            raise CartKineticsError(f"population fit: assay {a!r} has several units {us}")
        units.append(us[0])
    primary = outputs[0]
    chosen = [s for s in series if s.assay in outputs and len(np.asarray(s.day)) > 0]
    chosen.sort(key=lambda s: (str(s.patient), int(s.infusion), outputs.index(s.assay)))
    from cartkinetics.fit.likelihood import prepare

    keys, sp, si, sd = [], [], [], []
    os_, t, v, lq, cens, out_k, notes = [], [], [], [], [], [], []
    index: dict[tuple[str, int], int] = {}
    for s in chosen:
        where = f"series patient {s.patient} infusion {s.infusion} ({s.assay})"
        # the project's one data preparation (log-observations, log-LLOQ, censored mask)
        prep = prepare(s, censoring=censoring)
        notes.extend(f"{where}: {n}" for n in prep.notes)
        if prep.n == 0:
            notes.append(f"{where}: no row left for the likelihood; series left out")
            continue
        if np.any(prep.t < 0) or np.any(~np.isfinite(prep.t)):
            raise CartKineticsError(f"{where}: days since infusion must be finite and >= 0")
        pk = (str(s.patient), int(s.infusion))
        if s.assay == primary:
            index[pk] = len(keys)
            keys.append((pk[0], pk[1], primary))
            sp.append(pk[0])
            si.append(pk[1])
            dose = getattr(s, "dose", None)
            sd.append(float(dose) if dose is not None else np.nan)
        elif pk not in index:
            notes.append(f"{where}: no {primary} series for this patient and infusion; left out")
            continue
        k = index[pk]
        os_.append(np.full(prep.n, k, dtype=np.int64))
        t.append(prep.t)
        # ln value on quantified rows, ln limit on censored rows (pm.Censored's convention)
        v.append(np.where(prep.censored, prep.log_lloq, prep.log_y))
        lq.append(np.asarray(s.lloq, dtype=float)[prep.rows])
        cens.append(prep.censored)
        out_k.append(np.full(prep.n, outputs.index(s.assay), dtype=np.int64))
    if not keys:
        raise CartKineticsError(f"population fit: no usable rows in assay {primary!r}")
    # rows grouped by series (the order the Ops and the per-series code expect)
    obs_series = np.concatenate(os_)
    order = np.argsort(obs_series, kind="stable")
    patients = list(dict.fromkeys(sp))
    pidx = {p: i for i, p in enumerate(patients)}
    t_all = np.concatenate(t)[order]
    log_y = np.concatenate(v)[order]
    cens_all = np.concatenate(cens)[order]
    lloq_all = np.concatenate(lq)[order]
    v_all = np.exp(log_y)
    log_lower = np.where(cens_all, log_y, -np.inf)
    table = None
    if patients_table is not None and len(patients_table):
        table = patients_table.copy()
        if "patient" in table.columns:
            table = table.set_index(table["patient"].astype(str))
        table.index = table.index.astype(str)
    return PopulationData(
        assay=primary,
        unit=units[0],
        patients=patients,
        series_keys=keys,
        series_patient=np.asarray([pidx[p] for p in sp], dtype=np.int64),
        series_infusion=np.asarray(si, dtype=np.int64),
        series_dose=np.asarray(sd, dtype=float),
        obs_series=obs_series[order],
        t=t_all,
        value=v_all,
        lloq=lloq_all,
        censored=cens_all,
        log_y=log_y,
        log_lower=log_lower,
        patient_table=table,
        censoring=censoring,
        notes=notes,
        outputs=outputs,
        output_units=units,
        obs_output=np.concatenate(out_k)[order],
    )


# =============================================================================== model spec
def _get_model(model: Any) -> Any:
    if isinstance(model, str):
        from cartkinetics import models

        return models.get(model)
    return model


def default_priors(model: Any) -> dict[str, Any]:
    """Default (weakly informative) priors, centred on the model's published values.

    Returns
    -------
    dict with keys
        ``mu``: name -> (mean, sd) on each parameter's ``transform`` scale (log, or logit
        for fractions);
        ``omega``: name -> ("lognormal", median, sd_log) (also "gamma"/"halfnormal", see
        :func:`_omega_prior_arrays`); ``delta``: name -> (mean, sd); ``tau``: name -> the
        prior of the infusion effect's between-patient SD, in the forms of ``omega``
        (default ``TAU_PRIOR``; a bare number is a HalfNormal scale); ``sigma``:
        ("lognormal", median, sd_log) or ("halfnormal", scale); ``nu``: ("gamma", alpha,
        beta); ``b``: sd of covariate coefficients; ``iov``: name -> prior of the
        between-infusion (inter-occasion) SD, same forms (default HalfNormal scale
        ``IOV_PRIOR_SCALE``).
    """
    model = _get_model(model)
    mu, omega, delta, tau, iov = {}, {}, {}, {}, {}
    for p in model.parameters:
        mu[p.name] = (float(p.to_scale(p.value)), 1.0)
        w2 = model.bsv.get(p.name) if getattr(model, "bsv", None) else None
        # LogNormal with median = the published SD; zero density at omega = 0
        # (boundary-avoiding: no funnel at small omega); 1 (ln scale) where none published
        if w2:
            omega[p.name] = ("lognormal", math.sqrt(w2), OMEGA_SD_LOG)
        else:
            omega[p.name] = ("lognormal", 1.0, OMEGA_SD_LOG_UNPUBLISHED)
        delta[p.name] = (0.0, 0.7)
        tau[p.name] = TAU_PRIOR
        iov[p.name] = IOV_PRIOR_SCALE
    rsd = getattr(model, "residual_sd", None)
    sigma = ("lognormal", float(rsd), 0.5) if rsd else ("halfnormal", 1.0)
    return {
        "mu": mu,
        "omega": omega,
        "delta": delta,
        "tau": tau,
        "iov": iov,
        "sigma": sigma,
        "nu": ("gamma", 2.0, 0.1),
        "b": 0.5,
    }


def _merge_priors(model: Any, priors: dict[str, Any] | None) -> dict[str, Any]:
    out = default_priors(model)
    if not priors:
        return out
    for key, val in priors.items():
        if key not in out:
            raise CartKineticsError(f"priors: unknown key {key!r}; keys are {sorted(out)}")
        if isinstance(out[key], dict):
            unknown = set(val) - set(out[key])
            if unknown:
                raise CartKineticsError(
                    f"priors[{key!r}]: unknown parameters {sorted(unknown)}; the model has "
                    f"{sorted(out[key])}"
                )
            out[key] = {**out[key], **val}
        else:
            out[key] = val
    return out


def _omega_prior_arrays(spec: dict[str, Any], free: list[str],
                        key: str = "omega") -> tuple[str, list[np.ndarray]]:
    """Family and parameter arrays of the between-patient SD priors of the free parameters.

    Each entry is ``("gamma", shape, rate)``, ``("lognormal", median, sd_log)``,
    ``("halfnormal", scale)`` or a bare number (a HalfNormal scale). All free parameters must
    share one family (``omega`` is one vector).
    """
    fam, args = [], []
    for n in free:
        v = spec[n]
        if isinstance(v, (int, float, np.floating)):
            v = ("halfnormal", float(v))
        v = tuple(v)
        if v[0] not in ("gamma", "lognormal", "halfnormal") or len(v) != (
            2 if v[0] == "halfnormal" else 3
        ):
            raise CartKineticsError(
                f"priors[{key!r}][{n!r}]: expected ('gamma', shape, rate), ('lognormal', "
                f"median, sd_log), ('halfnormal', scale) or a HalfNormal scale, got {v!r}"
            )
        fam.append(v[0])
        args.append([float(a) for a in v[1:]])
    if len(set(fam)) > 1:
        raise CartKineticsError(
            f"priors[{key!r}]: all SD priors of one kind must share one family, got "
            f"{dict(zip(free, fam, strict=True))}"
        )
    family = fam[0] if fam else "halfnormal"
    return family, [np.array(a) for a in zip(*args, strict=True)] if args else [np.ones(0)]


def _sd_variable(name: str, spec: dict[str, Any], params: list[str], dims: str,
                 key: str) -> Any:
    """A vector of SDs (one per parameter of ``params``) with the priors of ``spec`` (the
    forms of :func:`_omega_prior_arrays`); inside a PyMC model context."""
    import pymc as pm

    family, args = _omega_prior_arrays(spec, params, key)
    if family == "gamma":
        return pm.Gamma(name, alpha=args[0], beta=args[1], dims=dims)
    if family == "lognormal":
        return pm.LogNormal(name, mu=np.log(args[0]), sigma=args[1], dims=dims)
    return pm.HalfNormal(name, sigma=args[0], dims=dims)


def _upper_limits(
    model: Any, params: list[str], kinds: list[str], names: list[str]
) -> np.ndarray | None:
    """Declared upper limits of ``params`` on the sampled scale (``transform``), or None.

    Infinite limits (and the limit of a logit or bounded scale, which that scale already
    keeps) become 1e3 on the sampled scale, i.e. no truncation in practice; None when no
    parameter has a finite limit.
    """
    out = []
    for n in params:
        j = names.index(n)
        par = model.parameters[j]
        up = float(par.upper)
        if (
            not math.isfinite(up)
            or (kinds[j] == "logit" and up >= 1.0)
            or kinds[j] == "bounded"
            or (kinds[j] == "log" and up <= 0)
        ):
            out.append(np.inf)
        else:
            out.append(float(par.to_scale(up)))
    arr = np.array(out)
    if not np.any(np.isfinite(arr)):
        return None
    return np.where(np.isfinite(arr), arr, 1e3)


def _fixed_values(
    fixed: dict[str, Any] | None, pdata: PopulationData, model: Any
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Fixed parameters as (typical value, per-series values).

    A value is a number (everyone), the name of a column of the patient table
    (``data.patients``), or a mapping / pandas Series patient -> value (e.g. each patient's
    measured baseline leukaemia as Liu 2022's regressor nB0). The typical value of a
    per-patient parameter is the median over the patients (used by the population bands and
    the typical infusion effect).
    """
    names = list(model.param_names)
    typical: dict[str, float] = {}
    series: dict[str, np.ndarray] = {}
    for n, v in (fixed or {}).items():
        if n not in names:
            raise CartKineticsError(f"fixed: unknown parameter {n!r}; the model has {names}")
        par = model.parameters[names.index(n)]
        if isinstance(v, str):
            table = pdata.patient_table
            if table is None or v not in table.columns:
                have = [] if table is None else list(table.columns)
                raise CartKineticsError(
                    f"fixed: {n!r} = column {v!r} of the patient table, which has no such "
                    f"column (columns: {have}; pass patients= to read_kinetics)"
                )
            per_patient = table[v]
            source = f"patient table column {v!r}"
        elif isinstance(v, (dict, pd.Series)):
            per_patient = pd.Series(v)
            per_patient.index = per_patient.index.astype(str)
            source = f"the values given for {n!r}"
        else:
            try:
                val = float(v)
            except (TypeError, ValueError):
                raise CartKineticsError(
                    f"fixed: {n!r} must be a number, a patient-table column name or a mapping "
                    f"patient -> value, got {type(v).__name__}"
                ) from None
            per_patient = pd.Series(val, index=pdata.patients)
            source = f"fixed {n!r}"
        vals = np.empty(pdata.n_patients)
        for i, pid in enumerate(pdata.patients):
            if pid not in per_patient.index:
                raise CartKineticsError(f"fixed: {source} has no value for patient {pid}")
            try:
                x = float(per_patient.loc[pid])
            except (TypeError, ValueError):
                x = float("nan")
            if not (math.isfinite(x) and par.lower <= x <= par.upper) or (
                par.log_scale and x <= 0
            ):
                raise CartKineticsError(
                    f"fixed: {source}, patient {pid}: {per_patient.loc[pid]!r} is not a finite "
                    f"value in [{par.lower}, {par.upper}] {par.unit}"
                    + (" (> 0: a log-scale parameter)" if par.log_scale else "")
                )
            vals[i] = x
        typical[n] = float(np.median(vals))
        series[n] = vals[pdata.series_patient]
    return typical, series


def _output_observations(
    model: Any, pdata: PopulationData, observations: dict[str, str] | None
) -> dict[int, str]:
    """Model observation measured by each output (index into ``pdata.outputs``)."""
    obs = dict(observations or {})
    for a in obs:
        if a not in pdata.outputs:
            raise CartKineticsError(
                f"observations: {a!r} is not an output of the data ({pdata.outputs})"
            )
    if model.closed_form_pytensor is not None:
        if pdata.n_outputs > 1 or obs:
            raise CartKineticsError(
                f"{model.name} has one observation in its closed form "
                f"({model.primary_observation}): fit one assay at a time"
            )
        return {0: model.primary_observation}
    names = list(model.obs_names)
    out = {}
    for k, a in enumerate(pdata.outputs):
        name = obs.get(a, model.primary_observation if k == 0 else None)
        if name is None:
            raise CartKineticsError(
                f"observations: which observation of {model.name} does output {a!r} measure? "
                f"Pass observations={{{a!r}: one of {names}}}"
            )
        if name not in names:
            raise CartKineticsError(
                f"observations: {name!r} (for {a!r}) is not an observation of {model.name}; "
                f"it has {names}"
            )
        out[k] = name
    return out


def _default_effects(model: Any) -> tuple[str, ...]:
    names = model.param_names
    eff = tuple(n for n in ("cmax", "tmax") if n in names)
    return eff


@dataclass
class CovariateDesign:
    """Covariate matrix per patient (standardised) and its description."""

    names: list[str]
    X: np.ndarray  # (n_patients, n_cov) for patient-level; per-series for dose
    per_series: np.ndarray  # (n_cov,) bool, True for series-level columns (dose)
    targets: dict[str, list[str]]  # parameter -> covariate names
    centre: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)  # categorical reference levels


def _covariate_design(
    pdata: PopulationData, covariates: dict[str, list[str]] | None, param_names: list[str]
) -> CovariateDesign | None:
    """Build the standardised covariate matrix (series level, so dose can vary by infusion)."""
    if not covariates:
        return None
    cols_needed = sorted({c for cs in covariates.values() for c in cs})
    unknown_p = set(covariates) - set(param_names)
    if unknown_p:
        raise CartKineticsError(
            f"covariates: unknown parameters {sorted(unknown_p)}; the model has {param_names}"
        )
    table = pdata.patient_table
    names: list[str] = []
    columns: list[np.ndarray] = []
    origin: dict[str, str] = {}
    centre, scale = {}, {}
    references: dict[str, str] = {}
    for col in cols_needed:
        if col == "dose":
            raw = pdata.series_dose
            if np.any(~np.isfinite(raw)) or np.any(raw <= 0):
                raise CartKineticsError(
                    "covariate 'dose': every series needs a positive dose (column dose)"
                )
            x = np.log(raw)
            c, s = float(x.mean()), float(x.std()) or 1.0
            names.append("log_dose")
            columns.append((x - c) / s)
            origin["log_dose"] = col
            centre["log_dose"], scale["log_dose"] = c, s
            continue
        if table is None or col not in table.columns:
            have = [] if table is None else list(table.columns)
            raise CartKineticsError(
                f"covariate {col!r}: not a column of the patient table (columns: {have})",
                column=col,
            )
        vals = table.reindex(pdata.patients)[col]
        missing = [p for p, v in zip(pdata.patients, vals, strict=True) if pd.isna(v)]
        if missing:
            raise CartKineticsError(
                f"covariate {col!r}: missing for patients {missing}", column=col
            )
        per_series_vals = vals.to_numpy()[pdata.series_patient]
        if pd.api.types.is_numeric_dtype(vals):
            x = np.asarray(per_series_vals, dtype=float)
            if col.lower().startswith("dose") and np.all(x > 0):
                x = np.log(x)
                label = f"log_{col}"
            else:
                label = col
            c, s = float(np.mean(x)), float(np.std(x)) or 1.0
            names.append(label)
            columns.append((x - c) / s)
            origin[label] = col
            centre[label], scale[label] = c, s
        else:
            levels = vals.astype(str).value_counts()
            references[col] = str(levels.index[0])
            for lev in sorted(levels.index[1:]):
                label = f"{col}[{lev}]"
                names.append(label)
                columns.append((per_series_vals.astype(str) == lev).astype(float))
                origin[label] = col
    X = np.column_stack(columns) if columns else np.zeros((pdata.n_series, 0))
    targets = {
        p: [n for n in names if origin[n] in cs] for p, cs in covariates.items()
    }
    return CovariateDesign(
        names, X, np.ones(len(names), bool), targets, centre, scale, references
    )


# =============================================================================== pytensor
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

    Returns
    -------
    (pm.Model, info dict)
    """
    import pymc as pm
    import pytensor.tensor as pt

    model = _get_model(model)
    names = list(model.param_names)
    kinds = model.transforms  # each parameter's declared sampling scale
    fixed, fixed_series = _fixed_values(fixed, pdata, model)
    free = [n for n in names if n not in fixed]
    if residual not in ("normal", "student"):
        raise CartKineticsError(f"residual must be 'normal' or 'student', got {residual!r}")
    pri = _merge_priors(model, priors)
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
        infusion_effect = _default_effects(model)
    effects = [e for e in infusion_effect] if has_second else []
    for e in effects:
        if e not in free:
            raise CartKineticsError(
                f"infusion_effect: {e!r} is not a free parameter of {model.name} ({free})"
            )
    design = _covariate_design(pdata, covariates, names)
    obs_of = _output_observations(model, pdata, observations)
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
        _omega_prior_arrays(pri["omega"], random) if random else ("halfnormal", [])
    )
    closed_form = model.closed_form_pytensor is not None

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
            upper = _upper_limits(model, cen, kinds, names) if truncate else None
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
            op = ODEObservationOp(model, pdata, wrt=free,
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
    }
    return pm_model, info


# =============================================================================== sampling
def _erfcx(x: float) -> float:
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
    cohort). With this pure-numba implementation (:func:`_erfcx`, equal to
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
        return numba_njit(_erfcx), "cartkinetics.fit.population._erfcx-v1"

    _ERFCX_REGISTERED = True
    return True


def _sample(
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
) -> tuple[Any, dict[str, Any]]:
    """Sample with nutpie (numba backend) or PyMC NUTS; returns (idata, timing/info)."""
    import pymc as pm

    info: dict[str, Any] = {"sampler": sampler,
                            "init": init if isinstance(init, str) else "given point, jittered"}
    start = _initial_point(pm_model, init, seed, info)
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
            if start is not None and not jitter:
                init_kw["jitter_rvs"] = set()
            compiled = nutpie.compile_pymc_model(pm_model, backend="numba", **init_kw)
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
                "initvals": start, "init": "jitter+adapt_diag" if jitter else "adapt_diag"}),
        )
    info["compile_seconds"] = float("nan")
    info["sample_seconds"] = time.perf_counter() - t0
    return idata, info


# the between-patient SDs: held at their start (the prior's median) while the other
# parameters move to their conditional mode, where the hierarchical posterior has none
_INIT_HELD = ("omega", "omega_re")


def _initial_point(pm_model: Any, init: Any, seed: int | None,
                   info: dict[str, Any]) -> dict[str, np.ndarray] | None:
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
    if init == "support_point":
        return None
    if init not in ("map", "dispersed"):
        raise CartKineticsError(
            f"init must be 'support_point', 'map', 'dispersed' or a dict, got {init!r}"
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
        from pymc.initial_point import make_initial_point_fn

        tp = make_initial_point_fn(model=pm_model, overrides=start, jitter_rvs=set(),
                                   return_transformed=True)(0)
        info["init_logp"] = float(pm_model.compile_logp(jacobian=False)(tp))
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


# =============================================================================== results
def _ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    q = np.nanquantile(x, [0.5, lo, hi])
    return float(q[0]), float(q[1]), float(q[2])


class PopulationFit:
    """Result of :func:`fit_population`.

    Attributes
    ----------
    idata : arviz.InferenceData
        Groups posterior, sample_stats, posterior_predictive (``log_y``: ln level, censored at
        the LLOQ as the model defines it), log_likelihood (``log_y``), observed_data,
        constant_data.
    data : PopulationData
    model : Model
    info : dict (settings, priors, sampler, timings)
    """

    def __init__(self, idata: Any, pdata: PopulationData, info: dict[str, Any]) -> None:
        self.idata = idata
        self.data = pdata
        self.info = info
        self.model = info["model"]
        self.pm_model: Any = None
        self._log_pred: np.ndarray | None = None
        self._theta: np.ndarray | None = None
        self._outcomes: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------ draws
    def _sampled_vars(self) -> list[str]:
        """Names of the sampled population and random-effect variables in the posterior
        (``omega`` is a Deterministic, not sampled, when some parameters are pooled)."""
        post = self.idata.posterior
        vn = [v for v in _FREE_VARS if v in post]
        if "omega_re" in post or self.info.get("pooled"):
            vn = [v for v in vn if v != "omega"]
        return vn

    def _stack(self, name: str) -> np.ndarray:
        """Posterior draws of a variable with chain and draw merged first."""
        da = self.idata.posterior[name]
        arr = da.values
        return arr.reshape((-1,) + arr.shape[2:])

    @property
    def theta(self) -> np.ndarray:
        """(n_draws, n_series, n_params) natural-scale parameters per series."""
        if self._theta is None:
            self._theta = self._stack("theta")
        return self._theta

    def predict_log(
        self, t: np.ndarray, theta: np.ndarray, observation: str | None = None
    ) -> np.ndarray:
        """ln prediction at days ``t`` for parameter rows ``theta`` (m, n_params) -> (m, nt);
        ``observation``: a model observation (default: the primary one, the CAR-T level)."""
        return self.predict_logs(t, theta, [observation or self.model.primary_observation])[0]

    def predict_logs(
        self, t: np.ndarray, theta: np.ndarray, observations: list[str]
    ) -> list[np.ndarray]:
        """As :meth:`predict_log` for several model observations from one solve."""
        if self.model.closed_form_numpy is not None:
            return [self.model.closed_form_numpy(t[None, :], theta[:, None, :])] * len(
                observations)
        sol = self.model.solve_batch(t, theta)
        out = []
        for name in observations:
            obs = sol.observed[name]
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(np.where(obs > 0, np.log(np.where(obs > 0, obs, 1.0)), -np.inf))
        return out

    # ------------------------------------------------------------ summaries
    def summary(self) -> pd.DataFrame:
        """Population parameters: typical value, between-patient SD, effects, residual SD.

        Columns: name, kind, median, ci_low, ci_high (95% CrI), r_hat, ess_bulk, ess_tail.
        Typical values are on the parameter's natural scale (units of the model); ``omega``
        is the SD of the log (or logit) parameter; ``ratio`` rows are exp(delta); ``iov``
        rows the between-infusion SD (same scale as omega).
        """
        import arviz as az

        post = self.idata.posterior
        rows = []
        # unrounded (ArviZ rounds R-hat to 2 decimals by default: 1.014 would read 1.01)
        diag = az.summary(self.idata, var_names=self._sampled_vars(), kind="diagnostics",
                          round_to="none")
        pooled = self.info.get("pooled", [])
        par = {p.name: p for p in self.model.parameters}

        def diag_of(label: str) -> tuple[float, float, float]:
            if label in diag.index:
                r = diag.loc[label]
                return float(r["r_hat"]), float(r["ess_bulk"]), float(r["ess_tail"])
            return (float("nan"),) * 3

        for j, n in enumerate(self.info["free"]):
            mu = self._stack("mu")[:, j]
            typ = par[n].from_scale(mu)
            rows.append(("typical", n, *_ci(typ), *diag_of(f"mu[{n}]")))
            if n in pooled:  # no random effect, no between-patient SD
                continue
            om_label = f"omega_re[{n}]" if pooled else f"omega[{n}]"
            rows.append(("omega", n, *_ci(self._stack("omega")[:, j]), *diag_of(om_label)))
        for j, e in enumerate(self.info["effects"]):
            d = self._stack("delta")[:, j]
            rows.append(("ratio", e, *_ci(np.exp(d)), *diag_of(f"delta[{e}]")))
            if "tau" in post:
                rows.append(("tau", e, *_ci(self._stack("tau")[:, j]), *diag_of(f"tau[{e}]")))
        for j, n in enumerate(self.info.get("iov") or []):
            rows.append(("iov", n, *_ci(self._stack("omega_iov")[:, j]),
                         *diag_of(f"omega_iov[{n}]")))
        if "b" in post:
            b = self._stack("b")
            design = self.info["design"]
            for ci, c in enumerate(design.names):
                for j, n in enumerate(self.info["free"]):
                    if c in design.targets.get(n, []):
                        rows.append(
                            ("covariate", f"{c} on {n}", *_ci(b[:, ci, j]),
                             *diag_of(f"b[{c}, {n}]"))
                        )
        sig = self._stack("sigma")
        if sig.ndim == 1:
            rows.append(("sigma", "residual", *_ci(sig), *diag_of("sigma")))
        else:  # one residual SD per output
            for k, a in enumerate(self.data.outputs):
                rows.append(("sigma", f"residual {a}", *_ci(sig[:, k]),
                             *diag_of(f"sigma[{a}]")))
        if "nu" in post:
            rows.append(("nu", "residual", *_ci(self._stack("nu")), *diag_of("nu")))
        return pd.DataFrame(
            rows,
            columns=["kind", "name", "median", "ci_low", "ci_high", "r_hat", "ess_bulk",
                     "ess_tail"],
        )

    def diagnostics(self, warn: bool = True) -> dict[str, Any]:
        """R-hat, bulk/tail ESS (all sampled quantities), divergences, E-BFMI per chain.

        ``max_rhat`` and the ESS minima run over every sampled quantity (population
        parameters and each patient's random effects); ``max_rhat_population`` over the
        population parameters only (mu, omega, delta, tau, b, sigma, nu).

        Thresholds: R-hat <= 1.01, ESS >= 400 (bulk and tail), no divergence, E-BFMI >= 0.3.
        Computed by :func:`cartkinetics.fit.convergence.diagnose`, which also names the worst
        quantities (``worst``), stuck chains (``stuck_chains``) and the patients the chains
        disagree about (``patients_disagreeing``). A ``RuntimeWarning`` names every failed
        check and the worst quantities when ``warn`` is true.
        """
        from cartkinetics.fit.convergence import diagnose

        rep = diagnose(self.idata, var_names=self._sampled_vars())
        out = rep.to_dict()
        out["n_draws"] = int(rep.n_chains * rep.n_draws)
        # the floats as computed (to_dict maps non-finite values to None for JSON)
        for k in ("max_rhat", "max_rhat_population", "min_ess_bulk", "min_ess_tail"):
            out[k] = float(getattr(rep, k))
        if warn and not rep.ok:
            warnings.warn(
                "population fit diagnostics failed: " + "; ".join(rep.problems)
                + f"; worst: {rep.worst_text()} (what to do: {rep.advice()})",
                RuntimeWarning,
                stacklevel=2,
            )
        return out

    def shrinkage(self) -> pd.DataFrame:
        """Eta-shrinkage of each random effect: 1 - SD_i(E[eta_i]) / E[omega].

        The NONMEM definition on posterior means; near 1 means the data say little about the
        patients' individual values (their estimates collapse to the population value).
        """
        rows = []
        eta = self._stack("eta")
        om = self._stack("omega")
        for j, n in enumerate(self.info["free"]):
            if n in self.info.get("pooled", []):  # no random effect to shrink
                continue
            sd = float(np.std(eta[:, :, j].mean(axis=0), ddof=1)) if eta.shape[1] > 1 else np.nan
            rows.append(("omega", n, 1.0 - sd / float(np.mean(om[:, j]))))
        if "tau" in self.idata.posterior:
            u = self._stack("u")
            tau = self._stack("tau")
            e = u * tau[:, None, :]
            has2 = np.zeros(self.data.n_patients, bool)
            has2[self.data.series_patient[self.data.series_infusion >= 2]] = True
            for j, n in enumerate(self.info["effects"]):
                if has2.sum() > 1:
                    sd = float(np.std(e[:, has2, j].mean(axis=0), ddof=1))
                    rows.append(("tau", n, 1.0 - sd / float(np.mean(tau[:, j]))))
        return pd.DataFrame(rows, columns=["random_effect", "parameter", "shrinkage"])

    # ------------------------------------------------------------ outcomes
    def outcome_draws(self, max_draws: int = 1000, t_end: float = 400.0) -> dict[str, np.ndarray]:
        """Per-series posterior draws of curve outcomes (``cartkinetics.outcomes``).

        Returns dict key -> (n_draws_used, n_series) for ``cmax``, ``tmax``, ``auc_0_28``
        (and the other ``OUTCOME_KEYS``), computed on a dense grid from 0 to ``t_end`` days.
        """
        if self._outcomes is not None:
            return self._outcomes
        from cartkinetics.outcomes import batch_curve_outcomes

        th = self.theta
        step = max(1, th.shape[0] // max_draws)
        th = th[::step]
        grid = np.unique(np.concatenate([np.linspace(0, 60, 601), np.linspace(60, t_end, 200)]))
        m, ns, npar = th.shape
        rows = th.reshape(m * ns, npar)
        logc = self.predict_log(grid, rows)
        out = batch_curve_outcomes(grid, np.exp(logc))
        self._outcomes = {k: v.reshape(m, ns) for k, v in out.items()}
        return self._outcomes

    def patient_outcomes(self) -> pd.DataFrame:
        """Per-series posterior Cmax, Tmax, AUC0-28 (median and 95% CrI) and parameters.

        Cmax and Tmax of Stein 2019 are the fitted parameters themselves; AUC0-28 (level x
        day) and, for ODE models, Cmax/Tmax come from the curves through
        ``cartkinetics.outcomes.batch_curve_outcomes``.
        """
        draws = self.outcome_draws()
        names = self.info["names"]
        th = self.theta
        rows = []
        for s, (p, k, _) in enumerate(self.data.series_keys):
            row: dict[str, Any] = {"patient": p, "infusion": k}
            for key in ("cmax", "tmax", "auc_0_28"):
                if key in self.model.outcome_parameters:
                    x = th[:, s, names.index(key)]
                else:
                    x = draws[key][:, s]
                row[key], row[f"{key}_low"], row[f"{key}_high"] = _ci(x)
            for j, n in enumerate(names):
                row[f"param_{n}"] = float(np.median(th[:, s, j]))
            rows.append(row)
        return pd.DataFrame(rows)

    def _per_series_draws(self, key: str) -> np.ndarray:
        names = self.info["names"]
        if key in self.model.outcome_parameters:
            return self.theta[:, :, names.index(key)]
        return self.outcome_draws()[key]

    def patient_infusion_effects(self) -> pd.DataFrame:
        """Per patient with both infusions: Cmax ratio (2nd/1st), Tmax difference (days)."""
        keys = self.data.series_keys
        index = {(p, k): s for s, (p, k, _) in enumerate(keys)}
        cm = self._per_series_draws("cmax")
        tm = self._per_series_draws("tmax")
        rows = []
        for p in self.data.patients:
            if (p, 1) in index and (p, 2) in index:
                s1, s2 = index[(p, 1)], index[(p, 2)]
                r = cm[:, s2] / cm[:, s1]
                d = tm[:, s2] - tm[:, s1]
                rows.append(
                    {
                        "patient": p,
                        "cmax_ratio": _ci(r)[0],
                        "cmax_ratio_low": _ci(r)[1],
                        "cmax_ratio_high": _ci(r)[2],
                        "p_greater": float(np.mean(r > 1)),
                        "tmax_difference": _ci(d)[0],
                        "tmax_difference_low": _ci(d)[1],
                        "tmax_difference_high": _ci(d)[2],
                        "p_less": float(np.mean(d < 0)),
                    }
                )
        return pd.DataFrame(rows)

    def infusion_effect(self) -> dict[str, Any]:
        """Typical-patient infusion effect with 95% CrIs.

        ``cmax_ratio``: Cmax(second)/Cmax(first) of the typical patient (exp(delta_cmax) for
        Stein); ``p_greater`` = P(ratio > 1). ``tmax_difference``: Tmax(second) - Tmax(first)
        in days of the typical patient; ``p_less`` = P(difference < 0), i.e. an earlier peak.
        For ODE models both come from the typical curves (population means, second infusion
        with the population shifts) through ``cartkinetics.outcomes``.
        Returns an empty dict when no patient has a second infusion.
        """
        effects = self.info["effects"]
        if not effects:
            return {}
        free = self.info["free"]
        mu = self._stack("mu")
        delta = self._stack("delta")
        outp = self.model.outcome_parameters
        if "cmax" in outp and "cmax" in effects and self.model.parameter("cmax").transform == "log":
            ratio = np.exp(delta[:, effects.index("cmax")])
        else:
            ratio = None
        if "tmax" in outp and "tmax" in free and self.model.parameter("tmax").transform == "log":
            tm1 = np.exp(mu[:, free.index("tmax")])
            dt = delta[:, effects.index("tmax")] if "tmax" in effects else 0.0
            diff = tm1 * (np.exp(dt) - 1.0)
        else:
            diff = None
        if ratio is None or diff is None:
            c_r, t_d = self._typical_outcome_effect()
            ratio = c_r if ratio is None else ratio
            diff = t_d if diff is None else diff
        out: dict[str, Any] = {}
        m, lo, hi = _ci(ratio)
        out["cmax_ratio"] = {"median": m, "ci_low": lo, "ci_high": hi,
                             "p_greater": float(np.mean(ratio > 1))}
        m, lo, hi = _ci(diff)
        out["tmax_difference"] = {"median": m, "ci_low": lo, "ci_high": hi,
                                  "p_less": float(np.mean(diff < 0))}
        out["effects"] = {
            e: dict(zip(("median", "ci_low", "ci_high"), _ci(np.exp(delta[:, i])), strict=True))
            for i, e in enumerate(effects)
        }
        out["n_pairs"] = int(len(self.patient_infusion_effects()))
        return out

    def _typical_outcome_effect(self, max_draws: int = 500) -> tuple[np.ndarray, np.ndarray]:
        from cartkinetics.outcomes import batch_curve_outcomes

        names, free = self.info["names"], self.info["free"]
        mu = self._stack("mu")
        delta = self._stack("delta")
        step = max(1, mu.shape[0] // max_draws)
        mu, delta = mu[::step], delta[::step]
        m = mu.shape[0]
        th1 = np.tile(self.model.typical, (m, 1))
        for n, v in self.info["fixed"].items():
            th1[:, names.index(n)] = v
        th2 = th1.copy()
        for k, n in enumerate(free):
            j = names.index(n)
            par = self.model.parameters[j]
            th1[:, j] = par.from_scale(mu[:, k])
            sh = delta[:, self.info["effects"].index(n)] if n in self.info["effects"] else 0.0
            th2[:, j] = par.from_scale(mu[:, k] + sh)
        grid = np.linspace(0, 60, 601)
        o1 = batch_curve_outcomes(grid, np.exp(self.predict_log(grid, th1)))
        o2 = batch_curve_outcomes(grid, np.exp(self.predict_log(grid, th2)))
        return o2["cmax"] / o1["cmax"], o2["tmax"] - o1["tmax"]

    # ------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly result (the keys of ``cartkinetics fit-population --json``)."""
        diag = self.diagnostics(warn=False)
        pat = self.patient_outcomes()
        eff = self.patient_infusion_effects()

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, (np.floating,)):
                return clean(float(x))
            if isinstance(x, (np.integer,)):
                return int(x)
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        return clean(
            {
                "model": self.model.name,
                "assay": self.data.assay,
                "outputs": list(self.data.outputs),
                "unit": self.data.unit,
                "n_patients": self.data.n_patients,
                "n_series": self.data.n_series,
                "n_observations": self.data.n_obs,
                "n_censored": int(self.data.censored.sum()),
                "censoring": "M3 (likelihood of ln Y < ln LLOQ, pm.Censored)",
                "residual": self.info["residual"],
                "sampler": self.info["sampling"]["sampler"],
                "seed": self.info.get("settings", {}).get("seed"),
                "settings": dict(self.info.get("settings", {})),
                "timing_seconds": {
                    k: v for k, v in self.info["sampling"].items() if k.endswith("seconds")
                },
                "infusion_effect": self.infusion_effect(),
                "diagnostics": {
                    k: diag[k]
                    for k in ("max_rhat", "max_rhat_population", "min_ess_bulk", "min_ess_tail",
                              "divergences", "bfmi", "ok", "problems", "thresholds", "worst",
                              "stuck_chains", "chain_logp", "patients_disagreeing", "advice")
                },
                "convergence": self.info.get("convergence"),
                "model_checking": self._model_checking(),
                "population": self.summary().to_dict(orient="records"),
                "shrinkage": self.shrinkage().to_dict(orient="records"),
                "patients": pat.to_dict(orient="records"),
                "patient_infusion_effects": eff.to_dict(orient="records"),
            }
        )

    def _model_checking(self) -> dict[str, Any]:
        """PSIS-LOO per patient and the PIT residuals' summary (never raising)."""
        out: dict[str, Any] = {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out["loo_patient"] = self.loo("patient").to_dict()
                out["pit_residuals"] = self.pit_residuals().to_dict()
        except Exception as exc:  # e.g. no log_likelihood group
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out

    def save(self, out_dir: str | Path, figures: bool = True) -> dict[str, Path]:
        """Write idata (NetCDF), tables (CSV), results.json and figures (PNG) to ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "idata": out / "population_idata.nc",
            "summary": out / "population_summary.csv",
            "patients": out / "population_patients.csv",
            "infusion": out / "population_infusion_effects.csv",
            "json": out / "population_results.json",
        }
        self.idata.to_netcdf(str(paths["idata"]))
        self.summary().to_csv(paths["summary"], index=False)
        self.patient_outcomes().to_csv(paths["patients"], index=False)
        self.patient_infusion_effects().to_csv(paths["infusion"], index=False)
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2))
        if figures:
            import matplotlib

            from cartkinetics.fit import population_plots as pp

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            for name, fn in (
                ("population_pred", pp.plot_population),
                ("individual_pred", pp.plot_individuals),
                ("forest_cmax_ratio", pp.plot_forest_cmax_ratio),
                ("vpc_censored", pp.plot_vpc_censored),
                # beside the censored VPC: residuals with the BLQ rows randomised
                ("pit_residuals", lambda f: f.pit_residuals().plot()),
            ):
                try:
                    res = fn(self)
                except ValueError:  # e.g. no second infusions for the forest plot
                    continue
                fig = res.figure if hasattr(res, "figure") else res
                p = out / f"{name}.png"
                fig.savefig(p, dpi=120, bbox_inches="tight")
                plt.close(fig)
                paths[name] = p
        return paths

    # ------------------------------------------------------------ model checking
    def loo(self, by: str = "patient") -> Any:
        """PSIS-LOO leaving out one patient (or ``by="observation"``): elpd, SE, Pareto k per
        unit (:func:`cartkinetics.fit.model_comparison.loo`)."""
        from cartkinetics.fit.model_comparison import loo

        return loo(self, by=by)

    def pit_residuals(self, seed: int | None = None) -> Any:
        """Randomised PIT residuals, BLQ rows included
        (:func:`cartkinetics.fit.model_comparison.pit_residuals`)."""
        from cartkinetics.fit.model_comparison import pit_residuals

        return pit_residuals(self, seed=seed)

    # ------------------------------------------------------------ plots
    def plot_population(self, ax: Any = None, **kw: Any) -> Any:
        """Population posterior predictive band over all series' data (BLQ as open markers);
        returns ax.
        """
        from cartkinetics.fit.population_plots import plot_population

        return plot_population(self, ax=ax, **kw)

    def plot_individual(self, patient: str, ax: Any = None, **kw: Any) -> Any:
        """Posterior predictive bands of one patient's series over the data (days, assay units);
        returns ax.
        """
        from cartkinetics.fit.population_plots import plot_individual

        return plot_individual(self, patient, ax=ax, **kw)

    def plot_forest_cmax_ratio(self, ax: Any = None) -> Any:
        """Forest plot of per-patient Cmax ratios (second/first infusion) with 95% CrIs; returns
        ax.
        """
        from cartkinetics.fit.population_plots import plot_forest_cmax_ratio

        return plot_forest_cmax_ratio(self, ax=ax)

    def plot_vpc(self, ax: Any = None, **kw: Any) -> Any:
        """Censored visual predictive check: fraction below the LLOQ over time (days), observed
        vs predicted; returns ax.
        """
        from cartkinetics.fit.population_plots import plot_vpc_censored

        return plot_vpc_censored(self, ax=ax, **kw)


def _add_groups(idata: Any, pdata: PopulationData, info: dict[str, Any], seed: int | None,
                fit: PopulationFit) -> None:
    """posterior_predictive, log_likelihood, observed_data, constant_data groups."""
    import xarray as xr

    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    theta = fit.theta  # (nc*nd, series, params)
    log_pred = np.empty((theta.shape[0], pdata.n_obs))
    obs_names = [info["observations"][k] for k in range(pdata.n_outputs)]
    for s in range(pdata.n_series):
        # one solve per series serves the rows of every output
        rows = np.flatnonzero(pdata.obs_series == s)
        tt, inv = np.unique(pdata.t[rows], return_inverse=True)
        logs = fit.predict_logs(tt, theta[:, s, :], obs_names)
        for k in range(pdata.n_outputs):
            mine = pdata.obs_output[rows] == k
            log_pred[:, rows[mine]] = logs[k][:, inv[mine]]
    sigma = fit._stack("sigma")
    nu = fit._stack("nu") if "nu" in post else None
    ll = log_likelihood_np(log_pred, pdata, sigma, nu)
    rng = np.random.default_rng(seed)
    if nu is None:
        eps = rng.standard_normal(log_pred.shape)
    else:
        eps = rng.standard_t(nu[:, None], size=log_pred.shape)
    y_rep = log_pred + row_sigma(sigma, pdata) * eps
    # censored exactly as pm.Censored: values below the row's lower bound sit at the bound
    y_rep = np.maximum(y_rep, pdata.log_lower[None, :])
    coords = {"chain": post.coords["chain"].values, "draw": post.coords["draw"].values,
              "obs": np.arange(pdata.n_obs)}
    dims = ("chain", "draw", "obs")

    def ds(name: str, arr: np.ndarray) -> xr.Dataset:
        return xr.Dataset({name: (dims, arr.reshape(nc, nd, -1))}, coords=coords)

    # PyMC's own sampler already wrote observed/constant data from the model: ours replace them
    # (the same values, on the coordinates the result object uses)
    for group in ("posterior_predictive", "log_likelihood", "observed_data", "constant_data"):
        if group in idata.groups():
            delattr(idata, group)
    idata.add_groups(
        posterior_predictive=ds("log_y", y_rep),
        log_likelihood=ds("log_y", ll),
        observed_data=xr.Dataset({"log_y": (("obs",), pdata.log_y)},
                                 coords={"obs": coords["obs"]}),
        constant_data=xr.Dataset(
            {
                "day": (("obs",), pdata.t),
                "series": (("obs",), pdata.obs_series),
                "lloq": (("obs",), pdata.lloq),
                "censored": (("obs",), pdata.censored),
                "log_lower": (("obs",), pdata.log_lower),
            },
            coords={"obs": coords["obs"]},
        ),
    )
    fit._log_pred = log_pred


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
    init : "support_point" (default), "map", "dispersed" or dict
        Where the chains start. ``"support_point"``: PyMC's support point with nutpie's
        jitter, a different start per chain. ``"dispersed"``: the conditional mode below,
        jittered per chain (uniform +-1 on every unconstrained coordinate), so chains start
        apart around a mode. A dict: that point (constrained values of the free variables,
        PyMC's ``initvals``), jittered per chain. ``"map"``: every chain starts at the conditional
        posterior mode with the between-patient SDs at their prior medians (see
        :func:`_initial_point`); for ODE models whose patients' parameters have more than one
        local mode, where warm-up from a jittered start can leave chains in different modes.
        R-hat then checks the chains' mixing around that start, not whether the posterior has
        other modes.

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
    )
    info["build_seconds"] = time.perf_counter() - t0
    idata, sinfo = _sample(
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
    )
    info["sampling"] = sinfo
    info["settings"] = {"draws": draws, "tune": tune, "chains": chains, "seed": seed,
                        "target_accept": target_accept}
    fit = PopulationFit(idata, pdata, info)
    t0 = time.perf_counter()
    _add_groups(idata, pdata, info, seed, fit)
    sinfo["postprocess_seconds"] = time.perf_counter() - t0
    fit.pm_model = pm_model
    fit.diagnostics(warn=warn)
    return fit
