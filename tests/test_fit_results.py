"""The common base of per-patient fit results (fit/results.py FitResultBase).

FitResult, JointFitResult and CohortFit have their own reprs, tables and plots (tested in
tests/test_fit_api.py); the base gives the multi-output fit, which has none of its own, the
same small interface: a short repr, a one-row to_frame() and a summary(). A FitResult's lmfit
Parameters travel with it (lmfit_params(), fit_series(params=...)).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cartkinetics import example, models
from cartkinetics.fit.individual import FitResult, fit_series
from cartkinetics.fit.joint import JointFitResult
from cartkinetics.fit.multi_output import MultiFitResult
from cartkinetics.fit.results import REPR_MAX, FitResultBase


def _multi(message: str = "") -> MultiFitResult:
    return MultiFitResult(
        patient="P07", model="liu2022", status="converged", message=message, censoring="M3",
        params={"a": 0.5, "b": 2.0e4}, stderr={"a": 0.1, "b": math.nan}, free=["a", "b"],
        neg2ll=12.5, aic=18.5, sigma=0.4, neg2ll_by_output={"cart": 8.0, "tumour": 4.5},
    )


def test_every_per_patient_result_shares_the_base():
    for cls in (FitResult, JointFitResult, MultiFitResult):
        assert issubclass(cls, FitResultBase)


def test_multi_fit_repr_is_short_and_names_the_fit():
    r = _multi()
    text = repr(r)
    assert text.startswith("<MultiFitResult ") and "patient=P07" in text
    assert "status=converged" in text and "a=0.5" in text and "b=2e+04" in text
    long = _multi(message="x" * 50_000)  # the message is not in the repr
    assert len(repr(long)) < REPR_MAX
    many = _multi()
    many.params = {f"p{i}": float(i) for i in range(1000)}
    assert len(repr(many)) <= REPR_MAX and repr(many).endswith(" ...>")


def test_multi_fit_frame_dict_and_summary_agree():
    r = _multi()
    frame = r.to_frame()
    d = r.to_dict()
    assert frame.shape == (1, len(d)) and list(frame.columns) == list(d)
    assert frame.loc[0, "neg2ll_tumour"] == 4.5 and np.isnan(frame.loc[0, "b_se"])
    json.dumps(d, default=float)
    s = r.summary()
    assert s.splitlines()[0] == "[[MultiFitResult]]"
    assert "neg2ll_cart" in s and "b_se" in s and "= nan" in s


def test_lmfit_parameters_travel_with_the_result_and_refit():
    series = example.load().series()[0]
    first = fit_series(series, "stein2019")
    pars = first.lmfit_params()
    assert set(pars) == set(first.params)
    assert all(pars[n].vary == (n in first.free) for n in pars)
    model_bounds = {p.name: (p.lower, p.upper) for p in models.get("stein2019").parameters}
    assert all((pars[n].min, pars[n].max) == model_bounds[n] for n in pars)
    # unchanged Parameters: the same fit
    again = fit_series(series, "stein2019", params=pars)
    assert again.params == pytest.approx(first.params, rel=1e-6)
    # beta held at a chosen value, tmax bounded to [5, 8] days
    pars["beta"].set(value=0.01, vary=False)
    pars["tmax"].set(min=5.0, max=8.0, value=6.0)
    refit = fit_series(series, "stein2019", params=pars)
    assert "beta" not in refit.free and refit.params["beta"] == 0.01
    assert 5.0 <= refit.params["tmax"] <= 8.0
    assert refit.lmfit_params()["tmax"].max == 8.0
