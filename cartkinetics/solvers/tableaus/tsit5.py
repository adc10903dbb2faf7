"""Tsitouras' 5(4) explicit Runge-Kutta pair (7 stages, FSAL) with its free 4th-degree interpolant.

Reference: Ch. Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first column
simplifying assumption", Computers & Mathematics with Applications 62(2):770-775, 2011,
Table 1 (coefficients) and the continuous extension b_i(theta) given in the same paper.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import polynomial as P

from cartkinetics.solvers.tableaus import ExplicitTableau

_c = np.array([0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0])
_a = np.zeros((7, 7))
_a[1, 0] = 0.161
_a[2, :2] = [-0.008480655492356989, 0.335480655492357]
_a[3, :3] = [2.8971530571054935, -6.359448489975075, 4.3622954328695815]
_a[4, :4] = [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525]
_a[5, :5] = [
    5.86145544294642,
    -12.92096931784711,
    8.159367898576159,
    -0.071584973281401,
    -0.028269050394068383,
]
_b = np.array(
    [
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
        0.0,
    ]
)
_a[6, :] = _b
_b_hat = np.array(
    [
        0.09468075576583945,
        0.009183565540343254,
        0.4877705284247616,
        1.234297566930479,
        -2.7077123499835256,
        1.866628418170587,
        1.0 / 66.0,
    ]
)


def _interpolant() -> np.ndarray:
    """b_i(theta) of Tsitouras (2011) as polynomial coefficients of theta**1..theta**4."""
    mul = P.polymul
    th2 = [0.0, 0.0, 1.0]  # theta^2
    polys = [
        -1.0530884977290216
        * mul(mul([0.0, 1.0], [-1.3299890189751412, 1.0]),
              [0.7139816917074209, -1.4364028541716351, 1.0]),
        0.1017 * mul(th2, [1.2949852507374631, -2.1966568338249754, 1.0]),
        2.490627285651252793 * mul(th2, [1.57803468208092486, -2.38535645472061657, 1.0]),
        -16.54810288924490272
        * mul(mul([-1.21712927295533244, 1.0], [-0.61620406037800089, 1.0]), th2),
        47.37952196281928122
        * mul(mul([-1.203071208372362603, 1.0], [-0.658047292653547382, 1.0]), th2),
        -34.87065786149660974 * mul(mul([-1.2, 1.0], [-0.666666666666666667, 1.0]), th2),
        2.5 * mul(mul([-1.0, 1.0], [-0.6, 1.0]), th2),
    ]
    dense = np.zeros((7, 4))
    for i, poly in enumerate(polys):
        poly = np.trim_zeros(np.asarray(poly, dtype=float), "b")
        dense[i, : len(poly) - 1] = poly[1:5]  # constant term is zero
    return dense


TSIT5 = ExplicitTableau(
    name="tsit5",
    a=_a,
    b=_b,
    e=_b - _b_hat,
    c=_c,
    dense=_interpolant(),
    order=5,
    error_order=5,
    stiff_threshold=3.3,  # real stability boundary of Tsit5 is about -3.5
)
