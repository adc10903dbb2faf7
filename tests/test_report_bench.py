"""The benchmark entry point (``python -m benchmarks`` / ``cartkinetics bench``): script
discovery, flags, parsing of results, missing scripts, timeouts; fake scripts stand in for
the real (long) ones."""

from __future__ import annotations

import argparse
import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_main_under_test",
                                                  ROOT / "benchmarks" / "__main__.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "HERE", tmp_path)
    monkeypatch.setattr(mod, "SCRIPTS", {"alpha": "bench_alpha.py", "beta": "bench_beta.py",
                                         "gamma": "bench_gamma.py", "slow": "bench_slow.py"})
    (tmp_path / "bench_alpha.py").write_text(textwrap.dedent("""
        import argparse, sys
        ap = argparse.ArgumentParser()
        ap.add_argument("--quick", action="store_true")
        args = ap.parse_args()
        print("| comparison | ratio | target |")
        print("|---|---:|---:|")
        print(f"| ours vs scipy | {'5.0x' if args.quick else '7.5x'} | >= 2x |")
        print("| not a ratio | 12 | |")
    """))
    (tmp_path / "bench_beta.py").write_text(textwrap.dedent("""
        import argparse, json
        ap = argparse.ArgumentParser()
        ap.add_argument("--json", action="store_true")
        ap.add_argument("--n", type=int, default=30)
        args = ap.parse_args()
        print("some text")
        if args.json:
            print(json.dumps({"rows": [{"measurement": "fit", "value": 0.012, "unit": "s",
                                         "peer": "scipy", "peer_value": 0.3, "ratio": "25x",
                                         "n": args.n}]}))
    """))
    (tmp_path / "bench_slow.py").write_text(
        "import time\nprint('scipy / ours (1 start each): 9.0x')\ntime.sleep(30)\n")
    return mod


def test_flags_and_ratio_rows(bench):
    src = (bench.HERE / "bench_alpha.py").read_text()
    assert bench._flags(src) == {"--quick"}
    res = bench.run_script("alpha", quick=True, timeout=60, want_json=False)
    assert res["status"] == "ok" and "--quick" in res["command"]
    assert res["rows"] == [{"benchmark": "alpha", "measurement": "ours vs scipy",
                            "ratio": "5.0x", "target": ">= 2x"}]


def test_json_rows_and_quick_fallback(bench, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_FALLBACK", {"bench_beta.py": ["--n", "4"]})
    res = bench.run_script("beta", quick=True, timeout=60, want_json=True)
    assert res["status"] == "ok"
    (row,) = res["rows"]
    assert row["ratio"] == "25x" and row["n"] == 4 and row["benchmark"] == "beta"


def test_missing_script_and_timeout(bench):
    assert bench.run_script("gamma", False, None, False)["status"] == "skipped: not present"
    res = bench.run_script("slow", False, 2.0, False)
    assert res["status"] == "timeout after 2 s (partial output)"
    # what the script printed before it was stopped is kept (unbuffered child)
    assert res["rows"] == [{"benchmark": "slow", "measurement": "scipy / ours (1 start each)",
                            "ratio": "9.0x"}]


def test_markdown_table_of_a_run(bench, monkeypatch, capsys):
    monkeypatch.setattr(bench, "SCRIPTS", {"alpha": "bench_alpha.py", "gamma": "bench_gamma.py"})
    args = argparse.Namespace(quick=False, json=False, only="alpha,gamma")
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "| benchmark | measurement | cartkinetics | peer | ratio | target / note |" in out
    assert "| alpha | ours vs scipy |  |  | 7.5x | >= 2x |" in out
    assert "| gamma | bench_gamma.py |" in out and "skipped: not present" in out
    assert "### bench_alpha.py (ok" in out
    args = argparse.Namespace(quick=False, json=True, only="alpha")
    assert bench.run(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"][0]["ratio"] == "7.5x" and doc["scripts"][0]["status"] == "ok"


def test_import_time_measures_laziness(bench):
    seconds, pulled = bench.import_time("cartkinetics", 1)
    assert seconds > 0 and pulled == []
    # the probe sees a heavy module when one is imported
    _, pulled = bench.import_time("cartkinetics.plots, matplotlib.pyplot", 1)
    assert "matplotlib" in pulled


def test_bench_command_finds_the_suite(capsys):
    from cartkinetics.cli import main

    assert main(["bench", "--only", "nothing"]) == 2
    # the message comes from benchmarks/__main__.py, which the command located and ran
    assert "unknown benchmark(s) ['nothing']" in capsys.readouterr().err
