"""Mechanistic (ODE) models in the simulator, against scipy solve_ivp."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from cartkinetics import models
from cartkinetics.simulate import ModelPopulation, Scenario, TumourSpec, simulate
from cartkinetics.simulate.chunks import tumour_outcomes


def kimmel_rhs(t, y, p):
    """Kimmel 2021 equations, written here independently of the library."""
    K_N, K_C, r_N, rho_C, a, b, r_B, gamma_B, k_B = p[:9]
    N, C, B = y
    T = N + C
    r_C = rho_C + b * (T - K_N) ** 2 / (a * T**2 + (T - K_N) ** 2)
    return [
        -r_N * N * np.log(T / K_N),
        -r_C * C * np.log(T / K_C),
        r_B * B - gamma_B * B * C / (k_B + C),
    ]


@pytest.fixture(scope="module")
def kimmel_run():
    pop = ModelPopulation("kimmel2021", omega={"rho_C": 0.1, "b": 0.1, "gamma_B": 0.1})
    scs = [
        Scenario(dose=1.8e8, name="one"),
        Scenario(dose=1.8e8, second_infusion_day=120.0, name="two, LD"),
        Scenario(dose=1.8e8, second_infusion_day=120.0, lymphodepletion=False, name="two, no LD"),
    ]
    res = simulate("kimmel2021", n=6, population=pop, scenarios=scs, seed=5, keep_curves=6,
                   keep_params=True, tumour=TumourSpec("tumour", 0.01))
    return res


def _reference(model, p, t, dose, second=None, reset_n=False):
    """solve_ivp (Radau, tight tolerances) of the state C in cells, piecewise over doses."""
    y0 = [p[9], dose, p[11]]
    t1 = t if second is None else t[t <= second]
    sol = solve_ivp(kimmel_rhs, (0, t1[-1]), y0, args=(p,), t_eval=t1, method="Radau",
                    rtol=1e-10, atol=1e-3)
    C = sol.y[1]
    if second is None:
        return C
    y = sol.y[:, -1].copy()
    y[1] += dose
    if reset_n:
        y[0] = p[9]
    t2 = t[t >= second]
    sol2 = solve_ivp(kimmel_rhs, (second, t2[-1]), y, args=(p,), t_eval=t2, method="Radau",
                     rtol=1e-10, atol=1e-3)
    return np.concatenate([C[:-1], sol2.y[1]])


@pytest.mark.slow
def test_kimmel_curves_match_solve_ivp_with_and_without_lymphodepletion(kimmel_run):
    m = models.get("kimmel2021")
    res = kimmel_run
    P = res.outcomes[[f"param_{k}" for k in m.param_names]].to_numpy()[:6]
    # the observation car_t_blood is proportional to the state C
    t, C = res.curves["one"]
    scale = C[0, 0] / 1.8e8
    for i in range(2):
        ref = _reference(m, P[i], t, 1.8e8)
        np.testing.assert_allclose(C[i], scale * ref, rtol=2e-4)
    for name, reset in (("two, LD", True), ("two, no LD", False)):
        t, C = res.curves[name]
        ref = _reference(m, P[0], t, 1.8e8, second=120.0, reset_n=reset)
        np.testing.assert_allclose(C[0], scale * ref, rtol=2e-4)


def test_kimmel_second_infusion_needs_lymphodepletion(kimmel_run):
    o = kimmel_run.outcomes
    ld = o[o["scenario"] == "two, LD"]
    no = o[o["scenario"] == "two, no LD"]
    # Kimmel 2021: re-expansion only after lymphodepletion resets the normal T cells
    # without it the second infusion only declines: no expansion peak (NaN, the one
    # definition of the expansion peak in cartkinetics.outcomes)
    assert np.all(np.isfinite(ld["inf2_cmax"].to_numpy()))
    assert np.all(np.isnan(no["inf2_cmax"].to_numpy()))
    assert np.all(np.isnan(no["inf2_tmax"].to_numpy()))
    assert (o["status"] == 0).all()
    assert o["tumour_below_day"].notna().any()


def test_tumour_outcomes_on_a_known_curve():
    t = np.linspace(0, 100, 1001)
    B = np.vstack([
        1e3 * np.exp(-0.2 * t) + 1e3 * np.exp(0.1 * (t - 100)) * 1e-3,  # dips, then regrows
        1e3 * np.ones_like(t),  # no response
    ])
    out = tumour_outcomes(t, B, 0.01, relative=True)
    thr = 0.01 * B[0, 0]
    below = t[np.argmax(B[0] <= thr)]
    assert out["tumour_below_day"][0] == pytest.approx(below)
    assert out["tumour_nadir"][0] == pytest.approx(B[0].min())
    assert np.isnan(out["tumour_below_day"][1]) and np.isnan(out["tumour_relapse_day"][1])
    # relapse: back above the threshold after having gone below
    B2 = np.where(t < 50, 1e3 * np.exp(-0.2 * t), 1e3 * np.exp(-0.2 * 50) * np.exp(0.3 * (t - 50)))
    r = tumour_outcomes(t, B2[None, :], 0.01)
    assert 50 < r["tumour_relapse_day"][0] < 70


def test_stein_ode_form_gives_the_closed_form_levels():
    # the ODE form goes through the numba batch solver with Tmax as a breakpoint
    a = simulate("stein2019_ode", n=300, seed=1).outcomes
    b = simulate("stein2019", n=300, seed=1).outcomes
    assert (a["status"] == 0).all()
    for k in ("c_day28", "c_day90", "c_day365"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4)
    # on the shared grid the ODE form's peak (a kink at Tmax) can fall between grid points;
    # the closed-form path puts each patient's Tmax on his grid
    assert np.all(a["cmax"] <= b["cmax"] * (1 + 1e-6))


def test_plots_draw_bands_and_exposure():
    import matplotlib

    matplotlib.use("Agg")
    from cartkinetics.simulate import scenario_grid

    res = simulate("stein2019", n=200, scenarios=scenario_grid(dose_per_kg=[1e6, 5e6]),
                   seed=1, keep_curves=100, dose_exponent=1.0)
    ax = res.plot_bands()
    assert len(ax.lines) == 2
    ax2 = res.plot_dose_exposure("cmax")
    y = ax2.lines[0].get_ydata()
    assert y[1] / y[0] == pytest.approx(5.0)
