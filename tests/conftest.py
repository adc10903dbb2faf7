"""Shared test helpers (test files do not import each other).

Series factories and simulated cohorts live in the public :mod:`cartkinetics.testing`
(``make_series``, ``stein_series``, ``simulate_stein_cohort``, ``liu_cohort``) and solver test
problems in :mod:`cartkinetics.testing.solver_problems`; the fixtures below give the common
data sets once per session. Long sampling validations are marked ``@pytest.mark.slow``
(``-m "not slow"`` skips them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

try:  # property tests draw the same examples on every run: CI never goes red on a new draw
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("cartkinetics", derandomize=True, deadline=None)
    _hyp_settings.load_profile("cartkinetics")
except ImportError:  # hypothesis is a test extra; its tests skip without it
    pass


@pytest.fixture(scope="session")
def example_data():
    """The bundled synthetic example cohort (KineticsData with its patient table)."""
    from cartkinetics import example

    return example.load()


@pytest.fixture(scope="session")
def stein():
    """The closed-form Stein 2019 model."""
    from cartkinetics import models

    return models.get("stein2019")


@pytest.fixture
def series_factory():
    """:func:`cartkinetics.testing.make_series` (day, value, blq=None, lloq=50, ...)."""
    from cartkinetics.testing import make_series

    return make_series
