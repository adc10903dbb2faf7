"""Longitudinal CAR-T measurements: read, validate, convert.

One entry point, :func:`read_kinetics`, reads a CSV path or a DataFrame in either of two
layouts (detected from the column names, matched case-insensitively):

* **native long format** -- ``patient, infusion, day, value, lloq, assay`` (+ optional ``unit``,
  ``blq``). ``infusion`` is 1 for the first CAR-T, 2 for the second (1 when absent); ``day`` is
  days since *that* infusion; ``assay`` is ``qpcr`` (transgene copies/ug genomic DNA) or
  ``flow`` (CAR+ cells/uL).
* **NONMEM / Monolix layout** -- ``ID, TIME, DV`` with optional ``MDV, EVID, AMT, CENS, LIMIT,
  OCC`` (+ ``ASSAY, UNIT, LLOQ``, which :func:`write_nonmem` adds). ``OCC`` is the infusion
  number; ``CENS=1`` means DV holds the LLOQ (left-censored); ``EVID=1`` rows are doses (``AMT``)
  and, when present, set the origin of ``TIME`` for their occasion; ``LIMIT`` (Monolix: the
  other end of the censoring interval) is read but not needed.

Below-limit values (BLQ) are left-censored at their limit. They may be written as a number
below the row's ``lloq``, as ``<LLOQ`` / ``BLQ`` / ``BLOQ`` (limit from ``lloq``), as ``<50``
(limit written inline), flagged ``blq=1``, given ``CENS=1``, or listed in ``blq_values``
(a placeholder such as the 0.2 of the Liu 2022 files).

Every input row ends up in :attr:`KineticsData.observations` with a status ``used``,
``censored`` or ``excluded`` and a reason; nothing is dropped silently. A level of 0 at day 0
is "before expansion": kept as an excluded row, never put on a log scale, even when the row
has an lloq (a row flagged ``blq=1`` or ``CENS=1`` stays censored). A 0 at a later day is
censored at the row's lloq, or an error when there is none.

Mapping other files
-------------------
``mapping`` renames file columns to the names above (either vocabulary), ``filter`` keeps the
rows whose column equals a value, ``blq_values`` declares placeholder values, and ``assay``,
``unit``, ``lloq`` and ``patient_prefix`` fill in what the file does not say. For the Monolix
files of Liu et al. 2022 (``ID, time, y, y_ID``; ``y_ID=1`` is CAR-T; 0.2 means undetectable)::

    read_kinetics("Data_CR.csv", mapping={"TIME": "time", "DV": "y"},
                  filter={"y_ID": 1}, blq_values={0.2: 0.2}, assay="qpcr",
                  patient_prefix="CR-")

The same options can be kept in a JSON file for ``cartkinetics nca --mapping FILE``::

    {"columns": {"TIME": "time", "DV": "y"}, "filter": {"y_ID": 1},
     "blq_values": {"0.2": 0.2}, "assay": "qpcr", "patient_prefix": "CR-"}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError
from cartkinetics.tables import read_table
from cartkinetics.units import (
    canonical_unit,
    conversion_factor,
    known_units,
    same_unit,
)
from cartkinetics.units import (
    lookup as lookup_unit,
)

#: known assays and their default units
ASSAYS: dict[str, str] = {"qpcr": "copies/ug", "flow": "cells/uL"}

#: canonical field -> accepted spellings (lower case) per layout
_NATIVE = {
    "patient": ("patient",),
    "infusion": ("infusion",),
    "day": ("day",),
    "value": ("value",),
    "lloq": ("lloq",),
    "assay": ("assay",),
    "unit": ("unit",),
    "blq": ("blq",),
}
_NONMEM = {
    "patient": ("id",),
    "day": ("time",),
    "value": ("dv",),
    "infusion": ("occ",),
    "mdv": ("mdv",),
    "evid": ("evid",),
    "amt": ("amt",),
    "cens": ("cens",),
    "limit": ("limit",),
    "lloq": ("lloq",),
    "assay": ("assay",),
    "unit": ("unit",),
    "blq": ("blq",),
    "comment": ("c",),
}
# names a mapping may use as targets (either vocabulary) -> canonical field
_TARGETS = {
    **{k: k for k in _NATIVE},
    "id": "patient",
    "time": "day",
    "dv": "value",
    "occ": "infusion",
    "mdv": "mdv",
    "evid": "evid",
    "amt": "amt",
    "cens": "cens",
    "limit": "limit",
    "c": "comment",
}
_REQUIRED = {"native": ("patient", "day", "value"), "nonmem": ("patient", "day", "value")}
_DISPLAY = {
    "native": {k: v[0] for k, v in _NATIVE.items()},
    "nonmem": {k: v[0].upper() for k, v in _NONMEM.items()},
}

#: cells meaning "below the limit" (compared lower-case, spaces removed): censored at the
#: row's lloq. ND / not detected (below the detection limit) is below the LLOQ too.
_BLQ_TOKENS = {
    "blq", "bloq", "bql", "<lloq", "<loq", "<llq", "<lod", "<bql", "<blq", "belowlloq",
    "belowloq", "<ll", "nd", "n.d.", "n.d", "notdetected", "undetected", "undetectable",
    "notdetectable", "<lq",
}
_INLINE_LIMIT = re.compile(r"^<\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)$")
_MISSING_TOKENS = {"", ".", "na", "nan", "n/a", "none", "null"}
_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
_FALSE = {"0", "0.0", "false", "f", "no", "n", ""}

# reasons (categorical, so that the summary can count them)
R_USED = "quantifiable"
R_BELOW = "below lloq"
R_TOKEN = "written as BLQ"
R_INLINE = "written as <limit"
R_FLAG = "flagged blq"
R_CENS = "CENS=1 (DV is the LLOQ)"
R_PLACEHOLDER = "blq_values placeholder"
R_DAY0 = "day 0 level 0: before expansion"
R_DOSE = "dose row (EVID=1)"
R_MDV = "MDV=1 (no observation)"
R_MDV_BLQ = "MDV=1 with BLQ flag set (set MDV=0 to use it as censored)"
R_MDV_CENS = "MDV=1 with CENS=1 (set MDV=0 to use it as censored)"
R_COMMENT_C = "comment record (C column, NONMEM IGNORE=C)"
R_COMMENT_LINE = "comment record (first field '#' or '@', NONMEM IGNORE=#/@)"
R_MISSING = "value missing (missing='exclude')"

OBSERVATION_COLUMNS = [
    "patient",
    "infusion",
    "assay",
    "unit",
    "day",
    "value",
    "lloq",
    "blq",
    "status",
    "reason",
    "source_row",
    "source",
    "unit_read",
]


@dataclass(frozen=True)
class Series:
    """One patient x infusion x assay series (used and censored rows, sorted by day).

    Attributes
    ----------
    patient : str
    infusion : int
        1 first CAR-T, 2 second.
    assay : str
        ``qpcr`` or ``flow`` (or a declared assay).
    unit : str
        ``copies/ug`` (qPCR) or ``cells/uL`` (flow).
    day : ndarray
        Days since that infusion, increasing.
    value : ndarray
        Observed level in ``unit``; for BLQ rows the limit.
    lloq : ndarray
        Per-row limit of quantification (NaN where none was given).
    blq : ndarray of bool
        True where the value is left-censored at ``value``.
    dose : float or None
        Dose (cells, as given by AMT) where known.
    """

    patient: str
    infusion: int
    assay: str
    unit: str
    day: np.ndarray
    value: np.ndarray
    lloq: np.ndarray
    blq: np.ndarray
    dose: float | None = None

    @property
    def key(self) -> tuple[str, int, str]:
        """(patient, infusion, assay)."""
        return (self.patient, self.infusion, self.assay)

    @property
    def n_obs(self) -> int:
        """Number of observations (quantifiable and BLQ)."""
        return int(self.day.shape[0])

    @property
    def n_blq(self) -> int:
        """Number of BLQ (left-censored) observations."""
        return int(np.count_nonzero(self.blq))

    def __repr__(self) -> str:
        return (
            f"<Series {self.patient} infusion {self.infusion} {self.assay}: {self.n_obs} obs "
            f"({self.n_blq} BLQ), days {self.day.min():g}-{self.day.max():g}>"
            if self.n_obs
            else f"<Series {self.patient} infusion {self.infusion} {self.assay}: empty>"
        )


@dataclass
class KineticsData:
    """Validated kinetics: one row per input row, plus optional patient covariates.

    Attributes
    ----------
    observations : DataFrame
        Columns ``OBSERVATION_COLUMNS``: patient (str), infusion (int), assay, unit, day (days
        since that infusion), value (level; for BLQ rows the limit), lloq (NaN if none), blq
        (bool), status (``used``/``censored``/``excluded``), reason, source_row (1-based data
        row of the input), source (file name or ``<DataFrame>``).
    patients : DataFrame or None
        Covariates, one row per patient (column ``patient`` first).
    doses : dict (patient, infusion) -> dose
        From NONMEM dose rows (AMT), where present.
    layout : str
        ``native``, ``nonmem`` or ``mixed`` (after :meth:`concat`).
    notes : list of str
        What the reader decided that the rows alone do not show (e.g. several dose rows
        of one occasion summed into one dose); printed by :meth:`describe`.
    """

    observations: pd.DataFrame
    patients: pd.DataFrame | None = None
    doses: dict[tuple[str, int], float] = field(default_factory=dict)
    layout: str = "native"
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ views
    def series(self, assay: str | None = None) -> list[Series]:
        """Series per patient x infusion x assay (used and censored rows, sorted by day).

        Parameters
        ----------
        assay : str, optional
            Only this assay.
        """
        obs = self.observations
        obs = obs[obs["status"] != "excluded"]
        if assay is not None:
            obs = obs[obs["assay"] == assay.lower()]
        if obs.empty:
            return []
        # one sort (natural patient order, infusion, assay, day), then slice the arrays
        rank = {p: k for k, p in enumerate(sorted(obs["patient"].unique(), key=natural_key))}
        obs = obs.assign(_rank=obs["patient"].map(rank)).sort_values(
            ["_rank", "infusion", "assay", "day"], kind="stable"
        )
        keys = obs[["_rank", "infusion", "assay"]]
        start = np.flatnonzero(keys.ne(keys.shift()).any(axis=1).to_numpy())
        stop = np.append(start[1:], len(obs))
        patient = obs["patient"].to_numpy()
        infusion = obs["infusion"].to_numpy()
        assay_ = obs["assay"].to_numpy()
        unit = obs["unit"].to_numpy()
        day = obs["day"].to_numpy(dtype=float)
        value = obs["value"].to_numpy(dtype=float)
        lloq = obs["lloq"].to_numpy(dtype=float)
        blq = obs["blq"].to_numpy(dtype=bool)
        out = []
        for a, b in zip(start, stop, strict=True):
            p, inf = str(patient[a]), int(infusion[a])
            out.append(
                Series(
                    patient=p,
                    infusion=inf,
                    assay=str(assay_[a]),
                    unit=str(unit[a]),
                    day=day[a:b].copy(),
                    value=value[a:b].copy(),
                    lloq=lloq[a:b].copy(),
                    blq=blq[a:b].copy(),
                    dose=self.doses.get((p, inf)),
                )
            )
        return out

    @property
    def patient_ids(self) -> list[str]:
        """Patients with at least one used or censored observation, sorted."""
        obs = self.observations
        return sorted(obs.loc[obs["status"] != "excluded", "patient"].unique().tolist())

    def summary(self) -> dict[str, Any]:
        """Counts: rows, used, censored, excluded, patients, series, and rows by reason."""
        obs = self.observations
        status = obs["status"].value_counts()
        reasons: dict[str, dict[str, int]] = {}
        for st in ("used", "censored", "excluded"):
            r = obs.loc[obs["status"] == st, "reason"].value_counts()
            reasons[st] = {str(k): int(v) for k, v in r.items()}
        kept = obs[obs["status"] != "excluded"]
        out: dict[str, Any] = {
            "sources": sorted(obs["source"].unique().tolist()),
            "layout": self.layout,
            "rows": int(len(obs)),
            "used": int(status.get("used", 0)),
            "censored": int(status.get("censored", 0)),
            "excluded": int(status.get("excluded", 0)),
            "patients": int(kept["patient"].nunique()),
            "series": int(kept.groupby(["patient", "infusion", "assay"]).ngroups),
            "units": {str(a): str(u) for a, u in
                      kept.groupby("assay")["unit"].first().items()},
            "reasons": reasons,
        }
        if self.notes:
            out["notes"] = list(self.notes)
        if self.patients is not None:
            known = set(self.patients["patient"])
            out["patients_without_covariates"] = sorted(set(self.patient_ids) - known)
        return out

    def describe(self) -> str:
        """One paragraph saying what was read and what happened to every row."""
        s = self.summary()
        units = ", ".join(f"{a} in {u}" for a, u in s["units"].items())
        lines = [
            f"{s['rows']} rows from {', '.join(s['sources'])} ({s['layout']} layout): "
            f"{s['used']} used, {s['censored']} censored (BLQ), {s['excluded']} excluded; "
            f"{s['patients']} patients, {s['series']} series" + (f"; {units}." if units else ".")
        ]
        for st in ("censored", "excluded"):
            for reason, n in s["reasons"][st].items():
                lines.append(f"  {st}: {n} x {reason}")
        if s.get("patients_without_covariates"):
            lines.append("  no covariates for: " + ", ".join(s["patients_without_covariates"]))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """Spaghetti plot of the observed series (BLQ marked at the LLOQ; one panel per assay).

        See :func:`cartkinetics.plots.plot_kinetics`; returns the Axes.
        """
        from cartkinetics.plots import plot_kinetics

        return plot_kinetics(self, ax=ax, **kw)

    def join_patients(self, table: pd.DataFrame) -> pd.DataFrame:
        """Left-join the patient covariates onto ``table`` (which has a ``patient`` column)."""
        if self.patients is None:
            return table.copy()
        return table.merge(self.patients, on="patient", how="left", suffixes=("", "_patient"))

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"<KineticsData {s['patients']} patients, {s['series']} series, {s['rows']} rows "
            f"({s['used']} used, {s['censored']} censored, {s['excluded']} excluded)>"
        )

    # ------------------------------------------------------------------ combine
    @classmethod
    def concat(
        cls, items: Iterable[KineticsData], *, allow_split_series: bool = False
    ) -> KineticsData:
        """Combine data sets (e.g. one file per response group).

        Parameters
        ----------
        items : iterable of KineticsData
        allow_split_series : bool
            Accept one series (patient x infusion x assay) whose rows come from several
            sets (e.g. early and late follow-up exported apart). By default that is an
            error: files that number their patients alike (1, 2, ...) would otherwise merge
            different patients into one series; give them a ``patient_prefix``. Different
            assays of one patient from different files are always accepted.

        Raises
        ------
        CartKineticsError
            When two sets hold the same (patient, infusion, day, assay) observation, or
            (unless ``allow_split_series``) the same series.
        """
        items = list(items)
        if not items:
            raise CartKineticsError("concat needs at least one KineticsData")
        obs = pd.concat([it.observations for it in items], ignore_index=True)
        kept = obs[obs["status"] != "excluded"]
        dup = kept.duplicated(["patient", "infusion", "day", "assay"], keep="first")
        if dup.any():
            r = kept[dup].iloc[0]
            raise CartKineticsError(
                f"observation (patient {r['patient']}, infusion {r['infusion']}, day "
                f"{r['day']:g}, assay {r['assay']}) appears in more than one data set; "
                "use patient_prefix to keep patients of different files apart",
                source=r["source"],
                row=int(r["source_row"]),
            )
        if not allow_split_series and len(items) > 1:
            set_no = np.repeat(np.arange(len(items)), [len(it.observations) for it in items])
            kept_set = pd.Series(set_no[kept.index.to_numpy()], index=kept.index)
            n_sets = kept_set.groupby(
                [kept["patient"], kept["infusion"], kept["assay"]]
            ).nunique()
            if (n_sets > 1).any():
                p, inf, a = n_sets[n_sets > 1].index[0]
                rows = kept[(kept["patient"] == p) & (kept["infusion"] == inf)
                            & (kept["assay"] == a)]
                sources = sorted(set(rows["source"]))
                raise CartKineticsError(
                    f"series (patient {p}, infusion {inf}, assay {a}) has rows in more than "
                    f"one data set ({', '.join(sources)}): use patient_prefix when files "
                    "number their patients alike, or allow_split_series=True when the files "
                    "really hold parts of the same series",
                    source=str(rows["source"].iloc[-1]),
                    row=int(rows["source_row"].iloc[-1]),
                )
        tables = [it.patients for it in items if it.patients is not None]
        patients = None
        if tables:
            patients = pd.concat(tables, ignore_index=True)
            patients = patients.drop_duplicates(keep="first")
            if patients["patient"].duplicated().any():
                p = patients.loc[patients["patient"].duplicated(), "patient"].iloc[0]
                raise CartKineticsError(f"patient {p} has two different covariate rows")
        doses: dict[tuple[str, int], float] = {}
        for it in items:
            doses.update(it.doses)
        layouts = {it.layout for it in items}
        notes = [n for it in items for n in it.notes]
        return cls(
            obs, patients, doses, layouts.pop() if len(layouts) == 1 else "mixed", notes
        )


# ---------------------------------------------------------------------- parsing helpers
def _is_missing(raw: Any) -> bool:
    if raw is None:
        return True
    if isinstance(raw, str):
        return raw.strip().lower() in _MISSING_TOKENS
    try:
        return bool(pd.isna(raw))
    except (TypeError, ValueError):
        return False


def _to_float(raw: Any) -> float | None:
    """float, or None when not numeric (missing values give None too)."""
    if _is_missing(raw):
        return None
    if isinstance(raw, bool | np.bool_):
        return float(raw)
    if isinstance(raw, int | float | np.integer | np.floating):
        return float(raw)
    try:
        return float(str(raw).strip())
    except ValueError:
        return None


def _float_or_nan(raw: Any) -> float:
    v = _to_float(raw)
    return math.nan if v is None else v


def natural_key(text: str) -> tuple:
    """Sort key putting "P2" before "P10" and "CR-9" before "CR-10"."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", str(text))
        if part
    )


