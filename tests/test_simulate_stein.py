"""Simulation of the Stein 2019 model against closed forms and the published values."""

import math

import numpy as np
import pandas as pd
import pytest

from cartkinetics import models
from cartkinetics.simulate import (
    DoseExposure,
    DrawsPopulation,
    ModelPopulation,
    Scenario,
    scenario_grid,
    simulate,
)

# Stein 2019 Table 1 typical values, written here independently of the library
FOLDX, TMAX, CMAX, ALPHA, FB, BETA = 3900.0, 9.3, 24000.0, 0.16, 0.0079, 0.0032
OMEGA2 = {"foldx": 2.4, "tmax": 0.38, "cmax": 0.65, "alpha": 0.91, "fb": 0.80, "beta": 0.86}


def stein_closed_form(t, foldx=FOLDX, tmax=TMAX, cmax=CMAX, alpha=ALPHA, fb=FB, beta=BETA):
    t = np.asarray(t, dtype=float)
    rho = math.log(foldx) / tmax
    return np.where(
        t < tmax,
        cmax / foldx * np.exp(rho * t),
        cmax * ((1 - fb) * np.exp(-alpha * (t - tmax)) + fb * np.exp(-beta * (t - tmax))),
    )


def auc_0_28_exact(foldx, tmax, cmax, alpha, fb, beta):
    """Integral of the closed form from 0 to 28 days (tmax < 28)."""
    rho = math.log(foldx) / tmax
    rise = (cmax - cmax / foldx) / rho
    d = 28 - tmax
    return rise + cmax * ((1 - fb) * (1 - math.exp(-alpha * d)) / alpha
                          + fb * (1 - math.exp(-beta * d)) / beta)


def test_typical_patient_curve_equals_closed_form():
    pop = ModelPopulation("stein2019", omega={})  # no variability: every patient typical
    res = simulate("stein2019", n=4, population=pop, keep_curves=4, seed=0)
    t, C = res.curves["default"]
    assert C.shape == (4, t.size)
    np.testing.assert_allclose(C, np.tile(stein_closed_form(t), (4, 1)), rtol=1e-12)
    row = res.outcomes.iloc[0]
    assert row["cmax"] == pytest.approx(CMAX, rel=1e-12)
    assert row["tmax"] == pytest.approx(TMAX, rel=1e-12)
    assert row["c_day28"] == pytest.approx(float(stein_closed_form(28.0)), rel=1e-12)
    assert row["c_day365"] == pytest.approx(float(stein_closed_form(365.0)), rel=1e-12)
    # linear-up trapezoids on the 0.25-day rise overestimate the exponential rise slightly
    assert row["auc_0_28"] == pytest.approx(auc_0_28_exact(FOLDX, TMAX, CMAX, ALPHA, FB, BETA),
                                            rel=2e-3)


@pytest.mark.slow
def test_population_median_cmax_tmax_equal_published_within_mc_error():
    n = 40_000
    res = simulate("stein2019", n=n, seed=2024, keep_params=True)
    o = res.outcomes
    assert (o["status"] == 0).all()
    for key, typical in (("cmax", CMAX), ("tmax", TMAX)):
        omega = math.sqrt(OMEGA2[key])
        # Monte-Carlo SE of the median of a log-normal sample, on the log scale
        se = math.sqrt(math.pi / 2) * omega / math.sqrt(n)
        z = (math.log(np.median(o[key])) - math.log(typical)) / se
        assert abs(z) < 4, (key, z)
        # the spread is the published variance omega^2 (not an SD): SE of an SD ~ sd/sqrt(2n)
        sd = np.std(np.log(o[key]), ddof=1)
        assert abs(sd - omega) < 4 * omega / math.sqrt(2 * n), (key, sd, omega)
    # the simulated peak of every patient is his own Cmax/Tmax parameter (peak on the grid)
    np.testing.assert_allclose(o["cmax"], o["param_cmax"], rtol=1e-12)
    np.testing.assert_allclose(o["tmax"], o["param_tmax"], rtol=1e-12)


