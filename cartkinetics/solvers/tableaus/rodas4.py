"""Rodas4: 4th-order, L-stable, stiffly accurate Rosenbrock method, 6 stages, embedded 3rd-order
solution and a 3rd-degree dense output (two coefficient vectors).

Reference: E. Hairer & G. Wanner, Solving Ordinary Differential Equations II, 2nd ed.,
Springer 1996, section IV.7, Table 7.3 and the code RODAS (subroutine RODCOE, METH=1,
dense output coefficients D21..D55), in the transformed (a, C, gamma, c, d, H) form.
"""

from __future__ import annotations

import numpy as np

from cartkinetics.solvers.tableaus import RosenbrockTableau, stiffly_accurate_weights

_a = np.zeros((6, 6))
_a[1, :1] = [1.544]
_a[2, :2] = [0.9466785280815826, 0.2557011698983284]
_a[3, :3] = [3.314825187068521, 2.896124015972201, 0.9986419139977817]
_a[4, :4] = [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950]
_a[5, :5] = [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950, 1.0]
_C = np.zeros((6, 6))
_C[1, :1] = [-5.6688]
_C[2, :2] = [-2.430093356833875, -0.2063599157091915]
_C[3, :3] = [-0.1073529058151375, -9.594562251023355, -20.47028614809616]
_C[4, :4] = [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160]
_C[5, :5] = [
    8.083246795921522,
    -7.981132988064893,
    -31.52159432874371,
    16.31930543123136,
    -6.058818238834054,
]
_c = np.array([0.0, 0.386, 0.21, 0.63, 1.0, 1.0])
_d = np.array([0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0])
_H = np.array(
    [
        [10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
         1.025137723295662, 0.0],
        [-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
         -6.594389125716872, 0.0],
    ]
)
_b, _e = stiffly_accurate_weights(_a)

RODAS4 = RosenbrockTableau(
    name="rodas4",
    a=_a,
    C=_C,
    gamma=0.25,
    c=_c,
    d=_d,
    b=_b,
    e=_e,
    H=_H,
    order=4,
    error_order=4,
)
