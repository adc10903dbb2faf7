"""Never quietly unconverged: diagnostics that name stuck chains, the worst quantities and
the patients the chains disagree about; the until-converged loop; the CLI's reports."""

from __future__ import annotations

import json
import types
import warnings

import numpy as np
import pytest

az = pytest.importorskip("arviz")

from cartkinetics.fit import convergence as C  # noqa: E402

PATIENTS = ["P1", "P2", "P3"]
PARAMS = ["tmax", "cmax"]


def _idata(n_chains=4, n_draws=1000, stuck=None, shift=4.0, seed=0):
    """IID normal draws (a perfectly mixed sampler); chain ``stuck`` sits ``shift`` SDs away
    for patient P2's z[P2, cmax] and at a lower log density."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((n_chains, n_draws, 2))
    z = rng.standard_normal((n_chains, n_draws, 3, 2))
    logp = rng.standard_normal((n_chains, n_draws)) - 100.0
    if stuck is not None:
        z[stuck, :, 1, 1] = shift + 0.1 * z[stuck, :, 1, 1]
        logp[stuck] -= 25.0
    post = {"mu": mu, "z": z}
    stats = {
        "diverging": np.zeros((n_chains, n_draws), bool),
        "energy": rng.standard_normal((n_chains, n_draws)),
        "logp": logp,
    }
    return az.from_dict(
        posterior=post, sample_stats=stats,
        coords={"param": PARAMS, "patient": PATIENTS},
        dims={"mu": ["param"], "z": ["patient", "param"]},
    )


def test_mixed_chains_pass_every_threshold():
    rep = C.diagnose(_idata())
    assert rep.ok, rep.problems
    assert rep.stuck_chains == [] and len(rep.patients) == 0
    assert rep.max_rhat < 1.01 and rep.min_ess_bulk > 2000
    d = rep.to_dict()
    json.dumps(d)
    assert d["ok"] is True and d["advice"] == ""


def test_stuck_chain_is_named_with_its_patient_and_log_density():
    rep = C.diagnose(_idata(stuck=2))
    assert not rep.ok
    assert rep.stuck_chains == [2]
    assert any("stuck" in p for p in rep.problems)
    assert any("R-hat" in p for p in rep.problems)
    # the worst quantity is the one the stuck chain holds apart
    assert rep.worst(1)["quantity"][0] == "z[P2, cmax]"
    assert list(rep.patients["patient"]) == ["P2"]
    med = rep.patients["chain_medians"][0]
    assert med[2] > 3.0 and max(abs(m) for k, m in enumerate(med) if k != 2) < 0.2
    assert rep.chain_logp[2] < min(rep.chain_logp[k] for k in (0, 1, 3)) - 20
    # leaving the stuck chain out gives R-hat near 1; leaving another out does not
    assert rep.rhat_without_chain[2] < 1.01 < min(rep.rhat_without_chain[k] for k in (0, 1, 3))
    d = rep.to_dict()
    json.dumps(d)
    assert d["ok"] is False and d["stuck_chains"] == [2]
    assert d["patients_disagreeing"][0]["patient"] == "P2"
    assert "--until-converged" in d["advice"]
    assert "NOT CONVERGED" in rep.summary() and "P2" in rep.summary()


def test_two_chains_disagreeing_report_the_patient_without_naming_a_chain():
    rep = C.diagnose(_idata(n_chains=2, stuck=1))
    assert not rep.ok and rep.stuck_chains == []  # with two chains no majority
    assert list(rep.patients["patient"]) == ["P2"]


def test_few_draws_fail_on_ess_and_divergences_are_counted():
    idata = _idata(n_draws=60)
    idata.sample_stats["diverging"][0, 5] = True
    rep = C.diagnose(idata)
    assert not rep.ok
    assert any("bulk ESS" in p for p in rep.problems)
    assert any("1 divergent" in p for p in rep.problems)
    assert "divergences" in rep.failed and "ess_bulk" in rep.failed
    assert len(rep.failed) == len(rep.problems)
    assert "target-accept" in rep.advice()


# ----------------------------------------------------------------- until converged (logic)
class _FakeFit:
    def __init__(self, idata, chains, tune, draws, seed):
        self.idata = idata
        self.info = {"settings": {"draws": draws, "tune": tune, "chains": chains,
                                  "seed": seed}}

    def _sampled_vars(self):
        return ["mu", "z"]


def test_until_converged_restarts_the_stuck_chain(monkeypatch):
    calls = []

    def fake_fit(data, model, *, draws, tune, chains, seed, init, progress, warn, **kw):
        calls.append({"chains": chains, "init": init, "seed": seed})
        stuck = 2 if len(calls) == 1 else None
        return _FakeFit(_idata(n_chains=chains, stuck=stuck, seed=seed), chains, tune, draws,
                        seed)

    def fake_combine(fit, keep, new):
        idata = az.concat(fit.idata.isel(chain=keep), new.idata, dim="chain", reset_dim=True)
        return _FakeFit(idata, len(keep) + 1, new.info["settings"]["tune"],
                        new.info["settings"]["draws"], new.info["settings"]["seed"])

    monkeypatch.setattr("cartkinetics.fit.population.fit_population", fake_fit)
    monkeypatch.setattr(C, "_combine", fake_combine)
    monkeypatch.setattr(C, "_starts_from_draws", lambda fit, chains, rng: [{"mu": 0.0}])
    fit = C.fit_until_converged(None, seed=5, time_budget=1e6)
    conv = fit.info["convergence"]
    assert conv["ok"] and conv["stopped"] == "converged"
    assert [r["action"] for r in conv["rounds"]] == ["first fit", "restart stuck chains"]
    assert conv["rounds"][1]["restarted"] == [2]
    assert conv["rounds"][1]["discarded_chain_logp"][0] < -120
    assert calls[1]["chains"] == 1 and calls[1]["init"] == [{"mu": 0.0}]
    assert calls[1]["seed"] == 6
    assert fit.idata.posterior.sizes["chain"] == 4


def test_until_converged_stops_at_the_budget_and_says_so(monkeypatch):
    def fake_fit(data, model, *, draws, tune, chains, seed, init, progress, warn, **kw):
        return _FakeFit(_idata(n_chains=chains, n_draws=50, seed=seed), chains, tune, draws,
                        seed)

    monkeypatch.setattr("cartkinetics.fit.population.fit_population", fake_fit)
    monkeypatch.setattr(C, "_starts_from_draws", lambda fit, chains, rng: [{"mu": 0.0}])
    with pytest.warns(RuntimeWarning, match="NOT converged"):
        fit = C.fit_until_converged(None, time_budget=1e-9)
    conv = fit.info["convergence"]
    assert not conv["ok"] and conv["stopped"] == "time budget" and len(conv["rounds"]) == 1

    # with budget: extended rounds, then max rounds. Each round grows by what its smallest
    # ESS asks for (400 x 1.25 / ESS), at least 2x and at most 4x: the fake's 4 x 50 IID
    # draws give a tail ESS of 130-250 (between); 4 x 10 draws about 40 (x12.5, capped at 4)
    for n_draws, lo, hi in ((50, 2.05, 4.0), (10, 4.0, 4.0)):
        def fake_fit(data, model, *, draws, tune, chains, seed, init, progress, warn,
                     n_draws=n_draws, **kw):
            return _FakeFit(_idata(n_chains=chains, n_draws=n_draws, seed=seed), chains, tune,
                            draws, seed)

        monkeypatch.setattr("cartkinetics.fit.population.fit_population", fake_fit)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = C.fit_until_converged(None, time_budget=1e6, max_rounds=3, tune=600,
                                        draws=100)
        rounds = fit.info["convergence"]["rounds"]
        assert fit.info["convergence"]["stopped"] == "max rounds" and len(rounds) == 3
        for a, b in zip(rounds, rounds[1:], strict=False):
            d = a["diagnostics"]
            ess = min(d["min_ess_bulk"], d["min_ess_tail"])
            factor = b["draws"] / a["draws"]
            assert lo <= factor <= hi
            assert factor == pytest.approx(min(max(2.0, 500.0 / ess), 4.0), abs=0.02)
            # warm-up grows alike, up to TUNE_MAX (2000) iterations
            assert b["tune"] == pytest.approx(min(a["tune"] * factor, C.TUNE_MAX), abs=15)
        assert rounds[-1]["tune"] == C.TUNE_MAX
    assert rounds[0]["init"] == "support_point"
    assert rounds[1]["init"].startswith(f"jittered (+-{C.RESTART_JITTER}) around draws")


def test_a_worse_later_round_is_not_returned(monkeypatch):
    # round 1 mixes but is short (ESS below 400); the extended round 2 has a chain stuck in
    # another mode: out of rounds, the fit returned is round 1's, and the record says so
    def fake_fit(data, model, *, draws, tune, chains, seed, init, progress, warn, **kw):
        first = isinstance(init, str)
        return _FakeFit(_idata(n_chains=chains, n_draws=50 if first else 400,
                               stuck=None if first else 1, seed=seed), chains, tune, draws, seed)

    monkeypatch.setattr("cartkinetics.fit.population.fit_population", fake_fit)
    monkeypatch.setattr(C, "_starts_from_draws", lambda fit, chains, rng: [{"mu": 0.0}])
    with pytest.warns(RuntimeWarning, match="NOT converged"):
        fit = C.fit_until_converged(None, time_budget=1e6, max_rounds=2, tune=100, draws=50)
    conv = fit.info["convergence"]
    assert conv["stopped"] == "max rounds" and len(conv["rounds"]) == 2
    assert conv["rounds"][1]["diagnostics"]["max_rhat"] > 1.5
    assert conv["returned_round"] == 1 and fit.info["settings"]["draws"] == 50


def _clocked(monkeypatch, clock):
    """fit_population faked on a fake clock: a round costs one second per iteration (warm-up
    or draw), and its 4 x 10 IID draws (ESS about 40) ask for the largest growth, 4x."""
    def fake_fit(data, model, *, draws, tune, chains, seed, init, progress, warn, **kw):
        clock["t"] += tune + draws
        return _FakeFit(_idata(n_chains=chains, n_draws=10, seed=seed), chains, tune, draws,
                        seed)

    monkeypatch.setattr("cartkinetics.fit.population.fit_population", fake_fit)
    monkeypatch.setattr(C, "_starts_from_draws", lambda fit, chains, rng: [{"mu": 0.0}])
    monkeypatch.setattr(C, "time", types.SimpleNamespace(perf_counter=lambda: clock["t"]))


def _rounds(budget, clock):
    clock["t"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = C.fit_until_converged(None, time_budget=budget, max_rounds=5, tune=20,
                                    draws=100)
    conv = fit.info["convergence"]
    return conv, [(r["tune"], r["draws"]) for r in conv["rounds"]]


def test_an_extended_round_fits_the_budget_left(monkeypatch):
    # a 120 s first round (20 + 100 iterations); round 2 at 4x would take 80 + 400 s
    clock = {"t": 0.0}
    _clocked(monkeypatch, clock)
    # 300 s left: too little for 80 + 400; round 2 keeps the last warm-up (its chains start
    # from round 1's draws) and takes what is left as draws; after it nothing is left and the
    # fit stops, saying why
    conv, lengths = _rounds(420, clock)
    assert lengths == [(20, 100), (20, 280)] and conv["stopped"] == "time budget"
    # 1000 s left: round 2 fits, but a round twice as long after it would not (1440 s in
    # all), so round 2 takes every second left: one long round rather than a short one and
    # nothing
    conv, lengths = _rounds(1120, clock)
    assert lengths == [(20, 100), (80, 920)] and conv["stopped"] == "time budget"
    # with a long budget round 2 keeps its growth factor
    conv, lengths = _rounds(1e5, clock)
    assert lengths[1] == (80, 400) and conv["stopped"] == "max rounds"
    # a round too short to be worth it (fewer draws than the last) is not started
    conv, lengths = _rounds(200, clock)
    assert lengths == [(20, 100)] and conv["stopped"] == "time budget"


def test_divergences_alone_get_smaller_steps_not_more_draws(monkeypatch):
    """A round that meets R-hat and ESS but has divergent transitions is run again at the
    same length with the target acceptance halfway to 1; a round short of ESS is doubled."""
    calls = []

    def fake_fit(data, model, *, draws, tune, chains, seed, init, progress, warn, **kw):
        calls.append(kw.get("target_accept"))
        idata = _idata(n_chains=chains, n_draws=draws, seed=seed)
        if len(calls) == 1:
            idata.sample_stats["diverging"][0, 5] = True
        return _FakeFit(idata, chains, tune, draws, seed)

    monkeypatch.setattr("cartkinetics.fit.population.fit_population", fake_fit)
    monkeypatch.setattr(C, "_starts_from_draws", lambda fit, chains, rng: [{"mu": 0.0}])
    fit = C.fit_until_converged(None, time_budget=1e6, tune=500, draws=1000)
    rounds = fit.info["convergence"]["rounds"]
    assert fit.info["convergence"]["ok"]
    assert [(r["tune"], r["draws"]) for r in rounds] == [(500, 1000), (500, 1000)]
    assert rounds[1]["action"] == "smaller steps (same length)"
    assert calls == [None, 0.95] and rounds[1]["target_accept"] == 0.95


# ----------------------------------------------------------------- the CLI, end to end
@pytest.mark.slow
def test_cli_reports_not_converged_in_json_and_on_the_console(tmp_path, capsys):
    pytest.importorskip("nutpie")
    from cartkinetics.cli import main
    from cartkinetics.testing import simulate_stein_cohort

    df, _ = simulate_stein_cohort(3, seed=3)
    csv = tmp_path / "kin.csv"
    df.to_csv(csv, index=False)
    args = ["fit-population", str(csv), "--draws", "40", "--tune", "40", "--chains", "2"]
    # the default runs until converged: a budget of 1 s leaves the first round only
    assert main(args + ["--json", "--time-budget", "1"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    diag = out["diagnostics"]
    conv = out["convergence"]
    assert conv["ok"] is False and conv["stopped"] == "time budget"
    assert len(conv["rounds"]) == 1 and "stopped: time budget" in cap.err
    assert diag["ok"] is False
    assert any("ESS" in p for p in diag["problems"])
    assert diag["worst"] and {"quantity", "r_hat", "ess_bulk", "ess_tail"} <= set(diag["worst"][0])
    assert "NOT CONVERGED" in cap.err and diag["worst"][0]["quantity"] in cap.err
    assert out["seed"] is not None
    assert main(args + ["--no-until-converged"]) == 0
    cap = capsys.readouterr()
    assert "NOT CONVERGED" in cap.out and "worst:" in cap.out and "NOT CONVERGED" in cap.err


@pytest.mark.slow
def test_restarted_chains_join_the_kept_ones_in_a_real_fit():
    """_combine on real fits: kept chains and restarted chains in one posterior, every
    group rebuilt, the restarted chain's draws those of the new run."""
    pytest.importorskip("nutpie")
    from cartkinetics.data import read_kinetics
    from cartkinetics.fit.population import fit_population, prepare_population_data
    from cartkinetics.testing import simulate_stein_cohort

    df, _ = simulate_stein_cohort(3, seed=5)
    pdata = prepare_population_data(read_kinetics(df))
    kw = {"draws": 30, "tune": 40, "progress": False, "warn": False}
    fit = fit_population(pdata, chains=3, seed=1, **kw)
    starts = C._starts_from_draws(fit, [0, 1], np.random.default_rng(0), n=5)
    assert len(starts) == 5
    assert all(set(s) == {v.name for v in fit.pm_model.free_RVs} for s in starts)
    new = fit_population(pdata, chains=1, seed=2, init=starts, init_jitter=0.1, **kw)
    assert new.info["sampling"]["init"] == "5 given points, jittered"
    both = C._combine(fit, [0, 2], new)
    post = both.idata.posterior
    assert post.sizes["chain"] == 3 and post.sizes["draw"] == 30
    np.testing.assert_array_equal(post["mu"].values[1], fit.idata.posterior["mu"].values[2])
    np.testing.assert_array_equal(post["mu"].values[2], new.idata.posterior["mu"].values[0])
    assert both.idata.log_likelihood["log_y"].shape[:2] == (3, 30)
    assert both.idata.sample_stats.sizes["chain"] == 3
    d = both.diagnostics(warn=False)
    assert d["n_chains"] == 3


