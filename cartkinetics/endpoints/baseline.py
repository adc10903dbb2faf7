"""Baseline characteristics ("Table 1"): continuous as median (range), categories as counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cartkinetics.endpoints.cohort import Cohort

CONTINUOUS: dict[str, str] = {"age": "Age, years", "dose_per_kg": "Dose per kg"}
CATEGORICAL: dict[str, str] = {
    "sex": "Sex",
    "disease": "Disease",
    "target": "CAR target",
    "costim": "Costimulatory domain",
    "lymphodepletion": "Lymphodepletion",
}


def median_range(values: ArrayLike) -> dict | None:
    """``{"median", "min", "max", "n"}`` of the non-missing values; None if there are none."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return None
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}


def baseline_summary(cohort: Cohort) -> dict:
    """Continuous characteristics (median, range) and category counts.

    Returns
    -------
    dict
        ``age`` and ``dose_per_kg`` -> ``{"median", "min", "max", "n"}`` (or None when the
        column is absent or empty); ``categories`` -> ``{column: {level: count}}`` in
        descending count order ("missing" for empty cells).
    """
    out: dict = {}
    for col in CONTINUOUS:
        out[col] = median_range(cohort.table[col]) if cohort.has(col) else None
    cats: dict[str, dict[str, int]] = {}
    for col in CATEGORICAL:
        if cohort.has(col):
            s = cohort.table[col].astype("string").fillna("missing")
            counts = s.value_counts(sort=False)
            # most frequent first, ties in order of first appearance
            order = sorted(counts.index, key=lambda lev: (-counts[lev], list(s).index(lev)))
            cats[col] = {str(lev): int(counts[lev]) for lev in order}
    out["categories"] = cats
    return out


def dose_text(s: dict) -> str:
    """Median (range) of the dose per kg in units of 10^6 CAR-T cells/kg.

    Doses written in cells/kg (median >= 10^4) are divided by 10^6; smaller numbers are
    taken to be in 10^6 cells/kg already (the way papers tabulate them).
    """
    scale = 1e6 if s["median"] >= 1e4 else 1.0
    lo, med, hi = (s[k] / scale for k in ("min", "median", "max"))
    return f"{med:.1f} (range {lo:.1f}-{hi:.1f}) x10^6 CAR-T cells/kg"


def baseline_table(cohort: Cohort) -> pd.DataFrame:
    """Table 1: characteristic, level, value ("34 (18-67)" or "5 (71.4%)")."""
    summary = baseline_summary(cohort)
    rows = [("Patients, n", "", str(cohort.n))]
    for col, label in CONTINUOUS.items():
        s = summary[col]
        if s is None:
            continue
        if col == "dose_per_kg":
            med, rest = dose_text(s).split(" (range ")
            rng, unit = rest.split(") ")
            rows.append((f"{label}, {unit}, median (range)", "", f"{med} ({rng})"))
            continue
        rows.append((f"{label}, median (range)", "",
                     f"{s['median']:g} ({s['min']:g}-{s['max']:g})"))
    for col, levels in summary["categories"].items():
        for level, count in levels.items():
            pct = 100.0 * count / cohort.n
            rows.append((CATEGORICAL[col], level, f"{count} ({pct:.1f}%)"))
    return pd.DataFrame(rows, columns=["characteristic", "level", "value"])
