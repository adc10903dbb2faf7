"""Per-series fits: recovery of known truths, statuses, outputs, cohort, joint, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from cartkinetics import models
from cartkinetics.data import Series
from cartkinetics.fit import fit_cohort, fit_joint, fit_series
from cartkinetics.fit.individual import FitResult
from cartkinetics.testing import stein_series

DAYS = np.array([1, 4, 7, 11, 14, 21, 28, 60, 90, 180, 270, 365.0])
TRUTH = {"foldx": 2000.0, "tmax": 10.3, "cmax": 30000.0, "alpha": 0.2, "fb": 0.01,
         "beta": 0.005}


def make_series(params=None, noise=0.0, lloq=50.0, seed=0, patient="P1", infusion=1,
                days=DAYS):
    return stein_series(params or TRUTH, days, noise=noise, lloq=lloq, seed=seed,
                        patient=patient, infusion=infusion)


def test_noise_free_series_recovers_truth():
    s = make_series(lloq=5.0)
    assert not s.blq.any()
    r = fit_series(s, "stein2019", n_boot=100, prior=None)
    assert r.status == "converged"
    for k, v in TRUTH.items():
        assert r.params[k] == pytest.approx(v, rel=2e-3), k
    assert r.censoring == "M3"
    # exact data: every residual is zero, -2 log L = n (ln 2 pi + 2 ln sigma)
    assert r.neg2ll == pytest.approx(12 * (np.log(2 * np.pi) + 2 * np.log(0.56)), abs=1e-6)


def test_outcomes_agree_with_closed_form_integrals():
    s = make_series(noise=0.3, seed=5)
    r = fit_series(s, "stein2019", n_boot=200, prior=None)
    p = r.params
    m = models.get("stein2019")
    # AUC0-inf of the fitted curve: closed-form integral of the two pieces
    rho = math.log(p["foldx"]) / p["tmax"]
    r0 = p["cmax"] / p["foldx"]
    auc_inf = r0 * (math.exp(rho * p["tmax"]) - 1) / rho + p["cmax"] * (
        (1 - p["fb"]) / p["alpha"] + p["fb"] / p["beta"])
    assert r.outcomes["auc_0_inf"] == pytest.approx(auc_inf, rel=5e-3)
    auc28 = integrate.quad(lambda t: m.solve([t], p).observed["transgene"][0], 0, 28,
                           points=[p["tmax"]], limit=200)[0]
    assert r.outcomes["auc_0_28"] == pytest.approx(auc28, rel=5e-3)
    assert r.outcomes["cmax"] == pytest.approx(p["cmax"], rel=0.03)  # peak on a 0.2-day grid
    assert abs(r.outcomes["tmax"] - p["tmax"]) <= 0.2
    c90 = m.solve([90.0], p).observed["transgene"][0]
    assert r.outcomes["c_day90"] == pytest.approx(c90, rel=1e-3)
    lo, hi = r.outcomes_ci["auc_0_28"]
    assert lo < r.outcomes["auc_0_28"] < hi
    assert "bootstrap" in r.outcome_method


def test_result_tables_and_censored_rows_have_no_residual():
    s = make_series(noise=0.3, lloq=200.0, seed=2)
    r = fit_series(s, n_boot=50)
    pr = r.predictions
    assert len(pr) == s.n_obs
    cens = pr["censored"].to_numpy()
    assert cens.sum() == s.blq.sum() > 0
    assert pr.loc[cens, "ires"].isna().all() and pr.loc[~cens, "ires"].notna().all()
    assert pr.loc[cens, "p_below_lloq"].between(0, 1).all()
    np.testing.assert_allclose(pr.loc[~cens, "ires"],
                               np.log(s.value[~s.blq]) - np.log(pr.loc[~cens, "pred"]))
    df = r.to_dataframe()
    assert set(df["kind"]) == {"parameter", "outcome"}
    assert {"cmax", "auc_0_28", "persistence"} <= set(df["name"])
    rec = r.record()
    for k in ("patient", "infusion", "assay", "model", "status", "message", "n_obs", "n_blq",
              "params", "stderr", "cmax", "cmax_ci", "tmax", "tmax_ci", "auc_0_28",
              "auc_0_28_ci", "aic", "censoring"):
        assert k in rec
    json.dumps(rec)
    assert r.aic == pytest.approx(r.neg2ll + 2 * 6)
    assert r.bic == pytest.approx(r.neg2ll + 6 * math.log(12))
    assert r.correlation.shape == (6, 6)
    np.testing.assert_allclose(np.diag(r.correlation.to_numpy()), 1.0)


def test_m1_drops_blq_and_says_so():
    s = make_series(noise=0.2, lloq=200.0, seed=3)
    r = fit_series(s, censoring="M1", n_boot=0)
    assert r.censoring == "M1" and r.n_used == s.n_obs - s.blq.sum()
    assert "M1" in r.message and "M1" in r.summary()


@pytest.mark.slow
def test_standard_errors_match_monte_carlo_spread():
    # the SE of ln cmax from the information matrix vs the spread of estimates over
    # replicate data sets simulated from the same truth (independent of the SE code)
    est, se = [], []
    days = np.array([1, 3, 5, 7, 9, 11, 13, 15, 18, 21, 28, 45, 60, 90, 120, 180.0])
    for k in range(60):
        r = fit_series(make_series(noise=0.3, seed=100 + k, days=days, lloq=20.0),
                       sigma=0.3, n_boot=0, n_starts=2, prior=None)
        if r.status == "converged":
            est.append(math.log(r.params["cmax"]))
            se.append(r.stderr["cmax"] / r.params["cmax"])
    assert len(est) >= 50
    ratio = np.std(est, ddof=1) / np.median(se)
    assert 0.7 < ratio < 1.4


@pytest.mark.slow
def test_m3_less_biased_than_m1_on_beta():
    # truths drawn from the published population, fitted with that population as prior
    # (MAP): M1 drops the BLQ tail, so the slow phase looks slower than it is (beta too low)
    m = models.get("stein2019")
    rng = np.random.default_rng(11)
    om = np.sqrt([m.bsv[k] for k in m.param_names])
    bias = {"M3": [], "M1": []}
    for i in range(30):
        p = dict(zip(m.param_names, m.typical * np.exp(om * rng.standard_normal(6)),
                     strict=True))
        p["fb"] = min(p["fb"], 0.9)
        s = make_series(p, noise=0.56, lloq=75.0, seed=i)
        for c in bias:
            r = fit_series(s, censoring=c, n_boot=0, profile=False, prior="population")
            if r.ok:
                bias[c].append(math.log(r.params["beta"] / p["beta"]))
    assert len(bias["M3"]) >= 25 and len(bias["M1"]) >= 25
    assert np.median(bias["M1"]) < 0
    assert abs(np.median(bias["M3"])) < abs(np.median(bias["M1"]))


def test_bad_input_gives_status_not_exception():
    d = np.array([1.0, 7, 14, 28, 60, 90])
    one = Series("a", 1, "qpcr", "copies/ug", d[:1], np.array([100.0]), np.full(1, 50.0),
                 np.zeros(1, bool))
    allblq = Series("b", 1, "qpcr", "copies/ug", d, np.full(6, 50.0), np.full(6, 50.0),
                    np.ones(6, bool))
    const = Series("c", 1, "qpcr", "copies/ug", d, np.full(6, 300.0), np.full(6, 50.0),
                   np.zeros(6, bool))
    nolimit = Series("d", 1, "qpcr", "copies/ug", d, np.full(6, np.nan), np.full(6, np.nan),
                     np.ones(6, bool))
    good = make_series(noise=0.2, patient="e")
    c = fit_cohort([one, allblq, const, nolimit, good], "stein2019", n_boot=0)
    st = dict(zip(c.table["patient"], c.table["status"], strict=True))
    assert st["a"] == "too_few_points"
    assert st["b"] == "all_blq"
    assert st["c"] == "constant"
    assert st["d"] == "error"
    assert st["e"] in ("converged", "converged_singular")
    assert all(isinstance(r, FitResult) and r.message for r in c.results)
    # no reduction: fewer points than parameters is reported as such
    short = make_series(days=np.array([4.0, 7, 14, 28.0]))
    assert fit_series(short, reduce=False).status == "too_few_points"
    r = fit_series(short, n_boot=0)
    assert r.ok and "fixed at the published typical values" in r.message


def test_short_series_fixes_parameters_in_order():
    short = make_series(days=np.array([4.0, 7, 14, 28, 60.0]))
    r = fit_series(short, n_boot=0)
    assert r.free == ["foldx", "tmax", "cmax", "alpha", "fb"]
    assert r.params["beta"] == models.get("stein2019").parameter("beta").value


def test_cohort_parallel_equals_serial_and_compare_keys():
    from cartkinetics.compare import compare_infusions

    ss = []
    for i in range(4):
        for inf, scale in ((1, 1.0), (2, 2.0)):
            p = dict(TRUTH, cmax=TRUTH["cmax"] * scale * (1 + 0.1 * i))
            ss.append(make_series(p, noise=0.2, seed=10 * i + inf, patient=f"P{i}",
                                  infusion=inf))
    serial = fit_cohort(ss, n_boot=0)
    par = fit_cohort(ss, n_boot=0, n_jobs=2)
    np.testing.assert_allclose(serial.table["cmax"], par.table["cmax"], rtol=1e-9)
    cmp = serial.compare()
    ref = compare_infusions(serial.outcome_table())
    assert set(ref) <= set(cmp) and cmp["basis"] == "model" and cmp["n_pairs"] == 4


def test_joint_fit_recovers_within_patient_ratio():
    s1 = make_series(TRUTH, noise=0.0, infusion=1, lloq=5.0)
    s2 = make_series(dict(TRUTH, cmax=2 * TRUTH["cmax"], tmax=7.2), noise=0.0, infusion=2,
                     lloq=5.0)
    j = fit_joint([s1, s2], "stein2019")
    assert j.ok
    assert j.ratios["cmax"]["estimate"] == pytest.approx(2.0, rel=1e-3)
    assert j.ratios["tmax"]["estimate"] == pytest.approx(7.2 / 10.3, rel=1e-3)
    assert j.params[1]["alpha"] == pytest.approx(j.params[2]["alpha"])
    # noisy: the CI contains the truth
    s1n = make_series(TRUTH, noise=0.3, infusion=1, seed=7)
    s2n = make_series(dict(TRUTH, cmax=2 * TRUTH["cmax"]), noise=0.3, infusion=2, seed=8)
    jn = fit_joint([s1n, s2n])
    assert jn.ratios["cmax"]["lo"] < 2.0 < jn.ratios["cmax"]["hi"]


def test_ode_model_fit_agrees_with_closed_form():
    s = make_series(noise=0.25, seed=9)
    a = fit_series(s, "stein2019", n_boot=0, profile=False, prior=None)
    b = fit_series(s, "stein2019_ode", n_boot=0, profile=False, prior=None)
    assert b.ok
    assert b.neg2ll == pytest.approx(a.neg2ll, abs=1e-2)
    for k in ("cmax", "tmax", "alpha"):
        assert b.params[k] == pytest.approx(a.params[k], rel=2e-3)


def test_estimated_sigma_and_student_t():
    days = np.linspace(1, 200, 40)
    s = make_series(noise=0.3, seed=21, days=days, lloq=1.0)
    r = fit_series(s, sigma="estimate", n_boot=0, prior=None)
    assert "sigma" in r.params and 0.2 < r.params["sigma"] < 0.42
    assert r.n_free == 7
    t = fit_series(s, error="student_t", n_boot=0, prior=None)
    assert t.ok and "Student-t" in t.residual_model
    assert t.params["cmax"] == pytest.approx(r.params["cmax"], rel=0.3)


def test_profile_ci_contains_wald_centre():
    s = make_series(noise=0.3, seed=4)
    r = fit_series(s, profile=["cmax"], n_boot=0)
    lo, hi = r.ci["cmax"]
    assert lo < r.params["cmax"] < hi
    assert "profile" in r.ci_method


def test_plot_and_cli(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    s = make_series(noise=0.3, lloq=150.0, seed=6)
    r = fit_series(s, n_boot=100)
    ax = r.plot()
    assert ax.get_yscale() == "log"
    rows = []
    for i in range(2):
        ser = make_series(noise=0.3, lloq=100.0, seed=30 + i, patient=f"Q{i}")
        for d, v, b in zip(ser.day, ser.value, ser.blq, strict=True):
            rows.append({"patient": ser.patient, "infusion": 1, "day": d,
                         "value": f"<{v:g}" if b else v, "lloq": 100.0, "assay": "qpcr"})
    csv = tmp_path / "k.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    import contextlib
    import io

    from cartkinetics.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["fit", str(csv), "--json", "--n-boot", "50", "--out", str(tmp_path / "o")])
    assert code == 0
    recs = json.loads(buf.getvalue())
    assert len(recs) == 2 and recs[0]["censoring"] == "M3"
    # --prior auto: Stein 2019 publishes its population, so the CLI fits MAP
    assert {r["estimator"] for r in recs} == {"MAP (population prior)"}
    assert (tmp_path / "o" / "fits.csv").exists()
    assert len(list((tmp_path / "o").glob("*.png"))) == 2
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["fit", str(csv), "--json", "--n-boot", "50", "--prior", "none"])
    assert code == 0
    assert {r["estimator"] for r in json.loads(buf.getvalue())} == {"ML"}


def test_two_outputs_in_one_likelihood_recover_truth():
    from cartkinetics.fit.multi_output import fit_outputs

    m = models.get("liu2022")
    truth = dict(m.parameter_sets["example"], rTA0=1.3, lTA0=0.15)
    days_c = np.array([1.0, 3, 5, 7, 10, 14, 21, 28, 42, 60])
    days_b = np.array([0.0, 7, 14, 28])
    sol_c = m.solve(days_c, truth).observed["car_t"]
    sol_b = m.solve(days_b, truth).observed["leukaemia"]
    lim = 1e-3

    def ser(d, v):
        blq = v < lim
        return Series("L1", 1, "qpcr", "cells/uL", d, np.where(blq, lim, v), np.full(d.size, lim),
                      blq)

    r = fit_outputs({"car_t": ser(days_c, sol_c), "leukaemia": ser(days_b, sol_b)}, m,
                    free=["rTA0", "lTA0"], sigma=0.3,
                    fixed={k: v for k, v in truth.items() if k not in ("rTA0", "lTA0")})
    assert r.ok, r.message
    assert r.params["rTA0"] == pytest.approx(1.3, rel=1e-3)
    assert r.params["lTA0"] == pytest.approx(0.15, rel=1e-3)
    assert set(r.neg2ll_by_output) == {"car_t", "leukaemia"}
    assert r.neg2ll == pytest.approx(sum(r.neg2ll_by_output.values()), rel=1e-9)


def test_population_prior_keeps_unidentified_parameters_near_typical():
    m = models.get("stein2019")
    # the whole rise is below the limit: foldx is not identified by the data
    s = make_series(noise=0.2, lloq=5000.0, seed=12,
                    days=np.array([1.0, 4, 7, 14, 21, 28, 60, 90]))
    assert s.blq[:3].all() and not s.blq[3:5].any()
    ml = fit_series(s, n_boot=0, profile=False, prior=None)
    mp = fit_series(s, n_boot=0, profile=False, prior="population")
    assert mp.estimator.startswith("MAP") and ml.estimator == "ML"
    om = math.sqrt(m.bsv["foldx"])
    z_map = abs(math.log(mp.params["foldx"] / m.parameter("foldx").value)) / om
    assert z_map < 3.0
    # the reported -2 log L excludes the prior; the objective includes it
    assert mp.objective >= mp.neg2ll
    assert ml.objective == pytest.approx(ml.neg2ll)
    # ML maximises the likelihood: its -2 log L is never worse than the MAP one
    assert ml.neg2ll <= mp.neg2ll + 1e-6
