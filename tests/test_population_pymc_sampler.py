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
