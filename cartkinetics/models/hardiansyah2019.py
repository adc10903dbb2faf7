"""Hardiansyah & Ng 2019: QSP model of anti-CD19 CAR-T cells, CLL B cells and cytokines.

Reference
---------
Hardiansyah D, Ng CM. Quantitative systems pharmacology model of chimeric antigen receptor
T-cell therapy. Clin Transl Sci 2019;12(4):343-349. doi:10.1111/cts.12636. Equations 1-9 and
Tables S1-S2 are in the paper's Supplementary File; this implementation follows the public
re-implementation nlmixr2/nlmixr2lib (Hardiansyah_2019_CART_upn1_qsp.R, ..._upn3_qsp.R and
the vignette Hardiansyah_2019_CART_crs_qsp), including its correction of the printed Eq. 7
(memory cells gain a_E CARTE_pb (1 - f(B)), the flux Eq. 5 loses).

Cells in units of 1e9 cells; cytokines in pg/mL; time in days::

    f(B)   = B / (B + h)
    dB/dt        = rB B - dB B - KBC CARTE_pb B
    dCARTE_pb/dt = rE CARTE_pb B - dE CARTE_pb - kin CARTE_pb + kout CARTE_t
                   - aE CARTE_pb (1 - f) + aM CARTM_pb f
    dCARTE_t/dt  = kin CARTE_pb - kout CARTE_t
    dCARTM_pb/dt = rM CARTM_pb - dM CARTM_pb - kin CARTM_pb + kout CARTM_t
                   + aE CARTE_pb (1 - f) - aM CARTM_pb f
    dCARTM_t/dt  = kin CARTM_pb - kout CARTM_t
    dIL6/dt   = dIL6 bl_IL6 + pIL6 1e6 B CARTE_pb - dIL6 IL6              (same for IL-10)
    dIFNg/dt  = dIFNg bl_IFNg + pIFNg 1e6 B CARTE_pb (aG + (1-aG) bG/(IL10 + bG)) - dIFNg IFNg

Dose: the CAR-T cells enter CARTE_pb split 10% / 30% / 60% on days 0, 1 and 2 (jumps);
UPN1 received 1.1e9 cells, UPN3 1.4e7 cells (``solve(params="UPN3")`` uses that dose).
The observed quantity is total CAR-T in blood, CARTE_pb + CARTM_pb (x 1e9 cells).
Cytokine baselines were digitised from Fig. 1b by nlmixr2lib (+/- 30%).
"""

from __future__ import annotations

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import Parameter
from cartkinetics.models.ode import ODEModel, model_from_spec
from cartkinetics.models.spec import build_spec

REFERENCE = (
    "Hardiansyah D, Ng CM. Quantitative systems pharmacology model of chimeric antigen "
    "receptor T-cell therapy. Clin Transl Sci 2019;12(4):343-349. doi:10.1111/cts.12636 "
    "(re-implementation: nlmixr2lib Hardiansyah_2019_CART_upn1_qsp / _upn3_qsp)"
)
POPULATION = (
    "Two patients with advanced chronic lymphocytic leukaemia (UPN1, UPN3 of Kalos et al. "
    "Sci Transl Med 2011) treated with anti-CD19 CAR-T"
)
S1 = "Hardiansyah 2019 Table S1 (fixed, literature)"
S2 = "Hardiansyah 2019 Table S2 (estimated; UPN1 column as typical)"
G = "1e9 cells"
INF = float("inf")


def _p(name: str, unit: str, value: float, source: str, desc: str, log: bool = True,
       upper: float = INF) -> Parameter:
    return Parameter(name, unit, value, 0.0, upper, log, source, desc)


UPN1 = {
    "pIL6": 1.8e-3, "pIL10": 7.0e-4, "pIFNg": 3.0e-4, "rE": 16.16, "dE": 23.04, "aE": 0.024,
    "KBC": 0.19, "bl_IL6": 1.7, "bl_IL10": 4.5, "bl_IFNg": 2.3, "B0": 4.14,
}
UPN3 = {
    "pIL6": 0.6e-2, "pIL10": 1.7e-2, "pIFNg": 0.6e-2, "rE": 14.40, "dE": 1.44, "aE": 0.12,
    "KBC": 2.21, "bl_IL6": 1.0, "bl_IL10": 0.5, "bl_IFNg": 1.7, "B0": 0.93,
}
DOSES = {"UPN1": 1.1e9, "UPN3": 1.4e7}

