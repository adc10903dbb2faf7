"""Priors of the hierarchical fit: defaults centred on the published values, user overrides, fixed
parameters.

Part of :mod:`cartkinetics.fit.population` (split from one module; names re-exported there).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.data import column_key
from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.population.constants import (
    IOV_PRIOR_SCALE,
    OMEGA_SD_LOG,
    OMEGA_SD_LOG_UNPUBLISHED,
    TAU_PRIOR,
)
from cartkinetics.fit.population.data import PopulationData
from cartkinetics.fit.problem import get_model


def default_priors(model: Any) -> dict[str, Any]:
    """Default (weakly informative) priors, centred on the model's published values.

    Returns
    -------
    dict with keys
        ``mu``: name -> (mean, sd) on each parameter's ``transform`` scale (log, or logit
        for fractions);
        ``omega``: name -> ("lognormal", median, sd_log) (also "gamma"/"halfnormal", see
        :func:`omega_prior_arrays`); ``delta``: name -> (mean, sd); ``tau``: name -> the
        prior of the infusion effect's between-patient SD, in the forms of ``omega``
        (default ``TAU_PRIOR``; a bare number is a HalfNormal scale); ``sigma``:
        ("lognormal", median, sd_log) or ("halfnormal", scale); ``nu``: ("gamma", alpha,
        beta); ``b``: sd of covariate coefficients; ``iov``: name -> prior of the
        between-infusion (inter-occasion) SD, same forms (default HalfNormal scale
        ``IOV_PRIOR_SCALE``).
    """
    model = get_model(model)
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


def merge_priors(model: Any, priors: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`default_priors` with the user's overrides (unknown keys or names refused)."""
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


def omega_prior_arrays(spec: dict[str, Any], free: list[str],
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


def upper_limits(
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


def fixed_values(
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
            if table is None or column_key(v) not in table.columns:
                have = [] if table is None else list(table.columns)
                raise CartKineticsError(
                    f"fixed: {n!r} = column {v!r} of the patient table, which has no such "
                    f"column (columns: {have}; give a patient table: patients= of read_kinetics, "
                    "--patients on the command line)"
                )
            per_patient = table[column_key(v)]
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
