"""Cohort endpoints reported the way a paper does: response, survival, safety, kinetics.

>>> from cartkinetics.endpoints import cohort_endpoints
>>> res = cohort_endpoints("patients.csv", kinetics="kinetics.csv")   # doctest: +SKIP
>>> print(res.summary())                                             # doctest: +SKIP

Statistics come from scipy: Clopper-Pearson intervals (``binomtest``), Kaplan-Meier with
log-log intervals (``ecdf`` on ``CensoredData``), log-rank (``logrank``).
"""

from __future__ import annotations

from cartkinetics.endpoints.analysis import EndpointResult, cohort_endpoints
from cartkinetics.endpoints.cohort import Cohort, read_cohort
from cartkinetics.endpoints.response import Rate, proportion, response_endpoints
from cartkinetics.endpoints.survival import (
    KaplanMeier,
    follow_up,
    kaplan_meier,
    landmark_estimates,
    logrank_test,
)

__all__ = [
    "Cohort",
    "EndpointResult",
    "KaplanMeier",
    "Rate",
    "cohort_endpoints",
    "follow_up",
    "kaplan_meier",
    "landmark_estimates",
    "logrank_test",
    "proportion",
    "read_cohort",
    "response_endpoints",
]
