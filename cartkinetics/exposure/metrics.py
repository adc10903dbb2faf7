"""Exposure metrics per patient, joined to the cohort table, with their units.

The metrics come from wherever the kinetics were summarised -- NCA of the observed series
(:func:`cartkinetics.nca`), a table of fitted outcomes, or any per-series table with the
columns ``patient, infusion, assay, unit`` and numeric metric columns -- and are reduced
to one row per patient: the infusion the cohort's outcomes follow (by default each
patient's last infusion: the cohort's times count from the (second) CAR-T infusion) and
one assay (qPCR when several are present).

Units: levels (``cmax``, ``clast``, ``c_day28`` ...) in the series' unit; areas
(``auc_0_28``, ``auc_0_84``, ``auc_0_last``) in unit x day; times (``tmax``, ``tlast``,
``half_life``, ``doubling_time``, ``persistence`` ...) in days.

Exposure known at a landmark day L (for survival analyses without immortal-time bias,
see :mod:`cartkinetics.exposure.survival`): ``auc_0_X`` with X <= L, and ``cmax_by_L``
(the highest quantifiable level up to day L). ``cmax_by_L`` is computed from the series
when the kinetics are given; from a table alone it equals ``cmax`` where ``tmax <= L`` and
is unknown (NaN, stated) otherwise.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError

#: identifying columns of a per-series or per-patient metrics table
KEY_COLUMNS = ("patient", "infusion", "assay", "unit")
#: metrics analysed when none are named (the ones regulatory reviews report first)
DEFAULT_METRICS = ("cmax", "auc_0_28")
#: metrics that are times (days)
TIME_METRICS = (
    "tmax", "tlast", "half_life", "doubling_time", "persistence", "auc_end",
    "expansion_doubling_time", "contraction_half_life", "terminal_half_life",
)
_AUC_RE = re.compile(r"^auc_0_(\d+(?:p\d+)?)$")
_NOT_METRICS = {"n_obs", "n_blq", "source_row", "infusion", "persistence_censored"}

METRIC_LABELS = {
    "cmax": "Cmax",
    "tmax": "Tmax",
    "auc_0_28": "AUC0-28",
    "auc_0_84": "AUC0-84",
    "auc_0_last": "AUC0-last",
    "clast": "Clast",
    "tlast": "Tlast",
    "half_life": "half-life",
    "persistence": "persistence",
}


def metric_label(name: str) -> str:
    """Display label of a metric (``auc_0_28`` -> ``AUC0-28``, ``cmax_by_28`` -> ``Cmax by
    day 28``)."""
    if name in METRIC_LABELS:
        return METRIC_LABELS[name]
    m = _AUC_RE.match(name)
    if m:
        return f"AUC0-{m.group(1).replace('p', '.')}"
    m = re.match(r"^cmax_by_(\d+(?:p\d+)?)$", name)
    if m:
        return f"Cmax by day {m.group(1).replace('p', '.')}"
    return name


def metric_unit(name: str, level_unit: str) -> str:
    """Unit of a metric given the level unit of its series (e.g. copies/ug).

    Areas are in ``level_unit x day``, times in ``day``, levels in ``level_unit``; a
    metric this function does not know keeps no unit (``""``).
    """
    if name in TIME_METRICS or name.endswith("_day") or name.endswith("_days"):
        return "day"
    if name.startswith("auc"):
        from cartkinetics.units import area_unit

        return (area_unit(level_unit) or "") if level_unit else ""
    if name.startswith(("cmax", "clast", "c_day", "cmin")):
        return level_unit
    return ""


def known_by(name: str) -> float | None:
    """Day by which a metric is known for every patient (None: only at the end of
    follow-up, e.g. persistence or half-life).

    ``auc_0_X``, ``cmax_by_X`` and ``c_dayX`` (the level at day X) are known at day X.
    """
    m = _AUC_RE.match(name)
    if m:
        return float(m.group(1).replace("p", "."))
    m = re.match(r"^(?:cmax_by_|c_day)(\d+(?:p\d+)?)$", name)
    if m:
        return float(m.group(1).replace("p", "."))
    return None


def _tag(day: float) -> str:
    return f"{float(day):g}".replace(".", "p")


def _as_frame(obj: Any) -> pd.DataFrame:
    """A metrics table from a DataFrame or a result object with ``.to_frame()``."""
    if isinstance(obj, pd.DataFrame):
        return obj.copy()
    if hasattr(obj, "to_frame") and callable(obj.to_frame):
        frame = obj.to_frame()
        if isinstance(frame, pd.DataFrame):
            return frame.copy()
    raise CartKineticsError(
        "exposure: expected a metrics table (DataFrame with patient, infusion, assay, unit and "
        f"numeric metric columns) or an object with .to_frame(); got {type(obj).__name__}"
    )


def _is_kinetics(obj: Any) -> bool:
    from cartkinetics.data import KineticsData

    return isinstance(obj, KineticsData | str | Path)


def _cmax_by(data: Any, day: float, assay: str | None) -> pd.DataFrame:
    """Highest quantifiable level at or before ``day`` per series (NaN when none)."""
    rows = []
    for s in data.series(assay=assay):
        t = np.asarray(s.day, dtype=float)
        c = np.asarray(s.value, dtype=float)
        q = (~np.asarray(s.blq, dtype=bool)) & (t <= day)
        rows.append({"patient": s.patient, "infusion": int(s.infusion), "assay": s.assay,
                     f"cmax_by_{_tag(day)}": float(c[q].max()) if q.any() else math.nan})
    return pd.DataFrame(rows)


def series_metrics(
    exposure: Any,
    *,
    assay: str | None = None,
    landmark: float | None = 28.0,
    read_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Per-series metrics table from kinetics data or from a metrics table.

    Parameters
    ----------
    exposure : KineticsData, path, DataFrame, or object with ``.to_frame()``
        Kinetics (a :class:`~cartkinetics.data.KineticsData` or a file path: NCA is run
        here with :func:`cartkinetics.nca`) or a table with ``patient`` (+ ``infusion``,
        ``assay``, ``unit``) and numeric metric columns (an NCA table, fitted outcomes...).
        A DataFrame with a ``day`` and a ``value`` column is read as kinetics.
    assay : str, optional
        Restrict to this assay.
    landmark : float, optional
        Landmark day L: adds ``cmax_by_L`` (see the module docstring).
    read_options : dict, optional
        Passed to :func:`cartkinetics.read_kinetics` when ``exposure`` is a path.

    Returns
    -------
    DataFrame
        One row per series; ``attrs["source"]`` says where the metrics came from.
    """
    from cartkinetics.noncompartmental import nca

    data = None
    if isinstance(exposure, pd.DataFrame) and {"day", "value"} <= set(exposure.columns):
        from cartkinetics.data import read_kinetics

        data = read_kinetics(exposure, **(read_options or {}))
    elif _is_kinetics(exposure):
        from cartkinetics.data import KineticsData, read_kinetics

        data = (exposure if isinstance(exposure, KineticsData)
                else read_kinetics(exposure, **(read_options or {})))
    if data is not None:
        table = _as_frame(nca(data, assay=assay))
        source = "NCA of the observed series (cartkinetics.nca)"
        if landmark is not None:
            extra = _cmax_by(data, landmark, assay)
            if not extra.empty:
                table = table.merge(extra, on=["patient", "infusion", "assay"], how="left")
    else:
        table = _as_frame(exposure)
        source = "metrics table given"
        if "patient" not in table.columns:
            raise CartKineticsError(
                "exposure metrics table has no 'patient' column; give one row per patient "
                "(or per patient x infusion x assay) with numeric metric columns"
            )
        if landmark is not None and {"cmax", "tmax"} <= set(table.columns):
            col = f"cmax_by_{_tag(landmark)}"
            if col not in table.columns:
                tm = pd.to_numeric(table["tmax"], errors="coerce")
                table[col] = np.where(tm <= landmark, pd.to_numeric(table["cmax"]), np.nan)
    from cartkinetics.data import patient_id

    table["patient"] = [patient_id(p) for p in table["patient"]]
    if assay is not None and "assay" in table.columns:
        table = table[table["assay"].astype(str).str.lower() == assay.lower()]
        if table.empty:
            raise CartKineticsError(f"exposure: no series of assay {assay!r}")
    table.attrs["source"] = source
    return table.reset_index(drop=True)


