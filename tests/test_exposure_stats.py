"""Exposure-response statistics against published numbers and independent computations."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from cartkinetics.exposure import (
    exact_tests,
    firth_logistic,
    landmark,
    ml_logistic,
    monotone_likelihood,
    quartile_table,
    separation,
)
from cartkinetics.exposure.survival import cox_firth, cox_ml, group_logrank

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------- Firth: published example
def test_firth_engine_reproduces_heinze_schemper_2002_endometrial():
    """The Firth engine (firthmodels, configured as in cartkinetics.exposure.binary) gives the
    estimates and profile penalised-likelihood CIs published for the endometrial cancer
    data (Heinze & Schemper 2002, Stat Med 21:2409; R logistf output), where NV shows
    quasi-complete separation and the ML estimate is infinite."""
    from firthmodels import FirthLogisticRegression

    d = pd.read_csv(DATA / "endometrial.csv", comment="#")
    X, y = d[["NV", "PI", "EH"]].to_numpy(float), d["HG"].to_numpy(int)
    assert separation(X[:, 0], y) == "quasi-complete"
    m = FirthLogisticRegression(backend="numpy", max_iter=100, gtol=1e-6, xtol=1e-6).fit(X, y)
    published = np.array([2.92927330, -0.03475175, -2.60416387])  # NV, PI, EH
    np.testing.assert_allclose(m.coef_, published, rtol=1e-5)
    assert m.intercept_ == pytest.approx(3.77455951, rel=1e-5)
    ci = m.conf_int(method="pl", max_iter=100, tol=1e-6)
    published_ci = np.array([[0.6097244, 7.85463171], [-0.1244587, 0.04045547],
                             [-4.3651832, -1.23272106], [1.0825371, 7.20928050]])
    np.testing.assert_allclose(ci, published_ci, rtol=1e-4)


def _penalised_loglik(beta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    X = np.column_stack([x, np.ones_like(x)])
    eta = X @ beta
    ll = np.sum(y * eta - np.logaddexp(0, eta))
    p = stats.logistic.cdf(eta)
    info = X.T @ (X * (p * (1 - p))[:, None])
    return ll + 0.5 * np.linalg.slogdet(info)[1]


def _reference_firth(x, y):
    """Maximise the Jeffreys-penalised log-likelihood with scipy; profile CI by root finding.

    The covariate is centred (the slope and the likelihood are unchanged; the intercept is
    converted back) so that Nelder-Mead is well conditioned."""
    centre = float(np.mean(x))
    xc = x - centre
    f = lambda b: -_penalised_loglik(b, xc, y)
    best = optimize.minimize(f, np.zeros(2), method="Nelder-Mead",
                             options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    lmax = -best.fun
    crit = stats.chi2.ppf(0.95, 1) / 2

    def profile(b1):
        r = optimize.minimize_scalar(lambda a: f(np.array([b1, a])), bounds=(-60, 60),
                                     method="bounded", options={"xatol": 1e-10})
        return -r.fun

    b = best.x[0]
    lo = optimize.brentq(lambda v: profile(v) - (lmax - crit), b - 20, b, xtol=1e-9)
    hi = optimize.brentq(lambda v: profile(v) - (lmax - crit), b, b + 20, xtol=1e-9)
    # penalised LR test of slope 0
    p = stats.chi2.sf(2 * (lmax - profile(0.0)), 1)
    return np.array([b, best.x[1] - b * centre]), lo, hi, p


@pytest.mark.parametrize("seed", [1, 2])
def test_firth_logistic_matches_direct_maximisation(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.2, 25)
    y = (rng.uniform(size=25) < 1 / (1 + np.exp(-(0.3 + 0.9 * x)))).astype(int)
    fit = firth_logistic(x, y)
    beta, lo, hi, p = _reference_firth(x, y)
    assert fit.exists
    assert fit.coef == pytest.approx(beta[0], abs=1e-5)
    assert fit.intercept == pytest.approx(beta[1], abs=1e-5)
    assert fit.ci_low == pytest.approx(lo, abs=1e-4)
    assert fit.ci_high == pytest.approx(hi, abs=1e-4)
    assert fit.p == pytest.approx(p, rel=1e-3)


def test_separation_ml_does_not_exist_firth_stays_finite():
    x = np.log2(np.array([1e4, 2e4, 4e4, 8e4, 1.6e5, 3.2e5]))
    y = np.array([0, 0, 0, 1, 1, 1])
    assert separation(x, y) == "complete"
    ml = ml_logistic(x, y)
    assert not ml.exists and "separation" in ml.note and math.isnan(ml.coef)
    # statsmodels itself: the likelihood keeps rising with the slope (no finite maximum)
    import statsmodels.api as sm

    X = np.column_stack([x, np.ones_like(x)])
    ll = [sm.Logit(y, X).loglike(np.array([b, -b * x[2:4].mean()])) for b in (1, 5, 25)]
    assert ll[0] < ll[1] < ll[2] < 0
    fi = firth_logistic(x, y)
    assert fi.exists and np.isfinite(fi.coef) and fi.coef > 0
    beta, lo, hi, _ = _reference_firth(x, y)
    assert fi.coef == pytest.approx(beta[0], abs=1e-4)
    assert fi.ci_low == pytest.approx(lo, abs=1e-3) and fi.ci_low > 0
    assert fi.ci_high == pytest.approx(hi, abs=1e-3) and np.isfinite(fi.ci_high)


def test_ml_logistic_is_statsmodels_when_the_estimate_exists():
    rng = np.random.default_rng(5)
    x = rng.normal(size=60)
    y = (rng.uniform(size=60) < 1 / (1 + np.exp(-x))).astype(int)
    import statsmodels.api as sm

    ref = sm.Logit(y, sm.add_constant(x)).fit(disp=False)
    fit = ml_logistic(x, y)
    assert fit.coef == pytest.approx(ref.params[1], rel=1e-6)
    assert fit.p == pytest.approx(ref.llr_pvalue, rel=1e-6)


# ---------------------------------------------------------------- exact tests and quartiles
def test_smallest_attainable_p_values_by_enumeration():
    x = np.array([5.0, 1, 2, 3, 4, 6, 7])
    y = np.array([0, 1, 1, 1, 1, 1, 1])
    t = exact_tests(x, y)
    # brute force: the most extreme ranking of a single non-responder
    extreme = stats.mannwhitneyu([1, 2, 3, 4, 5, 6], [7], method="exact").pvalue
    assert t["mann_whitney"]["min_attainable_p"] == pytest.approx(extreme)
    assert t["mann_whitney"]["min_attainable_p"] == pytest.approx(2 / 7)
    assert t["mann_whitney"]["p"] == pytest.approx(
        stats.mannwhitneyu(x[y == 1], x[y == 0], method="exact").pvalue)
    table = np.array(t["fisher"]["table"])
    r1, c1, n = table[0].sum(), table[:, 0].sum(), table.sum()
    ps = [stats.fisher_exact([[a, r1 - a], [c1 - a, n - r1 - c1 + a]]).pvalue
          for a in range(max(0, r1 + c1 - n), min(r1, c1) + 1)]
    assert t["fisher"]["min_attainable_p"] == pytest.approx(min(ps))
    assert t["boschloo"]["p"] == pytest.approx(stats.boschloo_exact(table).pvalue)


def test_quartiles_are_clopper_pearson():
    rng = np.random.default_rng(3)
    x = rng.lognormal(12, 1, 40)
    y = (rng.uniform(size=40) < 0.5).astype(int)
    q = quartile_table(x, y)
    assert q["n"].sum() == 40 and list(q["group"]) == ["Q1", "Q2", "Q3", "Q4"]
    order = np.argsort(x, kind="stable")
    for i, r in q.iterrows():
        idx = order[10 * i: 10 * (i + 1)]
        k = int(y[idx].sum())
        ci = stats.binomtest(k, 10).proportion_ci(method="exact")
        assert r["events"] == k
        assert r["ci_low"] == pytest.approx(ci.low) and r["ci_high"] == pytest.approx(ci.high)
        assert r["exposure_max"] == pytest.approx(x[idx].max())


# ---------------------------------------------------------------- survival
def test_landmark_rule_excludes_and_counts():
    pats = ["A", "B", "C", "D", "E", "F"]
    time = np.array([10.0, 20.0, 28.0, 28.0, 40.0, 400.0])
    event = np.array([True, False, True, False, True, False])
    lm = landmark(pats, time, event, 28.0)
    assert lm.excluded_event == ["A", "C"]  # events on or before day 28
    assert lm.excluded_censored == ["B", "D"]
    np.testing.assert_array_equal(lm.keep, [False, False, False, False, True, True])
    np.testing.assert_allclose(lm.time, [12.0, 372.0])  # counted from the landmark
    np.testing.assert_array_equal(lm.event, [True, False])
    assert "day 28" in lm.rule


def test_logrank_two_groups_matches_lifelines():
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    rng = np.random.default_rng(8)
    t = rng.exponential(300, 30)
    e = rng.uniform(size=30) < 0.7
    g = np.where(rng.uniform(size=30) < 0.5, "above median", "at or below median")
    ours = group_logrank(t, e, g)
    ref = logrank_test(t[g == "above median"], t[g != "above median"],
                       e[g == "above median"], e[g != "above median"])
    assert ours["p"] == pytest.approx(ref.p_value, rel=1e-6)
    g3 = np.array(["T1", "T2", "T3"] * 10)
    ours3 = group_logrank(t, e, g3)
    assert ours3["p"] == pytest.approx(multivariate_logrank_test(t, g3, e).p_value)


def test_monotone_likelihood_cox_ml_absent_firth_finite():
    # every event at the highest exposure still at risk
    x = np.array([1.0, 2, 3, 4, 5, 6])
    t = np.array([50.0, 40, 30, 20, 10, 5])
    e = np.array([False, False, False, True, True, True])
    assert monotone_likelihood(x, t, e)
    fit, ph = cox_ml(x, t, e)
    assert not fit.exists and "monotone" in fit.note
    fc = cox_firth(x, t, e)
    assert np.isfinite(fc.coef) and fc.coef > 0 and np.isfinite(fc.ci_high)


def test_cox_ml_is_lifelines():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(11)
    x = rng.normal(size=80)
    t = rng.exponential(1 / np.exp(0.7 * x))
    e = rng.uniform(size=80) < 0.8
    fit, ph = cox_ml(x, t * 100, e)
    ref = CoxPHFitter().fit(pd.DataFrame({"T": t * 100, "E": e, "x": x}), "T", "E")
    assert fit.coef == pytest.approx(ref.params_["x"], rel=1e-6)
    assert ph is not None and 0 <= ph["p"] <= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = cox_firth(x, t * 100, e)
    # Firth shrinks a little towards 0; with 60+ events it is close to the ML estimate
    assert abs(fc.coef - fit.coef) < 0.05
