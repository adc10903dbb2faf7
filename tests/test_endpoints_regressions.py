"""Regressions found in review (QA): each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cartkinetics.endpoints import cohort_endpoints, kaplan_meier, landmark_estimates


def test_landmark_after_the_last_death_is_zero_not_missing():
    # every patient died by day 100: S(365) = 0 (lifelines and R survival with extend=TRUE),
    # the report used to call it "not estimable"
    from lifelines import KaplanMeierFitter

    t, e = np.array([50.0, 80.0, 100.0]), np.array([1, 1, 1], bool)
    km = kaplan_meier(t, e)
    lm = landmark_estimates(km, [365])["365"]
    ref = KaplanMeierFitter().fit(t, e).survival_function_at_times([365]).iloc[0]
    assert lm["estimate"] == ref == 0.0
    assert lm["ci_low"] == 0.0 and lm["ci_high"] == 0.0 and lm["at_risk"] == 0
    table = pd.DataFrame({"patient": ["A", "B", "C"], "os_days": t, "death": [1, 1, 1]})
    assert "not estimable" not in cohort_endpoints(table).summary()


def test_landmark_after_the_last_censoring_stays_undefined():
    # the curve is still above 0 when follow-up ends: beyond it nothing is known
    km = kaplan_meier([50.0, 80.0, 100.0], [1, 0, 0])
    lm = landmark_estimates(km, [365])["365"]
    assert lm["estimate"] is None and "beyond the last follow-up" in lm["note"]


def test_tmax_interval_is_reported_with_its_hodges_lehmann_estimate():
    # the CI is that of the Hodges-Lehmann pseudo-median; it used to be printed next to the
    # median difference (-3 d, sitting on the interval's edge) as if it were its CI
    from cartkinetics import example

    res = cohort_endpoints(example.patients_path(), kinetics=example.kinetics_path())
    tmax = res.kinetics["tmax"]
    assert tmax["median_difference"] == -3.0 and tmax["hodges_lehmann"] == -5.0
    assert "Hodges-Lehmann estimate -5 days, 95% CI -8.5 to -3 days" in res.summary()
    row = res.tables()["kinetics"].set_index("metric").loc["tmax"]
    assert row["value"] == -5.0 and "Hodges-Lehmann" in row["estimate"]


def test_cohort_ids_follow_the_kinetics_reader():
    # "1.0" in a cohort CSV stayed "1.0" while the kinetics reader makes it "1": the tables
    # did not join
    from cartkinetics.data import patient_id
    from cartkinetics.endpoints import read_cohort

    raw = pd.DataFrame({"patient": ["1.0", "02", 3.0], "os_days": [10, 20, 30], "death": 0})
    ids = list(read_cohort(raw).table["patient"])
    assert ids == ["1", "02", "3"] == [patient_id(v) for v in raw["patient"]]


def test_summary_says_when_truncated_auc_pairs_are_left_out(tmp_path):
    rows = ["patient,infusion,day,value,lloq,assay"]
    for p, stop in (("P1", 28), ("P2", 28), ("P3", 14)):
        for inf in (1, 2):
            for d in (1, 7, 14, 28):
                if inf == 2 and d > stop:
                    continue
                rows.append(f"{p},{inf},{d},{(1000 if d == 7 else 100) * inf},1,qpcr")
    kin = tmp_path / "kin.csv"
    kin.write_text("\n".join(rows) + "\n")
    cohort = pd.DataFrame({"patient": ["P1", "P2", "P3"], "os_days": [100, 200, 300],
                           "death": [0, 0, 0]})
    res = cohort_endpoints(cohort, kinetics=kin)
    assert res.kinetics["auc_0_28"]["n"] == 2
    assert "1 pair(s) left out: AUC0-28 truncated" in res.summary()
