"""Dosing scenarios and the dose-exposure assumption of closed-form models.

A :class:`Scenario` is one arm of a simulated trial: a dose (per kg of body weight or flat),
optionally split over several days, optionally a second infusion at a given day with or
without lymphodepletion before it, and comedication where the model has an effect for it.
:func:`scenario_grid` makes the product of factors, e.g. three dose levels x with/without a
second infusion = six scenarios.

Modelling honesty, Stein 2019: the published model retained no dose covariate (Cmax is a
parameter, not a function of the dose), so in the model as published every dose level gives
the same exposure. :class:`DoseExposure` makes any other assumption explicit:
``Cmax_i = Cmax_i(published) * (dose_per_kg_i / reference_per_kg) ** exponent`` with
``exponent=0`` (the default) meaning "as published".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cartkinetics.errors import CartKineticsError

#: ELIANA median weight-adjusted tisagenlecleucel dose (cells/kg), the reference of
#: :class:`DoseExposure` (Stein 2019 population description; nlmixr2lib population notes).
ELIANA_MEDIAN_DOSE_PER_KG = 3.1e6


@dataclass(frozen=True)
class DoseExposure:
    """Dose-exposure assumption for closed-form models whose peak is a parameter.

    Parameters
    ----------
    exponent : float
        Power of (dose per kg / reference) multiplying each patient's Cmax. 0 = the
        published Stein 2019 model (no dose effect); 1 = exposure proportional to dose.
    reference_per_kg : float
        Dose per kg (cells/kg) at which the published Cmax applies.
    """

    exponent: float = 0.0
    reference_per_kg: float = ELIANA_MEDIAN_DOSE_PER_KG

    def __post_init__(self) -> None:
        if not math.isfinite(self.exponent):
            raise CartKineticsError(f"dose exponent must be finite, got {self.exponent}")
        if not (math.isfinite(self.reference_per_kg) and self.reference_per_kg > 0):
            raise CartKineticsError(
                f"reference dose must be > 0 cells/kg, got {self.reference_per_kg}"
            )


def _check_dose(value: float | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise CartKineticsError(f"{what} must be a positive number of cells, got {value!r}")


@dataclass(frozen=True)
class Scenario:
    """One dosing scenario.

    Parameters
    ----------
    dose_per_kg : float, optional
        CAR-T cells per kg body weight (total over all split doses).
    dose : float, optional
        Flat dose, cells (total); give at most one of ``dose`` and ``dose_per_kg``.
        Neither: the model's default dose (closed-form Stein: no dose needed).
    split_days : tuple of float
        Days (since the first infusion) of the fractions of a split dose; default one dose
        on day 0. Example: ``(0, 1, 2)`` with ``split_fractions=(0.1, 0.3, 0.6)``.
    split_fractions : tuple of float, optional
        Fractions of the dose on each day (sum 1); default equal fractions.
    second_infusion_day : float, optional
        Day of a second infusion (days since the first). Outcomes of the second infusion
        are reported in days since it, with the prefix ``inf2_``.
    second_dose_per_kg, second_dose : float, optional
        Dose of the second infusion (default: the first infusion's dose).
    lymphodepletion : bool
        Lymphodepletion before the second infusion (mechanistic models with normal T cells
        reset them; closed-form models apply ``no_lymphodepletion_factors`` when False).
    tocilizumab_day, corticosteroid_day : float, optional
        Day of the first dose of the comedication (models with comedication effects: Stein
        2019 multiplies the expansion rate by 1.2 for tocilizumab).
    parameter_factors : dict name -> factor
        Multipliers on individual parameters for the whole scenario.
    second_factors : dict name -> factor
        Multipliers on the parameters of the second infusion only (an infusion effect,
        e.g. ``{"cmax": 2.0, "tmax": 0.8}``).
    no_lymphodepletion_factors : dict name -> factor
        Multipliers on the second infusion's parameters when ``lymphodepletion`` is False
        (closed-form models; no published value exists, so the default is no change).
    name : str
        Label; default built from the fields that differ from the defaults.
    """

    dose_per_kg: float | None = None
    dose: float | None = None
    split_days: tuple[float, ...] = (0.0,)
    split_fractions: tuple[float, ...] | None = None
    second_infusion_day: float | None = None
    second_dose_per_kg: float | None = None
    second_dose: float | None = None
    lymphodepletion: bool = True
    tocilizumab_day: float | None = None
    corticosteroid_day: float | None = None
    parameter_factors: dict[str, float] = field(default_factory=dict)
    second_factors: dict[str, float] = field(default_factory=dict)
    no_lymphodepletion_factors: dict[str, float] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        _check_dose(self.dose_per_kg, "dose_per_kg")
        _check_dose(self.dose, "dose")
        _check_dose(self.second_dose_per_kg, "second_dose_per_kg")
        _check_dose(self.second_dose, "second_dose")
        if self.dose is not None and self.dose_per_kg is not None:
            raise CartKineticsError("give either dose (flat, cells) or dose_per_kg, not both")
        if self.second_dose is not None and self.second_dose_per_kg is not None:
            raise CartKineticsError("give either second_dose or second_dose_per_kg, not both")
        days = tuple(float(d) for d in self.split_days)
        if len(days) == 0 or any(not math.isfinite(d) or d < 0 for d in days):
            raise CartKineticsError(f"split_days must be days >= 0, got {self.split_days}")
        if any(b <= a for a, b in itertools.pairwise(days)):
            raise CartKineticsError(f"split_days must increase, got {self.split_days}")
        fr = self.split_fractions
        if fr is None:
            fr = tuple(1.0 / len(days) for _ in days)
        fr = tuple(float(x) for x in fr)
        if len(fr) != len(days) or any(not math.isfinite(x) or x <= 0 for x in fr):
            raise CartKineticsError(
                f"split_fractions must be {len(days)} positive numbers, got {self.split_fractions}"
            )
        if abs(sum(fr) - 1.0) > 1e-9:
            raise CartKineticsError(f"split_fractions must sum to 1, got {sum(fr):g}")
        object.__setattr__(self, "split_days", days)
        object.__setattr__(self, "split_fractions", fr)
        d2 = self.second_infusion_day
        if d2 is not None:
            if not math.isfinite(d2) or d2 <= days[-1]:
                raise CartKineticsError(
                    f"second_infusion_day must be after the last split dose (day {days[-1]:g}),"
                    f" got {d2!r}"
                )
        for what in ("tocilizumab_day", "corticosteroid_day"):
            v = getattr(self, what)
            if v is not None and (not math.isfinite(v) or v < 0):
                raise CartKineticsError(f"{what} must be a day >= 0, got {v!r}")
        for what in ("parameter_factors", "second_factors", "no_lymphodepletion_factors"):
            for k, v in dict(getattr(self, what)).items():
                if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                    raise CartKineticsError(f"{what}[{k!r}] must be a positive factor, got {v!r}")
        if not self.name:
            object.__setattr__(self, "name", self._auto_name())

    def _auto_name(self) -> str:
        parts = []
        for f in fields(self):
            if f.name == "name":
                continue
            v = getattr(self, f.name)
            dv = f.default
            if f.name == "split_fractions" and len(self.split_days) == 1:
                continue
            if f.name in ("parameter_factors", "second_factors", "no_lymphodepletion_factors"):
                if v:
                    parts.append(f"{f.name}={dict(v)}")
                continue
            if f.name == "lymphodepletion":
                if not v and self.second_infusion_day is not None:
                    parts.append("no lymphodepletion")
                continue
            if f.name == "split_days" and v == (0.0,):
                continue
            if v is not None and v != dv:
                parts.append(f"{f.name}={_fmt(v)}")
        return " ".join(parts) if parts else "default"

    def as_dict(self) -> dict[str, Any]:
        """The scenario's factors as a plain dict."""
        return asdict(self)

    def needs_weight(self) -> bool:
        """True when the scenario doses per kg, so virtual patients need a body weight (kg)."""
        return (
            self.dose_per_kg is not None
            or self.dose is not None
            or self.second_dose_per_kg is not None
            or self.second_dose is not None
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return ",".join(_fmt(x) for x in v)
    return str(v)


def scenario_grid(**factors: Any) -> list[Scenario]:
    """All combinations of the given factors (the product, first factor slowest).

    Each keyword is a :class:`Scenario` field with a list of levels; a scalar is one level.

    Examples
    --------
    >>> grid = scenario_grid(dose_per_kg=[1e6, 3.5e6, 5e6], second_infusion_day=[None, 60])
    >>> len(grid)
    6
    """
    valid = {f.name for f in fields(Scenario)}
    unknown = set(factors) - valid
    if unknown:
        raise CartKineticsError(
            f"unknown scenario factor(s) {sorted(unknown)}; valid: {sorted(valid - {'name'})}"
        )
    keys = list(factors)
    levels = []
    for k in keys:
        v = factors[k]
        if isinstance(v, list | tuple) and not (
            k in ("split_days", "split_fractions") and v and not isinstance(v[0], list | tuple)
        ):
            levels.append(list(v))
        else:
            levels.append([v])
        if not levels[-1]:
            raise CartKineticsError(f"scenario factor {k!r} has no levels")
    return [Scenario(**dict(zip(keys, combo, strict=True))) for combo in itertools.product(*levels)]
