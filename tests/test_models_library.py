"""Library models: numba solves against scipy Radau, and numbers from papers or their code."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from cartkinetics import models

# model -> (published parameter sets to check, sample days)
CASES = {
    "liu2022": (["example"], [0.5, 1, 2, 5, 7, 10, 14, 21, 28, 60, 90]),
    "liu2022_cd19neg": (["example"], [1, 2, 5, 10, 28, 60, 100, 150, 200]),
    "kirouac2023": (["CR1", "CR7", "PR1", "PR5", "NR1", "NR10"],
                    [1, 3, 7, 14, 21, 28, 60, 90, 180, 365]),
    "kimmel2021": (["table1"], [1, 3, 7, 14, 28, 60, 90, 180]),
    "hardiansyah2019": (["UPN1", "UPN3"], [0.5, 1, 1.5, 2, 3, 5, 10, 20, 28, 60, 100, 200]),
    "barros2021": (["paper"], [10, 30, 42, 43, 45, 50, 60, 80, 100]),
    "singh2021": (["clinical"], [0.01, 0.1, 1, 3, 7, 10, 14, 21, 28, 60, 90, 180]),
}
RTOL = 1e-8


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> float:
    """Largest error relative to |b| with a floor at 1e-3 of the curve's peak."""
    floor = 1e-3 * np.max(np.abs(b))
    return float(np.max(np.abs(a - b) / (np.abs(b) + floor + 1e-300)) / rtol)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_numba_solve_agrees_with_scipy_radau(name):
    model = models.get(name)
    sets, days = CASES[name]
    t = np.asarray(days, dtype=float)
    for s in sets:
        ref = model.solve(t, s, method="scipy-radau", rtol=1e-10, atol=1e-12)
        assert ref.status == 0, ref.message
        sol = model.solve(t, s, rtol=RTOL, atol=1e-12)  # method "auto" (model's preference)
        assert sol.status == 0, f"{name} {s}: {sol.message}"
        for k in model.obs_names:
            ratio = _close(sol.observed[k], ref.observed[k], RTOL)
            assert ratio < 10, f"{name} {s} {k}: error {ratio:.1f} x rtol"


