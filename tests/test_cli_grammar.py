"""One command-line grammar: the same reading options everywhere, the data file positional,
``--out DIR`` a folder, ``--json`` one document on stdout, negative numbers read as values
(and rejected by validation), ``--workers | --scheduler``, progress bars silenced by
``--quiet``, old spellings kept with a warning."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import cartkinetics as ck
from cartkinetics import example
from cartkinetics.cli import build_parser, main
from cartkinetics.commands import _options

ROOT = Path(__file__).resolve().parents[1]
KIN = str(example.kinetics_path())
PAT = str(example.patients_path())
READERS = ("nca", "compare", "fit", "fit-population", "report")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options_of(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings if a.help != argparse.SUPPRESS}


def _positionals(p: argparse.ArgumentParser) -> list[str]:
    return [a.dest for a in p._actions if not a.option_strings and a.dest != "help"]


@pytest.fixture(scope="module")
def nonmem_csv(tmp_path_factory) -> Path:
    """The example in the NONMEM layout without ASSAY/UNIT/LLOQ columns."""
    path = tmp_path_factory.mktemp("nm") / "nm.csv"
    table = ck.write_nonmem(ck.read_kinetics(KIN))
    table.drop(columns=[c for c in ("ASSAY", "UNIT", "LLOQ") if c in table]).to_csv(path,
                                                                                    index=False)
    return path


def _observed_cmax() -> pd.Series:
    """Observed Cmax per series straight from the CSV (largest quantified value)."""
    raw = pd.read_csv(KIN)
    raw = raw[raw["blq"] == 0]
    return raw.groupby(["patient", "infusion"])["value"].max()


# ------------------------------------------------------------------ the parser
def test_every_reading_subcommand_has_the_reading_options_and_a_positional_file():
    subs = _subparsers()
    for name in (*READERS, "endpoints"):
        opts = _options_of(subs[name])
        assert {"--mapping", "--assay", "--lloq"} <= opts, name
    for name in READERS:
        assert _positionals(subs[name])[:1] == ["kinetics"], name
        assert "--patients" in _options_of(subs[name]), name
    assert _positionals(subs["endpoints"]) == ["cohort"]
    # the old spelling of report's data file is accepted but no longer advertised
    assert "--kinetics" not in _options_of(subs["report"])


def test_out_is_a_folder_everywhere():
    for name, p in _subparsers().items():
        for a in p._actions:
            if "--out" in a.option_strings:
                assert a.metavar == "DIR", name


def test_workers_and_scheduler_are_one_choice():
    sim = _subparsers()["simulate"]
    assert {"--workers", "--scheduler"} <= _options_of(sim)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--workers", "2", "--scheduler", "tcp://x:1"])


def test_negative_numbers_are_values():
    p = _options.Parser(prog="t")
    p.add_argument("--x", type=float)
    p.add_argument("--xs")
    p.add_argument("-q", action="store_true")
    assert p.parse_args(["--x", "-1e6"]).x == -1e6
    assert p.parse_args(["--x", "-2.5E-3"]).x == -2.5e-3
    assert p.parse_args(["--x", "-.5"]).x == -0.5
    assert p.parse_args(["--xs", "-1e6,-2e6"]).xs == "-1e6,-2e6"
    assert p.parse_args(["-q"]).q  # options stay options
    with pytest.raises(SystemExit):
        p.parse_args(["--x", "-q"])
    # argparse on its own takes "-1e6" for an option (the bug this parser fixes)
    plain = argparse.ArgumentParser(prog="t", exit_on_error=False)
    plain.add_argument("--x", type=float)
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        plain.parse_args(["--x", "-1e6"])


def test_negative_dose_reaches_validation(capsys):
    assert main(["simulate", "--n", "5", "--dose-per-kg", "-1e6"]) == 2
    err = capsys.readouterr().err
    assert "dose_per_kg must be a positive number" in err
    assert "expected one argument" not in err


def test_negative_lloq_reaches_validation(capsys):
    assert main(["nca", KIN, "--lloq", "-5"]) == 2
    err = capsys.readouterr().err
    assert "lloq must be a positive number" in err


def test_cluster_arguments_are_validated(capsys):
    assert main(["simulate", "--n", "5", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err


# ------------------------------------------------------------------ --out DIR
def test_nca_and_compare_write_into_the_out_folder(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["nca", KIN, "--out", str(out)]) == 0
    assert main(["compare", KIN, "--out", str(out)]) == 0
    nca = pd.read_csv(out / "nca.csv").set_index(["patient", "infusion"])["cmax"]
    obs = _observed_cmax()
    assert nca.loc[obs.index].to_numpy() == pytest.approx(obs.to_numpy())
    pairs = pd.read_csv(out / "pairs.csv")
    raw = pd.read_csv(KIN)
    both = raw.groupby("patient")["infusion"].nunique()
    assert len(pairs) == int((both == 2).sum())


def test_out_refuses_a_file_name(tmp_path, capsys):
    assert main(["nca", KIN, "--out", str(tmp_path / "nca.csv")]) == 2
    assert "--out takes a folder" in capsys.readouterr().err
    assert not (tmp_path / "nca.csv").exists()


# ------------------------------------------------------- NONMEM files everywhere
def test_report_reads_a_nonmem_file_with_assay(tmp_path, nonmem_csv, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(nonmem_csv), "--assay", "qpcr", "--only", "nca",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ASSAY" not in text
    nca = pd.read_csv(out / "nca.csv").set_index(["patient", "infusion"])["cmax"]
    obs = _observed_cmax()
    assert nca.loc[obs.index].to_numpy() == pytest.approx(obs.to_numpy())


def test_report_old_kinetics_option_still_works(tmp_path, capsys):
    assert main(["report", "--kinetics", KIN, "--only", "nca", "--out", str(tmp_path)]) == 0
    assert "--kinetics is deprecated" in capsys.readouterr().err
    assert (tmp_path / "nca.csv").exists()


def test_report_without_a_file_says_so(capsys):
    assert main(["report"]) == 2
    assert "give the kinetics file" in capsys.readouterr().err


def test_endpoints_reads_a_nonmem_kinetics_file(nonmem_csv, capsys):
    assert main(["endpoints", PAT, "--kinetics", str(nonmem_csv), "--assay", "qpcr",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    raw = pd.read_csv(KIN)
    assert doc["kinetics"]["n_pairs"] == int((raw.groupby("patient")["infusion"].nunique()
                                              == 2).sum())


def test_endpoints_old_assay_option_warns(capsys):
    assert main(["endpoints", PAT, "--kinetics", KIN, "--kinetics-assay", "qpcr",
                 "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert "--kinetics-assay is deprecated" in captured.err


# --------------------------------------------------------- --json: one document
def _run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "cartkinetics.cli", *argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv", [
    ("nca", KIN, "--json"),
    ("compare", KIN, "--json"),
    ("endpoints", PAT, "--kinetics", KIN, "--json", "--out", "ep"),
    ("simulate", "--n", "300", "--dose-per-kg", "1e6,3e6", "--seed", "1", "--json",
     "--out", "sim"),
    ("models", "--json"),
])
def test_json_is_exactly_one_document_on_stdout(argv, tmp_path):
    proc = _run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # the whole of stdout parses: nothing else was printed there


@pytest.mark.slow
def test_fit_json_is_one_document(tmp_path):
    proc = _run_cli("fit", KIN, "--n-boot", "20", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 14


# ------------------------------------------------------------- progress, --quiet
def test_step_shows_elapsed_time_after_the_delay(monkeypatch, capsys):
    monkeypatch.setattr(_options, "PROGRESS_DELAY", 0.05)
    monkeypatch.setattr(_options, "_stderr_is_terminal", lambda: True)
    with _options.step("slow step", argparse.Namespace(quiet=False)):
        time.sleep(0.8)
    assert "slow step" in capsys.readouterr().err
    with _options.step("slow step", argparse.Namespace(quiet=True)):
        time.sleep(0.3)
    assert capsys.readouterr().err == ""


def test_step_is_silent_for_a_quick_step(monkeypatch, capsys):
    monkeypatch.setattr(_options, "_stderr_is_terminal", lambda: True)
    with _options.step("quick", argparse.Namespace(quiet=False)):
        pass
    assert capsys.readouterr().err == ""


def test_progress_bar_and_quiet(monkeypatch, capsys):
    monkeypatch.setattr(_options, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(_options, "_stderr_is_terminal", lambda: True)
    assert list(_options.progress(range(3), "items", argparse.Namespace(quiet=False))) == [0, 1, 2]
    assert "items" in capsys.readouterr().err
    assert list(_options.progress(range(3), "items", argparse.Namespace(quiet=True))) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_quiet_is_offered_where_steps_are_long():
    subs = _subparsers()
    for name in ("fit", "fit-population", "simulate", "endpoints", "report", "demo"):
        assert "--quiet" in _options_of(subs[name]), name


def test_simulate_no_progress_is_a_deprecated_quiet(capsys):
    assert main(["simulate", "--n", "50", "--seed", "1", "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert "--no-progress is deprecated" in captured.err


def test_step_log_holds_the_line_while_the_bar_runs(monkeypatch, capsys):
    monkeypatch.setattr(_options, "PROGRESS_DELAY", 0.05)
    monkeypatch.setattr(_options, "_stderr_is_terminal", lambda: True)
    log = _options.StepLog(argparse.Namespace(quiet=False))
    log("[1/2] fits ...", end="", flush=True)
    time.sleep(0.6)
    log(" 0.6 s")
    captured = capsys.readouterr()
    assert captured.out == "[1/2] fits ... 0.6 s\n"
    assert "[1/2] fits" in captured.err
    quiet_log = _options.StepLog(argparse.Namespace(quiet=True))
    quiet_log("[2/2] report ...", end="")
    time.sleep(0.2)
    quiet_log(" 0.2 s")
    captured = capsys.readouterr()
    assert captured.out == "[2/2] report ... 0.2 s\n" and captured.err == ""
