"""Liu 2022 from the command line: the data files, the settings' one place, and the
``--free``/``--fix NAME=COLUMN``/``--centred``/``--priors`` options of fit-population."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from cartkinetics import models
from cartkinetics.commands.fit_population import _fixed_and_centred
from cartkinetics.errors import CartKineticsError
from cartkinetics.validate import liu2022 as L


def _args(**kw):
    base = {"model": "liu2022", "fix": None, "free": None, "centred": None}
    return argparse.Namespace(**{**base, **kw})


def test_free_fixes_the_others_at_the_published_values():
    fixed, centred = _fixed_and_centred(_args(free="rTA0,lTA0", fix="nB0=nB0,lTN=0.01",
                                              centred="rTA0"))
    # the authors' example values (Simulation_CR_PR_NR.m), written out here
    published = {"rBp": 0.069, "nMB": 2939.1, "eBp": 22.72, "ka": 0.65, "KBp": 5891.45,
                 "KBpr": 637.64, "KBpTN": 1808.02, "nTN0": 16.46}
    for name, value in published.items():
        assert fixed[name] == pytest.approx(value)
    assert fixed["nB0"] == "nB0"  # a column of the patient table (per-patient regressor)
    assert fixed["lTN"] == 0.01  # --fix takes precedence over the published value
    assert "rTA0" not in fixed and "lTA0" not in fixed
    assert len(fixed) == models.get("liu2022").n_params - 2
    assert centred == ["rTA0"]
    assert _fixed_and_centred(_args(centred="none"))[1] == []
    assert _fixed_and_centred(_args()) == (None, None)


@pytest.mark.parametrize("kw, match", [
    ({"free": "rTA0,kappa"}, "kappa"),
    ({"free": "rTA0", "fix": "rTA0=1"}, "both name"),
    ({"fix": "rTA0"}, "NAME=VALUE"),
])
def test_bad_free_and_fix_are_refused(kw, match):
    with pytest.raises(CartKineticsError, match=match):
        _fixed_and_centred(_args(**kw))


def test_priors_around_the_published_values():
    pri = L.priors()
    typical = dict(zip(models.get("liu2022").param_names, models.get("liu2022").typical,
                       strict=True))
    assert set(pri["mu"]) == set(L.FREE)
    assert pri["mu"]["rTA0"] == [pytest.approx(np.log(1.62)), L.MU_SD]
    assert pri["mu"]["eBp"][0] == pytest.approx(np.log(typical["eBp"]))
    assert pri["omega"]["nTN0"] == ["lognormal", 1.0, 0.25]
    assert pri["omega"]["lTA0"] == ["lognormal", *L.OMEGA]


@pytest.mark.skipif(not L.DEFAULT_SOURCE.is_dir(), reason="../shared/data/liu2022-ball absent")
def test_written_files_hold_every_car_t_row(tmp_path):
    from cartkinetics.data import read_kinetics

    paths = L.write_files(L.DEFAULT_SOURCE, tmp_path)
    # independent count from the authors' files: CAR-T rows (y_ID 1) after day 0, BLQ = 0.2
    raw = pd.concat([pd.read_csv(L.DEFAULT_SOURCE / f"Data_{g}.csv") for g in L.GROUPS])
    cart = raw[(raw["y_ID"] == 1) & (raw["time"] > 0)]
    kin = read_kinetics(paths["kinetics"])
    obs = kin.observations
    assert len(obs) == len(cart) == 295
    assert int((obs["status"] == "censored").sum()) == int((cart["y"] == 0.2).sum()) == 30
    assert set(obs["unit"]) == {"cells/uL"}  # the authors' unit, read as flow CAR+ cells/uL
    pat = pd.read_csv(paths["patients"])
    assert len(pat) == 32 and set(pat["patient"]) == set(obs["patient"])
    # nB0: each patient's day-0 leukaemia count (y_ID 2), read here from the files
    for g in L.GROUPS:
        d = pd.read_csv(L.DEFAULT_SOURCE / f"Data_{g}.csv")
        for pid, grp in d[(d["y_ID"] == 2) & (d["time"] == 0)].groupby("ID"):
            got = pat.loc[pat["patient"] == f"{g}-{pid}", "nB0"]
            assert got.size == 1 and got.iloc[0] == pytest.approx(grp["y"].iloc[0])
    assert json.loads(paths["priors"].read_text()) == L.priors()


@pytest.mark.slow
def test_cli_fits_liu_with_free_fix_column_centred_and_priors(tmp_path, capsys):
    pytest.importorskip("nutpie")
    from cartkinetics.cli import main
    from cartkinetics.testing import liu_cohort

    pdata, model, theta = liu_cohort(seed=4, n_patients=4)
    rows = []
    for s in range(pdata.n_series):
        sel = pdata.obs_series == s
        for t, ly, c in zip(pdata.t[sel], pdata.log_y[sel], pdata.censored[sel], strict=True):
            rows.append({"patient": pdata.patients[pdata.series_patient[s]], "day": t,
                         "value": float(np.exp(ly)), "lloq": 0.2, "blq": bool(c),
                         "assay": "flow", "unit": "cells/uL"})
    kin = tmp_path / "liu.csv"
    pd.DataFrame(rows).to_csv(kin, index=False)
    nb0 = model.param_names.index("nB0")
    pats = tmp_path / "patients.csv"
    pd.DataFrame({"patient": pdata.patients,
                  "baseline": theta[:, nb0]}).to_csv(pats, index=False)
    prior = {"mu": {"rTA0": [float(np.log(1.62)), 0.5]}}
    rc = main(["fit-population", str(kin), "--model", "liu2022", "--patients", str(pats),
               "--free", "rTA0,lTA0", "--fix", "nB0=baseline", "--centred", "rTA0,lTA0",
               "--priors", json.dumps(prior), "--chains", "1", "--draws", "60", "--tune",
               "60", "--no-until-converged", "--json", "--seed", "3", "--rtol", "1e-4"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rtol"] == 1e-4  # the solver tolerance the fit used, in its record
    names = {r["name"] for r in out["population"] if r["kind"] == "typical"}
    assert names == {"rTA0", "lTA0"}


def test_printed_command_is_what_the_parser_takes(tmp_path):
    """The command ``python -m cartkinetics.validate.liu2022`` prints parses into the
    module's settings (free, centred, residual, solver tolerance)."""
    import shlex

    from cartkinetics.cli import build_parser

    paths = {k: tmp_path / f"{k}.x" for k in ("kinetics", "patients", "priors")}
    argv = shlex.split(L.command(paths, time_budget=600))
    assert argv[:2] == ["cartkinetics", "fit-population"]
    args = build_parser().parse_args(argv[1:])
    assert args.free.split(",") == list(L.FREE)
    assert args.centred.split(",") == list(L.CENTRED)
    assert args.residual == L.RESIDUAL and args.rtol == L.RTOL == 1e-4
    assert args.chains == 4 and args.init == "dispersed" and args.time_budget == 600