# a whole number written as a float ("1.0", "1.0000E+00"): NONMEM tables and float columns
_FLOAT_ID = re.compile(r"^[+-]?(?:\d+\.\d*|\d*\.?\d+[eE][+-]?\d+)$")


def patient_id(raw: Any) -> str:
    """Patient identifier as text; 1, 1.0, "1.0" and "1" are the same patient ("01" is not).

    Used by every table reader (kinetics, patients, cohort) so that their ids join.
    """
    if isinstance(raw, float | np.floating) and float(raw).is_integer():
        return str(int(raw))
    if isinstance(raw, int | np.integer):
        return str(int(raw))
    text = str(raw).strip()
    if _FLOAT_ID.match(text):
        v = float(text)
        if math.isfinite(v) and v.is_integer():
            return str(int(v))
    return text


_patient_id = patient_id


def flag_value(raw: Any) -> bool | None:
    """True/False of a written 0/1 flag (``1``, ``yes``, ``true``, ``1.0000E+00`` ...); None when
    it is not one (a number other than exactly 0 or 1, other text). The one reading of flags:
    BLQ/CENS/C columns here, the cohort table's event and yes/no columns."""
    if isinstance(raw, bool | np.bool_):
        return bool(raw)
    s = str(raw).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    v = _to_float(raw)  # NONMEM $TABLE writes every number in E-notation: 1.0000E+00
    if v == 1.0:
        return True
    if v == 0.0:
        return False
    return None


