"""NCA against values computed by hand (trapezoids written out here) and against an
independent re-derivation of PKNCA's half-life point selection with scipy.stats.linregress."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cartkinetics.data import read_kinetics
from cartkinetics.errors import CartKineticsError
from cartkinetics.noncompartmental import (
    JSON_KEYS,
    NCA_COLUMNS,
    NCAResult,
    nca,
    nca_records,
    nca_series,
    terminal_half_life,
)
from cartkinetics.testing import make_series


def _series(day, value, blq, lloq=50.0, unit="copies/ug"):
    return make_series(day, value, blq, lloq, unit=unit, censor=False)


def _log_down(c0, c1, dt):
    return (c0 - c1) * dt / math.log(c0 / c1)


def _lin(c0, c1, dt):
    return 0.5 * (c0 + c1) * dt


# the series of issue #16: infused cells detectable at day 0, BLQ at day 1, peak at day 10
ISSUE_DAYS = [0, 1, 4, 7, 10, 14, 21, 28]
ISSUE_VALUES = [3000, 50, 800, 6000, 20000, 9000, 2500, 900]
ISSUE_BLQ = [0, 1, 0, 0, 0, 0, 0, 0]


def test_detectable_at_day0_blq_at_day1_peak_day10_has_its_area():
    # the former rule ("the first BLQ after the first value ends the AUC") gave AUC0-28 = 0
    r = nca_series(_series(ISSUE_DAYS, ISSUE_VALUES, ISSUE_BLQ))
    # PKNCA default: the day-1 BLQ sits between quantifiable values -> dropped
    by_hand = (
        _log_down(3000, 800, 4)
        + _lin(800, 6000, 3)
        + _lin(6000, 20000, 3)
        + _log_down(20000, 9000, 4)
        + _log_down(9000, 2500, 7)
        + _log_down(2500, 900, 7)
    )
    assert by_hand == pytest.approx(157_444.203, rel=1e-8)  # copies*day/ug
    assert r["auc_0_28"] == pytest.approx(by_hand, rel=1e-12)
    assert r["auc_0_28"] > 0 and r["auc_0_28_truncated"] is False
    assert r["auc_0_last"] == pytest.approx(by_hand, rel=1e-12)
    assert (r["cmax"], r["tmax"]) == (20000.0, 10.0)
    assert (r["clast"], r["tlast"], r["persistence"]) == (900.0, 28.0, 28.0)
    assert r["persistence_censored"] is True  # still quantifiable at the last sample
    assert r["auc_0_84_truncated"] is True and r["auc_0_84"] == pytest.approx(by_hand)
    assert (r["unit"], r["auc_unit"]) == ("copies/ug", "copies*day/ug")
    assert "between quantifiable values dropped" in r["blq_rule"]
    # half-life: exactly 3 points after Tmax (days 14, 21, 28), against scipy
    ref = stats.linregress([14, 21, 28], np.log([9000, 2500, 900]))
    assert r["lambda_z"] == pytest.approx(-ref.slope, rel=1e-12)
    assert r["half_life"] == pytest.approx(math.log(2) / -ref.slope, rel=1e-12)
    assert (r["lambda_z_n"], r["lambda_z_start"], r["lambda_z_end"]) == (3, 14.0, 28.0)
    adj = 1 - (1 - ref.rvalue**2) * 2 / 1
    assert r["lambda_z_r2_adj"] == pytest.approx(adj, rel=1e-10)
    # doubling time: first local minimum after the fall from day 0 is the BLQ at day 1;
    # the rise uses the quantifiable days 4, 7, 10
    rise = stats.linregress([4, 7, 10], np.log([800, 6000, 20000]))
    assert r["doubling_time"] == pytest.approx(math.log(2) / rise.slope, rel=1e-12)
    assert (r["doubling_n"], r["doubling_start"], r["doubling_end"]) == (3, 4.0, 10.0)


def test_infusion_above_the_expansion_peak_is_not_cmax():
    # day 0 holds the infused cells (higher than the later expansion peak)
    values = [50000, *ISSUE_VALUES[1:]]
    r = nca_series(_series(ISSUE_DAYS, values, ISSUE_BLQ))
    assert (r["cmax"], r["tmax"]) == (20000.0, 10.0)
    # a series that only falls from day 0 has no expansion peak (not the infusion)
    r = nca_series(_series([0, 4, 7], [5000, 800, 100], [0, 0, 0]))
    assert math.isnan(r["cmax"]) and math.isnan(r["tmax"])
    assert "no expansion peak" in r["note"]
    assert r["auc_0_last"] == pytest.approx(_log_down(5000, 800, 4) + _log_down(800, 100, 3))
    # a series first sampled after day 0 that falls: the first sample is the observed peak
    r = nca_series(_series([3, 7, 14], [5000, 800, 100], [0, 0, 0]))
    assert (r["cmax"], r["tmax"]) == (5000.0, 3.0)


def test_blq_rules_by_position_pknca_phoenix_and_custom():
    days = [0, 1, 4, 7, 10, 14, 21]
    values = [500, 50, 800, 5000, 20000, 50, 900]
    blq = [0, 1, 0, 0, 0, 1, 0]
    s = _series(days, values, blq)
    rise = _lin(5000, 20000, 3) + _lin(800, 5000, 3)
    # PKNCA: both BLQ values lie between quantifiable values -> dropped
    pknca = _lin(500, 800, 4)
    pknca += rise + _log_down(20000, 900, 11)
    assert nca_series(s)["auc_0_last"] == pytest.approx(pknca, rel=1e-12)
    # Phoenix: BLQ before Tmax (day 1) = 0, after Tmax (day 14) missing
    phoenix = _lin(500, 0, 1) + _lin(0, 800, 3) + rise + _log_down(20000, 900, 11)
    r = nca_series(s, blq_rule="phoenix")
    assert r["auc_0_last"] == pytest.approx(phoenix, rel=1e-12)
    assert r["blq_rule"].startswith("phoenix: BLQ before Tmax = 0")
    # every BLQ as 0
    zero = _lin(500, 0, 1) + _lin(0, 800, 3) + rise + _lin(20000, 0, 4) + _lin(0, 900, 7)
    r = nca_series(s, blq_rule={"first": "keep", "middle": "zero", "last": "zero"})
    assert r["auc_0_last"] == pytest.approx(zero, rel=1e-12)
    # before the first quantifiable value: 0 (PKNCA) or dropped
    s2 = _series([1, 4, 7, 14], [50, 200, 1000, 300], [1, 0, 0, 0])
    keep = _lin(0, 0, 1) + _lin(0, 200, 3) + _lin(200, 1000, 3) + _log_down(1000, 300, 7)
    drop = _lin(0, 200, 4) + _lin(200, 1000, 3) + _log_down(1000, 300, 7)
    assert keep != drop
    assert nca_series(s2)["auc_0_last"] == pytest.approx(keep, rel=1e-12)
    custom = {"first": "drop", "middle": "drop", "last": "zero"}
    assert nca_series(s2, blq_rule=custom)["auc_0_last"] == pytest.approx(drop, rel=1e-12)
    with pytest.raises(CartKineticsError, match="unknown blq_rule"):
        nca_series(s2, blq_rule="winnonlin7")
    with pytest.raises(CartKineticsError, match="'zero'"):
        nca_series(s2, blq_rule={"first": "half", "middle": "drop", "last": "zero"})


def test_blq_after_the_last_value_counts_zero_into_auc_0_28():
    # PKNCA last = keep (0): the area to day 28 falls linearly to 0 at the BLQ sample
    s = _series([0, 7, 14, 21, 35], [0, 2000, 800, 400, 50], [1, 0, 0, 0, 1])
    r = nca_series(s)
    head = _lin(0, 2000, 7) + _log_down(2000, 800, 7) + _log_down(800, 400, 7)
    c28 = 400 * (1 - 7 / 14)  # linear interpolation towards the 0 at day 35
    assert r["auc_0_28"] == pytest.approx(head + _lin(400, c28, 7), rel=1e-12)
    assert r["auc_0_last"] == pytest.approx(head, rel=1e-12)  # AUClast stops at Tlast
    assert r["persistence"] == 21.0 and r["persistence_censored"] is False
    # Phoenix drops it: the profile ends at day 21 and AUC0-28 is a flagged lower bound
    r = nca_series(s, blq_rule="phoenix")
    assert r["auc_0_28"] == pytest.approx(head) and r["auc_0_28_truncated"] is True
    assert "truncated" in r["note"]


def test_auc_0_28_interpolated_on_log_down_segment():
    s = _series([0, 7, 14, 21, 35], [50, 2000, 800, 400, 100], [1, 0, 0, 0, 0])
    r = nca_series(s)
    c28 = 400 * (100 / 400) ** (7 / 14)  # log-linear interpolation at day 28
    assert c28 == pytest.approx(200.0)
    head = _lin(0, 2000, 7) + _log_down(2000, 800, 7) + _log_down(800, 400, 7)
    assert r["auc_0_28"] == pytest.approx(head + _log_down(400, c28, 7), rel=1e-12)
    assert r["auc_0_28_truncated"] is False
    assert r["auc_0_last"] == pytest.approx(head + _log_down(400, 100, 14), rel=1e-12)
    assert (r["clast"], r["tlast"]) == (100.0, 35.0)


def test_no_day0_sample_starts_at_zero_and_short_series_is_truncated():
    r = nca_series(_series([2, 5], [10, 20], [0, 0], lloq=np.nan))
    assert r["auc_0_last"] == pytest.approx(0.5 * 10 * 2 + 0.5 * 30 * 3)
    assert r["auc_0_28_truncated"] is True and r["auc_0_28"] == r["auc_0_last"]


def test_series_first_sampled_after_day_d_has_no_auc_0_d():
    # first sample at day 30: nothing was measured in [0, 28), so AUC0-28 is not estimable
    # (not the ramp from an assumed 0 at day 0, and not 0); AUC0-84 still is
    r = nca_series(_series([30, 40, 60], [5000, 2000, 800], [0, 0, 0], lloq=np.nan))
    assert math.isnan(r["auc_0_28"]) and r["auc_0_28_truncated"] is False
    assert "AUC0-28 not estimable: the first sample is at day 30" in r["note"]
    assert r["auc_0_84"] == pytest.approx(
        _lin(0, 5000, 30) + _log_down(5000, 2000, 10) + _log_down(2000, 800, 20), rel=1e-12)


def test_all_blq():
    r = nca_series(_series([0, 7, 14], [50, 50, 50], [1, 1, 1]))
    assert math.isnan(r["cmax"]) and math.isnan(r["tmax"]) and math.isnan(r["clast"])
    assert r["auc_0_28"] == 0.0 and r["auc_0_last"] == 0.0
    assert r["n_blq"] == 3 and r["note"] == "no quantifiable value"


def test_tmax_is_first_occurrence_of_peak():
    assert nca_series(_series([1, 4, 7], [100, 500, 500], [0, 0, 0]))["tmax"] == 4.0


def _pknca_selection(t, c, factor=1e-4, min_points=3):
    """PKNCA pk.calc.half.life written out independently with scipy.stats.linregress."""
    best = None
    cands = []
    for k in range(min_points, len(t) + 1):
        res = stats.linregress(t[-k:], np.log(c[-k:]))
        adj = 1 - (1 - res.rvalue**2) * (k - 1) / (k - 2)
        cands.append((k, -res.slope, adj))
    top = max(a for _, _, a in cands)
    ok = [x for x in cands if x[1] > 0 and x[2] > top - factor]
    best = max(ok, key=lambda x: x[0])
    return best


def test_half_life_selection_matches_pknca_rule():
    # PKNCA's own unit test: conc 1, 0.5, 0.25 at 0, 1, 2 with Tmax allowed -> half-life 1
    r = terminal_half_life(np.array([0.0, 1, 2]), np.array([1.0, 0.5, 0.25]), 0.0,
                           allow_tmax=True)
    assert r["half_life"] == pytest.approx(1.0, rel=1e-12) and r["lambda_z_n"] == 3
    # Tmax excluded by default: only two points left -> no half-life
    assert math.isnan(terminal_half_life(np.array([0.0, 1, 2]), np.array([1.0, .5, .25]),
                                         0.0)["half_life"])
    # a biphasic contraction: the selection takes the terminal phase
    t = np.array([14.0, 21, 28, 42, 60, 90, 120, 180])
    c = 2e4 * (0.97 * np.exp(-0.2 * (t - 10)) + 0.03 * np.exp(-0.01 * (t - 10)))
    c *= np.exp(np.random.default_rng(3).normal(0, 0.05, t.size))
    k, lz, adj = _pknca_selection(t, c)
    r = terminal_half_life(np.concatenate(([10.0], t)), np.concatenate(([2e4], c)), 10.0)
    assert (r["lambda_z_n"], r["lambda_z"]) == (k, pytest.approx(lz, rel=1e-10))
    assert r["lambda_z_r2_adj"] == pytest.approx(adj, rel=1e-10)
    assert r["lambda_z_end"] == 180.0 and r["lambda_z_start"] == t[-k]


def test_half_life_tie_rule_prefers_more_points():
    # exact mono-exponential: every set has adjusted R^2 = 1 -> the one with most points
    t = np.array([0.0, 7, 14, 21, 28, 42])
    c = 1e4 * np.exp(-0.05 * t)
    c[0] = 2e4  # the peak (excluded)
    r = terminal_half_life(t, c, 0.0)
    assert r["lambda_z_n"] == 5 and r["half_life"] == pytest.approx(math.log(2) / 0.05)
    # a kink before the last 3 points: adj R^2 of 3 points (1.0) beats 4 points by > 1e-4
    c2 = c.copy()
    c2[1] *= 3.0
    r2 = terminal_half_life(t, c2, 0.0)
    k, lz, _ = _pknca_selection(t[1:], c2[1:])
    assert r2["lambda_z_n"] == k == 4 and r2["lambda_z"] == pytest.approx(lz, rel=1e-10)
    # the factor decides: with a huge factor every set qualifies -> all 5 points
    r3 = terminal_half_life(t, c2, 0.0, adj_r2_factor=1.0)
    assert r3["lambda_z_n"] == 5


def test_doubling_time_of_an_exponential_rise():
    t = np.array([1.0, 4, 7, 10, 14, 21])
    c = np.where(t <= 10, 100 * 2 ** (t / 1.5), 100 * 2 ** (10 / 1.5) * np.exp(-0.2 * (t - 10)))
    r = nca_series(_series(t, c, np.zeros(t.size, bool)))
    assert r["doubling_time"] == pytest.approx(1.5, rel=1e-12)
    assert (r["doubling_n"], r["doubling_start"], r["doubling_end"]) == (4, 1.0, 10.0)


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
    assert r["doubling_time"] == pytest.approx(math.log(2) / rho, rel=1e-9)


def test_nca_table_from_file(tmp_path):
    p = tmp_path / "k.csv"
    p.write_text(
        "patient,infusion,day,value,lloq,assay\n"
        "A,1,0,0,50,qpcr\nA,1,7,1000,50,qpcr\nA,1,14,500,50,qpcr\nA,1,28,BLQ,50,qpcr\n"
        "A,2,0,0,50,qpcr\nA,2,7,4000,50,qpcr\nA,2,28,250,50,qpcr\n"
    )
    res = nca(p)
    t = res.to_frame()
    assert list(t.columns) == NCA_COLUMNS == list(JSON_KEYS)
    assert t[["patient", "infusion"]].values.tolist() == [["A", 1], ["A", 2]]
    a1 = _lin(0, 1000, 7) + _log_down(1000, 500, 7)
    assert t.loc[0, "auc_0_last"] == pytest.approx(a1)
    # the day-28 BLQ after the last value counts 0 (PKNCA): AUC0-28 adds the triangle
    assert t.loc[0, "auc_0_28"] == pytest.approx(a1 + _lin(500, 0, 14))
    assert not t.loc[0, "auc_0_28_truncated"]
    a2 = _lin(0, 4000, 7) + _log_down(4000, 250, 21)
    assert t.loc[1, "auc_0_28"] == pytest.approx(a2)
    recs = nca_records(res)
    assert all(tuple(r) == JSON_KEYS for r in recs)
    assert recs[0]["n_blq"] == 1 and isinstance(recs[0]["infusion"], int)
    assert recs[0]["unit"] == "copies/ug" and recs[0]["auc_unit"] == "copies*day/ug"
    assert recs[0]["auc_0_28_truncated"] is False


def test_auc_days_and_the_former_auc_day():
    s = _series([0, 7, 14, 21, 28, 60, 90], [0, 2000, 800, 400, 200, 60, 30], [1] + [0] * 6)
    t = nca(s, auc_days=(14, 84)).to_frame()
    assert {"auc_0_14", "auc_0_84", "auc_0_14_truncated"} <= set(t.columns)
    assert "auc_0_28" not in t.columns
    assert t.loc[0, "auc_0_14"] == pytest.approx(_lin(0, 2000, 7) + _log_down(2000, 800, 7))
    c84 = 60 * (30 / 60) ** (24 / 30)
    tail = _log_down(400, 200, 7) + _log_down(200, 60, 32) + _log_down(60, c84, 24)
    assert t.loc[0, "auc_0_84"] == pytest.approx(
        t.loc[0, "auc_0_14"] + _log_down(800, 400, 7) + tail, rel=1e-12)
    old = nca(s, auc_day=14).to_frame()
    assert "auc_0_14" in old.columns and "auc_0_84" not in old.columns


def test_result_object(tmp_path):
    from matplotlib.figure import Figure

    import cartkinetics as ck

    s = _series(ISSUE_DAYS, ISSUE_VALUES, ISSUE_BLQ)
    res = ck.nca([s])
    res2 = ck.nca([s])  # a second call in one session (the name is no submodule)
    assert isinstance(res, NCAResult) and isinstance(res2, NCAResult)
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["rules"]["blq"].startswith("pknca") and d["records"][0]["cmax"] == 20000.0
    assert len(repr(res)) < 2000 and "copies/ug" in repr(res)
    assert "half_life rule" in res.summary() and "copies*day/ug" in res.summary()
    assert "<table" in res._repr_html_()
    ax = Figure().subplots()
    assert res.plot(ax=ax) is ax and ax.get_yscale() == "log"
    assert len(res) == 1 and res["cmax"].iloc[0] == 20000.0


def test_nca_accepts_dataframe_and_series_list():
    df = pd.DataFrame({"patient": ["A"] * 3, "day": [1, 7, 28], "value": [10.0, 80.0, 20.0]})
    t1 = nca(df, assay="qpcr").to_frame()
    d = read_kinetics(df, assay="qpcr")
    t2 = nca(d.series()).to_frame()
    pd.testing.assert_frame_equal(t1, t2)
