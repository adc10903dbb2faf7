"""``cartkinetics fit-population`` end to end on a small simulated cohort (JSON keys)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

from cartkinetics.cli import main  # noqa: E402
from cartkinetics.testing import simulate_stein_cohort  # noqa: E402


@pytest.mark.slow
def test_cli_json_keys(tmp_path, capsys):
    df, _ = simulate_stein_cohort(5, seed=3)
    csv = tmp_path / "kin.csv"
    df.to_csv(csv, index=False)
    rc = main(["fit-population", str(csv), "--model", "stein2019", "--draws", "150",
               "--tune", "200", "--chains", "1", "--seed", "4", "--json", "--no-until-converged",
               "--out", str(tmp_path / "out")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    eff = out["infusion_effect"]
    assert set(eff["cmax_ratio"]) >= {"median", "ci_low", "ci_high", "p_greater"}
    assert set(eff["tmax_difference"]) >= {"median", "ci_low", "ci_high", "p_less"}
    assert eff["cmax_ratio"]["ci_low"] <= eff["cmax_ratio"]["median"] <= eff["cmax_ratio"]["ci_high"]
    assert set(out["diagnostics"]) >= {"max_rhat", "min_ess_bulk", "divergences"}
    assert len(out["patients"]) == 10
    assert {"patient", "infusion", "cmax", "tmax", "auc_0_28"} <= set(out["patients"][0])
    assert len(out["patient_infusion_effects"]) == 5
    assert (tmp_path / "out" / "population_idata.nc").exists()
    assert (tmp_path / "out" / "forest_cmax_ratio.png").exists()


def test_cli_bad_model_is_an_error(tmp_path, capsys):
    df, _ = simulate_stein_cohort(2, seed=3)
    csv = tmp_path / "kin.csv"
    df.to_csv(csv, index=False)
    rc = main(["fit-population", str(csv), "--model", "no_such_model", "--json"])
    assert rc == 2
    assert "no_such_model" in capsys.readouterr().err
