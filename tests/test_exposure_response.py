"""exposure_response end to end: simulated truth, the 7-patient example, draws, CLI."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pandas as pd
import pytest

import cartkinetics as ck
from cartkinetics import example
from cartkinetics.errors import CartKineticsError
from cartkinetics.exposure import exposure_draws, firth_logistic, logistic_over_draws


def _simulated(n: int, b: float, seed: int, hr_b: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cohort with logit P(CRS >= 2) = a + b log2(AUC0-28 / 2^18) and EFS hazard
    proportional to exp(hr_b log2 AUC); a per-patient metrics table in copies/ug."""
    rng = np.random.default_rng(seed)
    l2 = rng.normal(18.0, 1.5, n)
    auc = 2.0 ** l2
    p = 1 / (1 + np.exp(-(-0.3 + b * (l2 - 18.0))))
    crs2 = rng.uniform(size=n) < p
    grade = np.where(crs2, rng.choice([2, 3], n), rng.choice([0, 1], n))
    rate = 1 / 500 * np.exp(hr_b * (l2 - 18.0))
    t_event = rng.exponential(1 / rate)
    t_cens = rng.uniform(200, 1500, n)
    efs = np.minimum(t_event, t_cens)
    cohort = pd.DataFrame({
        "patient": [f"S{i:03d}" for i in range(n)],
        "best_response": np.where(rng.uniform(size=n) < 0.8, "CR", "NR"),
        "crs_grade": grade, "icans_grade": 0,
        "efs_days": np.round(efs, 1), "efs_event": (t_event <= t_cens).astype(int),
    })
    metrics = pd.DataFrame({
        "patient": cohort["patient"], "infusion": 1, "assay": "qpcr", "unit": "copies/ug",
        "cmax": auc / 8.0, "tmax": 11.0, "auc_0_28": auc,
    })
    return cohort, metrics


@pytest.mark.slow
def test_simulated_cohort_recovers_size_with_400_patients():
    b_true, hr_true = 0.8, 0.5
    cohort, metrics = _simulated(400, b_true, seed=20, hr_b=hr_true)
    res = ck.exposure_response(cohort, metrics, metrics=["auc_0_28"], outcomes=["crs_ge2"])
    a = res.binary[0]
    assert a.n == 400 and a.unit == "copies*day/ug"
    for fit in (a.firth, a.ml):
        assert fit.exists
        assert fit.ci_low < b_true < fit.ci_high
        assert fit.ci_high - fit.ci_low < 0.8  # informative at this size
    assert a.note == ""  # no small-sample caveat
    # proportional odds over grades 0-3: same direction, positive
    assert a.ordinal is not None and a.ordinal.exists and a.ordinal.coef > 0
    s = next(s for s in res.survival if s.endpoint == "efs" and s.metric == "auc_0_28")
    assert s.cox.exists and s.cox.ci_low < hr_true < s.cox.ci_high
    assert s.firth_cox.ci_low < hr_true < s.firth_cox.ci_high
    assert s.logrank["p"] < 0.05  # tertiles differ when the hazard rises with exposure


def test_simulated_cohort_recovers_direction_with_60_patients():
    cohort, metrics = _simulated(60, 1.5, seed=4)
    res = ck.exposure_response(cohort, metrics, metrics=["auc_0_28"], outcomes=["crs_ge2"],
                               survival=())
    a = res.binary[0]
    assert a.firth.coef > 0 and a.firth.ratio[0] > 1
    # the quartile proportions rise from the lowest to the highest exposure quartile
    q = a.quartiles["proportion"].to_numpy()
    assert q[-1] > q[0]


def test_example_cohort_says_how_little_it_can_tell():
    res = ck.exposure_response(example.patients_path(), example.kinetics_path())
    assert res.n == 7
    text = res.summary()
    assert "With 7 patients" in text
    frame = res.to_frame()
    est = frame[np.isfinite(frame["ratio"])]
    assert not est.empty
    # every estimate spans at least a 4-fold range of the ratio per doubling
    assert (est["ratio_ci_high"] / est["ratio_ci_low"] > 4).all()
    # no outcome without a contrast gets a number
    resp = frame[frame["outcome"].isin(["response", "icans_ge2"])]
    assert resp["ratio"].isna().all()
    crs = next(a for a in res.binary if a.outcome == "crs_ge2" and a.metric == "auc_0_28")
    assert crs.tests["mann_whitney"]["min_attainable_p"] == pytest.approx(1 / 17.5)  # 2/C(7,3)
    assert "cannot give a p-value below" in crs.note
    # exposure joined with units: infusion 2, copies/ug, AUC in copies/ug x day
    assert set(res.exposure["infusion"]) == {2}
    assert res.metric_units["auc_0_28"] == "copies*day/ug"
    assert res.metric_units["cmax"] == "copies/ug"
    # the landmark is stated; Cmax enters survival only as "Cmax by day 28"
    assert "landmark at day 28" in text
    assert {s.metric for s in res.survival} == {"cmax_by_28", "auc_0_28"}


