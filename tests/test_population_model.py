"""Population model pieces, checked against independent code (no sampling here).

- the PyTensor Stein 2019 curve against the model library's closed form (models.get),
- its gradient against finite differences on both sides of Tmax and at extreme values,
- the PyMC likelihood (pm.Censored) against the project's shared numpy likelihood,
- data preparation and input errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pm = pytest.importorskip("pymc")
pt = pytest.importorskip("pytensor.tensor")

from cartkinetics import models  # noqa: E402
from cartkinetics.data import read_kinetics  # noqa: E402
from cartkinetics.errors import CartKineticsError  # noqa: E402
from cartkinetics.fit import likelihood as lik  # noqa: E402
from cartkinetics.fit import population as P  # noqa: E402
from cartkinetics.testing import simulate_stein_cohort  # noqa: E402


def _stein_pt_function():
    import pytensor

    t = pt.vector("t")
    th = pt.matrix("th")  # ln foldx, ln tmax, ln cmax, ln alpha, ln beta
    fb = pt.vector("fb")
    out = P.stein_log_curve_pt(t, th, fb)
    return pytensor.function([t, th, fb], out), (t, th, fb, out)


def test_stein_pytensor_matches_model_library():
    model = models.get("stein2019")
    f, _ = _stein_pt_function()
    rng = np.random.default_rng(3)
    times = np.array([0.0, 0.5, 1.0, 4.0, 9.29, 9.3, 9.31, 14.0, 28.0, 90.0, 365.0, 1000.0])
    for _ in range(5):
        p = model.typical * np.exp(0.5 * rng.standard_normal(6))
        p[4] = min(p[4], 0.5)
        sol = model.solve(times, p)
        ref = np.log(sol.observed[model.primary_observation])
        th = np.tile(np.log(p[[0, 1, 2, 3, 5]]), (times.size, 1))
        got = f(times, th, np.full(times.size, p[4]))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(
            P.stein_log_curve_np(times, p[None, :]), ref, rtol=1e-10, atol=1e-10
        )


def test_stein_pytensor_gradient_finite_on_both_branches():
    """d ln C / d params by PyTensor against central differences; no NaN/inf anywhere.

    Extreme points (alpha 50 /day far after Tmax, foldx 1e7 long before Tmax) would
    overflow a naive formulation in the branch that switch discards.
    """
    import pytensor

    f, (t, th, fb, out) = _stein_pt_function()
    g = pytensor.function([t, th, fb], pytensor.grad(out.sum(), [th, fb]))
    cases = [
        (np.array([0.5, 3.0, 9.0, 12.0, 60.0, 400.0]),
         np.log([3900.0, 9.3, 24000.0, 0.16, 0.0032]), 0.0079),
        (np.array([0.01, 2000.0]), np.log([1e7, 30.0, 1e5, 50.0, 0.9]), 0.5),
        (np.array([0.0, 5000.0]), np.log([2.0, 1.0, 10.0, 1e-3, 1e-5]), 1e-6),
    ]
    for times, lth, fbv in cases:
        n = times.size
        TH = np.tile(lth, (n, 1))
        FB = np.full(n, fbv)
        gth, gfb = g(times, TH, FB)
        assert np.all(np.isfinite(gth)) and np.all(np.isfinite(gfb))
        h = 1e-6
        for j in range(5):
            e = np.zeros_like(TH)
            e[:, j] = h
            fd = (f(times, TH + e, FB) - f(times, TH - e, FB)) / (2 * h)
            np.testing.assert_allclose(gth[:, j], fd, rtol=1e-5, atol=1e-6)
        hf = 1e-6 * fbv
        fd = (f(times, TH, FB + hf) - f(times, TH, FB - hf)) / (2 * hf)
        np.testing.assert_allclose(gfb, fd, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def small_data():
    df, truth = simulate_stein_cohort(6, seed=11, lloq=300.0)
    return P.prepare_population_data(read_kinetics(df)), truth


@pytest.mark.parametrize("residual", ["normal", "student"])
def test_pymc_censored_likelihood_equals_shared_numpy_likelihood(small_data, residual):
    """The observed-variable logp of the PyMC model = sum of fit.likelihood.loglik per series."""
    pdata, _ = small_data
    assert pdata.censored.any() and (~pdata.censored).any()
    m, info = P.build_model(pdata, "stein2019", residual=residual)
    point = m.initial_point()
    rng = np.random.default_rng(0)
    point = {k: v + 0.3 * rng.standard_normal(np.shape(v)) for k, v in point.items()}
    obs = m["log_y"]
    outs = [m.logp(vars=[obs], sum=True), m["theta"], m["sigma"]]
    if residual == "student":
        outs.append(m["nu"])
    # deterministic quantities as functions of the value variables (not of fresh RV draws)
    outs = [outs[0], *m.replace_rvs_by_values(outs[1:])]
    vals = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore")(point)
    logp_obs, theta, sigma = float(vals[0]), vals[1], float(vals[2])
    nu = float(vals[3]) if residual == "student" else 4.0
    res = lik.ResidualModel(error="normal" if residual == "normal" else "student_t", sigma=sigma,
                            nu=nu)
    total = 0.0
    log_pred_all = np.empty(pdata.n_obs)
    for s in range(pdata.n_series):
        sel = pdata.obs_series == s
        lp = P.stein_log_curve_np(pdata.t[sel], theta[s][None, :])
        log_pred_all[sel] = lp
        prep = lik.PreparedSeries(
            t=pdata.t[sel],
            log_y=np.where(pdata.censored[sel], np.nan, pdata.log_y[sel]),
            log_lloq=np.where(pdata.censored[sel], pdata.log_y[sel], np.nan),
            censored=pdata.censored[sel],
            rows=np.arange(sel.sum()),
            censoring="M3",
        )
        total += lik.loglik(lp, prep, res)
    assert logp_obs == pytest.approx(total, rel=1e-9, abs=1e-8)
    # the numpy version used for the log_likelihood group agrees too
    ll = P.log_likelihood_np(log_pred_all[None, :], pdata, np.array([sigma]),
                             None if residual == "normal" else np.array([nu]))
    assert ll.sum() == pytest.approx(total, rel=1e-9, abs=1e-8)


def test_prepare_population_data_layout(small_data):
    pdata, truth = small_data
    assert pdata.n_patients == 6 and pdata.n_series == 12
    assert set(pdata.series_infusion.tolist()) == {1, 2}
    # censored rows: value = the LLOQ, lower bound = ln LLOQ; others unbounded
    np.testing.assert_allclose(pdata.value[pdata.censored], 300.0)
    np.testing.assert_allclose(pdata.log_lower[pdata.censored], np.log(300.0))
    assert np.all(np.isneginf(pdata.log_lower[~pdata.censored]))
    assert pdata.censored.mean() == pytest.approx(truth["blq_fraction"])
    frame = pdata.frame()
    assert list(frame.columns[:3]) == ["patient", "infusion", "day"]


def test_input_errors(small_data):
    pdata, _ = small_data
    df, _ = simulate_stein_cohort(3, seed=1)
    flow = df.copy()
    flow["assay"] = "flow"
    both = read_kinetics(pd.concat([df, flow], ignore_index=True))
    with pytest.raises(CartKineticsError, match="several assays"):
        P.prepare_population_data(both)
    assert P.prepare_population_data(both, assay="flow").assay == "flow"
    with pytest.raises(CartKineticsError, match="not a column"):
        P.build_model(pdata, covariates={"cmax": ["weight"]})
    with pytest.raises(CartKineticsError, match="unknown"):
        P.build_model(pdata, priors={"mu": {"nonsense": (0, 1)}})
    with pytest.raises(CartKineticsError, match="infusion_effect"):
        P.build_model(pdata, infusion_effect=("gamma",))
    with pytest.raises(CartKineticsError, match="residual"):
        P.build_model(pdata, residual="cauchy")


def test_priors_centred_on_published_values():
    pri = P.default_priors("stein2019")
    model = models.get("stein2019")
    for p in model.parameters:
        mean, sd = pri["mu"][p.name]
        expected = np.log(p.value) if p.name != "fb" else np.log(p.value / (1 - p.value))
        assert mean == pytest.approx(expected)
        assert sd == 1.0
        # LogNormal(ln s, 0.5): the prior median is the published SD
        fam, median, _ = pri["omega"][p.name]
        assert fam == "lognormal"
        assert median == pytest.approx(np.sqrt(model.bsv[p.name]))
    assert pri["sigma"] == ("lognormal", 0.56, 0.5)


def test_covariates_build(small_data):
    pdata, _ = small_data
    table = pd.DataFrame(
        {"patient": pdata.patients, "dose_per_kg": np.linspace(1e6, 5e6, 6),
         "target": ["CD19", "CD19", "CD7", "CD19", "BCMA", "CD19"]}
    )
    pdata.patient_table = table.set_index("patient")
    m, info = P.build_model(pdata, covariates={"cmax": ["dose_per_kg", "target"]})
    d = info["design"]
    assert d.names == ["log_dose_per_kg", "target[BCMA]", "target[CD7]"]
    assert d.references["target"] == "CD19"
    np.testing.assert_allclose(d.X[:, 0].mean(), 0.0, atol=1e-12)
    assert "b" in m.named_vars
    pdata.patient_table = None


def test_fixed_per_patient_values(small_data):
    """fixed= takes a number, a patient-table column or a mapping patient -> value; the
    series' parameter rows carry each patient's own value (a regressor such as Liu 2022's
    baseline leukaemia) and the likelihood uses it."""
    pdata, _ = small_data
    beta = {p: 0.002 * (1 + i) for i, p in enumerate(pdata.patients)}
    expected = np.array([beta[pdata.patients[i]] for i in pdata.series_patient])
    pdata.patient_table = pd.DataFrame({"beta_reg": beta}).rename_axis("patient")
    try:
        for spec in ({"beta": beta}, {"beta": "beta_reg"}, {"beta": pd.Series(beta)}):
            m, info = P.build_model(pdata, "stein2019", fixed=spec)
            assert "beta" not in info["free"]
            theta = m.compile_fn(m.replace_rvs_by_values([m["theta"]])[0],
                                 inputs=m.value_vars, on_unused_input="ignore")(
                m.initial_point())
            np.testing.assert_allclose(theta[:, info["names"].index("beta")], expected,
                                       rtol=1e-12)
            assert info["fixed"]["beta"] == pytest.approx(np.median(list(beta.values())))
        # the likelihood sees the per-patient value: a different beta changes log p
        pt_ = m.initial_point()
        lp1 = m.compile_logp()(pt_)
        m2, _ = P.build_model(pdata, "stein2019", fixed={"beta": 0.002})
        assert m2.compile_logp()(pt_) != pytest.approx(lp1)
        missing = dict(beta)
        missing.pop(pdata.patients[2])
        with pytest.raises(CartKineticsError, match=f"no value for patient {pdata.patients[2]}"):
            P.build_model(pdata, fixed={"beta": missing})
        bad = dict(beta)
        bad[pdata.patients[1]] = -1.0
        with pytest.raises(CartKineticsError, match=f"patient {pdata.patients[1]}"):
            P.build_model(pdata, fixed={"beta": bad})
        with pytest.raises(CartKineticsError, match="no such column"):
            P.build_model(pdata, fixed={"beta": "nonsense"})
        with pytest.raises(CartKineticsError, match="unknown parameter"):
            P.build_model(pdata, fixed={"gamma": 1.0})
    finally:
        pdata.patient_table = None


def test_pooled_parameters_have_no_random_effect(small_data):
    """pooled= estimates a parameter at the population level only: no between-patient SD, no
    z, every series takes exp(mu); log p equals the full model's at z = 0 for the pooled
    parameters minus the terms of their (absent) random effects, computed with scipy."""
    from scipy import stats

    pdata, _ = small_data
    pooled = ("foldx", "fb")
    m, info = P.build_model(pdata, "stein2019", pooled=pooled)
    full, finfo = P.build_model(pdata, "stein2019")
    free = info["free"]
    assert info["pooled"] == list(pooled)
    assert [v.name for v in m.free_RVs if v.name.startswith("omega")] == ["omega_re"]
    assert list(m.coords["param_re"]) == [n for n in free if n not in pooled]
    assert list(m.coords["param_nc"]) == ["beta"]  # non-centred and random
    assert info["centred"] == finfo["centred"] == ["tmax", "cmax", "alpha"]

    rng = np.random.default_rng(3)
    point = {k: v + 0.3 * rng.standard_normal(np.shape(v))
             for k, v in m.initial_point().items()}
    fn = m.compile_fn(m.replace_rvs_by_values([m["theta"], m["omega"]]),
                      inputs=m.value_vars, on_unused_input="ignore")
    theta, omega = fn(point)
    for n in pooled:
        j, k = info["names"].index(n), free.index(n)
        mu_k = point["mu"][k]  # foldx on the log scale, fb (a fraction) on the logit scale
        typ = {"log": np.exp(mu_k), "logit": 1.0 / (1.0 + np.exp(-mu_k))}[info["kinds"][j]]
        np.testing.assert_allclose(theta[:, j], typ, rtol=1e-12)  # the same for every series
        assert omega[k] == 0.0
    np.testing.assert_allclose(
        omega[[free.index(n) for n in m.coords["param_re"]]], np.exp(point["omega_re_log__"]),
        rtol=1e-12)

    # the same parameters in the full model: z = 0 for the pooled ones, any omega
    om_pooled = {"foldx": 0.8, "fb": 1.3}
    fpoint = dict(point)
    fpoint.pop("omega_re_log__")
    log_om = np.empty(len(free))
    for k, n in enumerate(free):
        log_om[k] = (np.log(om_pooled[n]) if n in pooled
                     else point["omega_re_log__"][list(m.coords["param_re"]).index(n)])
    fpoint["omega_log__"] = log_om
    nc_full = list(full.coords["param_nc"])
    z = np.zeros((pdata.n_patients, len(nc_full)))
    z[:, nc_full.index("beta")] = point["z"][:, 0]
    fpoint["z"] = z
    lp_pooled = float(m.compile_logp()(point))
    lp_full = float(full.compile_logp()(fpoint))
    pri = P.default_priors("stein2019")["omega"]
    extra = 0.0
    for n in pooled:
        fam, med, sdl = pri[n]
        assert fam == "lognormal"
        # omega's prior density on the log scale (log-transform Jacobian: + ln omega)
        extra += stats.lognorm.logpdf(om_pooled[n], s=sdl, scale=med) + np.log(om_pooled[n])
        extra += stats.norm.logpdf(0.0) * pdata.n_patients  # the z of each patient
    assert lp_full == pytest.approx(lp_pooled + extra, rel=1e-10, abs=1e-8)

    with pytest.raises(CartKineticsError, match="pooled: 'gamma'"):
        P.build_model(pdata, pooled=("gamma",))
    with pytest.raises(CartKineticsError, match="both centred and pooled"):
        P.build_model(pdata, pooled=("cmax",), centred=("cmax",))


@pytest.mark.slow
def test_map_start_is_the_conditional_mode_with_omegas_held(small_data):
    """init="map": the between-patient SDs stay at their start (the prior median), every other
    variable sits at a local maximum of the log posterior given them: zero gradient, and no
    small step in any random direction increases the log density."""
    pdata, _ = small_data
    m, _ = P.build_model(pdata, "stein2019")
    info: dict = {}
    start = P._initial_point(m, "map", 0, info)
    support = m.initial_point()
    assert np.allclose(start["omega"], np.exp(support["omega_log__"]))
    # the constrained start in the value variables' (transformed) space, as the samplers
    # take it (nutpie's initial_points, PyMC's initvals)
    from pymc.initial_point import make_initial_point_fn

    point = make_initial_point_fn(model=m, overrides=start, jitter_rvs=set(),
                                  return_transformed=True)(0)
    # the mode of the density of the constrained parameters (find_MAP's objective: no
    # Jacobian of the transforms)
    logp = m.compile_logp(jacobian=False)
    dlogp = m.compile_dlogp(jacobian=False)
    assert logp(point) > logp(support) + 1.0
    assert info["init_logp"] == pytest.approx(float(logp(point)), abs=1e-6)
    moving = [m.rvs_to_values[rv].name for rv in m.free_RVs if rv.name != "omega"]
    sizes = [np.size(point[v.name]) for v in m.value_vars]
    grad = np.split(dlogp(point), np.cumsum(sizes)[:-1])
    grad0 = np.split(dlogp(support), np.cumsum(sizes)[:-1])
    # L-BFGS-B's tolerance: gradients of O(10-100) at the support point, < 0.05 at the start
    assert max(np.max(np.abs(g)) for g in grad0) > 5.0
    # the Stein curve switches branch at t = Tmax: where a patient's mode has Tmax on a
    # sampling day (the likelihood's kink, the "Tmax ridge"), the log density is not
    # differentiable and its one-sided gradient need not vanish; those entries are left out.
    # L-BFGS-B's line search then ends at the kink ("ABNORMAL"), leaving gradients up to ~0.2
    # elsewhere (measured 0.16 with tau's LogNormal prior); the random steps below check that
    # no nearby point is better
    days = np.unique(pdata.t)
    tmax = np.exp(start["phi_c"][:, list(m.coords["param_c"]).index("tmax")])
    at_kink = np.min(np.abs(tmax[:, None] - days[None, :]), axis=1) < 1e-6 * tmax
    for v, g in zip(m.value_vars, grad, strict=True):
        if v.name == "phi_c_interval__":
            g = g.reshape(point[v.name].shape)[~at_kink]
        if v.name in moving:
            assert np.max(np.abs(g)) < 0.25, v.name
    rng = np.random.default_rng(1)
    best = float(logp(point))
    for _ in range(20):
        trial = {k: (v + 1e-2 * rng.standard_normal(np.shape(v)) if k in moving else v)
                 for k, v in point.items()}
        assert float(logp(trial)) < best
    with pytest.raises(CartKineticsError, match="init must be"):
        P._initial_point(m, "prior", 0, {})


@pytest.mark.slow
def test_map_start_when_find_map_stops_at_its_evaluation_limit(small_data, monkeypatch):
    """find_MAP returns no optimiser result when it stops at maxeval: the start is still its
    last point, and init_logp is the log density there (find_MAP's objective)."""
    import pymc as pm
    from pymc.initial_point import make_initial_point_fn

    pdata, _ = small_data
    m, _ = P.build_model(pdata, "stein2019")
    real = pm.find_MAP

    def short(*args, **kw):
        kw["maxeval"] = 3
        return real(*args, **kw)

    monkeypatch.setattr(pm, "find_MAP", short)
    info: dict = {}
    start = P._initial_point(m, "map", 0, info)
    assert "evaluation limit" in info["init_note"]
    tp = make_initial_point_fn(model=m, overrides=start, jitter_rvs=set(),
                               return_transformed=True)(0)
    assert info["init_logp"] == pytest.approx(float(m.compile_logp(jacobian=False)(tp)))
    assert np.isfinite(info["init_logp"])
