"""Regressions found in review (QA): each test failed before its fix."""

from __future__ import annotations

import pytest

from cartkinetics.data import read_kinetics, read_patients
from cartkinetics.errors import CartKineticsError


def _write(tmp_path, text, name="kin.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_blq_flag_on_a_value_above_its_lloq_is_an_error(tmp_path):
    # blq=1 on a measured 500 with lloq 50 contradicts itself: it used to be censored at 50
    # silently (the 500 discarded); the reader must say which row and column
    p = _write(
        tmp_path,
        "patient,day,value,lloq,blq,assay\nP1,1,500,50,1,qpcr\nP1,2,600,50,0,qpcr\n",
    )
    with pytest.raises(CartKineticsError) as exc:
        read_kinetics(p)
    assert exc.value.row == 1 and exc.value.column == "blq"
    assert "500" in str(exc.value) and "50" in str(exc.value)


def test_blq_flag_with_value_at_or_below_lloq_still_censored(tmp_path):
    p = _write(
        tmp_path,
        "patient,day,value,lloq,blq,assay\nP1,1,50,50,1,qpcr\nP1,2,20,50,1,qpcr\n"
        "P1,3,600,50,0,qpcr\n",
    )
    o = read_kinetics(p).observations
    assert list(o["blq"]) == [True, True, False]
    assert list(o["value"]) == [50.0, 50.0, 600.0]


def test_float_formatted_ids_are_the_same_patient(tmp_path):
    # a NONMEM file written from a float column ("1.0") and a patient table with "1": one
    # patient, as the reader's docstring promises (1, 1.0 and "1" are the same patient)
    p = _write(
        tmp_path,
        "ID,TIME,DV,CENS\n1.0,1,100,0\n1,2,200,0\n2.0,1,50,1\n1.0000E+00,3,300,0\n",
    )
    pat = _write(tmp_path, "patient,weight_kg\n1,60\n2,70\n", name="pat.csv")
    d = read_kinetics(p, assay="qpcr", patients=pat)
    assert sorted(d.observations["patient"].unique()) == ["1", "2"]
    assert d.summary()["patients_without_covariates"] == []
    assert len(d.series()) == 2
    assert list(read_patients(_write(tmp_path, "patient\n3.0\n", name="p3.csv"))["patient"]) == [
        "3"
    ]


def test_text_ids_with_leading_zeros_are_kept(tmp_path):
    p = _write(tmp_path, "patient,day,value,assay\n01,1,5,qpcr\n1,2,6,qpcr\n")
    assert sorted(read_kinetics(p).observations["patient"]) == ["01", "1"]


@pytest.mark.parametrize(
    ("sep", "name"), [("\t", "tab"), (";", "semicolon"), (" ", "whitespace"), ("   ", "whitespace")]
)
def test_non_comma_separated_file_is_read_and_said(tmp_path, sep, name):
    # used to report "missing required column(s) patient, day, value" for a file that has
    # them; then to refuse it: tab-, semicolon- and space-separated files (NONMEM tables) read
    text = sep.join(["ID", "TIME", "DV"]) + "\n" + sep.join(["1", "7", "100"]) + "\n"
    d = read_kinetics(_write(tmp_path, text), assay="qpcr")
    (s,) = d.series()
    assert (s.patient, s.day.tolist(), s.value.tolist()) == ("1", [7.0], [100.0])
    assert any(f"separated by {name}s" in n for n in d.notes)


def test_blank_infusion_cell_is_an_error_in_the_native_layout(tmp_path):
    # a blank used to become infusion 1 silently, merging a second-infusion row into the
    # first series
    p = _write(
        tmp_path,
        "patient,infusion,day,value,assay\nP1,1,7,100,qpcr\nP1,,14,900,qpcr\nP1,2,7,50,qpcr\n",
    )
    with pytest.raises(CartKineticsError) as exc:
        read_kinetics(p)
    assert exc.value.row == 2 and exc.value.column == "infusion"
    # no infusion column at all: every row is the first infusion, as documented
    q = _write(tmp_path, "patient,day,value,assay\nP1,7,100,qpcr\n", name="q.csv")
    assert list(read_kinetics(q).observations["infusion"]) == [1]


def test_concat_refuses_to_merge_alike_numbered_patients(tmp_path):
    # two files numbering their patients 1, 2, ... on different days used to merge two
    # different patients into one series without a word
    from cartkinetics.data import KineticsData

    a = read_kinetics(_write(tmp_path, "ID,TIME,DV\n1,7,100\n1,14,50\n", "a.csv"), assay="qpcr")
    b = read_kinetics(_write(tmp_path, "ID,TIME,DV\n1,5,900\n1,10,80\n", "b.csv"), assay="qpcr")
    with pytest.raises(CartKineticsError) as exc:
        KineticsData.concat([a, b])
    assert "patient_prefix" in str(exc.value) and "b.csv" in str(exc.value)
    merged = KineticsData.concat([a, b], allow_split_series=True)
    assert merged.series()[0].day.tolist() == [5.0, 7.0, 10.0, 14.0]
    # one patient's qPCR and flow from two files: different series, accepted
    f = read_kinetics(_write(tmp_path, "ID,TIME,DV\n1,7,3\n", "f.csv"), assay="flow")
    assert len(KineticsData.concat([a, f]).series()) == 2


def test_several_observation_types_without_an_assay_column_is_an_error(tmp_path):
    # DVID 1 = CAR-T, 2 = tumour burden: both used to be read as the one assay= (merged into
    # one series when their days differ)
    text = (
        "ID,TIME,DV,EVID,CMT,DVID\n1,0,.,1,1,.\n1,7,1000,0,2,1\n1,10,35,0,2,2\n1,14,300,0,2,1\n"
    )
    p = _write(tmp_path, text)
    with pytest.raises(CartKineticsError) as exc:
        read_kinetics(p, assay="qpcr")
    assert exc.value.column == "DVID" and "filter" in str(exc.value)
    # CMT differs between the dose row and the observations only: one observation type
    d = read_kinetics(p, assay="qpcr", filter={"DVID": [1, "."]})
    assert d.series()[0].value.tolist() == [1000.0, 300.0]


def test_two_doses_without_occ_are_two_infusions(tmp_path):
    # a second infusion written without OCC used to be merged into the first (doses summed,
    # days counted from the first dose): a dose 28+ days after an infusion starts the next
    p = _write(
        tmp_path,
        "ID,TIME,DV,MDV,EVID,AMT\n1,0,.,1,1,1e8\n1,7,1000,0,0,0\n1,100,.,1,1,2e8\n"
        "1,107,3000,0,0,0\n",
    )
    d = read_kinetics(p, assay="qpcr")
    assert d.doses == {("1", 1): 1e8, ("1", 2): 2e8}
    assert [(s.infusion, s.day.tolist()) for s in d.series()] == [(1, [7.0]), (2, [7.0])]
    (note,) = [n for n in d.notes if "dose records" in n]
    assert "TIME 0, 100" in note and "2 infusion(s)" in note
    assert "without OCC" in d.describe() and d.summary()["notes"] == d.notes
    # with OCC the two infusions are apart and nothing needs saying
    q = _write(
        tmp_path,
        "ID,TIME,DV,MDV,EVID,AMT,OCC\n1,0,.,1,1,1e8,1\n1,7,1000,0,0,0,1\n1,100,.,1,1,2e8,2\n"
        "1,107,3000,0,0,0,2\n",
        name="q.csv",
    )
    e = read_kinetics(q, assay="qpcr")
    assert not [n for n in e.notes if "dose" in n]
    assert e.doses == {("1", 1): 1e8, ("1", 2): 2e8}
    assert [s.day.tolist() for s in e.series()] == [[7.0], [7.0]]
    # several doses of one OCC are one (split) infusion, summed and said
    r = _write(
        tmp_path,
        "ID,TIME,DV,MDV,EVID,AMT,OCC\n1,0,.,1,1,1e7,1\n1,1,.,1,1,3e7,1\n1,2,.,1,1,6e7,1\n"
        "1,7,1000,0,0,0,1\n",
        name="r.csv",
    )
    f = read_kinetics(r, assay="qpcr")
    assert f.doses == {("1", 1): 1e8} and any("summed" in n for n in f.notes)


def test_mixed_units_within_a_series_are_converted(tmp_path):
    # the series took the first row's unit and mixed copies/ug with copies/ng silently; then
    # it was refused; now copies/ng converts to copies/ug (x1000) and the notes say so
    p = _write(
        tmp_path,
        "patient,day,value,assay,unit\nP1,7,1000,qpcr,copies/ug\nP1,14,2,qpcr,copies/ng\n"
        "P1,21,300,qpcr,copies/ug\n",
    )
    d = read_kinetics(p)
    (s,) = d.series()
    assert s.unit == "copies/ug" and s.value.tolist() == [1000.0, 2000.0, 300.0]
    assert any("copies/ng converted to copies/ug (x1000" in n and "rows 2" in n for n in d.notes)
    assert d.observations["unit_read"].tolist() == ["copies/ug", "copies/ng", "copies/ug"]


