"""Status codes, NaN outputs after failures, invalid inputs and API errors."""

import numpy as np
import pytest

from cartkinetics.errors import CartKineticsError
from cartkinetics.solvers import (
    INVALID_INPUT,
    MAX_STEPS,
    NON_FINITE,
    STATUS_MESSAGES,
    STEP_TOO_SMALL,
    SUCCESS,
    solve,
    solve_batch,
    status_name,
)
from cartkinetics.testing.solver_problems import (
    DECAY,
    LOGISTIC,
    NAN_SYS,
    ROBERTSON,
    ROBERTSON_P,
    SQUARE,
)


def test_status_messages_cover_all_codes():
    assert set(STATUS_MESSAGES) == {SUCCESS, MAX_STEPS, STEP_TOO_SMALL, NON_FINITE, INVALID_INPUT}
    assert (SUCCESS, MAX_STEPS, STEP_TOO_SMALL, NON_FINITE, INVALID_INPUT) == (0, 1, 2, 3, 4)
    assert status_name(3) == "NON_FINITE"


@pytest.mark.parametrize("method", ["tsit5", "rodas5p", "auto"])
def test_nan_from_rhs_is_non_finite(method):
    te = np.array([0.0, 0.5, 0.9, 1.5, 2.0])
    r = solve(NAN_SYS, te, [1.0], [0.0], method=method)
    assert r.status == NON_FINITE
    assert np.isfinite(r.y[:3]).all()
    assert np.isnan(r.y[3:]).all()  # never silent zeros


def test_overflow_is_non_finite():
    # y' = y^2 from 1e155: f overflows to inf at the start
    r = solve(SQUARE, [0.0, 1.0], [1e155], [1.0])
    assert r.status == NON_FINITE
    assert np.isnan(r.y[1]).all()


def test_blow_up_gives_step_too_small_or_non_finite():
    # y' = y^2, y(0) = 1 blows up at t = 1
    r = solve(SQUARE, [0.0, 0.5, 2.0], [1.0], [1.0], method="tsit5", rtol=1e-8)
    assert r.status in (STEP_TOO_SMALL, NON_FINITE)
    np.testing.assert_allclose(r.y[1, 0], 2.0, rtol=1e-6)
    assert np.isnan(r.y[2, 0])


def test_max_steps():
    r = solve(ROBERTSON, [0.0, 1e4], [1.0, 0.0, 0.0], ROBERTSON_P, method="tsit5", max_steps=50)
    assert r.status == MAX_STEPS
    assert r.stats["steps"] + r.stats["rejected"] == 50


@pytest.mark.parametrize(
    "kwargs",
    [
        {"y0": [np.nan]},
        {"p": [np.inf, 1.0, 2.0]},
        {"t_eval": [0.0, 2.0, 1.0]},
        {"t_eval": [0.0, np.nan]},
        {"breakpoints": [3.0, 1.0], "jumps": [[0.0], [0.0]]},
        {"breakpoints": [np.nan]},
        {"rtol": -1e-6},
        {"atol": np.nan},
        {"t0": 5.0},
        {"breakpoints": [1.0], "jumps": [[np.nan]]},
    ],
)
def test_invalid_values_give_status_4_and_nan(kwargs):
    args = {"t_eval": [0.0, 1.0, 2.0], "y0": [1.0], "p": [0.1, 0.2, 0.3]}
    args.update(kwargs)
    t_eval, y0, p = args.pop("t_eval"), args.pop("y0"), args.pop("p")
    r = solve(DECAY, t_eval, y0, p, **args)
    assert r.status == INVALID_INPUT
    assert np.isnan(r.y).all()


def test_wrong_shapes_raise():
    with pytest.raises(CartKineticsError, match="n_params"):
        solve(DECAY, [0.0, 1.0], [1.0], [0.1])
    with pytest.raises(CartKineticsError, match="y0"):
        solve(DECAY, [0.0, 1.0], [1.0, 2.0], [0.1, 0.1, 0.1])
    with pytest.raises(CartKineticsError, match="jumps"):
        solve(DECAY, [0.0, 1.0], [1.0], [0.1, 0.1, 0.1], breakpoints=[0.5], jumps=[1.0, 2.0])
    with pytest.raises(CartKineticsError, match="method"):
        solve(DECAY, [0.0, 1.0], [1.0], [0.1, 0.1, 0.1], method="euler")
    with pytest.raises(CartKineticsError, match="OdeSystem"):
        solve("decay", [0.0, 1.0], [1.0], [0.1, 0.1, 0.1])


def test_failed_problem_does_not_stop_the_others():
    P = np.array([[0.1, 0.2, 0.3], [np.nan, 0.2, 0.3], [0.5, 0.2, 0.3]])
    y, status = solve_batch(DECAY, np.linspace(0, 5, 6), np.ones((3, 1)), P, rtol=1e-9)
    np.testing.assert_array_equal(status, [SUCCESS, INVALID_INPUT, SUCCESS])
    assert np.isnan(y[1]).all()
    np.testing.assert_allclose(y[0, :, 0], np.exp(-0.1 * np.linspace(0, 5, 6)), rtol=1e-7)
    np.testing.assert_allclose(y[2, :, 0], np.exp(-0.5 * np.linspace(0, 5, 6)), rtol=1e-7)


def test_counters():
    r = solve(LOGISTIC, np.linspace(0, 10, 5), [1.0], [1.0, 100.0], method="rodas5p")
    s = r.stats
    assert s["steps"] > 0 and s["jacobians"] == s["steps"]
    assert s["lu_decompositions"] == s["steps"] + s["rejected"]
    assert s["f_evaluations"] >= 8 * s["steps"]
    r = solve(LOGISTIC, np.linspace(0, 10, 5), [1.0], [1.0, 100.0], method="tsit5")
    assert r.stats["jacobians"] == 0
    assert r.stats["f_evaluations"] >= 6 * r.stats["steps"]


def test_plain_solves_do_not_compile_dfdp():
    """A model's dfdp is compiled at its first sensitivity solve, not before: a dfdp that does
    not type-check leaves plain solves working and fails the sensitivity solve with an error
    naming the model and the expected signatures."""
    from numba import njit

    from cartkinetics.solvers import OdeSystem, solve_sensitivities

    @njit(cache=False)
    def bad_dfdp(t, y, p, piece, Jp):
        Jp[0, 0] = -y  # an array into a float slot: a typing error

    # DECAY's model functions (one rate per piece) with a dfdp that does not compile
    system = OdeSystem(DECAY.rhs, DECAY.jac, bad_dfdp, 1, 1, name="decay_bad_dfdp")
    r = solve(system, [0.0, 1.0, 2.0], [1.0], [0.5])
    assert r.status == SUCCESS
    np.testing.assert_allclose(r.y[:, 0], np.exp(-0.5 * np.array([0.0, 1.0, 2.0])), rtol=1e-5)
    assert not bad_dfdp.signatures  # never compiled
    with pytest.raises(CartKineticsError, match="decay_bad_dfdp.*jac/dfdp"):
        solve_sensitivities(system, [0.0, 1.0], [1.0], [0.5])
