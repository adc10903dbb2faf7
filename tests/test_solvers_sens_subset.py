"""Sensitivities for chosen parameters only (``wrt``): equal to the matching columns of the
full sensitivities and to central finite differences, at the solver level, the model level
and in the population fit's PyTensor Op (whose gradient is also checked against differences).
"""

import numpy as np
import pytest

from cartkinetics import models
from cartkinetics.errors import CartKineticsError
from cartkinetics.solvers import (
    SUCCESS,
    solve,
    solve_sensitivities,
    solve_sensitivities_batch,
)
from cartkinetics.testing.solver_problems import (
    LOGISTIC,
    TWOPHASE,
    TWOPHASE_P,
    logistic_exact,
    twophase_batch,
)

TE = np.array([0.0, 2.0, 5.0, 8.9, 9.5, 12.0, 20.0, 40.0, 80.0])
Y0 = np.array([1e5, 0.0])


def _close_cols(a, b, rtol, atol_rel):
    """a == b column by column (last axis), atol relative to each column's largest |b|."""
    for j in range(b.shape[-1]):
        scale = np.abs(b[..., j]).max()
        np.testing.assert_allclose(a[..., j], b[..., j], rtol=rtol, atol=atol_rel * scale,
                                   err_msg=f"column {j}")


def _dtb_full(p):
    dtb = np.zeros((1, p.size))
    dtb[0, 4] = 1.0  # the breakpoint is p[4] (Tmax-like switch)
    return dtb


def _fd(p, j, method, rel=1e-4):
    h = rel * abs(p[j])
    out = []
    for sgn in (1.0, -1.0):
        q = p.copy()
        q[j] += sgn * h
        r = solve(TWOPHASE, TE, Y0, q, breakpoints=[q[4]], method=method, rtol=1e-12,
                  atol=1e-10)
        assert r.status == SUCCESS
        out.append(r.y)
    return (out[0] - out[1]) / (2 * h)


@pytest.mark.parametrize("method", ["tsit5", "rodas5p", "auto"])
def test_subset_equals_full_columns_and_differences(method):
    """wrt=[4, 1] (out of order, including the breakpoint parameter) against the full
    solve's columns 4 and 1 and against central differences."""
    p = TWOPHASE_P
    kw = dict(breakpoints=[p[4]], method=method, rtol=1e-10, atol=1e-8)
    full = solve_sensitivities(TWOPHASE, TE, Y0, p, dtb_dp=_dtb_full(p), **kw)
    sub = solve_sensitivities(TWOPHASE, TE, Y0, p, dtb_dp=_dtb_full(p), wrt=[4, 1], **kw)
    assert full.status == sub.status == SUCCESS
    assert sub.S.shape == (TE.size, 2, 2)
    # fewer equations in the error norm: another step sequence, same solution to tolerance
    for j, c in enumerate((4, 1)):
        scale = np.abs(full.S[..., c]).max()
        np.testing.assert_allclose(sub.S[..., j], full.S[..., c], rtol=1e-7, atol=1e-9 * scale)
        fd = _fd(p, c, method)
        np.testing.assert_allclose(sub.S[..., j], fd, rtol=1e-5, atol=1e-7 * scale)
    np.testing.assert_allclose(sub.y, full.y, rtol=1e-8)
    # the dtb columns may also be given for the selected parameters only
    sub2 = solve_sensitivities(TWOPHASE, TE, Y0, p, dtb_dp=_dtb_full(p)[:, [4, 1]], wrt=[4, 1],
                               **kw)
    np.testing.assert_array_equal(sub2.S, sub.S)
    # and a parameter that is not selected does not leak into the others: without it
    # the breakpoint term of p[4] is absent, the p[1] column is unchanged
    only1 = solve_sensitivities(TWOPHASE, TE, Y0, p, dtb_dp=_dtb_full(p), wrt=[1], **kw)
    np.testing.assert_allclose(only1.S[..., 0], full.S[..., 1], rtol=1e-7,
                               atol=1e-9 * np.abs(full.S[..., 1]).max())


@pytest.mark.parametrize("method", ["tsit5", "rodas5p"])
def test_subset_with_initial_state_derivative(method):
    """Logistic with y0 = K / 100: only dy/dK, from the closed form (dy0_dp full width)."""
    r_, K = 0.8, 50.0
    te = np.linspace(0, 15, 16)
    y, S, status = solve_sensitivities(LOGISTIC, te, [K / 100], [r_, K],
                                       dy0_dp=np.array([[0.0, 0.01]]), wrt=[1], method=method,
                                       rtol=1e-10, atol=1e-12)
    assert status == SUCCESS and S.shape == (te.size, 1, 1)
    h = 1e-6
    d_K = (logistic_exact(te, (K + h) / 100, r_, K + h)
           - logistic_exact(te, (K - h) / 100, r_, K - h)) / (2 * h)
    np.testing.assert_allclose(S[:, 0, 0], d_K, rtol=1e-6, atol=1e-9)


