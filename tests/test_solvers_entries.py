"""Plain solves run entry points compiled for one method family (``solve_erk``, ``solve_ros``),
so that a first solve compiles one method only; an auto solve runs the explicit entry point,
which stops each problem where the stiffness test fires, and continues those problems with the
Rosenbrock one. The reference is the all-in-one kernel (``solve_serial`` with ``sens=False``),
which switches inside one call: outputs, statuses and counters must be bitwise the same,
including problems that switch and then fail (the step budget is shared by both parts), a
switch after breakpoints with jumps, a piecewise model, invalid inputs, and 1 or 2 threads."""

import numpy as np
import pytest
from numba import njit
from scipy.integrate import solve_ivp

from cartkinetics.solvers import (
    INVALID_INPUT,
    MAX_STEPS,
    SUCCESS,
    OdeSystem,
    api,
    solve_batch,
    solve_sensitivities_batch,
)
from cartkinetics.solvers.status import KIND_AUTO, KIND_EXPLICIT, KIND_ROSENBROCK
from cartkinetics.testing.solver_problems import (
    CART,
    CART_P,
    CART_P_NONSTIFF,
    CART_Y0,
    DECAY,
    ROBERTSON,
    ROBERTSON_P,
    TWOPHASE,
    twophase_batch,
)


@njit(cache=True)
def exchange_rhs(t, y, p, piece, dydt):
    # exchange at rate p[2] * piece: none before the first breakpoint, stiff after it
    c = p[2] * piece
    dydt[0] = -p[0] * y[0] + c * (y[1] - y[0])
    dydt[1] = c * (y[0] - y[1]) - p[1] * y[1]


@njit(cache=True)
def exchange_dfdp(t, y, p, piece, Jp):
    Jp[0, 0] = -y[0]
    Jp[0, 1] = 0.0
    Jp[0, 2] = piece * (y[1] - y[0])
    Jp[1, 0] = 0.0
    Jp[1, 1] = -y[1]
    Jp[1, 2] = piece * (y[0] - y[1])


# no Jacobian: the kernel's finite-difference Jacobian serves the Rosenbrock part
EXCHANGE = OdeSystem(exchange_rhs, None, exchange_dfdp, 2, 3, name="piecewise_exchange",
                     autonomous=True)


def all_in_one(monkeypatch, *args, sens=False, **kw):
    """The same batch through the kernel that holds both methods."""
    from cartkinetics.solvers import _kernels

    with monkeypatch.context() as mp:
        mp.setattr(api, "_kernel", lambda sens, kind, lockstep: _kernels.solve_serial)
        return (solve_sensitivities_batch if sens else solve_batch)(*args, **kw)


def assert_same(a, b):
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.stats, b.stats)


@pytest.fixture(scope="module")
def mixed_cart():
    """Stiff and non-stiff patients of a 4-state CAR-T model in one batch, a NaN parameter."""
    rng = np.random.default_rng(7)
    m = 13
    P = np.where(rng.random(m)[:, None] < 0.5, CART_P, CART_P_NONSTIFF)
    P = P * np.exp(0.2 * rng.standard_normal(P.shape))
    P[:, 10] = CART_P[10]
    P[4, 0] = np.nan
    Y0 = CART_Y0 * np.exp(0.2 * rng.standard_normal((m, 4)))
    return Y0, P


def test_routes():
    from cartkinetics.solvers import _kernels, _lockstep

    assert api._kernel(False, KIND_EXPLICIT, True) is _lockstep.solve_explicit
    assert api._kernel(False, KIND_EXPLICIT, False) is _kernels.solve_erk
    assert api._kernel(False, KIND_AUTO, True) is _kernels.solve_erk
    assert api._kernel(False, KIND_ROSENBROCK, True) is _kernels.solve_ros
    assert api._kernel(True, KIND_AUTO, True) is _kernels.solve_sens_erk
    assert api._kernel(True, KIND_EXPLICIT, True) is _kernels.solve_sens_erk
    assert api._kernel(True, KIND_ROSENBROCK, False) is _kernels.solve_sens_ros