def test_auc_and_levels_match_closed_form_per_patient():
    res = simulate("stein2019", n=3000, seed=7, keep_params=True)
    o = res.outcomes
    P = o[[f"param_{k}" for k in ("foldx", "tmax", "cmax", "alpha", "fb", "beta")]].to_numpy()
    early = P[:, 1] < 20  # the exact integral below assumes Tmax < 28
    exact = np.array([auc_0_28_exact(*p) for p in P[early]])
    rel = o["auc_0_28"].to_numpy()[early] / exact - 1
    assert np.median(np.abs(rel)) < 1e-3
    assert np.max(np.abs(rel)) < 0.03  # fast expanders: linear-up on a steep rise
    c28 = np.array([stein_closed_form(28.0, *p) for p in P])
    np.testing.assert_allclose(o["c_day28"], c28, rtol=1e-10)


def test_comedication_second_infusion_match_model_solve_batch():
    m = models.get("stein2019")
    sc = Scenario(tocilizumab_day=3.0, second_infusion_day=60.0,
                  second_factors={"cmax": 2.0, "tmax": 0.7})
    res = simulate("stein2019", n=40, scenarios=[sc], keep_curves=40, keep_params=True, seed=3)
    t, C = res.curves[sc.name]
    P = res.outcomes[[f"param_{k}" for k in m.param_names]].to_numpy()
    first = m.solve_batch(t, P, covariates={"tocilizumab_day": np.full(40, 3.0)})
    P2 = P.copy()
    P2[:, m.param_names.index("cmax")] *= 2.0
    P2[:, m.param_names.index("tmax")] *= 0.7
    second = np.zeros_like(C)
    second[:, t >= 60] = m.solve_batch(t[t >= 60] - 60, P2).observed["transgene"]
    np.testing.assert_allclose(C, first.observed["transgene"] + second, rtol=1e-12)
    # outcomes of the second infusion are in days since it; its peak is at the new Tmax
    # unless the first curve is still higher there
    o = res.outcomes
    assert np.all(o["inf2_tmax"] <= P2[:, 1] + 1e-9)
    assert np.all(o["tmax"] <= 60)


def test_split_dose_is_superposition_of_fractions():
    m = models.get("stein2019")
    sc = Scenario(split_days=(0, 1, 2), split_fractions=(0.1, 0.3, 0.6))
    res = simulate("stein2019", n=10, scenarios=[sc], keep_curves=10, keep_params=True, seed=5)
    t, C = res.curves[sc.name]
    P = res.outcomes[[f"param_{k}" for k in m.param_names]].to_numpy()
    ref = np.zeros_like(C)
    for day, frac in ((0, 0.1), (1, 0.3), (2, 0.6)):
        ref[:, t >= day] += frac * m.solve_batch(t[t >= day] - day, P).observed["transgene"]
    np.testing.assert_allclose(C, ref, rtol=1e-12)
    assert any("superposed" in n for n in res.notes)


def test_dose_exponent_zero_is_the_published_model_and_says_so():
    grid = scenario_grid(dose_per_kg=[1e6, 5e6])
    res = simulate("stein2019", n=500, scenarios=grid, seed=1)
    a = res.outcomes[res.outcomes["scenario"] == grid[0].name]
    b = res.outcomes[res.outcomes["scenario"] == grid[1].name]
    np.testing.assert_array_equal(a["cmax"].to_numpy(), b["cmax"].to_numpy())
    assert any("no dose covariate" in n for n in res.notes)


def test_dose_exponent_one_scales_exposure_with_dose():
    grid = scenario_grid(dose_per_kg=[1e6, 5e6])
    res = simulate("stein2019", n=500, scenarios=grid, seed=1, dose_exponent=1.0)
    o = res.outcomes
    a, b = (o[o["scenario"] == s.name] for s in grid)
    # same virtual patients under both doses: the ratio is exact, patient by patient
    np.testing.assert_allclose(b["cmax"].to_numpy() / a["cmax"].to_numpy(), 5.0, rtol=1e-12)
    np.testing.assert_allclose(b["auc_0_28"].to_numpy() / a["auc_0_28"].to_numpy(), 5.0,
                               rtol=1e-9)
    np.testing.assert_array_equal(a["tmax"].to_numpy(), b["tmax"].to_numpy())
    # reference dose: exposure at 3.1e6 cells/kg is the published one
    ref = simulate("stein2019", n=500, scenarios=[Scenario(dose_per_kg=3.1e6)], seed=1,
                   exposure=DoseExposure(1.0, 3.1e6))
    pub = simulate("stein2019", n=500, seed=1)
    np.testing.assert_allclose(ref.outcomes["cmax"], pub.outcomes["cmax"], rtol=1e-12)


