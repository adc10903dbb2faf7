"""The shared likelihood: checked against scipy distributions and finite differences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.likelihood import (
    ResidualModel,
    loglik,
    loglik_terms,
    neg2ll,
    prepare,
    residual_vector,
    row_neg2ll_derivatives,
)


@dataclass(frozen=True)
class S:
    day: np.ndarray
    value: np.ndarray
    lloq: np.ndarray
    blq: np.ndarray
    key: tuple = ("p", 1, "qpcr")


def _series():
    day = np.array([0.0, 1, 7, 14, 28, 90, 180])
    value = np.array([0.0, 30.0, 5000.0, 20000.0, 2000.0, 50.0, 50.0])
    blq = np.array([False, False, False, False, False, True, True])
    lloq = np.full(day.size, 50.0)
    return S(day, value, lloq, blq)


def test_prepare_m3_m1_and_nonpositive_rows():
    s = _series()
    d3 = prepare(s, "M3")
    # the day-0 zero cannot enter a log likelihood: left out and said so
    assert d3.n == 6 and d3.n_censored == 2 and d3.n_quantified == 4
    assert any("non-positive" in n for n in d3.notes)
    np.testing.assert_allclose(d3.log_lloq[d3.censored], np.log(50.0))
    assert np.all(np.isnan(d3.log_y[d3.censored]))
    d1 = prepare(s, "M1")
    assert d1.n == 4 and d1.n_censored == 0 and d1.n_blq_total == 2
    assert any("M1: 2 BLQ" in n for n in d1.notes)
    assert d1.censoring == "M1"


def test_prepare_rejects_blq_without_limit():
    s = S(np.array([1.0, 2.0]), np.array([np.nan, 10.0]), np.full(2, np.nan),
          np.array([True, False]))
    with pytest.raises(CartKineticsError):
        prepare(s)
    with pytest.raises(CartKineticsError):
        prepare(_series(), "M2")


@pytest.mark.parametrize("sigma", [0.3, 0.56, 1.2])
def test_normal_loglik_matches_scipy(sigma):
    s = _series()
    d = prepare(s)
    rng = np.random.default_rng(1)
    lf = np.log(np.array([20, 4000, 25000, 1500, 60, 30.0])) + 0.1 * rng.standard_normal(6)
    res = ResidualModel(sigma=sigma)
    q = ~d.censored
    ref = stats.norm.logpdf(d.log_y[q], lf[q], sigma).sum()
    ref += stats.norm.logcdf(d.log_lloq[~q], lf[~q], sigma).sum()
    assert loglik(lf, d, res) == pytest.approx(ref, rel=1e-12)
    assert neg2ll(lf, d, res) == pytest.approx(-2 * ref, rel=1e-12)


def test_student_t_loglik_matches_scipy():
    d = prepare(_series())
    lf = np.log(np.array([20, 4000, 25000, 1500, 60, 30.0]))
    res = ResidualModel(error="student_t", nu=3.0, sigma=0.5)
    q = ~d.censored
    ref = (stats.t.logpdf((d.log_y[q] - lf[q]) / 0.5, 3.0) - np.log(0.5)).sum()
    ref += stats.t.logcdf((d.log_lloq[~q] - lf[~q]) / 0.5, 3.0).sum()
    assert loglik(lf, d, res) == pytest.approx(ref, rel=1e-12)


def test_m3_term_is_accurate_far_in_the_tail():
    # prediction 40 SDs above the limit: log Phi(-40) by the asymptotic series
    d = prepare(S(np.array([10.0]), np.array([50.0]), np.array([50.0]), np.array([True])))
    z = -40.0
    lf = np.array([np.log(50.0) - z * 0.5])
    term = loglik_terms(lf, d, ResidualModel(sigma=0.5))[0]
    asym = -0.5 * z * z - np.log(-z) - 0.5 * np.log(2 * np.pi) + np.log1p(-1 / z**2 + 3 / z**4)
    assert np.isfinite(term)
    assert term == pytest.approx(asym, rel=1e-6)


@pytest.mark.parametrize("error", ["normal", "student_t"])
@pytest.mark.parametrize("with_sigma", [False, True])
def test_residual_vector_squares_sum_to_neg2ll(error, with_sigma):
    d = prepare(_series())
    res = ResidualModel(error=error, nu=4.0)
    rng = np.random.default_rng(3)
    base = np.log(np.array([20, 4000, 25000, 1500, 60, 30.0]))
    consts = []
    for _ in range(4):
        lf = base + 0.5 * rng.standard_normal(6)
        sig = float(np.exp(rng.uniform(-1.5, 0.5))) if with_sigma else 0.56
        r, _ = residual_vector(lf, None, d, res, sig, with_sigma)
        consts.append(np.sum(r**2) - neg2ll(lf, d, res, sig))
    # sum(r^2) = -2 log L + a constant that does not depend on f or sigma
    np.testing.assert_allclose(consts, consts[0], atol=1e-8)


@pytest.mark.parametrize("error", ["normal", "student_t"])
def test_residual_jacobian_matches_finite_differences(error):
    d = prepare(_series())
    res = ResidualModel(error=error, nu=5.0)
    rng = np.random.default_rng(4)
    A = rng.standard_normal((6, 3))  # ln f = base + A theta
    base = np.log(np.array([20, 4000, 25000, 1500, 60, 30.0]))
    theta = np.array([0.1, -0.2, 0.05, np.log(0.6)])

    def rv(th):
        return residual_vector(base + A @ th[:3], A, d, res, float(np.exp(th[3])), True)

    r0, J = rv(theta)
    h = 1e-6
    Jn = np.empty_like(J)
    for k in range(4):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += h
        tm[k] -= h
        Jn[:, k] = (rv(tp)[0] - rv(tm)[0]) / (2 * h)
    np.testing.assert_allclose(J, Jn, rtol=1e-5, atol=1e-6)


def test_row_derivatives_match_finite_differences():
    d = prepare(_series())
    res = ResidualModel()
    u = np.log(np.array([20, 4000, 25000, 1500, 60, 30.0]))
    s = np.log(0.7)
    der = row_neg2ll_derivatives(u, d, res, np.exp(s))

    def f(uu, ss):
        return -2 * loglik_terms(uu, d, res, np.exp(ss))

    h = 1e-4
    np.testing.assert_allclose(der["du"], (f(u + h, s) - f(u - h, s)) / (2 * h), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(der["ds"], (f(u, s + h) - f(u, s - h)) / (2 * h), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(der["duu"], (f(u + h, s) - 2 * f(u, s) + f(u - h, s)) / h**2,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(der["dss"], (f(u, s + h) - 2 * f(u, s) + f(u, s - h)) / h**2,
                               rtol=1e-4, atol=1e-5)
    dus = (f(u + h, s + h) - f(u + h, s - h) - f(u - h, s + h) + f(u - h, s - h)) / (4 * h * h)
    np.testing.assert_allclose(der["dus"], dus, rtol=1e-4, atol=1e-5)


def test_residual_model_validation_and_description():
    assert "M3" in ResidualModel().describe()
    assert "M1" in ResidualModel(censoring="M1").describe()
    with pytest.raises(CartKineticsError):
        ResidualModel(sigma=-1)
    with pytest.raises(CartKineticsError):
        ResidualModel(error="laplace")
