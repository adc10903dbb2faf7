"""Property-based tests of the reader (hypothesis): random valid files round-trip, random
corruptions are refused naming a row and a column, and every input row is accounted for."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartkinetics.data import read_kinetics, write_nonmem
from cartkinetics.errors import CartKineticsError

# derandomize: the same 40 examples on every run, so CI does not go red on a new draw
# (searched with 400 random examples per property before fixing the seed)
SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
UNITS = {"copies/ug": 1.0, "copies/ng": 1e3, "copies/100 ng": 10.0}


@st.composite
def cohorts(draw):
    """A native-layout table of 1-4 patients x 1-2 infusions, levels in mixed qPCR units."""
    rows = []
    for p in range(draw(st.integers(1, 4))):
        for inf in range(1, draw(st.integers(1, 2)) + 1):
            unit = draw(st.sampled_from(sorted(UNITS)))
            days = draw(st.sets(st.integers(1, 400), min_size=1, max_size=8))
            if inf == 2:
                # days since the reinfusion start within its first 4 weeks: a second series
                # whose days all follow the first one's past day 28 is refused as ambiguous
                # (days since the first infusion?), see test_data_real_world
                days = days | {draw(st.integers(1, 27))}
            days = sorted(days)
            for day in days:
                blq = draw(st.booleans())
                level = draw(st.floats(1.0, 1e6, allow_nan=False, allow_infinity=False))
                lloq = 50.0 / UNITS[unit]
                rows.append({
                    "patient": f"P{p + 1}", "infusion": inf, "day": day,
                    "value": "BLQ" if blq else f"{max(level, 2 * lloq):.6g}",
                    "lloq": f"{lloq:.6g}", "assay": "qpcr", "unit": unit,
                })
    frame = pd.DataFrame(rows)
    order = draw(st.permutations(range(len(frame))))
    return frame.iloc[list(order)].reset_index(drop=True)


def _csv(frame: pd.DataFrame, tmp_path, name="kin.csv"):
    p = tmp_path / name
    frame.to_csv(p, index=False)
    return p


@SETTINGS
@given(frame=cohorts())
def test_valid_files_round_trip(tmp_path, frame):
    d = read_kinetics(_csv(frame, tmp_path))
    # every level in copies/ug, equal to the written level times its unit's factor
    o = d.observations.sort_values("source_row")
    factor = frame["unit"].map(UNITS).to_numpy()
    written = pd.to_numeric(frame["value"], errors="coerce").to_numpy()
    blq = frame["value"].eq("BLQ").to_numpy()
    np.testing.assert_allclose(o["value"].to_numpy()[~blq], written[~blq] * factor[~blq],
                               rtol=1e-12)
    np.testing.assert_allclose(o["value"].to_numpy()[blq], 50.0, rtol=1e-5)
    assert (o["unit"] == "copies/ug").all() and (o["blq"].to_numpy() == blq).all()
    # write_nonmem -> read_kinetics gives the same series
    out = tmp_path / "nm.csv"
    write_nonmem(d, out)
    e = read_kinetics(out)
    for a, b in zip(d.series(), e.series(), strict=True):
        assert a.key == b.key and a.unit == b.unit
        np.testing.assert_array_equal(a.day, b.day)
        np.testing.assert_allclose(a.value, b.value, rtol=1e-9)
        np.testing.assert_array_equal(a.blq, b.blq)


CORRUPTIONS = {
    "day": ["-1", "abc", "inf"],
    "value": ["-5", "abc", "inf", "1e999"],
    "infusion": ["0", "1.5", "x", ""],
    "assay": ["pcr", ""],
    "unit": ["cells/uL", "copies/cell"],
    "lloq": ["-2", "abc"],
}


@SETTINGS
@given(frame=cohorts(), data=st.data())
def test_corruptions_name_a_row_and_a_column(tmp_path, frame, data):
    i = data.draw(st.integers(0, len(frame) - 1))
    column = data.draw(st.sampled_from(sorted(CORRUPTIONS)))
    bad = data.draw(st.sampled_from(CORRUPTIONS[column]))
    frame = frame.astype(str)
    if column == "lloq" and frame.loc[i, "value"] != "BLQ":
        frame.loc[i, "value"] = "BLQ"  # a bad lloq matters where the row needs its limit
    frame.loc[i, column] = bad
    with pytest.raises(CartKineticsError) as info:
        read_kinetics(_csv(frame, tmp_path))
    rows = {p.row for p in info.value.problems}
    cols = {p.column for p in info.value.problems}
    assert i + 1 in rows and column in cols


@SETTINGS
@given(frame=cohorts(), data=st.data())
def test_every_row_is_accounted_for(tmp_path, frame, data):
    # add comment lines, blank values and filtered rows: rows in == rows out, by status
    frame = frame.copy()
    k = data.draw(st.integers(0, len(frame) - 1))
    frame.loc[k, "value"] = ""  # blank: excluded with a reason
    text = io.StringIO()
    frame.to_csv(text, index=False)
    lines = text.getvalue().splitlines()
    n_comments = data.draw(st.integers(0, 3))
    for j in range(n_comments):
        lines.insert(1 + j, f"# comment {j}")
    p = tmp_path / "kin.csv"
    p.write_text("\n".join(lines) + "\n")
    try:
        d = read_kinetics(p)
    except CartKineticsError as exc:
        # a patient left with no observation at all is an error, never a silent drop; so is
        # a second series that, its early row blanked, now looks like days since the first
        assert "has no observation" in str(exc) or "continue those of infusion" in str(exc)
        return
    s = d.summary()
    assert s["rows"] == len(frame) + n_comments == s["used"] + s["censored"] + s["excluded"]
    assert sorted(d.observations["source_row"]) == list(range(1, len(frame) + n_comments + 1))
    assert s["reasons"]["excluded"].get("value missing (missing='exclude')") == 1
