"""Cohort fits on Dask: the same table as in process (0, 1, 2 workers), failures isolated per
series, partitions streamed and resumable, a worker killed mid-run loses nothing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from cartkinetics._dask import finished_parts
from cartkinetics.data import Series
from cartkinetics.errors import CartKineticsError
from cartkinetics.fit import fit_cohort
from cartkinetics.validate.coverage import simulate

pytest.importorskip("dask.distributed")

KW = dict(n_boot=20, prior="population")


def _cohort(n: int) -> list:
    _, series = simulate(n, 75.0, 11)
    d = np.array([1.0, 7, 14, 28])
    # failures of single series: too few points, all BLQ, and arrays of unequal length
    # (fit_series raises; the cohort gets a row with status 'error' and the reason)
    series.insert(1, Series("few", 1, "qpcr", "copies/ug", d[:1], np.array([100.0]),
                            np.full(1, 50.0), np.zeros(1, bool)))
    series.insert(3, Series("blq", 1, "qpcr", "copies/ug", d, np.full(4, 50.0),
                            np.full(4, 50.0), np.ones(4, bool)))
    series.append(Series("broken", 1, "qpcr", "copies/ug", d, np.full(3, 500.0),
                         np.full(4, 50.0), np.zeros(4, bool)))
    return series


@pytest.fixture(scope="module")
def series():
    return _cohort(5)


@pytest.fixture(scope="module")
def in_process(series):
    return fit_cohort(series, "stein2019", **KW)


def test_in_process_failures_are_rows(in_process):
    t = in_process.table
    assert t["patient"].tolist()[:4] == ["S0", "few", "S1", "blq"]
    st = dict(zip(t["patient"], t["status"], strict=True))
    assert st["few"] == "too_few_points" and st["blq"] == "all_blq"
    assert st["broken"] == "error"
    assert t.loc[t["patient"] == "broken", "message"].item()  # the reason is given
    assert sum(s in ("converged", "converged_singular") for s in st.values()) == 5


def test_streamed_in_process_equals_collected_and_resumes(series, in_process, tmp_path):
    out = tmp_path / "run"
    a = fit_cohort(series, "stein2019", out=out, **KW)
    # chunks of 25 series: one partition, named by its series range
    assert sorted(finished_parts(out / "fits")) == [(0, len(series) - 1)]
    pd.testing.assert_frame_equal(a.table, in_process.table, check_exact=True)
    assert a.counts() == in_process.counts()
    # without --resume an existing run is refused, not silently overwritten or mixed
    with pytest.raises(CartKineticsError, match="resume"):
        fit_cohort(series, "stein2019", out=out, **KW)
    # other options in the same folder are refused even with resume
    with pytest.raises(CartKineticsError, match="another run"):
        fit_cohort(series, "stein2019", out=out, resume=True, n_boot=21, prior="population")


def test_resume_after_lost_partition(series, in_process, tmp_path):
    from cartkinetics.fit.distributed import fit_cohort_distributed

    out = tmp_path / "run"
    fit_cohort_distributed(series, "stein2019", out=out, chunk_size=3, **KW)
    parts = finished_parts(out / "fits")
    assert sorted(parts) == [(0, 2), (3, 5), (6, 7)]
    parts[(3, 5)].unlink()  # as if the run had stopped before this chunk
    t0 = time.perf_counter()
    b = fit_cohort_distributed(series, "stein2019", out=out, chunk_size=3, resume=True, **KW)
    assert b.info["chunks_resumed"] == 2 and time.perf_counter() - t0 < 60
    pd.testing.assert_frame_equal(b.table, in_process.table, check_exact=True)
    assert b.counts() == in_process.counts()


@pytest.mark.slow
def test_one_and_two_local_workers_identical(series, in_process):
    one = fit_cohort(series, "stein2019", workers=1, **KW)
    pd.testing.assert_frame_equal(one.table, in_process.table, check_exact=True)
    from cartkinetics.fit.distributed import fit_cohort_distributed

    two = fit_cohort_distributed(series, "stein2019", workers=2, chunk_size=2, **KW)
    pd.testing.assert_frame_equal(two.table, in_process.table, check_exact=True)


@pytest.mark.slow
def test_subprocess_cluster_worker_killed_mid_run(tmp_path):
    """dask scheduler + 2 dask worker processes; one worker SIGKILLed while fitting."""
    from dask_cluster import SubprocessCluster

    from cartkinetics.fit.distributed import fit_cohort_distributed

    series = _cohort(16)
    reference = fit_cohort(series, "stein2019", **KW)
    cluster = SubprocessCluster(tmp_path, n_workers=2)
    try:
        client = cluster.client(2)
        out = tmp_path / "run"
        box: dict = {}

        def run() -> None:
            try:
                box["res"] = fit_cohort_distributed(series, "stein2019", client=client,
                                                    out=out, chunk_size=1, **KW)
            except Exception as exc:  # pragma: no cover - reported below
                box["err"] = exc

        th = threading.Thread(target=run)
        th.start()
        # kill one worker once the run is under way (some partitions written, not all)
        t0 = time.time()
        while len(finished_parts(out / "fits")) < 2 and time.time() - t0 < 300:
            time.sleep(0.1)
        n_before = len(finished_parts(out / "fits"))
        cluster.kill_worker(0)
        th.join(timeout=600)
        assert not th.is_alive()
        assert "err" not in box, box.get("err")
        res = box["res"]
        assert n_before < len(series)  # the kill happened mid-run
        # the surviving worker, seen through the scheduler file (--scheduler FILE)
        from cartkinetics._dask import open_client

        with open_client(scheduler=str(cluster.file)) as (c2, info):
            assert len(c2.scheduler_info()["workers"]) == 1
            assert info["scheduler"] == str(cluster.file)
        pd.testing.assert_frame_equal(res.table, reference.table, check_exact=True)
        assert len(finished_parts(out / "fits")) == len(series)
        assert not list((out / "fits").glob(".*.tmp"))  # no half-written partition left
        client.close()
    finally:
        cluster.close()


def test_cli_cluster_options(tmp_path, capsys):
    from cartkinetics.cli import main

    p = tmp_path / "k.csv"
    p.write_text("patient,infusion,day,value,assay,unit,lloq,blq\n")
    assert main(["fit", str(p), "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --workers and --scheduler are exclusive
        main(["fit", str(p), "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
