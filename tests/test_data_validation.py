"""Every validation error of read_kinetics names the file, the 1-based data row and the column."""

from __future__ import annotations

import pytest

from cartkinetics.data import read_kinetics, read_patients
from cartkinetics.errors import CartKineticsError

HEADER = "patient,infusion,day,value,lloq,assay\n"


def _write(tmp_path, text, name="kin.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(path, **kw):
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(path, **kw)
    return info.value


def _check(exc, path, row, column):
    assert exc.source == str(path)
    assert exc.row == row
    assert exc.column == column
    msg = str(exc)
    assert str(path) in msg
    if row is not None:
        assert f"row {row}" in msg
    assert f"column '{column}'" in msg


def test_missing_required_column(tmp_path):
    p = _write(tmp_path, "patient,infusion,value,lloq,assay\nP1,1,100,50,qpcr\n")
    exc = _error(p)
    _check(exc, p, None, "day")
    assert "missing required column" in str(exc)


def test_missing_required_column_nonmem(tmp_path):
    p = _write(tmp_path, "ID,TIME,EVID,ASSAY\n1,0,0,qpcr\n")
    exc = _error(p)
    _check(exc, p, None, "DV")


def test_missing_assay_column_without_default(tmp_path):
    p = _write(tmp_path, "patient,day,value\nP1,1,100\n")
    exc = _error(p)
    _check(exc, p, None, "assay")
    # the same file is fine once the assay is said
    assert read_kinetics(p, assay="qpcr").summary()["used"] == 1


def test_non_numeric_day(tmp_path):
    p = _write(tmp_path, HEADER + "P1,1,0,100,50,qpcr\nP1,1,1,200,50,qpcr\nP1,1,day7,300,50,qpcr\n")
    exc = _error(p)
    _check(exc, p, 3, "day")
    assert "'day7'" in str(exc)


def test_negative_day(tmp_path):
    p = _write(tmp_path, HEADER + "P1,1,-1,100,50,qpcr\nP1,1,1,200,50,qpcr\n")
    _check(_error(p), p, 1, "day")


def test_column_named_as_written(tmp_path):
    # columns match case-insensitively; the error quotes the file's spelling
    p = _write(tmp_path, "Patient,Infusion,DAY,Value,LLOQ,Assay\nP1,1,x,100,50,qpcr\n")
    _check(_error(p), p, 1, "DAY")


def test_negative_value(tmp_path):
    p = _write(tmp_path, HEADER + "P1,1,1,100,50,qpcr\nP1,1,4,-3,50,qpcr\n")
    _check(_error(p), p, 2, "value")


@pytest.mark.parametrize("bad", ["inf", "-inf", "abc"])
def test_non_finite_or_non_numeric_value(tmp_path, bad):
    p = _write(tmp_path, HEADER + f"P1,1,1,100,50,qpcr\nP1,1,4,{bad},50,qpcr\n")
    _check(_error(p), p, 2, "value")


def test_blank_value_policy(tmp_path):
    import pandas as pd

    from cartkinetics.data import read_kinetics

    df = pd.DataFrame(
        {"patient": ["A", "A"], "day": [1.0, 2.0], "value": [10.0, float("nan")], "assay": "qpcr"}
    )
    # default: excluded, with the reason, and counted
    d = read_kinetics(df)
    row = d.observations.iloc[1]
    assert (row["status"], row["reason"]) == ("excluded", "value missing (missing='exclude')")
    assert d.summary()["reasons"]["excluded"] == {"value missing (missing='exclude')": 1}
    exc = _error(df, missing="error")
    assert exc.source == "<DataFrame>" and exc.row == 2 and exc.column == "value"
    p = _write(tmp_path, HEADER + "P1,1,1,100,50,qpcr\nP1,1,4,,50,qpcr\n")
    _check(_error(p, missing="error"), p, 2, "value")
    # missing="blq": censored at the row's lloq
    e = read_kinetics(p, missing="blq")
    assert e.observations["status"].tolist() == ["used", "censored"]
    assert e.observations["value"].tolist() == [100.0, 50.0]


def test_duplicate_observation(tmp_path):
    text = (
        HEADER + "P1,1,1,100,50,qpcr\nP1,1,4,200,50,qpcr\nP1,2,4,300,50,qpcr\nP1,1,4,250,50,qpcr\n"
    )
    p = _write(tmp_path, text)
    exc = _error(p)
    _check(exc, p, 4, "day")
    assert "row 2" in str(exc)  # names the first occurrence too


def test_same_day_other_assay_is_not_duplicate(tmp_path):
    text = HEADER + "P1,1,4,200,50,qpcr\nP1,1,4,3.5,0.5,flow\n"
    assert read_kinetics(_write(tmp_path, text)).summary()["used"] == 2


def test_unknown_assay(tmp_path):
    p = _write(tmp_path, HEADER + "P1,1,1,100,50,qpcr\nP1,1,4,200,50,elisa\n")
    exc = _error(p)
    _check(exc, p, 2, "assay")
    # a declared assay is accepted
    d = read_kinetics(p, assays={"elisa": "pg/mL"})
    assert set(d.observations["unit"]) == {"copies/ug", "pg/mL"}


@pytest.mark.parametrize("token", ["BLQ", "<LLOQ"])
def test_blq_row_without_limit(tmp_path, token):
    p = _write(tmp_path, f"patient,day,value,assay\nP1,1,100,qpcr\nP1,4,{token},qpcr\n")
    exc = _error(p)
    _check(exc, p, 2, "value")
    assert "BLQ row with no limit" in str(exc)


def test_blq_flag_without_limit(tmp_path):
    p = _write(tmp_path, "patient,day,value,assay,blq\nP1,1,100,qpcr,0\nP1,4,,qpcr,1\n")
    exc = _error(p)
    _check(exc, p, 2, "value")
    assert "BLQ row with no limit" in str(exc)


def test_cens_without_limit_nonmem(tmp_path):
    p = _write(tmp_path, "ID,TIME,DV,CENS,ASSAY\n1,1,100,0,qpcr\n1,4,.,1,qpcr\n")
    exc = _error(p)
    _check(exc, p, 2, "DV")


def test_patient_with_no_observation(tmp_path):
    # P2 has only a day-0 zero ("before expansion"): no observation at all
    text = HEADER + "P1,1,0,0,50,qpcr\nP1,1,4,200,50,qpcr\nP2,1,0,0,50,qpcr\n"
    p = _write(tmp_path, text)
    exc = _error(p)
    _check(exc, p, 3, "patient")
    assert "P2" in str(exc) and "no observation" in str(exc)


def test_patient_with_only_dose_rows_nonmem(tmp_path):
    text = "ID,TIME,DV,MDV,EVID,AMT,ASSAY\n1,0,.,1,1,1e8,qpcr\n1,7,500,0,0,0,qpcr\n2,0,.,1,1,1e8,\n"
    p = _write(tmp_path, text)
    _check(_error(p), p, 3, "ID")


def test_zero_without_limit_after_day_0(tmp_path):
    p = _write(tmp_path, "patient,day,value,assay\nP1,1,100,qpcr\nP1,4,0,qpcr\n")
    _check(_error(p), p, 2, "value")


def test_bad_infusion_number(tmp_path):
    p = _write(tmp_path, HEADER + "P1,1.5,1,100,50,qpcr\n")
    _check(_error(p), p, 1, "infusion")


def test_observation_before_its_dose(tmp_path):
    text = "ID,TIME,DV,EVID,AMT,OCC,ASSAY\n1,100,.,1,1e8,2,qpcr\n1,95,20,0,0,2,qpcr\n"
    p = _write(tmp_path, text)
    _check(_error(p), p, 2, "TIME")


def test_mapping_names_missing_column(tmp_path):
    p = _write(tmp_path, "ID,time,y\n1,0,5\n")
    exc = _error(p, mapping={"DV": "yy"}, assay="qpcr")
    assert exc.column == "yy"


def test_patient_table_errors(tmp_path):
    p = _write(tmp_path, "patient,weight_kg\nP1,70\nP2,60\nP1,71\n", "pat.csv")
    with pytest.raises(CartKineticsError) as info:
        read_patients(p)
    assert info.value.row == 3 and info.value.column == "patient"
    q = _write(tmp_path, "id,weight_kg\nP1,70\n", "pat2.csv")
    with pytest.raises(CartKineticsError) as info:
        read_patients(q)
    assert info.value.column == "patient"


def test_missing_file():
    with pytest.raises(CartKineticsError, match="no such file"):
        read_kinetics("/nonexistent/kinetics.csv")


def test_header_only(tmp_path):
    p = _write(tmp_path, HEADER)
    assert "no data rows" in str(_error(p))
