"""Dormand-Prince 5(4) explicit Runge-Kutta pair (7 stages, FSAL) with Shampine's dense output.

References: J. R. Dormand & P. J. Prince, "A family of embedded Runge-Kutta formulae",
J. Comput. Appl. Math. 6(1):19-26, 1980 (Table 2, RK5(4)7M); dense output coefficients
d_i of E. Hairer, S. P. Norsett & G. Wanner, Solving Ordinary Differential Equations I,
2nd ed., Springer 1993, section II.6 (code DOPRI5, subroutine CONTD5).
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import polynomial as P

from cartkinetics.solvers.tableaus import ExplicitTableau

_c = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_a = np.zeros((7, 7))
_a[1, 0] = 1 / 5
_a[2, :2] = [3 / 40, 9 / 40]
_a[3, :3] = [44 / 45, -56 / 15, 32 / 9]
_a[4, :4] = [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729]
_a[5, :5] = [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]
_b = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
_a[6, :] = _b
_e = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])
_d = np.array(
    [
        -12715105075 / 11282082432,
        0.0,
        87487479700 / 32700410799,
        -10690763975 / 1880347072,
        701980252875 / 199316789632,
        -1453857185 / 822651844,
        69997945 / 29380423,
    ]
)


def _interpolant() -> np.ndarray:
    """Expand CONTD5, y(theta) = y0 + theta (D + (1-theta)(h k1 - D + theta (D - h k7 - (h k1 - D)
    + (1-theta) h sum d_i k_i))), D = h sum b_i k_i, into b_i(theta) polynomials."""
    th = [0.0, 1.0]
    one_m = [1.0, -1.0]
    t1m = P.polymul(th, one_m)  # theta (1 - theta)
    t2m = P.polymul(th, t1m)  # theta^2 (1 - theta)
    t2m2 = P.polymul(t2m, one_m)  # theta^2 (1 - theta)^2
    dense = np.zeros((7, 4))
    for i in range(7):
        d1 = 1.0 if i == 0 else 0.0
        d7 = 1.0 if i == 6 else 0.0
        poly = P.polyadd(
            P.polyadd(P.polymul([_b[i]], th), P.polymul([d1 - _b[i]], t1m)),
            P.polyadd(P.polymul([2 * _b[i] - d7 - d1], t2m), P.polymul([_d[i]], t2m2)),
        )
        poly = np.concatenate([poly, np.zeros(5)])[:5]
        dense[i] = poly[1:5]
    return dense


DOPRI5 = ExplicitTableau(
    name="dopri5",
    a=_a,
    b=_b,
    e=_e,
    c=_c,
    dense=_interpolant(),
    order=5,
    error_order=5,
    stiff_threshold=3.25,  # Hairer's DOPRI5 value (boundary about -3.3)
)
