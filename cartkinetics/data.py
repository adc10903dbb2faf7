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
}
_REQUIRED = {"native": ("patient", "day", "value"), "nonmem": ("patient", "day", "value")}
_DISPLAY = {
    "native": {k: v[0] for k, v in _NATIVE.items()},
    "nonmem": {k: v[0].upper() for k, v in _NONMEM.items()},
}

_BLQ_TOKENS = {"blq", "bloq", "bql", "<lloq", "<loq", "<llq", "<lod", "below lloq", "<ll"}
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
        lines = [
            f"{s['rows']} rows from {', '.join(s['sources'])} ({s['layout']} layout): "
            f"{s['used']} used, {s['censored']} censored (BLQ), {s['excluded']} excluded; "
            f"{s['patients']} patients, {s['series']} series."
        ]
        for st in ("censored", "excluded"):
            for reason, n in s["reasons"][st].items():
                lines.append(f"  {st}: {n} x {reason}")
        if s.get("patients_without_covariates"):
            lines.append("  no covariates for: " + ", ".join(s["patients_without_covariates"]))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

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


def _flag(raw: Any) -> bool | None:
    if raw is None or (not isinstance(raw, str) and _is_missing(raw)):
        return False
    s = str(raw).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE or s in _MISSING_TOKENS:
        return False
    return None


class _Reader:
    """Row-by-row reader; raises CartKineticsError at the first bad cell."""

    def __init__(self, source: str, cols: dict[str, str], layout: str) -> None:
        self.source = source
        self.cols = cols  # canonical -> column name as written in the input
        self.layout = layout

    def err(self, msg: str, row: int, field_: str | None = None) -> CartKineticsError:
        col = self.cols.get(field_, _DISPLAY[self.layout].get(field_, field_)) if field_ else None
        return CartKineticsError(msg, source=self.source, row=row, column=col)

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
    lloq: float | None = None,
    patient_prefix: str = "",
    assays: Mapping[str, str] | None = None,
) -> KineticsData:
    """Read and validate longitudinal CAR-T measurements.

    Parameters
    ----------
    source : path or DataFrame
        CSV file (read as text, so that ``<50`` or ``BLQ`` survive) or a DataFrame.
    patients : path or DataFrame, optional
        Patient covariates (weight_kg, dose_per_kg, target, disease, lymphodepletion, ...),
        one row per ``patient``; see :func:`read_patients`.
    layout : {"auto", "native", "nonmem"}
        Column layout; ``auto`` detects it from the column names.
    mapping : dict, optional
        Field -> input column, e.g. ``{"patient": "ID", "day": "time", "value": "y"}``. Fields
        are the native names (patient, infusion, day, value, lloq, assay, unit, blq) or the
        NONMEM ones (ID, TIME, DV, OCC, MDV, EVID, AMT, CENS, LIMIT). A mapping may also be
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
        Unit when the file has no unit column (default: the assay's unit).
    lloq : float, optional
        Limit of quantification for rows without one (same unit as the values).
    patient_prefix : str
        Prepended to every patient id (e.g. ``"CR-"`` when ids repeat across files).
    assays : dict, optional
        Extra assays to accept, name -> default unit.

    Returns
    -------
    KineticsData

    Raises
    ------
    CartKineticsError
        Naming the file, the 1-based data row and the column, for: a missing required
        column, a non-numeric or negative day, a negative or non-finite value, a duplicate
        (patient, infusion, day, assay), an unknown assay, a BLQ row with no limit, a patient
        with no observation.
    """
    opts = _options(mapping, blq_values, filter, assay, unit, lloq, patient_prefix)
    known_assays = dict(ASSAYS)
    for k, v in (assays or {}).items():
        known_assays[str(k).lower()] = str(v)
    if isinstance(source, pd.DataFrame):
        src = "<DataFrame>"
        frame = source.reset_index(drop=True)
    else:
        src = str(source)
        path = Path(source)
        if not path.is_file():
            raise CartKineticsError(f"no such file: {path}", source=src)
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise CartKineticsError(f"cannot read as CSV: {exc}", source=src) from exc
    if frame.shape[1] == 0:
        raise CartKineticsError("no columns", source=src)
    if frame.shape[1] == 1 and not isinstance(source, pd.DataFrame):
        header = str(frame.columns[0])
        for sep, name in (("\t", "tabs"), (";", "semicolons"), (" ", "spaces")):
            if sep in header.strip():
                # e.g. a NONMEM table or a European spreadsheet export
                raise CartKineticsError(
                    f"the header {header!r} looks separated by {name}: only comma-separated "
                    "files are read; convert it (e.g. pandas.read_csv(path, sep=None, "
                    "engine='python')) and pass the DataFrame",
                    source=src,
                    row=0,
                )
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
    default_lloq = math.nan
    if opts["lloq"] is not None:
        default_lloq = _to_float(opts["lloq"])
        if default_lloq is None or not math.isfinite(default_lloq) or default_lloq <= 0:
            raise CartKineticsError(f"lloq must be a positive number, got {opts['lloq']!r}")
    keep, filter_reasons = _filter_mask(frame, opts["filter"], src)
    if "assay" not in cols:
        _check_one_observation_type(frame, cols, keep, src)
    rd = _Reader(src, cols, layout)
    placeholders = _normalise_blq_values(opts["blq_values"])
    records, doses, notes = _parse(
        frame, rd, keep, filter_reasons, placeholders, known_assays, opts, default_lloq
    )
    obs = pd.DataFrame.from_records(records, columns=OBSERVATION_COLUMNS)
    obs["infusion"] = obs["infusion"].astype(int)
    obs["blq"] = obs["blq"].astype(bool)
    obs["source_row"] = obs["source_row"].astype(int)
    _check_duplicates(obs, rd)
    _check_one_unit_per_series(obs, rd)
    _check_patients_observed(obs, rd)
    table = None
    if patients is not None:
        table = read_patients(patients, patient_prefix=opts["patient_prefix"])
    return KineticsData(obs, table, doses, layout, notes)


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


