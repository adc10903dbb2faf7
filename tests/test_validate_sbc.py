"""SBC: the simultaneous ECDF band (Säilynoja et al. 2022), rank summaries, and a small
study identical in process and on 2 Dask workers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cartkinetics.validate.sbc import ecdf_band, rank_ecdf, sbc_summary


def test_band_is_simultaneous_95_for_uniform_ranks():
    """Over many samples of uniform ranks, the whole ECDF stays inside the band ~95% of the
    time (a pointwise band would hold far less often)."""
    n, n_ranks = 40, 20
    _, lo, hi = ecdf_band(n, n_ranks)
    rng = np.random.default_rng(1)
    inside = 0
    trials = 2000
    for _ in range(trials):
        _, F = rank_ecdf(rng.integers(0, n_ranks, n), n_ranks)
        inside += bool(np.all((F >= lo - 1e-12) & (F <= hi + 1e-12)))
    assert 0.93 <= inside / trials <= 0.975


def test_rank_ecdf_is_the_uniform_cdf_for_every_rank_once():
    z, F = rank_ecdf(np.arange(10), 10)
    np.testing.assert_allclose(F, z, atol=1e-15)


def test_summary_flags_skewed_ranks():
    rng = np.random.default_rng(2)
    t = pd.DataFrame({"status": "ok", "rank[a]": rng.integers(0, 20, 100),
                      "rank[b]": np.minimum(rng.integers(0, 20, 100), 5)})
    s = sbc_summary(t, thin_to=19, bins=5).set_index("quantity")
    assert not s.loc["b", "ecdf_inside_band"] and s.loc["b", "p_value"] < 1e-6
    assert s.loc["a", "counts"].split() and sum(map(int, s.loc["a", "counts"].split())) == 100


@pytest.mark.slow
def test_small_sbc_study_identical_on_two_workers(tmp_path):
    pytest.importorskip("nutpie")
    from cartkinetics.fit import population as P
    from cartkinetics.validate import SBCStudy, run_study

    # as after any population fit earlier in the session: the in-process run must not depend
    # on what this process ran before (the fresh workers never ran a fit)
    P.register_cacheable_erfcx()
    study = SBCStudy(patients=3, draws=40, tune=60, chains=2, thin_to=19, bins=4)
    a = run_study(study, 2, seed=7, partition_size=1)
    assert (a.table["status"] == "ok").all(), a.table["message"].tolist()
    ranks = a.table.filter(like="rank[").to_numpy()
    assert ((ranks >= 0) & (ranks <= 19)).all()
    b = run_study(study, 2, seed=7, partition_size=1, workers=2, out=tmp_path / "sbc")
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert (tmp_path / "sbc" / "sbc_ecdf_difference.png").exists()
    assert (tmp_path / "sbc" / "sbc_ranks.png").exists()


NUTPIE_INIT_ERROR = (
    "All initialization points failed\n\nCaused by:\n    Logp function returned error: "
    "non-finite logp\n\nStack backtrace:\n   0: <unknown>\n   1: nuts_rs::sampler::\n"
)


def test_one_line_drops_the_rust_backtrace():
    from cartkinetics.validate.sbc import one_line

    msg = one_line(f"RuntimeError: {NUTPIE_INIT_ERROR}")
    assert msg == ("RuntimeError: All initialization points failed Caused by: Logp function "
                   "returned error: non-finite logp")


@pytest.mark.slow
def test_replicate_failing_at_initialisation_is_tried_again(monkeypatch):
    """A replicate whose starts all fail is sampled again from other starts (same data and
    truth) before it counts as failed; a replicate that never starts is one failed row with
    a one-line message."""
    nutpie = pytest.importorskip("nutpie")
    from cartkinetics.validate import sbc

    cfg = {"patients": 3, "lloq": 150.0, "days": sbc.SBC_DAYS, "draws": 40, "tune": 60,
           "chains": 2, "thin_to": 19}
    real = nutpie.sample
    calls = {"n": 0}

    def fails_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError(NUTPIE_INIT_ERROR)
        return real(*args, **kwargs)

    monkeypatch.setattr(nutpie, "sample", fails_once)
    row = sbc.sbc_replicate(cfg, np.random.default_rng(3))
    assert row["status"] == "ok" and row["attempts"] == 2 and calls["n"] == 2
    assert min(v for k, v in row.items() if k.startswith("rank[")) >= 0

    def always_fails(*args, **kwargs):
        raise RuntimeError(NUTPIE_INIT_ERROR)

    monkeypatch.setattr(nutpie, "sample", always_fails)
    row = sbc.sbc_replicate(cfg, np.random.default_rng(3))
    assert row["status"] == "failed" and row["attempts"] == sbc.INIT_ATTEMPTS
    assert "\n" not in row["message"] and "backtrace" not in row["message"]

    def other_error(*args, **kwargs):
        raise ValueError("a bug, not a start")

    monkeypatch.setattr(nutpie, "sample", other_error)
    row = sbc.sbc_replicate(cfg, np.random.default_rng(3))
    assert row["status"] == "failed" and row["attempts"] == 1  # not retried
