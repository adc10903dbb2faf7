"""Parameter recovery of the hierarchical Stein 2019 fit on a simulated cohort (slow).

20 patients x 2 infusions, tisagenlecleucel-like schedule, ~30% BLQ, a known infusion effect
(Cmax x2, Tmax 11/14 of the first); the data are simulated with the model library's closed
form (``models.get("stein2019").solve``), independent of the PyTensor code under test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

from cartkinetics.data import read_kinetics  # noqa: E402
from cartkinetics.fit.population import fit_population  # noqa: E402
from cartkinetics.testing import simulate_stein_cohort  # noqa: E402


@pytest.fixture(scope="module")
def recovery():
    df, truth = simulate_stein_cohort(20, seed=1)
    assert 0.25 <= truth["blq_fraction"] <= 0.35
    fit = fit_population(read_kinetics(df), draws=1000, tune=1000, chains=2, seed=7,
                         progress=False, warn=False)
    return fit, truth


@pytest.mark.slow
def test_population_means_and_infusion_effect_recovered(recovery):
    fit, truth = recovery
    summ = fit.summary()
    typ = summ[summ["kind"] == "typical"].set_index("name")
    for name, value in truth["typical"].items():
        lo, hi = typ.loc[name, "ci_low"], typ.loc[name, "ci_high"]
        assert lo <= value <= hi, f"typical {name}: {value} outside [{lo}, {hi}]"
    eff = fit.infusion_effect()
    c, t = eff["cmax_ratio"], eff["tmax_difference"]
    assert c["ci_low"] <= truth["cmax_ratio"] <= c["ci_high"]
    assert t["ci_low"] <= truth["tmax_difference"] <= t["ci_high"]
    assert c["p_greater"] > 0.99 and t["p_less"] > 0.95
    # the residual SD too
    sig = summ[summ["kind"] == "sigma"].iloc[0]
    assert sig["ci_low"] <= truth["sigma"] <= sig["ci_high"]


@pytest.mark.slow
def test_recovery_diagnostics_clean(recovery):
    fit, _ = recovery
    d = fit.diagnostics(warn=False)
    assert d["divergences"] == 0
    assert d["max_rhat_population"] <= 1.01
    assert d["max_rhat"] <= 1.02  # every patient-level quantity as well
    assert min(d["bfmi"]) >= 0.3


@pytest.mark.slow
def test_recovery_outputs(recovery, tmp_path):
    fit, truth = recovery
    groups = set(fit.idata.groups())
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data",
            "sample_stats"} <= groups
    n_obs = fit.data.n_obs
    assert fit.idata.log_likelihood["log_y"].shape[-1] == n_obs
    assert np.all(np.isfinite(fit.idata.log_likelihood["log_y"].values))
    # per-series outcomes: Stein's Cmax/Tmax parameters; AUC0-28 from the curves
    pat = fit.patient_outcomes()
    assert len(pat) == 40
    th = truth["theta"]
    inside = np.mean((pat["cmax_low"] <= th[:, 2]) & (th[:, 2] <= pat["cmax_high"]))
    assert inside >= 0.8  # 95% intervals: most of the 40 true values inside
    assert np.all(pat["auc_0_28"] > 0)
    pe = fit.patient_infusion_effects()
    assert len(pe) == 20 and np.all(pe["cmax_ratio_low"] <= pe["cmax_ratio_high"])
    sh = fit.shrinkage()
    assert np.all(sh["shrinkage"] < 1.0)
    # cmax and tmax are well identified: low shrinkage
    sh = sh.set_index(["random_effect", "parameter"])["shrinkage"]
    assert sh[("omega", "cmax")] < 0.3 and sh[("omega", "tmax")] < 0.3
    out = fit.to_dict()
    json.dumps(out)  # JSON-serialisable
    for key in ("median", "ci_low", "ci_high", "p_greater"):
        assert math.isfinite(out["infusion_effect"]["cmax_ratio"][key])
    for key in ("median", "ci_low", "ci_high", "p_less"):
        assert math.isfinite(out["infusion_effect"]["tmax_difference"][key])
    for key in ("max_rhat", "min_ess_bulk", "divergences"):
        assert key in out["diagnostics"]
    paths = fit.save(tmp_path)
    for key in ("idata", "json", "population_pred", "individual_pred", "forest_cmax_ratio",
                "vpc_censored"):
        assert paths[key].exists() and paths[key].stat().st_size > 0


@pytest.mark.slow
def test_censored_vpc_matches_observed_blq_fraction(recovery):
    """The predicted BLQ fraction per time bin brackets the observed one (a calibrated fit)."""
    from cartkinetics.fit.population.plots import vpc_censored_table

    fit, _ = recovery
    tab = vpc_censored_table(fit, level=0.99)
    inside = (tab["pred_low"] <= tab["observed"]) & (tab["observed"] <= tab["pred_high"])
    assert inside.mean() >= 0.75
