"""Data of the hierarchical fit: series -> PopulationData (observations, BLQ bounds, series and
patient indices).

Part of :mod:`cartkinetics.fit.population` (split from one module; names re-exported there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError


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


def series_list(data: Any) -> tuple[list[Any], pd.DataFrame | None]:
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
    series, patients_table = series_list(data)
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
