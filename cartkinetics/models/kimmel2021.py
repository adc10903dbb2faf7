"""Kimmel, Locke & Altrock 2021: CAR-T and normal T-cell competition after lymphodepletion.

Reference
---------
Kimmel GJ, Locke FL, Altrock PM. The roles of T cell competition and stochastic extinction
events in chimeric antigen receptor T cell therapy. Proc R Soc B 2021;288:20210229.
doi:10.1098/rspb.2021.0229 (BioModels BIOMD0000001041). Values from Table 1 of the paper.

Mean-field model (cells; time in days)::

    T = N + C
    dN/dt = -r_N N ln(T / K_N)
    dC/dt = -r_C(T) C ln(T / K_C),   r_C(T) = rho_C + b (T - K_N)^2 / (a T^2 + (T - K_N)^2)
    dB/dt = r_B B - gamma_B B C / (k_B + C)

Table 1 gives r_B only as a range, (1-50) x 1e-2 per day (literature); the typical value here is
its lower end, 0.01 per day (an assumption of this library). The paper fits blood counts in
cells/uL; Table 1 lists whole-body cell numbers with a factor 5e8 cells per cell/uL
(K_N = 2.5e11 cells <-> the ~500 cells/uL plateau of Fig. 2a; C(0) = 1.8e8 cells <-> the
0.36 cells/uL initial condition of Fig. 2b). The observation ``car_t_blood`` uses that factor.
A dose at day 0 sets C(0); later doses (a second infusion) are added to C.
"""

from __future__ import annotations

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import Parameter
from cartkinetics.models.ode import ODEModel, model_from_spec
from cartkinetics.models.spec import build_spec

REFERENCE = (
    "Kimmel GJ, Locke FL, Altrock PM. The roles of T cell competition and stochastic "
    "extinction events in chimeric antigen receptor T cell therapy. Proc R Soc B "
    "2021;288:20210229. doi:10.1098/rspb.2021.0229"
)
POPULATION = (
    "Large B-cell lymphoma, axicabtagene ciloleucel (ZUMA-1 medians, 101 patients; Moffitt "
    "absolute lymphocyte counts, 55 patients)"
)
T1 = "Kimmel 2021 Table 1"
CELLS_PER_UL = 5e8  # whole-body cells per cell/uL of blood (Table 1 vs Fig. 2)

PARAMETERS = [
    Parameter("K_N", "cells", 2.5e11, 0.0, float("inf"), True, T1, "normal T-cell capacity"),
    Parameter("K_C", "cells", 6.96e10, 0.0, float("inf"), True, T1, "CAR-T carrying capacity"),
    Parameter("r_N", "1/day", 0.170, 0.0, float("inf"), True, T1, "normal T net growth rate"),
    Parameter("rho_C", "1/day", 0.0251, 0.0, float("inf"), True, T1,
              "baseline CAR-T net growth rate"),
    Parameter("a", "-", 0.423, 0.0, float("inf"), True, T1, "signalling inefficiency in r_C"),
    Parameter("b", "1/day", 0.525, 0.0, float("inf"), True, T1,
              "immune reconstitution impact in r_C"),
    Parameter("r_B", "1/day", 0.01, 0.0, float("inf"), True,
              T1 + " range (1-50)e-2; lower end chosen here", "tumour net growth rate"),
    Parameter("gamma_B", "1/day", 1.15, 0.0, float("inf"), True, T1, "tumour-killing rate"),
    Parameter("k_B", "cells", 2.024e9, 0.0, float("inf"), True, T1,
              "killing saturation constant"),
    Parameter("N0", "cells", 3.0e9, 0.0, float("inf"), True, T1, "initial normal T cells"),
    Parameter("C0", "cells", 1.8e8, 0.0, float("inf"), True, T1, "initial CAR-T cells (dose)"),
    Parameter("B0", "cells", 9.486e10, 0.0, float("inf"), True, T1, "initial tumour cells"),
]

EQUATIONS = """
T = N + C
rC = rho_C + b*(T - K_N)^2/(a*T^2 + (T - K_N)^2)
dN/dt = -r_N*N*log(T/K_N)
dC/dt = -rC*C*log(T/K_C)
dB/dt = r_B*B - gamma_B*B*C/(k_B + C)
"""


def build(name: str = "kimmel2021") -> ODEModel:
    """Build the Kimmel 2021 model (normal T, CAR-T and tumour cells; time in days)."""
    if name != "kimmel2021":
        raise CartKineticsError(f"unknown Kimmel model {name!r}")
    spec = build_spec(
        name,
        EQUATIONS,
        list(PARAMETERS),
        states={"N": "cells", "C": "cells", "B": "cells"},
        observations={
            "car_t_blood": (f"C/{CELLS_PER_UL!r}", "CAR+ cells/uL blood (cells / 5e8)"),
            "car_t": ("C", "cells (whole body)"),
            "normal_t": ("N", "cells"),
            "tumour": ("B", "cells"),
        },
        initial={"N": "N0", "C": "C0", "B": "B0"},
        dose_state="C",
        dose_parameter="C0",
        source=name,
    )
    return model_from_spec(
        spec,
        description=(
            "CAR-T expansion by immune reconstitution and competition with normal T cells "
            "(Gompertz), with saturating tumour killing"
        ),
        reference=REFERENCE,
        population=POPULATION,
        parameter_sets={"table1": {p.name: p.value for p in PARAMETERS}},
        primary_observation="car_t_blood",
        # the normal T cells N(0) = 3e9 are the level after lymphodepletion: a second
        # infusion re-expands only after lymphodepletion resets N (the authors' point)
        lymphodepletion_reset={"N": "N0"},
        dose_unit="CAR-T cells (a day-0 dose sets C0)",
        notes="r_B is a literature range in the paper; 0.01/day chosen as typical here.",
    )
