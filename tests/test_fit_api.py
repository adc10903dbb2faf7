"""The per-series fit layer as a user calls it (issue #19): one default estimator in Python
and on the CLI, one-screen reprs and plots on a given Axes, joint fits in the JSON and
parameters at a bound of a joint fit reported as not identifiable."""

from __future__ import annotations

import contextlib
import io
import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import cartkinetics as ck  # noqa: E402
from cartkinetics import example, models  # noqa: E402
from cartkinetics.cli import main  # noqa: E402
from cartkinetics.data import Series  # noqa: E402
from cartkinetics.fit.individual import resolve_prior  # noqa: E402
from cartkinetics.fit.joint import fit_joint  # noqa: E402

M = models.get("stein2019")
TRUTH = dict(zip(M.param_names, M.typical.tolist(), strict=True))


def _example_csv(tmp_path, patients=("P01",)) -> str:
    raw = pd.read_csv(example.kinetics_path())
    path = tmp_path / "kin.csv"
    raw[raw["patient"].isin(patients)].to_csv(path, index=False)
    return str(path)


def _cli_json(*argv: str):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["fit", *argv])
    assert code == 0
    return json.loads(buf.getvalue())


# ------------------------------------------------------------------ default estimator
def test_resolve_prior_follows_the_published_population_and_its_unit():
    # Stein 2019 publishes BSV with cmax in copies/ug; Liu 2022 publishes none
    assert M.bsv and next(p.unit for p in M.parameters if p.name == "cmax") == "copies/ug"
    assert resolve_prior("auto", "stein2019", "copies/ug") == ("population", "")
    assert resolve_prior("auto", "stein2019", "copies/µg") == ("population", "")
    prior, note = resolve_prior("auto", "stein2019", "cells/uL")
    assert prior is None and "cells/uL" in note and "copies/ug" in note
    assert resolve_prior("auto", "liu2022", "cells/uL") == (None, "")
    assert resolve_prior(None, "stein2019", "copies/ug") == (None, "")
    assert resolve_prior("population", "stein2019", "cells/uL") == ("population", "")


def test_default_is_the_population_map_and_ml_one_keyword_away():
    s = ck.read_kinetics(example.kinetics_path()).series()[0]
    d = ck.fit_series(s, n_boot=0, profile=False)
    mp = ck.fit_series(s, n_boot=0, profile=False, prior="population")
    ml = ck.fit_series(s, n_boot=0, profile=False, prior=None)
    assert d.estimator == mp.estimator == "MAP (population prior)" and ml.estimator == "ML"
    assert d.params == mp.params
    # ML maximises the likelihood alone; MAP does not
    assert ml.neg2ll <= d.neg2ll + 1e-6 and d.objective > d.neg2ll


def test_python_and_cli_give_the_same_fits(tmp_path):
    csv = _example_csv(tmp_path)
    recs = _cli_json(csv, "--json", "--n-boot", "30")
    cohort = ck.fit_cohort(ck.read_kinetics(csv), "stein2019", n_boot=30)
    assert [r["estimator"] for r in recs] == [r.estimator for r in cohort.results]
    assert {r["estimator"] for r in recs} == {"MAP (population prior)"}
    for rec, r in zip(recs, cohort.results, strict=True):
        assert rec["cmax"] == r.outcomes["cmax"] and rec["params"] == r.params
    ml = _cli_json(csv, "--json", "--n-boot", "30", "--prior", "none")
    ml_py = ck.fit_cohort(ck.read_kinetics(csv), "stein2019", n_boot=30, prior=None)
    assert [r["cmax"] for r in ml] == [r.outcomes["cmax"] for r in ml_py.results]
    assert ml[0]["cmax"] != recs[0]["cmax"]


# ------------------------------------------------------------------ reprs, tables, plots
@pytest.fixture(scope="module")
def cohort():
    data = ck.read_kinetics(example.kinetics_path())
    return ck.fit_cohort(data.series()[:4], "stein2019", n_boot=30, joint=True)


def test_reprs_fit_on_a_screen_and_say_the_estimator(cohort):
    for obj in (cohort, cohort.results[0], cohort.joint[0]):
        text = repr(obj)
        assert len(text) < 2000, type(obj).__name__
        assert "MAP (population prior)" in text or "ML" in text
        assert "<table" in obj._repr_html_()
    assert "P02" in repr(cohort) and "4 series" in repr(cohort)
    assert "P01" in cohort.summary() and "[[Joint fit]]" in cohort.summary()


