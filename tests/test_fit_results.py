"""The common base of per-patient fit results (fit/results.py FitResultBase).

FitResult, JointFitResult and CohortFit have their own reprs, tables and plots (tested in
tests/test_fit_api.py); the base gives the multi-output fit, which has none of its own, the
same small interface: a short repr, a one-row to_frame() and a summary().
"""

from __future__ import annotations

import json
import math

import numpy as np

from cartkinetics.fit.individual import FitResult
from cartkinetics.fit.joint import JointFitResult
from cartkinetics.fit.multi import MultiFitResult
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
