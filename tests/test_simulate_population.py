"""Virtual populations (fits, draws, covariates) and bad input."""

import math

import numpy as np
import pandas as pd
import pytest

from cartkinetics.errors import CartKineticsError
from cartkinetics.simulate import (
    DrawsPopulation,
    Empirical,
    FitTablePopulation,
    LogNormal,
    ModelPopulation,
    Scenario,
    parse_distribution,
    scenario_grid,
    simulate,
)
from cartkinetics.simulate.chunks import chunk_rng


def test_fit_table_sample_reuses_rows_and_skips_failed_fits():
    table = pd.DataFrame({
        "patient": ["a", "b", "c"],
        "cmax": [1e4, 5e4, 9e4],
        "tmax": [8.0, 12.0, 15.0],
        "status": ["ok", "ok", "failed"],
    })
    pop = FitTablePopulation("stein2019", table=table, method="sample")
    assert pop.n_excluded == 1
    P, covs = pop.sample(np.random.default_rng(0), 500)
    assert set(np.unique(P[:, 2])) == {1e4, 5e4}  # the failed row never appears
    # parameters the table lacks take the typical value
    assert np.all(P[:, 0] == 3900.0)
    assert covs["weight"].shape == (500,)


def test_fit_table_lognormal_recovers_the_generating_distribution():
    rng = np.random.default_rng(1)
    n = 4000
    cov = np.array([[0.5, 0.2], [0.2, 0.3]])
    z = rng.multivariate_normal([math.log(2e4), math.log(10.0)], cov, size=n)
    table = pd.DataFrame({"cmax": np.exp(z[:, 0]), "tmax": np.exp(z[:, 1])})
    pop = FitTablePopulation("stein2019", table=table, method="lognormal")
    P, _ = pop.sample(np.random.default_rng(2), 20000)
    logs = np.log(P[:, [2, 1]])
    np.testing.assert_allclose(logs.mean(axis=0), [math.log(2e4), math.log(10.0)], atol=0.05)
    np.testing.assert_allclose(np.cov(logs, rowvar=False), cov, atol=0.05)


def test_individual_draws_each_patient_is_one_draw():
    draws = np.tile([3900.0, 9.3, 24000.0, 0.16, 0.0079, 0.0032], (3, 1))
    draws[:, 2] = [1e4, 2e4, 3e4]
    pop = DrawsPopulation("stein2019", draws=draws, level="individual")
    res = simulate("stein2019", n=300, population=pop, seed=0)
    assert set(np.round(res.outcomes["cmax"], 6)) == {1e4, 2e4, 3e4}


def test_model_population_variances_and_covariate_override():
    pop = ModelPopulation("stein2019", covariates={"weight": 50.0, "tmax": LogNormal(12.0, 0.0)})
    P, covs = pop.sample(np.random.default_rng(0), 1000)
    assert np.all(covs["weight"] == 50.0)
    assert np.allclose(P[:, 1], 12.0)  # the covariate replaced the parameter column
    # omega^2 of cmax is 0.65: the SD of log cmax is sqrt(0.65)
    assert abs(np.std(np.log(P[:, 2])) - math.sqrt(0.65)) < 4 * math.sqrt(0.65 / 2000)


def test_distributions_parse():
    assert parse_distribution("70").sample(np.random.default_rng(0), 2).tolist() == [70.0, 70.0]
    d = parse_distribution("lognormal:70,0.2")
    assert isinstance(d, LogNormal) and d.median == 70 and d.sigma == 0.2
    assert isinstance(parse_distribution([60, 80]), Empirical)
    with pytest.raises(CartKineticsError):
        parse_distribution("lognormal:70")
    with pytest.raises(CartKineticsError):
        parse_distribution("no-such-file.csv")


def test_weight_file_bad_row_is_named(tmp_path):
    f = tmp_path / "w.csv"
    f.write_text("weight\n70\n-3\n")
    with pytest.raises(CartKineticsError, match="row 2"):
        parse_distribution(str(f))


def test_chunk_streams_are_seedsequence_spawn_children():
    children = np.random.SeedSequence(42).spawn(3)
    for c in range(3):
        a = chunk_rng(42, c).standard_normal(5)
        b = np.random.default_rng(children[c]).standard_normal(5)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n"),
        ({"n": -5}, "n"),
        ({"n": 2.5}, "n"),
        ({"model": "no_such_model"}, "unknown model"),
        ({"scenarios": [Scenario(parameter_factors={"nope": 2.0})]}, "no parameter 'nope'"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, "not both"),
        ({"lloq": -1.0}, "lloq"),
        ({"collect": False}, "out=DIR"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {"model": "stein2019", "n": 10}
    args.update(kwargs)
    with pytest.raises(CartKineticsError, match=match):
        simulate(**args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dose_per_kg": -1e6},
        {"dose": 0.0},
        {"dose": 1e8, "dose_per_kg": 1e6},
        {"split_days": (0, 1), "split_fractions": (0.5, 0.4)},
        {"second_infusion_day": -3.0},
        {"dose_per_kg": float("nan")},
    ],
)
def test_bad_scenario_raises(kwargs):
    with pytest.raises(CartKineticsError):
        Scenario(**kwargs)


