"""Outcome code against closed forms (independent of the code under test)."""

import math

import numpy as np
import pytest

from cartkinetics.outcomes import OUTCOME_KEYS, auc_linlog, batch_curve_outcomes, curve_outcomes


def test_auc_exponential_decline_matches_integral():
    # log-down trapezoids are exact for a mono-exponential decline
    t = np.array([0.0, 2.0, 7.0, 20.0, 40.0])
    k = 0.13
    c = 500 * np.exp(-k * t)
    assert auc_linlog(t, c, 28.0) == pytest.approx(500 * (1 - math.exp(-k * 28)) / k, rel=1e-12)


def test_auc_linear_up_log_down_by_hand():
    t = np.array([0.0, 1.0, 4.0, 7.0])
    c = np.array([0.0, 10.0, 40.0, 20.0])
    # 0-1 and 1-4 linear (rising): 5 + 75; 4-7 log-down: (40-20)*3/ln 2
    assert auc_linlog(t, c) == pytest.approx(80 + 60 / math.log(2), rel=1e-12)
    # t_end inside a falling interval: level interpolated log-linearly
    c55 = 40 * 0.5 ** (1.5 / 3)
    assert auc_linlog(t, c, 5.5) == pytest.approx(80 + (40 - c55) * 1.5 / math.log(40 / c55))


def test_dense_curve_outcomes_converge_to_closed_form():
    # biexponential after a peak at 9.3 d: the shape of Stein 2019
    tmax, cmax, a, b, fb = 9.3, 24000.0, 0.16, 0.0032, 0.0079
    rho = math.log(3900) / tmax

    def f(t):
        return np.where(
            t < tmax,
            cmax / 3900 * np.exp(rho * np.minimum(t, tmax)),
            cmax * ((1 - fb) * np.exp(-a * (t - tmax)) + fb * np.exp(-b * (t - tmax))),
        )

    t = np.linspace(0, 800, 80001)
    o = curve_outcomes(t, f(t), lloq=50.0)
    exact_auc = (cmax - cmax / 3900) / rho + cmax * (
        (1 - fb) * (1 - math.exp(-a * (28 - tmax))) / a + fb * (1 - math.exp(-b * (28 - tmax))) / b
    )
    assert o["cmax"] == pytest.approx(cmax, rel=1e-6)
    assert o["tmax"] == pytest.approx(tmax, abs=0.01)
    assert o["auc_0_28"] == pytest.approx(exact_auc, rel=1e-5)
    assert o["c_day28"] == pytest.approx(float(f(np.array(28.0))), rel=1e-8)
    # persistence: solve cmax*(...)=50 by bisection, independently
    lo, hi = 30.0, 800.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(np.array(mid)) > 50 else (lo, mid)
    assert o["persistence"] == pytest.approx(lo, abs=0.01)
    assert o["persistence_censored"] == 0.0


def test_batch_matches_single_and_failed_rows_are_nan():
    t = np.linspace(0, 60, 121)
    rng = np.random.default_rng(1)
    C = np.exp(-((t[None, :] - rng.uniform(5, 20, (5, 1))) ** 2) / 20) * 1e3
    C[2, 7] = np.nan
    out = batch_curve_outcomes(t, C, lloq=10.0)
    for j in (0, 1, 3, 4):
        single = curve_outcomes(t, C[j], lloq=10.0)
        for k in OUTCOME_KEYS:
            np.testing.assert_equal(out[k][j], single[k])
    assert all(np.isnan(out[k][2]) for k in OUTCOME_KEYS)


def test_unsorted_times_rejected():
    with pytest.raises(ValueError, match="sorted"):
        auc_linlog(np.array([0.0, 2.0, 1.0]), np.ones(3))


def test_smooth_peak_refined_between_grid_points():
    t = np.arange(0.0, 40.0, 1.0)
    c = 1e3 * np.exp(-((t - 9.3) ** 2) / 8.0)  # ln c is a parabola: refinement is exact
    o = curve_outcomes(t, c)
    assert o["tmax"] == pytest.approx(9.3, abs=1e-9)
    assert o["cmax"] == pytest.approx(1e3, rel=1e-9)
    assert curve_outcomes(t, c, refine_peak=False)["tmax"] == 9.0


def test_expansion_peak_rule_on_small_curves():
    from cartkinetics.outcomes import expansion_peak, expansion_start

    t = np.array([0.0, 1, 4, 7, 10, 14])
    # falls from day 0 (infused cells), first local minimum at day 1, peak at day 10
    c = np.array([5e4, 10.0, 800, 6e3, 2e4, 9e3])
    assert expansion_start(t, c) == 1 and expansion_peak(t, c) == 4
    o = curve_outcomes(t, c, refine_peak=False)
    assert (o["cmax"], o["tmax"]) == (2e4, 10.0)
    # rises from day 0: the highest level, as in any NCA
    assert expansion_start(t, np.arange(6.0)) == 0
    # starts after day 0 and falls: its first point is the observed peak
    assert expansion_peak(t + 3, np.array([9.0, 5, 4, 3, 2, 1])) == 0
    # falls from day 0 and never rises: no expansion peak
    o = curve_outcomes(t, np.array([9.0, 5, 4, 3, 2, 1]))
    assert np.isnan(o["cmax"]) and np.isnan(o["tmax"])
    assert o["auc_0_last"] > 0


@pytest.mark.slow
def test_singh2021_peak_is_the_expansion_not_the_infusion():
    # Singh 2021 doses into the observed blood compartment: the transgene level at day 0 is
    # the infusion (180,000 copies/ug for the typical patient); the expansion peaks ~day 14
    from cartkinetics import models
    from cartkinetics.simulate import simulate
    from cartkinetics.simulate.scenarios import Scenario

    m = models.get("singh2021")
    t = np.concatenate([[0.0], np.arange(0.05, 60.0, 0.05)])
    c = m.solve(t, "clinical").observed["transgene"]
    assert c[0] == c.max()  # the infusion is the global maximum of the curve
    o = curve_outcomes(t, c)
    # independent: the highest level from day 1 on, refined by a parabola on ln c
    late = t >= 1.0
    j = int(np.argmax(np.where(late, c, -np.inf)))
    x, y = t[j - 1 : j + 2], np.log(c[j - 1 : j + 2])
    a, b, _ = np.polyfit(x, y, 2)
    assert 12.0 < o["tmax"] < 16.0
    assert o["tmax"] == pytest.approx(-b / (2 * a), abs=0.01)
    assert o["cmax"] == pytest.approx(c[j], rel=1e-3) and o["cmax"] < c[0] / 4
    # virtual patients through the simulation engine (the same outcome kernel)
    res = simulate("singh2021", n=4, seed=1, horizon=60, scenarios=Scenario(dose=450e6))
    out = res.outcomes
    assert (out["tmax"] > 5.0).all() and np.isfinite(out["cmax"]).all()
