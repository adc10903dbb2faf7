"""Files as labs and NONMEM users really write them: units, comments, doses, lab sheets.

Each test starts from a file a new user met and got a silent wrong number from (issue 16), and
checks the number a pharmacometrician expects -- or a refusal naming row, column and remedy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cartkinetics.data import read_kinetics
from cartkinetics.errors import CartKineticsError
from cartkinetics.units import conversion_factor, lookup


def _write(tmp_path, text, name="kin.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _cmax(data, infusion):
    (s,) = [s for s in data.series() if s.infusion == infusion]
    return float(s.value[~s.blq].max())


# ------------------------------------------------------------------ units across infusions
def test_second_infusion_in_copies_per_ng_is_converted(tmp_path):
    # compare reported a Cmax ratio of 0.2 where the truth is 2.0: infusion 2 was read in
    # copies/ng (10 copies/ng = 10,000 copies/ug) as if it were copies/ug
    text = (
        "patient,infusion,day,value,lloq,assay,unit\n"
        "P1,1,0,100,50,qpcr,copies/ug\nP1,1,10,5000,50,qpcr,copies/ug\n"
        "P1,1,28,800,50,qpcr,copies/ug\n"
        "P1,2,0,0.1,0.05,qpcr,copies/ng\nP1,2,9,10,0.05,qpcr,copies/ng\n"
        "P1,2,28,1.2,0.05,qpcr,copies/ng\n"
    )
    d = read_kinetics(_write(tmp_path, text))
    assert {s.unit for s in d.series()} == {"copies/ug"}
    assert _cmax(d, 2) / _cmax(d, 1) == pytest.approx(2.0, rel=1e-12)
    # the LLOQ converts with the values (0.05 copies/ng = 50 copies/ug)
    second = d.observations[d.observations["infusion"] == 2]
    assert second["lloq"].tolist() == pytest.approx([50.0, 50.0, 50.0])
    assert any("3 level(s) in copies/ng converted to copies/ug (x1000" in n for n in d.notes)


@pytest.mark.parametrize(
    ("unit", "factor"),
    [("copies/µg", 1.0), ("copies/mcg gDNA", 1.0), ("copies/100 ng", 10.0),
     ("Copies/ng DNA", 1e3), ("copies/μg genomic DNA", 1.0)],
)
def test_qpcr_spellings(tmp_path, unit, factor):
    text = f"patient,day,value,lloq,assay,unit\nP1,7,100,5,qpcr,{unit}\n"
    d = read_kinetics(_write(tmp_path, text))
    (s,) = d.series()
    assert s.unit == "copies/ug" and s.value[0] == pytest.approx(100 * factor)


@pytest.mark.parametrize(
    ("unit", "factor"),
    [("cells/µL", 1.0), ("cells/mcL", 1.0), ("cells/mL", 1e-3), ("cells/L", 1e-6),
     ("10^9 cells/L", 1e3), ("x10^9/L", 1e3), ("G/L", 1e3), ("cells/mm3", 1.0)],
)
def test_flow_spellings(tmp_path, unit, factor):
    text = f"patient,day,value,assay,unit\nP1,7,100,flow,{unit}\n"
    (s,) = read_kinetics(_write(tmp_path, text)).series()
    assert s.unit == "cells/uL" and s.value[0] == pytest.approx(100 * factor)


def test_registry_factors_agree_with_pint():
    # an independent implementation of the same arithmetic
    pint = pytest.importorskip("pint")
    ureg = pint.UnitRegistry()
    ureg.define("copies = [copy_count]")
    ureg.define("cells = [cell_count]")
    pint_spelling = {
        "copies/ug": "copies/microgram", "copies/ng": "copies/nanogram",
        "copies/100 ng": "copies/(100*nanogram)", "copies/mg": "copies/milligram",
        "cells/uL": "cells/microliter", "cells/mL": "cells/milliliter",
        "cells/L": "cells/liter", "10^3 cells/uL": "1e3*cells/microliter",
        "10^6 cells/L": "1e6*cells/liter", "10^9 cells/L": "1e9*cells/liter",
        "cells/mm3": "cells/millimeter**3", "copies/uL": "copies/microliter",
        "copies/mL": "copies/milliliter",
    }
    from cartkinetics.units import CANONICAL, known_units

    assert set(pint_spelling) == set(known_units())
    for unit, spelled in pint_spelling.items():
        info = lookup(unit)
        target = ureg.parse_expression(pint_spelling[CANONICAL[info.kind]])
        expected = (ureg.parse_expression(spelled) / target).to("dimensionless").magnitude
        assert conversion_factor(unit, CANONICAL[info.kind]) == pytest.approx(expected, rel=1e-12)


def test_cells_per_volume_under_qpcr_is_refused_naming_rows_and_units(tmp_path):
    # cells/uL values were compared against copies/ug under one assay
    text = (
        "patient,infusion,day,value,assay,unit\n"
        "P1,1,7,5000,qpcr,copies/ug\nP1,1,14,900,qpcr,copies/ug\n"
        "P1,2,7,30,qpcr,cells/uL\nP1,2,14,12,qpcr,cells/uL\n"
    )
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, text))
    msg = str(info.value)
    assert info.value.row == 3 and info.value.column == "unit"
    assert "rows 3-4 are in cells/uL" in msg and "rows 1-2 are in copies/ug" in msg
    assert "flow" in msg


def test_unknown_unit_is_refused(tmp_path):
    text = "patient,day,value,assay,unit\nP1,7,5000,qpcr,copies/cell\n"
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, text))
    assert info.value.column == "unit" and "copies/cell" in str(info.value)


def test_lloq_option_with_and_without_unit(tmp_path):
    mixed = (
        "patient,infusion,day,value,assay,unit\n"
        "P1,1,7,BLQ,qpcr,copies/ug\nP1,1,14,900,qpcr,copies/ug\n"
        "P1,2,7,BLQ,qpcr,copies/ng\nP1,2,14,3,qpcr,copies/ng\n"
    )
    p = _write(tmp_path, mixed)
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(p, lloq=50)
    assert "has no unit" in str(info.value) and "50 copies/ug" in str(info.value)
    d = read_kinetics(p, lloq="50 copies/ug")
    blq = d.observations[d.observations["blq"]]
    assert blq["value"].tolist() == [50.0, 50.0]  # both in copies/ug after conversion
    # one unit in the file: a bare number is in that unit
    one = "patient,day,value,assay,unit\nP1,7,BLQ,qpcr,copies/ng\nP1,14,3,qpcr,copies/ng\n"
    e = read_kinetics(_write(tmp_path, one, "one.csv"), lloq=0.05)
    assert e.observations["value"].tolist() == pytest.approx([50.0, 3000.0])


# ------------------------------------------------------------------ NONMEM conventions
def test_nonmem_comment_column_excludes_the_record(tmp_path):
    # the commented DV of 999999 became Cmax
    text = (
        "C,ID,TIME,DV,MDV,EVID,AMT\n"
        ".,1,0,.,1,1,1e8\n.,1,7,2000,0,0,0\n.,1,14,900,0,0,0\n"
        "C,1,10,999999,0,0,0\n.,1,28,300,0,0,0\n"
    )
    d = read_kinetics(_write(tmp_path, text), assay="qpcr")
    assert _cmax(d, 1) == 2000.0
    o = d.observations
    row = o[o["source_row"] == 4].iloc[0]
    assert row["status"] == "excluded" and row["reason"].startswith("comment record (C column")
    assert d.summary()["rows"] == 5


def test_nonmem_hash_records_banner_and_whitespace(tmp_path):
    # NONMEM $TABLE output: a banner, a header, right-aligned whitespace-separated fields
    text = (
        "TABLE NO.  1\n"
        " ID          TIME        DV          MDV         EVID        AMT\n"
        "  1.0000E+00  0.0000E+00  0.0000E+00  1.0000E+00  1.0000E+00  1.0000E+08\n"
        "  1.0000E+00  7.0000E+00  2.0000E+03  0.0000E+00  0.0000E+00  0.0000E+00\n"
        "# 1.0000E+00  9.0000E+00  9.9999E+05  0.0000E+00  0.0000E+00  0.0000E+00\n"
        "@ dropped by IGNORE=@\n"
        "  1.0000E+00  1.4000E+01  9.0000E+02  0.0000E+00  0.0000E+00  0.0000E+00\n"
    )
    d = read_kinetics(_write(tmp_path, text), assay="qpcr")
    (s,) = d.series()
    assert (s.patient, s.day.tolist(), s.value.tolist()) == ("1", [7.0, 14.0], [2000.0, 900.0])
    reasons = d.observations["reason"].tolist()
    assert sum(r.startswith("comment record (first field") for r in reasons) == 2
    assert len(d.observations) == 5  # every data line accounted for
    assert any("TABLE NO." in n for n in d.notes)
    # a '#'-prefixed header
    e = read_kinetics(_write(tmp_path, "#ID,TIME,DV\n1,7,100\n", "h.csv"), assay="qpcr")
    assert e.series()[0].value.tolist() == [100.0]


def test_two_doses_120_days_apart_without_occ_are_two_infusions(tmp_path):
    # the doses were summed into one infusion and compare printed "0 pairs", exit 0
    rows = ["ID,TIME,DV,MDV,EVID,AMT"]
    for pid, peak1, peak2 in (("1", 5000, 9000), ("2", 3000, 8000)):
        rows += [f"{pid},0,.,1,1,1e8", f"{pid},7,{peak1},0,0,0", f"{pid},28,400,0,0,0",
                 f"{pid},120,.,1,1,2e8", f"{pid},127,{peak2},0,0,0", f"{pid},148,700,0,0,0"]
    d = read_kinetics(_write(tmp_path, "\n".join(rows) + "\n"), assay="qpcr")
    keys = [(s.patient, s.infusion, s.day.tolist()) for s in d.series()]
    assert keys == [("1", 1, [7.0, 28.0]), ("1", 2, [7.0, 28.0]),
                    ("2", 1, [7.0, 28.0]), ("2", 2, [7.0, 28.0])]
    assert d.doses == {("1", 1): 1e8, ("1", 2): 2e8, ("2", 1): 1e8, ("2", 2): 2e8}


def test_split_dose_is_one_infusion_and_ambiguous_gap_is_refused(tmp_path):
    split = ("ID,TIME,DV,EVID,AMT\n1,0,.,1,1e7\n1,1,.,1,3e7\n1,2,.,1,6e7\n1,9,4000,0,0\n")
    d = read_kinetics(_write(tmp_path, split), assay="qpcr")
    assert d.doses == {("1", 1): 1e8} and d.series()[0].day.tolist() == [9.0]
    ambiguous = "ID,TIME,DV,EVID,AMT\n1,0,.,1,1e8\n1,14,.,1,1e8\n1,21,4000,0,0\n"
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, ambiguous, "amb.csv"), assay="qpcr")
    assert "OCC" in str(info.value) and info.value.row == 1 and info.value.column == "AMT"
    # the user states the rule: a dose 14 days later starts a new infusion
    e = read_kinetics(tmp_path / "amb.csv", assay="qpcr", reinfusion_days=14)
    assert [(s.infusion, s.day.tolist()) for s in e.series()] == [(2, [7.0])]


def test_second_occasion_without_dose_record_is_an_error(tmp_path):
    # days of occasion 2 were counted from TIME 0 of occasion 1: Tmax = 100
    text = (
        "ID,TIME,DV,EVID,AMT,OCC\n1,0,.,1,1e8,1\n1,9,4000,0,0,1\n1,28,300,0,0,1\n"
        "1,110,6000,0,0,2\n1,130,500,0,0,2\n"
    )
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, text), assay="qpcr")
    assert info.value.row == 4 and "no dose record" in str(info.value)
    # no dose record at all but TIMEs that continue across occasions: refused too
    cont = "ID,TIME,DV,OCC\n1,9,4000,1\n1,28,300,1\n1,110,6000,2\n1,130,500,2\n"
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, cont, "c.csv"), assay="qpcr")
    assert "time since the first infusion" in str(info.value)


# ------------------------------------------------------------------ lab sheets
def test_excel_workbook(tmp_path):
    pytest.importorskip("openpyxl")
    frame = pd.DataFrame({
        "Patient": ["P1", "P1", "P1"], "Day": [0, 9, 28],
        "Value": ["ND", 20000, 1500], "LLOQ": [50, 50, 50], "Assay": ["qpcr"] * 3,
        "Unit": ["copies/µg"] * 3,
    })
    p = tmp_path / "lab.xlsx"
    with pd.ExcelWriter(p) as w:
        pd.DataFrame({"x": [1]}).to_excel(w, sheet_name="notes", index=False)
        frame.to_excel(w, sheet_name="kinetics", index=False)
    d = read_kinetics(p, sheet="kinetics")
    (s,) = d.series()
    assert s.value.tolist() == [50.0, 20000.0, 1500.0] and s.blq.tolist() == [True, False, False]
    assert d.observations["source_row"].tolist() == [1, 2, 3]


def test_semicolon_file_with_decimal_commas(tmp_path):
    text = "patient;day;value;lloq;assay\nP1;7;1234,5;50;qpcr\nP1;14;<50;50;qpcr\n"
    d = read_kinetics(_write(tmp_path, text))
    assert d.series()[0].value.tolist() == [1234.5, 50.0]
    assert any("decimal comma" in n for n in d.notes)
    tab = "patient\tday\tvalue\tassay\nP1\t7\t1,234\tqpcr\n"
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, tab, "t.csv"))
    assert info.value.row == 1 and info.value.column == "value"


@pytest.mark.parametrize(
    "token", ["BLQ", "BQL", "<LLOQ", "< LLOQ", "ND", "n.d.", "not detected", "Not Detected",
              "below LLOQ"],
)
def test_blq_tokens(tmp_path, token):
    text = f"patient,day,value,lloq,assay\nP1,7,5000,50,qpcr\nP1,90,{token},50,qpcr\n"
    (s,) = read_kinetics(_write(tmp_path, text)).series()
    assert s.blq.tolist() == [False, True] and s.value.tolist() == [5000.0, 50.0]


def test_patient_ids_differing_in_case_or_spaces_are_flagged(tmp_path):
    text = ("patient,day,value,assay\nP01,7,5000,qpcr\np01,14,900,qpcr\nP 01,21,400,qpcr\n"
            "P02,7,100,qpcr\n")
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, text))
    msg = str(info.value)
    assert "'P01'" in msg and "'p01'" in msg and "'P 01'" in msg and info.value.row == 1


def test_many_problems_are_reported_at_once(tmp_path):
    lines = ["patient,day,value,assay"]
    lines += [f"P1,{d},{'abc' if d % 2 else 100 + d},qpcr" for d in range(1, 121)]
    lines.append("P2,-3,100,qpcr")
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, "\n".join(lines) + "\n"))
    exc = info.value
    assert len(exc.problems) == 61
    text = str(exc)
    assert text.count("must be a number") == 50 and "and 11 more" in text
    assert exc.row == 1 and exc.column == "value"
    assert {p.row for p in exc.problems} == set(range(1, 121, 2)) | {121}


def test_singh_like_day0_detectable_then_blq_keeps_rows(tmp_path):
    # infused cells detectable at day 0, BLQ at day 1, the peak at day 10: every row is used
    # or censored (the NCA rule for the BLQ in between lives in the NCA module)
    text = ("patient,day,value,lloq,assay\nP1,0,300,50,qpcr\nP1,1,BLQ,50,qpcr\n"
            "P1,10,20000,50,qpcr\nP1,28,900,50,qpcr\n")
    d = read_kinetics(_write(tmp_path, text))
    assert d.observations["status"].tolist() == ["used", "censored", "used", "used"]


def test_row_numbers_count_blank_lines(tmp_path):
    text = "patient,day,value,assay\nP1,7,100,qpcr\n\nP1,14,abc,qpcr\n"
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, text))
    assert info.value.row == 3  # the third line after the header, as a spreadsheet shows it


def test_cp1252_micro_sign(tmp_path):
    p = tmp_path / "win.csv"
    p.write_bytes("patient,day,value,assay,unit\nP1,7,100,flow,cells/\xb5L\n".encode("latin-1"))
    (s,) = read_kinetics(p).series()
    assert s.unit == "cells/uL" and math.isclose(s.value[0], 100.0)
    assert np.isfinite(s.value).all()


# ------------------------------------------------------------------ units meet a model
def _flow_series(tmp_path):
    text = ("patient,day,value,lloq,assay,unit\nP1,1,0.5,0.2,flow,cells/uL\n"
            "P1,4,8,0.2,flow,cells/uL\nP1,7,90,0.2,flow,cells/uL\nP1,10,60,0.2,flow,cells/uL\n"
            "P1,14,20,0.2,flow,cells/uL\nP1,28,3,0.2,flow,cells/uL\nP1,90,BLQ,0.2,flow,cells/uL\n")
    return read_kinetics(_write(tmp_path, text))


def test_population_prior_in_another_unit_is_refused(tmp_path):
    # fit --assay flow used the Stein 2019 prior (copies/ug) on cells/uL and said "converged"
    # with a curve 24-fold above the data
    import cartkinetics as ck

    (s,) = _flow_series(tmp_path).series()
    with pytest.raises(CartKineticsError) as info:
        ck.fit_series(s, "stein2019", prior="population")
    msg = str(info.value)
    assert "cells/uL" in msg and "copies/ug" in msg and "prior=None" in msg
    # maximum likelihood needs no published value: the fitted peak is on the data's scale;
    # the default (prior="auto") falls back to it and says so
    r = ck.fit_series(s, "stein2019")
    assert r.ok and r.unit == "cells/uL" and 30 < r.outcomes["cmax"] < 300
    assert r.estimator == "ML" and "fitted by maximum likelihood, without the prior" in r.message
    ml = ck.fit_series(s, "stein2019", prior=None)
    assert ml.params == r.params


def test_cli_prior_auto_falls_back_to_ml_and_says_so(tmp_path, capsys):
    from cartkinetics.cli import main

    _flow_series(tmp_path)
    assert main(["fit", str(tmp_path / "kin.csv"), "--model", "stein2019", "--json"]) == 0
    out, err = capsys.readouterr()
    import json

    (rec,) = json.loads(out)
    assert rec["unit"] == "cells/uL" and rec["estimator"] == "ML"
    assert "population prior is in copies/ug" in err


def test_hierarchical_default_prior_in_another_unit_is_refused(tmp_path):
    pytest.importorskip("pymc")
    from cartkinetics.fit.population import fit_population

    data = _flow_series(tmp_path)
    with pytest.raises(CartKineticsError) as info:
        fit_population(data, "stein2019", draws=10, tune=10, chains=1)
    assert "cells/uL" in str(info.value) and "priors={'mu'" in str(info.value)


def test_simulation_from_fits_keeps_the_fits_unit():
    # fitted level parameters are in the data's unit: a population of fits in cells/uL
    # simulates cells/uL (default LLOQ of 50 copies/ug not applied), and mixed units are refused
    from cartkinetics.simulate import simulate
    from cartkinetics.simulate.virtual_patients import FitTablePopulation

    table = pd.DataFrame({
        "patient": ["A", "B"], "infusion": [1, 1], "assay": ["flow", "flow"],
        "unit": ["cells/uL", "cells/µL"], "status": ["ok", "ok"],
        "foldx": [300.0, 500.0], "tmax": [9.0, 11.0], "cmax": [80.0, 120.0],
        "alpha": [0.2, 0.15], "fb": [0.01, 0.02], "beta": [0.003, 0.004],
    })
    pop = FitTablePopulation("stein2019", table=table)
    assert pop.unit == "cells/uL"
    res = simulate("stein2019", n=20, population=pop, seed=1)
    assert res.info["unit"] == "cells/uL"
    # no LLOQ of this unit is known: persistence is not computed, and the notes say so
    assert np.isnan(res.outcomes["persistence"]).all()
    assert any("no LLOQ given" in n for n in res.notes)
    with_copies = simulate("stein2019", n=20, seed=1)  # the model's own unit: 50 copies/ug
    assert with_copies.info["unit"] == "copies/ug"
    assert np.isfinite(with_copies.outcomes["persistence"]).any()
    mixed = table.assign(unit=["cells/uL", "copies/ug"])
    with pytest.raises(CartKineticsError, match="several units"):
        FitTablePopulation("stein2019", table=mixed)


# ------------------------------------------------------------------ new user, round 2
# (issue: infusion-2 days counted from the first infusion that start ON infusion 1's last day)
_D28 = (
    "patient,infusion,day,value,lloq,assay\n"
    "P01,1,0,0,50,qpcr\nP01,1,4,800,50,qpcr\nP01,1,10,20000,50,qpcr\nP01,1,28,900,50,qpcr\n"
    # the day-28 sample is also infusion 2's pre-dose; infusion 2 written as days 28-56
    "P01,2,28,40,50,qpcr\nP01,2,32,3500,50,qpcr\nP01,2,38,120000,50,qpcr\n"
    "P01,2,56,4000,50,qpcr\n"
)


def test_second_infusion_starting_on_day_28_of_the_first_is_refused(tmp_path):
    # nca read this as Tmax 38 d and AUC0-28 = 0 with no note: day 28 escaped "> 28"
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, _D28))
    e = info.value
    assert e.row == 5 and e.column == "day"
    assert "continue those of infusion 1" in str(e) and "subtract the day infusion 2" in str(e)
    assert "day 28 is both the last day of infusion 1 and the first of infusion 2" in str(e)
    # the same series written as days since infusion 2 reads, Tmax 10 days after it
    fixed = _D28.replace("P01,2,28,", "P01,2,0,").replace("P01,2,32,", "P01,2,4,") \
        .replace("P01,2,38,", "P01,2,10,").replace("P01,2,56,", "P01,2,28,")
    d = read_kinetics(_write(tmp_path, fixed, "fixed.csv"))
    (s2,) = [s for s in d.series() if s.infusion == 2]
    assert float(s2.day[np.argmax(s2.value)]) == 10.0


def test_second_infusion_within_four_weeks_is_not_refused(tmp_path):
    # a reinfusion series with a sample before day 28 is read as days since it (the boundary
    # of the rule above is day 28, not earlier)
    text = _D28.replace("P01,2,28,", "P01,2,27,")
    d = read_kinetics(_write(tmp_path, text))
    assert [s.day.tolist() for s in d.series() if s.infusion == 2] == [[27, 32, 38, 56]]


def test_nonmem_occasions_without_doses_continuing_from_day_28_are_refused(tmp_path):
    # OCC 2's TIME = actual + 28 while OCC 1 has samples up to day 90: every occasion-2 TIME
    # lies at/after day 28, so it has no expansion in days since its own infusion
    rows = ["ID,TIME,DV,OCC"]
    rows += [f"1,{t},{v},1" for t, v in ((1, 60), (7, 300), (14, 20000), (28, 4450),
                                         (60, 2527), (90, 1871))]
    rows += [f"1,{t + 28},{v},2" for t, v in ((0, 198), (4, 2186), (10, 80000), (28, 15113),
                                              (90, 7189))]
    text = "\n".join(rows) + "\n"
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, text), assay="qpcr")
    e = info.value
    assert e.row == 7 and e.column == "TIME"
    assert "time since the first infusion" in str(e) and "EVID=1 dose row" in str(e)
    # the remedy the message gives: a dose record per occasion at TIME 0 (TIME already days
    # since each infusion) -- then occasion 2 is read as written
    dosed = "ID,TIME,DV,OCC,EVID,AMT\n1,0,.,1,1,.\n1,0,.,2,1,.\n" + "".join(
        line + ",0,0\n" for line in rows[1:])
    d = read_kinetics(_write(tmp_path, dosed, "dosed.csv"), assay="qpcr")
    (s2,) = [s for s in d.series() if s.infusion == 2]
    assert s2.day.tolist() == [28.0, 32.0, 38.0, 56.0, 118.0]


def test_mdv1_rows_with_a_blq_or_cens_flag_say_so(tmp_path):
    # MDV=1 stays "not an observation", but the BLQ flag was lost without a word
    text = (
        "ID,TIME,DV,MDV,EVID,AMT,OCC,BLQ\n"
        "1,0,.,1,1,2.5E8,1,0\n1,0,50,1,0,0,1,1\n1,1,50,1,0,0,1,1\n1,7,300,0,0,0,1,0\n"
        "1,14,20000,0,0,0,1,0\n1,28,50,0,0,0,1,1\n"
    )
    d = read_kinetics(_write(tmp_path, text), assay="qpcr")
    o = d.observations.set_index("source_row")
    assert o.loc[[2, 3], "status"].tolist() == ["excluded", "excluded"]
    assert o.loc[[2, 3], "reason"].tolist() == [
        "MDV=1 with BLQ flag set (set MDV=0 to use it as censored)"] * 2
    # every row accounted for; the BLQ=1, MDV=0 row stays censored
    assert len(o) == 6 and o.loc[6, "status"] == "censored"
    (note,) = [n for n in d.notes if "MDV=1" in n]
    assert "2 row(s)" in note and "rows 2-3" in note and "Set MDV=0" in note
    assert "MDV=1 with BLQ flag set" in d.describe()
    # MDV=0 on those rows (the remedy) reads them as censored at 50
    fixed = text.replace("1,0,50,1,0,0,1,1", "1,0,50,0,0,0,1,1") \
        .replace("1,1,50,1,0,0,1,1", "1,1,50,0,0,0,1,1")
    (s,) = read_kinetics(_write(tmp_path, fixed, "f.csv"), assay="qpcr").series()
    assert s.blq.tolist() == [True, True, False, False, True]
    # CENS=1 (DV = the LLOQ) on an MDV=1 row: the same
    cens = "ID,TIME,DV,MDV,CENS\n1,1,50,1,1\n1,7,300,0,0\n"
    e = read_kinetics(_write(tmp_path, cens, "c.csv"), assay="qpcr")
    assert e.observations["reason"].iloc[0] == (
        "MDV=1 with CENS=1 (set MDV=0 to use it as censored)")
    assert any("MDV=1 and CENS=1" in n and "rows 1" in n for n in e.notes)


def test_blq_flag_in_e_notation(tmp_path):
    # NONMEM $TABLE output writes every number in E-notation, the BLQ flag too
    text = (
        "TABLE NO.  1\n"
        " ID TIME DV MDV EVID AMT OCC BLQ\n"
        " 1.0000E+00 0.0000E+00 0.0000E+00 1.0000E+00 1.0000E+00 2.5000E+08 1.0000E+00 "
        "0.0000E+00\n"
        " 1.0000E+00 1.0000E+00 5.0000E+01 0.0000E+00 0.0000E+00 0.0000E+00 1.0000E+00 "
        "1.0000E+00\n"
        " 1.0000E+00 7.0000E+00 2.9990E+02 0.0000E+00 0.0000E+00 0.0000E+00 1.0000E+00 "
        "0.0000E+00\n"
    )
    (s,) = read_kinetics(_write(tmp_path, text, "sdtab1"), assay="qpcr").series()
    assert s.day.tolist() == [1.0, 7.0] and s.blq.tolist() == [True, False]
    assert s.value.tolist() == [50.0, 299.9]
    # a number that is not exactly 0 or 1 is still refused, naming the cell
    bad = text.replace("1.0000E+00\n", "5.0000E-01\n", 1)
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, bad, "bad"), assay="qpcr")
    assert info.value.row == 2 and info.value.column == "BLQ"
    # the C (comment) flag written so too
    c = (" C ID TIME DV\n 0.0000E+00 1.0000E+00 7.0000E+00 3.0000E+02\n"
         " 1.0000E+00 1.0000E+00 8.0000E+00 9.9999E+05\n")
    d = read_kinetics(_write(tmp_path, c, "c"), assay="qpcr")
    assert d.observations["status"].tolist() == ["used", "excluded"]


def test_no_infusion_column_is_said(tmp_path):
    # two infusions written as one series (days 0-28, then 56-84 from the first infusion)
    # were read as infusion 1 without a word
    text = ("patient,day,value,lloq,assay\nP01,4,800,50,qpcr\nP01,10,20000,50,qpcr\n"
            "P01,28,900,50,qpcr\nP01,60,3500,50,qpcr\nP01,66,120000,50,qpcr\n")
    d = read_kinetics(_write(tmp_path, text))
    assert {s.infusion for s in d.series()} == {1}
    assert "no 'infusion' column: every row read as infusion 1 (days since that infusion); " \
        "add an infusion column if a patient had several" in d.notes
    assert "no 'infusion' column" in d.describe()
    # a file that has the column (or the NONMEM layout) does not get the note
    with_inf = text.replace("patient,day,", "patient,infusion,day,").replace("P01,", "P01,1,")
    assert not any("infusion' column" in n for n in read_kinetics(
        _write(tmp_path, with_inf, "i.csv")).notes)
    nm = "ID,TIME,DV\n1,4,800\n1,10,20000\n"
    assert not any("infusion' column" in n for n in read_kinetics(
        _write(tmp_path, nm, "nm.csv"), assay="qpcr").notes)


# ------------------------------------------------------------------ preamble above the header
_BODY = ("patient,infusion,day,value,lloq,assay\nP01,1,4,800,50,qpcr\nP01,1,10,20000,50,qpcr\n"
         "P01,1,28,<50,50,qpcr\n")


@pytest.mark.parametrize(
    ("preamble", "header_line", "skipped"),
    [("# Lab export 2026-01-10 transgene qPCR\n", 2, "line 1 '# Lab export"),
     ("# exported by LIMS,v2,2026-01-10\n", 2, "line 1 '# exported by LIMS"),
     ("\n\n# a\n\n# b\n\n", 7, "line 3 '# a'; line 5 '# b'"),
     ("Lab export 2026-01-10\n\n", 3, "line 1 'Lab export 2026-01-10'"),
     ("Study X\nqPCR, sheet 2\n\n", 4, "line 1 'Study X'; line 2 'qPCR, sheet 2'")],
)
def test_preamble_lines_above_the_header_are_skipped_and_said(tmp_path, preamble, header_line,
                                                              skipped):
    # the preamble was read as the header: "row 1: the line has 1 fields but the header has 5"
    d = read_kinetics(_write(tmp_path, preamble + _BODY))
    (s,) = d.series()
    assert s.day.tolist() == [4.0, 10.0, 28.0] and s.blq.tolist() == [False, False, True]
    # rows still count from the line after the header
    assert d.observations["source_row"].tolist() == [1, 2, 3]
    (note,) = [n for n in d.notes if "above the header" in n]
    assert skipped in note and f"the header is line {header_line}" in note


def test_title_line_directly_above_the_header_is_refused_naming_it(tmp_path):
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_write(tmp_path, "Lab export 2026-01-10\n" + _BODY))
    msg = str(info.value)
    assert "line 1 'Lab export 2026-01-10' was read as the header" in msg
    assert "remove the title lines above the header" in msg and info.value.row == 1


def test_nonmem_hash_header_is_still_the_header(tmp_path):
    # '#ID TIME DV' is the header (NONMEM IGNORE=#), also after a '# run' comment line and
    # before a '#' comment record
    for record in ("@ patient nine left out", "# patient 9 left out", "@ 1 2 3"):
        text = f"# run 12\n#ID TIME DV\n{record}\n1 1 50\n1 7 300\n"
        d = read_kinetics(_write(tmp_path, text), assay="qpcr")
        (s,) = d.series()
        assert s.day.tolist() == [1.0, 7.0] and s.value.tolist() == [50.0, 300.0]
        o = d.observations
        assert o["source_row"].tolist() == [1, 2, 3] and o["status"].tolist()[0] == "excluded"
        assert any("line 1 '# run 12'" in n and "header is line 2" in n for n in d.notes)
    # a file whose data are all text under a '#' header keeps it (same number of cells)
    from cartkinetics.tables import read_table
    t = read_table(_write(tmp_path, "#patient,target\nP1,CD19\nP2,BCMA\n", "p.csv"))
    assert list(t.frame.columns) == ["patient", "target"] and t.rows == [1, 2]


def test_comment_records_are_counted_under_the_files_assay(tmp_path):
    # a comment line appeared as a row of its own with no assay in "Rows by assay and status"
    text = ("patient,infusion,day,value,lloq,assay,unit\nP1,1,4,800,50,qpcr,copies/ug\n"
            "# re-run of P1 day 10 pending\nP1,1,10,2,0.05,qpcr,copies/ng\n")
    d = read_kinetics(_write(tmp_path, text))
    o = d.observations
    assert o["source_row"].tolist() == [1, 2, 3]  # every row accounted for
    assert o["reason"].iloc[1].startswith("comment record") and o["status"].iloc[1] == "excluded"
    counts = o.groupby(["assay", "unit", "status"]).size().to_dict()
    assert counts == {("qpcr", "copies/ug", "used"): 2, ("qpcr", "copies/ug", "excluded"): 1}
    assert d.summary()["rows"] == 3 and d.summary()["excluded"] == 1
    # NONMEM C column with assay=: the same
    nm = "C,ID,TIME,DV\n.,1,4,800\nC,1,5,999999\n.,1,10,2000\n"
    e = read_kinetics(_write(tmp_path, nm, "nm.csv"), assay="flow")
    assert set(e.observations["assay"]) == {"flow"} and set(e.observations["unit"]) == {"cells/uL"}
    # two assays: a comment's assay is not known, it stays blank
    two = text + "P1,1,4,30,1,flow,cells/uL\n"
    f = read_kinetics(_write(tmp_path, two, "two.csv"))
    assert f.observations["assay"].tolist() == ["qpcr", "", "qpcr", "flow"]


def test_excel_title_rows_above_the_header_are_skipped_and_said(tmp_path):
    pytest.importorskip("openpyxl")
    p = tmp_path / "lab.xlsx"
    grid = pd.DataFrame([
        ["Lab export 2026-01-10", None, None, None],
        ["transgene qPCR, copies/ug", None, None, None],
        [None, None, None, None],
        ["patient", "day", "value", "lloq"],
        ["P1", 7, 20000, 50],
        ["P1", 28, "ND", 50],
    ])
    grid.to_excel(p, header=False, index=False)
    d = read_kinetics(p, assay="qpcr")
    (s,) = d.series()
    assert s.day.tolist() == [7.0, 28.0] and s.blq.tolist() == [False, True]
    assert d.observations["source_row"].tolist() == [1, 2]
    (note,) = [n for n in d.notes if "title row" in n]
    assert "row 1 'Lab export 2026-01-10'" in note and "header is sheet row 4" in note