FIG = "nlmixr2lib, digitised from Hardiansyah 2019 Fig. 1b"
PARAMETERS = [
    _p("dIL6", "1/day", 3.96, S1, "IL-6 elimination rate"),
    _p("dIL10", "1/day", 4.68, S1, "IL-10 elimination rate"),
    _p("dIFNg", "1/day", 1.51, S1, "IFN-gamma elimination rate"),
    _p("aG", "-", 0.59, S1, "residual IFN-gamma secretion under IL-10 inhibition", True, 1.0),
    _p("bG", "pg/mL", 650.0, S1, "IL-10 level of half-maximal IFN-gamma inhibition"),
    _p("rM", "1/day", 5.09e-2, S1, "memory CAR-T growth rate"),
    _p("dM", "1/day", 4.08e-1, S1, "memory CAR-T death rate"),
    _p("aM", "1/day", 1.0, S1, "memory -> effector activation rate"),
    _p("kin", "1/day", 76.78, S1, "blood -> tissue distribution rate"),
    _p("kout", "1/day", 1.84, S1, "tissue -> blood distribution rate"),
    _p("h", G, 1e5, S1, "half-saturation of f(B)"),
    _p("rB", "1/day", 9.30e-3, S1, "CLL B-cell reproduction rate"),
    _p("dB", "1/day", 7.60e-3, S1, "CLL B-cell death rate"),
    _p("pIL6", "pg/uL per 1e15 cell^2/day", UPN1["pIL6"], S2, "IL-6 production"),
    _p("pIL10", "pg/uL per 1e15 cell^2/day", UPN1["pIL10"], S2, "IL-10 production"),
    _p("pIFNg", "pg/uL per 1e15 cell^2/day", UPN1["pIFNg"], S2, "IFN-gamma production"),
    _p("rE", f"1/({G} day)", UPN1["rE"], S2, "effector CAR-T replication rate"),
    _p("dE", "1/day", UPN1["dE"], S2, "effector CAR-T elimination rate"),
    _p("aE", "1/day", UPN1["aE"], S2, "effector -> memory activation rate"),
    _p("KBC", f"1/({G} day)", UPN1["KBC"], S2, "B-cell killing by effector CAR-T"),
    _p("bl_IL6", "pg/mL", UPN1["bl_IL6"], FIG, "baseline IL-6"),
    _p("bl_IL10", "pg/mL", UPN1["bl_IL10"], FIG, "baseline IL-10"),
    _p("bl_IFNg", "pg/mL", UPN1["bl_IFNg"], FIG, "baseline IFN-gamma"),
    _p("B0", G, UPN1["B0"], "Hardiansyah 2019 Fig. 2 caption", "baseline CLL burden in blood"),
]

EQUATIONS = """
f = B/(B + h)
dB/dt = rB*B - dB*B - KBC*CARTE_pb*B
dCARTE_pb/dt = rE*CARTE_pb*B - dE*CARTE_pb - kin*CARTE_pb + kout*CARTE_t
    - aE*CARTE_pb*(1 - f) + aM*CARTM_pb*f
dCARTE_t/dt = kin*CARTE_pb - kout*CARTE_t
dCARTM_pb/dt = rM*CARTM_pb - dM*CARTM_pb - kin*CARTM_pb + kout*CARTM_t
    + aE*CARTE_pb*(1 - f) - aM*CARTM_pb*f
dCARTM_t/dt = kin*CARTM_pb - kout*CARTM_t
dIL6/dt = dIL6*bl_IL6 + pIL6*1e6*B*CARTE_pb - dIL6*IL6
dIL10/dt = dIL10*bl_IL10 + pIL10*1e6*B*CARTE_pb - dIL10*IL10
dIFNg/dt = dIFNg*bl_IFNg + pIFNg*1e6*B*CARTE_pb*(aG + (1 - aG)*bG/(IL10 + bG)) - dIFNg*IFNg
"""


def build(name: str = "hardiansyah2019") -> ODEModel:
    """Build the Hardiansyah & Ng 2019 QSP model (cells in 1e9, time in days)."""
    if name != "hardiansyah2019":
        raise CartKineticsError(f"unknown Hardiansyah model {name!r}")
    states = {
        "B": G, "CARTE_pb": G, "CARTE_t": G, "CARTM_pb": G, "CARTM_t": G,
        "IL6": "pg/mL", "IL10": "pg/mL", "IFNg": "pg/mL",
    }
    spec = build_spec(
        name,
        EQUATIONS,
        list(PARAMETERS),
        states=states,
        observations={
            "car_t": ("CARTE_pb + CARTM_pb", f"{G} (total CAR-T in peripheral blood)"),
            "tumour": ("B", f"{G} (CLL B cells in blood)"),
            "car_t_memory": ("CARTM_pb", G),
            "il6": ("IL6", "pg/mL"),
            "il10": ("IL10", "pg/mL"),
            "ifng": ("IFNg", "pg/mL"),
        },
        initial={"B": "B0", "IL6": "bl_IL6", "IL10": "bl_IL10", "IFNg": "bl_IFNg"},
        dose_state="CARTE_pb",
        dose_scale=1e-9,
        dose_schedule=[(0.0, 0.1), (1.0, 0.3), (2.0, 0.6)],
        source=name,
    )
    return model_from_spec(
        spec,
        description=(
            "QSP: effector and memory CAR-T in blood and tissue, CLL B cells and cytokines "
            "(IL-6, IL-10, IFN-gamma); expansion driven by the B-cell burden"
        ),
        reference=REFERENCE,
        population=POPULATION,
        parameter_sets={"UPN1": dict(UPN1), "UPN3": dict(UPN3)},
        primary_observation="car_t",
        preferred_method="rodas5p",  # stiff: the explicit start of "auto" wastes steps
        default_dose=DOSES["UPN1"],
        dose_unit="CAR-T cells (split 10/30/60% over days 0, 1, 2)",
        set_doses=dict(DOSES),
        notes="typical values = UPN1; no population variability published (two patients)",
    )
