"""The ``cartkinetics simulate`` command."""

import json

import pandas as pd
import pytest

from cartkinetics.cli import main


def test_cli_json_per_scenario(capsys):
    rc = main(["simulate", "--model", "stein2019", "--n", "500", "--dose-per-kg",
               "1e6,3.5e6,5e6", "--seed", "3", "--json", "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [s["scenario"] for s in out] == [
        "dose_per_kg=1e+06", "dose_per_kg=3.5e+06", "dose_per_kg=5e+06"]
    for s in out:
        assert s["n"] == 500
        for k in ("cmax", "tmax", "auc_0_28"):
            assert set(s[k]) == {"median", "p05", "p95"}
            assert s[k]["p05"] < s[k]["median"] < s[k]["p95"]
    # published model: no dose effect, and the user is told so
    assert "no dose covariate" in captured.err


def test_cli_out_dir_partitions_and_second_infusion(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "--n", "300", "--dose-per-kg", "1e6", "--second-infusion-day",
               "none,60", "--seed", "1", "--out", str(out), "--target", "auc_0_28>=1e5",
               "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "second infusion" in text and "p_auc_0_28_ge_100000" in text
    parts = sorted((out / "outcomes").glob("part-*.parquet"))
    assert parts
    frame = pd.read_parquet(out / "outcomes")
    assert len(frame) == 600
    meta = json.loads((out / "summary.json").read_text())
    assert meta["seed"] == 1 and len(meta["summary"]) == 2


def test_cli_bad_input_exit_code(capsys):
    assert main(["simulate", "--n", "0"]) == 2
    assert "n (virtual patients)" in capsys.readouterr().err
    assert main(["simulate", "--model", "nope", "--n", "5"]) == 2
    assert main(["simulate", "--n", "5", "--dose-per-kg=-1e6"]) == 2


def test_cli_population_from_fit_table(tmp_path, capsys):
    f = tmp_path / "fits.csv"
    pd.DataFrame({"patient": ["a", "b", "c"], "status": ["converged"] * 3,
                  "cmax": [1e4, 2e4, 4e4], "tmax": [8.0, 10.0, 12.0]}).to_csv(f, index=False)
    rc = main(["simulate", "--n", "400", "--population", f"fits:{f}", "--seed", "2", "--json",
               "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["n"] == 400
    assert out[0]["cmax"]["p05"] == pytest.approx(1e4) and out[0]["cmax"]["p95"] == pytest.approx(4e4)