def test_report_plot_and_frame():
    import matplotlib

    matplotlib.use("Agg")
    rep = C.diagnose(_idata(n_draws=200, stuck=1))
    ax = rep.plot(k=4, title="worst")
    assert ax.get_title() == "worst" and len(ax.patches) == 4
    t = rep.to_frame()
    assert len(t) == 2 + 6 and t["failed"].any()
    assert len(repr(rep)) < 2000


def test_chains_each_in_a_poor_mode_of_its_own_are_stuck():
    """Two of four chains, each held apart in a mode of its own (different patients) at a
    much lower log density: leaving one chain out cannot bring R-hat near 1, the log density
    names both; the restart keeps the two good chains."""
    rng = np.random.default_rng(5)
    n_chains, n_draws = 4, 1000
    z = rng.standard_normal((n_chains, n_draws, 3, 2))
    logp = 3.0 * rng.standard_normal((n_chains, n_draws)) - 400.0
    z[1, :, 0, 0] += 5.0
    z[3, :, 2, 1] -= 5.0
    z[1, :, 1, 0] += 5.0
    z[3, :, 1, 0] -= 5.0
    logp[1] -= 40.0
    logp[3] -= 150.0
    idata = az.from_dict(
        posterior={"z": z}, sample_stats={"diverging": np.zeros((n_chains, n_draws), bool),
                                          "logp": logp},
        coords={"param": PARAMS, "patient": PATIENTS}, dims={"z": ["patient", "param"]},
    )
    rep = C.diagnose(idata)
    assert not rep.ok and sorted(rep.stuck_chains) == [1, 3]
    assert any("lower log density" in p for p in rep.problems)
    # without the log density (a sampler that does not store it) no chain is singled out
    bare = az.from_dict(posterior={"z": z},
                        coords={"param": PARAMS, "patient": PATIENTS},
                        dims={"z": ["patient", "param"]})
    assert C.diagnose(bare).stuck_chains == []