def per_patient(
    table: pd.DataFrame,
    *,
    infusion: int | str = "last",
    assay: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Reduce a per-series metrics table to one row per patient.

    Parameters
    ----------
    table : DataFrame
        From :func:`series_metrics`.
    infusion : int or "last"
        The infusion whose exposure is related to the outcomes: a number, or ``"last"``
        (each patient's last infusion in the table).
    assay : str, optional
        The assay; default qPCR when present, else the only one (several: an error).

    Returns
    -------
    table : DataFrame
        One row per patient.
    notes : list of str
        What was chosen and why.
    """
    notes: list[str] = []
    t = table.copy()
    if "assay" in t.columns:
        assays = sorted(t["assay"].dropna().astype(str).unique())
        if assay is None and len(assays) > 1:
            if "qpcr" in assays:
                assay = "qpcr"
                notes.append(f"assays {assays} in the kinetics: qpcr used (--assay to choose)")
            else:
                raise CartKineticsError(
                    f"exposure metrics hold several assays {assays}; name the one to relate to "
                    "the outcomes (assay=..., --assay)"
                )
        if assay is not None:
            t = t[t["assay"].astype(str) == assay]
    if "infusion" in t.columns:
        t["infusion"] = pd.to_numeric(t["infusion"], errors="raise").astype(int)
        if infusion == "last":
            last = t.groupby("patient")["infusion"].transform("max")
            t = t[t["infusion"] == last]
            counts = sorted(set(t["infusion"].tolist()))
            notes.append(
                "exposure of each patient's last infusion in the kinetics (infusion "
                f"{', '.join(str(c) for c in counts)}): the cohort's outcome times count from it"
            )
        else:
            k = int(infusion)
            missing = sorted(set(table["patient"]) - set(t.loc[t["infusion"] == k, "patient"]))
            t = t[t["infusion"] == k]
            if missing:
                notes.append(f"no infusion {k} series for {', '.join(missing)}")
            notes.append(f"exposure of infusion {k}")
    dup = t["patient"][t["patient"].duplicated()].unique().tolist()
    if dup:
        raise CartKineticsError(
            f"exposure metrics: several rows for patient(s) {', '.join(map(str, dup))} after "
            "choosing infusion and assay; give one row per patient x infusion x assay"
        )
    if "unit" not in t.columns:
        notes.append("the exposure table has no 'unit' column: metric units are not known")
    else:
        units = sorted(t["unit"].dropna().astype(str).unique())
        if len(units) > 1:
            raise CartKineticsError(
                f"exposure metrics are in different units {units} across patients; convert them "
                "to one unit (cartkinetics.read_kinetics converts known assay units) first"
            )
    return t.reset_index(drop=True), notes


def metric_columns(table: pd.DataFrame) -> list[str]:
    """Numeric metric columns of a metrics table (identifiers and counts left out)."""
    out = []
    for c in table.columns:
        if c in KEY_COLUMNS or c in _NOT_METRICS or c.endswith("_truncated"):
            continue
        if c.endswith(("_low", "_high")):
            continue
        if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c]):
            out.append(c)
    return out


def level_unit(table: pd.DataFrame) -> str:
    """The level unit of a per-patient metrics table ("" when the table has none)."""
    if "unit" not in table.columns:
        return ""
    units = table["unit"].dropna().astype(str).unique()
    return str(units[0]) if len(units) else ""
