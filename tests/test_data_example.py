"""The bundled SYNTHETIC example matches the study's published summary and regenerates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cartkinetics import example
from cartkinetics.compare import compare_infusions
from cartkinetics.noncompartmental import nca

ROOT = Path(__file__).resolve().parents[1]
ISSUE7_COLUMNS = [
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
]


def test_files_are_package_data_and_labelled_synthetic():
    for p in (example.kinetics_path(), example.patients_path(), example.truth_path()):
        assert p.is_file()
    readme = (example.kinetics_path().parent / "README.md").read_text()
    assert "SYNTHETIC" in readme and "not patient data" in readme


def test_patient_table_matches_study_summary():
    t = pd.read_csv(example.patients_path())
    assert list(t.columns) == ISSUE7_COLUMNS + ["weight_kg"]
    assert len(t) == 7
    assert t["disease"].value_counts().to_dict() == {"B-ALL": 5, "T-ALL": 1, "pPCL": 1}
    assert t.groupby("disease")["target"].agg(set).to_dict() == {
        "B-ALL": {"CD19"},
        "T-ALL": {"CD7"},
        "pPCL": {"BCMA"},
    }
    assert set(t["costim"]) == {"4-1BB"} and set(t["lymphodepletion"]) == {"FluCy"}
    assert (t["age"].median(), t["age"].min(), t["age"].max()) == (34, 18, 67)
    assert (t["dose_per_kg"].median(), t["dose_per_kg"].min(), t["dose_per_kg"].max()) == (
        3.5e6,
        2.0e6,
        5.0e6,
    )
    assert ((t["best_response"] == "CR") & (t["mrd_negative"] == 1)).sum() == 6
    assert (t["response_day"] <= 30).all()
    emd = t[t["extramedullary_only"] == 1]
    assert len(emd) == 3 and (emd["pet_cmr"] == 1).all()
    assert t["crs_grade"].value_counts().to_dict() == {2: 4, 1: 3}
    assert (t["icans_grade"] == 0).all()
    assert (t["agvhd_grade"] == 3).sum() == 1 and t["agvhd_grade"].max() == 3
    dead = t[t["death"] == 1]
    assert len(dead) == 1 and dead["os_days"].item() == 70
    assert "GVHD" in dead["cause_of_death"].item() and dead["agvhd_grade"].item() == 3
    assert (t["efs_event"].sum(), t["efs_days"].tolist()) == (1, t["os_days"].tolist())
    fu = t["os_days"]
    assert (fu.median(), fu.min(), fu.max()) == (540, 70, 1290)
    # 2-year OS by Kaplan-Meier: the only event (day 70) among 7 -> 6/7
    at_risk = (fu >= 70).sum()
    assert 1 - 1 / at_risk == pytest.approx(6 / 7)


def test_kinetics_match_study():
    data = example.load()
    s = data.summary()
    assert s["patients"] == 7 and s["series"] == 14 and s["excluded"] == 0
    obs = data.observations
    assert set(obs["assay"]) == {"qpcr"} and set(obs["lloq"]) == {50.0}
    assert (obs.loc[obs["blq"], "value"] == 50.0).all()
    assert (obs.loc[~obs["blq"], "value"] >= 50.0).all()
    # schedule: days 0, 1, 4, 7, 10 or 11, 14, 21, 28, then months while followed
    allowed = {0, 1, 4, 7, 10, 11, 14, 21, 28, 60, 90, 180, 270, 365}
    assert set(obs["day"]) <= allowed
    follow = data.patients.set_index("patient")["os_days"]
    second = obs[obs["infusion"] == 2].groupby("patient")["day"].max()
    assert (second <= follow.loc[second.index]).all()
    r = compare_infusions(nca(data))
    assert r["n_pairs"] == 7
    assert (r["tmax"]["median_first"], r["tmax"]["median_second"]) == (14.0, 11.0)
    assert (r["pairs"]["tmax_difference"] < 0).all()
    assert r["tmax"]["p_value"] == 2 / 128
    assert r["cmax"]["ratio_gm"] > 1.5 and r["cmax"]["p_value"] < 0.05


def test_truth_is_stein2019_parameters():
    from cartkinetics import models

    truth = pd.read_csv(example.truth_path())
    m = models.get("stein2019")
    assert list(truth.columns) == ["patient", "infusion", *m.param_names]
    assert len(truth) == 14
    # patient-level random effects are shared between infusions except Cmax and Tmax
    for _, g in truth.groupby("patient"):
        for p in ("foldx", "alpha", "fb", "beta"):
            assert g[p].nunique() == 1
    assert np.all(truth["fb"].between(0, 1))


@pytest.mark.slow
def test_generator_reproduces_the_files():
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_example.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "files match" in res.stdout
