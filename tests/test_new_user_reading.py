"""Files a new user really has, found by trying the library as one (qa helper).

Each test reproduces a file that was read to a silently wrong or a confusing result before the fix.
"""

from __future__ import annotations

import numpy as np
import pytest

import cartkinetics as ck
from cartkinetics.errors import CartKineticsError

HEADER = "patient,infusion,day,value,lloq,assay\n"
FIRST = "A,1,0,0,50,qpcr\nA,1,7,6000,50,qpcr\nA,1,14,9000,50,qpcr\nA,1,28,900,50,qpcr\n"


def test_native_second_infusion_days_counted_from_the_first_are_refused(tmp_path):
    # infusion 2 given on day 120, its samples written as days since the FIRST infusion:
    # read as they were, Tmax of infusion 2 was 127 days and AUC0-28 a few hundred
    path = tmp_path / "k.csv"
    path.write_text(HEADER + FIRST + "A,2,121,200,50,qpcr\nA,2,127,6000,50,qpcr\n"
                    "A,2,134,3000,50,qpcr\nA,2,148,250,50,qpcr\n")
    with pytest.raises(CartKineticsError) as exc:
        ck.read_kinetics(path)
    msg = str(exc.value)
    assert "k.csv" in msg and "row 5" in msg and "'day'" in msg
    assert "infusion 2" in msg and "days since the first infusion" in msg


def test_native_second_infusion_days_since_it_are_read(tmp_path):
    # the same series with days since the second infusion: read, Tmax 7 days
    path = tmp_path / "k.csv"
    path.write_text(HEADER + FIRST + "A,2,1,200,50,qpcr\nA,2,7,6000,50,qpcr\n"
                    "A,2,14,3000,50,qpcr\nA,2,28,250,50,qpcr\n")
    res = ck.nca(ck.read_kinetics(path)).to_frame().set_index("infusion")
    assert res.loc[2, "tmax"] == 7.0
    # AUC0-28 by hand: 0-1 linear from 0, 1-7 linear up, 7-14 and 14-28 log down
    auc = (200 / 2) + (200 + 6000) / 2 * 6 + (6000 - 3000) / np.log(2) * 7 \
        + (3000 - 250) / np.log(3000 / 250) * 14
    assert res.loc[2, "auc_0_28"] == pytest.approx(auc, rel=1e-12)


def test_native_late_sampled_second_infusion_within_28_days_is_read(tmp_path):
    # a second infusion sampled from day 21 on is not mistaken for continued days
    path = tmp_path / "k.csv"
    path.write_text(HEADER + "A,1,0,0,50,qpcr\nA,1,7,6000,50,qpcr\nA,1,14,900,50,qpcr\n"
                    "A,2,21,200,50,qpcr\nA,2,60,100,50,qpcr\n")
    data = ck.read_kinetics(path)
    assert data.summary()["series"] == 2


def _nonmem_table(rows: list[tuple[float, ...]]) -> str:
    head = " " + "".join(f"{h:>12s}" for h in ("ID", "TIME", "DV", "MDV")) + "\n"
    return "TABLE NO.  1\n" + head + "".join(
        " " + "".join(f"{v:12.4E}" for v in r) + "\n" for r in rows)


def test_nonmem_table_with_repeated_banner_and_header_is_read(tmp_path):
    # NONMEM repeats 'TABLE NO. 1' and the header every 900 records unless $TABLE ONEHEADER;
    # before, the repeated banner was refused as "row 3: the line has 3 fields ..."
    a = [(1, 1, 500, 0), (1, 7, 8000, 0), (1, 14, 4000, 0)]
    b = [(2, 1, 300, 0), (2, 7, 5000, 0), (2, 14, 2500, 0)]
    path = tmp_path / "sdtab1"
    path.write_text(_nonmem_table(a) + _nonmem_table(b))
    data = ck.read_kinetics(path, assay="qpcr")
    s = data.summary()
    assert s["used"] == 6 and s["patients"] == 2
    assert any("repeated NONMEM banner/header" in n and "row(s) 4, 5" in n for n in s["notes"])
    # row numbers still count every line after the first header
    obs = data.observations.set_index(["patient", "day"])
    assert obs.loc[("2", 1.0), "source_row"] == 6
    assert obs.loc[("2", 1.0), "value"] == 300.0


def test_concatenated_csv_with_repeated_header_is_read(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text(HEADER + FIRST + HEADER + "B,1,7,700,50,qpcr\nB,1,14,70,50,qpcr\n")
    s = ck.read_kinetics(path).summary()
    assert s["patients"] == 2 and s["used"] == 5
    assert any("row(s) 5" in n for n in s["notes"])


MIXED_UNITS = (
    "patient,infusion,day,value,lloq,assay,unit\n"
    + "".join(f"{p},1,{d},{v * k},50,qpcr,copies/ug\n{p},2,{d},{v * k * 2 / 1000},0.05,qpcr,"
              "copies/ng\n"
              for p, k in (("P01", 1), ("P02", 2))
              for d, v in ((4, 800), (7, 6000), (10, 20000), (14, 9000), (28, 900)))
)


@pytest.mark.parametrize("command", ["nca", "compare"])
def test_json_commands_say_on_stderr_what_was_converted(tmp_path, capsys, command):
    # a second infusion in copies/ng, the first in copies/ug: with --json the conversion
    # (x1000) was said nowhere; stdout must stay exactly one JSON document
    import json

    from cartkinetics.cli import main

    path = tmp_path / "k.csv"
    path.write_text(MIXED_UNITS)
    assert main([command, str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert "copies/ng converted to copies/ug (x1000" in err and "20 used" in err
    if command == "compare":
        # every patient's second infusion is twice the first once on one scale
        assert doc["cmax"]["ratio_gm"] == pytest.approx(2.0, rel=1e-12)
        assert doc["cmax"]["unit"] == "copies/ug"


def test_nca_table_prints_the_account_once(tmp_path, capsys):
    from cartkinetics.cli import main

    path = tmp_path / "k.csv"
    path.write_text(MIXED_UNITS)
    assert main(["nca", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.count("converted to copies/ug") == 1 and "converted" not in err


def test_patient_id_spellings_name_every_row_written_so(tmp_path):
    # 'P01' is written in rows 1, 2 and 4 (row 1, a day-0 zero, is excluded): the message
    # named rows 2, 4 only
    path = tmp_path / "k.csv"
    path.write_text(HEADER + "P01,1,0,0,50,qpcr\nP01,1,7,6000,50,qpcr\np01,1,14,9000,50,qpcr\n"
                    "P01,1,28,900,50,qpcr\n")
    with pytest.raises(CartKineticsError) as exc:
        ck.read_kinetics(path)
    msg = str(exc.value)
    assert "'P01' (rows 1-2, 4)" in msg and "'p01' (row 3)" in msg and "row 1," in msg
