"""Reproducible by default: a fixed default seed, recorded, and the same draws from it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

from cartkinetics.fit import population as P  # noqa: E402
from cartkinetics.testing import simulate_stein_cohort  # noqa: E402


@pytest.fixture(scope="module")
def pdata():
    from cartkinetics.data import read_kinetics

    df, _ = simulate_stein_cohort(3, seed=11)
    return P.prepare_population_data(read_kinetics(df))


def _fit(pdata, **kw):
    return P.fit_population(pdata, "stein2019", draws=30, tune=40, chains=2, progress=False,
                            warn=False, cores=1, **kw)


@pytest.mark.slow  # four small fits: ~90 s of CPU
def test_default_seed_is_fixed_recorded_and_reproduces_the_draws(pdata):
    a = _fit(pdata)
    b = _fit(pdata)
    assert a.info["settings"]["seed"] == P.DEFAULT_SEED
    d = a.to_dict()
    assert d["seed"] == P.DEFAULT_SEED and d["settings"]["seed"] == P.DEFAULT_SEED
    for v in ("mu", "omega", "sigma", "phi_c", "z"):
        np.testing.assert_array_equal(a.idata.posterior[v].values, b.idata.posterior[v].values)
    np.testing.assert_array_equal(a.idata.posterior_predictive["log_y"].values,
                                  b.idata.posterior_predictive["log_y"].values)
    # another seed is another run
    e = _fit(pdata, seed=P.DEFAULT_SEED + 1)
    assert e.info["settings"]["seed"] == P.DEFAULT_SEED + 1
    assert not np.array_equal(a.idata.posterior["mu"].values, e.idata.posterior["mu"].values)
