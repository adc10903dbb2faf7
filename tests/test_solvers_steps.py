"""The explicit solvers take exactly the steps of a textbook implementation of the same method.

The reference is a plain Python embedded Runge-Kutta loop over the same tableau with the step
controller of Hairer's DOPRI5 code (PI control with beta = 0.04, safety 0.9, step factor in
[0.2, 10], RMS error norm with max(|y|, |y_new|) scaling, no growth right after a rejection).
It shares no code with the numba kernel, so a kernel that wastes steps (or takes too few) fails.
The powers of the controller, err ** expo1 / facold ** 0.04, are computed as one exp of the
difference of the logs (as the kernel does, to save two pow calls a step): the same controller,
and the same rounding, so the final states agree to 1e-12.
"""

import math

import numpy as np
import pytest

from cartkinetics.solvers import solve
from cartkinetics.solvers.tableaus.dopri5 import DOPRI5
from cartkinetics.solvers.tableaus.tsit5 import TSIT5
from cartkinetics.testing.solver_problems import CART, CART_P_NONSTIFF, CART_Y0, cart_rhs

RTOL, ATOL = 1e-6, 1e-2


def _f(t, y, p):
    d = np.empty(4)
    cart_rhs(t, y, p, 0, d)
    return d


def textbook(tab, p, t1, y0, h):
    """Accepted and rejected steps and y(t1) of a textbook embedded RK with Hairer's control."""
    a, e, c = tab.a, tab.e, tab.c
    s = len(c)
    t, y = 0.0, y0.copy()
    k1 = _f(t, y, p)
    expo1 = 1.0 / tab.error_order - 0.75 * 0.04
    lfacold = 0.04 * math.log(1e-4)  # log(facold ** 0.04)
    accepted = rejected = 0
    reject = False
    last = False
    while not last:
        if t + 1.01 * h >= t1:
            h = t1 - t
            last = True
        K = [k1]
        for i in range(1, s):
            K.append(_f(t + c[i] * h, y + h * sum(a[i, j] * K[j] for j in range(i)), p))
        ynew = y + h * sum(a[s - 1, j] * K[j] for j in range(s - 1))
        err = h * sum(e[j] * K[j] for j in range(s))
        sc = ATOL + RTOL * np.maximum(np.abs(y), np.abs(ynew))
        en2 = np.mean((err / sc) ** 2)  # squared RMS norm
        lerr = 0.5 * math.log(en2)
        if en2 <= 1.0:
            # err ** expo1 / facold ** 0.04 / 0.9, clamped to [0.1, 5]
            z = expo1 * lerr - lfacold
            if z <= math.log(0.1 * 0.9):
                fac = 0.1
            elif z >= math.log(5.0 * 0.9):
                fac = 5.0
            else:
                fac = max(0.1, min(5.0, math.exp(z) / 0.9))
            hnew = h / fac
            lfacold = 0.04 * max(lerr, math.log(1e-4))
            accepted += 1
            t, y, k1 = (t1 if last else t + h), ynew, K[-1]
            h = min(hnew, h) if reject else hnew
            reject = False
        else:
            last = False
            h = h / min(5.0, math.exp(expo1 * lerr) / 0.9)
            rejected += 1
            reject = True
    return accepted, rejected, y


@pytest.mark.parametrize("tab, method", [(TSIT5, "tsit5"), (DOPRI5, "dopri5")])
def test_step_counts_equal_textbook_controller(tab, method):
    rng = np.random.default_rng(5)
    for _ in range(3):
        p = CART_P_NONSTIFF * np.exp(0.3 * rng.standard_normal(CART_P_NONSTIFF.size))
        p[10] = CART_P_NONSTIFF[10]
        r = solve(CART, [0.0, 180.0], CART_Y0, p, method=method, rtol=RTOL, atol=ATOL,
                  first_step=1e-3)
        acc, rej, y_end = textbook(tab, p, 180.0, CART_Y0, 1e-3)
        assert r.status == 0
        assert 50 < acc < 1000  # a real run, not a degenerate one
        assert (r.stats["steps"], r.stats["rejected"]) == (acc, rej)
        assert r.stats["f_evaluations"] == 1 + (len(tab.c) - 1) * (acc + rej)  # FSAL
        np.testing.assert_allclose(r.y[-1], y_end, rtol=1e-12, atol=1e-9)
