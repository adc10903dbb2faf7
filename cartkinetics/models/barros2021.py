"""Barros et al. 2021 (CARTmath): effector and memory CAR-T cells against a tumour (mouse).

Reference
---------
Barros LRC, Paixao EA, Valli AMP, Naozuka GT, Fassoni AC, Almeida RC. CARTmath - a
mathematical model of CAR-T immunotherapy in preclinical studies of hematological cancers.
Cancers 2021;13(12):2941. doi:10.3390/cancers13122941. Values as in the public
re-implementation erkara/cancer_immunology (cartMath/fig4_abc.m), which uses the paper's
parameters.

Model (cells; time in days since tumour injection)::

    dCT/dt = phi CT - rho CT + theta T CM - alpha T CT      effector CAR-T
    dCM/dt = eps CT - theta T CM - mu CM                    memory CAR-T
    dT/dt  = r T (1 - b T) - gamma CT T                     tumour (logistic, capacity 1/b)

Schedule of the re-implementation: T(0) = 2e6 tumour cells at day 0, CAR-T dose (1.5e6,
0.5e6 or 0.2e6 cells) into CT at day 42. Here the default dose is 1.5e6 cells at day 42;
``solve(dose=[(42, 5e5)])`` gives the others.
"""

from __future__ import annotations

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import Parameter
from cartkinetics.models.ode import ODEModel, model_from_spec
from cartkinetics.models.spec import build_spec

REFERENCE = (
    "Barros LRC, Paixao EA, Valli AMP, Naozuka GT, Fassoni AC, Almeida RC. CARTmath - a "
    "mathematical model of CAR-T immunotherapy in preclinical studies of hematological "
    "cancers. Cancers 2021;13(12):2941. doi:10.3390/cancers13122941"
)
POPULATION = "NSG mice xenografted with RAJI (B-cell lymphoma) cells, CD19 CAR-T (preclinical)"
SRC = "Barros 2021 (as used in erkara/cancer_immunology cartMath/fig4_abc.m)"
INF = float("inf")

PARAMETERS = [
    Parameter("phi", "1/day", 0.265, 0.0, INF, True, SRC, "effector expansion rate"),
    Parameter("rho", "1/day", 0.350, 0.0, INF, True, SRC, "effector death rate"),
    Parameter("eps", "1/day", 0.150, 0.0, INF, True, SRC, "effector -> memory rate"),
    Parameter("theta", "1/(cell day)", 6.0e-6, 0.0, INF, True, SRC,
              "memory -> effector on tumour contact"),
    Parameter("alpha", "1/(cell day)", 4.5e-8, 0.0, INF, True, SRC,
              "effector inhibition by tumour"),
    Parameter("mu", "1/day", 5.0e-3, 0.0, INF, True, SRC, "memory death rate"),
    Parameter("r", "1/day", 5.650026e-2, 0.0, INF, True, SRC, "tumour growth rate"),
    Parameter("b", "1/cell", 1.404029e-12, 0.0, INF, True, SRC, "inverse tumour capacity"),
    Parameter("gamma", "1/(cell day)", 3.715843e-6, 0.0, INF, True, SRC, "tumour killing"),
    Parameter("T0", "cells", 2e6, 0.0, INF, True, SRC, "tumour cells injected at day 0"),
]

EQUATIONS = """
dCT/dt = phi*CT - rho*CT + theta*T*CM - alpha*T*CT
dCM/dt = eps*CT - theta*T*CM - mu*CM
dT/dt = r*T*(1 - b*T) - gamma*CT*T
"""


def build(name: str = "barros2021") -> ODEModel:
    """Build the Barros 2021 CARTmath model (states in cells, time in days)."""
    if name != "barros2021":
        raise CartKineticsError(f"unknown Barros model {name!r}")
    spec = build_spec(
        name,
        EQUATIONS,
        list(PARAMETERS),
        states={"CT": "cells", "CM": "cells", "T": "cells"},
        observations={
            "car_t": ("CT + CM", "cells (effector + memory CAR-T)"),
            "tumour": ("T", "cells"),
            "effector": ("CT", "cells"),
            "memory": ("CM", "cells"),
        },
        initial={"T": "T0"},
        dose_state="CT",
        dose_schedule=[(42.0, 1.0)],
        source=name,
    )
    return model_from_spec(
        spec,
        description="CARTmath: effector/memory CAR-T and tumour, mouse xenograft",
        reference=REFERENCE,
        population=POPULATION,
        parameter_sets={"paper": {p.name: p.value for p in PARAMETERS}},
        primary_observation="car_t",
        default_dose=1.5e6,
        dose_unit="CAR-T cells (default schedule: all at day 42 after tumour injection)",
    )