def _flag(raw: Any) -> bool | None:
    """A BLQ-type flag cell: a missing cell is False (not flagged), else :func:`flag_value`."""
    if raw is None or (not isinstance(raw, str) and _is_missing(raw)):
        return False
    if str(raw).strip().lower() in _MISSING_TOKENS:
        return False
    return flag_value(raw)


class _Reader:
    """Row-by-row reader; collects the problems of every row (see ``problems``)."""

    def __init__(self, source: str, cols: dict[str, str], layout: str, rows: list[int]) -> None:
        self.source = source
        self.cols = cols  # canonical -> column name as written in the input
        self.layout = layout
        self.rows = rows  # frame position -> 1-based data row of the input
        self.problems: list[CartKineticsError] = []

    def err(self, msg: str, row: int, field_: str | None = None) -> CartKineticsError:
        col = self.cols.get(field_, _DISPLAY[self.layout].get(field_, field_)) if field_ else None
        return CartKineticsError(msg, source=self.source, row=row, column=col)

    def problem(self, msg: str, row: int, field_: str | None = None) -> None:
        """Record a problem and go on reading (all are raised together at the end)."""
        self.problems.append(self.err(msg, row, field_))

    def number(
        self, raw: Any, row: int, field_: str, *, what: str, allow_missing: bool = False
    ) -> float:
        v = _to_float(raw)
        if v is None:
            if allow_missing and _is_missing(raw):
                return math.nan
            raise self.err(f"{what} must be a number, got {raw!r}", row, field_)
        if not math.isfinite(v):
            raise self.err(f"{what} must be finite, got {raw!r}", row, field_)
        if v < 0:
            raise self.err(f"{what} must be >= 0, got {raw!r}", row, field_)
        return v


def _resolve_columns(
    columns: list[str], mapping: Mapping[str, str] | None, layout: str, source: str
) -> tuple[str, dict[str, str]]:
    """Detect the layout and map canonical fields to input column names."""
    lower = {}
    for c in columns:
        lower.setdefault(str(c).strip().lower(), c)
    mapped: dict[str, str] = {}
    mapped_targets: set[str] = set()
    for target, col in (mapping or {}).items():
        t = str(target).strip().lower()
        if t not in _TARGETS:
            raise CartKineticsError(
                f"mapping target {target!r} is not a known field; known: {sorted(_TARGETS)}"
            )
        c = lower.get(str(col).strip().lower())
        if c is None:
            raise CartKineticsError(
                f"missing column {col!r} named in the mapping (for {target!r}); "
                f"the file has {list(columns)}",
                source=source,
                column=str(col),
            )
        mapped[_TARGETS[t]] = c
        mapped_targets.add(t)
    if layout == "auto":
        native_hits = sum(
            1 for f in ("patient", "day", "value") if f in mapped_targets or f in lower
        )
        nonmem_hits = sum(1 for n in ("id", "time", "dv") if n in mapped_targets or n in lower)
        # NONMEM-only columns decide a tie
        if any(n in lower or n in mapped_targets for n in ("evid", "mdv", "cens", "occ", "amt")):
            nonmem_hits += 0.5
        layout = "nonmem" if nonmem_hits > native_hits else "native"
    if layout not in ("native", "nonmem"):
        raise CartKineticsError(f"layout must be 'auto', 'native' or 'nonmem', got {layout!r}")
    spellings = _NATIVE if layout == "native" else _NONMEM
    cols = dict(mapped)
    used_cols = set(mapped.values())
    for fld, names in spellings.items():
        if fld in cols:
            continue
        for n in names:
            if n in lower and lower[n] not in used_cols:
                cols[fld] = lower[n]
                used_cols.add(lower[n])
                break
    missing = [f for f in _REQUIRED[layout] if f not in cols]
    if missing:
        names = [_DISPLAY[layout][f] for f in missing]
        expected = (
            "patient, day, value (+ infusion, lloq, assay, unit, blq)"
            if layout == "native"
            else "ID, TIME, DV (+ MDV, EVID, AMT, CENS, LIMIT, OCC)"
        )
        raise CartKineticsError(
            f"missing required column(s) {', '.join(names)}: the "
            f"{'native long' if layout == 'native' else 'NONMEM/Monolix'} layout needs "
            f"{expected}; the file has {list(columns)} (use mapping= to name other columns)",
            source=source,
            column=names[0],
        )
    return layout, cols


def _normalise_blq_values(blq_values: Any) -> list[tuple[Any, float]]:
    """[(file value, limit)] from a dict {value: limit} or an iterable of values."""
    if blq_values is None:
        return []
    items = (
        blq_values.items() if isinstance(blq_values, Mapping) else [(v, None) for v in blq_values]
    )
    out = []
    for key, limit in items:
        key_num = _to_float(key)
        lim = _to_float(limit) if limit is not None else key_num
        if lim is None or not math.isfinite(lim) or lim <= 0:
            raise CartKineticsError(
                f"blq_values: the limit for {key!r} must be a positive number, got {limit!r}"
            )
        out.append((key_num if key_num is not None else str(key).strip().lower(), lim))
    return out


def _match_placeholder(raw: Any, placeholders: list[tuple[Any, float]]) -> float | None:
    if not placeholders:
        return None
    num = _to_float(raw)
    text = str(raw).strip().lower() if isinstance(raw, str) else None
    for key, lim in placeholders:
        if isinstance(key, float):
            if num is not None and math.isclose(num, key, rel_tol=1e-9, abs_tol=0.0):
                return lim
        elif text is not None and text == key:
            return lim
    return None


def _filter_mask(
    frame: pd.DataFrame, filt: Mapping[str, Any] | None, source: str
) -> tuple[np.ndarray, list[str]]:
    """Rows kept by ``filter`` and, for the others, a reason."""
    n = len(frame)
    keep = np.ones(n, dtype=bool)
    reasons = [""] * n
    if not filt:
        return keep, reasons
    lower = {str(c).strip().lower(): c for c in frame.columns}
    for col, wanted in filt.items():
        c = lower.get(str(col).strip().lower())
        if c is None:
            raise CartKineticsError(
                f"missing column {col!r} named in filter; the file has {list(frame.columns)}",
                source=source,
                column=str(col),
            )
        wanted_list = list(wanted) if isinstance(wanted, list | tuple | set) else [wanted]
        wanted_num = [_to_float(w) for w in wanted_list]
        wanted_txt = [str(w).strip() for w in wanted_list]
        shown = ", ".join(wanted_txt)
        for i, raw in enumerate(frame[c].tolist()):
            v = _to_float(raw)
            ok = (v is not None and any(w is not None and v == w for w in wanted_num)) or (
                str(raw).strip() in wanted_txt
            )
            if not ok:
                keep[i] = False
                if not reasons[i]:
                    reasons[i] = f"filtered out ({c} not in [{shown}])"
    return keep, reasons


# ---------------------------------------------------------------------- reading
#: how values left blank are handled (``missing=``)
MISSING_POLICIES = ("exclude", "error", "blq")
#: doses of one patient closer than this (days after the infusion's first dose) are one
#: split infusion; see :func:`read_kinetics` (``split_dose_days``)
SPLIT_DOSE_DAYS = 7.0
#: a dose this many days or more after an infusion's first dose starts the next infusion
REINFUSION_DAYS = 28.0


