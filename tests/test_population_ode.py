"""The ODE PyTensor Op: values against the closed form, gradient against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymc")
pt = pytest.importorskip("pytensor.tensor")

from cartkinetics import models  # noqa: E402
from cartkinetics.data import read_kinetics  # noqa: E402
from cartkinetics.fit import population as P  # noqa: E402
from cartkinetics.fit.population_sim import simulate_stein_cohort  # noqa: E402
from cartkinetics.fit.pytensor_ops import ODEObservationOp  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    df, _ = simulate_stein_cohort(3, seed=5, days=(1.0, 4.0, 7.0, 11.0, 14.0, 28.0, 90.0))
    pdata = P.prepare_population_data(read_kinetics(df))
    model = models.get("stein2019_ode")
    rng = np.random.default_rng(2)
    theta = model.typical * np.exp(0.3 * rng.standard_normal((pdata.n_series, model.n_params)))
    return pdata, model, theta


def test_ode_op_matches_closed_form(setup):
    import pytensor

    pdata, model, theta = setup
    op = ODEObservationOp(model, pdata, rtol=1e-9)
    th = pt.dmatrix("th")
    f = pytensor.function([th], op(th))
    got = f(theta)
    ref = np.concatenate(
        [P.stein_log_curve_np(pdata.t[pdata.obs_series == s], theta[s][None, :])
         for s in range(pdata.n_series)]
    )
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_ode_op_gradient_matches_finite_differences(setup):
    """verify_grad compares the sensitivity-based VJP with central differences of the Op."""
    import pytensor

    pdata, model, theta = setup
    op = ODEObservationOp(model, pdata, rtol=1e-10)
    # work on log theta so the finite-difference step is relative for every parameter
    rng = np.random.default_rng(0)
    pytensor.gradient.verify_grad(
        lambda lth: op(pt.exp(lth)), [np.log(theta)], rng=rng, eps=1e-6, abs_tol=1e-4,
        rel_tol=1e-4,
    )


def test_ode_op_gradient_against_closed_form_gradient(setup):
    """The Op's d ln C / d theta equals PyTensor's gradient of the closed form."""
    import pytensor

    pdata, model, theta = setup
    op = ODEObservationOp(model, pdata, rtol=1e-10)
    _, jac = op.evaluate(theta)
    t = pt.dvector("t")
    thl = pt.dmatrix("thl")
    fb = pt.dvector("fb")
    out = P.stein_log_curve_pt(t, thl, fb)
    g = pytensor.function([t, thl, fb], pytensor.gradient.jacobian(out, [thl, fb]))
    for s in range(pdata.n_series):
        sel = pdata.obs_series == s
        tt = pdata.t[sel]
        n = tt.size
        TH = np.tile(np.log(theta[s][[0, 1, 2, 3, 5]]), (n, 1))
        jth, jfb = g(tt, TH, np.full(n, theta[s][4]))
        # jacobian of out (n,) wrt TH (n, 5): diagonal blocks; d/d theta = d/d log theta / theta
        d_log = np.array([jth[i, i, :] for i in range(n)])
        ref = np.empty((n, 6))
        ref[:, [0, 1, 2, 3, 5]] = d_log / theta[s][[0, 1, 2, 3, 5]]
        ref[:, 4] = np.diag(jfb)
        # away from the kink at Tmax (one-sided derivatives differ there)
        ok = np.abs(tt - theta[s][1]) > 1e-6
        np.testing.assert_allclose(jac[sel][ok], ref[ok], rtol=2e-4, atol=1e-6)


@pytest.fixture(scope="module")
def liu_setup():
    import pandas as pd

    model = models.get("liu2022")
    rng = np.random.default_rng(4)
    days = np.array([2.0, 5.0, 7.0, 10.0, 14.0, 21.0, 28.0, 60.0])
    rows = []
    thetas = []
    for i in range(4):
        th = model.typical * np.exp(0.2 * rng.standard_normal(model.n_params))
        thetas.append(th)
        c = model.solve(days, th).observed[model.primary_observation]
        y = c * np.exp(0.3 * rng.standard_normal(days.size))
        for d, v in zip(days, y, strict=True):
            rows.append({"patient": f"L{i}", "infusion": 1, "day": d, "value": max(v, 0.2),
                         "lloq": 0.2, "assay": "qpcr", "blq": int(v < 0.2)})
    pdata = P.prepare_population_data(read_kinetics(pd.DataFrame(rows)))
    return pdata, model, np.array(thetas)


def test_ode_op_numba_implementation_matches_python(liu_setup):
    """The registered numba implementation (used by nutpie's numba backend) gives the same
    log-likelihood and gradient as the Python perform, with no object-mode fallback."""
    import warnings

    import pytensor

    pdata, model, theta = liu_setup
    op = ODEObservationOp(model, pdata, rtol=1e-8)
    assert op.batched
    th = pt.dmatrix("th")
    lp = op(th)
    ll = -0.5 * pt.sum((pdata.log_y - lp) ** 2)
    outs = [ll, pytensor.grad(ll, th)]
    f_py = pytensor.function([th], outs)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        f_nb = pytensor.function([th], outs, mode="NUMBA")
        a, b = f_py(theta), f_nb(theta)
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-12)
    # and the batched path agrees with one model.sensitivities call per series
    ref = ODEObservationOp(model, pdata, rtol=1e-8, batch=False)
    l1, j1 = op.evaluate(theta)
    l2, j2 = ref.evaluate(theta)
    np.testing.assert_allclose(l1, l2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(j1, j2, rtol=1e-4, atol=1e-6 * np.abs(j2).max())
