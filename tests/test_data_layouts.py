"""Both layouts, BLQ variants, mappings, the patient table, and the NONMEM round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cartkinetics.data import (
    KineticsData,
    load_mapping,
    read_kinetics,
    write_nonmem,
)
from cartkinetics.errors import CartKineticsError

NATIVE = """patient,infusion,day,value,lloq,assay,unit,blq
P1,1,0,0,50,qpcr,copies/ug,0
P1,1,1,<LLOQ,50,qpcr,copies/ug,0
P1,1,4,BLQ,50,qpcr,copies/ug,0
P1,1,7,<50,,qpcr,copies/ug,0
P1,1,11,50,50,qpcr,copies/ug,1
P1,1,14,12,50,qpcr,copies/ug,0
P1,1,21,5000,50,qpcr,copies/ug,0
P1,1,28,blq,50,qpcr,copies/ug,0
P1,1,60,<loq,40,qpcr,copies/ug,0
P1,2,0,3.5,0.5,flow,cells/uL,0
P1,2,7,120.5,0.5,flow,,0
"""


def _read(tmp_path, text, name="kin.csv", **kw):
    p = tmp_path / name
    p.write_text(text)
    return read_kinetics(p, **kw)


def test_native_blq_variants(tmp_path):
    d = _read(tmp_path, NATIVE)
    o = d.observations.set_index(["infusion", "day"])
    # every variant is left-censored at its limit
    for day, limit, reason in [
        (1, 50, "written as BLQ"),
        (4, 50, "written as BLQ"),
        (7, 50, "written as <limit"),
        (11, 50, "flagged blq"),
        (14, 50, "below lloq"),
        (28, 50, "written as BLQ"),
        (60, 40, "written as BLQ"),
    ]:
        r = o.loc[(1, day)]
        assert r["blq"] and r["status"] == "censored", day
        assert r["value"] == limit and r["lloq"] == limit, day
        assert r["reason"] == reason, day
    assert o.loc[(1, 21), "status"] == "used" and o.loc[(1, 21), "value"] == 5000
    # day-0 zero: before expansion, kept as an excluded row
    assert o.loc[(1, 0), "status"] == "excluded"
    assert "before expansion" in o.loc[(1, 0), "reason"]
    # a non-zero value at day 0 is an observation
    assert o.loc[(2, 0), "status"] == "used"
    # unit: written or the assay's default
    assert o.loc[(2, 7), "unit"] == "cells/uL" and o.loc[(2, 7), "assay"] == "flow"


def test_every_row_accounted_for(tmp_path):
    d = _read(tmp_path, NATIVE)
    s = d.summary()
    assert s["rows"] == 11 == s["used"] + s["censored"] + s["excluded"]
    assert (s["used"], s["censored"], s["excluded"]) == (3, 7, 1)
    assert sorted(d.observations["source_row"]) == list(range(1, 12))
    assert s["reasons"]["censored"]["written as BLQ"] == 4
    assert s["series"] == 2 and s["patients"] == 1


def test_series_view(tmp_path):
    d = _read(tmp_path, NATIVE)
    s = {x.key: x for x in d.series()}
    q = s[("P1", 1, "qpcr")]
    assert list(q.day) == [1, 4, 7, 11, 14, 21, 28, 60]  # day-0 zero excluded
    assert q.n_blq == 7 and q.unit == "copies/ug"
    assert d.series(assay="flow")[0].key == ("P1", 2, "flow")


def test_case_insensitive_and_default_infusion(tmp_path):
    d = _read(tmp_path, "PATIENT,Day,VALUE,Lloq,ASSAY\n7,1,10,50,QPCR\n7,4,400,50,qpcr\n")
    o = d.observations
    assert list(o["infusion"]) == [1, 1]
    assert list(o["patient"]) == ["7", "7"]  # ids are text
    assert list(o["status"]) == ["censored", "used"]
    assert set(o["assay"]) == {"qpcr"}


def test_dataframe_input_and_lloq_keyword():
    df = pd.DataFrame({"patient": [1, 1, 1], "day": [1, 4, 7], "value": [20.0, 300.0, 80.0]})
    d = read_kinetics(df, assay="qpcr", lloq=50)
    o = d.observations
    assert o["source"].iloc[0] == "<DataFrame>"
    assert list(o["blq"]) == [True, False, False]
    assert o["lloq"].tolist() == [50, 50, 50]


NONMEM = """ID,TIME,DV,MDV,EVID,AMT,CENS,LIMIT,OCC
1,0,.,1,1,1.5e8,0,.,1
1,1,20,0,0,0,1,0,1
1,7,3000,0,0,0,0,.,1
1,14,.,1,0,0,0,.,1
1,400,.,1,1,2e8,0,.,2
1,407,9000,0,0,0,0,.,2
1,414,600,0,0,0,0,.,2
2,0,0,0,0,0,0,.,1
2,3,80,0,0,0,0,.,1
"""


def test_nonmem_layout(tmp_path):
    d = _read(tmp_path, NONMEM, assay="qpcr")
    assert d.layout == "nonmem"
    o = d.observations
    assert len(o) == 9
    # dose rows: excluded, give the dose and the time origin of their occasion
    assert d.doses == {("1", 1): 1.5e8, ("1", 2): 2e8}
    assert (o["reason"] == "dose row (EVID=1)").sum() == 2
    second = o[(o["patient"] == "1") & (o["infusion"] == 2) & (o["status"] == "used")]
    assert list(second["day"]) == [7.0, 14.0]  # TIME 407, 414 after the dose at TIME 400
    # CENS=1: DV holds the LLOQ
    cens = o[o["status"] == "censored"].iloc[0]
    assert (cens["day"], cens["value"], cens["lloq"]) == (1.0, 20.0, 20.0)
    assert o[o["reason"].str.startswith("MDV=1")]["day"].tolist() == [14.0]
    assert o[(o["patient"] == "2") & (o["day"] == 0)]["reason"].iloc[0].startswith("day 0")
    series = {s.key: s for s in d.series()}
    assert series[("1", 2, "qpcr")].dose == 2e8
    assert series[("2", 1, "qpcr")].dose is None


def test_nonmem_dv_blq_tokens_and_lloq_column(tmp_path):
    d = _read(
        tmp_path, "ID,TIME,DV,LLOQ,ASSAY\nA,1,<LLOQ,50,qpcr\nA,4,30,50,qpcr\nA,7,900,50,qpcr\n"
    )
    assert d.observations["blq"].tolist() == [True, True, False]


def test_round_trip_nonmem(tmp_path):
    d = _read(tmp_path, NATIVE)
    d.doses[("P1", 1)] = 1.2e8
    out = tmp_path / "nm.csv"
    table = write_nonmem(d, out)
    assert list(table.columns)[:9] == [
        "ID",
        "TIME",
        "DV",
        "MDV",
        "EVID",
        "AMT",
        "CENS",
        "LIMIT",
        "OCC",
    ]
    back = read_kinetics(out)
    assert back.layout == "nonmem"
    cols = ["patient", "infusion", "assay", "unit", "day", "value", "lloq", "blq", "status"]

    def kept(k):
        o = k.observations
        return o[o["status"] != "excluded"][cols].sort_values(cols[:5]).reset_index(drop=True)

    pd.testing.assert_frame_equal(kept(d), kept(back))
    assert back.doses == d.doses
    for a, b in zip(d.series(), back.series(), strict=True):
        assert a.key == b.key
        np.testing.assert_array_equal(a.day, b.day)
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.blq, b.blq)
        np.testing.assert_array_equal(a.lloq, b.lloq)
    # a censored row is written the Monolix way: CENS=1, DV = LLOQ, LIMIT = 0
    cens = table[table["CENS"] == 1].iloc[0]
    assert cens["DV"] == cens["LLOQ"] and cens["LIMIT"] == 0.0


def test_round_trip_example_cohort(tmp_path):
    from cartkinetics import example

    d = example.load()
    back = read_kinetics(write_nonmem(d))
    assert back.summary()["used"] == d.summary()["used"]
    for a, b in zip(d.series(), back.series(), strict=True):
        assert a.key == b.key
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.blq, b.blq)


MONOLIX = """ID,time,y,y_ID
1,0,0,1
1,3,0.2,1
1,7,150,1
1,14,40,1
1,0,700,2
1,30,0.2,2
2,0,0,1
2,5,2.5,1
2,12,0.2,1
"""


def test_mapping_filter_blq_values_prefix(tmp_path):
    d = _read(
        tmp_path,
        MONOLIX,
        mapping={"TIME": "time", "DV": "y"},
        filter={"y_ID": 1},
        blq_values={0.2: 0.2},
        assay="qpcr",
        patient_prefix="CR-",
    )
    assert d.layout == "nonmem"
    o = d.observations
    assert len(o) == 9  # every input row accounted for
    assert set(o["patient"]) == {"CR-1", "CR-2"}
    filtered = o[o["reason"].str.startswith("filtered out")]
    assert filtered["source_row"].tolist() == [5, 6]
    assert filtered["status"].eq("excluded").all()
    cens = o[o["status"] == "censored"]
    assert cens["source_row"].tolist() == [2, 9]
    assert (cens["value"] == 0.2).all() and (cens["reason"] == "blq_values placeholder").all()
    # 2.5 is a value, not BLQ: there is no lloq besides the placeholder
    assert o.loc[o["source_row"] == 8, "status"].item() == "used"


def test_mapping_native_vocabulary_and_json_form(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(MONOLIX)
    a = read_kinetics(
        p,
        mapping={"patient": "ID", "day": "time", "value": "y"},
        filter={"y_ID": [1]},
        blq_values=[0.2],
        assay="qpcr",
    )
    spec = {
        "columns": {"TIME": "time", "DV": "y"},
        "filter": {"y_ID": 1},
        "blq_values": {"0.2": 0.2},
        "assay": "qpcr",
    }
    b = read_kinetics(p, mapping=load_mapping(json.dumps(spec)))
    f = tmp_path / "mapping.json"
    f.write_text(json.dumps(spec))
    c = read_kinetics(p, mapping=load_mapping(f))
    cols = ["patient", "day", "value", "blq", "status"]
    pd.testing.assert_frame_equal(a.observations[cols], b.observations[cols])
    pd.testing.assert_frame_equal(b.observations[cols], c.observations[cols])
    with pytest.raises(CartKineticsError):
        load_mapping("{not json")


def test_blq_string_placeholder(tmp_path):
    d = _read(
        tmp_path, "patient,day,value,assay\nP,1,ND,qpcr\nP,4,300,qpcr\n", blq_values={"ND": 25}
    )
    r = d.observations.iloc[0]
    assert r["blq"] and r["value"] == 25


def test_patient_table_join(tmp_path):
    (tmp_path / "pat.csv").write_text("Patient,Weight_kg,dose_per_kg,target\nP1,70,3.5e6,CD19\n")
    d = _read(tmp_path, NATIVE, patients=tmp_path / "pat.csv")
    assert list(d.patients.columns) == ["patient", "weight_kg", "dose_per_kg", "target"]
    joined = d.join_patients(pd.DataFrame({"patient": ["P1", "P1"], "infusion": [1, 2]}))
    assert joined["weight_kg"].tolist() == [70, 70]
    assert d.summary()["patients_without_covariates"] == []


def test_concat_and_conflicts(tmp_path):
    a = _read(tmp_path, "patient,day,value,assay\n1,1,100,qpcr\n", "a.csv", patient_prefix="A-")
    b = _read(tmp_path, "patient,day,value,assay\n1,1,200,qpcr\n", "b.csv", patient_prefix="B-")
    both = KineticsData.concat([a, b])
    assert both.patient_ids == ["A-1", "B-1"]
    a2 = _read(tmp_path, "patient,day,value,assay\n1,1,100,qpcr\n", "c.csv")
    b2 = _read(tmp_path, "patient,day,value,assay\n1,1,200,qpcr\n", "d.csv")
    with pytest.raises(CartKineticsError, match="more than one data set"):
        KineticsData.concat([a2, b2])


def test_values_stay_exact(tmp_path):
    # text parsing must not round: 123.456789 stays as written
    d = _read(tmp_path, "patient,day,value,assay\nP,1,123.456789,qpcr\n")
    assert d.observations["value"].item() == 123.456789
    assert math.isnan(d.observations["lloq"].item())


def test_full_mapping_form_without_columns(tmp_path):
    p = tmp_path / "k.csv"
    p.write_text("patient,day,value\nA,1,0.2\nA,4,90\nB,1,7\n")
    d = read_kinetics(p, mapping={"filter": {"patient": "A"}, "blq_values": [0.2], "assay": "flow"})
    o = d.observations
    assert o["status"].tolist() == ["censored", "used", "excluded"]
    assert set(o.loc[o["status"] != "excluded", "unit"]) == {"cells/uL"}
    with pytest.raises(CartKineticsError, match="unknown keys"):
        read_kinetics(p, mapping={"filter": {"patient": "A"}, "colums": {}})


def test_nonmem_blq_flag_column(tmp_path):
    p = tmp_path / "k.csv"
    p.write_text("ID,TIME,DV,BLQ,LLOQ,ASSAY\n1,1,0,1,50,qpcr\n1,4,400,0,50,qpcr\n")
    o = read_kinetics(p).observations
    assert o["blq"].tolist() == [True, False] and o["value"].tolist() == [50.0, 400.0]


def test_series_in_natural_patient_order(tmp_path):
    text = "patient,infusion,day,value,assay\n" + "".join(
        f"{p},{i},{d},{100 + d},qpcr\n" for p in ("P10", "P2", "P1") for i in (2, 1) for d in (7, 1)
    )
    s = _read(tmp_path, text).series()
    assert [x.key[:2] for x in s] == [
        ("P1", 1), ("P1", 2), ("P2", 1), ("P2", 2), ("P10", 1), ("P10", 2)
    ]  # fmt: skip
    assert all(list(x.day) == [1.0, 7.0] for x in s)


def test_describe_names_every_reason(tmp_path):
    text = _read(tmp_path, NATIVE).describe()
    assert "11 rows" in text and "3 used, 7 censored (BLQ), 1 excluded" in text
    assert "excluded: 1 x day 0 level 0: before expansion" in text


def test_nonmem_without_evid_amt_marks_doses(tmp_path):
    p = tmp_path / "k.csv"
    p.write_text("ID,TIME,DV,AMT,MDV\n1,0,.,5e7,1\n1,7,800,0,0\n1,14,300,.,0\n")
    d = read_kinetics(p, assay="qpcr")
    assert d.doses == {("1", 1): 5e7}
    assert d.observations["reason"].tolist()[0] == "dose row (EVID=1)"
    assert d.summary()["used"] == 2
