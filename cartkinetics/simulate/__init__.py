"""Dose-scenario simulation of virtual CAR-T populations, in process or on Dask.

    >>> from cartkinetics.simulate import simulate, scenario_grid
    >>> res = simulate("stein2019", n=10_000,
    ...                scenarios=scenario_grid(dose_per_kg=[1e6, 3.5e6, 5e6]), seed=1)
    >>> res.summary()            # medians, 5-95 % intervals per scenario
    >>> res.outcomes             # one row per virtual patient x scenario

See :func:`simulate` for the options, :mod:`cartkinetics.simulate.virtual_patients` for the
population sources (published variability, per-patient fits, posterior draws) and
:mod:`cartkinetics.simulate.scenarios` for scenarios and the dose-exposure assumption.
"""

from cartkinetics.simulate.chunks import TumourSpec, default_grid, tumour_outcomes
from cartkinetics.simulate.scenarios import (
    ELIANA_MEDIAN_DOSE_PER_KG,
    DoseExposure,
    Scenario,
    scenario_grid,
)
from cartkinetics.simulate.simulation import SimulationResult, simulate
from cartkinetics.simulate.virtual_patients import (
    DEFAULT_WEIGHT,
    DrawsPopulation,
    Empirical,
    FitTablePopulation,
    Fixed,
    LogNormal,
    ModelPopulation,
    Population,
    make_population,
    parse_distribution,
)

__all__ = [
    "DEFAULT_WEIGHT",
    "ELIANA_MEDIAN_DOSE_PER_KG",
    "DoseExposure",
    "DrawsPopulation",
    "Empirical",
    "FitTablePopulation",
    "Fixed",
    "LogNormal",
    "ModelPopulation",
    "Population",
    "Scenario",
    "SimulationResult",
    "TumourSpec",
    "default_grid",
    "make_population",
    "parse_distribution",
    "scenario_grid",
    "simulate",
    "tumour_outcomes",
]

