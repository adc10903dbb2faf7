"""Real data: the 32 B-ALL patients of Liu et al. 2022 (Monolix layout) through the reader.

The files stay in ../shared/data/liu2022-ball (no licence to copy them); skipped when absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cartkinetics.data import KineticsData, read_kinetics
from cartkinetics.noncompartmental import nca

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022-ball"
GROUPS = {"CR": 14, "PR": 7, "NR": 7, "NegR": 4}

pytestmark = pytest.mark.skipif(not LIU.is_dir(), reason="../shared/data/liu2022-ball absent")

MAPPING = {
    "columns": {"TIME": "time", "DV": "y"},
    "filter": {"y_ID": 1},  # 1 = CAR-T; 2, 3 = leukaemic burden
    "blq_values": {"0.2": 0.2},  # the authors' "undetectable"
    "assay": "qpcr",
}


def _load() -> KineticsData:
    return KineticsData.concat(
        read_kinetics(LIU / f"Data_{g}.csv", mapping=MAPPING, patient_prefix=f"{g}-")
        for g in GROUPS
    )


def test_loads_all_rows_with_reasons():
    data = _load()
    assert data.layout == "nonmem"
    raw = pd.concat([pd.read_csv(LIU / f"Data_{g}.csv") for g in GROUPS], ignore_index=True)
    s = data.summary()
    assert s["rows"] == len(raw)  # nothing dropped silently
    car = raw[raw["y_ID"] == 1]
    assert s["reasons"]["excluded"]["filtered out (y_ID not in [1])"] == (raw["y_ID"] != 1).sum()
    assert (
        s["reasons"]["excluded"]["day 0 level 0: before expansion"]
        == ((car["time"] == 0) & (car["y"] == 0)).sum()
    )
    assert s["censored"] == (car["y"] == 0.2).sum()
    assert s["used"] == ((car["y"] != 0.2) & ~((car["time"] == 0) & (car["y"] == 0))).sum()
    assert s["patients"] == 32 and s["series"] == 32


def test_nca_runs_on_all_32_patients():
    data = _load()
    table = nca(data).to_frame()
    assert len(table) == 32
    assert sorted(
        table["patient"].str.split("-").str[0].value_counts().to_dict().items()
    ) == sorted(GROUPS.items())
    assert np.isfinite(table["cmax"]).all() and (table["cmax"] > 0).all()
    assert (table["auc_0_last"] > 0).all()
    # CR patient 1, read off the file: peak 4200 at day 14, last value 5.21 at day 99
    cr1 = table.set_index("patient").loc["CR-1"]
    assert (cr1["cmax"], cr1["tmax"]) == (4200.0, 14.0)
    assert (cr1["clast"], cr1["tlast"]) == (5.21, 99.0)
    assert cr1["n_obs"] == 9 and cr1["n_blq"] == 0
    assert table["n_blq"].sum() == data.summary()["censored"]