def test_tables_and_json_safe_dicts(cohort):
    r = cohort.results[0]
    assert set(r.to_frame()["name"]) >= {"cmax", "tmax", "auc_0_28"}
    json.dumps(r.to_dict(), allow_nan=False)
    doc = cohort.to_dict()
    json.dumps(doc, allow_nan=False)
    assert len(doc["fits"]) == 4 and len(doc["joint"]) == 2
    assert doc["estimators"] == {"MAP (population prior)": 4}
    assert len(cohort.to_frame()) == 4 and cohort.table["model_cmax"].dtype == float
    j = cohort.joint[0]
    json.dumps(j.to_dict(), allow_nan=False)
    f = j.to_frame()
    assert set(f["kind"]) == {"parameter", "ratio"} and f["identifiable"].all()
    jt = cohort.joint_table()  # joint.csv: flat columns, one row per patient
    assert len(jt) == 2 and jt["cmax_ratio"].dtype == float
    assert jt.loc[0, "cmax_ratio"] == j.ratios["cmax"]["estimate"]


def test_cohort_plot_takes_ax_and_fig(cohort):
    fig, ax = plt.subplots()
    try:
        assert cohort.plot(ax=ax) is ax
        assert len(ax.get_lines()) >= 2 * len(cohort.results) and ax.get_yscale() == "log"
    finally:
        plt.close(fig)
    fig = plt.figure()
    try:
        grid = cohort.plot(fig=fig, ncols=2)
        assert grid.shape == (2, 2) and all(a.figure is fig and a.has_data() for a in grid.flat)
    finally:
        plt.close(fig)
    fig, axes = plt.subplots(2, 2)
    try:
        with pytest.warns(DeprecationWarning, match="ax="):
            grid = cohort.plot(axes=axes)
        assert all(a is b for a, b in zip(grid.flat, axes.flat, strict=True))
    finally:
        plt.close(fig)


# ------------------------------------------------------------------ joint fits
def _series(patient: str, inf: int, days: np.ndarray, params: dict[str, float]) -> Series:
    c = M.solve(days, params).observed["transgene"]
    return Series(patient, inf, "qpcr", "copies/ug", days.copy(), c, np.full(days.size, 1e-3),
                  np.zeros(days.size, bool))


def test_joint_parameter_at_its_bound_is_not_identifiable():
    # the second infusion peaks at day 0.3, below the model's lower bound of tmax (0.5 d),
    # and is sampled from day 0.25: tmax of infusion 2 runs to that bound
    days = np.array([0.25, 1, 2, 4, 7, 10, 14, 21, 28, 60.0])
    lower = next(p.lower for p in M.parameters if p.name == "tmax")
    assert lower == 0.5
    s1 = _series("B3", 1, days, dict(TRUTH, foldx=50.0))
    s2 = _series("B3", 2, days, dict(TRUTH, foldx=50.0, tmax=0.3, cmax=30000.0))
    j = fit_joint([s1, s2])
    assert j.params[2]["tmax"] == pytest.approx(lower, rel=1e-4)
    assert "tmax_inf2" in j.not_identifiable and "lower bound 0.5" in j.not_identifiable[
        "tmax_inf2"]
    assert "tmax_inf2" not in j.ci and "tmax_inf1" in j.ci
    r = j.ratios["tmax"]
    assert r["identifiable"] is False and math.isnan(r["lo"]) and math.isnan(r["hi"])
    assert "not identifiable" in j.summary() and "not identifiable" in repr(j)
    assert "[nan" not in j.summary()
    doc = j.to_dict()
    assert doc["ratios"]["tmax"]["lo"] is None and "tmax_inf2" not in doc["ci"]
    # the peak of infusion 1 is identified: its ratio keeps a CI
    assert j.ratios["cmax"]["identifiable"] and j.ratios["cmax"]["lo"] < j.ratios["cmax"]["hi"]


def test_joint_fits_well_identified_keep_their_cis():
    days = np.array([1, 3, 5, 7, 10, 14, 21, 28, 60, 90, 180.0])
    j = fit_joint([_series("B4", 1, days, TRUTH),
                   _series("B4", 2, days, dict(TRUTH, cmax=2 * TRUTH["cmax"]))])
    assert j.ok and not j.not_identifiable
    assert j.ratios["cmax"]["estimate"] == pytest.approx(2.0, rel=1e-3)
    assert j.ratios["cmax"]["lo"] < 2.0 < j.ratios["cmax"]["hi"]


def test_cli_joint_json_holds_the_joint_fits(tmp_path):
    csv = _example_csv(tmp_path)
    doc = _cli_json(csv, "--json", "--joint", "--n-boot", "20")
    assert set(doc) == {"fits", "joint"}
    assert len(doc["fits"]) == 2 and len(doc["joint"]) == 1
    jt = doc["joint"][0]
    assert jt["patient"] == "P01" and jt["estimator"] == "ML"
    assert {"cmax", "tmax"} == set(jt["ratios"]) and "not_identifiable" in jt
    # without --joint the output stays a list of per-series records
    assert isinstance(_cli_json(csv, "--json", "--n-boot", "20"), list)
    # --out: joint.csv is a flat table
    _cli_json(csv, "--json", "--joint", "--n-boot", "20", "--out", str(tmp_path / "o"))
    jt = pd.read_csv(tmp_path / "o" / "joint.csv")
    assert len(jt) == 1 and {"cmax_ratio", "cmax_ratio_lo", "tmax_ratio_hi"} <= set(jt.columns)
