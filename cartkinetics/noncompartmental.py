"""Non-compartmental analysis (NCA) of observed CAR-T series.

Per series (patient x infusion x assay): observed Cmax and Tmax, AUC0-28 and AUC0-last by
linear-up / log-down trapezoids (:func:`cartkinetics.outcomes.auc_linlog`, the same area code
as fitted and simulated curves), Clast and Tlast, and the counts of observations and of
values below the limit of quantification (BLQ).

BLQ rule (stated in every output row, column ``blq_rule``):

* BLQ values before the first quantifiable value count as 0;
* the first BLQ value after it ends the AUC: the area runs to the last quantifiable value
  before that BLQ (``auc_end``); quantifiable values after it (a late re-detection) still give
  Clast/Tlast but add no area;
* when a series has no sample at day 0, the curve starts at day 0 with level 0 (the
  extravascular convention of NCA software).

AUC0-28: when the area reaches day 28 the level at day 28 is interpolated (log-linear on a
decline) between the samples around it. When it does not (the series or its AUC stops
earlier), the area up to ``auc_end`` is reported with ``auc_0_28_truncated = True`` -- it is
then a lower bound, never an extrapolation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.data import KineticsData, Series, read_kinetics
from cartkinetics.outcomes import auc_linlog

BLQ_RULE = (
    "BLQ before the first quantifiable value = 0; the first BLQ after it ends the AUC "
    "(area to the last quantifiable value before it); level 0 at day 0 when not sampled"
)

#: columns of the NCA table, in order
NCA_COLUMNS = [
    "patient",
    "infusion",
    "assay",
    "unit",
    "cmax",
    "tmax",
    "auc_0_28",
    "auc_0_28_truncated",
    "auc_0_last",
    "auc_end",
    "clast",
    "tlast",
    "n_obs",
    "n_blq",
    "blq_rule",
    "note",
]
#: keys of ``cartkinetics nca --json`` records
JSON_KEYS = (
    "patient",
    "infusion",
    "assay",
    "cmax",
    "tmax",
    "auc_0_28",
    "auc_0_last",
    "clast",
    "tlast",
    "n_obs",
    "n_blq",
)


def nca_series(series: Series, auc_day: float = 28.0) -> dict[str, Any]:
    """NCA of one series.

    Parameters
    ----------
    series : Series
        Observed series (days since infusion; levels in ``series.unit``).
    auc_day : float
        Upper limit of the partial AUC in days (28 gives ``auc_0_28``; another day names
        the keys after it, e.g. ``auc_0_14``: see :func:`nca_columns`).

    Returns
    -------
    dict
        Keys ``nca_columns(auc_day)`` (``NCA_COLUMNS`` for day 28). Levels in the series'
        unit, times in days, areas in unit x day (e.g. copies*day/ug). Cmax, Tmax, Clast
        and Tlast are NaN when no value is quantifiable; the areas are then 0.
    """
    t = np.asarray(series.day, dtype=float)
    c = np.asarray(series.value, dtype=float)
    blq = np.asarray(series.blq, dtype=bool)
    order = np.argsort(t, kind="stable")
    t, c, blq = t[order], c[order], blq[order]
    out: dict[str, Any] = {
        "patient": series.patient,
        "infusion": series.infusion,
        "assay": series.assay,
        "unit": series.unit,
        "n_obs": int(t.size),
        "n_blq": int(np.count_nonzero(blq)),
        "blq_rule": BLQ_RULE,
    }
    quant = np.flatnonzero(~blq)
    if quant.size == 0:
        out.update(
            cmax=math.nan,
            tmax=math.nan,
            auc_0_28=0.0,
            auc_0_28_truncated=False,
            auc_0_last=0.0,
            auc_end=math.nan,
            clast=math.nan,
            tlast=math.nan,
            note="no quantifiable value",
        )
        return _ordered(out, auc_day)
    notes = []
    first = int(quant[0])
    imax = int(quant[np.argmax(c[quant])])  # first occurrence of the highest level
    last_q = int(quant[-1])
    later_blq = np.flatnonzero(blq[first:]) + first
    # the AUC ends at the last quantifiable value before the first BLQ after the first value
    end = int(later_blq[0]) - 1 if later_blq.size else last_q
    if end < last_q:
        notes.append(
            f"BLQ at day {t[end + 1]:g} ends the AUC; quantifiable again later "
            f"(last at day {t[last_q]:g})"
        )
    ta = t[: end + 1]
    ca = np.where(blq[: end + 1], 0.0, c[: end + 1])
    if ta[0] > 0.0:
        ta = np.concatenate(([0.0], ta))
        ca = np.concatenate(([0.0], ca))
    auc_last = auc_linlog(ta, ca, ta[-1])
    if ta[-1] >= auc_day:
        auc28, truncated = auc_linlog(ta, ca, auc_day), False
    else:
        auc28, truncated = auc_last, True
        notes.append(
            f"AUC0-{auc_day:g} truncated at day {ta[-1]:g} (no quantifiable level at or after "
            f"day {auc_day:g} to interpolate from; a lower bound)"
        )
    out.update(
        cmax=float(c[imax]),
        tmax=float(t[imax]),
        auc_0_28=float(auc28),
        auc_0_28_truncated=bool(truncated),
        auc_0_last=float(auc_last),
        auc_end=float(ta[-1]),
        clast=float(c[last_q]),
        tlast=float(t[last_q]),
        note="; ".join(notes),
    )
    return _ordered(out, auc_day)


def _ordered(d: dict[str, Any], auc_day: float = 28.0) -> dict[str, Any]:
    names = nca_columns(auc_day)
    return {new: d[old] for old, new in zip(NCA_COLUMNS, names, strict=True)}


def nca_columns(auc_day: float = 28.0) -> list[str]:
    """``NCA_COLUMNS`` with the partial-AUC columns named after ``auc_day`` (days).

    ``auc_0_28`` and ``auc_0_28_truncated`` for the default 28; e.g. ``auc_0_14`` and
    ``auc_0_14_truncated`` for 14, so that a partial AUC is never labelled with another day.
    """
    if auc_day == 28.0:
        return list(NCA_COLUMNS)
    tag = f"auc_0_{float(auc_day):g}".replace(".", "p")
    return [c.replace("auc_0_28", tag) for c in NCA_COLUMNS]


def nca(
    data: KineticsData | Series | Iterable[Series] | pd.DataFrame | str | Path,
    *,
    assay: str | None = None,
    auc_day: float = 28.0,
    **read_options: Any,
) -> pd.DataFrame:
    """NCA table, one row per series (patient x infusion x assay).

    Parameters
    ----------
    data : KineticsData, Series, list of Series, DataFrame or CSV path
        A DataFrame or path is read with :func:`cartkinetics.read_kinetics` (``read_options``
        are passed on, e.g. ``mapping=``).
    assay : str, optional
        Only this assay (also the assay of a file read here that has no assay column).
    auc_day : float
        Upper limit of the partial AUC (days); the columns are named after it
        (``auc_0_28`` by default, see :func:`nca_columns`).

    Returns
    -------
    DataFrame
        Columns ``nca_columns(auc_day)`` (see :func:`nca_series` for units and the BLQ
        rule).
    """
    if isinstance(data, str | Path | pd.DataFrame):
        if assay is not None:
            read_options.setdefault("assay", assay)  # a file without an assay column
        data = read_kinetics(data, **read_options)
    if isinstance(data, KineticsData):
        series = data.series(assay=assay)
    elif isinstance(data, Series):
        series = [data]
    else:
        series = [s for s in data if assay is None or s.assay == assay]
    rows = [nca_series(s, auc_day=auc_day) for s in series]
    table = pd.DataFrame(rows, columns=nca_columns(auc_day))
    return table.astype({"infusion": int, "n_obs": int, "n_blq": int})


def nca_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records with the keys ``JSON_KEYS`` (NaN -> None)."""
    out = []
    for r in table[list(JSON_KEYS)].to_dict(orient="records"):
        rec = {}
        for k, v in r.items():
            if isinstance(v, float | np.floating):
                rec[k] = None if not math.isfinite(v) else float(v)
            elif isinstance(v, np.integer):
                rec[k] = int(v)
            else:
                rec[k] = v
        out.append(rec)
    return out