def test_liu2022_matches_the_authors_script():
    # Lunan12/CAR-T-model "Simulation of responses"/Eqs_CR_PR_NR.m transcribed by hand and
    # integrated like the script (f0 = [2200.24, 0, 16.46], example parameter values)
    rBp, rTA0, lTA0, lTN, nMB, eBp, ka = 0.069, 1.62, 0.12, 0.00003, 2939.1, 22.72, 0.65
    KBp, KBpr, KBpTN = 5891.45, 637.64, 1808.02

    def eqs(t, f):
        rTA = f[0] / (f[0] + KBpr) * rTA0
        return [
            rBp * f[0] * (1 - f[0] / nMB) - eBp * f[0] / (f[0] + KBp) * f[1],
            rTA * f[1] + ka * f[0] / (f[0] + KBpTN) * f[2] - lTA0 * f[1],
            -ka * f[0] / (f[0] + KBpTN) * f[2] - lTN * f[2],
        ]

    t = np.arange(0.0, 90.01, 0.5)
    ref = solve_ivp(eqs, (0, 90), [2200.24, 0, 16.46], t_eval=t, method="LSODA",
                    rtol=1e-11, atol=1e-12)
    model = models.get("liu2022")
    sol = model.solve(t, "example", rtol=1e-9, atol=1e-12)
    assert sol.status == 0
    np.testing.assert_allclose(sol.observed["car_t"], ref.y[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sol.observed["leukaemia"], ref.y[0], rtol=1e-5, atol=1e-6)
    lb = 97.19 * ref.y[0] / (1909 + ref.y[0])  # the script's LB line
    np.testing.assert_allclose(sol.observed["burden"], lb, rtol=1e-5, atol=1e-8)
    # the script's scenario is a continuous remission: CAR-T peak within the first week,
    # leukaemic burden from ~52% to below 0.01% by day 14
    assert 2 <= t[np.argmax(sol.observed["car_t"])] <= 7
    assert sol.observed["burden"][0] == pytest.approx(52.04, abs=0.01)
    assert sol.observed["burden"][t == 14][0] < 1e-2


def test_liu2022_dose_sets_ntn0():
    model = models.get("liu2022")
    a = model.solve([0.0, 5.0], "example", dose=32.92)
    assert a.states["nTN"][0] == pytest.approx(32.92)
    b = model.solve([0.0, 5.0], {**model.parameter_sets["example"], "nTN0": 32.92})
    np.testing.assert_allclose(a.observed["car_t"], b.observed["car_t"], rtol=1e-12)


def test_liu2022_cd19neg_relapse():
    # Simulation_NegR.m: CD19+ cells are cleared, the CD19- clone (nBn0 = 19.89) relapses
    model = models.get("liu2022_cd19neg")
    t = np.array([0.0, 10.0, 50.0, 100.0, 200.0])
    sol = model.solve(t, "example", rtol=1e-9)
    assert sol.status == 0
    assert sol.observed["leukaemia"][1] < 1e-3 * sol.observed["leukaemia"][0]
    neg = sol.observed["leukaemia_cd19neg"]
    assert neg[1] < neg[0] < neg[4] and neg[2] < neg[3] < neg[4]  # nadir, then relapse
    lb = 97.19 * (sol.states["nB"] + sol.states["nBn"]) / (sol.states["nB"] + sol.states["nBn"]
                                                          + 1909)
    np.testing.assert_allclose(sol.observed["burden"], lb, rtol=1e-12)


# Total CAR-T (Tm + Te1 + Te2 + Tx) read from mstadt/CART2 sims_patients/*_dose-100000000_*.mat
# (MATLAB ode15s, RelTol 1e-4, NonNegative): (set, peak, day of peak, value at day 365)
KIROUAC_MATLAB = [
    ("CR1", 114319317.42, 22.709, 2133089.42),
    ("CR2", 92997763.86, 12.780, 624355.45),
    ("PR1", 56940184.50, 26.144, 49459.74),
    ("NR1", 609047.68, 15.702, 48925.65),
    ("NR10", 642301.20, 18.518, 87049.37),
]


@pytest.mark.parametrize("set_name,peak,day,c365", KIROUAC_MATLAB)
def test_kirouac2023_matches_public_matlab_runs(set_name, peak, day, c365):
    model = models.get("kirouac2023")
    t = np.array([day, 365.0])
    sol = model.solve(t, set_name, rtol=1e-8)
    assert sol.status == 0, sol.message
    c = sol.observed["car_t"]
    assert c[0] == pytest.approx(peak, rel=3e-3)  # MATLAB ran at RelTol 1e-4
    assert c[1] == pytest.approx(c365, rel=3e-3)
    assert len(model.parameter_sets) == 36
    assert model.default_dose == 1e8


def test_kirouac2023_dense_peak_day():
    model = models.get("kirouac2023")
    t = np.linspace(0.0, 60.0, 1201)
    c = model.solve(t, "CR1", rtol=1e-8).observed["car_t"]
    assert t[np.argmax(c)] == pytest.approx(22.709, abs=0.1)


def test_kimmel2021_zuma1_medians_order_of_magnitude():
    # Moffitt ZUMA-1 medians (cells/uL): 27.5, 9.1, 2.1, 0.1 at days 7, 14, 28, 90
    model = models.get("kimmel2021")
    sol = model.solve([7.0, 14.0, 28.0, 90.0], rtol=1e-9)
    assert sol.status == 0
    medians = np.array([27.5, 9.1, 2.1, 0.1])
    ratio = sol.observed["car_t_blood"] / medians
    assert np.all(ratio[:3] > 0.5) and np.all(ratio[:3] < 2.0)
    assert 0.1 < ratio[3] < 10  # day 90: order of magnitude, as the paper states
    # the initial condition of Fig. 2b, 0.36 cells/uL
    assert model.solve([0.0]).observed["car_t_blood"][0] == pytest.approx(0.36)


def test_kimmel2021_second_infusion_is_a_jump():
    model = models.get("kimmel2021")
    t = np.array([29.999, 30.0, 30.001])
    sol = model.solve(t, dose=[(0.0, 1.8e8), (30.0, 1.8e8)], rtol=1e-10)
    c = sol.states["C"]
    assert c[1] == pytest.approx(c[0], rel=1e-4)  # sample at the dose time: before the jump
    assert c[2] - c[1] == pytest.approx(1.8e8, rel=1e-2)


@pytest.mark.parametrize("set_name,peak_total,peak_memory", [
    ("UPN1", 2.54950, 0.00734), ("UPN3", 0.09690, 0.00718)])
def test_hardiansyah2019_peaks_of_nlmixr2lib(set_name, peak_total, peak_memory):
    # nlmixr2lib vignette Hardiansyah_2019_CART_crs_qsp (rxode2, rtol 1e-10): simulated
    # peaks of total and memory CAR-T in blood (1e9 cells); digitised Fig. 1b: 2.3 / 0.12
    model = models.get("hardiansyah2019")
    t = np.arange(0.0, 350.0001, 0.1)
    sol = model.solve(t, set_name, rtol=1e-9, atol=1e-14)
    assert sol.status == 0
    assert sol.observed["car_t"].max() == pytest.approx(peak_total, rel=2e-4)
    assert sol.observed["car_t_memory"].max() == pytest.approx(peak_memory, rel=2e-3)
    assert sol.states["B"][0] == pytest.approx({"UPN1": 4.14, "UPN3": 0.93}[set_name])


def test_hardiansyah2019_split_dosing():
    from scipy.linalg import expm

    model = models.get("hardiansyah2019")
    assert model.resolve_dose(None, "UPN3") == [(0.0, 1.4e6), (1.0, 4.2e6), (2.0, 8.4e6)]
    # growth and phenotype switching off: effector cells in blood and tissue follow a linear
    # system; the three jumps (10/30/60% of 1e9 cells = 1 unit) are checked with expm
    p = {"rE": 0.0, "aE": 0.0, "aM": 0.0, "dE": 0.1}
    kin, kout = 76.78, 1.84
    A = np.array([[-0.1 - kin, kout], [kin, -kout]])
    t = np.array([0.5, 1.0, 1.5, 2.5, 5.0])
    sol = model.solve(t, p, dose=1e9, rtol=1e-10, atol=1e-14, method="rodas5p")
    assert sol.status == 0
    expected = []
    for ti in t:
        x = np.zeros(2)
        for day, frac in ((0.0, 0.1), (1.0, 0.3), (2.0, 0.6)):
            if day == 0.0 or day < ti:  # a sample at a dose time is taken before the dose
                x = x + expm(A * (ti - day)) @ np.array([frac, 0.0])
        expected.append(x)
    expected = np.array(expected)
    np.testing.assert_allclose(sol.states["CARTE_pb"], expected[:, 0], rtol=1e-6)
    np.testing.assert_allclose(sol.states["CARTE_t"], expected[:, 1], rtol=1e-6)


def test_barros2021_logistic_growth_then_clearance():
    model = models.get("barros2021")
    p = model.typical
    r, b, t0 = p[model.param_names.index("r")], p[model.param_names.index("b")], 2e6
    t = np.array([10.0, 20.0, 30.0, 42.0])
    sol = model.solve(t, rtol=1e-10, atol=1e-8)
    K = 1.0 / b
    logistic = K / (1.0 + (K / t0 - 1.0) * np.exp(-r * t))  # closed form before the dose
    np.testing.assert_allclose(sol.observed["tumour"], logistic, rtol=1e-8)
    assert sol.observed["car_t"][-1] == 0.0  # day-42 sample is taken before the infusion
    late = model.solve([100.0], rtol=1e-10, atol=1e-8)
    assert late.observed["tumour"][0] < 1.0  # 1.5e6 CAR-T cells clear the tumour (Fig. 4a)


def test_singh2021_biomarkers_without_car_t():
    # no CAR-T (dose 0): the tumour grows at Kg and soluble BCMA (exponent 1) follows
    # S' = a exp(Kg t) - Kb S, S(0) = a/Kb, solved by hand. Only over the first days: the
    # model's seed of 1e-6 effector cells/L in marrow expands at up to Kexp_max and would
    # eventually act on the tumour even without a dose.
    model = models.get("singh2021")
    p = dict(zip(model.param_names, model.typical, strict=True))
    t = np.array([2.0, 5.0, 10.0])
    sol = model.solve(t, dose=0.0, rtol=1e-10, atol=1e-12)
    assert sol.status == 0
    g, k = p["Kg"], p["Kb"]
    a = p["Pb"] * 1e-6 * p["Tumor0"]
    s_exact = a / (k + g) * np.exp(g * t) + (a / k - a / (k + g)) * np.exp(-k * t)
    np.testing.assert_allclose(sol.states["sBCMA"], s_exact, rtol=1e-6)
    np.testing.assert_allclose(sol.states["Tumor"], p["Tumor0"] * np.exp(g * t), rtol=1e-6)
    np.testing.assert_allclose(sol.observed["sbcma_pctchg"], (s_exact * k / a - 1) * 100,
                               rtol=1e-5)
    # with the default 450e6 cells: transgene at t=0 is TransC * dose / Vb
    assert model.solve([0.0]).observed["transgene"][0] == pytest.approx(0.002 * 450e6 / 5)


def test_batch_statuses_and_named_sets():
    model = models.get("kirouac2023")
    import pandas as pd

    table = pd.DataFrame([model.parameter_sets[s] for s in ("CR1", "PR1", "NR1")])
    table.loc[1, "um"] = np.nan
    b = model.solve_batch([7.0, 28.0], table)
    assert list(b.status) == [0, 4, 0]
    assert np.isnan(b.observed["car_t"][1]).all()
    single = model.solve([7.0, 28.0], "NR1").observed["car_t"]
    np.testing.assert_allclose(b.observed["car_t"][2], single, rtol=1e-6)


def test_every_model_has_metadata():
    for name in models.available():
        m = models.get(name)
        info = m.info()
        assert info["reference"] and info["description"] and info["population"], name
        assert len(info["parameters"]) == m.n_params
        for p in m.parameters:
            assert p.source, f"{name}.{p.name} has no source"
            assert p.lower <= p.value <= p.upper
        for set_name in m.parameter_sets:
            m.param_vector(set_name)
