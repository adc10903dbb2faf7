"""compare_infusions: any NCA column, units checked, 0 pairs loud, the Comparison object."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cartkinetics.cli import main
from cartkinetics.compare import Comparison, compare_infusions, metric_kind, metric_unit
from cartkinetics.data import Series
from cartkinetics.errors import CartKineticsError
from cartkinetics.noncompartmental import nca


def _table(unit1="copies/ug", unit2="copies/ug"):
    rows = []
    for i, (c1, c2, h1, h2) in enumerate([(1e3, 3e3, 20.0, 30.0), (2e3, 2.5e3, 15.0, 45.0),
                                           (5e2, 4e3, 40.0, 35.0)]):
        rows.append(dict(patient=f"P{i}", infusion=1, unit=unit1, cmax=c1, tmax=14.0,
                         auc_0_84=10 * c1, half_life=h1, tlast=90.0))
        rows.append(dict(patient=f"P{i}", infusion=2, unit=unit2, cmax=c2, tmax=11.0 - i,
                         auc_0_84=12 * c2, half_life=h2, tlast=60.0 + 30 * i))
    return pd.DataFrame(rows)


def test_the_rule_lives_in_one_place():
    assert [metric_kind(m) for m in ("cmax", "auc_0_28", "auc_0_84", "auc_0_last",
                                     "half_life", "doubling_time", "lambda_z", "c_day28")] \
        == ["ratio"] * 8
    assert [metric_kind(m) for m in ("tmax", "tlast", "persistence")] == ["difference"] * 3
    with pytest.raises(CartKineticsError, match="cannot compare 'n_blq'"):
        metric_kind("n_blq")
    assert metric_unit("auc_0_84", "cells/uL") == "cells*day/uL"
    assert metric_unit("half_life", "cells/uL") == "day"
    assert metric_unit("lambda_z", "copies/ug") == "1/day"


def test_any_metric_by_its_rule():
    t = _table()
    r = compare_infusions(t, metrics=("cmax", "auc_0_84", "half_life", "tmax", "tlast"))
    assert r.n_pairs == 3
    hl = np.array([30 / 20, 45 / 15, 35 / 40])
    assert r.metrics["half_life"]["ratio_gm"] == pytest.approx(stats.gmean(hl), rel=1e-12)
    assert r.metrics["half_life"]["unit"] == "day"
    assert r.metrics["auc_0_84"]["ratio_gm"] == pytest.approx(
        1.2 * stats.gmean([3.0, 1.25, 8.0]), rel=1e-12)
    assert r.metrics["auc_0_84"]["unit"] == "copies*day/ug"
    assert r.metrics["tlast"]["median_difference"] == 0.0  # -30, 0, +30
    assert r.metrics["tmax"]["median_difference"] == -4.0  # -3, -4, -5
    assert list(r.pairs["tlast_difference"]) == [-30.0, 0.0, 30.0]
    f = r.to_frame()
    assert list(f["metric"]) == ["cmax", "auc_0_84", "half_life", "tmax", "tlast"]
    assert list(f["kind"]) == ["ratio"] * 3 + ["difference"] * 2


def test_units_differing_between_infusions_are_refused():
    # copies/ng against copies/ug: the former code gave a Cmax ratio of 0.2 for a truth of 2
    t = _table()
    t.loc[(t["patient"] == "P1") & (t["infusion"] == 2), "unit"] = "copies/ng"
    with pytest.raises(CartKineticsError) as e:
        compare_infusions(t, metrics=("cmax", "auc_0_84"))
    msg = str(e.value)
    assert "patient P1" in msg and "copies/ug" in msg and "copies/ng" in msg
    assert "Convert" in msg
    # time metrics alone do not depend on the level unit
    assert compare_infusions(t, metrics=("tmax",)).n_pairs == 3


def test_units_differing_across_patients_are_refused():
    t = _table()
    t.loc[t["patient"] == "P2", "unit"] = "cells/uL"
    with pytest.raises(CartKineticsError, match="different units") as e:
        compare_infusions(t, metrics=("cmax", "tmax"))
    assert "cells/uL: P2" in str(e.value) and "copies/ug: P0, P1" in str(e.value)


def test_nca_series_in_different_units_are_refused_end_to_end():
    def s(inf, unit, scale):
        d = np.array([0.0, 7, 14, 28])
        v = np.array([0.0, 1e3, 4e3, 5e2]) * scale
        return Series("A", inf, "qpcr", unit, d, v, np.full(4, 1.0), np.array([1, 0, 0, 0], bool))

    res = nca([s(1, "copies/ug", 1.0), s(2, "copies/ng", 2e-3)])
    with pytest.raises(CartKineticsError, match="patient A"):
        compare_infusions(res)  # cmax, tmax, auc_0_28


def test_result_object_and_json(tmp_path):
    from matplotlib.figure import Figure

    import cartkinetics as ck

    r = ck.compare_infusions(_table(), metrics=("cmax", "tmax", "half_life"))
    assert isinstance(r, Comparison) and r.basis == "table" and r.unit == "copies/ug"
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["cmax"]["unit"] == "copies/ug" and d["tmax"]["kind"] == "difference"
    assert len(repr(r)) < 2000 and "3 pairs" in repr(r)
    assert "<table" in r._repr_html_()
    assert "half_life" in r.summary() and "copies/ug" in r.summary()
    ax = Figure().subplots()
    assert r.plot(ax=ax, metric="half_life", title="t") is ax and ax.get_yscale() == "log"
    assert ax.get_title() == "t"
    assert "day" in ax.get_ylabel()
    # the former dict interface still answers
    assert r["n_pairs"] == 3 and r["cmax"] is r.metrics["cmax"] and "pairs" in set(r)
    r["basis"] = "model"
    assert r.basis == "model"


def _csv(tmp_path, second_infusion=2):
    rows = ["patient,infusion,day,value,lloq,assay"]
    for p, (c1, c2) in {"P1": (1e3, 3e3), "P2": (2e3, 5e3)}.items():
        for inf, c in ((1, c1), (second_infusion, c2)):
            for d in (1, 7, 14, 28):
                rows.append(f"{p},{inf},{d},{c / (1 + abs(d - 7)):.6g},1,qpcr")
    path = tmp_path / "k.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cli_compare_with_no_pairs_exits_1_and_says_so(tmp_path, capsys):
    path = _csv(tmp_path, second_infusion=3)  # infusions 1 and 3: no 1-2 pair
    code = main(["compare", str(path), "--json"])
    assert code == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)  # still one JSON document on stdout
    assert doc["n_pairs"] == 0 and doc["warning"].startswith("NO PAIRS")
    assert "NO PAIRS" in err
    assert main(["compare", str(path)]) == 1
    assert "WARNING: NO PAIRS" in capsys.readouterr().out


def test_cli_compare_metrics_option(tmp_path, capsys):
    path = _csv(tmp_path)
    assert main(["compare", str(path), "--json", "--metrics", "cmax,half_life,tlast"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"cmax", "half_life", "tlast"} <= set(doc) and doc["n_pairs"] == 2
    assert doc["cmax"]["unit"] == "copies/ug" and doc["unit"] == "copies/ug"
    assert main(["compare", str(path), "--metrics", "n_obs"]) == 2
    assert "cannot compare 'n_obs'" in capsys.readouterr().err
