"""Inter-occasion variability and an infusion effect on any parameter: the model's terms,
and recovery with coverage over replicate simulated cohorts (slow)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymc")

from cartkinetics import models  # noqa: E402
from cartkinetics.errors import CartKineticsError  # noqa: E402
from cartkinetics.fit import population as P  # noqa: E402
from cartkinetics.testing import simulate_stein_cohort  # noqa: E402

IOV_TRUE = {"alpha": 0.4, "cmax": 0.3}
EFFECT_TRUE = {"beta": float(np.log(0.5))}  # second infusion: slow phase halves its rate


def _pdata(n=6, seed=0, infusions=2, **kw):
    from cartkinetics.data import read_kinetics

    df, truth = simulate_stein_cohort(n, infusions=infusions, seed=seed, **kw)
    return P.prepare_population_data(read_kinetics(df)), truth


def test_iov_terms_enter_the_log_density_as_written():
    """logp(with IOV) - logp(without) at the same point = the kappa and omega_iov prior
    terms, when kappa = 0 (then the curves do not move)."""
    from scipy import stats

    pdata, _ = _pdata()
    m1, _ = P.build_model(pdata, iov=["alpha", "beta"])
    m0, _ = P.build_model(pdata)
    pt1 = m1.initial_point()
    pt0 = m0.initial_point()
    for k in pt0:
        np.testing.assert_array_equal(pt1[k], pt0[k])
    pt1["kappa"] = np.zeros_like(pt1["kappa"])
    om = np.array([0.2, 0.5])
    pt1["omega_iov_log__"] = np.log(om)
    lp1 = m1.compile_logp()(pt1)
    lp0 = m0.compile_logp()(pt0)
    extra = (stats.norm.logpdf(0.0) * pt1["kappa"].size
             + stats.halfnorm.logpdf(om, scale=P.IOV_PRIOR_SCALE).sum() + np.log(om).sum())
    assert lp1 - lp0 == pytest.approx(extra, rel=1e-9, abs=1e-8)


def test_iov_moves_each_series_on_its_own():
    pdata, _ = _pdata()
    m, _ = P.build_model(pdata, iov=["cmax"])
    pt = m.initial_point()
    theta = m.compile_fn(m.replace_rvs_by_values([m["theta"]])[0], inputs=m.value_vars,
                         on_unused_input="ignore")
    base = theta(pt)
    pt["kappa"] = np.zeros_like(pt["kappa"])
    pt["kappa"][3, 0] = 1.0  # series 3, cmax
    moved = theta(pt)
    om = np.exp(pt["omega_iov_log__"][0])
    j = models.get("stein2019").param_names.index("cmax")
    ratio = moved[:, j] / base[:, j]
    assert ratio[3] == pytest.approx(np.exp(om), rel=1e-12)
    np.testing.assert_allclose(np.delete(ratio, 3), 1.0, rtol=1e-12)


def test_iov_needs_two_infusions_and_known_parameters():
    pdata, _ = _pdata(infusions=1)
    with pytest.raises(CartKineticsError, match="two infusions"):
        P.build_model(pdata, iov=["alpha"])
    pdata, _ = _pdata()
    with pytest.raises(CartKineticsError, match="not a free parameter"):
        P.build_model(pdata, iov=["gamma"])


def test_simulator_iov_none_is_the_earlier_cohort_and_iov_varies_occasions():
    a, _ = simulate_stein_cohort(5, seed=4)
    b, _ = simulate_stein_cohort(5, seed=4, iov=None)
    np.testing.assert_array_equal(a["value"], b["value"])
    _, t = simulate_stein_cohort(400, seed=4, iov={"alpha": 0.4}, tau={"cmax": 0, "tmax": 0},
                                 cmax_ratio=1.0, tmax_ratio=1.0)
    th = t["theta"].reshape(400, 2, 6)
    d = np.log(th[:, 1, 3]) - np.log(th[:, 0, 3])  # difference of two occasions' ln alpha
    assert d.std(ddof=1) == pytest.approx(0.4 * np.sqrt(2), rel=0.1)
    np.testing.assert_allclose(np.log(th[:, 1, 5]), np.log(th[:, 0, 5]))  # no IOV on beta


@pytest.mark.slow
def test_iov_and_infusion_effect_recovered_with_nominal_coverage():
    """Replicate cohorts simulated with IOV on alpha and cmax and a second-infusion effect
    on beta, cmax and tmax; the truth inside the 95% CrI at about the nominal rate."""
    pytest.importorskip("nutpie")
    reps, hits, total = 8, 0, 0
    for r in range(reps):
        pdata, truth = _pdata(n=20, seed=100 + r, iov=IOV_TRUE, effects=EFFECT_TRUE,
                              tau={"cmax": 0.0, "tmax": 0.0})
        fit = P.fit_population(pdata, iov=list(IOV_TRUE),
                               infusion_effect=["cmax", "tmax", "beta"],
                               infusion_effect_random=False, draws=500, tune=700, chains=2,
                               seed=r, progress=False, warn=False)
        om = fit._stack("omega_iov")
        de = fit._stack("delta")
        checks = [(om[:, k], IOV_TRUE[n]) for k, n in enumerate(IOV_TRUE)]
        checks += [(de[:, k], truth["delta"][e]) for k, e in enumerate(fit.info["effects"])]
        for draws, true in checks:
            lo, hi = np.quantile(draws, [0.025, 0.975])
            hits += bool(lo <= true <= hi)
            total += 1
    # 40 intervals at 95%: P(fewer than 34 hits) < 0.5% under nominal coverage
    assert hits >= 34, f"{hits}/{total} intervals cover the truth"
