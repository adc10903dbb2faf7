"""PSIS-LOO against exact leave-one-out (conjugate normal model), compare_models, and
randomised PIT residuals of censored data against the truth."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

az = pytest.importorskip("arviz")

from cartkinetics.errors import CartKineticsError  # noqa: E402
from cartkinetics.fit import model_comparison as MC  # noqa: E402

PRIOR_SD = 10.0


def _conjugate_fit(y, group, sigma=1.0, n_draws=4000, seed=0):
    """A fit-like object: y_i ~ N(theta, sigma), theta ~ N(0, PRIOR_SD); exact posterior
    draws; rows grouped into 'patients' by ``group``."""
    rng = np.random.default_rng(seed)
    prec = 1 / PRIOR_SD**2 + len(y) / sigma**2
    m, v = (y.sum() / sigma**2) / prec, 1 / prec
    th = rng.normal(m, np.sqrt(v), size=(4, n_draws // 4))
    ll = stats.norm.logpdf(y[None, None, :], th[..., None], sigma)
    idata = az.from_dict(posterior={"theta": th}, log_likelihood={"log_y": ll},
                         dims={"log_y": ["obs"]})
    patients = sorted(set(group))
    data = SimpleNamespace(
        n_obs=len(y), n_patients=len(patients), patients=patients,
        obs_series=np.arange(len(y)),
        series_patient=np.array([patients.index(g) for g in group]),
    )
    return SimpleNamespace(idata=idata, data=data, model=SimpleNamespace(name="normal"))


def _exact_elpd(y, groups, sigma=1.0):
    """sum_g ln p(y_g | y_-g), closed form for the conjugate normal model."""
    total = 0.0
    for g in sorted(set(groups)):
        inside = np.array([x == g for x in groups])
        rest = y[~inside]
        prec = 1 / PRIOR_SD**2 + len(rest) / sigma**2
        m, v = (rest.sum() / sigma**2) / prec, 1 / prec
        k = int(inside.sum())
        cov = sigma**2 * np.eye(k) + v * np.ones((k, k))
        total += stats.multivariate_normal(np.full(k, m), cov).logpdf(y[inside])
    return total


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    y = rng.normal(1.0, 1.0, size=24)
    group = [f"P{i // 2}" for i in range(24)]  # 12 patients x 2 rows
    return y, group


def test_psis_loo_matches_exact_leave_one_out(data):
    y, group = data
    fit = _conjugate_fit(y, group)
    res = MC.loo(fit, by="observation")
    assert res.elpd == pytest.approx(_exact_elpd(y, list(range(len(y)))), abs=0.15)
    assert res.n_bad == 0 and len(res.pareto_k) == len(y)
    res_p = MC.loo(fit, by="patient")
    assert res_p.units == sorted(set(group))
    assert res_p.elpd == pytest.approx(_exact_elpd(y, group), abs=0.15)
    d = res_p.to_dict()
    assert set(d["pareto_k"]) == set(group)
    assert "Pareto k" in res_p.summary()


def test_an_outlying_patient_gets_a_large_pareto_k(data):
    y, group = data
    y = y.copy()
    y[:2] = 9.0  # patient P0 far from the others: the posterior leans on it
    res = MC.loo(_conjugate_fit(y, group, n_draws=2000), by="patient")
    k = dict(zip(res.units, res.pareto_k, strict=True))
    assert k["P0"] == max(k.values()) and k["P0"] > 0.5


def test_compare_models_ranks_the_true_model_first(data):
    y, group = data
    good = _conjugate_fit(y, group, sigma=1.0)
    bad = _conjugate_fit(y, group, sigma=3.0)  # residual SD too large
    cmp = MC.compare_models({"sd1": good, "sd3": bad}, by="observation")
    t = cmp.to_frame()
    assert list(t["model"]) == ["sd1", "sd3"]
    exact_diff = _exact_elpd(y, list(range(len(y))), 1.0) - _exact_elpd(
        y, list(range(len(y))), 3.0)
    assert t["elpd_diff"][1] == pytest.approx(exact_diff, abs=0.3)
    assert t["dse"][1] > 0
    cmp.to_dict()


def test_compare_models_by_aic_for_per_patient_fits():
    a = SimpleNamespace(aic=100.0, bic=110.0, n_params=4, model_name="stein2019")
    b = SimpleNamespace(aic=96.0, bic=112.0, n_params=6, model_name="liu2022")
    t = MC.compare_models([a, b]).to_frame()
    assert list(t["model"]) == ["liu2022", "stein2019"]
    assert t["delta_aic"].tolist() == [0.0, 4.0]
    assert t["akaike_weight"][0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    with pytest.raises(CartKineticsError):
        MC.compare_models([a])


def test_randomised_pit_is_uniform_under_the_truth_with_censoring():
    rng = np.random.default_rng(1)
    n = 4000
    pred = rng.normal(5.0, 2.0, n)
    y = pred + 0.6 * rng.standard_normal(n)
    lloq = 4.0
    cens = y < lloq
    assert 0.2 < cens.mean() < 0.5
    obs = np.where(cens, lloq, y)
    u, r = MC.randomised_pit(obs, cens, pred[None, :], np.array([0.6]), rng=2)
    assert stats.kstest(u, "uniform").pvalue > 0.01
    assert abs(r.mean()) < 0.06 and abs(r.std() - 1) < 0.05
    # censored rows: u below the predictive probability of the LLOQ
    assert np.all(u[cens] <= stats.norm.cdf((lloq - pred[cens]) / 0.6) + 1e-12)
    # dropping the censoring information (treating LLOQ as observed) is detected
    u_naive, _ = MC.randomised_pit(obs, np.zeros(n, bool), pred[None, :], np.array([0.6]))
    assert stats.kstest(u_naive, "uniform").pvalue < 1e-6
    # a wrong residual SD is detected
    u_bad, _ = MC.randomised_pit(obs, cens, pred[None, :], np.array([1.2]), rng=2)
    assert stats.kstest(u_bad, "uniform").pvalue < 1e-6