def read_kinetics(
    source: str | Path | pd.DataFrame,
    *,
    patients: str | Path | pd.DataFrame | None = None,
    layout: str = "auto",
    mapping: Mapping[str, Any] | None = None,
    blq_values: Mapping[Any, Any] | Iterable[Any] | None = None,
    filter: Mapping[str, Any] | None = None,
    assay: str | None = None,
    unit: str | None = None,
    lloq: float | str | None = None,
    patient_prefix: str = "",
    assays: Mapping[str, str] | None = None,
    sheet: str | int | None = None,
    missing: str = "exclude",
    split_dose_days: float = SPLIT_DOSE_DAYS,
    reinfusion_days: float = REINFUSION_DAYS,
) -> KineticsData:
    """Read and validate longitudinal CAR-T measurements.

    Parameters
    ----------
    source : path or DataFrame
        A table file -- CSV, semicolon-, tab- or whitespace-separated text (NONMEM tables
        included), or an Excel ``.xlsx`` workbook -- or a DataFrame. Cells are read as text, so
        that ``<50`` or ``BLQ`` survive (see :mod:`cartkinetics.tables`).
    patients : path or DataFrame, optional
        Patient covariates (weight_kg, dose_per_kg, target, disease, lymphodepletion, ...),
        one row per ``patient``; see :func:`read_patients`.
    layout : {"auto", "native", "nonmem"}
        Column layout; ``auto`` detects it from the column names.
    mapping : dict, optional
        Field -> input column, e.g. ``{"patient": "ID", "day": "time", "value": "y"}``. Fields
        are the native names (patient, infusion, day, value, lloq, assay, unit, blq) or the
        NONMEM ones (ID, TIME, DV, OCC, MDV, EVID, AMT, CENS, LIMIT, C). A mapping may also be
        the full JSON form ``{"columns": {...}, "filter": ..., "blq_values": ..., "assay":
        ..., "unit": ..., "lloq": ..., "patient_prefix": ...}``; explicit keyword arguments
        win over its entries.
    blq_values : dict or list, optional
        Placeholder values meaning "below the limit": ``{0.2: 0.2}`` (file value -> limit) or
        ``[0.2]`` (the value is its own limit); strings work too (``{"ND": 50}``).
    filter : dict, optional
        Keep only rows where each named column equals the value (or one of a list), e.g.
        ``{"y_ID": 1}``. Other rows are kept as ``excluded`` with the reason.
    assay : str, optional
        Assay of every row when the file has no assay column (``qpcr`` or ``flow``).
    unit : str, optional
        Unit of the levels when the file has no unit column (default: the assay's canonical
        unit). Levels in another unit of the same kind are converted to the assay's canonical
        unit (``copies/ng`` -> ``copies/ug`` x1000; see :mod:`cartkinetics.units`).
    lloq : float or str, optional
        Limit of quantification for rows without one: a number in the levels' unit (``unit=``,
        or the file's one unit), or a number with its unit (``"50 copies/ug"``), needed when
        the file's levels come in several units.
    patient_prefix : str
        Prepended to every patient id (e.g. ``"CR-"`` when ids repeat across files).
    assays : dict, optional
        Extra assays to accept, name -> unit.
    sheet : str or int, optional
        Excel sheet (name or 0-based index); default the first.
    missing : {"exclude", "error", "blq"}
        What a blank value cell of an observation row means: ``exclude`` (default; kept as an
        excluded row, reason "value missing"), ``error``, or ``blq`` (below the row's lloq).
    split_dose_days, reinfusion_days : float
        NONMEM files with several dose records and no OCC column: doses within
        ``split_dose_days`` (7) of an infusion's first dose are one split infusion (their AMTs
        summed); a dose ``reinfusion_days`` (28) or more after it starts the next infusion,
        and days restart there. A dose in between is ambiguous and an error (add OCC).

    Returns
    -------
    KineticsData

    Raises
    ------
    CartKineticsError
        Naming the file, the data row and the column -- all problems of the file at once (the
        first 50), for: a missing required column, a non-numeric or negative day, a negative
        or non-finite value, a duplicate (patient, infusion, day, assay), an unknown assay or
        unit, units of different kinds in one assay, a BLQ row with no limit, a patient with
        no observation, patient ids that differ only in case or spaces, an occasion with
        observations but no dose record, ambiguous dose records.
    """
    opts = _options(mapping, blq_values, filter, assay, unit, lloq, patient_prefix)
    if missing not in MISSING_POLICIES:
        raise CartKineticsError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    if not 0 <= split_dose_days <= reinfusion_days:
        raise CartKineticsError(
            "need 0 <= split_dose_days <= reinfusion_days, got "
            f"{split_dose_days:g} and {reinfusion_days:g}"
        )
    known_assays = dict(ASSAYS)
    for k, v in (assays or {}).items():
        known_assays[str(k).lower()] = str(v)
    table = read_table(source, sheet=sheet)
    frame, src = table.frame, table.source
    if frame.shape[1] == 0:
        raise CartKineticsError("no columns", source=src)
    if len(frame) == 0:
        raise CartKineticsError("no data rows (only a header)", source=src)
    layout, cols = _resolve_columns(list(frame.columns), opts["columns"], layout, src)
    if opts["assay"] is not None and str(opts["assay"]).lower() not in known_assays:
        raise CartKineticsError(
            f"unknown assay {opts['assay']!r}: expected one of {sorted(known_assays)} "
            "(declare others with assays={name: unit})"
        )
    if "assay" not in cols and opts["assay"] is None:
        name = _DISPLAY[layout]["assay"]
        raise CartKineticsError(
            f"missing required column {name}: say which assay the values come from, with an "
            f"{name} column (qpcr or flow) or assay='qpcr' / --assay qpcr",
            source=src,
            column=name,
        )
    keep, filter_reasons = _filter_mask(frame, opts["filter"], src)
    if "assay" not in cols:
        _check_one_observation_type(frame, cols, keep, src)
    rd = _Reader(src, cols, layout, table.rows)
    placeholders = _normalise_blq_values(opts["blq_values"])
    records, doses, notes = _parse(
        frame, rd, keep, filter_reasons, placeholders, known_assays, opts,
        missing=missing, split_days=float(split_dose_days),
        reinfusion_days=float(reinfusion_days),
    )
    for row, _text in table.comments:
        records.append(_excluded_record("", 0, row, src, R_COMMENT_LINE))
    obs = pd.DataFrame.from_records(records, columns=OBSERVATION_COLUMNS)
    obs = obs.sort_values("source_row", kind="stable").reset_index(drop=True)
    obs["infusion"] = obs["infusion"].astype(int)
    obs["blq"] = obs["blq"].astype(bool)
    obs["source_row"] = obs["source_row"].astype(int)
    if not rd.problems:
        _check_units(obs, rd, known_assays)
        _check_duplicates(obs, rd)
        _check_patients_observed(obs, rd)
        _check_patient_spellings(obs, rd)
    if rd.problems:
        raise CartKineticsError.collected(rd.problems, src)
    _label_comment_records(obs)
    notes = table.notes + notes + _conversion_notes(obs)
    if table.comments:
        shown = ", ".join(str(r) for r, _ in table.comments[:10])
        notes.append(
            f"{len(table.comments)} comment record(s) (first field '#' or '@', NONMEM IGNORE) "
            f"excluded: row(s) {shown}{' ...' if len(table.comments) > 10 else ''}"
        )
    patients_table = None
    if patients is not None:
        patients_table = read_patients(patients, patient_prefix=opts["patient_prefix"])
    return KineticsData(obs, patients_table, doses, layout, notes)


def _label_comment_records(obs: pd.DataFrame) -> None:
    """Give comment records the assay and unit of a one-assay file (in place).

    A comment line has no assay of its own; with a blank one it would show up as a row of
    its own, with no assay, wherever rows are counted by assay (the report's table). In a file
    of several assays it stays blank: which one it belongs to is not known.
    """
    kept = obs.loc[obs["status"] != "excluded", ["assay", "unit"]].drop_duplicates()
    if len(kept) != 1:
        return
    comment = obs["reason"].isin([R_COMMENT_LINE, R_COMMENT_C]) & (obs["assay"] == "")
    obs.loc[comment, "assay"] = kept["assay"].iloc[0]
    obs.loc[comment, "unit"] = kept["unit"].iloc[0]


def _excluded_record(patient: str, infusion: int, row: int, source: str, reason: str) -> dict:
    return {
        "patient": patient, "infusion": infusion, "assay": "", "unit": "", "day": math.nan,
        "value": math.nan, "lloq": math.nan, "blq": False, "status": "excluded",
        "reason": reason, "source_row": row, "source": source, "unit_read": "",
    }


#: columns that tell observation types apart in NONMEM/Monolix files (lower case)
_OBS_TYPE_COLUMNS = ("dvid", "ytype", "y_id", "yid", "obsid", "cmt")


def _check_one_observation_type(
    frame: pd.DataFrame, cols: dict[str, str], keep: np.ndarray, source: str
) -> None:
    """Refuse to read several observation types (DVID, CMT, y_ID ...) as one assay.

    Without an assay column every observation row becomes the one ``assay=``: CAR-T levels
    and, say, tumour burden would be merged into one series.
    """
    used = set(cols.values())
    obs_rows = keep.copy()
    for fld, bad in (("evid", lambda v: v not in (None, 0.0)), ("mdv", lambda v: v == 1.0)):
        if fld in cols:
            vals = [_to_float(x) for x in frame[cols[fld]].tolist()]
            obs_rows &= ~np.array([bad(v) for v in vals], dtype=bool)
    for c in frame.columns:
        if str(c).strip().lower() not in _OBS_TYPE_COLUMNS or c in used:
            continue
        values = [v for v, k in zip(frame[c].tolist(), obs_rows, strict=True)
                  if k and not _is_missing(v)]
        distinct = sorted({str(v).strip() for v in values}, key=natural_key)
        if len(distinct) > 1:
            raise CartKineticsError(
                f"column {c} holds several observation types ({', '.join(distinct)}) and "
                f"the file has no assay column: keep one with filter={{{str(c)!r}: "
                f"{distinct[0]}}} (--mapping '{{\"filter\": {{\"{c}\": {distinct[0]}}}}}') "
                "and say which assay it is",
                source=source,
                column=str(c),
            )