@pytest.mark.parametrize("threads", [1, 2])
def test_auto_resumes_bitwise(monkeypatch, mixed_cart, threads):
    Y0, P = mixed_cart
    te = np.linspace(0.0, 180.0, 40)
    bps = np.tile([0.0, 10.0, 10.0, 60.0], (len(P), 1))  # a dose at t0, coincident, a later one
    jumps = np.zeros((len(P), 4, 4))
    jumps[:, 1, 0] = 1e3
    jumps[:, 3, 0] = 5e2
    kw = dict(breakpoints=bps, jumps=jumps, method="auto", rtol=1e-6, atol=1e-3,
              n_threads=threads)
    got = solve_batch(CART, te, Y0, P, **kw)
    ref = all_in_one(monkeypatch, CART, te, Y0, P, **kw)
    switched = ref.stats[:, -1] == 1
    assert 3 <= switched.sum() < len(P) - 2  # both kinds in the batch
    assert ref.status[4] == INVALID_INPUT and np.sum(ref.status == SUCCESS) == len(P) - 1
    assert_same(got, ref)
    # the inputs are untouched (the explicit part writes switch points into its own copies)
    np.testing.assert_array_equal(Y0, mixed_cart[0])
    # and the switched solves are right: one against Radau at a tight tolerance
    i = int(np.flatnonzero(switched & (ref.status == SUCCESS))[0])
    ref_y = _radau(P[i], Y0[i], te, bps[i], jumps[i])
    err = np.abs(got.y[i] - ref_y) / (1e-6 * np.abs(ref_y) + 1e-3)
    assert err.max() < 50.0


def _radau(p, y0, te, bps, jumps):
    from cartkinetics.testing.solver_problems import cart_rhs

    def f(t, y):
        out = np.empty(4)
        cart_rhs(t, y, p, 0, out)
        return out

    y = y0 + jumps[0]  # the dose at t0 is applied after writing the output at t0
    out = [y0]
    edges = [0.0, 10.0, 60.0, te[-1]]
    add = [jumps[1] + jumps[2], jumps[3], 0.0]
    for k in range(3):
        seg = te[(te > edges[k]) & (te <= edges[k + 1])]
        sol = solve_ivp(f, (edges[k], edges[k + 1]), y, method="Radau", dense_output=True,
                        rtol=1e-10, atol=1e-8)
        out.extend(sol.sol(seg).T)
        y = sol.y[:, -1] + add[k]  # the state at the breakpoint, then the jump
    return np.array(out)


def test_step_budget_shared_by_both_parts(monkeypatch, mixed_cart):
    """max_steps counts the steps of the explicit and the Rosenbrock part together: budgets
    that end in either part give the same MAX_STEPS rows and counters as the one-call kernel."""
    Y0, P = mixed_cart
    te = np.linspace(0.0, 180.0, 25)
    statuses = set()
    for max_steps in (60, 150, 400):
        got = solve_batch(CART, te, Y0, P, method="auto", max_steps=max_steps, n_threads=1)
        ref = all_in_one(monkeypatch, CART, te, Y0, P, method="auto", max_steps=max_steps,
                         n_threads=1)
        assert_same(got, ref)
        statuses |= {(int(s), int(w)) for s, w in zip(ref.status, ref.stats[:, -1], strict=True)}
    assert (MAX_STEPS, 1) in statuses  # failed after the switch
    assert (MAX_STEPS, 0) in statuses  # failed before it


def test_rosenbrock_and_explicit_entries(monkeypatch):
    te = np.logspace(-5, 5, 30)
    P = ROBERTSON_P * np.exp(0.1 * np.random.default_rng(2).standard_normal((5, 3)))
    for method in ("rodas5p", "rodas4", "auto"):
        got = solve_batch(ROBERTSON, te, [1.0, 0.0, 0.0], P, method=method, rtol=1e-6,
                          atol=1e-10, t0=0.0)
        ref = all_in_one(monkeypatch, ROBERTSON, te, [1.0, 0.0, 0.0], P, method=method,
                         rtol=1e-6, atol=1e-10, t0=0.0)
        assert np.all(ref.status == SUCCESS)
        assert_same(got, ref)
    P, bps, _ = twophase_batch()
    te = np.linspace(0.0, 40.0, 21)
    for method in ("tsit5", "dopri5"):
        got = solve_batch(TWOPHASE, te, [1e5, 0.0], P, breakpoints=bps, method=method,
                          lockstep=False)
        ref = all_in_one(monkeypatch, TWOPHASE, te, [1e5, 0.0], P, breakpoints=bps,
                         method=method)
        assert_same(got, ref)
    got = solve_batch(DECAY, [0.0, 1.0], [1.0], [[0.1, 0.2, 0.3]], method="rodas5p")
    assert got.status[0] == SUCCESS


