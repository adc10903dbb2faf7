"""Stein 2019 in its two-state ODE form (effector E, memory M), switching at Tmax.

Same parameters, reference and variability as :mod:`cartkinetics.models.stein2019`::

    t <  Tmax:  dE/dt = rho E                 dM/dt = 0
    t >= Tmax:  dE/dt = -alpha E              dM/dt = FB (alpha - beta) E - beta M
    E(0) = R0 = Cmax/foldx, M(0) = 0,  rho = ln(foldx)/Tmax;   transgene = E + M

Tmax is a parameter-dependent breakpoint: the integration stops there and restarts with the
second right-hand side. Comedication factors are available on the closed form only.
"""

from __future__ import annotations

from cartkinetics.models.ode import ODEModel, model_from_spec
from cartkinetics.models.spec import build_spec
from cartkinetics.models.stein2019 import (
    BSV,
    CAPABILITIES,
    DESCRIPTION,
    PARAMETERS,
    POPULATION,
    REFERENCE,
    RESIDUAL_SD,
)

EQUATIONS = """
rho = log(foldx)/tmax
dE/dt = where(piece < 1, rho*E, -alpha*E)
dM/dt = where(piece < 1, 0, fb*(alpha - beta)*E - beta*M)
"""


def build_ode() -> ODEModel:
    """Build the two-state ODE form of Stein 2019 (switch at Tmax as a breakpoint)."""
    spec = build_spec(
        "stein2019_ode",
        EQUATIONS,
        list(PARAMETERS),
        states={"E": "copies/ug", "M": "copies/ug"},
        observations={"transgene": ("E + M", "copies/ug genomic DNA (qPCR, peripheral blood)")},
        initial={"E": "cmax/foldx"},
        breakpoints=["tmax"],
        source="stein2019_ode",
    )
    return model_from_spec(
        spec,
        description=DESCRIPTION + " (two-state ODE, switch at Tmax)",
        reference=REFERENCE,
        population=POPULATION,
        parameter_sets={"typical": {p.name: p.value for p in PARAMETERS}},
        primary_observation="transgene",
        bsv=dict(BSV),
        residual_sd=RESIDUAL_SD,
        residual_model="additive on ln(copies/ug)",
        dose_unit="(dose does not enter: Cmax is a parameter)",
        **CAPABILITIES,
    )