def test_bad_grid_and_population_inputs():
    with pytest.raises(CartKineticsError, match="unknown scenario factor"):
        scenario_grid(dose_per_kilo=[1e6])
    with pytest.raises(CartKineticsError, match="none of the parameters"):
        FitTablePopulation("stein2019", table=pd.DataFrame({"x": [1.0]}))
    with pytest.raises(CartKineticsError, match="no published between-subject"):
        ModelPopulation("kimmel2021")
    with pytest.raises(CartKineticsError, match="neither 'weight' nor a parameter"):
        ModelPopulation("stein2019", covariates={"height": 170.0})
    with pytest.raises(CartKineticsError, match="no comedication"):
        simulate("kimmel2021", n=2, population=ModelPopulation("kimmel2021", omega={}),
                 scenarios=[Scenario(dose=1e8, tocilizumab_day=2.0)])


def test_failed_patients_are_reported_not_fatal():
    # fb > 1 is an invalid Stein parameter set: those patients get status 4 and NaN outcomes
    table = pd.DataFrame({"fb": [0.01, 1.5]})
    pop = FitTablePopulation("stein2019", table=table)
    res = simulate("stein2019", n=200, population=pop, seed=1, keep_params=True)
    o = res.outcomes
    bad = o["param_fb"] > 1
    assert bad.any() and (~bad).any()
    assert (o.loc[bad, "status"] == 4).all() and o.loc[bad, "cmax"].isna().all()
    assert (o.loc[~bad, "status"] == 0).all() and o.loc[~bad, "cmax"].notna().all()
    s = res.summary()
    assert s.loc[0, "n_failed"] == int(bad.sum())


def test_from_posterior_uses_mu_omega_and_infusion_effect():
    import xarray as xr

    from cartkinetics import models

    names = ["foldx", "tmax", "cmax", "alpha", "fb", "beta"]
    typical = np.array([3900.0, 9.3, 24000.0, 0.16, 0.0079, 0.0032])
    mu = np.log(typical)
    mu[4] = math.log(0.0079 / (1 - 0.0079))  # fractions are on the logit scale in the fit
    chains, draws = 2, 50
    rng = np.random.default_rng(0)
    mu_d = mu + 0.05 * rng.standard_normal((chains, draws, 6))
    om_d = np.full((chains, draws, 6), 0.3)
    delta = np.zeros((chains, draws, 2))
    delta[..., 0] = math.log(2.0)  # second infusion: Cmax x2, Tmax unchanged
    post = xr.Dataset({
        "mu": (("chain", "draw", "param"), mu_d),
        "omega": (("chain", "draw", "param"), om_d),
        "delta": (("chain", "draw", "effect"), delta),
        "tau": (("chain", "draw", "effect"), np.zeros((chains, draws, 2))),
    }, coords={"param": names, "effect": ["cmax", "tmax"]})

    class FakeResult:
        idata = type("I", (), {"posterior": post})()
        model = models.get("stein2019")

    n = 20000
    se = math.sqrt(math.pi / 2) * math.sqrt(0.3**2 + 0.05**2) / math.sqrt(n)
    # the population median sits at the mean of the drawn typical values (log scale)
    centre = np.exp(mu_d.reshape(-1, 6).mean(axis=0))
    p1 = DrawsPopulation.from_posterior(FakeResult())
    P1, _ = p1.sample(np.random.default_rng(1), n)
    assert abs(math.log(np.median(P1[:, 2]) / centre[2])) < 4 * se
    fb_median = np.median(P1[:, 4])
    assert abs(math.log(fb_median / 0.0079)) < 0.05  # logit scale back-transformed
    p2 = DrawsPopulation.from_posterior(FakeResult(), infusion=2)
    P2, _ = p2.sample(np.random.default_rng(1), n)
    assert abs(math.log(np.median(P2[:, 2]) / (2 * centre[2]))) < 4 * se
    assert abs(math.log(np.median(P2[:, 1]) / centre[1])) < 4 * se


def test_fit_cohort_style_table_is_accepted():
    # the layout of cartkinetics.fit_cohort(...).table: status strings, assay, extra columns
    table = pd.DataFrame({
        "patient": ["P1", "P1", "P2", "P2", "P3"],
        "infusion": [1, 2, 1, 2, 1],
        "assay": ["qpcr"] * 5,
        "status": ["converged", "converged", "converged_singular", "max_iterations", "error"],
        "cmax": [1e4, 3e4, 2e4, 9e9, np.nan],
        "cmax_se": [1.0] * 5,
        "tmax": [12.0, 10.0, 14.0, 1.0, np.nan],
        "model_auc_0_28": [1.0] * 5,
    })
    pop = FitTablePopulation("stein2019", table=table, infusion=1, assay="qpcr")
    assert pop.n_excluded == 1  # the failed fit of P3
    P, _ = pop.sample(np.random.default_rng(0), 400)
    assert set(P[:, 2]) == {1e4, 2e4}
    with pytest.raises(CartKineticsError, match="several assays"):
        FitTablePopulation("stein2019", table=table.assign(assay=["qpcr", "flow"] * 2 + ["qpcr"]))