def test_flat_dose_uses_body_weight():
    res = simulate("stein2019", n=2000, scenarios=[Scenario(dose=2e8)], weight="lognormal:70,0.2",
                   seed=4, dose_exponent=1.0, keep_params=True)
    o = res.outcomes
    np.testing.assert_allclose(o["dose_per_kg"], 2e8 / o["weight"], rtol=1e-12)
    assert abs(math.log(np.median(o["weight"]) / 70)) < 4 * 1.2533 * 0.2 / math.sqrt(2000)
    np.testing.assert_allclose(o["cmax"], o["param_cmax"] * (2e8 / o["weight"]) / 3.1e6,
                               rtol=1e-12)


def test_summary_targets_and_json():
    res = simulate("stein2019", n=2000, seed=9)
    o = res.outcomes
    s = res.summary(targets={"auc_0_28": 1e5})
    assert s.loc[0, "cmax_median"] == pytest.approx(np.median(o["cmax"]))
    assert s.loc[0, "cmax_p95"] == pytest.approx(np.percentile(o["cmax"], 95))
    p = s.loc[0, "p_auc_0_28_ge_100000"]
    assert p == pytest.approx(np.mean(o["auc_0_28"] >= 1e5))
    assert s.loc[0, "p_auc_0_28_ge_100000_lo"] < p < s.loc[0, "p_auc_0_28_ge_100000_hi"]
    js = res.to_json_summary()
    assert set(js[0]) >= {"scenario", "n", "cmax", "tmax", "auc_0_28"}
    assert set(js[0]["cmax"]) == {"median", "p05", "p95"}


def test_same_seed_same_numbers_different_seed_different():
    a = simulate("stein2019", n=3000, seed=11, chunk_size=1000)
    b = simulate("stein2019", n=3000, seed=11, chunk_size=1000)
    c = simulate("stein2019", n=3000, seed=12, chunk_size=1000)
    pd.testing.assert_frame_equal(a.outcomes, b.outcomes)
    assert not np.array_equal(a.outcomes["cmax"], c.outcomes["cmax"])
    assert a.outcomes["patient"].tolist() == list(range(3000))


def test_posterior_draws_propagate_parameter_uncertainty():
    # population-level draws: typical Cmax uncertain (two values), no between-subject
    # variability -> virtual patients take exactly one of the two drawn values
    draws = pd.DataFrame({"cmax": [10_000.0, 40_000.0], "omega_cmax": [0.0, 0.0]})
    pop = DrawsPopulation("stein2019", draws=draws, level="population")
    res = simulate("stein2019", n=2000, population=pop, seed=3)
    values = np.unique(np.round(res.outcomes["cmax"], 6))
    np.testing.assert_allclose(values, [10_000.0, 40_000.0])
    frac = np.mean(np.isclose(res.outcomes["cmax"], 10_000.0))
    assert abs(frac - 0.5) < 4 * 0.5 / math.sqrt(2000)


def test_parquet_partitions_without_collecting(tmp_path):
    grid = scenario_grid(dose_per_kg=[1e6, 5e6])
    kw = dict(n=2500, scenarios=grid, seed=8, chunk_size=1000, dose_exponent=1.0)
    streamed = simulate("stein2019", out=tmp_path / "run", collect=False, **kw)
    assert streamed.outcomes is None
    assert len(list((tmp_path / "run" / "outcomes").glob("part-*.parquet"))) == 3
    collected = simulate("stein2019", **kw)
    pd.testing.assert_frame_equal(streamed.summary(), collected.summary())
    assert (tmp_path / "run" / "summary.json").exists()
