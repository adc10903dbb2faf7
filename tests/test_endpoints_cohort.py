"""Cohort table reading and validation: one test per error, each naming row and column."""

from __future__ import annotations

import pandas as pd
import pytest

from cartkinetics.endpoints import cohort_endpoints, read_cohort
from cartkinetics.errors import CartKineticsError


def base_table() -> pd.DataFrame:
    """A valid 4-patient table with every known column."""
    return pd.DataFrame({
        "patient": ["A", "B", "C", "D"],
        "age": [34, 18, 67, 40],
        "sex": ["M", "F", "M", "F"],
        "disease": ["B-ALL", "B-ALL", "T-ALL", "PPCL"],
        "target": ["CD19", "CD19", "CD7", "BCMA"],
        "costim": ["4-1BB"] * 4,
        "dose_per_kg": [3.5, 2.0, 5.0, 3.0],
        "lymphodepletion": ["FC"] * 4,
        "best_response": ["CR", "cri", "PR", "pd"],
        "mrd_negative": ["yes", "yes", "no", ""],
        "response_day": [28, 21, 30, ""],
        "extramedullary_only": [0, 1, 0, 0],
        "pet_cmr": ["", "1", "", ""],
        "crs_grade": [2, "G1", "grade 3", 0],
        "icans_grade": [0, 0, "none", 1],
        "agvhd_grade": [3, 0, 0, 4],
        "os_days": [70, 400, 800, 300],
        "death": [1, 0, 0, 1],
        "efs_days": [70, 400, 500, 120],
        "efs_event": [1, 0, 1, 1],
        "cause_of_death": ["aGVHD", "", "", "relapse"],
    }).astype(object)  # as cells read from a file: any cell may be edited to any value


def expect_error(table: pd.DataFrame, row: int, column: str, match: str) -> CartKineticsError:
    with pytest.raises(CartKineticsError, match=match) as info:
        read_cohort(table)
    err = info.value
    assert err.row == row
    assert err.column == column
    assert err.source == "<DataFrame>"
    assert f"row {row}" in str(err) and column in str(err)
    return err


def test_valid_table_parses_codes_flags_and_grades():
    c = read_cohort(base_table())
    t = c.table
    assert c.n == 4
    assert list(t["best_response"]) == ["CR", "CRi", "PR", "PD"]
    assert list(t["crs_grade"]) == [2, 1, 3, 0]
    assert list(t["icans_grade"]) == [0, 0, 0, 1]
    assert t["mrd_negative"].isna().tolist() == [False, False, False, True]
    assert list(t["death"]) == [True, False, False, True]
    assert list(t["source_row"]) == [1, 2, 3, 4]


def test_unknown_response_code():
    t = base_table()
    t.loc[2, "best_response"] = "VGPR"
    expect_error(t, 3, "best_response", "unknown response code 'VGPR'")


def test_missing_response_asks_for_ne():
    t = base_table()
    t.loc[0, "best_response"] = ""
    expect_error(t, 1, "best_response", "write NE")


def test_unknown_grade_code():
    t = base_table()
    t.loc[1, "crs_grade"] = "mild"
    expect_error(t, 2, "crs_grade", "unknown grade code 'mild'")


def test_fractional_grade():
    t = base_table()
    t["icans_grade"] = [0, 1.5, 0, 0]
    expect_error(t, 2, "icans_grade", "not a whole number")


def test_crs_grade_above_astct_range():
    t = base_table()
    t.loc[3, "crs_grade"] = 6
    expect_error(t, 4, "crs_grade", "grade 6 outside ASTCT consensus grade 0-5")


def test_icans_grade_negative():
    t = base_table()
    t["icans_grade"] = [0, 0, -1, 0]
    expect_error(t, 3, "icans_grade", "outside ASTCT")


def test_agvhd_grade_5_is_outside_0_4_although_valid_for_crs():
    t = base_table()
    t.loc[0, "agvhd_grade"] = 5
    t.loc[0, "crs_grade"] = 5  # grade 5 CRS is valid (death from CRS)
    expect_error(t, 1, "agvhd_grade", "grade 5 outside acute GVHD grade 0-4")


def test_negative_time():
    t = base_table()
    t.loc[1, "os_days"] = -5
    expect_error(t, 2, "os_days", "negative time")


def test_negative_response_day():
    t = base_table()
    t.loc[0, "response_day"] = -1
    expect_error(t, 1, "response_day", "negative time")


def test_event_flag_without_time():
    t = base_table()
    t.loc[3, "os_days"] = ""
    expect_error(t, 4, "os_days", "event flag 'death' is set but the time is missing")


