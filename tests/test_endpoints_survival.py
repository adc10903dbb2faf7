"""Survival and rate statistics against published numbers, closed forms and lifelines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cartkinetics.endpoints import (
    cohort_endpoints,
    follow_up,
    kaplan_meier,
    landmark_estimates,
    logrank_test,
    proportion,
)
from cartkinetics.errors import CartKineticsError

# the study's cohort shape: one death on day 70, six censored; median follow-up 540 (70-1290)
STUDY_DAYS = [70, 210, 400, 540, 760, 980, 1290]
STUDY_DEATH = [1, 0, 0, 0, 0, 0, 0]


def study_table() -> pd.DataFrame:
    return pd.DataFrame({
        "patient": [f"P{i}" for i in range(1, 8)],
        "os_days": STUDY_DAYS,
        "death": STUDY_DEATH,
        "efs_days": STUDY_DAYS,
        "efs_event": STUDY_DEATH,
    })


def test_study_two_year_os_published_log_log_interval():
    res = cohort_endpoints(study_table())
    d = res.to_dict()
    for name in ("os", "efs"):
        lm = d[name]["landmarks"]["730"]
        # published: 85.7% (95% CI 33.4-97.9%)
        assert round(100 * lm["estimate"], 1) == 85.7
        assert round(100 * lm["ci_low"], 1) == 33.4
        assert round(100 * lm["ci_high"], 1) == 97.9
        assert lm["at_risk"] == 3
        assert d[name]["median"] is None  # not reached
        assert d[name]["events"] == 1
        assert "log-log" in d[name]["method"]
    assert d["follow_up"]["median"] == 540
    assert (d["follow_up"]["min"], d["follow_up"]["max"]) == (70, 1290)
    assert "85.7% (95% CI 33.4-97.9%)" in res.summary()
    assert "median follow-up 540 days (range 70-1290" in res.summary()


def test_study_interval_by_hand_and_plain_greenwood_differs():
    # closed form: S = 6/7, Greenwood var(log S) = 1/(7*6); log-log: S**exp(+-z*se/|log S|)
    s = 6 / 7
    se = math.sqrt(1 / 42) / abs(math.log(s))
    z = stats.norm.ppf(0.975)
    km = kaplan_meier(STUDY_DAYS, STUDY_DEATH)
    est, lo, hi = km.evaluate(730)
    assert est[0] == pytest.approx(s, rel=1e-14)
    assert lo[0] == pytest.approx(s ** math.exp(z * se), rel=1e-12)
    assert hi[0] == pytest.approx(s ** math.exp(-z * se), rel=1e-12)
    # the plain (linear) Greenwood interval is the 59.8-100% the study did not use
    plain = s - z * s * math.sqrt(1 / 42), min(1.0, s + z * s * math.sqrt(1 / 42))
    assert round(100 * plain[0], 1) == 59.8 and plain[1] == 1.0
    assert abs(lo[0] - plain[0]) > 0.25


def test_clopper_pearson_matches_beta_quantiles():
    for k, n in [(6, 7), (0, 7), (7, 7), (3, 3), (12, 40)]:
        r = proportion(k, n)
        lo = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)
        hi = 1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k)
        assert r.ci_low == pytest.approx(lo, abs=1e-10)
        assert r.ci_high == pytest.approx(hi, abs=1e-10)
        assert r.rate == k / n
    r = proportion(6, 7)
    assert (round(100 * r.ci_low, 1), round(100 * r.ci_high, 1)) == (42.1, 99.6)
    assert "Clopper-Pearson" in r.method


def _lifelines_sets():
    from lifelines.datasets import load_rossi, load_waltons

    w = load_waltons()
    r = load_rossi()
    return {
        "waltons": (w["T"].to_numpy(float), w["E"].to_numpy(bool)),
        "waltons_control": (w.loc[w.group == "control", "T"].to_numpy(float),
                            w.loc[w.group == "control", "E"].to_numpy(bool)),
        "rossi": (r["week"].to_numpy(float), r["arrest"].to_numpy(bool)),
    }


@pytest.mark.parametrize("name", ["waltons", "waltons_control", "rossi"])
def test_km_log_log_ci_and_median_equal_lifelines(name):
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    t, e = _lifelines_sets()[name]
    km = kaplan_meier(t, e)
    kmf = KaplanMeierFitter().fit(t, e)  # lifelines' default CI is the log-log one
    np.testing.assert_allclose(km.survival, kmf.survival_function_at_times(km.time), atol=1e-12)
    ci = kmf.confidence_interval_.loc[km.time].to_numpy()
    np.testing.assert_allclose(km.ci_low, ci[:, 0], atol=1e-10)
    np.testing.assert_allclose(km.ci_high, ci[:, 1], atol=1e-10)
    # at-risk and event counts against lifelines' event table
    et = kmf.event_table.loc[km.time]
    np.testing.assert_array_equal(km.at_risk, et["at_risk"].to_numpy())
    np.testing.assert_array_equal(km.events, et["observed"].to_numpy())
    np.testing.assert_array_equal(km.censored, et["censored"].to_numpy())
    # median and its CI
    ref_median = kmf.median_survival_time_
    ref_ci = median_survival_times(kmf.confidence_interval_).iloc[0].to_numpy()
    as_inf = lambda x: math.inf if x is None else x
    assert as_inf(km.median) == ref_median
    assert as_inf(km.median_ci[0]) == ref_ci[0]
    assert as_inf(km.median_ci[1]) == ref_ci[1]
    # landmark estimates between and on event times
    days = sorted({float(np.quantile(t, q)) for q in (0.1, 0.33, 0.5, 0.8)} | {float(km.time[3])})
    lms = landmark_estimates(km, days)
    for day, lm in zip(days, lms.values(), strict=True):
        assert lm["estimate"] == pytest.approx(float(kmf.predict(day)), abs=1e-12)
        row = kmf.confidence_interval_.loc[:day].iloc[-1].to_numpy()
        assert lm["ci_low"] == pytest.approx(row[0], abs=1e-10)
        assert lm["ci_high"] == pytest.approx(row[1], abs=1e-10)
        assert lm["at_risk"] == int(np.sum(t >= day))


def test_median_reached_in_waltons_has_finite_ci():
    t, e = _lifelines_sets()["waltons"]
    km = kaplan_meier(t, e)
    assert km.median == 56.0
    assert km.median_ci == (53.0, 58.0)


def test_reverse_km_follow_up_equals_lifelines():
    from lifelines import KaplanMeierFitter

    t, e = _lifelines_sets()["rossi"]
    fu = follow_up(t, e)
    rev = KaplanMeierFitter().fit(t, ~e)
    assert fu["reverse_km_median"] == rev.median_survival_time_
    assert fu["median"] == np.median(t)
    # study shape: reverse KM = 5/6 * 4/5 * 3/4 = exactly 0.5 at day 540. lifelines'
    # running product lands 1 ulp above 0.5 there, so its strict comparison moves on to 760;
    # the exact-arithmetic first time S <= 0.5 is 540.
    t7 = np.array(STUDY_DAYS, float)
    rev7 = KaplanMeierFitter().fit(t7, 1 - np.array(STUDY_DEATH))
    assert rev7.predict(540.0) == pytest.approx(0.5, abs=1e-15)
    assert follow_up(t7, np.array(STUDY_DEATH, bool))["reverse_km_median"] == 540.0


def test_logrank_equals_lifelines():
    from lifelines.datasets import load_waltons
    from lifelines.statistics import logrank_test as ll_logrank

    w = load_waltons()
    res = logrank_test(w["T"], w["E"], w["group"])
    a, b = (w.group == "control"), (w.group == "miR-137")
    ref = ll_logrank(w["T"][a], w["T"][b], w["E"][a], w["E"][b])
    assert res["groups"] == ["control", "miR-137"]
    assert res["chi2"] == pytest.approx(ref.test_statistic, rel=1e-9)
    assert res["p"] == pytest.approx(ref.p_value, rel=1e-9)
    with pytest.raises(CartKineticsError, match="exactly two groups"):
        logrank_test([1, 2, 3], [1, 0, 1], ["a", "b", "c"])


def test_landmark_beyond_follow_up_is_not_estimable():
    km = kaplan_meier([10, 20, 30], [1, 0, 0])
    lm = landmark_estimates(km, [25, 365])
    assert lm["25"]["estimate"] == pytest.approx(2 / 3)
    assert lm["365"]["estimate"] is None and "beyond" in lm["365"]["note"]
    assert lm["365"]["at_risk"] == 0


def test_subgroup_logrank_through_cohort_endpoints():
    t = study_table()
    t["arm"] = ["a", "b", "a", "b", "a", "b", "a"]
    res = cohort_endpoints(t, by="arm")
    d = res.to_dict()
    assert set(d["subgroups"]) == {"a", "b"}
    assert d["subgroups"]["a"]["n"] == 4 and d["subgroups"]["a"]["os"]["events"] == 1
    ref = logrank_test(t.os_days, t.death.astype(bool), t.arm)
    assert d["logrank"]["os"]["chi2"] == pytest.approx(ref["chi2"])
    three = cohort_endpoints(t.assign(arm=list("abcabca")), by="arm")
    assert "two groups" in three.logrank["os"]["reason"]