def test_subset_batch_equals_single_and_is_thread_independent():
    P, bps, dtb = twophase_batch()
    kw = dict(breakpoints=bps, dtb_dp=dtb, rtol=1e-8, atol=1e-8, wrt=[0, 4])
    one = solve_sensitivities_batch(TWOPHASE, TE, Y0, P, n_threads=1, **kw)
    two = solve_sensitivities_batch(TWOPHASE, TE, Y0, P, n_threads=2, **kw)
    assert one.S.shape == (6, TE.size, 2, 2)
    np.testing.assert_array_equal(one.S, two.S)
    np.testing.assert_array_equal(one.y, two.y)
    for i in (0, 5):
        r = solve_sensitivities(TWOPHASE, TE, Y0, P[i], breakpoints=bps[i], dtb_dp=dtb[i],
                                rtol=1e-8, atol=1e-8, wrt=[0, 4])
        assert r.status == one.status[i] == SUCCESS
        np.testing.assert_array_equal(r.S, one.S[i])


def test_subset_fewer_evaluations_and_bad_selections():
    p = TWOPHASE_P
    full = solve_sensitivities(TWOPHASE, TE, Y0, p, rtol=1e-8, atol=1e-8, method="tsit5")
    sub = solve_sensitivities(TWOPHASE, TE, Y0, p, rtol=1e-8, atol=1e-8, method="tsit5",
                              wrt=[0])
    assert sub.S.shape[-1] == 1 and full.S.shape[-1] == 5
    # an empty selection is a plain solve through the sensitivity kernel
    none = solve_sensitivities(TWOPHASE, TE, Y0, p, rtol=1e-8, atol=1e-8, method="tsit5", wrt=[])
    assert none.S.shape == (TE.size, 2, 0)
    plain = solve(TWOPHASE, TE, Y0, p, rtol=1e-8, atol=1e-8, method="tsit5")
    np.testing.assert_array_equal(none.y, plain.y)
    for bad, msg in (([5], "out of range"), ([1, 1], "duplicate"), (["rate"], "unknown"),
                     ([1.5], "names or indices")):
        with pytest.raises(CartKineticsError, match=msg):
            solve_sensitivities(TWOPHASE, TE, Y0, p, wrt=bad)
    with pytest.raises(CartKineticsError, match="columns"):
        solve_sensitivities(TWOPHASE, TE, Y0, p, breakpoints=[p[4]], dtb_dp=np.zeros((1, 3)),
                            wrt=[0, 1])


# ------------------------------------------------------------------------ model level
LIU_FREE = ["rTA0", "lTA0", "ka", "nTN0"]
DAYS = np.array([1.0, 3.0, 7.0, 10.0, 14.0, 21.0, 28.0, 60.0])


@pytest.mark.parametrize("method", ["auto", "rodas5p"])
def test_model_sensitivities_wrt_names(method):
    """Liu 2022: wrt names (4 of 12) = the full derivative's columns = central differences."""
    model = models.get("liu2022")
    p = model.typical.copy()
    obs, full, st = model.sensitivities(DAYS, p, rtol=1e-10, method=method)
    obs2, sub, st2 = model.sensitivities(DAYS, p, rtol=1e-10, method=method, wrt=LIU_FREE)
    assert st == st2 == SUCCESS
    assert sub.shape == (DAYS.size, 4)
    cols = [model.param_names.index(n) for n in LIU_FREE]
    scale = np.abs(full[:, cols]).max(axis=0)
    _close_cols(sub, full[:, cols], 1e-7, 1e-9)
    np.testing.assert_allclose(obs2, obs, rtol=1e-9)
    for j, c in enumerate(cols):
        h = 1e-5 * p[c]
        up, dn = p.copy(), p.copy()
        up[c] += h
        dn[c] -= h
        fd = (model.solve(DAYS, up, rtol=1e-12, method=method).observed[model.primary_observation]
              - model.solve(DAYS, dn, rtol=1e-12, method=method)
              .observed[model.primary_observation]) / (2 * h)
        np.testing.assert_allclose(sub[:, j], fd, rtol=1e-5, atol=1e-7 * scale[j])
    # indices work too, in the order given
    _, by_idx, _ = model.sensitivities(DAYS, p, rtol=1e-10, method=method, wrt=cols[::-1])
    _close_cols(by_idx, sub[:, ::-1], 1e-7, 1e-9)
    with pytest.raises(CartKineticsError, match="unknown parameter"):
        model.sensitivities(DAYS, p, wrt=["not_a_parameter"])


def test_model_batch_and_scipy_paths_with_wrt():
    model = models.get("liu2022")
    rng = np.random.default_rng(1)
    P = model.typical * np.exp(0.1 * rng.standard_normal((3, model.n_params)))
    obs, d, st = model.sensitivities_batch(DAYS, P, rtol=1e-10, wrt=LIU_FREE)
    assert d.shape == (3, DAYS.size, 4) and np.all(st == SUCCESS)
    for i in range(3):
        o_ref, d_ref, _ = model.sensitivities(DAYS, P[i], rtol=1e-10, method="scipy-lsoda",
                                              wrt=LIU_FREE)
        np.testing.assert_allclose(obs[i], o_ref, rtol=1e-6)
        _close_cols(d[i], d_ref, 1e-5, 1e-7)