def _options(
    mapping: Mapping[str, Any] | None,
    blq_values: Any,
    filt: Any,
    assay: Any,
    unit: Any,
    lloq: Any,
    patient_prefix: str,
) -> dict[str, Any]:
    """Merge the full-form mapping with the keyword arguments (keywords win)."""
    m = dict(mapping or {})
    # the full form is recognised by a key that cannot be a column target
    if any(k in m for k in ("columns", "filter", "blq_values", "patient_prefix")):
        unknown = set(m) - {
            "columns",
            "filter",
            "blq_values",
            "assay",
            "unit",
            "lloq",
            "patient_prefix",
        }
        if unknown:
            raise CartKineticsError(
                f"mapping: unknown keys {sorted(unknown)}; the full form takes columns, "
                "filter, blq_values, assay, unit, lloq, patient_prefix"
            )
        full = m
    else:
        full = {"columns": m}
    return {
        "columns": full.get("columns") or {},
        "filter": filt if filt is not None else full.get("filter"),
        "blq_values": blq_values if blq_values is not None else full.get("blq_values"),
        "assay": assay if assay is not None else full.get("assay"),
        "unit": unit if unit is not None else full.get("unit"),
        "lloq": lloq if lloq is not None else full.get("lloq"),
        "patient_prefix": patient_prefix or full.get("patient_prefix") or "",
    }


def load_json_object(spec: str | Path, option: str, example: str) -> dict[str, Any]:
    """A JSON object from a file or a JSON string (command-line options such as
    ``--mapping`` and ``--priors``); ``example`` goes into the error message."""
    text = str(spec)
    p = Path(text)
    try:
        if not text.lstrip().startswith("{") and p.is_file():
            return dict(json.loads(p.read_text()))
        return dict(json.loads(text))
    except (json.JSONDecodeError, OSError, TypeError, ValueError) as exc:
        raise CartKineticsError(
            f"{option} must be a JSON file or a JSON object, e.g. '{example}': {exc}",
            source=text if p.is_file() else None,
        ) from exc


def load_mapping(spec: str | Path) -> dict[str, Any]:
    """Mapping options from a JSON file or a JSON string (for ``--mapping``)."""
    return load_json_object(spec, "--mapping",
                            '{"columns": {"patient": "ID"}, "assay": "qpcr"}')


def _cell(frame_cols: dict[str, list[Any]], cols: dict[str, str], fld: str, i: int) -> Any:
    c = cols.get(fld)
    return None if c is None else frame_cols[c][i]


def _is_comment_flag(raw: Any) -> bool | None:
    """NONMEM ``C`` column: True for a comment record ('C' or 1), False for '.', 0 or blank."""
    if raw is None or _is_missing(raw):
        return False
    s = str(raw).strip().lower()
    if s == "c":
        return True
    v = _to_float(raw)  # 1, 1.0, 1.0000E+00 (NONMEM $TABLE)
    if v == 1.0:
        return True
    if v == 0.0:
        return False
    return None


def _parse_lloq(opts: dict[str, Any]) -> tuple[float, str | None]:
    """(lloq, its unit or None) of the ``lloq=`` option; NaN when not given."""
    raw = opts["lloq"]
    if raw is None:
        return math.nan, None
    v = _to_float(raw)
    lloq_unit = None
    if v is None and isinstance(raw, str):
        m = re.match(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(\S.*)$", raw)
        if m:
            v, lloq_unit = float(m.group(1)), m.group(2).strip()
            if lookup_unit(lloq_unit) is None:
                raise CartKineticsError(
                    f"lloq {raw!r}: unknown unit {lloq_unit!r}; known: "
                    f"{', '.join(known_units())}"
                )
    if v is None or not math.isfinite(v) or v <= 0:
        raise CartKineticsError(
            f"lloq must be a positive number (optionally with its unit, e.g. '50 copies/ug'), "
            f"got {raw!r}"
        )
    return v, lloq_unit


def _suggested_unit(written: set[str]) -> str:
    """The canonical unit of the first known unit written (for messages)."""
    for u in sorted(written):
        info = lookup_unit(u)
        if info is not None:
            return info.canonical
    return sorted(written)[0]


def _row_ranges(rows: Iterable[int], limit: int = 8) -> str:
    """'3-7, 9, 12-14' for the rows 3,4,5,6,7,9,12,13,14."""
    rows = sorted(set(int(r) for r in rows))
    spans: list[tuple[int, int]] = []
    for r in rows:
        if spans and r == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], r)
        else:
            spans.append((r, r))
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in spans[:limit]]
    return ", ".join(text) + (" ..." if len(spans) > limit else "")


def _group_doses(
    times: list[float], split_days: float, reinfusion_days: float
) -> tuple[list[float], str | None]:
    """Start times of the infusions made of sorted dose times, or a reason it is ambiguous."""
    starts: list[float] = []
    for t in times:
        if not starts or t - starts[-1] >= reinfusion_days:
            starts.append(t)
        elif t - starts[-1] > split_days:
            return starts, (
                f"a dose at TIME {t:g} is {t - starts[-1]:g} days after the dose at TIME "
                f"{starts[-1]:g}: more than {split_days:g} days (one split infusion) and less "
                f"than {reinfusion_days:g} (a new infusion)"
            )
    return starts, None


def _parse(
    frame: pd.DataFrame,
    rd: _Reader,
    keep: np.ndarray,
    filter_reasons: list[str],
    placeholders: list[tuple[Any, float]],
    known_assays: dict[str, str],
    opts: dict[str, Any],
    *,
    missing: str,
    split_days: float,
    reinfusion_days: float,
) -> tuple[list[dict[str, Any]], dict[tuple[str, int], float], list[str]]:
    cols = rd.cols
    data = {c: frame[c].tolist() for c in set(cols.values())}
    n = len(frame)
    prefix = opts["patient_prefix"]
    nonmem = rd.layout == "nonmem"
    has_occ = "infusion" in cols
    notes: list[str] = []
    default_lloq, lloq_unit = _parse_lloq(opts)

    # pass 1: identity, time, event type
    base: list[dict[str, Any]] = []
    for i in range(n):
        row = rd.rows[i]
        raw_id = _cell(data, cols, "patient", i)
        pid = prefix + patient_id(raw_id) if not _is_missing(raw_id) else ""
        if not keep[i]:
            base.append({"kept": False, "patient": pid, "reason": filter_reasons[i]})
            continue
        if nonmem and "comment" in cols:
            flag = _is_comment_flag(_cell(data, cols, "comment", i))
            if flag is None:
                rd.problem(
                    f"the comment column holds {_cell(data, cols, 'comment', i)!r}: expected C "
                    "(a comment record, ignored as NONMEM's IGNORE=C does) or . / blank",
                    row, "comment",
                )
                base.append({"kept": False, "patient": pid, "reason": "error"})
                continue
            if flag:
                base.append({"kept": False, "patient": pid, "reason": R_COMMENT_C})
                continue
        try:
            base.append(_identity(data, rd, i, pid, raw_id, nonmem))
        except CartKineticsError as exc:
            rd.problems.append(exc)
            base.append({"kept": False, "patient": pid, "reason": "error"})

    # dose records: the time origin of each infusion, and (without OCC) the infusions
    dose_rows = [b for b in base if b["kept"] and b["evid"] in (1, 4)]
    origin: dict[tuple[str, int], float] = {}
    doses: dict[tuple[str, int], float] = {}
    dose_times: dict[tuple[str, int], set[float]] = {}
    if nonmem and dose_rows and not has_occ:
        by_patient: dict[str, list[float]] = {}
        for b in dose_rows:
            by_patient.setdefault(b["patient"], []).append(b["time"])
        starts_of: dict[str, list[float]] = {}
        for p, times in by_patient.items():
            starts, why = _group_doses(sorted(times), split_days, reinfusion_days)
            if why is not None:
                rows = [b["row"] for b in dose_rows if b["patient"] == p]
                rd.problem(
                    f"patient {p}: {why}. Is it a split dose or a second infusion? Add an OCC "
                    "column (the same OCC on the doses of one infusion, 2 on a second "
                    f"infusion's records), or set split_dose_days / reinfusion_days "
                    f"(dose rows {_row_ranges(rows)})",
                    rows[0], "amt",
                )
            starts_of[p] = starts
            if len(set(times)) > 1:
                shown = ", ".join(f"{t:g}" for t in sorted(set(times)))
                notes.append(
                    f"patient {p}: dose records at TIME {shown} without OCC read as "
                    f"{len(starts)} infusion(s) starting at TIME "
                    f"{', '.join(f'{s:g}' for s in starts)} (doses within {split_days:g} days "
                    f"of an infusion's first dose are one split infusion; a dose "
                    f"{reinfusion_days:g}+ days later starts the next; days restart at each "
                    "infusion)"
                )
        for b in base:
            if b["kept"] and b["patient"] in starts_of:
                starts = starts_of[b["patient"]]
                k = int(np.searchsorted(starts, b["time"] + 1e-9, side="right"))
                b["infusion"] = max(k, 1)
    for b in base:
        if b["kept"] and b["evid"] in (1, 4):
            key = (b["patient"], b["infusion"])
            origin[key] = min(origin.get(key, math.inf), b["time"])
            if math.isfinite(b["amt"]):
                doses[key] = doses.get(key, 0.0) + b["amt"]
                dose_times.setdefault(key, set()).add(b["time"])
    _check_occasion_origins(base, origin, rd, nonmem=nonmem)

    # units: the levels' unit per row, and what a unitless lloq= is in
    unit_col = "unit" in cols
    if not math.isnan(default_lloq) and lloq_unit is None:
        written = {
            canonical_unit(str(_cell(data, cols, "unit", i)))
            for i, b in enumerate(base)
            if unit_col and b["kept"] and not _is_missing(_cell(data, cols, "unit", i))
        }
        if opts["unit"] is not None:
            lloq_unit = str(opts["unit"])
        elif len(written) > 1:
            rd.problem(
                f"lloq={opts['lloq']!r} has no unit and the file's levels come in "
                f"{', '.join(sorted(written))}: write it with its unit, e.g. "
                f"lloq='{default_lloq:g} {_suggested_unit(written)}' (command line: "
                f"--lloq '{default_lloq:g} {_suggested_unit(written)}')",
                rd.rows[0], "unit",
            )
        elif written:
            lloq_unit = written.pop()

    records: list[dict[str, Any]] = []
    for i in range(n):
        row = rd.rows[i]
        b = base[i]
        if not b["kept"]:
            rec = _excluded_record(b["patient"], 0, row, rd.source, b["reason"])
            # keep what can be read without judging it: these rows are not this data set's
            rec["day"] = _float_or_nan(_cell(data, cols, "day", i))
            rec["value"] = _float_or_nan(_cell(data, cols, "value", i))
            inf = _float_or_nan(_cell(data, cols, "infusion", i)) if has_occ else 1.0
            rec["infusion"] = int(inf) if math.isfinite(inf) and inf.is_integer() else 0
            records.append(rec)
            continue
        try:
            records.append(_observation(
                data, rd, i, b, origin, placeholders, known_assays, opts,
                default_lloq, lloq_unit, missing,
            ))
        except CartKineticsError as exc:
            rd.problems.append(exc)
            records.append(_excluded_record(b["patient"], b["infusion"], row, rd.source, "error"))
    if not nonmem and not has_occ:
        notes.append(
            "no 'infusion' column: every row read as infusion 1 (days since that infusion); "
            "add an infusion column if a patient had several"
        )
    for reason, fld in ((R_MDV_BLQ, "blq"), (R_MDV_CENS, "cens")):
        flagged = [r["source_row"] for r in records if r["reason"] == reason]
        if flagged:
            name, mdv = rd.cols[fld], rd.cols.get("mdv", "MDV")
            notes.append(
                f"{len(flagged)} row(s) with {mdv}=1 and {name}=1 excluded as {mdv}=1 says "
                f"(rows {_row_ranges(flagged)}): their below-limit information is not used. "
                f"Set {mdv}=0 on them to read them as censored at their limit"
            )
    if unit_col is False and opts["unit"] is None:
        used_assays = sorted({r["assay"] for r in records if r["status"] != "excluded"})
        for a in used_assays:
            notes.append(f"no unit column: {a} levels read as {known_assays[a]}")
    for (patient, infusion), times in dose_times.items():
        if len(times) > 1:
            shown = ", ".join(f"{x:g}" for x in sorted(times))
            notes.append(
                f"patient {patient} infusion {infusion}: doses at TIME {shown} summed to "
                f"{doses[(patient, infusion)]:g} as one infusion (days counted from TIME "
                f"{min(times):g})" + ("; give the rows of a second infusion OCC=2" if has_occ
                                      else "")
            )
    return records, doses, notes


