"""Moved to :mod:`cartkinetics.fit.population.plots`; re-exported here."""

from __future__ import annotations

from cartkinetics.fit.population.plots import (
    plot_forest_cmax_ratio,
    plot_individual,
    plot_individuals,
    plot_population,
    plot_vpc_censored,
    vpc_censored_table,
)

__all__ = [
    "plot_forest_cmax_ratio",
    "plot_individual",
    "plot_individuals",
    "plot_population",
    "plot_vpc_censored",
    "vpc_censored_table",
]