def load_mapping(spec: str | Path) -> dict[str, Any]:
    """Mapping options from a JSON file or a JSON string (for ``--mapping``)."""
    text = str(spec)
    p = Path(text)
    try:
        if not text.lstrip().startswith("{") and p.is_file():
            return dict(json.loads(p.read_text()))
        return dict(json.loads(text))
    except (json.JSONDecodeError, OSError, TypeError, ValueError) as exc:
        raise CartKineticsError(
            f"--mapping must be a JSON file or a JSON object, e.g. "
            f'\'{{"columns": {{"patient": "ID"}}, "assay": "qpcr"}}\': {exc}',
            source=text if p.is_file() else None,
        ) from exc


def _cell(frame_cols: dict[str, list[Any]], cols: dict[str, str], fld: str, i: int) -> Any:
    c = cols.get(fld)
    return None if c is None else frame_cols[c][i]


def _parse(
    frame: pd.DataFrame,
    rd: _Reader,
    keep: np.ndarray,
    filter_reasons: list[str],
    placeholders: list[tuple[Any, float]],
    known_assays: dict[str, str],
    opts: dict[str, Any],
    default_lloq: float,
) -> tuple[list[dict[str, Any]], dict[tuple[str, int], float], list[str]]:
    cols = rd.cols
    data = {c: frame[c].tolist() for c in set(cols.values())}
    n = len(frame)
    prefix = opts["patient_prefix"]
    nonmem = rd.layout == "nonmem"

    # pass 1: identity, time, event type (dose rows set the time origin per occasion)
    base: list[dict[str, Any]] = []
    origin: dict[tuple[str, int], float] = {}
    doses: dict[tuple[str, int], float] = {}
    dose_times: dict[tuple[str, int], set[float]] = {}
    for i in range(n):
        row = i + 1
        raw_id = _cell(data, cols, "patient", i)
        if not keep[i]:
            base.append({"kept": False, "patient": prefix + _patient_id(raw_id)})
            continue
        if _is_missing(raw_id):
            raise rd.err("patient identifier is empty", row, "patient")
        patient = prefix + _patient_id(raw_id)
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
                    f"infusion must be 1, 2, ... (1 = first CAR-T), got {raw_inf!r}",
                    row,
                    "infusion",
                )
            infusion = int(v)
        day = rd.number(_cell(data, cols, "day", i), row, "day", what="day (days since infusion)")
        evid, mdv = 0, 0
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
                key = (patient, infusion)
                origin[key] = min(origin.get(key, math.inf), day)
                if math.isfinite(amt):
                    doses[key] = doses.get(key, 0.0) + amt
                    dose_times.setdefault(key, set()).add(day)
        base.append(
            {
                "kept": True,
                "patient": patient,
                "infusion": infusion,
                "time": day,
                "evid": evid,
                "mdv": mdv,
            }
        )

    records: list[dict[str, Any]] = []
    for i in range(n):
        row = i + 1
        b = base[i]
        rec = {
            "patient": b["patient"],
            "infusion": b.get("infusion", 0),
            "assay": "",
            "unit": "",
            "day": math.nan,
            "value": math.nan,
            "lloq": math.nan,
            "blq": False,
            "status": "excluded",
            "reason": "",
            "source_row": row,
            "source": rd.source,
        }
        if not b["kept"]:
            # keep what can be read without judging it: these rows are not this data set's
            rec["day"] = _float_or_nan(_cell(data, cols, "day", i))
            rec["value"] = _float_or_nan(_cell(data, cols, "value", i))
            inf = _float_or_nan(_cell(data, cols, "infusion", i)) if "infusion" in cols else 1.0
            rec["infusion"] = int(inf) if math.isfinite(inf) and inf.is_integer() else 0
            rec["reason"] = filter_reasons[i]
            records.append(rec)
            continue
        patient, infusion = b["patient"], b["infusion"]
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
            unit_ = str(raw_unit).strip()
        elif opts["unit"] is not None:
            unit_ = str(opts["unit"])
        else:
            unit_ = known_assays.get(assay_, "")
        key = (patient, infusion)
        day = b["time"] - origin.get(key, 0.0)
        if day < 0:
            raise rd.err(
                f"TIME {b['time']:g} is before the dose of occasion {infusion} "
                f"(TIME {origin[key]:g}): days since infusion must be >= 0",
                row,
                "day",
            )
        rec.update({"infusion": infusion, "assay": assay_, "unit": unit_, "day": day})
        if nonmem and b["evid"] != 0:
            rec["reason"] = R_DOSE if b["evid"] == 1 else f"EVID={b['evid']} (not an observation)"
            rec["value"] = math.nan
            records.append(rec)
            continue
        if nonmem and b["mdv"] == 1:
            rec["reason"] = R_MDV
            rec["value"] = _float_or_nan(_cell(data, cols, "value", i))
            records.append(rec)
            continue
        # limit of quantification of this row
        row_lloq = rd.number(
            _cell(data, cols, "lloq", i), row, "lloq", what="lloq", allow_missing=True
        )
        if math.isnan(row_lloq):
            row_lloq = default_lloq
        if row_lloq == 0:
            row_lloq = math.nan  # a limit of 0 censors nothing
        raw_value = _cell(data, cols, "value", i)
        blq_flag = False
        if "blq" in cols:
            f = _flag(_cell(data, cols, "blq", i))
            if f is None:
                raise rd.err(
                    f"blq must be 0/1 (or true/false), got {_cell(data, cols, 'blq', i)!r}",
                    row,
                    "blq",
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
        if day == 0.0 and not blq_flag and cens != 1 and _to_float(raw_value) == 0.0:
            # a level of 0 at day 0 precedes expansion: not a censored value on the log scale
            rec.update({"value": 0.0, "lloq": row_lloq, "reason": R_DAY0})
            records.append(rec)
            continue
        value, limit, reason = _parse_value(
            raw_value, row, rd, row_lloq, blq_flag, cens == 1, placeholders
        )
        if limit is not None:
            rec.update(
                {"value": limit, "lloq": limit, "blq": True, "status": "censored", "reason": reason}
            )
        elif value == 0.0:
            raise rd.err(
                f"value 0 at day {day:g} with no lloq: a zero cannot be used on the log scale; "
                "give the row's lloq (it is then censored) or write it as BLQ",
                row,
                "value",
            )
        else:
            rec.update({"value": value, "lloq": row_lloq, "status": "used", "reason": R_USED})
        records.append(rec)
    notes = []
    for (patient, infusion), times in dose_times.items():
        if len(times) > 1:
            # split dosing of one infusion, or a second infusion without OCC: say which
            shown = ", ".join(f"{x:g}" for x in sorted(times))
            notes.append(
                f"patient {patient} occasion {infusion}: doses at TIME {shown} summed to "
                f"{doses[(patient, infusion)]:g} as one infusion (days counted from TIME "
                f"{min(times):g}); give the rows of a second infusion OCC=2"
            )
    return records, doses, notes


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
        low = text.lower()
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
    dup = kept.duplicated(["patient", "infusion", "day", "assay"], keep="first")
    if dup.any():
        r = kept[dup].iloc[0]
        first = kept[
            (kept["patient"] == r["patient"])
            & (kept["infusion"] == r["infusion"])
            & (kept["day"] == r["day"])
            & (kept["assay"] == r["assay"])
        ]["source_row"].iloc[0]
        raise rd.err(
            f"duplicate observation: (patient {r['patient']}, infusion {r['infusion']}, day "
            f"{r['day']:g}, assay {r['assay']}) already given in row {first}",
            int(r["source_row"]),
            "day",
        )


def _check_one_unit_per_series(obs: pd.DataFrame, rd: _Reader) -> None:
    """A series is one curve: its rows must share a unit (no silent mix of scales)."""
    kept = obs[obs["status"] != "excluded"]
    n_units = kept.groupby(["patient", "infusion", "assay"])["unit"].transform("nunique")
    if (n_units > 1).any():
        bad = kept[n_units > 1]
        p, inf, a = bad.iloc[0][["patient", "infusion", "assay"]]
        rows = bad[(bad["patient"] == p) & (bad["infusion"] == inf) & (bad["assay"] == a)]
        first = rows.iloc[0]
        other = rows[rows["unit"] != first["unit"]].iloc[0]
        raise rd.err(
            f"unit {other['unit']!r} differs from {first['unit']!r} (row "
            f"{first['source_row']}) within the series (patient {p}, infusion {inf}, assay "
            f"{a}): convert the values to one unit",
            int(other["source_row"]),
            "unit",
        )


def _check_patients_observed(obs: pd.DataFrame, rd: _Reader) -> None:
    # rows removed by the user's filter belong to another data set: not counted here
    considered = obs[~obs["reason"].str.startswith("filtered out")]
    for patient, g in considered.groupby("patient", sort=False):
        if (g["status"] == "excluded").all():
            reasons = ", ".join(sorted(set(g["reason"])))
            raise rd.err(
                f"patient {patient} has no observation: all {len(g)} rows are excluded ({reasons})",
                int(g["source_row"].iloc[0]),
                "patient",
            )


# ---------------------------------------------------------------------- patients
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
        src = str(source)
        if not Path(source).is_file():
            raise CartKineticsError(f"no such file: {source}", source=src)
        table = pd.read_csv(source, dtype={c: str for c in ("patient", "Patient", "PATIENT")})
    original = {str(c).strip().lower(): c for c in table.columns}
    table.columns = [str(c).strip().lower() for c in table.columns]
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
    and ``LIMIT=0``, i.e. the Monolix interval [0, LLOQ]) and one dose row per known dose
    (``EVID=1, MDV=1, AMT``) at ``TIME=0``. ``TIME`` is days since the infusion of that
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
    for (patient, infusion), amt in data.doses.items():
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
