"""Stein 2019: closed form against published numbers, its ODE form and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from cartkinetics import models
from cartkinetics.errors import CartKineticsError

DAYS = np.array([0.0, 1.0, 4.0, 7.0, 9.3, 11.0, 14.0, 21.0, 28.0, 60.0, 90.0, 180.0, 365.0])


@pytest.fixture(scope="module")
def stein():
    return models.get("stein2019")


@pytest.fixture(scope="module")
def stein_ode():
    return models.get("stein2019_ode")


def test_registry_lists_library():
    names = models.available()
    for n in ("stein2019", "stein2019_ode", "liu2022", "liu2022_cd19neg", "kirouac2023",
              "kimmel2021", "hardiansyah2019", "barros2021"):
        assert n in names
    with pytest.raises(CartKineticsError, match="unknown model"):
        models.get("no_such_model")


def test_published_typical_values_and_attributes(stein):
    assert stein.is_closed_form
    assert stein.param_names == ["foldx", "tmax", "cmax", "alpha", "fb", "beta"]
    np.testing.assert_allclose(stein.typical, [3900, 9.3, 24000, 0.16, 0.0079, 0.0032])
    assert stein.bsv == {"foldx": 2.4, "tmax": 0.38, "cmax": 0.65, "alpha": 0.91, "fb": 0.80,
                         "beta": 0.86}
    assert stein.residual_sd == 0.56
    assert stein.comedication_factors == {"tocilizumab": 1.2, "corticosteroids": 1.0}


def test_published_c28_and_auc(stein):
    # models.md / Stein 2019 typical patient: C(28) ~ 1370 copies/ug, AUC0-28 ~ 1.72e5
    c = stein.solve([28.0]).observed["transgene"][0]
    assert c == pytest.approx(1370, rel=0.01)
    # independent quadrature of the curve, split at the kink (Tmax)
    f = lambda t: stein.solve([t]).observed["transgene"][0]  # noqa: E731
    auc = quad(f, 0, 9.3, epsabs=0, epsrel=1e-10)[0] + quad(f, 9.3, 28, epsabs=0, epsrel=1e-10)[0]
    assert auc == pytest.approx(1.72e5, rel=0.01)
    # and the exact integral of the closed form written out by hand
    foldx, tmax, cmax, a, fb, b = stein.typical
    rho, r0 = np.log(foldx) / tmax, cmax / foldx
    exact = r0 * (np.exp(rho * tmax) - 1) / rho + cmax * (
        (1 - fb) * (1 - np.exp(-a * (28 - tmax))) / a + fb * (1 - np.exp(-b * (28 - tmax))) / b
    )
    assert auc == pytest.approx(exact, rel=1e-9)


def test_peak_at_tmax_equals_cmax(stein):
    rng = np.random.default_rng(1)
    for _ in range(5):
        p = stein.typical * np.exp(0.3 * rng.standard_normal(6))
        p[4] = min(p[4], 0.9)
        t = np.linspace(0, 60, 6001)
        t = np.sort(np.append(t, p[1]))
        c = stein.solve(t, p).observed["transgene"]
        assert t[np.argmax(c)] == pytest.approx(p[1])
        assert c.max() == pytest.approx(p[2], rel=1e-12)
        assert c[0] == pytest.approx(p[2] / p[0], rel=1e-12)


def test_batch_matches_single_and_flags_invalid_rows(stein):
    rng = np.random.default_rng(2)
    P = stein.typical * np.exp(0.5 * rng.standard_normal((50, 6)))
    P[:, 4] = np.minimum(P[:, 4], 0.5)
    P[7, 3] = np.nan
    P[8, 4] = 1.5  # fb must be in [0, 1]
    b = stein.solve_batch(DAYS, P)
    assert b.observed["transgene"].shape == (50, DAYS.size)
    assert b.status[7] == 4 and b.status[8] == 4
    assert np.all(np.isnan(b.observed["transgene"][[7, 8]]))
    ok = np.setdiff1d(np.arange(50), [7, 8])
    assert np.all(b.status[ok] == 0)
    for i in (0, 13, 49):
        np.testing.assert_allclose(b.observed["transgene"][i],
                                   stein.solve(DAYS, P[i]).observed["transgene"], rtol=1e-14)


def test_dataframe_table_and_parameter_errors(stein):
    import pandas as pd

    df = pd.DataFrame({"cmax": [24000.0, 48000.0], "tocilizumab_day": [np.nan, 5.0]})
    b = stein.solve_batch([28.0], df)
    assert b.observed["transgene"][0, 0] == pytest.approx(1373.56, rel=1e-4)
    assert b.observed["transgene"][1, 0] > 2 * b.observed["transgene"][0, 0]  # toci: faster rho
    with pytest.raises(CartKineticsError, match="no parameter 'cmx'"):
        stein.solve([1.0], {"cmx": 1.0})
    with pytest.raises(CartKineticsError, match="sorted"):
        stein.solve([5.0, 1.0])
    with pytest.raises(CartKineticsError, match="unknown columns"):
        stein.solve_batch([1.0], pd.DataFrame({"bogus": [1.0]}))


def test_comedication_factor_on_rho(stein):
    p = stein.typical
    base = stein.solve(DAYS, p).observed["transgene"]
    toci = stein.solve(DAYS, p, covariates={"tocilizumab_day": 5.0}).observed["transgene"]
    ster = stein.solve(DAYS, p, covariates={"corticosteroid_day": 2.0}).observed["transgene"]
    np.testing.assert_allclose(ster, base, rtol=1e-14)  # factor 1.0
    rho = np.log(p[0]) / p[1]
    np.testing.assert_allclose(toci[DAYS <= 5], base[DAYS <= 5], rtol=1e-14)
    # after day 5 the expansion runs at 1.2 rho: peak = Cmax * exp(0.2 rho (Tmax - 5))
    peak = toci[DAYS == 9.3][0]
    assert peak == pytest.approx(p[2] * np.exp(0.2 * rho * (9.3 - 5.0)), rel=1e-12)
    late = stein.solve(DAYS, p, covariates={"tocilizumab_day": 20.0}).observed["transgene"]
    np.testing.assert_allclose(late, base, rtol=1e-14)  # after Tmax: no effect on rho


@pytest.mark.parametrize("cov", [None, {"tocilizumab_day": 4.0, "corticosteroid_day": 6.0}])
def test_analytic_sensitivities_vs_central_differences(stein, cov):
    t = np.array([2.0, 8.0, 12.0, 28.0, 90.0, 300.0])  # away from the kink at Tmax
    p = stein.typical
    obs, grad, status = stein.sensitivities(t, p, covariates=cov)
    assert status == 0 and grad.shape == (t.size, 6)
    fd = np.empty_like(grad)
    for j in range(6):
        h = 1e-5 * p[j]
        up, dn = p.copy(), p.copy()
        up[j] += h
        dn[j] -= h
        fd[:, j] = (stein.solve(t, up, covariates=cov).observed["transgene"]
                    - stein.solve(t, dn, covariates=cov).observed["transgene"]) / (2 * h)
    scale = np.abs(fd).max(axis=0) + 1e-300
    np.testing.assert_allclose(grad / scale, fd / scale, atol=1e-7)
    np.testing.assert_allclose(obs, stein.solve(t, p, covariates=cov).observed["transgene"])
    _, dlog, _ = stein.log_sensitivities(t, p, covariates=cov)
    np.testing.assert_allclose(dlog, grad * p / obs[:, None])


@pytest.mark.parametrize("method", ["auto", "rodas5p", "scipy-radau"])
def test_ode_form_equals_closed_form(stein, stein_ode, method):
    rng = np.random.default_rng(3)
    for k in range(3):
        p = stein.typical * (np.exp(0.3 * rng.standard_normal(6)) if k else 1.0)
        p[4] = min(p[4], 0.5)
        sol = stein_ode.solve(DAYS, p, method=method, rtol=1e-9, atol=1e-12)
        assert sol.status == 0, sol.message
        ref = stein.solve(DAYS, p)
        np.testing.assert_allclose(sol.observed["transgene"], ref.observed["transgene"],
                                   rtol=1e-7)
        np.testing.assert_allclose(sol.states["M"], ref.states["M"], rtol=1e-7, atol=1e-9)


def test_ode_sensitivities_equal_analytic(stein, stein_ode):
    t = np.array([1.0, 5.0, 9.3, 12.0, 28.0, 90.0, 365.0])
    obs, grad, status = stein_ode.sensitivities(t, rtol=1e-10)
    assert status == 0
    _, ref, _ = stein.sensitivities(t)
    scale = np.abs(ref).max(axis=0)
    # the Tmax column crosses the switch: the breakpoint jump term (f- - f+) dTmax/dp
    np.testing.assert_allclose(grad / scale, ref / scale, atol=2e-7)


def test_ode_batch_equals_closed_form(stein, stein_ode):
    rng = np.random.default_rng(4)
    P = stein.typical * np.exp(0.3 * rng.standard_normal((200, 6)))
    P[:, 4] = np.minimum(P[:, 4], 0.5)
    b = stein_ode.solve_batch(DAYS, P, rtol=1e-9, atol=1e-12)
    assert np.all(b.status == 0)
    ref = stein.solve_batch(DAYS, P).observed["transgene"]
    np.testing.assert_allclose(b.observed["transgene"], ref, rtol=1e-6)


@pytest.mark.parametrize("rtol", [1e-6, 1e-5, 1e-4, 1e-3])
def test_ode_sensitivities_at_loose_tolerance_large_peak(stein, stein_ode, rtol):
    """A large Cmax (3.7e7) with a fast contraction: d E / d alpha is exactly 0 at the switch
    at Tmax with a derivative of -Cmax, so Hairer's initial-step guess of the contraction
    piece fell under the rounding floor at rtol >= 1e-4 (STEP_TOO_SMALL, NaN likelihoods in a
    population fit at --rtol 1e-4) while 1e-6 solved. Every tolerance must solve, to an error
    in ln C that shrinks with rtol, against the closed form and its analytic gradient."""
    p = np.array([3.9e3, 22.0727665, 3.67879441e7, 3.67879441, 7.9e-3, 3.2e-3])
    t = np.array([1.0, 4.0, 7.0, 11.0, 14.0, 28.0, 90.0])
    obs, grad, status = stein_ode.sensitivities(t, p, rtol=rtol, atol=1e-10)
    assert status == 0
    ref = stein.solve(t, p).observed["transgene"]
    _, gref, _ = stein.sensitivities(t, p)
    np.testing.assert_allclose(np.log(obs), np.log(ref), atol=50 * rtol)
    # d ln C / d ln p, where the columns are comparable
    np.testing.assert_allclose(grad * p / obs[:, None], gref * p / ref[:, None], atol=500 * rtol)
