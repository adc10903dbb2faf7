"""Parameter scales are declared once (``Parameter.transform``) and read by every layer.

The round trip model -> hierarchical-fit draws -> DrawsPopulation -> virtual patients must
keep every parameter's distribution. Stein 2019's beta (a rate in 1/day bounded by 1) was
sampled on the log scale by the hierarchical fit but mapped back with the logistic function
by ``DrawsPopulation.from_posterior`` (issue #17): these tests fail on that drift.
"""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cartkinetics import models
from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import Parameter
from cartkinetics.simulate.virtual_patients import DrawsPopulation

STEIN = models.get("stein2019")
# the scales of Stein 2019's hierarchical fit, stated independently of the code: every
# parameter log-normal between patients except FB, a fraction, logit-normal (Stein 2019
# reports FB with a logit-normal random effect; beta is a rate, log-normal)
STEIN_SCALES = {"foldx": "log", "tmax": "log", "cmax": "log", "alpha": "log", "fb": "logit",
                "beta": "log"}
INVERSE = {"log": np.exp, "logit": lambda x: 1.0 / (1.0 + np.exp(-x))}


def test_stein_declares_the_scales_of_its_hierarchical_fit():
    assert dict(zip(STEIN.param_names, STEIN.transforms, strict=True)) == STEIN_SCALES


def test_transforms_invert_and_match_closed_forms():
    x = np.array([1e-6, 0.003, 0.5, 0.99])
    for kind, lo, hi, phi in [
        ("log", 0.0, 1.0, np.log(x)),
        ("logit", 0.0, 1.0, np.log(x / (1 - x))),
        ("identity", 0.0, 1.0, x),
        ("bounded", -1.0, 2.0, np.log((x + 1.0) / (2.0 - x))),
    ]:
        p = Parameter("p", "-", 0.5, lo, hi, transform=kind)
        np.testing.assert_allclose(p.to_scale(x), phi, rtol=1e-12)
        np.testing.assert_allclose(p.from_scale(phi), x, rtol=1e-12, atol=1e-15)


def test_log_scale_follows_the_transform_and_bad_declarations_are_refused():
    assert Parameter("k", "1/day", 0.1).transform == "log"
    assert Parameter("f", "-", 0.1, 0.0, 1.0).transform == "logit"
    assert Parameter("k", "1/day", 0.1, 0.0, 1.0).transform == "log"  # a rate, not a fraction
    p = Parameter("k", "1/day", 0.0, 0.0, 10.0, False)
    assert p.transform == "identity" and not p.log_scale
    assert not Parameter("k", "1/day", 0.5, 0.0, 1.0, transform="bounded").log_scale
    with pytest.raises(CartKineticsError, match="logit transform needs upper <= 1"):
        Parameter("k", "1/day", 0.5, 0.0, 2.0, transform="logit")
    with pytest.raises(CartKineticsError, match="unknown transform"):
        Parameter("k", "1/day", 0.5, transform="probit")


def _posterior(mu: np.ndarray, omega: np.ndarray) -> types.SimpleNamespace:
    """A stand-in for a PopulationFit: posterior mu and omega (chain, draw, param)."""
    import xarray as xr

    names = STEIN.param_names
    post = xr.Dataset(
        {
            "mu": (("chain", "draw", "param"), mu[None]),
            "omega": (("chain", "draw", "param"), omega[None]),
        },
        coords={"param": names},
    )
    return types.SimpleNamespace(idata=types.SimpleNamespace(posterior=post), model=STEIN)


def test_round_trip_hierarchical_draws_to_virtual_patients_keeps_every_distribution():
    rng = np.random.default_rng(20261205)
    nd = 4000
    names = STEIN.param_names
    # population draws on the fit's sampling scale: wide enough that beta reaches values
    # (0.05-0.5/day) where exp and the logistic function disagree
    centre = {"foldx": np.log(3900), "tmax": np.log(9.3), "cmax": np.log(24000),
              "alpha": np.log(0.16), "fb": np.log(0.0079 / 0.9921), "beta": np.log(0.05)}
    mu = np.column_stack([centre[n] + 0.3 * rng.standard_normal(nd) for n in names])
    omega = np.column_stack([np.full(nd, 0.8) for _ in names])
    pop = DrawsPopulation.from_posterior(_posterior(mu, omega))
    virtual = pop._sample_params(np.random.default_rng(1), 20000, STEIN)
    # the known distribution of a new patient: phi = mu_d + omega_d z for a random draw d,
    # mapped back with the scale the fit sampled on
    d = rng.integers(0, nd, 20000)
    phi = mu[d] + omega[d] * rng.standard_normal((20000, len(names)))
    for j, n in enumerate(names):
        truth = INVERSE[STEIN_SCALES[n]](phi[:, j])
        ks = stats.ks_2samp(virtual[:, j], truth)
        assert ks.pvalue > 1e-3, (n, ks)
        q = [0.05, 0.5, 0.95]
        np.testing.assert_allclose(np.quantile(virtual[:, j], q), np.quantile(truth, q),
                                   rtol=0.08, err_msg=n)


def test_individual_draws_keep_their_values():
    # level="individual": natural-scale columns go to the fit's scale and back unchanged
    rng = np.random.default_rng(4)
    table = pd.DataFrame({n: STEIN.typical[j] * np.exp(0.1 * rng.standard_normal(50))
                          for j, n in enumerate(STEIN.param_names)})
    table["fb"] = table["fb"].clip(upper=0.9)
    table["beta"] = rng.uniform(0.01, 0.9, 50)
    pop = DrawsPopulation("stein2019", {}, draws=table)
    out = pop._sample_params(np.random.default_rng(0), 200, STEIN)
    rows = table.to_numpy()
    match = np.isclose(out[:, None, :], rows[None, :, :], rtol=1e-12, atol=0).all(axis=2)
    assert match.any(axis=1).all()