def test_resumed_solve_keeps_the_piece(monkeypatch):
    """A piece-dependent model that becomes stiff after its first breakpoint (no Jacobian:
    finite differences): the Rosenbrock part continues in the piece where the explicit part
    stopped, and the result matches Radau."""
    P = np.array([[0.3, 0.1, 2e3], [0.2, 0.05, 5e3], [0.3, 0.1, 0.0]])
    te = np.linspace(0.0, 30.0, 31)
    bps = np.array([5.0, 20.0])
    got = solve_batch(EXCHANGE, te, [1.0, 0.0], P, breakpoints=bps, method="auto", rtol=1e-7,
                      atol=1e-10)
    ref = all_in_one(monkeypatch, EXCHANGE, te, [1.0, 0.0], P, breakpoints=bps, method="auto",
                     rtol=1e-7, atol=1e-10)
    assert list(ref.stats[:, -1]) == [1, 1, 0] and np.all(ref.status == SUCCESS)
    assert_same(got, ref)
    for i in range(3):
        y = np.array([1.0, 0.0])
        want = [y]
        for piece, (a, b) in enumerate([(0.0, 5.0), (5.0, 20.0), (20.0, 30.0)]):
            def f(t, y, piece=piece, p=P[i]):
                out = np.empty(2)
                exchange_rhs(t, y, p, piece, out)
                return out

            sol = solve_ivp(f, (a, b), y, method="Radau", dense_output=True, rtol=1e-11,
                            atol=1e-14)
            want.extend(sol.sol(te[(te > a) & (te <= b)]).T)
            y = sol.y[:, -1]
        want = np.array(want)
        np.testing.assert_allclose(got.y[i], want, rtol=1e-5, atol=1e-8)


def test_sensitivities_resume_bitwise(monkeypatch):
    """Sensitivity solves take the same two-part route: the augmented state (states and
    sensitivities) is handed over at the switch; a breakpoint with d(breakpoint)/dp; the
    sensitivities match central differences of the solution."""
    P = np.array([[0.3, 0.1, 2e3], [0.2, 0.05, 5e3], [0.3, 0.1, 0.0]])
    te = np.linspace(0.0, 30.0, 16)
    bps = np.array([5.0, 20.0])
    dtb = np.zeros((2, 3))
    kw = dict(breakpoints=bps, dtb_dp=dtb, method="auto", rtol=1e-8, atol=1e-12)
    got = solve_sensitivities_batch(EXCHANGE, te, [1.0, 0.0], P, **kw)
    ref = all_in_one(monkeypatch, EXCHANGE, te, [1.0, 0.0], P, sens=True, **kw)
    assert list(ref.stats[:, -1]) == [1, 1, 0] and np.all(ref.status == SUCCESS)
    for a in ("y", "S", "status", "stats"):
        np.testing.assert_array_equal(getattr(got, a), getattr(ref, a))
    for j in range(3):
        h = 1e-5 * np.maximum(P[:, j], 1.0)
        up, dn = P.copy(), P.copy()
        up[:, j] += h
        dn[:, j] -= h
        yu = solve_batch(EXCHANGE, te, [1.0, 0.0], up, breakpoints=bps, rtol=1e-11,
                         atol=1e-14).y
        yd = solve_batch(EXCHANGE, te, [1.0, 0.0], dn, breakpoints=bps, rtol=1e-11,
                         atol=1e-14).y
        fd = (yu - yd) / (2 * h[:, None, None])
        np.testing.assert_allclose(got.S[..., j], fd, rtol=1e-4, atol=1e-7)
