"""Regressions found in review (QA): each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest

from cartkinetics.data import Series
from cartkinetics.noncompartmental import NCA_COLUMNS, nca, nca_series


def _series():
    day = np.array([1.0, 7.0, 14.0, 28.0])
    value = np.array([100.0, 1000.0, 400.0, 50.0])
    return Series("P1", 1, "qpcr", "copies/ug", day, value, np.full(4, np.nan), np.zeros(4, bool))


def test_partial_auc_columns_are_named_after_their_day():
    # nca(auc_day=14) used to return AUC0-14 under the key auc_0_28
    t = nca(_series(), auc_day=14)
    assert "auc_0_28" not in t.columns and "auc_0_14" in t.columns
    assert "auc_0_14_truncated" in t.columns
    # hand calculation: 0->1 linear from (0, 0), 1->7 linear up, 7->14 log down
    expected = 0.5 * 100 + 0.5 * (100 + 1000) * 6 + (1000 - 400) * 7 / np.log(1000 / 400)
    assert t["auc_0_14"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert list(nca_series(_series()).keys()) == NCA_COLUMNS
    assert list(nca(_series()).columns) == NCA_COLUMNS