def _identity(
    data: dict[str, list[Any]], rd: _Reader, i: int, pid: str, raw_id: Any, nonmem: bool
) -> dict[str, Any]:
    """Pass 1 of a row: patient, occasion, time, EVID/MDV, AMT."""
    cols = rd.cols
    row = rd.rows[i]
    if _is_missing(raw_id):
        raise rd.err("patient identifier is empty", row, "patient")
    infusion = 1
    raw_inf = _cell(data, cols, "infusion", i)
    if raw_inf is not None and _is_missing(raw_inf) and not nonmem:
        # a blank in a present infusion column may be a second infusion: do not guess
        raise rd.err(
            "infusion is empty: write 1 (first CAR-T) or 2 (second); the default 1 "
            "applies only when the file has no infusion column",
            row,
            "infusion",
        )
    if raw_inf is not None and not _is_missing(raw_inf):
        v = _to_float(raw_inf)
        if v is None or not math.isfinite(v) or v < 1 or not float(v).is_integer():
            raise rd.err(
                f"infusion must be 1, 2, ... (1 = first CAR-T), got {raw_inf!r}", row, "infusion"
            )
        infusion = int(v)
    day = rd.number(_cell(data, cols, "day", i), row, "day", what="day (days since infusion)")
    evid, mdv, amt = 0, 0, math.nan
    if nonmem:
        for fld in ("evid", "mdv"):
            raw = _cell(data, cols, fld, i)
            if raw is not None and not _is_missing(raw):
                v = _to_float(raw)
                if v is None or not float(v).is_integer() or v < 0:
                    raise rd.err(f"{fld.upper()} must be a whole number >= 0", row, fld)
                if fld == "evid":
                    evid = int(v)
                else:
                    mdv = int(v)
        if "evid" not in cols and "amt" in cols:
            # NONMEM without EVID: a record with AMT > 0 is a dose record
            amt0 = _to_float(_cell(data, cols, "amt", i))
            evid = 1 if amt0 is not None and amt0 > 0 else 0
        if evid in (1, 4):
            amt = rd.number(
                _cell(data, cols, "amt", i), row, "amt", what="AMT (dose)", allow_missing=True
            )
    return {"kept": True, "patient": pid, "infusion": infusion, "time": day, "evid": evid,
            "mdv": mdv, "amt": amt, "row": row}


def _check_occasion_origins(
    base: list[dict[str, Any]], origin: dict[tuple[str, int], float], rd: _Reader,
    *, nonmem: bool = True,
) -> None:
    """Every occasion's days need an origin: its dose record, or TIME already since it.

    In the native layout (no dose records) only the second check applies: the days of
    infusion 2 must count from infusion 2, not continue those of infusion 1.
    """
    obs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for b in base:
        if b["kept"] and b["evid"] == 0:
            obs.setdefault((b["patient"], b["infusion"]), []).append(b)
    dosed = {p for p, _ in origin}
    for key, rows in obs.items():
        if key[0] in dosed and key not in origin:
            rs = [b["row"] for b in rows]
            rd.problem(
                f"patient {key[0]} occasion {key[1]} has observations (rows {_row_ranges(rs)}) "
                "but no dose record, while the patient's other occasions have one: its days "
                "cannot be counted from its infusion. Add its EVID=1 dose row (TIME of the "
                "infusion; AMT may be '.')",
                rs[0], "infusion",
            )
    # a patient with no dose record: TIME must already be days since each infusion. A later
    # series that starts on or after day REINFUSION_DAYS cannot hold its expansion in days
    # since its own infusion: its days were counted from the first infusion. Native layout:
    # refused when its days also all lie at or after the previous series' last day (a day-28
    # sample that is also the next infusion's pre-dose shares that day). NONMEM layout: TIME
    # is conventionally time since the first dose, so a start at/after day 28 is enough; dose
    # records (TIME of each infusion) settle it.
    for (p, occ), rows in obs.items():
        prev = obs.get((p, occ - 1))
        if occ < 2 or prev is None or p in dosed:
            continue
        first = min(b["time"] for b in rows)
        last_prev = max(b["time"] for b in prev)
        if first < REINFUSION_DAYS or (not nonmem and first < last_prev):
            continue
        span = f"{first:g}-{max(b['time'] for b in rows):g}"
        shared = (
            f" (day {first:g} is both the last day of {'infusion' if not nonmem else 'occasion'}"
            f" {occ - 1} and the first of {'infusion' if not nonmem else 'occasion'} {occ}: a "
            f"sample taken before infusion {occ} belongs to infusion {occ - 1}, or to "
            f"infusion {occ} at day 0)"
            if first == last_prev else ""
        )
        if not nonmem:
            rd.problem(
                f"patient {p}: the days of infusion {occ} ({span}) start at or after day "
                f"{REINFUSION_DAYS:g} and continue those of infusion {occ - 1} (up to "
                f"{last_prev:g}){shared}, so they look like days since the first infusion; "
                f"'day' is days since that infusion: subtract the day infusion {occ} was "
                "given (counted from the first infusion) from its rows",
                min(b["row"] for b in rows), "day",
            )
        else:
            rd.problem(
                f"patient {p}: the TIMEs of occasion {occ} ({span}) start at or after day "
                f"{REINFUSION_DAYS:g} (occasion {occ - 1} up to {last_prev:g}){shared}, so "
                "they look like time since the first infusion, and there is no dose record "
                "to set the origin of each occasion. Add an EVID=1 dose row per occasion at the "
                "TIME of its infusion (AMT may be '.'; TIME 0 when TIME is already days "
                "since each infusion)",
                min(b["row"] for b in rows), "day",
            )


