"""Moved to :mod:`cartkinetics.testing` (test-data generators); re-exported here."""

from __future__ import annotations

from cartkinetics.testing import DEFAULT_DAYS, simulate_stein_cohort

__all__ = ["DEFAULT_DAYS", "simulate_stein_cohort"]
