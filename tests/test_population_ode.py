"""The ODE PyTensor Op: values against the closed form, gradient against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymc")
pt = pytest.importorskip("pytensor.tensor")

from cartkinetics import models  # noqa: E402
from cartkinetics.data import read_kinetics  # noqa: E402
from cartkinetics.fit import population as P  # noqa: E402
from cartkinetics.fit.pytensor_ops import ODEObservationOp  # noqa: E402
from cartkinetics.testing import liu_cohort, simulate_stein_cohort  # noqa: E402


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
    return liu_cohort(seed=4)


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def liu_two_outputs():
    """Liu 2022 cohort with CAR-T levels (qpcr) and leukaemia counts, simulated from known
    parameters."""
    return liu_cohort(seed=8, outputs=(("qpcr", "car_t", 0.3), ("leukaemia", "leukaemia", 0.5)),
                      rtol=1e-10, unit="cells/uL")


def test_two_outputs_layout_and_values(liu_two_outputs):
    """Rows of both outputs join one series per patient; the Op predicts each row from its
    own model observation (checked against model.solve at tight tolerance)."""
    pdata, model, theta = liu_two_outputs
    assert pdata.outputs == ["qpcr", "leukaemia"] and pdata.n_series == 4
    assert np.bincount(pdata.obs_output).tolist() == [32, 32]
    assert np.all(np.diff(pdata.obs_series) >= 0)  # rows grouped by series
    op = ODEObservationOp(model, pdata, rtol=1e-9, observations=["car_t", "leukaemia"])
    logp, _ = op.evaluate(theta)
    for s in range(pdata.n_series):
        sol = model.solve(np.unique(pdata.t), theta[s], rtol=1e-11)
        for k, name in enumerate(("car_t", "leukaemia")):
            sel = (pdata.obs_series == s) & (pdata.obs_output == k)
            ref = np.log(np.interp(pdata.t[sel], sol.t, sol.observed[name]))
            np.testing.assert_allclose(logp[sel], ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(P.CartKineticsError, match="which observation"):
        P.build_model(pdata, model)
    with pytest.raises(P.CartKineticsError, match="not an observation"):
        P.build_model(pdata, model, observations={"leukaemia": "tumour"})


@pytest.mark.slow
def test_two_outputs_gradient_and_numba_path(liu_two_outputs):
    """Sensitivity-based gradient of the two-output Op against central differences; the numba
    implementation (nutpie's backend) and the per-series path agree with the batched one."""
    import warnings

    import pytensor

    pdata, model, theta = liu_two_outputs
    free = ["rTA0", "lTA0", "eBp"]
    jfree = [model.param_names.index(n) for n in free]
    op = ODEObservationOp(model, pdata, rtol=1e-10, wrt=free,
                          observations=["car_t", "leukaemia"])
    assert op.batched

    def f_of(lfree):
        th = pt.set_subtensor(pt.as_tensor(theta)[:, jfree], pt.exp(lfree))
        return op(th)

    pytensor.gradient.verify_grad(f_of, [np.log(theta[:, jfree])],
                                  rng=np.random.default_rng(1), eps=1e-6, abs_tol=1e-4,
                                  rel_tol=1e-4)
    th = pt.dmatrix("th")
    sig = np.where(pdata.obs_output == 0, 0.3, 0.5)
    ll = -0.5 * pt.sum(((pdata.log_y - op(th)) / sig) ** 2)
    outs = [ll, pytensor.grad(ll, th)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        a = pytensor.function([th], outs)(theta)
        b = pytensor.function([th], outs, mode="NUMBA")(theta)
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-12)
    ref = ODEObservationOp(model, pdata, rtol=1e-10, batch=False, wrt=free,
                           observations=["car_t", "leukaemia"])
    l1, j1 = op.evaluate(theta)
    l2, j2 = ref.evaluate(theta)
    np.testing.assert_allclose(l1, l2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(j1, j2, rtol=1e-4, atol=1e-6 * np.abs(j2).max())


def test_two_outputs_pymc_likelihood(liu_two_outputs):
    """The PyMC model's observed log-likelihood with one residual SD per output equals a sum
    of scipy normal log-densities (M3 log-CDF for BLQ rows) written out here."""
    from scipy import stats

    pdata, model, theta = liu_two_outputs
    free = ("rTA0", "lTA0", "eBp")
    fixed = {n: v for n, v in zip(model.param_names, model.typical, strict=True)
             if n not in free}
    fixed["nB0"] = {p: 1000.0 + 500 * i for i, p in enumerate(pdata.patients)}
    m, info = P.build_model(pdata, model, fixed=fixed,
                            observations={"leukaemia": "leukaemia"})
    assert info["observations"] == {0: "car_t", 1: "leukaemia"}
    point = m.initial_point()
    point["sigma_log__"] = np.log(np.array([0.4, 0.9]))
    outs = [m.logp(vars=[m["log_y"]], sum=True), *m.replace_rvs_by_values([m["theta"]])]
    lp, th = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore")(point)
    assert th[:, model.param_names.index("nB0")].tolist() == [1000.0, 1500.0, 2000.0, 2500.0]
    total = 0.0
    for s in range(pdata.n_series):
        sol = model.solve(np.unique(pdata.t), th[s], rtol=1e-10)
        for k, (name, sd) in enumerate((("car_t", 0.4), ("leukaemia", 0.9))):
            sel = (pdata.obs_series == s) & (pdata.obs_output == k)
            mu = np.log(np.interp(pdata.t[sel], sol.t, sol.observed[name]))
            c = pdata.censored[sel]
            y = pdata.log_y[sel]
            total += stats.norm.logpdf(y[~c], mu[~c], sd).sum()
            total += stats.norm.logcdf(y[c], mu[c], sd).sum()
    assert float(lp) == pytest.approx(total, rel=1e-5)


@pytest.mark.slow
def test_two_outputs_fit_population_end_to_end(liu_two_outputs, tmp_path):
    """A (short) two-output sampling run: one residual SD per output in the posterior and the
    summary, every row of both outputs in the log-likelihood and posterior predictive groups,
    per-patient CAR-T outcomes, and the saved report files."""
    import matplotlib

    matplotlib.use("Agg")
    pdata, model, _ = liu_two_outputs
    free = ("rTA0", "lTA0")
    fixed = {n: v for n, v in zip(model.param_names, model.typical, strict=True)
             if n not in free}
    fit = P.fit_population(pdata, model, observations={"leukaemia": "leukaemia"}, fixed=fixed,
                           draws=30, tune=30, chains=1, seed=1, progress=False, warn=False)
    assert fit.idata.posterior["sigma"].dims == ("chain", "draw", "output")
    summ = fit.summary()
    assert {"residual qpcr", "residual leukaemia"} <= set(summ["name"])
    assert fit.idata.log_likelihood["log_y"].shape[-1] == pdata.n_obs == 64
    assert np.all(np.isfinite(fit.idata.log_likelihood["log_y"].values))
    # the group's pointwise values of one draw against scipy, each row from its own output
    from scipy import stats

    th = fit.idata.posterior["theta"].values[0, 5]
    sd = fit.idata.posterior["sigma"].values[0, 5]
    ll = fit.idata.log_likelihood["log_y"].values[0, 5]
    for s in range(pdata.n_series):
        sol = model.solve(np.unique(pdata.t), th[s], rtol=1e-10)
        for k, name in enumerate(("car_t", "leukaemia")):
            sel = (pdata.obs_series == s) & (pdata.obs_output == k)
            mu = np.log(np.interp(pdata.t[sel], sol.t, sol.observed[name]))
            y, c = pdata.log_y[sel], pdata.censored[sel]
            ref = np.where(c, stats.norm.logcdf(y, mu, sd[k]), stats.norm.logpdf(y, mu, sd[k]))
            np.testing.assert_allclose(ll[sel], ref, rtol=1e-4, atol=1e-4)
    assert fit.idata.posterior_predictive["log_y"].shape[-1] == 64
    assert len(fit.patient_outcomes()) == 4
    assert fit.to_dict()["outputs"] == ["qpcr", "leukaemia"]
    saved = fit.save(tmp_path)
    assert saved["vpc_censored"].exists() and saved["individual_pred"].exists()


@pytest.mark.slow
def test_pooled_parameter_fit_end_to_end(liu_two_outputs):
    """A short run with lTA0 estimated at the population level only (``pooled=``): every
    series takes the same lTA0 = exp(mu) in every draw, omega is 0 for it and is sampled as
    omega_re for rTA0 only; summary, diagnostics and shrinkage leave the pooled parameter's
    (absent) random effect out."""
    pdata, model, _ = liu_two_outputs
    free = ("rTA0", "lTA0")
    fixed = {n: v for n, v in zip(model.param_names, model.typical, strict=True)
             if n not in free}
    fit = P.fit_population(pdata, model, observations={"leukaemia": "leukaemia"}, fixed=fixed,
                           pooled=("lTA0",), draws=30, tune=30, chains=1, seed=2,
                           progress=False, warn=False)
    post = fit.idata.posterior
    assert list(post["omega_re"].coords["param_re"].values) == ["rTA0"]
    np.testing.assert_array_equal(post["omega"].sel(param="lTA0").values, 0.0)
    np.testing.assert_allclose(post["omega"].sel(param="rTA0").values,
                               post["omega_re"].sel(param_re="rTA0").values)
    j = list(model.param_names).index("lTA0")
    lta0 = post["theta"].values[..., j]  # (chain, draw, series)
    typical = np.exp(post["mu"].sel(param="lTA0").values)[..., None]
    np.testing.assert_allclose(lta0, np.broadcast_to(typical, lta0.shape), rtol=1e-12)
    assert np.ptp(post["theta"].values[..., list(model.param_names).index("rTA0")], -1).min() > 0
    summ = fit.summary()
    assert list(summ.loc[summ["kind"] == "omega", "name"]) == ["rTA0"]
    assert np.isfinite(summ.loc[summ["kind"] == "omega", "ess_bulk"]).all()
    assert list(fit.shrinkage()["parameter"]) == ["rTA0"]
    d = fit.diagnostics(warn=False)
    assert np.isfinite(d["min_ess_bulk"])


def test_series_solved_to_their_group_horizon():
    """Series that end on different days are solved through their horizon group (not all to
    the cohort's last day); the predictions still match model.solve at tight tolerance, and
    the numba form (nutpie's) gives the same numbers as the Python form."""
    import pandas as pd

    from cartkinetics.fit.pytensor_ops import HORIZON_GROUPS, _horizons, _numba_evaluator

    model = models.get("liu2022")
    rng = np.random.default_rng(3)
    theta = model.typical * np.exp(0.2 * rng.standard_normal((6, model.n_params)))
    days = np.array([1.0, 2.0, 4.0, 7.0, 14.0, 28.0, 60.0, 120.0])
    ends = [4.0, 14.0, 28.0, 60.0, 120.0, 120.0]  # each patient's last sample
    rows = []
    for i, (th, end) in enumerate(zip(theta, ends, strict=True)):
        dd = days[days <= end]
        level = model.solve(dd, th, rtol=1e-10).observed["car_t"]
        rows += [{"patient": f"L{i}", "infusion": 1, "day": d, "value": v, "lloq": 0.2,
                  "assay": "qpcr", "blq": 0} for d, v in zip(dd, level, strict=True)]
    pdata = P.prepare_population_data(read_kinetics(pd.DataFrame(rows)))
    theta = theta[[int(p[1:]) for p in pdata.patients]][pdata.series_patient]
    t_all = np.unique(pdata.t)
    t_pos = np.searchsorted(t_all, pdata.t)
    nt = _horizons(pdata.obs_series, t_pos, pdata.n_series)
    for s in range(pdata.n_series):
        assert nt[s] >= t_pos[pdata.obs_series == s].max() + 1  # covers its observations
    assert len(np.unique(nt)) <= HORIZON_GROUPS and nt.min() < nt.max() == t_all.size
    op = ODEObservationOp(model, pdata, rtol=1e-9, wrt=["rTA0", "lTA0"])
    logp, jac = op.evaluate(theta)
    for s in range(pdata.n_series):
        sel = pdata.obs_series == s
        sol = model.solve(np.unique(pdata.t[sel]), theta[s], rtol=1e-11)
        ref = np.log(np.interp(pdata.t[sel], sol.t, sol.observed["car_t"]))
        np.testing.assert_allclose(logp[sel], ref, rtol=1e-6, atol=1e-6)
    l2, j2 = _numba_evaluator(op)(theta)
    np.testing.assert_array_equal(logp, l2)
    np.testing.assert_array_equal(jac, j2)


def test_rtol_reaches_the_solver_and_bounds_the_likelihood_error(setup):
    """``build_model(rtol=)``: the ODE form's log-likelihood at the model's initial point
    approaches the closed form's as rtol tightens (so the option reaches the solves), stays
    finite at loose tolerances (it was NaN at rtol >= 1e-4 before the initial-step floor), and
    closed-form models refuse it."""
    from cartkinetics.errors import CartKineticsError

    pdata = setup[0]

    def loglik(model, **kw):
        m, info = P.build_model(pdata, model, **kw)
        return float(m.compile_logp(vars=m.observed_RVs)(m.initial_point())), info

    ref, _ = loglik("stein2019")
    err = {}
    for rtol in (1e-10, 1e-5, 1e-3):
        v, info = loglik("stein2019_ode", rtol=rtol)
        assert info["rtol"] == rtol
        err[rtol] = abs(v - ref)
    assert err[1e-10] < 1e-6
    assert 1e-6 < err[1e-3] < 5.0  # the tolerance is used, and its error stays small
    assert err[1e-5] < err[1e-3]
    assert loglik("stein2019_ode")[1]["rtol"] == P.ODE_RTOL
    with pytest.raises(CartKineticsError, match="closed form"):
        P.build_model(pdata, "stein2019", rtol=1e-4)
    with pytest.raises(CartKineticsError, match="rtol must lie"):
        P.build_model(pdata, "stein2019_ode", rtol=0.5)
