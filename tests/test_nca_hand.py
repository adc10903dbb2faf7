"""NCA against values computed by hand (closed-form trapezoids written out here)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cartkinetics.data import Series, read_kinetics
from cartkinetics.noncompartmental import JSON_KEYS, NCA_COLUMNS, nca, nca_records, nca_series


def _series(day, value, blq, lloq=50.0):
    day = np.asarray(day, float)
    return Series(
        "P",
        1,
        "qpcr",
        "copies/ug",
        day,
        np.asarray(value, float),
        np.full(day.size, lloq),
        np.asarray(blq, bool),
    )


def test_blq_before_counts_zero_and_later_blq_ends_auc():
    # day 0 BLQ -> 0; first BLQ after the first value (day 14) ends the AUC at day 7;
    # day 28 is quantifiable again: it gives Clast/Tlast but no area
    s = _series([0, 1, 4, 7, 14, 28], [50, 100, 1000, 400, 50, 80], [1, 0, 0, 0, 1, 0])
    r = nca_series(s)
    by_hand = 0.5 * 100 * 1 + 0.5 * (100 + 1000) * 3 + (1000 - 400) * 3 / math.log(1000 / 400)
    assert r["auc_0_last"] == pytest.approx(by_hand, rel=1e-12)
    assert r["auc_end"] == 7.0
    assert r["auc_0_28"] == pytest.approx(by_hand, rel=1e-12)
    assert r["auc_0_28_truncated"] is True
    assert (r["cmax"], r["tmax"]) == (1000.0, 4.0)
    assert (r["clast"], r["tlast"]) == (80.0, 28.0)
    assert (r["n_obs"], r["n_blq"]) == (6, 2)
    assert "ends the AUC" in r["note"] and "truncated" in r["note"]
    assert "BLQ before the first quantifiable value = 0" in r["blq_rule"]


def test_auc_0_28_interpolated_on_log_down_segment():
    s = _series([0, 7, 14, 21, 35], [50, 2000, 800, 400, 100], [1, 0, 0, 0, 0])
    r = nca_series(s)
    up = 0.5 * 2000 * 7
    d1 = (2000 - 800) * 7 / math.log(2000 / 800)
    d2 = (800 - 400) * 7 / math.log(2)
    c28 = 400 * (100 / 400) ** (7 / 14)  # log-linear interpolation at day 28
    assert c28 == pytest.approx(200.0)
    d3 = (400 - c28) * 7 / math.log(400 / c28)
    assert r["auc_0_28"] == pytest.approx(up + d1 + d2 + d3, rel=1e-12)
    assert r["auc_0_28_truncated"] is False
    d4 = (400 - 100) * 14 / math.log(4)
    assert r["auc_0_last"] == pytest.approx(up + d1 + d2 + d4, rel=1e-12)
    assert (r["clast"], r["tlast"], r["auc_end"]) == (100.0, 35.0, 35.0)
    assert r["note"] == ""


def test_no_day0_sample_starts_at_zero():
    s = _series([2, 5], [10, 20], [0, 0], lloq=np.nan)
    r = nca_series(s)
    assert r["auc_0_last"] == pytest.approx(0.5 * 10 * 2 + 0.5 * 30 * 3)
    assert r["auc_0_28_truncated"] is True and r["auc_end"] == 5.0


def test_series_ending_before_28_is_truncated_not_extrapolated():
    s = _series([0, 7, 14, 21], [50, 900, 300, 100], [1, 0, 0, 0])
    r = nca_series(s)
    assert r["auc_0_28"] == r["auc_0_last"]
    assert r["auc_0_28_truncated"] is True and r["auc_end"] == 21.0


def test_all_blq():
    r = nca_series(_series([0, 7, 14], [50, 50, 50], [1, 1, 1]))
    assert math.isnan(r["cmax"]) and math.isnan(r["tmax"]) and math.isnan(r["clast"])
    assert r["auc_0_28"] == 0.0 and r["auc_0_last"] == 0.0
    assert r["n_blq"] == 3 and r["note"] == "no quantifiable value"


def test_tmax_is_first_occurrence_of_peak():
    r = nca_series(_series([1, 4, 7], [100, 500, 500], [0, 0, 0]))
    assert r["tmax"] == 4.0


def test_auc_0_28_converges_to_stein_closed_form_integral():
    # dense sampling of the Stein 2019 closed form: log-down trapezoids -> exact integral
    tmax, cmax, a, b, fb, fx = 9.3, 24000.0, 0.16, 0.0032, 0.0079, 3900.0
    rho = math.log(fx) / tmax
    t = np.unique(np.concatenate([np.linspace(0, 28, 2801), [tmax]]))
    c = np.where(
        t < tmax,
        cmax / fx * np.exp(rho * t),
        cmax * ((1 - fb) * np.exp(-a * (t - tmax)) + fb * np.exp(-b * (t - tmax))),
    )
    exact = (cmax - cmax / fx) / rho + cmax * (
        (1 - fb) * (1 - math.exp(-a * (28 - tmax))) / a + fb * (1 - math.exp(-b * (28 - tmax))) / b
    )
    r = nca_series(_series(t, c, np.zeros(t.size, bool), lloq=np.nan))
    assert r["auc_0_28"] == pytest.approx(exact, rel=1e-5)
    assert r["cmax"] == pytest.approx(cmax)


def test_nca_table_from_file(tmp_path):
    p = tmp_path / "k.csv"
    p.write_text(
        "patient,infusion,day,value,lloq,assay\n"
        "A,1,0,0,50,qpcr\nA,1,7,1000,50,qpcr\nA,1,14,500,50,qpcr\nA,1,28,BLQ,50,qpcr\n"
        "A,2,0,0,50,qpcr\nA,2,7,4000,50,qpcr\nA,2,28,250,50,qpcr\n"
    )
    t = nca(p)
    assert list(t.columns) == NCA_COLUMNS
    assert t[["patient", "infusion"]].values.tolist() == [["A", 1], ["A", 2]]
    a1 = 0.5 * 1000 * 7 + 500 * 7 / math.log(2)  # day-0 zero excluded, curve starts at 0
    assert t.loc[0, "auc_0_last"] == pytest.approx(a1)
    assert t.loc[0, "auc_0_28_truncated"]
    a2 = 0.5 * 4000 * 7 + (4000 - 250) * 21 / math.log(16)
    assert t.loc[1, "auc_0_28"] == pytest.approx(a2)
    recs = nca_records(t)
    assert all(tuple(r) == JSON_KEYS for r in recs)
    assert recs[0]["n_blq"] == 1 and isinstance(recs[0]["infusion"], int)


def test_nca_accepts_dataframe_and_series_list():
    df = pd.DataFrame({"patient": ["A"] * 3, "day": [1, 7, 28], "value": [10.0, 80.0, 20.0]})
    t1 = nca(df, assay="qpcr")
    d = read_kinetics(df, assay="qpcr")
    t2 = nca(d.series())
    pd.testing.assert_frame_equal(t1, t2)
