"""Regressions found in review (QA): each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cartkinetics.errors import CartKineticsError
from cartkinetics.simulate.virtual_patients import FitTablePopulation

HEADER = "patient,status,foldx,tmax,cmax,alpha,fb,beta\n"
GOOD = "A,converged,3900,9.3,24000,0.16,0.0079,0.0032\n"


@pytest.mark.parametrize("tmax", ["abc", "-1", "inf"])
def test_bad_value_in_a_successful_fit_names_row_and_column(tmp_path, tmax):
    # used to be coerced to NaN and dropped ("1 excluded") without saying where or why
    p = tmp_path / "fits.csv"
    p.write_text(HEADER + GOOD + f"B,converged,3000,{tmax},20000,0.2,0.01,0.003\n")
    with pytest.raises(CartKineticsError) as exc:
        FitTablePopulation(model="stein2019", table=p)
    assert exc.value.row == 2 and exc.value.column == "tmax"
    assert str(p) in str(exc.value)


def test_failed_or_missing_fits_are_still_left_out_and_counted():
    t = pd.DataFrame(
        {
            "status": ["converged", "failed", "converged"],
            "foldx": [3900.0, np.nan, 3000.0],
            "tmax": [9.3, -1.0, np.nan],  # a failed fit may hold anything; NaN = not fitted
            "cmax": [24000.0, 1.0, 20000.0],
        }
    )
    pop = FitTablePopulation(model="stein2019", table=t)
    assert pop.n_excluded == 2
    draws = pop._sample_params(np.random.default_rng(0), 50, None)
    assert np.all(draws[:, 1] == 9.3) and np.all(draws[:, 2] == 24000.0)


def test_row_numbers_count_rows_before_the_infusion_filter(tmp_path):
    p = tmp_path / "fits.csv"
    p.write_text(
        "patient,infusion,foldx,tmax,cmax\nA,1,3900,9.3,24000\nA,2,3900,9.3,24000\n"
        "B,1,3000,9,20000\nB,2,3000,x,20000\n"
    )
    with pytest.raises(CartKineticsError) as exc:
        FitTablePopulation(model="stein2019", table=p, infusion=2)
    assert exc.value.row == 4 and exc.value.column == "tmax"


def test_text_in_a_draws_file_names_row_and_column(tmp_path):
    # used to crash with a bare ValueError ("could not convert string to float")
    from cartkinetics.simulate.virtual_patients import DrawsPopulation

    p = tmp_path / "draws.csv"
    p.write_text("foldx,tmax\n3900,9.3\n3000,abc\n")
    with pytest.raises(CartKineticsError) as exc:
        DrawsPopulation(model="stein2019", draws=p)
    assert exc.value.row == 2 and exc.value.column == "tmax"
