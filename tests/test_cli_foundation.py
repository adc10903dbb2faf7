"""The nca, compare and demo commands, run in-process through cartkinetics.cli.main."""

from __future__ import annotations

import json

from cartkinetics import example
from cartkinetics.cli import main
from cartkinetics.noncompartmental import JSON_KEYS

# every column of the NCA table, units and the BLQ rule included (cartkinetics nca --json)
NCA_KEYS = list(JSON_KEYS)
METRIC_KEYS = {"median_first", "median_second", "ci_low", "ci_high", "p_value", "test"}


def test_nca_json_keys(capsys):
    assert main(["nca", str(example.kinetics_path()), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 14
    assert all(list(r) == NCA_KEYS for r in records)
    assert {r["infusion"] for r in records} == {1, 2}


def test_nca_text_and_csv(capsys, tmp_path):
    out = tmp_path / "nca"  # --out is a folder, as in every subcommand
    assert main(["nca", str(example.kinetics_path()), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "BLQ rule" in text and "P07" in text
    assert (out / "nca.csv").read_text().startswith("patient,infusion,assay,unit,auc_unit,cmax")


def test_compare_json_keys(capsys):
    assert main(["compare", str(example.kinetics_path()), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"n_pairs", "cmax", "tmax", "auc_0_28", "unit", "warning"} <= set(r)
    assert r["unit"] == "copies/ug" and r["warning"] == ""
    assert r["n_pairs"] == 7
    assert METRIC_KEYS | {"ratio_gm"} <= set(r["cmax"])
    assert METRIC_KEYS | {"ratio_gm"} <= set(r["auc_0_28"])
    assert METRIC_KEYS | {"median_difference"} <= set(r["tmax"])
    assert r["tmax"]["p_value"] == 2 / 128


def test_demo_writes_outputs(capsys, tmp_path):
    # the foundation steps only: the whole demo (fits, sampling, simulation) is tested in
    # test_demo_end_to_end.py and took ~90 s here
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--only", "nca,compare"]) == 0
    text = capsys.readouterr().out
    assert "SYNTHETIC" in text and "First vs second infusion" in text
    for name in ("nca.csv", "compare_pairs.csv", "compare.json", "observations.csv"):
        assert (out / name).stat().st_size > 0
    assert (out / "paired_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "compare.json").read_text())["n_pairs"] == 7


def test_bad_file_exit_code_2(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,day,value,assay\nP1,1,100,qpcr\nP1,-4,200,qpcr\n")
    assert main(["nca", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "row 2" in err and "column 'day'" in err and str(bad) in err


def test_mapping_and_assay_options(capsys, tmp_path):
    f = tmp_path / "monolix.csv"
    f.write_text("ID,time,y,y_ID\n1,0,0,1\n1,3,0.2,1\n1,7,150,1\n1,14,40,1\n1,0,700,2\n")
    mapping = '{"columns": {"TIME": "time", "DV": "y"}, "filter": {"y_ID": 1}, "blq_values": {"0.2": 0.2}}'
    assert main(["nca", str(f), "--mapping", mapping, "--assay", "qpcr", "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert (rec["cmax"], rec["tmax"], rec["n_obs"], rec["n_blq"]) == (150.0, 7.0, 3, 1)
    assert main(["nca", str(f), "--mapping", "{oops"]) == 2
