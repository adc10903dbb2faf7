"""Forward sensitivities against central finite differences (relative 1e-5), including a
breakpoint whose time is a parameter (Stein-like switch at Tmax) and a parameter-dependent
initial state."""

import numpy as np
import pytest

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


def _twophase(p, method):
    r = solve(TWOPHASE, TE, Y0, p, breakpoints=[p[4]], method=method, rtol=1e-12, atol=1e-10)
    assert r.status == SUCCESS
    return r.y


def _central_fd(p, method, rel=1e-4):
    cols = []
    for j in range(p.size):
        h = rel * abs(p[j])
        pp, pm = p.copy(), p.copy()
        pp[j] += h
        pm[j] -= h
        cols.append((_twophase(pp, method) - _twophase(pm, method)) / (2 * h))
    return np.stack(cols, axis=-1)  # (nt, n, np)


@pytest.mark.parametrize("method", ["tsit5", "rodas5p", "auto"])
def test_sensitivities_with_parameter_dependent_breakpoint(method):
    p = TWOPHASE_P
    dtb = np.zeros((1, 5))
    dtb[0, 4] = 1.0  # d(tmax)/d(tmax)
    y, S, status = solve_sensitivities(TWOPHASE, TE, Y0, p, breakpoints=[p[4]], dtb_dp=dtb,
                                       method=method, rtol=1e-10, atol=1e-8)
    assert status == SUCCESS
    assert S.shape == (TE.size, 2, 5)
    fd = _central_fd(p, method)
    scale = np.max(np.abs(fd), axis=(0, 1))  # per parameter
    err = np.abs(S - fd)
    bad = err > 1e-5 * np.abs(fd) + 1e-7 * scale
    assert not bad.any(), (np.argwhere(bad), S[bad], fd[bad])
    np.testing.assert_allclose(y, _twophase(p, method), rtol=1e-8)
    # without the breakpoint jump term the Tmax sensitivity after the switch is wrong
    _, S0, _ = solve_sensitivities(TWOPHASE, TE, Y0, p, breakpoints=[p[4]], method=method,
                                   rtol=1e-10, atol=1e-8)
    late = TE > p[4]
    assert np.max(np.abs(S0[late, 0, 4] - fd[late, 0, 4]) / np.abs(fd[late, 0, 4])) > 0.1


@pytest.mark.parametrize("method", ["tsit5", "rodas5p"])
def test_sensitivities_closed_form_with_initial_state_derivative(method):
    """Logistic with y0 = K / 100: dy/dr and dy/dK from the closed form."""
    r_, K = 0.8, 50.0
    te = np.linspace(0, 15, 16)
    dy0 = np.array([[0.0, 0.01]])
    y, S, status = solve_sensitivities(LOGISTIC, te, [K / 100], [r_, K], dy0_dp=dy0,
                                       method=method, rtol=1e-10, atol=1e-12)
    assert status == SUCCESS
    h = 1e-6
    d_r = (logistic_exact(te, K / 100, r_ + h, K) - logistic_exact(te, K / 100, r_ - h, K)) / (2 * h)
    d_K = (logistic_exact(te, (K + h) / 100, r_, K + h)
           - logistic_exact(te, (K - h) / 100, r_, K - h)) / (2 * h)
    np.testing.assert_allclose(S[:, 0, 0], d_r, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(S[:, 0, 1], d_K, rtol=1e-6, atol=1e-9)


def test_batch_sensitivities_equal_single():
    P, bps, dtb = twophase_batch()
    res = solve_sensitivities_batch(TWOPHASE, TE, Y0, P, breakpoints=bps, dtb_dp=dtb,
                                    rtol=1e-8, atol=1e-8)
    assert res.S.shape == (6, TE.size, 2, 5)
    for i in (0, 5):
        y, S, st = solve_sensitivities(TWOPHASE, TE, Y0, P[i], breakpoints=bps[i],
                                       dtb_dp=dtb[i], rtol=1e-8, atol=1e-8)
        assert st == res.status[i] == SUCCESS
        np.testing.assert_array_equal(S, res.S[i])
        np.testing.assert_array_equal(y, res.y[i])


def test_sensitivities_need_dfdp():
    from cartkinetics.solvers import OdeSystem

    nodfdp = OdeSystem(LOGISTIC.rhs, LOGISTIC.jac, None, 1, 2, name="no_dfdp")
    with pytest.raises(CartKineticsError, match="dfdp"):
        solve_sensitivities(nodfdp, [0.0, 1.0], [1.0], [1.0, 2.0])