def _observation(
    data: dict[str, list[Any]],
    rd: _Reader,
    i: int,
    b: dict[str, Any],
    origin: dict[tuple[str, int], float],
    placeholders: list[tuple[Any, float]],
    known_assays: dict[str, str],
    opts: dict[str, Any],
    default_lloq: float,
    lloq_unit: str | None,
    missing: str,
) -> dict[str, Any]:
    """Pass 2 of a kept row: assay, unit, day since infusion, level, censoring."""
    cols = rd.cols
    row = rd.rows[i]
    nonmem = rd.layout == "nonmem"
    patient, infusion = b["patient"], b["infusion"]
    rec = _excluded_record(patient, infusion, row, rd.source, "")
    event_row = nonmem and (b["evid"] != 0 or b["mdv"] == 1)
    # assay and unit (not needed on dose and MDV rows)
    raw_assay = _cell(data, cols, "assay", i)
    if raw_assay is None or _is_missing(raw_assay):
        if opts["assay"] is None and not event_row:
            raise rd.err("assay is empty: expected qpcr or flow", row, "assay")
        assay_ = str(opts["assay"] or "").strip().lower()
    else:
        assay_ = str(raw_assay).strip().lower()
    if assay_ not in known_assays and not (event_row and assay_ == ""):
        raise rd.err(
            f"unknown assay {raw_assay!r}: expected one of {sorted(known_assays)} "
            "(declare others with assays={name: unit})",
            row,
            "assay",
        )
    raw_unit = _cell(data, cols, "unit", i)
    if raw_unit is not None and not _is_missing(raw_unit):
        unit_read = str(raw_unit).strip()
    elif opts["unit"] is not None:
        unit_read = str(opts["unit"])
    else:
        unit_read = known_assays.get(assay_, "")
    target = canonical_unit(known_assays[assay_]) if assay_ in known_assays else ""
    key = (patient, infusion)
    day = b["time"] - origin.get(key, 0.0)
    if day < 0:
        raise rd.err(
            f"TIME {b['time']:g} is before the dose of occasion {infusion} "
            f"(TIME {origin[key]:g}): days since infusion must be >= 0",
            row,
            "day",
        )
    rec.update({"assay": assay_, "unit": target, "unit_read": canonical_unit(unit_read),
                "day": day})
    if nonmem and b["evid"] != 0:
        rec["reason"] = R_DOSE if b["evid"] == 1 else f"EVID={b['evid']} (not an observation)"
        return rec
    if nonmem and b["mdv"] == 1:
        # MDV=1 is the user's word: not an observation. A BLQ/CENS flag on the row says it was
        # a below-limit sample, though: keep that in the reason (and a note) instead of losing it
        rec["reason"] = R_MDV
        if "blq" in cols and _flag(_cell(data, cols, "blq", i)):
            rec["reason"] = R_MDV_BLQ
        elif "cens" in cols and _to_float(_cell(data, cols, "cens", i)) == 1.0:
            rec["reason"] = R_MDV_CENS
        rec["value"] = _float_or_nan(_cell(data, cols, "value", i))
        return rec
    factor = _unit_factor(unit_read, target, assay_, row, rd)
    # limit of quantification of this row, in the unit the row is written in
    row_lloq = rd.number(_cell(data, cols, "lloq", i), row, "lloq", what="lloq", allow_missing=True)
    if math.isnan(row_lloq) and not math.isnan(default_lloq):
        row_lloq = default_lloq
        if lloq_unit is not None and not same_unit(lloq_unit, unit_read):
            row_lloq = default_lloq * _unit_factor(lloq_unit, unit_read, assay_, row, rd, "lloq")
    if row_lloq == 0:
        row_lloq = math.nan  # a limit of 0 censors nothing
    raw_value = _cell(data, cols, "value", i)
    blq_flag = False
    if "blq" in cols:
        f = _flag(_cell(data, cols, "blq", i))
        if f is None:
            raise rd.err(
                f"blq must be 0/1 (or true/false), got {_cell(data, cols, 'blq', i)!r}", row, "blq"
            )
        blq_flag = f
    cens = 0
    if "cens" in cols:
        raw_c = _cell(data, cols, "cens", i)
        if not _is_missing(raw_c):
            v = _to_float(raw_c)
            if v not in (0.0, 1.0, -1.0):
                raise rd.err(f"CENS must be 0, 1 or -1, got {raw_c!r}", row, "cens")
            cens = int(v)
            if cens == -1:
                raise rd.err(
                    "CENS=-1 (right-censored, above a limit) is not supported", row, "cens"
                )
    scaled_lloq = row_lloq * factor
    if _is_missing(raw_value) and not blq_flag and cens != 1 \
            and _match_placeholder(raw_value, placeholders) is None:
        if missing == "error":
            raise rd.err("value is blank (missing='error'): write the level, BLQ or <limit",
                         row, "value")
        if missing == "exclude":
            rec.update({"lloq": scaled_lloq, "reason": R_MISSING})
            return rec
        blq_flag = True  # missing="blq": below the row's limit
        if not math.isfinite(row_lloq):
            raise rd.err("value is blank and missing='blq', but the row has no lloq", row,
                         "value")
    if day == 0.0 and not blq_flag and cens != 1 and _to_float(raw_value) == 0.0:
        # a level of 0 at day 0 precedes expansion: not a censored value on the log scale
        rec.update({"value": 0.0, "lloq": scaled_lloq, "reason": R_DAY0})
        return rec
    value, limit, reason = _parse_value(
        raw_value, row, rd, row_lloq, blq_flag, cens == 1, placeholders
    )
    if limit is not None:
        rec.update({"value": limit * factor, "lloq": limit * factor, "blq": True,
                    "status": "censored", "reason": reason})
    elif value == 0.0:
        raise rd.err(
            f"value 0 at day {day:g} with no lloq: a zero cannot be used on the log scale; "
            "give the row's lloq (it is then censored) or write it as BLQ",
            row,
            "value",
        )
    else:
        rec.update({"value": value * factor, "lloq": scaled_lloq, "status": "used",
                    "reason": R_USED})
    return rec


def _unit_factor(
    unit_read: str, target: str, assay_: str, row: int, rd: _Reader, field_: str = "unit"
) -> float:
    """Factor from the row's unit to the assay's canonical unit (1 when they are the same)."""
    if not target or same_unit(unit_read, target):
        return 1.0
    a, t = lookup_unit(unit_read), lookup_unit(target)
    if a is None or t is None:
        raise rd.err(
            f"unit {unit_read!r} is not {target!r}, the unit of assay {assay_}, and cannot be "
            f"converted to it (known units: {', '.join(known_units())}); write the levels in "
            f"{target}, or declare another assay with assays={{name: {unit_read!r}}}",
            row, field_,
        )
    if a.kind != t.kind:
        return math.nan  # reported once per assay by _check_units, with all the rows
    return a.factor / t.factor


def _check_units(obs: pd.DataFrame, rd: _Reader, known_assays: dict[str, str]) -> None:
    """One kind of measurement per assay: name the rows and both units when not."""
    kept = obs[obs["status"] != "excluded"]
    for assay_, g in kept.groupby("assay", sort=True):
        target = lookup_unit(known_assays.get(assay_, ""))
        if target is None:
            continue
        kinds = {}
        for u, gu in g.groupby("unit_read", sort=False):
            info = lookup_unit(u)
            kinds[u] = (info.kind if info is not None else "unknown", gu["source_row"].tolist())
        bad = {u: v for u, v in kinds.items() if v[0] != target.kind}
        good = {u: v for u, v in kinds.items() if v[0] == target.kind}
        for u, (kind, rows) in bad.items():
            also = "; ".join(f"rows {_row_ranges(r)} are in {gu}" for gu, (_, r) in good.items())
            rd.problem(
                f"assay {assay_}: rows {_row_ranges(rows)} are in {u} ({kind}) but {assay_} "
                f"levels are {target.kind} ({target.name})"
                + (f"; {also}" if also else "")
                + ". One assay holds one kind of measurement: fix the unit or the assay column "
                "(e.g. flow for cells/uL), or declare another assay",
                rows[0], "unit",
            )


def _conversion_notes(obs: pd.DataFrame) -> list[str]:
    """One note per unit converted on reading: rows, factor, target."""
    kept = obs[(obs["status"] != "excluded") & (obs["unit_read"] != obs["unit"])
               & (obs["unit_read"] != "")]
    notes = []
    for (u_from, u_to), g in kept.groupby(["unit_read", "unit"], sort=True):
        f = conversion_factor(u_from, u_to)
        notes.append(
            f"{len(g)} level(s) in {u_from} converted to {u_to} (x{f:g}; lloq too): rows "
            f"{_row_ranges(g['source_row'])}"
        )
    return notes


def _parse_value(
    raw: Any,
    row: int,
    rd: _Reader,
    row_lloq: float,
    blq_flag: bool,
    cens: bool,
    placeholders: list[tuple[Any, float]],
) -> tuple[float, float | None, str]:
    """(value, censoring limit or None, reason) of one cell."""
    has_limit = math.isfinite(row_lloq)
    text = raw.strip() if isinstance(raw, str) else None
    if cens:
        v = _to_float(raw)
        if v is None or not math.isfinite(v) or v <= 0:
            raise rd.err(
                f"BLQ row with no limit: CENS=1 needs DV = the LLOQ (a positive number), "
                f"got {raw!r}",
                row,
                "value",
            )
        return v, v, R_CENS
    lim = _match_placeholder(raw, placeholders)
    if lim is not None:
        return lim, lim, R_PLACEHOLDER
    if text is not None:
        low = re.sub(r"\s+", "", text.lower())
        if low in _BLQ_TOKENS:
            if not has_limit:
                raise rd.err(
                    f"BLQ row with no limit: value {text!r} needs an lloq (column or lloq=)",
                    row,
                    "value",
                )
            return row_lloq, row_lloq, R_TOKEN
        m = _INLINE_LIMIT.match(text)
        if m:
            inline = float(m.group(1))
            if not math.isfinite(inline) or inline <= 0:
                raise rd.err(f"limit in {text!r} must be positive", row, "value")
            return inline, inline, R_INLINE
    if blq_flag:
        if has_limit:
            v = _to_float(raw)
            if v is not None and math.isfinite(v) and v > row_lloq:
                # a measured level above its own limit cannot be below it: say so rather
                # than replace the measurement by the limit
                raise rd.err(
                    f"blq=1 but the value {raw!r} is above the row's lloq {row_lloq:g}: "
                    "set blq=0, or write the limit (or BLQ) as the value",
                    row,
                    "blq",
                )
            return row_lloq, row_lloq, R_FLAG
        v = _to_float(raw)
        if v is not None and math.isfinite(v) and v > 0:
            return v, v, R_FLAG  # the value column holds the limit
        raise rd.err(
            "BLQ row with no limit: blq=1 but neither lloq nor a positive value gives the limit",
            row,
            "value",
        )
    v = _to_float(raw)
    if v is None:
        raise rd.err(
            f"value must be a number, <LLOQ, BLQ or <limit (e.g. <50), got {raw!r}", row, "value"
        )
    if not math.isfinite(v):
        raise rd.err(f"value must be finite, got {raw!r}", row, "value")
    if v < 0:
        raise rd.err(f"value must be >= 0, got {raw!r}", row, "value")
    if has_limit and v < row_lloq:
        return v, row_lloq, R_BELOW
    return v, None, R_USED


