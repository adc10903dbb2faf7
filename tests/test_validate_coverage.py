"""Coverage studies: Wilson intervals, per-replicate seeding, resume, Dask workers, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cartkinetics import models
from cartkinetics.errors import CartKineticsError
from cartkinetics.validate import BootstrapStudy, FitCoverageStudy, run_study
from cartkinetics.validate.coverage import coverage_summary, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (95, 100), (100, 100), (47, 200)])
def test_wilson_matches_statsmodels(k, n):
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-12)


def test_coverage_summary_counts_by_hand():
    t = pd.DataFrame({
        "status": ["converged", "converged", "converged_singular", "error"],
        "true_cmax": [10.0, 10.0, 10.0, 10.0],
        "cmax": [11.0, 20.0, 10.0, np.nan],
        "cmax_lo": [9.0, 15.0, np.nan, 1.0],   # covers, misses, no interval, failed fit
        "cmax_hi": [12.0, 25.0, np.nan, 99.0],
    })
    s = coverage_summary(t, ["cmax"]).iloc[0]
    assert (s["intervals"], s["covered"], s["usable_fits"]) == (2, 1, 3)
    assert s["coverage"] == 0.5
    assert s["median_log_ratio"] == pytest.approx(np.median(np.log([1.1, 2.0, 1.0])))


def test_replicate_r_uses_the_r_th_spawned_seed():
    """Replicate r's virtual patient comes from SeedSequence(seed).spawn(n)[r], whatever the
    partition size (drawn here independently of the study code)."""
    a = run_study(BootstrapStudy(n_boot=10), 3, seed=99, partition_size=2)
    m = models.get("stein2019")
    om = np.sqrt([m.bsv[k] for k in m.param_names])
    for r, child in enumerate(np.random.SeedSequence(99).spawn(3)):
        eta = np.random.default_rng(child).standard_normal(6)
        assert a.table["true_cmax"][r] == pytest.approx(m.typical[2] * np.exp(eta[2] * om[2]),
                                                        rel=1e-14)
    b = run_study(BootstrapStudy(n_boot=10), 3, seed=99, partition_size=3)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)


def test_resumed_study_equals_uninterrupted(tmp_path):
    study = FitCoverageStudy(n_boot=20)
    full = run_study(study, 5, seed=3, out=tmp_path / "full", partition_size=2)
    part = tmp_path / "part"
    run_study(study, 5, seed=3, out=part, partition_size=2)
    # interrupted: one partition and the final outputs missing
    (part / "replicates" / "part-0000002-0000003.parquet").unlink()
    (part / "summary.csv").unlink()
    with pytest.raises(CartKineticsError, match="resume"):
        run_study(study, 5, seed=3, out=part, partition_size=2)
    with pytest.raises(CartKineticsError, match="different study"):
        run_study(FitCoverageStudy(n_boot=21), 5, seed=3, out=part, partition_size=2,
                  resume=True)
    res = run_study(study, 5, seed=3, out=part, partition_size=2, resume=True)
    assert res.info["partitions_resumed"] == 2
    pd.testing.assert_frame_equal(res.table, full.table, check_exact=True)
    assert (part / "summary.csv").read_text() == (tmp_path / "full" / "summary.csv").read_text()
    assert (part / "coverage.png").exists()
    d = res.to_dict()
    json.dumps(d)
    assert d["replicates"] == 5 and len(repr(res)) < 2000


@pytest.mark.slow
def test_two_local_workers_identical():
    study = BootstrapStudy(n_boot=10)
    a = run_study(study, 4, seed=5, partition_size=1)
    b = run_study(study, 4, seed=5, partition_size=1, workers=2)
    assert b.info["workers"] == 2
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    pd.testing.assert_frame_equal(a.summary_table, b.summary_table, check_exact=True)


def test_cli_validate_json_and_resume(tmp_path, capsys):
    from cartkinetics.cli import main

    args = ["validate", "bootstrap", "--replicates", "3", "--n-boot", "10", "--out",
            str(tmp_path / "v"), "--partition-size", "2", "--quiet"]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["study"] == "bootstrap" and doc["replicates"] == 3
    assert [r["quantity"] for r in doc["summary"]] == ["model_cmax", "model_tmax",
                                                      "model_auc_0_28"]
    assert main(args) == 2  # refuses to overwrite without --resume
    assert main([*args, "--resume"]) == 0
    assert "2 resumed" in capsys.readouterr().out
