"""Properties of NCA on random series (hypothesis): what must hold whatever the data."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cartkinetics.data import Series
from cartkinetics.noncompartmental import nca_series

RULES = ["pknca", "phoenix", {"first": "zero", "middle": "zero", "last": "zero"},
         {"first": "drop", "middle": "drop", "last": "drop"}]


@st.composite
def series(draw):
    n = draw(st.integers(1, 12))
    days = sorted(draw(st.sets(st.integers(0, 400), min_size=n, max_size=n)))
    values = draw(st.lists(st.floats(1.0, 1e6), min_size=n, max_size=n))
    blq = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    lloq = 50.0
    v = np.where(blq, lloq, np.maximum(values, lloq))
    d = np.asarray(days, float)
    return Series("P", 1, "qpcr", "copies/ug", d, v, np.full(n, lloq), np.asarray(blq, bool))


@settings(max_examples=300, deadline=None)
@given(series(), st.sampled_from(range(len(RULES))))
def test_nca_invariants(s, k):
    r = nca_series(s, (28, 84), blq_rule=RULES[k])
    q = ~s.blq
    first = float(np.min(s.day))
    for key, d in (("auc_0_28", 28.0), ("auc_0_84", 84.0), ("auc_0_last", None)):
        if d is not None and first >= d and q.any():
            # nothing sampled in [0, D): not estimable, never a number made up
            assert math.isnan(r[key])
        else:
            assert math.isfinite(r[key]) and r[key] >= 0
    # the area accumulates: a later day never has less
    if math.isfinite(r["auc_0_28"]) and math.isfinite(r["auc_0_84"]):
        assert r["auc_0_28"] <= r["auc_0_84"] * (1 + 1e-12)
    if q.any():
        assert r["tlast"] == s.day[q][-1] and r["clast"] == s.value[q][-1]
        # a quantifiable value after day 0 always gives an area (never AUC = 0)
        if r["tlast"] > 0:
            assert r["auc_0_last"] > 0
        if math.isfinite(r["cmax"]):
            # Cmax is an observed quantifiable value, the largest from Tmax's phase on
            assert r["cmax"] in set(s.value[q])
            assert r["cmax"] >= s.value[q & (s.day >= r["tmax"])].max()
    else:
        assert r["auc_0_last"] == 0 and math.isnan(r["cmax"])
    if math.isfinite(r["half_life"]):
        assert r["half_life"] > 0 and r["lambda_z_n"] >= 3
        assert r["lambda_z_start"] > r["tmax"] and r["lambda_z_end"] <= r["tlast"]
    if math.isfinite(r["doubling_time"]):
        assert r["doubling_time"] > 0 and r["doubling_end"] == r["tmax"]