def test_chains_of_one_mode_are_not_called_low():
    """Chains that mix well but whose log density is spread widely (a hierarchical posterior's
    many dimensions) are never called stuck by the log-density rule."""
    rng = np.random.default_rng(6)
    logp = 15.0 * rng.standard_normal((4, 1000)) - 400.0
    idata = az.from_dict(posterior={"x": rng.standard_normal((4, 1000))},
                         sample_stats={"logp": logp})
    assert C._low_logp_chains(C._logp_draws(idata)) == []


def test_the_best_chain_is_never_the_stuck_one():
    """Three chains share a poor mode (e.g. the one a shared start sits in) and one found a
    mode of much higher log density: the three are stuck, not the odd one out."""
    rng = np.random.default_rng(8)
    z = rng.standard_normal((4, 1000, 3, 2))
    logp = 3.0 * rng.standard_normal((4, 1000)) - 400.0
    z[1, :, 2, 0] += 6.0
    logp[[0, 2, 3]] -= 35.0
    idata = az.from_dict(
        posterior={"z": z}, sample_stats={"logp": logp},
        coords={"param": PARAMS, "patient": PATIENTS}, dims={"z": ["patient", "param"]},
    )
    assert sorted(C.diagnose(idata).stuck_chains) == [0, 2, 3]


