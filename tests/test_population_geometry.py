"""Sampler-geometry pieces of the population model, checked without sampling.

- the pure-numba ``erfcx`` registered for PyTensor's numba backend against scipy,
- the numba-compiled censored log-likelihood against the same graph compiled by PyTensor's
  default (C) backend,
- the default priors of the between-patient SDs (LogNormal, median = Stein 2019's published
  SD),
- the domain truncation (alpha <= 10/day, Tmax <= 60 days) in prior draws, and the ordering
  penalty alpha > beta against its closed form,
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pm = pytest.importorskip("pymc")
pytest.importorskip("pytensor")
scipy_special = pytest.importorskip("scipy.special")

from cartkinetics import models  # noqa: E402
from cartkinetics.data import read_kinetics  # noqa: E402
from cartkinetics.errors import CartKineticsError  # noqa: E402
from cartkinetics.fit import population as P  # noqa: E402
from cartkinetics.testing import simulate_stein_cohort  # noqa: E402


def test_erfcx_matches_scipy():
    x = np.concatenate([np.linspace(-26.0, 40.0, 6601), np.logspace(1, 8, 200)])
    ours = np.array([P._erfcx(float(v)) for v in x])
    ref = scipy_special.erfcx(x)
    fin = np.isfinite(ref)
    np.testing.assert_allclose(ours[fin], ref[fin], rtol=1e-12)
    # both overflow to +inf for large negative x
    assert np.all(np.isinf(ours[~fin]))


@pytest.fixture(scope="module")
def small():
    df, truth = simulate_stein_cohort(6, seed=3)
    return P.prepare_population_data(read_kinetics(df)), truth


@pytest.mark.slow
def test_numba_logp_with_cacheable_erfcx_equals_c_backend(small):
    """The log-density and its gradient, numba (our erfcx) versus PyTensor's C backend."""
    import pytensor

    pdata, _ = small
    assert pdata.censored.any()
    assert P.register_cacheable_erfcx()
    m, _ = P.build_model(pdata)
    ip = m.initial_point()
    rng = np.random.default_rng(0)
    logp = m.logp()
    grad = pytensor.grad(logp, m.value_vars)
    f_c = pytensor.function(m.value_vars, [logp, *grad])
    f_n = pytensor.function(m.value_vars, [logp, *grad], mode="NUMBA")
    for _ in range(3):
        point = [ip[v.name] + 0.3 * rng.standard_normal(np.shape(ip[v.name]))
                 for v in m.value_vars]
        a, b = f_c(*point), f_n(*point)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-9)


def test_default_omega_priors_lognormal_at_published_sd():
    pri = P.default_priors("stein2019")
    model = models.get("stein2019")
    for p in model.parameters:
        fam, median, sd_log = pri["omega"][p.name]
        assert fam == "lognormal" and sd_log == P.OMEGA_SD_LOG
        # the prior median is the published SD sqrt(omega^2) (Stein 2019 Table 1)
        assert median == pytest.approx(math.sqrt(model.bsv[p.name]))
    # a model without published variability: median 1 on the log scale, sd_log 1
    liu = P.default_priors("liu2022")
    assert all(v == ("lognormal", 1.0, P.OMEGA_SD_LOG_UNPUBLISHED)
               for v in liu["omega"].values())


def test_omega_prior_families_and_errors(small):
    pdata, _ = small
    names = models.get("stein2019").param_names
    m, _ = P.build_model(pdata, priors={"omega": {n: 1.0 for n in names}})
    assert type(m["omega"].owner.op).__name__.startswith("HalfNormal")
    m, _ = P.build_model(pdata, priors={"omega": {n: ("gamma", 2.0, 2.5) for n in names}})
    assert type(m["omega"].owner.op).__name__.startswith("Gamma")
    with pytest.raises(CartKineticsError, match="one family"):
        P.build_model(pdata, priors={"omega": {"cmax": 1.0}})
    with pytest.raises(CartKineticsError, match="expected"):
        P.build_model(pdata, priors={"omega": {n: ("cauchy", 1.0) for n in names}})


def test_prior_draws_respect_domain(small):
    pdata, _ = small
    m, info = P.build_model(pdata)
    assert info["centred"] == list(P.DEFAULT_CENTRED)
    prior = pm.sample_prior_predictive(draws=400, model=m, random_seed=1, var_names=["theta"])
    th = prior.prior["theta"].values[0]  # (draws, series, params)
    names = info["names"]
    first = pdata.series_infusion == 1  # patient-level values (no infusion shift)
    alpha = th[:, :, names.index("alpha")]  # alpha has no infusion effect
    assert np.all(alpha <= 10.0 * (1 + 1e-9))
    assert np.all(th[:, first, names.index("tmax")] <= 60.0 * (1 + 1e-9))
    # the truncation is inactive where the published population lives: the median draw of
    # alpha stays near the published typical value (0.16/day)
    assert 0.05 < np.median(alpha) < 0.5


def test_ordering_penalty_equals_log_sigmoid(small):
    """The alpha > beta term equals sum_i ln sigmoid((ln alpha_i - ln beta_i) / s)."""
    from scipy.special import log_expit

    pdata, _ = small
    m, info = P.build_model(pdata)
    assert "alpha_above_beta" in m.named_vars
    import pytensor

    # the graphs in terms of the sampler's value variables (not new random draws)
    pot_g = m.logp(vars=[m["alpha_above_beta"]])
    eta_g, mu_g = m.replace_rvs_by_values([m["eta"], m["mu"]])
    f = pytensor.function(m.value_vars, [pot_g, eta_g, mu_g], on_unused_input="ignore")
    rng = np.random.default_rng(2)
    ip = m.initial_point()
    free = info["free"]
    for _ in range(3):
        vals = [ip[v.name] + 0.5 * rng.standard_normal(np.shape(ip[v.name]))
                for v in m.value_vars]
        pot, eta, mu = f(*vals)
        phi = eta + mu[None, :]
        gap = (phi[:, free.index("alpha")] - phi[:, free.index("beta")]) / P.ORDER_SCALE
        assert float(pot) == pytest.approx(float(np.sum(log_expit(gap))), rel=1e-10)


def test_truncate_false_restores_plain_normal(small):
    pdata, _ = small
    m, _ = P.build_model(pdata, truncate=False)
    assert "alpha_above_beta" not in m.named_vars
    assert type(m["phi_c"].owner.op).__name__.startswith("Normal")
