"""Stiff problems: Rodas solves them, the explicit method hits max_steps and says so, and
method='auto' switches to the stiff method."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from cartkinetics.solvers import MAX_STEPS, STATUS_MESSAGES, SUCCESS, solve
from cartkinetics.testing.solver_problems import (
    CART,
    CART_P,
    CART_P_NONSTIFF,
    CART_Y0,
    ROBERTSON,
    ROBERTSON_P,
)

ROB_T = np.array([0.0, 1e-3, 1.0, 40.0, 1e3, 1e5])


@pytest.fixture(scope="module")
def robertson_ref():
    p = ROBERTSON_P

    def f(t, y):
        return [-p[0] * y[0] + p[1] * y[1] * y[2],
                p[0] * y[0] - p[1] * y[1] * y[2] - p[2] * y[1] ** 2,
                p[2] * y[1] ** 2]

    ref = solve_ivp(f, (0, ROB_T[-1]), [1.0, 0.0, 0.0], method="Radau", rtol=1e-10,
                    atol=1e-14, t_eval=ROB_T)
    assert ref.success
    return ref.y.T


@pytest.mark.parametrize("method", ["rodas5p", "rodas4", "auto"])
def test_robertson_stiff_methods(method, robertson_ref):
    rtol = 1e-7
    r = solve(ROBERTSON, ROB_T, [1.0, 0.0, 0.0], ROBERTSON_P, method=method, rtol=rtol,
              atol=[1e-12, 1e-16, 1e-12])
    assert r.status == SUCCESS
    atol = np.array([1e-12, 1e-16, 1e-12])
    assert np.all(np.abs(r.y - robertson_ref) <= 10 * (rtol * np.abs(robertson_ref) + atol))
    if method == "auto":
        assert r.stats["switched_to_stiff"] == 1
    else:
        assert r.stats["jacobians"] == r.stats["steps"]


def test_robertson_explicit_hits_max_steps():
    r = solve(ROBERTSON, ROB_T, [1.0, 0.0, 0.0], ROBERTSON_P, method="tsit5", rtol=1e-6,
              atol=1e-10, max_steps=20_000)
    assert r.status == MAX_STEPS
    assert "max_steps" in STATUS_MESSAGES[r.status]
    assert np.isnan(r.y[-1]).all()  # not reached: NaN, not zeros
    assert np.isfinite(r.y[:2]).all()  # reached before the failure: kept
    assert r.stats["steps"] + r.stats["rejected"] == 20_000


def _cart_ref(t_eval):
    def f(t, y):
        out = np.empty(4)
        CART.rhs.py_func(t, y, CART_P, 0, out)
        return out

    def jac(t, y):
        J = np.empty((4, 4))
        CART.jac.py_func(t, y, CART_P, 0, J)
        return J

    ref = solve_ivp(f, (0.0, t_eval[-1]), CART_Y0, method="Radau", jac=jac, t_eval=t_eval,
                    rtol=1e-10, atol=1e-6)
    assert ref.success
    return ref.y.T


@pytest.mark.slow
def test_cart_stiff_model():
    """CAR-T model with rates from 1e-4 (memory death) to 1e2 /day (exhaustion, killing)."""
    te = np.linspace(0.0, 365.0, 74)
    ref = _cart_ref(te)
    rtol, atol = 1e-6, 1e-2  # atol in cells
    for method in ["rodas5p", "rodas4", "auto"]:
        r = solve(CART, te, CART_Y0, CART_P, method=method, rtol=rtol, atol=atol)
        assert r.status == SUCCESS, method
        assert r.stats["steps"] < 500
        # within 10 x the requested tolerance of Radau at rtol 1e-10
        assert np.all(np.abs(r.y - ref) <= 10 * (rtol * np.abs(ref) + atol)), method
        if method == "auto":
            assert r.stats["switched_to_stiff"] == 1
    # the explicit method needs > 15,000 steps (stability-limited by the 150 /day exchange)
    r = solve(CART, te, CART_Y0, CART_P, method="tsit5", rtol=rtol, atol=atol, max_steps=5_000)
    assert r.status == MAX_STEPS
    assert np.isnan(r.y[-1]).all()


def test_auto_stays_explicit_on_nonstiff_problem():
    r = solve(CART, np.linspace(0, 60, 7), CART_Y0, CART_P_NONSTIFF, method="auto")
    assert r.status == SUCCESS
    assert r.stats["switched_to_stiff"] == 0
    assert r.stats["jacobians"] == 0
