"""The lock-step explicit kernel (two problems side by side) gives bitwise the results of the
generic kernel (one problem at a time, ``lockstep=False``): outputs, statuses and counters,
including failures, breakpoints with jumps, piece-dependent models and a library model, on 1
and 2 threads. Accuracy of the explicit methods against closed forms and Radau is tested in
test_solvers_accuracy.py / test_solvers_steps.py, which now run through this kernel."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from cartkinetics.solvers import (
    INVALID_INPUT,
    MAX_STEPS,
    NON_FINITE,
    SUCCESS,
    solve,
    solve_batch,
)
from cartkinetics.testing.solver_problems import (
    CART,
    CART_P_NONSTIFF,
    CART_Y0,
    DECAY,
    NAN_SYS,
    SQUARE,
    TWOPHASE,
    TWOPHASE_P,
    cart_rhs,
)

ROOT = Path(__file__).resolve().parents[1]


def assert_same(a, b):
    """Bitwise equal outputs (NaN where the other has NaN), statuses and counters."""
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.stats, b.stats)


def both(system, *args, **kw):
    """(lock-step, generic) results of the same batch."""
    return (solve_batch(system, *args, lockstep=True, **kw),
            solve_batch(system, *args, lockstep=False, **kw))


@pytest.fixture(scope="module")
def cart_population():
    """41 patients (odd: the two lanes run out of problems at different times), CV 30 %."""
    z = np.random.default_rng(11).standard_normal((41, CART_P_NONSTIFF.size + 4))
    P = CART_P_NONSTIFF * np.exp(0.3 * z[:, :-4])
    P[:, 10] = CART_P_NONSTIFF[10]  # half-saturation fixed
    return CART_Y0 * np.exp(0.3 * z[:, -4:]), P


@pytest.mark.parametrize("method", ["tsit5", "dopri5"])
def test_cart_batch_bitwise_equal(cart_population, method):
    Y0, P = cart_population
    te = np.linspace(0.0, 180.0, 60)
    fast, ref = both(CART, te, Y0, P, method=method, rtol=1e-6, atol=1e-2, n_threads=1)
    assert np.all(ref.status == SUCCESS)
    assert_same(fast, ref)
    # and close to an independent reference (Radau, tight tolerance) for one patient
    i = 5
    sol = solve_ivp(lambda t, y: _f(t, y, P[i]), (0.0, 180.0), Y0[i], method="Radau", t_eval=te,
                    rtol=1e-10, atol=1e-6)
    err = np.abs(fast.y[i] - sol.y.T) / (1e-6 * np.abs(sol.y.T) + 1e-2)
    assert err.max() < 50.0


def _f(t, y, p):
    out = np.empty(4)
    cart_rhs(t, y, p, 0, out)
    return out


def test_mixed_failures_bitwise_equal(cart_population):
    """Successes, MAX_STEPS (stiff rows), INVALID_INPUT (NaN parameter) in one batch."""
    Y0, P = cart_population
    P = P.copy()
    P[3, 1] = 100.0  # fast exchange: stiff, Tsit5 needs many steps
    P[3, 2] = 50.0
    P[8, 0] = np.nan
    P[9, 1] = 300.0
    P[9, 2] = 150.0
    te = np.linspace(0.0, 180.0, 30)
    fast, ref = both(CART, te, Y0, P, method="tsit5", max_steps=2000, n_threads=1)
    assert ref.status[3] == MAX_STEPS and ref.status[9] == MAX_STEPS
    assert ref.status[8] == INVALID_INPUT
    assert np.sum(ref.status == SUCCESS) == len(P) - 3
    assert_same(fast, ref)


def test_breakpoints_jumps_and_first_step():
    """Per-problem breakpoints (padded with +inf), jumps, coincident breakpoints, a
    breakpoint at t0, a given first step and start times after t_eval[0]."""
    rng = np.random.default_rng(3)
    m = 9
    P = np.abs(0.2 + 0.1 * rng.standard_normal((m, 3)))
    te = np.linspace(0.0, 30.0, 16)
    bps = np.array([[0.0, 7.0, 7.0, 20.0]] * m)
    bps[::2, 3] = np.inf
    bps[1, 1:3] = [3.3, 12.5]
    jumps = np.zeros((m, 4, 1))
    jumps[:, :, 0] = [1.0, 2.0, 0.5, 4.0]
    Y0 = np.full((m, 1), 10.0)
    for first_step in (0.0, 0.05):
        fast, ref = both(DECAY, te, Y0, P, breakpoints=bps, jumps=jumps, method="tsit5",
                         rtol=1e-8, atol=1e-10, first_step=first_step, n_threads=1)
        assert np.all(ref.status == SUCCESS)
        assert_same(fast, ref)
    t0 = np.linspace(-1.0, 0.0, m)
    fast, ref = both(DECAY, te, Y0, P, t0=t0, method="dopri5", n_threads=1)
    assert_same(fast, ref)


def test_piecewise_model_and_non_finite():
    te = np.linspace(0.0, 40.0, 21)
    P = TWOPHASE_P * np.exp(0.2 * np.random.default_rng(5).standard_normal((7, 5)))
    bps = P[:, 4:5].copy()  # the switch at tmax
    fast, ref = both(TWOPHASE, te, [1e5, 0.0], P, breakpoints=bps, method="tsit5", rtol=1e-7,
                     n_threads=1)
    assert np.all(ref.status == SUCCESS)
    assert_same(fast, ref)
    # NaN from the model after t = 1, and blow-up in finite time (y' = y^2)
    fast, ref = both(NAN_SYS, [0.0, 0.5, 2.0], np.ones((3, 1)), np.ones((3, 1)), method="tsit5",
                     n_threads=1)
    assert np.all(ref.status == NON_FINITE)
    assert_same(fast, ref)
    fast, ref = both(SQUARE, [0.0, 0.5, 2.0], np.ones((4, 1)), np.ones((4, 1)), method="tsit5",
                     n_threads=1)
    assert np.all(ref.status != SUCCESS)
    assert_same(fast, ref)


def test_library_model_and_threads():
    from cartkinetics.models import get
    from cartkinetics.models._solver_adapter import ode_system

    model = get("stein2019_ode")
    system = ode_system(model)
    p0 = model.param_vector()
    _, y0, _ = model.initial_conditions(p0, [])
    P = p0 * np.exp(0.3 * np.random.default_rng(8).standard_normal((25, p0.size)))
    bps = np.array([model.breakpoints(p)[0] for p in P])
    te = np.linspace(0.0, 90.0, 31)
    fast, ref = both(system, te, y0, P, breakpoints=bps, method="tsit5", rtol=1e-8, atol=1e-6,
                     n_threads=1)
    assert np.all(ref.status == SUCCESS)
    assert_same(fast, ref)
    two = solve_batch(system, te, y0, P, breakpoints=bps, method="tsit5", rtol=1e-8, atol=1e-6,
                      n_threads=2)
    assert_same(two, ref)
    # a single solve goes through the same kernel
    one = solve(system, te, y0, P[4], breakpoints=bps[4], method="tsit5", rtol=1e-8, atol=1e-6)
    np.testing.assert_array_equal(one.y, ref.y[4])


def test_empty_batch_and_no_output_times():
    r = solve_batch(DECAY, [1.0], np.ones((0, 1)), np.ones((0, 3)), method="tsit5")
    assert r.y.shape == (0, 1, 1)
    fast, ref = both(DECAY, np.empty(0), np.ones((3, 1)), np.ones((3, 3)), method="tsit5")
    assert_same(fast, ref)


_CACHE_SCRIPT = """
from cartkinetics.solvers import solve, _lockstep
from cartkinetics.testing.solver_problems import LOGISTIC
r = solve(LOGISTIC, [0.0, 1.0], [1.0], [1.0, 10.0], method="tsit5")
k = _lockstep.solve_explicit
print(r.status, sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))
"""


def test_lockstep_kernel_loaded_from_cache():
    from cartkinetics.testing.solver_problems import LOGISTIC

    solve(LOGISTIC, [0.0, 1.0], [1.0], [1.0, 10.0], method="tsit5")  # populate the cache
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    status, hits, misses = (int(v) for v in out.stdout.split())
    assert status == SUCCESS and hits == 1 and misses == 0
