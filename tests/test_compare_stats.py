"""First-vs-second comparison checked against brute-force enumeration and scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cartkinetics.compare import (
    compare_infusions,
    hodges_lehmann_ci,
    wilcoxon_signed_rank,
)
from cartkinetics.errors import CartKineticsError


def _table(first, second, tmax1, tmax2, auc1=None, auc2=None):
    rows = []
    auc1 = first if auc1 is None else auc1
    auc2 = second if auc2 is None else auc2
    for i in range(len(first)):
        rows.append(
            dict(patient=f"P{i}", infusion=1, cmax=first[i], tmax=tmax1[i], auc_0_28=auc1[i])
        )
        rows.append(
            dict(patient=f"P{i}", infusion=2, cmax=second[i], tmax=tmax2[i], auc_0_28=auc2[i])
        )
    return pd.DataFrame(rows)


def _brute_p(d):
    """Two-sided signed-rank p by enumerating every sign pattern (mid-ranks, zeros dropped)."""
    d = np.asarray(d, float)
    d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))
    n = d.size
    obs = ranks[d > 0].sum()
    mean = n * (n + 1) / 4
    count = 0
    for signs in itertools.product([0, 1], repeat=n):
        t = ranks[np.array(signs, bool)].sum()
        if abs(t - mean) >= abs(obs - mean) - 1e-12:
            count += 1
    return count / 2**n


def test_seven_pairs_same_direction_p_is_2_over_128():
    # the study: Tmax 14 -> 11 days in all 7 patients, P = 0.02
    t1 = [14, 14, 21, 14, 10, 14, 21]
    t2 = [11, 10, 14, 11, 7, 11, 11]
    cmax1 = [1e4, 2e4, 5e3, 3e4, 8e3, 1.2e4, 6e3]
    cmax2 = [c * f for c, f in zip(cmax1, [2.1, 3.3, 1.4, 5.0, 2.7, 1.9, 4.2], strict=True)]
    r = compare_infusions(_table(cmax1, cmax2, t1, t2))
    assert r["n_pairs"] == 7
    assert r["tmax"]["p_value"] == 2 / 128
    assert r["cmax"]["p_value"] == 2 / 128
    assert r["cmax"]["test"].startswith("Wilcoxon signed-rank, exact")  # distinct ratios
    assert "permutation" in r["tmax"]["test"]  # tied differences (-3 x 3)
    assert r["tmax"]["median_first"] == 14 and r["tmax"]["median_second"] == 11
    assert r["tmax"]["median_difference"] == -3


def test_exact_p_matches_enumeration_without_ties():
    rng = np.random.default_rng(1)
    for n in (5, 6, 8, 10):
        d = rng.normal(0.3, 1.0, n)
        p, test = wilcoxon_signed_rank(d)
        assert test == "Wilcoxon signed-rank, exact"
        assert p == pytest.approx(_brute_p(d), abs=1e-12)


def test_ties_and_zeros_use_exact_permutation():
    d = np.array([-3.0, -3.0, 2.0, -4.0, 0.0, -1.0, -3.0, 5.0])
    p, test = wilcoxon_signed_rank(d)
    assert "exact permutation" in test and "ties" in test and "zeros dropped" in test
    assert p == pytest.approx(_brute_p(d), abs=1e-12)


def test_geometric_mean_ratio_and_t_interval_match_scipy():
    first = np.array([1200.0, 5300.0, 880.0, 20000.0, 4100.0, 760.0])
    second = np.array([3100.0, 9900.0, 1500.0, 61000.0, 3900.0, 2600.0])
    r = compare_infusions(_table(first, second, [14] * 6, [11] * 6))["cmax"]
    lr = np.log(second / first)
    ci = stats.ttest_1samp(lr, 0.0).confidence_interval(0.95)
    assert r["ratio_gm"] == pytest.approx(math.exp(lr.mean()), rel=1e-12)
    assert r["ci_low"] == pytest.approx(math.exp(ci.low), rel=1e-12)
    assert r["ci_high"] == pytest.approx(math.exp(ci.high), rel=1e-12)
    assert r["median_first"] == np.median(first) and r["median_second"] == np.median(second)
    assert r["p_value"] == pytest.approx(_brute_p(lr))


def test_hodges_lehmann_interval_against_enumeration_and_table():
    d = np.array([-3.2, -1.1, -4.7, -0.4, 2.3, -6.0, -2.5])
    est, lo, hi, level = hodges_lehmann_ci(d)
    walsh = sorted((d[i] + d[j]) / 2 for i in range(7) for j in range(i, 7))
    assert est == pytest.approx(np.median(walsh))
    # null distribution of the signed-rank statistic by enumeration
    sums = [
        sum(r for r, s in zip(range(1, 8), signs, strict=True) if s)
        for signs in itertools.product([0, 1], repeat=7)
    ]
    cdf = lambda k: sum(s <= k for s in sums) / 128
    k = max(k for k in range(29) if cdf(k) <= 0.025)
    assert k == 2  # Hollander & Wolfe Table A.4: n = 7, 95.3% interval uses ranks 3 and 26
    assert (lo, hi) == (walsh[k], walsh[len(walsh) - 1 - k])
    assert level == pytest.approx(1 - 2 * 3 / 128)
    # too few pairs for a 95% interval
    assert all(math.isnan(x) for x in hodges_lehmann_ci(np.array([1.0, 2.0, 3.0]))[1:])


def test_pairs_table_and_missing_metrics():
    first = [1000.0, 2000.0, 3000.0, 4000.0]
    second = [2000.0, float("nan"), 3300.0, 9000.0]
    t = _table(first, second, [14, 14, 10, 21], [11, 7, 7, 14])
    # a patient with a first infusion only is not a pair
    t = pd.concat(
        [t, pd.DataFrame([dict(patient="X", infusion=1, cmax=5.0, tmax=7, auc_0_28=9.0)])]
    )
    r = compare_infusions(t)
    assert r["n_pairs"] == 4
    assert r["cmax"]["n"] == 3 and r["tmax"]["n"] == 4
    pairs = r["pairs"]
    assert pairs["cmax_ratio"].iloc[0] == 2.0 and pairs["tmax_difference"].tolist() == [
        -3,
        -7,
        -3,
        -7,
    ]
    j = r.to_dict()
    assert {"n_pairs", "cmax", "tmax", "auc_0_28"} <= set(j)
    assert {"first", "second", "assay", "unit", "basis", "rule", "warning"} <= set(j)
    for m in ("cmax", "auc_0_28"):
        assert {
            "median_first",
            "median_second",
            "ratio_gm",
            "ci_low",
            "ci_high",
            "p_value",
            "test",
        } <= set(j[m])
    assert {
        "median_first",
        "median_second",
        "median_difference",
        "ci_low",
        "ci_high",
        "p_value",
        "test",
    } <= set(j["tmax"])
    assert "GM ratio" in r.summary()


def test_errors():
    t = _table([1.0, 2.0], [2.0, 3.0], [1, 1], [2, 2])
    with pytest.raises(CartKineticsError, match="more than one row"):
        compare_infusions(pd.concat([t, t.iloc[:1]]))
    with pytest.raises(CartKineticsError, match="needs columns"):
        compare_infusions(t.drop(columns="tmax"))
    mixed = pd.concat([t.assign(assay="qpcr"), t.assign(assay="flow")])
    with pytest.raises(CartKineticsError, match="mixes assays"):
        compare_infusions(mixed)
    assert compare_infusions(mixed, assay="flow")["n_pairs"] == 2


def test_no_pairs():
    t = pd.DataFrame([dict(patient="A", infusion=1, cmax=1.0, tmax=1.0, auc_0_28=1.0)])
    with pytest.warns(UserWarning, match="NO PAIRS"):
        r = compare_infusions(t)
    assert r.n_pairs == 0 and math.isnan(r.metrics["cmax"]["p_value"])
    assert r.to_dict()["cmax"]["ratio_gm"] is None
    assert r.to_dict()["warning"].startswith("NO PAIRS") and not r.ok
    assert r.summary().startswith("WARNING: NO PAIRS") and "NO PAIRS" in repr(r)


def test_paired_plot_axes():
    from matplotlib.figure import Figure

    from cartkinetics.plots import paired_plot

    t = _table([1e3, 2e3, 5e3], [4e3, 3e3, 9e3], [14, 10, 21], [11, 7, 14])
    r = compare_infusions(t)
    fig = Figure()
    axes = paired_plot(r, ax=fig.subplots(1, 3), unit="copies/ug")
    assert [a.get_yscale() for a in axes] == ["log", "linear", "log"]
    # one line per patient plus the median line
    assert all(len(a.get_lines()) == 4 for a in axes)
    assert "copies/ug" in axes[0].get_ylabel()
    with pytest.raises(ValueError):
        paired_plot(r, ax=fig.subplots(1, 2))