def test_fixed_from_a_patient_column_named_as_in_the_file():
    """The patient table's column names are stored lower-cased; ``fixed=`` (and --fix
    nB0=nB0) finds the column whatever its case, with each patient's own value."""
    from cartkinetics.data import read_kinetics
    from cartkinetics.fit.population import prepare_population_data
    from cartkinetics.fit.population.priors import fixed_values

    rows = [{"patient": p, "day": d, "value": 10.0 * d, "assay": "flow", "unit": "cells/uL"}
            for p in ("A", "B", "C") for d in (1.0, 7.0, 14.0)]
    pats = pd.DataFrame({"patient": ["A", "B", "C"], "nB0": [774.0, 3.89, 2200.0]})
    pdata = prepare_population_data(read_kinetics(pd.DataFrame(rows), patients=pats))
    model = models.get("liu2022")
    for name in ("nB0", "NB0", " nb0 "):
        typical, series = fixed_values({"nB0": name}, pdata, model)
        want = dict(zip(pats["patient"], pats["nB0"], strict=True))
        got = dict(zip(np.asarray(pdata.patients)[pdata.series_patient], series["nB0"],
                       strict=True))
        assert got == want and typical["nB0"] == 774.0  # the median over patients
    with pytest.raises(CartKineticsError, match="no such column"):
        fixed_values({"nB0": "baseline"}, pdata, model)


def test_wrong_source_folder_is_refused_with_a_message(tmp_path, capsys):
    """A folder without the authors' files: exit code 2 and a message naming the file looked
    for and what SOURCE_DIR must hold, not a traceback."""
    assert L.main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Data_CR.csv" in err and "SOURCE_DIR is the folder" in err
    assert not (tmp_path / "out").exists()
