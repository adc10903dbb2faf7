"""Safety endpoints: CRS and ICANS (ASTCT) and acute GVHD grade distributions, deaths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cartkinetics.endpoints.cohort import GRADE_RANGES, Cohort

SAFETY_LABELS: dict[str, str] = {
    "crs_grade": "CRS (ASTCT)",
    "icans_grade": "ICANS (ASTCT)",
    "agvhd_grade": "Acute GVHD",
}
SAFETY_KEYS: dict[str, str] = {"crs_grade": "crs", "icans_grade": "icans", "agvhd_grade": "agvhd"}


def grade_distribution(cohort: Cohort, column: str) -> dict[str, int]:
    """Counts per grade, every grade of the scale listed (0-5 for CRS/ICANS, 0-4 aGVHD).

    Returns
    -------
    dict
        ``str(grade) -> count``.
    """
    low, high, _ = GRADE_RANGES[column]
    grades = cohort.table[column].astype(int).to_numpy()
    return {str(g): int(np.sum(grades == g)) for g in range(low, high + 1)}


def safety_endpoints(cohort: Cohort) -> tuple[dict[str, dict[str, int]], list[dict]]:
    """Grade distributions for the toxicities present in the table.

    Returns
    -------
    distributions : dict
        ``crs``, ``icans``, ``agvhd`` -> ``{grade: count}``.
    omitted : list of dict
        ``{"endpoint", "reason"}`` for absent columns.
    """
    out: dict[str, dict[str, int]] = {}
    omitted: list[dict] = []
    for column, key in SAFETY_KEYS.items():
        if cohort.has(column):
            out[key] = grade_distribution(cohort, column)
        else:
            omitted.append({"endpoint": key, "reason": f"no '{column}' column"})
    return out, omitted


def safety_table(cohort: Cohort) -> pd.DataFrame:
    """Tidy safety table: event, grade category, n, percent of all patients.

    Rows per toxicity: each grade >= 1, "any grade" and "grade >= 3".
    """
    n = cohort.n
    rows = []
    for column, label in SAFETY_LABELS.items():
        if not cohort.has(column):
            continue
        low, high, scale = GRADE_RANGES[column]
        grades = cohort.table[column].astype(int).to_numpy()
        for g in range(1, high + 1):
            rows.append((label, f"grade {g}", int(np.sum(grades == g))))
        rows.append((label, "any grade", int(np.sum(grades >= 1))))
        rows.append((label, "grade >= 3", int(np.sum(grades >= 3))))
    table = pd.DataFrame(rows, columns=["event", "grade", "n"])
    table["percent"] = 100.0 * table["n"] / n if n else np.nan
    return table


def deaths(cohort: Cohort) -> dict | None:
    """Deaths, their days and causes; None when the table has no ``death`` column.

    Returns
    -------
    dict
        ``n`` deaths, ``percent``, ``patients`` list of ``{"patient", "day", "cause"}``,
        ``causes`` ``{cause: count}`` ("cause not recorded" where it is missing).
    """
    if not cohort.has("death"):
        return None
    table = cohort.table
    died = table["death"].fillna(False).astype(bool).to_numpy()
    patients = []
    causes: dict[str, int] = {}
    for _, row in table.loc[died].iterrows():
        cause = row.get("cause_of_death") if cohort.has("cause_of_death") else None
        cause = "cause not recorded" if cause is None or pd.isna(cause) else str(cause)
        day = row.get("os_days") if cohort.has("os_days") else None
        patients.append(
            {"patient": row["patient"], "day": None if day is None else float(day), "cause": cause}
        )
        causes[cause] = causes.get(cause, 0) + 1
    n = int(died.sum())
    return {
        "n": n,
        "percent": 100.0 * n / cohort.n if cohort.n else None,
        "patients": patients,
        "causes": causes,
    }
