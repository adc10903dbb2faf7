"""NCA against a second, independent implementation.

Reference values were computed with pynca 1.2.3 (PyPI; a Python port of Kyun-Seop Bae's R
package NonCompart): ``pynca.tools.sNCA(t, c, dose=1, adm="Extravascular", down="Log")``,
i.e. linear-up / log-down AUC and NonCompart's BestSlope (points after Tmax, best adjusted
R^2 within 1e-4, the most points among those) -- the same conventions as PKNCA's defaults.
pynca is not a dependency of cartkinetics (it pulls seaborn and xlrd for plotting and Excel
and states no licence); the numbers are written out here, in the manner of a published
worked example. Series with no BLQ values, where the BLQ rules of the two tools agree
trivially; the day-1 BLQ of the issue-16 series is removed as PKNCA's "middle = drop" does.
"""

from __future__ import annotations

import numpy as np
import pytest

from cartkinetics.data import Series
from cartkinetics.noncompartmental import nca_series

# name -> (days, copies/ug, pynca: AUClast, Cmax, Tmax, lambda_z, n points, adj R^2, first day)
CASES = {
    "issue16": (
        [0, 4, 7, 10, 14, 21, 28],
        [3000, 800, 6000, 20000, 9000, 2500, 900],
        (157444.20333738383, 20000.0, 10.0, 0.16447036378528904, 3, 0.9915823208247485, 14.0),
    ),
    "biphasic": (
        [0, 1, 4, 7, 10, 14, 21, 28, 60, 90, 180],
        [0, 120, 900, 5000, 24000, 11000, 5200, 2900, 900, 400, 95],
        (294641.8448691282, 24000.0, 10.0, 0.01809969829440222, 3, 0.9706224115343971, 60.0),
    ),
    "late_start": (
        [0, 1, 4, 7, 10, 14, 21, 28, 42],
        [0, 100, 800, 5000, 18000, 7000, 3000, 1300, 500],
        (150185.31790656238, 18000.0, 10.0, 0.09344150314270833, 4, 0.9642713962737274, 14.0),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_noncompart_port(name):
    days, values, ref = CASES[name]
    d = np.asarray(days, float)
    v = np.asarray(values, float)
    s = Series("P", 1, "qpcr", "copies/ug", d, v, np.full(d.size, np.nan), v <= 0)
    r = nca_series(s)
    auc, cmax, tmax, lz, n, adj, first = ref
    assert r["auc_0_last"] == pytest.approx(auc, rel=1e-12)
    assert (r["cmax"], r["tmax"]) == (cmax, tmax)
    assert r["lambda_z"] == pytest.approx(lz, rel=1e-10)
    assert r["lambda_z_n"] == n and r["lambda_z_start"] == first
    assert r["lambda_z_r2_adj"] == pytest.approx(adj, rel=1e-10)
