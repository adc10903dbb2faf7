"""Regressions found in review (QA): each test failed before its fix."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cartkinetics import example
from cartkinetics.cli import main
from cartkinetics.compare import compare_infusions
from cartkinetics.data import read_kinetics
from cartkinetics.noncompartmental import nca


def _two_infusion_csv(tmp_path):
    """P1..P4 with both infusions; P4's second series stops at day 14 (AUC0-28 truncated)."""
    rows = ["patient,infusion,day,value,lloq,assay"]
    peaks = {"P1": (1e3, 3e3), "P2": (2e3, 3e3), "P3": (5e2, 4e3), "P4": (1e3, 9e4)}
    for p, (c1, c2) in peaks.items():
        for inf, c in ((1, c1), (2, c2)):
            days = (1, 7, 14) if (p, inf) == ("P4", 2) else (1, 7, 14, 28)
            for d in days:
                level = c if d == 7 else c / (1 + abs(d - 7))
                rows.append(f"{p},{inf},{d},{level:.6g},1,qpcr")
    path = tmp_path / "kin.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_truncated_auc_pairs_left_out_of_the_auc_comparison(tmp_path):
    table = nca(read_kinetics(_two_infusion_csv(tmp_path))).to_frame()
    assert table.set_index(["patient", "infusion"]).loc[("P4", 2), "auc_0_28_truncated"]
    r = compare_infusions(table)
    assert r["n_pairs"] == 4
    # Cmax uses all 4 pairs, AUC0-28 only the 3 complete ones (a lower bound is no AUC0-28)
    assert r["cmax"]["n"] == 4 and r["auc_0_28"]["n"] == 3
    assert r["auc_0_28"]["n_truncated_excluded"] == 1
    full = table[table["patient"] != "P4"].set_index(["patient", "infusion"])["auc_0_28"]
    ratios = np.array([full[(p, 2)] / full[(p, 1)] for p in ("P1", "P2", "P3")])
    assert r["auc_0_28"]["ratio_gm"] == pytest.approx(stats.gmean(ratios), rel=1e-12)
    assert list(r["pairs"]["auc_0_28_truncated"]) == [False, False, False, True]
    assert "1 patient(s) left out of auc_0_28: P4: auc_0_28 truncated" in r.summary()
    assert r.to_dict()["auc_0_28"]["n_truncated_excluded"] == 1
    assert r.to_dict()["auc_0_28"]["excluded"][0]["patient"] == "P4"


def test_patients_left_out_of_a_metric_are_named_with_the_reason():
    # B's first infusion never expanded (all BLQ: Cmax not estimable, AUC0-28 = 0): the
    # comparison names B instead of silently comparing the others
    t = pd.DataFrame({"patient": ["A", "A", "B", "B", "C", "C"],
                      "infusion": [1, 2, 1, 2, 1, 2],
                      "cmax": [100.0, 300.0, np.nan, 5000.0, 200.0, 400.0],
                      "tmax": [10.0, 8.0, np.nan, 9.0, 12.0, 11.0],
                      "auc_0_28": [1000.0, 3000.0, 0.0, 40000.0, 2000.0, 4000.0]})
    r = compare_infusions(t)
    assert r["cmax"]["n"] == 2
    assert r["cmax"]["excluded"] == [{"patient": "B",
                                      "reason": "cmax not estimable at infusion 1"}]
    assert r["auc_0_28"]["excluded"] == [{"patient": "B",
                                          "reason": "auc_0_28 is 0 at infusion 1 (no ratio)"}]
    text = r.summary()
    assert "1 patient(s) left out of cmax: B: cmax not estimable at infusion 1" in text
    # the estimate printed with a CI is the one the CI belongs to (Hodges-Lehmann for tmax)
    d = r.to_dict()["tmax"]
    assert d["estimate"] == d["hodges_lehmann"] and d["estimate_name"] == "Hodges-Lehmann difference"
    assert r.to_dict()["cmax"]["estimate"] == pytest.approx(np.sqrt(3.0 * 2.0))