def test_result_object_api(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = ck.exposure_response(example.patients_path(), example.kinetics_path(),
                               metrics=["auc_0_28"], outcomes=["crs_ge2"], survival=("efs",))
    assert len(repr(res)) < 2000
    d = res.to_dict()
    json.dumps(d, allow_nan=False)  # JSON-safe
    ax = res.plot()
    assert isinstance(ax, matplotlib.axes.Axes)
    ax2 = res.plot(kind="probability", outcome="crs_ge2")
    ax3 = res.plot(kind="km", outcome="efs")
    assert ax2 is not ax3
    fig = plt.figure()
    assert res.figure(fig=fig) is fig
    paths = res.write(tmp_path / "er")
    assert (tmp_path / "er" / "forest.png").is_file() and len(paths) > 5
    plt.close("all")
    html = ck.exposure.html_section(res)
    assert "Exposure-response" in html and "data:image/png;base64" in html


def test_landmark_excludes_early_events_in_the_analysis():
    coh = pd.read_csv(example.patients_path())
    coh.loc[coh["patient"] == "P03", ["efs_days", "os_days"]] = 20  # event before day 28
    coh.loc[coh["patient"] == "P03", "response_day"] = 14
    res = ck.exposure_response(coh, example.kinetics_path(), metrics=["auc_0_28"])
    s = next(s for s in res.survival if s.endpoint == "os")
    assert s.landmark.excluded_event == ["P03"] and s.n == 6 and s.events == 0
    assert "excluded before the landmark: 1 with the event (P03)" in res.summary()
    assert not s.cox.exists  # no event after the landmark


def test_nca_result_object_and_table_inputs_agree():
    table = ck.nca(example.kinetics_path()).to_frame()
    wrapped = types.SimpleNamespace(to_frame=lambda: table)
    a = ck.exposure_response(example.patients_path(), wrapped, metrics=["auc_0_28"],
                             survival=())
    b = ck.exposure_response(example.patients_path(), example.kinetics_path(),
                             metrics=["auc_0_28"], survival=())
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())


def test_refuses_mixed_units_and_unknown_metrics():
    table = ck.nca(example.kinetics_path()).to_frame()
    bad = table.copy()
    bad.loc[bad["patient"] == "P01", "unit"] = "copies/ng"
    with pytest.raises(CartKineticsError, match="different units"):
        ck.exposure_response(example.patients_path(), bad)
    with pytest.raises(CartKineticsError, match="not in the table"):
        ck.exposure_response(example.patients_path(), table, metrics=["auc_0_999"])


def _fake_fit(values: np.ndarray, patients: list[str]):
    """A PopulationFit stand-in: outcome draws (n_draws, n_series) for infusion 1 and 2."""
    keys = [(p, k, "qpcr") for p in patients for k in (1, 2)]
    draws = np.concatenate([values / 10, values], axis=1)  # first infusions then seconds
    order = [i for p in range(len(patients)) for i in (p, p + len(patients))]
    return types.SimpleNamespace(
        info={"names": ["foldx", "tmax", "cmax"], "stein": True},
        theta=None,
        data=types.SimpleNamespace(series_keys=keys, unit="copies/ug"),
        outcome_draws=lambda max_draws=1000: {"auc_0_28": draws[:, order]},
    )


