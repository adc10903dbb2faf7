"""The bundled (synthetic) example cohort reports like the study abstract (study.md)."""

from __future__ import annotations

import pytest

from cartkinetics import example
from cartkinetics.endpoints import cohort_endpoints


@pytest.fixture(scope="module")
def result():
    return cohort_endpoints(example.patients_path(), kinetics=example.kinetics_path())


def test_example_reproduces_the_published_figures(result):
    d = result.to_dict()
    assert d["n"] == 7
    assert d["age"] == {"median": 34.0, "min": 18.0, "max": 67.0}
    assert d["dose_per_kg"] == {"median": 3.5e6, "min": 2.0e6, "max": 5.0e6}
    # 6/7 (85.7%) MRD-negative CR; all 3 extramedullary-only patients in CMR
    assert (d["mrd_negative_cr"]["k"], d["mrd_negative_cr"]["n"]) == (6, 7)
    assert (d["pet_cmr"]["k"], d["pet_cmr"]["n"]) == (3, 3)
    # CRS grade 1 in 3/7, grade 2 in 4/7, no ICANS, one grade 3 aGVHD
    assert d["crs"] == {"0": 0, "1": 3, "2": 4, "3": 0, "4": 0, "5": 0}
    assert sum(d["icans"].values()) == d["icans"]["0"] == 7
    assert d["agvhd"]["3"] == 1 and sum(d["agvhd"].values()) - d["agvhd"]["0"] == 1
    # median follow-up 540 (70-1290); OS/EFS medians not reached; 2-year 85.7% (33.4-97.9%)
    assert (d["follow_up"]["median"], d["follow_up"]["min"], d["follow_up"]["max"]) == (
        540.0, 70.0, 1290.0)
    for name in ("os", "efs"):
        assert d[name]["median"] is None and d[name]["events"] == 1
        lm = d[name]["landmarks"]["730"]
        assert [round(100 * lm[k], 1) for k in ("estimate", "ci_low", "ci_high")] == [
            85.7, 33.4, 97.9]
    # kinetics: Tmax median 14 -> 11 days, P = 0.02 (exact signed-rank, all 7 earlier)
    kin = d["kinetics"]
    assert kin["n_pairs"] == 7
    assert (kin["tmax"]["median_first"], kin["tmax"]["median_second"]) == (14.0, 11.0)
    assert kin["tmax"]["p_value"] == pytest.approx(2 / 128)
    assert kin["cmax"]["ratio_gm"] > 1 and kin["cmax"]["p_value"] == pytest.approx(2 / 128)


def test_example_summary_reads_like_the_abstract(result):
    text = result.summary()
    for phrase in [
        "7 patients, median age 34 (range 18-67): 5 B-ALL, 1 T-ALL, 1 pPCL.",
        "CAR target: CD19 (n=5), CD7 (n=1), BCMA (n=1).",
        "Median dose 3.5 (range 2.0-5.0) x10^6 CAR-T cells/kg.",
        "MRD-negative CR/CRi 6/7 (85.7%",
        "in extramedullary-only disease 3/3 (100.0%",
        "(Clopper-Pearson exact CIs)",
        "median follow-up 540 days (range 70-1290",
        "OS: 1 event, median not reached",
        "EFS: 1 event, median not reached",
        "2-year 85.7% (95% CI 33.4-97.9%)",
        "(Kaplan-Meier, log-log 95% CIs",
        "CRS in 7/7 (grade 1 3/7 (42.9%), grade 2 4/7 (57.1%)); no grade >=3",
        "no ICANS",
        "acute GVHD in 1/7 (grade 3 1/7 (14.3%))",
        "1 death (refractory acute GVHD with infection on day 70)",
        "Tmax median 11 days after the second vs 14 days after the first",
        "P = 0.0156 (Wilcoxon signed-rank",
    ]:
        assert phrase in text, phrase
    assert "Not reported" not in text
