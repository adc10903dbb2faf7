"""Simulation and endpoint results follow the result conventions: to_frame, to_dict
(JSON-safe), summary, a short repr, _repr_html_, plot(ax=) returning the Axes."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import binomtest  # noqa: E402

from cartkinetics import example, models  # noqa: E402
from cartkinetics.endpoints import cohort_endpoints  # noqa: E402
from cartkinetics.errors import CartKineticsError  # noqa: E402
from cartkinetics.simulate import ModelPopulation, scenario_grid, simulate  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


# ------------------------------------------------------------------ simulation
def test_plot_bands_works_without_keep_curves_and_returns_the_axes():
    res = simulate("stein2019", n=300, scenarios=scenario_grid(dose_per_kg=[1e6, 5e6]), seed=2)
    ax = res.plot_bands()
    assert isinstance(ax, plt.Axes)
    assert len(ax.lines) == 2  # one median per scenario
    _, given = plt.subplots()
    assert res.plot_bands(ax=given) is given
    assert res.plot(ax=given) is given
    assert res.plot_dose_exposure("cmax", ax=given) is given


def test_band_of_identical_patients_is_the_model_curve():
    # no between-patient variability: every kept curve, hence the band, is the typical curve
    m = models.get("stein2019")
    pop = ModelPopulation("stein2019", {"weight": 70}, omega={k: 0.0 for k in m.bsv})
    res = simulate("stein2019", n=30, population=pop, seed=1)
    _, ax = plt.subplots()
    res.plot_bands(ax=ax, log=False)
    t, median = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    expected = m.solve(np.asarray(t)).observed["transgene"]
    np.testing.assert_allclose(median, expected, rtol=1e-9)


def test_no_curves_kept_names_the_option():
    res = simulate("stein2019", n=20, seed=1, keep_curves=0)
    with pytest.raises(CartKineticsError, match="keep_curves"):
        res.plot_bands()
    with pytest.raises(CartKineticsError, match="keep_curves"):
        simulate("stein2019", n=20, seed=1, keep_curves=-1)


def test_simulation_frame_dict_repr():
    doses = [1e6 * (k + 1) for k in range(20)]
    res = simulate("stein2019", n=50, scenarios=scenario_grid(dose_per_kg=doses), seed=3)
    frame = res.to_frame()
    assert len(frame) == 50 * 20 and frame is res.outcomes
    doc = res.to_dict()
    json.dumps(doc, allow_nan=False)  # strict JSON
    assert doc["seed"] == 3 and len(doc["summary"]) == 20
    # the summary's median Cmax is the median of the table's Cmax
    first = frame[frame["scenario"] == res.scenarios[0].name]
    assert doc["summary"][0]["cmax"]["median"] == pytest.approx(float(first["cmax"].median()))
    text = repr(res)
    assert len(text) < 2000 and "stein2019" in text and "(20)" in text
    assert "<table" in res._repr_html_()
    assert isinstance(res.summary(), pd.DataFrame)


# ------------------------------------------------------------------- endpoints
@pytest.fixture(scope="module")
def endpoints():
    return cohort_endpoints(example.patients_path(), kinetics=example.kinetics_path())


def test_endpoint_repr_is_short(endpoints):
    text = repr(endpoints)
    assert text.startswith("EndpointResult(") and len(text) < 2000
    assert "7 patients" in text
    assert "<table" in endpoints._repr_html_()
    json.dumps(endpoints.to_dict(), allow_nan=False)
    assert isinstance(endpoints.summary(), str)


def test_endpoint_frame_rates_match_scipy(endpoints):
    raw = pd.read_csv(example.patients_path())
    codes = raw["best_response"].str.strip().str.upper()
    k = int(codes.isin(["CR", "CRI", "PR"]).sum())
    n = len(raw)
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    frame = endpoints.to_frame()
    orr = frame[(frame["endpoint"] == "orr") & (frame["quantity"] == "rate")].iloc[0]
    assert (orr["k"], orr["n"]) == (k, n)
    assert orr["estimate"] == pytest.approx(k / n)
    assert (orr["ci_low"], orr["ci_high"]) == pytest.approx((ci.low, ci.high))
    # survival rows: one median and one row per landmark for each of OS and EFS
    for name in ("os", "efs"):
        rows = frame[frame["endpoint"] == name]
        assert list(rows["quantity"]) == ["median_days", "survival", "survival"]
        assert list(rows["day"].dropna()) == [365.0, 730.0]


def test_endpoint_plot_takes_and_returns_the_axes(endpoints):
    ax = endpoints.plot()
    assert isinstance(ax, plt.Axes)
    _, given = plt.subplots()
    assert endpoints.plot(ax=given, endpoint="efs") is given
    with pytest.raises(CartKineticsError, match="'os' or 'efs'"):
        endpoints.plot(endpoint="pfs")


def test_endpoint_plot_without_survival_columns():
    raw = pd.read_csv(example.patients_path())
    res = cohort_endpoints(raw.drop(columns=["os_days", "death", "efs_days", "efs_event"]))
    with pytest.raises(CartKineticsError, match="no OS"):
        res.plot(endpoint="os")
