"""First vs second infusion as a new user meets it (qa helper)."""

from __future__ import annotations

import pandas as pd

import cartkinetics as ck


def test_summary_says_no_ci_rather_than_nan_for_too_few_pairs():
    # two pairs: the Hodges-Lehmann 95% CI needs n >= 6 and the t CI n >= 2 with spread; the
    # text printed "95% CI nan to nan" (the JSON has null and says why)
    t = pd.DataFrame({"patient": ["A", "A", "B", "B"], "infusion": [1, 2, 1, 2],
                      "cmax": [1000.0, 3000.0, 2000.0, 6000.0], "tmax": [10.0, 7.0, 14.0, 10.0],
                      "auc_0_28": [1e4, 2e4, 2e4, 4e4]})
    text = ck.compare_infusions(t).summary()
    assert "nan" not in text.lower()
    assert text.count("no 95% CI: too few pairs") == 1          # tmax (HL, n = 2)
    # the ratio CIs exist: every ratio is 3 (cmax) or 2 (auc): zero spread, CI = the ratio
    assert "GM ratio 3 (95% CI 3 to 3)" in text and "GM ratio 2 (95% CI 2 to 2)" in text


def test_one_pair_summary_has_no_nan():
    t = pd.DataFrame({"patient": ["A", "A"], "infusion": [1, 2], "cmax": [1000.0, 3000.0],
                      "tmax": [10.0, 7.0], "auc_0_28": [1e4, 2e4]})
    text = ck.compare_infusions(t).summary()
    assert "nan" not in text.lower() and text.count("no 95% CI: too few pairs") == 3
