"""Exposure-response: do CAR-T expansion and persistence go with response, toxicity and
survival?

>>> import cartkinetics as ck
>>> res = ck.exposure_response("patients.csv", "kinetics.csv")   # doctest: +SKIP
>>> print(res.summary())                                        # doctest: +SKIP

Exposure metrics per patient (NCA, a metrics table or posterior draws of a hierarchical
fit) are joined to the cohort table (:func:`cartkinetics.read_cohort`) and related to
binary outcomes (Firth and ML logistic regression on log2 exposure, exact tests, observed
proportions by quartile), grades (proportional odds) and survival from a landmark
(Kaplan-Meier by exposure tertile with log-rank, Cox and Firth Cox). See
docs/exposure-response.md for the methods and their assumptions.
"""

from __future__ import annotations

from cartkinetics.exposure.binary import (
    BinaryAnalysis,
    RegressionFit,
    exact_tests,
    firth_logistic,
    ml_logistic,
    ordinal_logistic,
    quartile_table,
    separation,
)
from cartkinetics.exposure.draws import (
    DrawsAnalysis,
    cox_over_draws,
    exposure_draws,
    logistic_over_draws,
)
from cartkinetics.exposure.metrics import per_patient, series_metrics
from cartkinetics.exposure.result import (
    ExposureResponseResult,
    exposure_response,
    html_section,
)
from cartkinetics.exposure.survival import (
    Landmark,
    SurvivalAnalysis,
    cox_firth,
    cox_ml,
    landmark,
    monotone_likelihood,
)

__all__ = [
    "BinaryAnalysis",
    "DrawsAnalysis",
    "ExposureResponseResult",
    "Landmark",
    "RegressionFit",
    "SurvivalAnalysis",
    "cox_firth",
    "cox_ml",
    "cox_over_draws",
    "exact_tests",
    "exposure_draws",
    "exposure_response",
    "firth_logistic",
    "html_section",
    "landmark",
    "logistic_over_draws",
    "ml_logistic",
    "monotone_likelihood",
    "ordinal_logistic",
    "per_patient",
    "quartile_table",
    "separation",
    "series_metrics",
]
