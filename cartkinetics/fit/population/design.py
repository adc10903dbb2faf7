"""Covariate design and observation mapping of the hierarchical fit.

Part of :mod:`cartkinetics.fit.population` (split from one module; names re-exported there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.data import column_key
from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.population.data import PopulationData


def output_observations(
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


def default_effects(model: Any) -> tuple[str, ...]:
    """Default second-infusion effects: cmax and tmax where the model has them."""
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


def covariate_design(
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
        if table is None or column_key(col) not in table.columns:
            have = [] if table is None else list(table.columns)
            raise CartKineticsError(
                f"covariate {col!r}: not a column of the patient table (columns: {have})",
                column=col,
            )
        vals = table.reindex(pdata.patients)[column_key(col)]
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