def _check_duplicates(obs: pd.DataFrame, rd: _Reader) -> None:
    kept = obs[obs["status"] != "excluded"]
    keys = ["patient", "infusion", "day", "assay"]
    dup = kept.duplicated(keys, keep="first")
    if not dup.any():
        return
    first_row = kept.groupby(keys, sort=False)["source_row"].transform("first")
    for r, first in zip(kept[dup].itertuples(index=False), first_row[dup], strict=True):
        rd.problem(
            f"duplicate observation: (patient {r.patient}, infusion {r.infusion}, day "
            f"{r.day:g}, assay {r.assay}) already given in row {first}",
            int(r.source_row),
            "day",
        )


def _check_patients_observed(obs: pd.DataFrame, rd: _Reader) -> None:
    # rows removed by the user's filter belong to another data set; comments are not data
    reason = obs["reason"].astype(str)
    considered = obs[~reason.str.startswith(("filtered out", "comment record"))]
    for patient, g in considered.groupby("patient", sort=False):
        if (g["status"] == "excluded").all():
            reasons = ", ".join(sorted(set(g["reason"])))
            rd.problem(
                f"patient {patient} has no observation: all {len(g)} rows are excluded ({reasons})",
                int(g["source_row"].iloc[0]),
                "patient",
            )


def _id_key(pid: str) -> str:
    return re.sub(r"[\s_-]+", "", str(pid)).lower()


def _check_patient_spellings(obs: pd.DataFrame, rd: _Reader) -> None:
    """Patient ids that differ only in case, spaces, '-' or '_' are one patient written twice
    (or two patients nobody can tell apart): refuse rather than guess."""
    kept = obs[(obs["status"] != "excluded") & (obs["patient"] != "")]
    by_key: dict[str, dict[str, list[int]]] = {}
    for pid, g in kept.groupby("patient", sort=False):
        by_key.setdefault(_id_key(pid), {})[str(pid)] = g["source_row"].tolist()
    for spellings in by_key.values():
        if len(spellings) < 2:
            continue
        # name every row written so, excluded ones too (a day-0 zero is the same patient)
        spellings = {p: sorted(obs.loc[obs["patient"] == p, "source_row"].tolist())
                     for p in spellings}
        shown = "; ".join(f"{p!r} (row{'s' if len(r) > 1 else ''} {_row_ranges(r, 3)})"
                          for p, r in spellings.items())
        rd.problem(
            f"patient ids {shown} differ only in case, spaces, '-' or '_': write one patient's "
            "id the same way everywhere, or make different patients' ids clearly different",
            min(min(r) for r in spellings.values()),
            "patient",
        )


# ---------------------------------------------------------------------- patients
def column_key(name: Any) -> str:
    """A patient-table column name as :func:`read_patients` stores it (stripped, lower
    case); look-ups of a user's column name (``fixed=``, covariates) go through it."""
    return str(name).strip().lower()


def read_patients(source: str | Path | pd.DataFrame, *, patient_prefix: str = "") -> pd.DataFrame:
    """Patient covariate table, one row per patient.

    Column names are lower-cased; ``patient`` is required and becomes text (prefixed with
    ``patient_prefix``). Typical columns: ``weight_kg``, ``dose_per_kg`` (CAR+ cells/kg),
    ``target``, ``disease``, ``lymphodepletion``.

    Raises
    ------
    CartKineticsError
        No ``patient`` column, an empty patient id or a patient listed twice (names the row).
    """
    if isinstance(source, pd.DataFrame):
        src, table = "<DataFrame>", source.reset_index(drop=True).copy()
    else:
        loaded = read_table(source)  # CSV, semicolon/tab/whitespace text or Excel
        src, table = loaded.source, loaded.frame.copy()
        for c in table.columns:
            # numbers become numbers (covariates), other columns stay text (ids, targets)
            if str(c).strip().lower() == "patient":
                continue
            cells = table[c].replace({"": None, ".": None, "NA": None, "na": None})
            num = pd.to_numeric(cells, errors="coerce")
            if num.notna().sum() == cells.notna().sum():
                table[c] = num
    original = {column_key(c): c for c in table.columns}
    table.columns = [column_key(c) for c in table.columns]
    if "patient" not in table.columns:
        raise CartKineticsError(
            f"missing required column patient; the table has {list(original.values())}",
            source=src,
            column="patient",
        )
    ids = []
    for i, raw in enumerate(table["patient"].tolist()):
        if _is_missing(raw):
            raise CartKineticsError(
                "patient identifier is empty", source=src, row=i + 1, column=original["patient"]
            )
        ids.append(patient_prefix + _patient_id(raw))
    table["patient"] = ids
    dup = table["patient"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise CartKineticsError(
            f"patient {table['patient'].iloc[i]} is listed twice",
            source=src,
            row=i + 1,
            column=original["patient"],
        )
    return table


# ---------------------------------------------------------------------- writing
NONMEM_COLUMNS = [
    "ID",
    "TIME",
    "DV",
    "MDV",
    "EVID",
    "AMT",
    "CENS",
    "LIMIT",
    "OCC",
    "ASSAY",
    "UNIT",
    "LLOQ",
]


def write_nonmem(data: KineticsData, path: str | Path | None = None) -> pd.DataFrame:
    """Write the used and censored observations in the NONMEM/Monolix layout.

    One row per observation (``EVID=0, MDV=0``; BLQ rows ``CENS=1`` with ``DV`` = the LLOQ
    and ``LIMIT=0``, i.e. the Monolix interval [0, LLOQ]) and one dose row per occasion
    (``EVID=1, MDV=1, AMT``; ``AMT`` '.' where the dose is unknown) at ``TIME=0``, which sets
    the origin of the occasion's times for any reader. ``TIME`` is days since the infusion of that
    occasion (``OCC``), as in the native layout. ``ASSAY``, ``UNIT`` and ``LLOQ`` keep what the
    standard columns cannot; NONMEM itself needs numeric IDs, Monolix accepts text.
    Excluded rows (filtered, before expansion, MDV) are not written. ``read_kinetics`` reads
    the file back to the same series.

    Parameters
    ----------
    data : KineticsData
    path : path, optional
        CSV file to write ("." for missing values).

    Returns
    -------
    DataFrame
        The table written.
    """
    obs = data.observations
    obs = obs[obs["status"] != "excluded"]
    rows = []
    for r in obs.itertuples(index=False):
        rows.append(
            {
                "ID": r.patient,
                "TIME": float(r.day),
                "DV": float(r.value),
                "MDV": 0,
                "EVID": 0,
                "AMT": 0.0,
                "CENS": 1 if r.blq else 0,
                "LIMIT": 0.0 if r.blq else np.nan,
                "OCC": int(r.infusion),
                "ASSAY": r.assay,
                "UNIT": r.unit,
                "LLOQ": float(r.lloq),
            }
        )
    series_units = obs.groupby(["patient", "infusion"])[["assay", "unit"]].first()
    # every occasion gets a dose row (AMT '.' where the dose is unknown): TIME is days since
    # that occasion's infusion, and the dose row says so to any reader, this one included
    dose_rows = dict(data.doses)
    for patient, infusion in series_units.index:
        dose_rows.setdefault((patient, int(infusion)), np.nan)
    for (patient, infusion), amt in dose_rows.items():
        if (patient, infusion) in series_units.index:
            a, u = series_units.loc[(patient, infusion)]
        else:
            a, u = "", ""
        rows.append(
            {
                "ID": patient,
                "TIME": 0.0,
                "DV": np.nan,
                "MDV": 1,
                "EVID": 1,
                "AMT": float(amt),
                "CENS": 0,
                "LIMIT": np.nan,
                "OCC": int(infusion),
                "ASSAY": a,
                "UNIT": u,
                "LLOQ": np.nan,
            }
        )
    out = pd.DataFrame(rows, columns=NONMEM_COLUMNS)
    if len(out):
        out = out.sort_values(
            ["ID", "OCC", "ASSAY", "TIME", "EVID"],
            ascending=[True, True, True, True, False],
            kind="stable",
        ).reset_index(drop=True)
    if path is not None:
        out.to_csv(path, index=False, na_rep=".", float_format="%.10g")
    return out


def patient_id_key(pid: Any) -> str:
    """Key under which patient ids that differ only in case, spaces, '-' or '_' collide
    (``"p-01"`` and ``"P01"``): used to refuse such near-duplicates, never to merge them."""
    return _id_key(patient_id(pid))
