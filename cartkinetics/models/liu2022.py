"""Liu et al. 2022: CD19 CAR-T cells and B-ALL burden (and the CD19-negative relapse variant).

Reference
---------
Liu L, Ma C, Zhang Z, Witkowski MT, Aifantis I, Ghassemi S, Chen W. Computational model of
CAR T-cell immunotherapy dissects and predicts leukemia patient responses at remission,
resistance, and relapse. J Immunother Cancer 2022;10:e005360. doi:10.1136/jitc-2022-005360.
Equations and example values read from the authors' public code, GitHub Lunan12/CAR-T-model
(Fitting_Mlxtran/CR_PR_NR_fit_Mlxtran.txt, NegR_fit_Mlxtran.txt; "Simulation of responses"/
Simulation_CR_PR_NR.m and Simulation_NegR.m).

States (model units of the authors' data: counts per uL of blood as in their Data_*.csv)::

    nB   CD19+ leukaemic B cells        nTA  activated CAR-T        nTN  not-yet-activated CAR-T
    nBn  CD19- leukaemic B cells (liu2022_cd19neg only)

    rTA    = rTA0 nB/(nB + KBpr)
    dnB/dt = rBp nB (1 - nB/nMB) - eBp nB/(nB + KBp) nTA
    dnTA/dt= rTA nTA + ka nB/(nB + KBpTN) nTN - lTA0 nTA
    dnTN/dt= -ka nB/(nB + KBpTN) nTN - lTN nTN
    dnBn/dt= rBn nBn (1 - nBn/nMB) + km nB - (eBp/kb) nBn/(nBn + KBn) nTA      (CD19- variant)
    leukaemic burden LB (% of marrow) = 97.19 x / (x + 1909), x = nB (+ nBn in the variant)

Initial state: nB(0) = nB0 (a per-patient regressor in the authors' fit), nTA(0) = 0,
nTN(0) = nTN0 (the dose); in the variant nBn(0) = nBn0 (19.88984724 fixed in NegR_fit_Mlxtran).
A dose passed to ``solve`` at day 0 sets nTN0; later doses are added to nTN.
"""

from __future__ import annotations

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import Parameter
from cartkinetics.models.ode import ODEModel, model_from_spec
from cartkinetics.models.spec import build_spec

REFERENCE = (
    "Liu L, Ma C, Zhang Z, Witkowski MT, Aifantis I, Ghassemi S, Chen W. Computational model "
    "of CAR T-cell immunotherapy dissects and predicts leukemia patient responses at remission, "
    "resistance, and relapse. J Immunother Cancer 2022;10:e005360. "
    "doi:10.1136/jitc-2022-005360 (code: github.com/Lunan12/CAR-T-model)"
)
POPULATION = (
    "Paediatric and adult relapsed/refractory B-ALL patients treated with CD19 CAR-T "
    "(continuous remission, CD19+ relapse, non-response and CD19- relapse groups)"
)
SRC_CR = "Lunan12/CAR-T-model Simulation_CR_PR_NR.m (authors' example values)"
SRC_NEG = "Lunan12/CAR-T-model Simulation_NegR.m (authors' example values)"
UNIT = "cells/uL"

EQUATIONS = """
rTA = rTA0*nB/(nB + KBpr)
dnB/dt = rBp*nB*(1 - nB/nMB) - eBp*nB/(nB + KBp)*nTA
dnTA/dt = rTA*nTA + ka*nB/(nB + KBpTN)*nTN - lTA0*nTA
dnTN/dt = -ka*nB/(nB + KBpTN)*nTN - lTN*nTN
"""
EQUATION_NEG = "dnBn/dt = rBn*nBn*(1 - nBn/nMB) + km*nB - (eBp/kb)*nBn/(nBn + KBn)*nTA\n"


def _p(name: str, unit: str, value: float, source: str, desc: str, lower: float = 0.0,
       upper: float = float("inf")) -> Parameter:
    return Parameter(name, unit, value, lower, upper, True, source, desc)