def test_posterior_draws_interface_and_propagation():
    rng = np.random.default_rng(2)
    n, m = 40, 200
    true = 2.0 ** rng.normal(18, 1.5, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(np.log2(true) - 18)))).astype(int)
    pats = [f"Q{i:02d}" for i in range(n)]
    noisy = true[None, :] * np.exp(rng.normal(0, 0.3, (m, n)))
    fit = _fake_fit(noisy, pats)
    d = exposure_draws(fit, "auc_0_28")
    assert d.shape == (n, m) and d.attrs["unit"] == "copies*day/ug"
    np.testing.assert_allclose(d.to_numpy(), noisy.T)  # the last (second) infusion
    d1 = exposure_draws(fit, "auc_0_28", infusion=1)
    np.testing.assert_allclose(d1.to_numpy(), noisy.T / 10)
    outcome = pd.Series(y, index=pats)
    res = logistic_over_draws(d, outcome, name="crs_ge2")
    # with identical draws the spread from the kinetics vanishes and the estimate is Firth's
    same = pd.DataFrame(np.repeat(true[:, None], 5, axis=1), index=pats)
    r0 = logistic_over_draws(same, outcome)
    ref = firth_logistic(np.log2(true), y)
    assert r0.coef_draws == pytest.approx(np.full(5, ref.coef), abs=1e-4)
    assert r0.kinetics_high - r0.kinetics_low < 1e-6
    # kinetic noise widens the kinetics-only interval; the combined interval is wider still
    assert res.kinetics_high - res.kinetics_low > 0.01
    assert res.ci_high - res.ci_low > res.kinetics_high - res.kinetics_low
    # through exposure_response with a cohort
    coh = pd.DataFrame({"patient": pats, "crs_grade": np.where(y == 1, 2, 1)})
    metrics = pd.DataFrame({"patient": pats, "infusion": 2, "assay": "qpcr",
                            "unit": "copies/ug", "auc_0_28": true})
    er = ck.exposure_response(coh, metrics, metrics=["auc_0_28"], survival=(), draws=fit)
    row = er.to_frame().query("analysis == 'draws'")
    assert len(row) == 1 and math.isfinite(row["ratio"].iloc[0])


def test_cli_json_is_one_document(capsys):
    from cartkinetics.cli import main

    rc = main(["exposure-response", str(example.patients_path()), "--kinetics",
               str(example.kinetics_path()), "--metrics", "auc_0_28", "--json"])
    assert rc == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["n"] == 7 and doc["landmark_day"] == 28
    assert doc["metric_units"]["auc_0_28"] == "copies*day/ug"
    rc = main(["exposure-response", str(example.patients_path()), "--kinetics",
               str(example.kinetics_path()), "--metrics", "nope"])
    assert rc == 2


def test_draws_refuse_non_positive_exposure():
    d = pd.DataFrame([[1.0, 2.0], [0.0, 3.0], [4.0, 5.0]], index=["A", "B", "C"])
    with pytest.raises(CartKineticsError, match="B"):
        logistic_over_draws(d, pd.Series([1, 0, 1], index=["A", "B", "C"]))


@pytest.mark.slow
def test_draws_from_a_real_hierarchical_fit():
    """exposure_draws on a short fit_population run of the example: one row per patient,
    the second infusion, Cmax draws = the Stein 2019 parameter; the analysis runs on them."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ck.fit_population(example.kinetics_path(), draws=30, tune=30, chains=1, seed=3,
                                progress=False, warn=False)
    d = ck.exposure_draws(fit, "auc_0_28")
    c = ck.exposure_draws(fit, "cmax")
    assert d.shape[0] == 7 and c.shape[0] == 7 and set(d.attrs["infusion"].values()) == {2}
    names = fit.info["names"]
    s = [i for i, (p, k, _) in enumerate(fit.data.series_keys) if p == "P01" and k == 2][0]
    np.testing.assert_allclose(c.loc["P01"].to_numpy(), fit.theta[:, s, names.index("cmax")])
    res = ck.exposure_response(example.patients_path(), example.kinetics_path(), draws=fit,
                               metrics=["auc_0_28"])
    rows = res.to_frame().query("analysis == 'draws'")
    assert set(rows["outcome"]) >= {"crs_ge2", "efs"}
    assert (rows["ratio_ci_low"] < rows["ratio"]).all() and (rows["ratio"] < rows["ratio_ci_high"]).all()


def test_ids_differing_only_in_case_are_refused_not_dropped():
    # the cohort spells p06 where the kinetics say P06: naming both, never a silent left-out
    cohort = pd.read_csv(example.patients_path())
    cohort.loc[cohort["patient"] == "P06", "patient"] = "p06"
    with pytest.raises(CartKineticsError, match=r"'p06' \(cohort\) vs 'P06' \(kinetics\)"):
        ck.exposure_response(cohort, example.kinetics_path(), survival=())
