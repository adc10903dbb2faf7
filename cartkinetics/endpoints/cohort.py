"""Read and validate a cohort table: one row per patient, clinical endpoints as columns.

Columns are matched case-insensitively (surrounding spaces ignored). Only ``patient`` is
required; every other known column is optional, and an endpoint whose columns are absent
is omitted from the report with the reason stated. Unknown columns are kept (they can be
used as subgroups).

Codes accepted
--------------
- ``best_response``: CR, CRi, PR, SD, PD, NR (case-insensitive), and NE (not evaluable,
  counted in the denominator as a non-responder). MRD-negative CR is written as CR or CRi
  with ``mrd_negative`` = yes.
- grades: integers (``2``, ``2.0``, ``G2``, ``grade 2``; ``none`` = 0). CRS and ICANS use
  the ASTCT consensus scale 0-5, acute GVHD the 0-4 scale.
- flags (``mrd_negative``, ``extramedullary_only``, ``pet_cmr``, ``death``,
  ``efs_event``): 1/0, yes/no, y/n, true/false.
- times (``os_days``, ``efs_days``, ``response_day``): days from the (second) CAR-T
  infusion, >= 0.
- empty cells, ``NA``, ``N/A``, ``nan`` and ``.`` are missing values.

Every problem raises :class:`cartkinetics.errors.CartKineticsError` naming the source,
the 1-based data row and the column as written in the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.data import flag_value, patient_id
from cartkinetics.errors import CartKineticsError

RESPONSE_CODES: dict[str, str] = {
    "cr": "CR",
    "cri": "CRi",
    "pr": "PR",
    "sd": "SD",
    "pd": "PD",
    "nr": "NR",
    "ne": "NE",
}
"""Accepted best-response codes (lower-case key -> canonical spelling)."""

GRADE_RANGES: dict[str, tuple[int, int, str]] = {
    "crs_grade": (0, 5, "ASTCT consensus grade 0-5"),
    "icans_grade": (0, 5, "ASTCT consensus grade 0-5"),
    "agvhd_grade": (0, 4, "acute GVHD grade 0-4"),
}

FLAG_COLUMNS = ("mrd_negative", "extramedullary_only", "pet_cmr", "death", "efs_event")
TIME_COLUMNS = ("os_days", "efs_days", "response_day")
NUMBER_COLUMNS = ("age", "dose_per_kg")
TEXT_COLUMNS = ("sex", "disease", "target", "costim", "lymphodepletion", "cause_of_death")

KNOWN_COLUMNS: tuple[str, ...] = (
    "patient",
    "age",
    "sex",
    "disease",
    "target",
    "costim",
    "dose_per_kg",
    "lymphodepletion",
    "best_response",
    "mrd_negative",
    "response_day",
    "extramedullary_only",
    "pet_cmr",
    "crs_grade",
    "icans_grade",
    "agvhd_grade",
    "os_days",
    "death",
    "efs_days",
    "efs_event",
    "cause_of_death",
)

_MISSING_TEXT = {"", "na", "n/a", "nan", "."}  # spreadsheet spellings of an empty cell
_GRADE_RE = re.compile(r"^(?:g|grade)?\s*(\d+(?:\.0+)?)$")


@dataclass
class Cohort:
    """A validated cohort table.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per patient with canonical (lower-case) column names: ``patient`` (str),
        ``best_response`` (canonical code or NA), grades as nullable ``Int64``, flags as
        nullable ``boolean``, times and numbers as float (days; years; cells/kg as given).
        Unknown columns are kept unchanged. ``source_row`` holds the 1-based data row.
    source : str
        File path or ``"<DataFrame>"``.
    columns : dict
        Canonical name -> column name as written in the input, for present columns.
    """

    table: pd.DataFrame
    source: str
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.table)

    def has(self, *names: str) -> bool:
        """True when every canonical column in ``names`` is present in the input."""
        return all(name in self.columns for name in names)

    def missing(self, *names: str) -> list[str]:
        """The canonical columns among ``names`` that are absent from the input."""
        return [name for name in names if name not in self.columns]

    def subset(self, mask: np.ndarray | pd.Series) -> Cohort:
        """The cohort restricted to the rows where ``mask`` is true (a subgroup)."""
        mask = np.asarray(mask, dtype=bool)
        return Cohort(self.table.loc[mask].reset_index(drop=True), self.source, dict(self.columns))


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _MISSING_TEXT


def _parse_flag(value: Any, err) -> bool | None:
    if _is_missing(value):
        return None
    flag = flag_value(value)  # the kinetics reader's rule (also 1.0000E+00)
    if flag is not None:
        return flag
    err(f"flag {value!r} not understood; expected 1/0, yes/no, y/n or true/false")
    return None  # pragma: no cover (err raises)


def _parse_grade(value: Any, low: int, high: int, scale: str, err) -> int | None:
    if _is_missing(value):
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        grade = int(value)
    elif isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            err(f"grade {value!r} is not a whole number; expected {scale}")
        grade = int(value)
    else:
        text = str(value).strip().lower()
        if text in {"none", "no"}:
            return 0
        m = _GRADE_RE.match(text)
        if m is None:
            err(f"unknown grade code {value!r}; expected {scale} (e.g. 0, 2, G2)")
        grade = int(float(m.group(1)))
    if not low <= grade <= high:
        err(f"grade {grade} outside {scale}")
    return grade


def _parse_number(value: Any, what: str, err) -> float:
    if _is_missing(value):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        err(f"{what} {value!r} is not a number")
    if not math.isfinite(number):
        err(f"{what} {value!r} is not a finite number")
    if number < 0:
        err(f"negative {what} {number:g}; expected a value >= 0")
    return number


def read_cohort(
    source: str | Path | pd.DataFrame,
    *,
    mapping: dict[str, str] | None = None,
) -> Cohort:
    """Read and validate a cohort table (one row per patient).

    Parameters
    ----------
    source : str, Path or DataFrame
        Table file (CSV, semicolon-, tab- or whitespace-separated text, or Excel ``.xlsx``;
        see :mod:`cartkinetics.tables`) or a DataFrame.
    mapping : dict, optional
        Canonical column name -> column name in the input, for inputs whose headers
        differ from the canonical names (e.g. ``{"os_days": "OS (days)"}``).

    Returns
    -------
    Cohort
        The validated table; see :class:`Cohort`.

    Raises
    ------
    CartKineticsError
        Naming source, 1-based row and column: missing ``patient`` column, duplicate or
        empty patient ids, unknown response or grade codes, grades outside 0-5
        (CRS/ICANS) or 0-4 (aGVHD), negative times, an event flag without a time, a time
        without its event flag, EFS longer than OS, a death that is not an EFS event.
    """
    from cartkinetics.tables import read_table

    # CSV, semicolon/tab/whitespace text or Excel, as every reader of the library
    loaded = read_table(source)
    raw, src, row_numbers = loaded.frame.reset_index(drop=True), loaded.source, loaded.rows

    # canonical name -> written name
    written: dict[str, str] = {}
    by_lower: dict[str, str] = {}
    for col in raw.columns:
        key = str(col).strip().lower()
        if key in by_lower:
            raise CartKineticsError(
                f"column appears twice (also as '{by_lower[key]}'; names are case-insensitive)",
                source=src,
                column=str(col),
            )
        by_lower[key] = str(col)
    if mapping:
        for canon, col in mapping.items():
            if canon not in KNOWN_COLUMNS:
                raise CartKineticsError(
                    f"mapping names unknown cohort column '{canon}'; "
                    f"known: {', '.join(KNOWN_COLUMNS)}",
                    source=src,
                )
            if str(col).strip().lower() not in by_lower:
                raise CartKineticsError(f"mapped column '{col}' not in the table", source=src)
            written[canon] = by_lower[str(col).strip().lower()]
    for canon in KNOWN_COLUMNS:
        if canon not in written and canon in by_lower:
            written[canon] = by_lower[canon]
    if "patient" not in written:
        raise CartKineticsError(
            "no 'patient' column; the cohort table needs one row per patient with a patient id",
            source=src,
        )

    n = len(raw)
    out: dict[str, Any] = {}
    rows = np.asarray(row_numbers, dtype=int)

    def getter(canon: str):
        col = written[canon]
        return col, raw[col].tolist()

    def make_err(col: str, row: int):
        def err(message: str):
            # row: 1-based position in the table -> the file's data-row number
            raise CartKineticsError(message, source=src, row=int(rows[row - 1]), column=col)

        return err

    # patient ids
    col, values = getter("patient")
    ids = []
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        if _is_missing(v):
            make_err(col, i + 1)("empty patient id")
        pid = patient_id(v)  # the kinetics reader's rule, so that the two tables join
        if pid in seen:
            make_err(col, i + 1)(f"patient '{pid}' already on row {seen[pid]}; one row per patient")
        seen[pid] = i + 1
        ids.append(pid)
    out["patient"] = ids

    if "best_response" in written:
        col, values = getter("best_response")
        codes = []
        for i, v in enumerate(values):
            if _is_missing(v):
                make_err(col, i + 1)(
                    "missing best response; write NE for a patient not evaluable"
                )
            key = str(v).strip().lower()
            if key not in RESPONSE_CODES:
                make_err(col, i + 1)(
                    f"unknown response code {v!r}; expected one of CR, CRi, PR, SD, PD, NR, NE"
                )
            codes.append(RESPONSE_CODES[key])
        out["best_response"] = pd.array(codes, dtype="string")

    for canon, (low, high, scale) in GRADE_RANGES.items():
        if canon not in written:
            continue
        col, values = getter(canon)
        grades = []
        for i, v in enumerate(values):
            g = _parse_grade(v, low, high, scale, make_err(col, i + 1))
            if g is None:
                make_err(col, i + 1)(f"missing grade; write 0 when there was none ({scale})")
            grades.append(g)
        out[canon] = pd.array(grades, dtype="Int64")

    for canon in FLAG_COLUMNS:
        if canon in written:
            col, values = getter(canon)
            flags = [_parse_flag(v, make_err(col, i + 1)) for i, v in enumerate(values)]
            out[canon] = pd.array(flags, dtype="boolean")

    for canon in TIME_COLUMNS:
        if canon in written:
            col, values = getter(canon)
            out[canon] = np.array(
                [_parse_number(v, "time (days)", make_err(col, i + 1))
                 for i, v in enumerate(values)]
            )
    for canon in NUMBER_COLUMNS:
        if canon in written:
            col, values = getter(canon)
            out[canon] = np.array(
                [_parse_number(v, canon, make_err(col, i + 1)) for i, v in enumerate(values)]
            )
    for canon in TEXT_COLUMNS:
        if canon in written:
            col, values = getter(canon)
            out[canon] = pd.array(
                [None if _is_missing(v) else str(v).strip() for v in values], dtype="string"
            )

    # time/event pairs: both present or the pair is unusable
    for time_col, event_col in (("os_days", "death"), ("efs_days", "efs_event")):
        if time_col in out and event_col in out:
            for i in range(n):
                t, e = out[time_col][i], out[event_col][i]
                if e is pd.NA and math.isnan(t):
                    make_err(written[time_col], i + 1)(
                        f"missing follow-up time and '{written[event_col]}' flag"
                    )
                if e is not pd.NA and bool(e) and math.isnan(t):
                    make_err(written[time_col], i + 1)(
                        f"event flag '{written[event_col]}' is set but the time is missing"
                    )
                if math.isnan(t):
                    make_err(written[time_col], i + 1)(
                        "missing follow-up time (days to the event or to the last contact)"
                    )
                if e is pd.NA:
                    make_err(written[event_col], i + 1)(
                        f"missing event flag for time {t:g}; 1 = event, 0 = censored"
                    )
        elif event_col in out:
            # a flag column without its time column: every set flag lacks a time
            for i in range(n):
                e = out[event_col][i]
                if e is not pd.NA and bool(e):
                    make_err(written[event_col], i + 1)(
                        f"event flag is set but the table has no '{time_col}' column"
                    )

    if "os_days" in out and "efs_days" in out:
        for i in range(n):
            os_t, efs_t = out["os_days"][i], out["efs_days"][i]
            if efs_t > os_t:
                make_err(written["efs_days"], i + 1)(
                    f"EFS {efs_t:g} days is longer than OS {os_t:g} days"
                )
    if "death" in out and "efs_event" in out:
        for i in range(n):
            if bool(out["death"][i]) and not bool(out["efs_event"][i]):
                make_err(written["efs_event"], i + 1)(
                    "patient died but efs_event is 0; death is an event-free-survival event"
                )
            if bool(out["death"][i]) and "efs_days" in out and "os_days" in out:
                if out["efs_days"][i] > out["os_days"][i]:  # pragma: no cover (checked above)
                    make_err(written["efs_days"], i + 1)("EFS after death")
    if "response_day" in out and "os_days" in out:
        for i in range(n):
            if out["response_day"][i] > out["os_days"][i]:
                make_err(written["response_day"], i + 1)(
                    f"response on day {out['response_day'][i]:g} is after the end of follow-up "
                    f"(os_days {out['os_days'][i]:g})"
                )

    table = pd.DataFrame(out)
    used = set(written.values())
    for col in raw.columns:
        canon = str(col).strip().lower()
        if col in used or canon in table.columns:
            continue
        table[canon] = raw[col].to_numpy()  # unknown column: kept for subgroups
    table["source_row"] = rows
    return Cohort(table=table, source=src, columns=written)
