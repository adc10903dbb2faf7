"""The endpoint report: JSON keys, tables, text, figures, kinetics and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cartkinetics.cli import main
from cartkinetics.endpoints import cohort_endpoints, read_cohort
from cartkinetics.endpoints.markdown import markdown_table

RATE_KEYS = {"k", "n", "rate", "ci_low", "ci_high", "method"}
JSON_KEYS = {"n", "orr", "cr", "mrd_negative_cr", "pet_cmr", "os", "efs", "follow_up", "crs",
             "icans", "agvhd", "age", "dose_per_kg", "omitted"}


def study_cohort() -> pd.DataFrame:
    """A 7-patient table shaped like the study (synthetic values, published totals)."""
    return pd.DataFrame({
        "patient": [f"P{i}" for i in range(1, 8)],
        "age": [34, 18, 67, 45, 29, 22, 52],
        "sex": ["M", "F", "M", "F", "M", "F", "M"],
        "disease": ["B-ALL", "B-ALL", "T-ALL", "PPCL", "B-ALL", "B-ALL", "B-ALL"],
        "target": ["CD19", "CD19", "CD7", "BCMA", "CD19", "CD19", "CD19"],
        "costim": ["4-1BB"] * 7,
        "dose_per_kg": [3.5, 2.0, 5.0, 3.5, 3.0, 4.0, 4.5],
        "lymphodepletion": ["FC"] * 7,
        "best_response": ["CR", "CR", "CR", "CR", "CR", "CR", "CRi"],
        "mrd_negative": [1, 1, 1, 0, 1, 1, 1],
        "response_day": [28, 21, 28, 30, 14, 28, 28],
        "extramedullary_only": [0, 1, 1, 0, 1, 0, 0],
        "pet_cmr": [None, 1, 1, None, 1, None, None],
        "crs_grade": [2, 1, 2, 1, 2, 1, 2],
        "icans_grade": [0] * 7,
        "agvhd_grade": [3, 0, 0, 1, 0, 0, 0],
        "os_days": [70, 210, 400, 540, 760, 980, 1290],
        "death": [1, 0, 0, 0, 0, 0, 0],
        "efs_days": [70, 210, 400, 540, 760, 980, 1290],
        "efs_event": [1, 0, 0, 0, 0, 0, 0],
        "cause_of_death": ["refractory aGVHD with infection"] + [None] * 6,
    })


def kinetics_long() -> pd.DataFrame:
    """7 patients x 2 infusions of qPCR: peak day 14 after the first, 11 after the second,
    second peak 3x the first (so the GM ratio is 3 and all 7 pairs move the same way)."""
    days = np.array([1.0, 4, 7, 11, 14, 21, 28, 60, 90])
    rows = []
    for i in range(7):
        for inf, tpk, peak in ((1, 14.0, 1e4 * (i + 1)), (2, 11.0, 3e4 * (i + 1))):
            a = 3.0  # gamma-shaped curve with its maximum exactly at tpk
            vals = peak * (days / tpk) ** a * np.exp(a * (1 - days / tpk))
            for d, v in zip(days, vals, strict=True):
                rows.append({"patient": f"P{i + 1}", "infusion": inf, "day": d, "value": v,
                             "lloq": 1.0, "assay": "qpcr", "unit": "copies/ug"})
    return pd.DataFrame(rows)


def test_json_has_exactly_the_issue_keys_and_is_strict_json():
    res = cohort_endpoints(study_cohort())
    d = res.to_dict()
    assert set(d) == JSON_KEYS
    for key in ("orr", "cr", "mrd_negative_cr", "pet_cmr"):
        assert set(d[key]) == RATE_KEYS
    for key in ("os", "efs"):
        assert set(d[key]) == {"events", "median", "median_ci", "landmarks", "method"}
        assert set(d[key]["landmarks"]) == {"365", "730"}
        assert set(d[key]["landmarks"]["730"]) == {"estimate", "ci_low", "ci_high", "at_risk"}
    assert set(d["follow_up"]) == {"median", "min", "max", "reverse_km_median"}
    assert d["crs"] == {"0": 0, "1": 3, "2": 4, "3": 0, "4": 0, "5": 0}
    assert d["icans"]["0"] == 7 and d["agvhd"] == {"0": 5, "1": 1, "2": 0, "3": 1, "4": 0}
    assert d["age"] == {"median": 34.0, "min": 18.0, "max": 67.0}
    assert d["dose_per_kg"] == {"median": 3.5, "min": 2.0, "max": 5.0}
    assert d["omitted"] == []
    assert (d["mrd_negative_cr"]["k"], d["mrd_negative_cr"]["n"]) == (6, 7)
    assert (d["pet_cmr"]["k"], d["pet_cmr"]["n"]) == (3, 3)
    json.dumps(d, allow_nan=False)


def test_summary_reads_like_the_abstract_with_methods():
    text = cohort_endpoints(study_cohort()).summary()
    for phrase in [
        "7 patients, median age 34 (range 18-67): 5 B-ALL, 1 T-ALL, 1 PPCL",
        "MRD-negative CR/CRi 6/7 (85.7%",
        "Clopper-Pearson",
        "3/3 (100.0%",
        "median follow-up 540 days (range 70-1290",
        "OS: 1 event, median not reached",
        "2-year 85.7% (95% CI 33.4-97.9%)",
        "Kaplan-Meier, log-log",
        "CRS in 7/7 (grade 1 3/7 (42.9%), grade 2 4/7 (57.1%)); no grade >=3",
        "no ICANS",
        "acute GVHD in 2/7",
        "1 death (refractory aGVHD with infection on day 70)",
    ]:
        assert phrase in text, phrase


def test_orr_definition_and_landmarks_are_configurable():
    t = study_cohort()
    t.loc[[1, 2], "best_response"] = ["PR", "SD"]
    t.loc[[1, 2], "mrd_negative"] = 0
    default = cohort_endpoints(t).to_dict()
    assert default["orr"]["k"] == 6 and default["cr"]["k"] == 5
    strict = cohort_endpoints(t, orr=["cr", "CRi"], landmarks=[180, 1000]).to_dict()
    assert strict["orr"]["k"] == 5
    assert set(strict["os"]["landmarks"]) == {"180", "1000"}
    assert strict["os"]["landmarks"]["1000"]["at_risk"] == 1
    with pytest.raises(Exception, match="unknown response"):
        cohort_endpoints(t, orr=["CR", "VGPR"])


def test_markdown_tables_are_paper_style():
    md = cohort_endpoints(study_cohort()).to_markdown()
    assert "**Table 1. Baseline characteristics**" in md
    assert "**Table 2. Efficacy**" in md and "**Table 3. Safety" in md
    assert "| OS at 2 years (day 730), at risk 3 " in md and "33.4-97.9%" in md
    assert "| OS median, days (1 event)" in md
    assert "| Disease" in md and "5 (71.4%)" in md


def test_markdown_formatter_alignment_escape_and_missing():
    df = pd.DataFrame({"name": ["a|b", "c"], "x": [1.5, np.nan], "k": [1, 22]})
    lines = markdown_table(df).splitlines()
    assert lines[0] == "| name |   x |   k |"
    assert lines[1] == "|------|----:|----:|"
    assert lines[2] == "| a\\|b | 1.5 |   1 |"
    assert lines[3] == "| c    |     |  22 |"


def test_kinetics_from_a_kinetics_file_matches_the_construction(tmp_path):
    path = tmp_path / "kinetics.csv"
    kinetics_long().to_csv(path, index=False)
    res = cohort_endpoints(study_cohort(), kinetics=path)
    kin = res.to_dict()["kinetics"]
    assert kin["n_pairs"] == 7 and kin["assay"] == "qpcr" and kin["source"] == "NCA"
    assert kin["tmax"]["median_first"] == 14.0 and kin["tmax"]["median_second"] == 11.0
    assert kin["tmax"]["median_difference"] == -3.0
    # all 7 pairs move the same way: exact two-sided signed-rank p = 2 / 2**7
    assert kin["tmax"]["p_value"] == pytest.approx(2 / 128, rel=1e-12)
    assert kin["cmax"]["ratio_gm"] == pytest.approx(3.0, rel=1e-12)
    assert len(kin["pairs"]) == 7
    text = res.summary()
    assert "Kinetics (second vs first infusion): 7 patients with both infusions" in text
    assert "Tmax median 11 days after the second vs 14 days after the first" in text
    assert "P = 0.0156" in text and "Wilcoxon" in text
    kt = res.kinetics_table()
    assert list(kt["metric"]) == ["cmax", "tmax", "auc_0_28"]
    assert "Table 4. Kinetics" in res.to_markdown()


def test_kinetics_from_a_fitted_outcome_table():
    fits = pd.DataFrame({
        "patient": [f"P{i}" for i in range(1, 8) for _ in (1, 2)],
        "infusion": [1, 2] * 7,
        "cmax": [100.0, 250.0] * 7,
        "tmax": [14.0, 10.0] * 7,
        "auc_0_28": [900.0, 1800.0] * 7,
    })
    kin = cohort_endpoints(study_cohort(), kinetics_table=fits).to_dict()["kinetics"]
    assert kin["source"] == "fitted outcomes table"
    assert kin["cmax"]["ratio_gm"] == pytest.approx(2.5)
    assert kin["auc_0_28"]["ratio_gm"] == pytest.approx(2.0)
    assert kin["tmax"]["median_difference"] == -4.0


def test_plots_return_axes_with_band_and_at_risk():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cartkinetics.endpoints.plots import plot_km, plot_swimmer

    res = cohort_endpoints(study_cohort())
    ax = plot_km(res.os.km, ticks=[0, 365, 730, 1095])
    texts = [t.get_text() for t in ax.texts]
    assert "Number at risk" in texts
    assert ["7", "5", "3", "1"] == [t for t in texts if t.isdigit()]
    assert len(ax.collections) >= 1  # the CI band
    line = ax.lines[0]
    assert line.get_ydata()[-1] == pytest.approx(6 / 7)
    plt.close(ax.figure)
    fig, ax2 = plt.subplots()
    assert plot_swimmer(read_cohort(study_cohort()), ax=ax2) is ax2
    labels = [t.get_text() for t in ax2.get_yticklabels()]
    assert labels == [f"P{i}" for i in range(1, 8)]  # sorted by follow-up
    plt.close(fig)


def test_cli_json_out_and_error(tmp_path, capsys):
    cohort = tmp_path / "cohort.csv"
    study_cohort().to_csv(cohort, index=False)
    assert main(["endpoints", str(cohort), "--json", "--landmarks", "180,365"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == JSON_KEYS and set(d["os"]["landmarks"]) == {"180", "365"}

    kin = tmp_path / "kinetics.csv"
    kinetics_long().to_csv(kin, index=False)
    out = tmp_path / "report"
    assert main(["endpoints", str(cohort), "--kinetics", str(kin), "--out", str(out),
                 "--by", "extramedullary_only"]) == 0
    printed = capsys.readouterr().out
    assert "Response:" in printed and "Table 1" in printed and "log-rank" in printed
    for name in ("baseline.csv", "efficacy.csv", "safety.csv", "km_os.csv", "kinetics.csv",
                 "kinetics_pairs.csv", "subgroups.csv", "endpoints.md", "endpoints.json",
                 "summary.txt"):
        assert (out / name).is_file(), name
    for name in ("km_os.png", "km_efs.png", "swimmer.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "endpoints.json").read_text())
    assert saved["logrank"]["os"]["groups"] == ["no", "yes"]
    assert saved["kinetics"]["n_pairs"] == 7

    bad = study_cohort()
    bad.loc[4, "crs_grade"] = 9
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    assert main(["endpoints", str(bad_path)]) == 2
    err = capsys.readouterr().err
    assert "row 5" in err and "crs_grade" in err and "outside" in err


def test_kinetics_patients_missing_from_cohort_are_noted(tmp_path):
    kin = kinetics_long()
    kin["patient"] = kin["patient"].str.replace("P", "ID")
    res = cohort_endpoints(study_cohort(), kinetics=kin)
    assert res.notes and "7 of 7 patients in the kinetic comparison are not in the cohort" in (
        res.notes[0])
    assert "Note: 7 of 7" in res.summary() and "**Notes.**" in res.to_markdown()
    assert res.to_dict()["notes"] == res.notes
    assert cohort_endpoints(study_cohort(), kinetics=kinetics_long()).notes == []


def test_landmark_beyond_follow_up_is_said_in_the_summary():
    text = cohort_endpoints(study_cohort(), landmarks=[730, 1460]).summary()
    assert "4-year not estimable (follow-up ends on day 1290)" in text


def test_na_spellings_are_missing_values():
    t = study_cohort().astype(object)
    t.loc[0, "pet_cmr"] = "NA"
    t.loc[3, "pet_cmr"] = "n/a"
    t.loc[5, "cause_of_death"] = "."
    res = cohort_endpoints(t)
    assert res.cohort.table["pet_cmr"].isna().sum() == 4
    assert res.to_dict()["pet_cmr"]["n"] == 3


def test_cli_kinetics_table_from_fits(tmp_path, capsys):
    cohort = tmp_path / "cohort.csv"
    study_cohort().to_csv(cohort, index=False)
    fits = tmp_path / "fits.csv"
    pd.DataFrame({
        "patient": [f"P{i}" for i in range(1, 8) for _ in (1, 2)],
        "infusion": [1, 2] * 7,
        "cmax": [100.0, 400.0] * 7,
        "tmax": [14.0, 11.0] * 7,
        "auc_0_28": [900.0, 1800.0] * 7,
    }).to_csv(fits, index=False)
    assert main(["endpoints", str(cohort), "--kinetics-table", str(fits), "--json"]) == 0
    kin = json.loads(capsys.readouterr().out)["kinetics"]
    assert kin["cmax"]["ratio_gm"] == pytest.approx(4.0)
    assert kin["source"] == "fitted outcomes table"