def test_tables_without_the_flag_are_compared_as_before():
    t = pd.DataFrame(
        {
            "patient": ["A", "A", "B", "B"],
            "infusion": [1, 2, 1, 2],
            "cmax": [1.0, 2.0, 1.0, 4.0],
            "tmax": [10.0, 8.0, 12.0, 9.0],
            "auc_0_28": [1.0, 3.0, 2.0, 2.0],
        }
    )
    r = compare_infusions(t)
    assert r["auc_0_28"]["n"] == 2 and r["auc_0_28"]["n_truncated_excluded"] == 0
    assert r["auc_0_28"]["ratio_gm"] == pytest.approx(np.sqrt(3.0))


def test_cli_compare_refuses_an_assay_the_file_does_not_hold(capsys):
    # --assay flow on a qPCR-only file used to compare the qPCR series without a word
    assert main(["compare", str(example.kinetics_path()), "--assay", "flow", "--json"]) == 2
    err = capsys.readouterr().err
    assert "flow" in err and "qpcr" in err
    assert main(["compare", str(example.kinetics_path()), "--assay", "QPCR", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_pairs"] == 7


def test_wilcoxon_with_one_non_zero_difference_does_not_crash():
    # zeros dropped leave one difference: scipy's permutation test refused it (ValueError),
    # so compare_infusions crashed on a cohort of two pairs with one unchanged AUC
    from cartkinetics.compare import wilcoxon_signed_rank

    p, test = wilcoxon_signed_rank(np.array([0.0, 1.2]))
    assert p == 1.0 and "zeros dropped" in test
    # the same null by enumeration: with one rank, T=0 and T=1 are equally extreme
    assert wilcoxon_signed_rank(np.array([-0.4]))[0] == stats.wilcoxon([-0.4]).pvalue == 1.0


def test_cli_nca_refuses_an_assay_the_file_does_not_hold(capsys):
    # used to print an empty table (or "[]" with --json) and exit 0
    assert main(["nca", str(example.kinetics_path()), "--assay", "flow", "--json"]) == 2
    assert "no flow series" in capsys.readouterr().err


def test_text_gives_the_tmax_interval_with_its_own_estimate():
    # "median difference -3 d (95% CI -8.5 to -3)" paired the HL interval with the median
    r = compare_infusions(nca(read_kinetics(example.kinetics_path())))
    text = r.summary()
    assert "median difference -3 d; Hodges-Lehmann -5 d (95% CI -8.5 to -3)" in text


def test_large_cohorts_do_not_overflow():
    # 2^n counts overflowed a float (OverflowError at n ~ 1030), and scipy's exact p took
    # seconds and underflowed to 0; the normal approximation is used above EXACT_MAX pairs
    from cartkinetics.compare import EXACT_MAX, hodges_lehmann_ci, wilcoxon_signed_rank

    rng = np.random.default_rng(7)
    d = rng.normal(0.05, 1.0, 2000)
    est, lo, hi, achieved = hodges_lehmann_ci(d)
    # independent large-sample interval: order statistics of the Walsh averages at
    # n(n+1)/4 -/+ 1.96 sd (Hollander & Wolfe 3.3, large-sample approximation)
    i, j = np.triu_indices(d.size)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    n = d.size
    c = n * (n + 1) / 4 - 1.959964 * np.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    k = int(np.floor(c - 0.5))
    assert (lo, hi) == (walsh[k], walsh[walsh.size - 1 - k])
    assert achieved == pytest.approx(0.95, abs=2e-4) and lo < est < hi
    p, test = wilcoxon_signed_rank(d)
    ref = stats.wilcoxon(d, method="asymptotic", correction=True).pvalue  # as R wilcox.test
    assert p == pytest.approx(ref, rel=1e-12)
    assert "normal approximation" in test
    # the exact null at the threshold still sums to 1 and matches scipy's exact p
    small = rng.normal(0.2, 1.0, EXACT_MAX)
    assert wilcoxon_signed_rank(small)[0] == pytest.approx(
        stats.wilcoxon(small, method="exact").pvalue, rel=1e-9
    )
    t = pd.DataFrame(
        {
            "patient": np.repeat(np.arange(1100), 2),
            "infusion": np.tile([1, 2], 1100),
            "cmax": rng.lognormal(8, 1, 2200),
            "tmax": rng.integers(7, 21, 2200).astype(float),
            "auc_0_28": rng.lognormal(11, 1, 2200),
        }
    )
    r = compare_infusions(t)
    assert r["n_pairs"] == 1100 and np.isfinite(r["tmax"]["ci_low"])
