"""The PyMC-NUTS fallback path gives a complete result, like the nutpie path."""

import pytest

from cartkinetics import read_kinetics
from cartkinetics.example import kinetics_path


@pytest.mark.slow
def test_pymc_sampler_fallback_returns_all_groups():
    from cartkinetics.fit.population import fit_population

    data = read_kinetics(kinetics_path())
    fit = fit_population(data, "stein2019", draws=60, tune=60, chains=1, seed=3, sampler="pymc")
    groups = set(fit.idata.groups())
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data"} <= groups
    effect = fit.infusion_effect()
    ratio = effect["cmax_ratio"]
    assert ratio["ci_low"] <= ratio["median"] <= ratio["ci_high"]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_map_start_reaches_both_samplers(sampler):
    """init="map" hands the same start to nutpie (initial_points, no jitter) and to PyMC
    (initvals): both sample from it and record the optimiser's time and log density."""
    from cartkinetics.fit.population import fit_population

    data = read_kinetics(kinetics_path())
    fit = fit_population(data, "stein2019", draws=40, tune=40, chains=1, seed=3,
                         sampler=sampler, init="map", warn=False, progress=False)
    s = fit.info["sampling"]
    assert s["sampler"] == sampler and s["init"] == "map"
    assert s["init_seconds"] > 0 and s["init_logp"] > -1e6
    assert fit.idata.posterior.sizes["draw"] == 40