def test_efs_event_flag_without_efs_column():
    t = base_table().drop(columns=["efs_days"])
    expect_error(t, 1, "efs_event", "no 'efs_days' column")


def test_time_without_event_flag():
    t = base_table()
    t.loc[1, "efs_event"] = ""
    expect_error(t, 2, "efs_event", "missing event flag")


def test_efs_longer_than_os():
    t = base_table()
    t.loc[2, "efs_days"] = 900
    expect_error(t, 3, "efs_days", "EFS 900 days is longer than OS 800 days")


def test_death_must_be_an_efs_event():
    t = base_table()
    t.loc[0, "efs_event"] = 0
    expect_error(t, 1, "efs_event", "death is an event-free-survival event")


def test_unknown_flag():
    t = base_table()
    t.loc[2, "mrd_negative"] = "maybe"
    expect_error(t, 3, "mrd_negative", "flag 'maybe' not understood")


def test_missing_grade():
    t = base_table()
    t.loc[2, "agvhd_grade"] = ""
    expect_error(t, 3, "agvhd_grade", "missing grade")


def test_duplicate_patient():
    t = base_table()
    t.loc[3, "patient"] = "A"
    expect_error(t, 4, "patient", "already on row 1")


def test_no_patient_column():
    with pytest.raises(CartKineticsError, match="no 'patient' column"):
        read_cohort(base_table().drop(columns=["patient"]))


def test_response_after_follow_up_end():
    t = base_table()
    t.loc[0, "response_day"] = 100
    expect_error(t, 1, "response_day", "after the end of follow-up")


def test_pet_missing_for_extramedullary_patient():
    t = base_table()
    t.loc[1, "pet_cmr"] = ""
    with pytest.raises(CartKineticsError, match="PET-CT result missing") as info:
        cohort_endpoints(t)
    assert info.value.row == 2 and info.value.column == "pet_cmr"


def test_csv_errors_name_the_file(tmp_path):
    t = base_table()
    t.loc[1, "crs_grade"] = 7
    path = tmp_path / "cohort.csv"
    t.to_csv(path, index=False)
    with pytest.raises(CartKineticsError) as info:
        read_cohort(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value) and "row 2" in str(info.value)


def test_columns_matched_case_insensitively_and_by_mapping(tmp_path):
    t = base_table().rename(
        columns={"patient": "Patient", "best_response": " Best_Response ", "os_days": "OS (days)"}
    )
    c = read_cohort(t, mapping={"os_days": "os (days)"})
    assert c.columns["patient"] == "Patient"
    assert c.columns["best_response"] == " Best_Response "
    assert c.columns["os_days"] == "OS (days)"
    assert "os (days)" not in c.table.columns  # mapped, not kept twice
    assert list(c.table["os_days"]) == [70, 400, 800, 300]


def test_unknown_columns_are_kept_for_subgroups():
    t = base_table()
    t["center"] = ["X", "Y", "X", "Y"]
    c = read_cohort(t)
    assert list(c.table["center"]) == ["X", "Y", "X", "Y"]


def test_absent_optional_columns_omit_endpoints_and_say_so():
    t = base_table()[["patient", "best_response", "crs_grade"]]
    res = cohort_endpoints(t)
    omitted = {o["endpoint"]: o["reason"] for o in res.omitted}
    assert set(omitted) >= {"mrd_negative_cr", "pet_cmr", "os", "efs", "follow_up",
                            "icans", "agvhd", "age", "dose_per_kg"}
    assert "death" in omitted["os"] and "os_days" in omitted["os"]
    d = res.to_dict()
    assert d["os"] is None and d["efs"] is None and d["icans"] is None
    assert d["orr"]["k"] == 3 and d["orr"]["n"] == 4
    assert d["crs"] == {"0": 1, "1": 1, "2": 1, "3": 1, "4": 0, "5": 0}
    assert {o["endpoint"] for o in d["omitted"]} == set(omitted)
    assert "Not reported" in res.summary() and "os (no" in res.summary()
    assert "Omitted endpoints" in res.to_markdown()


def test_flags_read_as_the_kinetics_reader_reads_them():
    # one reading of 0/1 flags: NONMEM-style E-notation and yes/no alike; other numbers refused
    df = pd.DataFrame({"patient": ["P1", "P2", "P3"], "os_days": [100, 200, 300],
                       "death": ["1.0000E+00", "0.0000E+00", "yes"]})
    c = read_cohort(df)
    assert c.table["death"].tolist() == [True, False, True]
    df.loc[1, "death"] = "2"
    with pytest.raises(CartKineticsError, match="flag '2' not understood"):
        read_cohort(df)