def _parameters(values: dict[str, float], source: str, neg: bool) -> list[Parameter]:
    v = values
    out = [
        _p("rBp", "1/day", v["rBp"], source, "CD19+ leukaemia proliferation rate"),
        _p("rTA0", "1/day", v["rTA0"], source, "maximal activated CAR-T expansion rate"),
        _p("lTA0", "1/day", v["lTA0"], source, "activated CAR-T loss rate"),
        _p("lTN", "1/day", v["lTN"], source, "non-activated CAR-T loss rate"),
        _p("nMB", UNIT, v["nMB"], source, "leukaemia carrying capacity"),
        _p("eBp", "1/day", v["eBp"], source, "maximal CAR-T killing rate of CD19+ cells"),
        _p("ka", "1/day", v["ka"], source, "CAR-T activation rate"),
        _p("KBp", UNIT, v["KBp"], source, "half-saturation of killing"),
        _p("KBpr", UNIT, v["KBpr"], source, "half-saturation of CAR-T expansion"),
        _p("KBpTN", UNIT, v["KBpTN"], source, "half-saturation of CAR-T activation"),
        _p("nB0", UNIT, v["nB0"], source, "baseline CD19+ leukaemia (regressor)"),
        _p("nTN0", UNIT, v["nTN0"], source, "CAR-T dose as initial non-activated CAR-T"),
    ]
    if neg:
        out += [
            _p("rBn", "1/day", v["rBn"], source, "CD19- leukaemia proliferation rate"),
            Parameter("km", "1/day", v["km"], 0.0, 10.0, False, source,
                      "CD19+ -> CD19- conversion rate (0 in the authors' example)"),
            _p("kb", "-", v["kb"], source, "killing of CD19- cells reduced by factor kb"),
            _p("KBn", UNIT, v["KBn"], source, "half-saturation of CD19- killing"),
            _p("nBn0", UNIT, v["nBn0"], "Lunan12/CAR-T-model NegR_fit_Mlxtran.txt (fixed)",
               "baseline CD19- leukaemia"),
        ]
    return out


# Simulation_CR_PR_NR.m: f0 = [2200.24, 0, 16.46]
EXAMPLE = {
    "rBp": 0.069, "rTA0": 1.62, "lTA0": 0.12, "lTN": 0.00003, "nMB": 2939.1, "eBp": 22.72,
    "ka": 0.65, "KBp": 5891.45, "KBpr": 637.64, "KBpTN": 1808.02, "nB0": 2200.24, "nTN0": 16.46,
}
# Simulation_NegR.m: f0 = [17212.23022, 0, 0.3, 19.89], Param in the order
# rBp rTA0 lTA0 lTN nMB eBp KBp KBpr KBpTN ka rBn km kb KBn
EXAMPLE_NEG = {
    "rBp": 0.086, "rTA0": 1.7, "lTA0": 0.04, "lTN": 0.073, "nMB": 19988.53, "eBp": 8.6,
    "KBp": 794.99, "KBpr": 827.08, "KBpTN": 93066.8, "ka": 0.19, "rBn": 0.1, "km": 0.0,
    "kb": 7.9, "KBn": 5956.03, "nB0": 17212.23022, "nTN0": 0.3, "nBn0": 19.89,
}


def build(name: str = "liu2022") -> ODEModel:
    """Build the Liu 2022 B-ALL model (CAR-T and leukaemia, cells/uL; time in days)."""
    if name not in ("liu2022", "liu2022_cd19neg"):
        raise CartKineticsError(f"unknown Liu 2022 model {name!r}")
    neg = name == "liu2022_cd19neg"
    values = EXAMPLE_NEG if neg else EXAMPLE
    states = {"nB": UNIT, "nTA": UNIT, "nTN": UNIT}
    observations = {
        "car_t": ("nTA", f"{UNIT} activated CAR-T (the fitted CAR-T output)"),
        "leukaemia": ("nB", f"{UNIT} CD19+ leukaemic cells"),
        "burden": ("97.19*nB/(nB + 1909)", "% leukaemic burden (bone marrow)"),
        "car_t_total": ("nTA + nTN", f"{UNIT} all CAR-T"),
    }
    initial = {"nB": "nB0", "nTN": "nTN0"}
    eqs = EQUATIONS
    if neg:
        states["nBn"] = UNIT
        eqs = EQUATIONS + EQUATION_NEG
        observations["leukaemia_cd19neg"] = ("nBn", f"{UNIT} CD19- leukaemic cells")
        observations["burden"] = (
            "97.19*(nB + nBn)/(nB + nBn + 1909)", "% leukaemic burden (bone marrow)"
        )
        initial["nBn"] = "nBn0"
    spec = build_spec(
        name,
        eqs,
        _parameters(values, SRC_NEG if neg else SRC_CR, neg),
        states=states,
        observations=observations,
        initial=initial,
        dose_state="nTN",
        dose_parameter="nTN0",
        source=name,
    )
    return model_from_spec(
        spec,
        description=(
            "CD19 CAR-T (activated and non-activated) and B-ALL leukaemia with leukaemic burden"
            + (", CD19-negative relapse variant" if neg else "")
        ),
        reference=REFERENCE,
        population=POPULATION,
        parameter_sets={"example": dict(values)},
        primary_observation="car_t",
        dose_unit=UNIT + " (sets nTN0 at day 0)",
        notes=(
            "Example parameter values from the authors' simulation script; per-patient fits "
            "(Monolix) vary. No population variability published with the script."
        ),
    )
