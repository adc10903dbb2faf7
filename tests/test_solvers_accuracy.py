"""Accuracy of the numba solvers against closed forms and scipy's Radau at tight tolerance."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from cartkinetics.solvers import SUCCESS, solve
from cartkinetics.testing.solver_problems import (
    CART,
    CART_P_NONSTIFF,
    CART_Y0,
    DECAY,
    FORCED,
    LOGISTIC,
    forced_exact,
    logistic_exact,
)

ORDERS = {"tsit5": 5, "dopri5": 5, "rodas5p": 5, "rodas4": 4}


def _forced(t):
    return forced_exact(t, 3.0)


def _logistic(t):
    return logistic_exact(t, 1.0, 1.0, 100.0)[:, None]


PROBLEMS = {
    "forced": (FORCED, [1.0, 0.0], [3.0], _forced),
    "logistic": (LOGISTIC, [1.0], [1.0, 100.0], _logistic),
}


@pytest.mark.parametrize("method", sorted(ORDERS))
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_convergence_order(method, problem):
    """Tolerance sweep: log(error at t=10) against log(number of steps) has slope -order."""
    system, y0, p, exact = PROBLEMS[problem]
    T = np.array([0.0, 10.0])
    ref = exact(T)[-1]
    errs, steps = [], []
    for rtol in np.logspace(-5, -11, 7):
        r = solve(system, T, y0, p, method=method, rtol=rtol, atol=rtol * 1e-3)
        assert r.status == SUCCESS
        errs.append(np.max(np.abs(r.y[-1] - ref) / (np.abs(ref) + 1.0)))
        steps.append(r.stats["steps"])
    slope = np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(-slope - ORDERS[method]) < 0.8, (slope, steps, errs)


@pytest.mark.parametrize("method", sorted(ORDERS))
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_dense_output_between_steps(method, problem):
    """101 output times (never step targets) are interpolated to about the tolerance."""
    system, y0, p, exact = PROBLEMS[problem]
    te = np.linspace(0.0, 10.0, 101)
    r = solve(system, te, y0, p, method=method, rtol=1e-8, atol=1e-12)
    assert r.status == SUCCESS
    assert r.stats["steps"] < 100 or method == "rodas4" or problem == "forced"
    err = np.max(np.abs(r.y - exact(te)) / (np.abs(exact(te)) + 1.0))
    assert err < 1e-6


def _cart_scipy(y0, p, t_eval):
    def f(t, y):
        out = np.empty(4)
        CART.rhs.py_func(t, y, p, 0, out)
        return out

    def jac(t, y):
        J = np.empty((4, 4))
        CART.jac.py_func(t, y, p, 0, J)
        return J

    return solve_ivp(f, (t_eval[0], t_eval[-1]), y0, method="Radau", jac=jac, t_eval=t_eval,
                     rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "rodas5p", "rodas4", "auto"])
def test_nonlinear_against_radau(method):
    """Non-stiff 4-state CAR-T model: within 10 x (rtol |y| + atol) of Radau at rtol=1e-10."""
    p = CART_P_NONSTIFF
    y0 = CART_Y0
    te = np.linspace(0.0, 60.0, 31)
    ref = _cart_scipy(y0, p, te)
    assert ref.success
    rtol, atol = 1e-7, 1e-3
    r = solve(CART, te, y0, p, method=method, rtol=rtol, atol=atol)
    assert r.status == SUCCESS
    assert np.all(np.abs(r.y - ref.y.T) <= 10 * (rtol * np.abs(ref.y.T) + atol))


def test_breakpoints_with_jumps_piecewise_closed_form():
    """Doses at days 7 and 14 (jumps) and a rate change per piece against the closed form."""
    k = np.array([0.1, 0.3, 0.05])
    bps = np.array([7.0, 14.0])
    jumps = np.array([[5e5], [2e5]])
    te = np.array([0.0, 3.5, 7.0, 7.5, 10.0, 14.0, 14.0 + 1e-9, 20.0, 28.0])
    y7 = 1e6 * np.exp(-k[0] * 7.0)
    y14 = (y7 + 5e5) * np.exp(-k[1] * 7.0)

    def exact(t):
        if t <= 7.0:
            return 1e6 * np.exp(-k[0] * t)
        if t <= 14.0:
            return (y7 + 5e5) * np.exp(-k[1] * (t - 7.0))
        return (y14 + 2e5) * np.exp(-k[2] * (t - 14.0))

    ref = np.array([exact(t) for t in te])
    for method in ["tsit5", "dopri5", "rodas5p", "rodas4", "auto"]:
        r = solve(DECAY, te, [1e6], k, breakpoints=bps, jumps=jumps, method=method,
                  rtol=1e-9, atol=1e-6)
        assert r.status == SUCCESS
        # a sample at a breakpoint is the state before the jump
        np.testing.assert_allclose(r.y[:, 0], ref, rtol=1e-7)


def test_breakpoints_restart_integration_exactly():
    """Without breakpoints the jump would be missed; with +inf padding nothing changes."""
    k = np.array([0.1, 0.1, 0.1])
    te = np.array([0.0, 20.0])
    r_inf = solve(DECAY, te, [1.0], k, breakpoints=[np.inf, np.inf], jumps=np.ones((2, 1)))
    r_none = solve(DECAY, te, [1.0], k)
    np.testing.assert_allclose(r_inf.y, r_none.y, rtol=0, atol=0)
    r_jump = solve(DECAY, te, [1.0], k, breakpoints=[10.0], jumps=[[1.0]], rtol=1e-9)
    np.testing.assert_allclose(r_jump.y[-1, 0], np.exp(-2.0) + np.exp(-1.0), rtol=1e-7)


def test_breakpoint_at_t0_and_outputs_at_t0():
    k = np.array([0.2, 0.2, 0.2])
    r = solve(DECAY, [0.0, 5.0], [1.0], k, breakpoints=[0.0], jumps=[[2.0]], rtol=1e-9)
    assert r.status == SUCCESS
    assert r.y[0, 0] == 1.0  # output at t0 before the jump
    np.testing.assert_allclose(r.y[1, 0], 3.0 * np.exp(-1.0), rtol=1e-7)


def test_explicit_t0_before_first_output():
    r = solve(LOGISTIC, [2.0, 5.0], [1.0], [1.0, 100.0], t0=0.0, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.y[:, 0], logistic_exact(np.array([2.0, 5.0]), 1.0, 1.0, 100.0),
                               rtol=1e-7)


def test_per_state_atol_and_first_step():
    te = np.linspace(0, 10, 11)
    r1 = solve(FORCED, te, [1.0, 0.0], [3.0], atol=[1e-10, 1e-10], rtol=1e-8, first_step=1e-3)
    assert r1.status == SUCCESS
    np.testing.assert_allclose(r1.y, _forced(te), atol=1e-6)


def test_jacobian_by_differences_when_missing():
    """A system without jac uses forward differences in the Rosenbrock method."""
    from cartkinetics.solvers import OdeSystem

    nojac = OdeSystem(LOGISTIC.rhs, None, None, 1, 2, name="logistic_nojac")
    te = np.linspace(0, 10, 11)
    r = solve(nojac, te, [1.0], [1.0, 100.0], method="rodas5p", rtol=1e-8, atol=1e-12)
    assert r.status == SUCCESS
    np.testing.assert_allclose(r.y[:, 0], logistic_exact(te, 1.0, 1.0, 100.0), rtol=1e-6)