def test_scaled_jitter_of_a_start():
    """fit_population(init_jitter=h): each chain starts within +-h of the given point on
    every unconstrained coordinate, a different start per chain seed, the same for the
    same seed."""
    import dataclasses

    from cartkinetics.fit.population.sampling import _with_jitter

    @dataclasses.dataclass(frozen=True)
    class Compiled:
        initial_point_func: object

    base = np.array([0.0, 1.0, -2.0, 5.0])
    c = _with_jitter(Compiled(lambda seed: base.copy()), 0.1)
    a, b = c.initial_point_func(1), c.initial_point_func(2)
    assert np.all(np.abs(a - base) <= 0.1) and np.all(np.abs(b - base) <= 0.1)
    assert not np.allclose(a, b) and np.array_equal(a, c.initial_point_func(1))
    assert np.abs(a - base).max() > 0.01  # jittered, not the point itself

    # several starts: each chain within +-h of one of them, picked by its seed
    pool = np.array([[0.0, 0.0, 0.0, 0.0], [10.0, 10.0, 10.0, 10.0], [-10.0] * 4])
    c = _with_jitter(Compiled(lambda seed: base.copy()), 0.1, pool)
    rows = set()
    for seed in range(40):
        x = c.initial_point_func(seed)
        near = [k for k in range(3) if np.all(np.abs(x - pool[k]) <= 0.1)]
        assert len(near) == 1
        rows.add(near[0])
        assert np.array_equal(x, c.initial_point_func(seed))
    assert rows == {0, 1, 2}


@pytest.mark.slow
def test_unconstrained_starts_are_nutpies_layout():
    """unconstrained_points gives, for a constrained point, the vector nutpie itself starts
    from when given that point without jitter (its own transforms and layout)."""
    nutpie = pytest.importorskip("nutpie")
    from cartkinetics.data import read_kinetics
    from cartkinetics.fit.population import fit_population
    from cartkinetics.fit.population.sampling import unconstrained_points
    from cartkinetics.testing import simulate_stein_cohort

    df, _ = simulate_stein_cohort(3, seed=5)
    fit = fit_population(read_kinetics(df), chains=2, draws=20, tune=30, seed=1,
                         progress=False, warn=False)
    post = fit.idata.posterior
    names = [v.name for v in fit.pm_model.free_RVs]
    points = [{n: post[n].isel(chain=c, draw=d).values for n in names}
              for c, d in ((0, 3), (1, 11))]
    rows = unconstrained_points(fit.pm_model, points)
    for p, row in zip(points, rows, strict=True):
        compiled = nutpie.compile_pymc_model(fit.pm_model, backend="numba",
                                             initial_points=p, jitter_rvs=set())
        np.testing.assert_allclose(compiled.initial_point_func(0), row, rtol=0, atol=1e-12)
