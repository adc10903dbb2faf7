"""Batch solving: same answers as single solves, whatever the number of threads."""

import numba
import numpy as np
import pytest

from cartkinetics.solvers import SUCCESS, solve, solve_batch
from cartkinetics.testing.solver_problems import CART, CART_P, CART_Y0, DECAY


@pytest.fixture(scope="module")
def population():
    rng = np.random.default_rng(1)
    m = 64
    P = CART_P * np.exp(0.3 * rng.standard_normal((m, CART_P.size)))
    Y0 = CART_Y0 * np.exp(0.5 * rng.standard_normal((m, 4)))
    return Y0, P


@pytest.mark.parametrize("method", ["auto", "rodas5p"])
def test_batch_equals_single_solves(population, method):
    Y0, P = population
    te = np.linspace(0, 180, 31)
    res = solve_batch(CART, te, Y0, P, method=method)
    assert res.y.shape == (len(P), 31, 4)
    for i in (0, 17, 63):
        r = solve(CART, te, Y0[i], P[i], method=method)
        assert r.status == res.status[i]
        np.testing.assert_array_equal(r.y, res.y[i])
        assert r.stats["steps"] == res.stats[i, 0]


def test_thread_count_invariance(population):
    Y0, P = population
    te = np.linspace(0, 180, 31)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        y1, s1 = solve_batch(CART, te, Y0, P)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        y2, s2 = solve_batch(CART, te, Y0, P)
    finally:
        numba.set_num_threads(before)
    y3, s3 = solve_batch(CART, te, Y0, P, n_threads=3)
    np.testing.assert_array_equal(s1, s2)
    assert (s1 == SUCCESS).all()
    np.testing.assert_array_equal(y1, y2)  # bitwise identical
    np.testing.assert_array_equal(y1, y3)


def test_per_problem_breakpoints_padded_with_inf():
    k = np.array([0.1, 0.3, 0.05])
    te = np.linspace(0, 20, 11)
    bps = np.array([[5.0, 10.0], [7.0, np.inf], [np.inf, np.inf]])
    jumps = np.zeros((3, 2, 1))
    jumps[0, :, 0] = [1.0, 2.0]
    jumps[1, 0, 0] = 3.0
    y, status = solve_batch(DECAY, te, np.ones((3, 1)), np.tile(k, (3, 1)), breakpoints=bps,
                            jumps=jumps, rtol=1e-9)
    assert (status == SUCCESS).all()
    for i in range(3):
        b = bps[i][np.isfinite(bps[i])]
        r = solve(DECAY, te, [1.0], k, breakpoints=b, jumps=jumps[i, : b.size], rtol=1e-9)
        np.testing.assert_allclose(y[i], r.y, rtol=1e-12)
    # problem 2 never switches piece: pure decay at k[0]
    np.testing.assert_allclose(y[2, :, 0], np.exp(-0.1 * te), rtol=1e-7)


def test_broadcast_shared_inputs():
    te = np.linspace(0, 5, 6)
    P = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2]])
    y, status = solve_batch(DECAY, te, [1.0], P, breakpoints=[2.0], jumps=[[1.0]], rtol=1e-9)
    assert y.shape == (2, 6, 1)
    r = solve(DECAY, te, [1.0], P[1], breakpoints=[2.0], jumps=[[1.0]], rtol=1e-9)
    np.testing.assert_array_equal(y[1], r.y)