def test_model_sensitivities_stein_breakpoint_subset():
    """Stein's ODE form switches at Tmax (dtb); tmax selected alone and with others."""
    model = models.get("stein2019_ode")
    p = model.typical.copy()
    t = np.array([1.0, 5.0, 9.0, 14.0, 28.0, 90.0])
    _, full, _ = model.sensitivities(t, p, rtol=1e-10)
    _, sub, st = model.sensitivities(t, p, rtol=1e-10, wrt=["tmax", "beta"])
    assert st == SUCCESS
    cols = [model.param_names.index("tmax"), model.param_names.index("beta")]
    _close_cols(sub, full[:, cols], 1e-7, 1e-9)


# ------------------------------------------------------------------------ PyTensor Op
@pytest.fixture(scope="module")
def liu_pop():
    pytest.importorskip("pymc")
    from cartkinetics.testing import liu_cohort

    return liu_cohort(seed=4)


@pytest.mark.slow
def test_op_with_free_parameters_matches_full_op(liu_pop):
    """The Op restricted to the free parameters: its Jacobian equals the full Op's columns
    (batched, per-series and numba paths), zero for the fixed ones."""
    import warnings

    import pytensor
    import pytensor.tensor as pt

    from cartkinetics.fit.pytensor_ops import ODEObservationOp

    pdata, model, theta = liu_pop
    cols = [model.param_names.index(n) for n in LIU_FREE]
    fixed = [j for j in range(model.n_params) if j not in cols]
    full = ODEObservationOp(model, pdata, rtol=1e-10)
    sub = ODEObservationOp(model, pdata, rtol=1e-10, wrt=LIU_FREE)
    per = ODEObservationOp(model, pdata, rtol=1e-10, wrt=LIU_FREE, batch=False)
    l0, j0 = full.evaluate(theta)
    l1, j1 = sub.evaluate(theta)
    l2, j2 = per.evaluate(theta)
    assert sub.batched and not per.batched
    assert np.all(j1[:, fixed] == 0.0) and np.all(j2[:, fixed] == 0.0)
    np.testing.assert_allclose(l1, l0, rtol=1e-9, atol=1e-9)
    _close_cols(j1[:, cols], j0[:, cols], 1e-6, 1e-8)
    _close_cols(j2[:, cols], j0[:, cols], 1e-6, 1e-8)
    # the numba implementation (nutpie's backend) gives the same log-likelihood and gradient
    th = pt.dmatrix("th")
    ll = -0.5 * pt.sum((pdata.log_y - sub(th)) ** 2)
    outs = [ll, pytensor.grad(ll, th)]
    f_py = pytensor.function([th], outs)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        f_nb = pytensor.function([th], outs, mode="NUMBA")
        a, b = f_py(theta), f_nb(theta)
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-12)
    assert np.all(b[1][:, fixed] == 0.0)


def test_op_with_free_parameters_gradient_matches_differences(liu_pop):
    """verify_grad on the free columns (the fixed ones are constants in the graph)."""
    import pytensor
    import pytensor.tensor as pt

    from cartkinetics.fit.pytensor_ops import ODEObservationOp

    pdata, model, theta = liu_pop
    cols = [model.param_names.index(n) for n in LIU_FREE]
    op = ODEObservationOp(model, pdata, rtol=1e-10, wrt=cols)
    base = pt.as_tensor(np.log(theta))

    def f(lfree):
        lth = pt.set_subtensor(base[:, cols], lfree)
        return op(pt.exp(lth))

    pytensor.gradient.verify_grad(f, [np.log(theta[:, cols])], rng=np.random.default_rng(0),
                                  eps=1e-6, abs_tol=1e-4, rel_tol=1e-4)


def test_stein_closed_form_honours_wrt_like_the_ode_models():
    """The closed form selects the same columns as the full gradient; bad names are errors."""
    from cartkinetics import models
    from cartkinetics.errors import CartKineticsError

    m = models.get("stein2019")
    t = np.array([0.5, 3.0, 9.0, 28.0, 90.0])
    _, full, _ = m.sensitivities(t)
    _, sub, _ = m.sensitivities(t, wrt=["beta", "tmax"])
    np.testing.assert_array_equal(sub, full[:, [m.param_names.index("beta"),
                                               m.param_names.index("tmax")]])
    # central finite difference on beta as the independent check of the selected column
    p = m.param_vector(None)
    j = m.param_names.index("beta")
    h = 1e-6 * p[j]
    hi, lo = p.copy(), p.copy()
    hi[j] += h
    lo[j] -= h
    fd = (m.sensitivities(t, hi)[0] - m.sensitivities(t, lo)[0]) / (2 * h)
    np.testing.assert_allclose(sub[:, 0], fd, rtol=1e-5)
    with pytest.raises(CartKineticsError):
        m.sensitivities(t, wrt=["not_a_parameter"])
