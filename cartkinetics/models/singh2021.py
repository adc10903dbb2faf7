"""Singh et al. 2021: multiscale PK-PD model of anti-BCMA CAR-T (idecabtagene vicleucel).

Reference
---------
Singh AP, Chen W, Zheng X, Mody H, Carpenter TJ, Zong A, Heald DL. Bench-to-bedside
translation of chimeric antigen receptor (CAR) T cells using a multiscale systems
pharmacokinetic-pharmacodynamic model: a case study with anti-BCMA CAR-T. CPT Pharmacometrics
Syst Pharmacol 2021;10(4):362-376. doi:10.1002/psp4.12598. Clinical model (CRB-401), as run in
the authors' Monolix code and re-implemented in nlmixr2/nlmixr2lib
(Singh_2021_idecabtageneVicleucel_human), which this file follows: the tumour-kill term
multiplies the tumour, the initial tumour is 2.5e9 cells/L of bone marrow and the tissue
effector pool starts at 1e-6 cells/L (keeps complexes per CAR-T finite at t = 0).

States: CAR-T effector / memory cells in blood (pb) and bone marrow (t), as cell numbers;
CAR-BCMA complexes (#/L marrow); tumour (cells/L marrow); serum M-protein (g/L); soluble
BCMA (ng/mL)::

    Kon_d = Kon 86400 / 6.023e23 (1/(#/L)/day),  Koff_d = Koff 86400 (1/day)
    Ct     = (CARTe_t + CARTm_t)/Vbm
    CARfree = Ct AgCAR - Cplx ;  Agfree = Tumor AgTumor - Cplx
    Kexp   = Kexp_max (Cplx/Ct) / (EC50 + Cplx/Ct)
    Kkill  = Kkill_max (Cplx/Tumor) / (KC50 + Cplx/Tumor)
    dCARTe_pb = -K12 CARTe_pb + K21 CARTe_t - Kel_e CARTe_pb
    dCARTm_pb = -K12 CARTm_pb + K21 CARTm_t - Kel_m CARTm_pb
    dCARTe_t  =  K12 CARTe_pb - K21 CARTe_t + Kexp CARTe_t - Rm CARTe_t
    dCARTm_t  =  K12 CARTm_pb - K21 CARTm_t + Rm CARTe_t
    dCplx     =  Kon_d CARfree Agfree - Koff_d Cplx
    dTumor    =  Kg Tumor - Kkill Tumor
    dMprot    =  Pm 1e-12 Tumor0 (Tumor/Tumor0)^gm - Km Mprot
    dsBCMA    =  Pb 1e-6 Tumor0 (Tumor/Tumor0)^gb - Kb sBCMA
    transgene (copies/ug) = TransC (CARTe_pb + CARTm_pb)/Vb

Note that the seed of 1e-6 effector cells/L in marrow expands at up to Kexp_max even without
a dose, so "no CAR-T" is not a steady state of this model beyond a few weeks.

Between-subject variability (``bsv``, omega^2 of log-parameters): Table 1 omegas squared as
nlmixr2lib enters them, plus the authors' assumed 50% on K12, K21, Kel_e, Kel_m.
"""

from __future__ import annotations

from cartkinetics.errors import CartKineticsError
from cartkinetics.models.base import Parameter
from cartkinetics.models.ode import ODEModel, model_from_spec
from cartkinetics.models.spec import build_spec

REFERENCE = (
    "Singh AP, Chen W, Zheng X, Mody H, Carpenter TJ, Zong A, Heald DL. Bench-to-bedside "
    "translation of chimeric antigen receptor (CAR) T cells using a multiscale systems "
    "pharmacokinetic-pharmacodynamic model: a case study with anti-BCMA CAR-T. CPT "
    "Pharmacometrics Syst Pharmacol 2021;10(4):362-376. doi:10.1002/psp4.12598 "
    "(re-implementation: nlmixr2lib Singh_2021_idecabtageneVicleucel_human)"
)
POPULATION = (
    "Relapsed/refractory multiple myeloma, phase 1 CRB-401 (33 patients; flat doses 50, 150, "
    "450 or 800 x 1e6 CAR+ T cells); mean profiles digitised from Raje et al. NEJM 2019"
)
T1 = "Singh 2021 Table 1 (clinical model)"
CODE = "Singh 2021 Monolix code (PSP4-10-362-s002) via nlmixr2lib"
INF = float("inf")


def _p(name, unit, value, source, desc, log=True):  # noqa: ANN001, ANN202
    return Parameter(name, unit, value, 0.0, INF, log, source, desc)


PARAMETERS = [
    _p("Kexp_max", "1/day", 1.73, T1, "maximal effector expansion rate"),
    _p("EC50_exp", "complexes/cell", 10.0, T1, "complexes per CAR-T at half-maximal expansion"),
    _p("Rm", "1/day", 2e-5, T1, "effector -> memory conversion rate"),
    _p("Kel_e", "1/day", 113.0, T1, "effector elimination from blood"),
    _p("Kel_m", "1/day", 0.219, T1, "memory elimination from blood"),
    _p("K12", "1/day", 1.71, T1, "blood -> bone marrow distribution"),
    _p("K21", "1/day", 0.176, T1, "bone marrow -> blood redistribution"),
    _p("Kkill_max", "1/day", 0.343, T1, "maximal tumour killing rate"),
    _p("gam_m", "-", 0.215, T1, "exponent of tumour burden on M-protein production"),
    _p("gam_b", "-", 1.0, T1 + " (fixed)", "exponent of tumour burden on sBCMA production"),
    _p("KC50_kill", "complexes/cell", 2.24, T1 + " (fixed, in vitro)",
       "complexes per tumour cell at half-maximal killing"),
    _p("Kg", "1/day", 0.008, T1 + " (fixed)", "tumour growth rate"),
    _p("Kon", "1/(M s)", 7.103e4, CODE, "CAR-BCMA association rate"),
    _p("Koff", "1/s", 2.385e-3, CODE, "CAR-BCMA dissociation rate"),
    _p("Ag_CAR", "CARs/cell", 15000.0, T1 + " (fixed)", "CAR density"),
    _p("Ag_tumor", "BCMA/cell", 12590.0, T1 + " (fixed)", "BCMA density on myeloma cells"),
    _p("TransC", "copies/ug per cells/L", 0.002, T1 + " (fixed)",
       "blood CAR-T (cells/L) to transgene copies/ug"),
    _p("Vb", "L", 5.0, T1 + " (fixed)", "blood volume"),
    _p("Vbm", "L", 3.65, T1 + " (fixed)", "bone marrow volume"),
    _p("Tumor0", "cells/L", 2.5e9, CODE, "baseline myeloma cells in bone marrow"),
    _p("Km", "1/day", 0.117, T1 + " (fixed)", "M-protein degradation rate"),
    _p("Pm", "pg/cell/day", 12.1, T1 + " (fixed)", "M-protein production per tumour cell"),
    _p("Kb", "1/day", 0.7, T1 + " (fixed)", "soluble BCMA degradation rate"),
    _p("Pb", "pg/cell/day", 0.175, T1 + " (fixed, calculated)", "sBCMA production per cell"),
]
BSV = {
    "Kexp_max": 0.22**2, "Rm": 0.00004**2, "Kkill_max": 0.50**2, "gam_m": 0.21**2,
    "gam_b": 1.0**2, "K12": 0.25, "K21": 0.25, "Kel_e": 0.25, "Kel_m": 0.25,
}

EQUATIONS = """
Kon_d = Kon*86400/6.023e23
Koff_d = Koff*86400
Ct = (CARTe_t + CARTm_t)/Vbm
CARfree = Ct*Ag_CAR - Cplx
Agfree = Tumor*Ag_tumor - Cplx
Kexp = Kexp_max*(Cplx/Ct)/(EC50_exp + Cplx/Ct)
Kkill = Kkill_max*(Cplx/Tumor)/(KC50_kill + Cplx/Tumor)
dCARTe_pb/dt = -K12*CARTe_pb + K21*CARTe_t - Kel_e*CARTe_pb
dCARTm_pb/dt = -K12*CARTm_pb + K21*CARTm_t - Kel_m*CARTm_pb
dCARTe_t/dt = K12*CARTe_pb - K21*CARTe_t + Kexp*CARTe_t - Rm*CARTe_t
dCARTm_t/dt = K12*CARTm_pb - K21*CARTm_t + Rm*CARTe_t
dCplx/dt = Kon_d*CARfree*Agfree - Koff_d*Cplx
dTumor/dt = Kg*Tumor - Kkill*Tumor
dMprot/dt = Pm*1e-12*Tumor0*(Tumor/Tumor0)^gam_m - Km*Mprot
dsBCMA/dt = Pb*1e-6*Tumor0*(Tumor/Tumor0)^gam_b - Kb*sBCMA
"""


def build(name: str = "singh2021") -> ODEModel:
    """Build the Singh 2021 ide-cel multiscale model (transgene copies/ug; time in days)."""
    if name != "singh2021":
        raise CartKineticsError(f"unknown Singh model {name!r}")
    m0, b0 = "Pm*1e-12*Tumor0/Km", "Pb*1e-6*Tumor0/Kb"
    spec = build_spec(
        name,
        EQUATIONS,
        list(PARAMETERS),
        states={
            "CARTe_pb": "cells", "CARTm_pb": "cells", "CARTe_t": "cells", "CARTm_t": "cells",
            "Cplx": "complexes/L", "Tumor": "cells/L", "Mprot": "g/L", "sBCMA": "ng/mL",
        },
        observations={
            "transgene": ("TransC*(CARTe_pb + CARTm_pb)/Vb", "copies/ug genomic DNA (blood)"),
            "car_t": ("CARTe_pb + CARTm_pb", "cells in blood"),
            "mprotein_pctchg": (f"(Mprot - {m0})*100/({m0})", "% change of serum M-protein"),
            "sbcma_pctchg": (f"(sBCMA - {b0})*100/({b0})", "% change of soluble BCMA"),
            "tumour": ("Tumor", "cells/L bone marrow"),
        },
        initial={"CARTe_t": "1e-6*Vbm", "Tumor": "Tumor0", "Mprot": m0, "sBCMA": b0},
        dose_state="CARTe_pb",
        source=name,
    )
    return model_from_spec(
        spec,
        description=(
            "Multiscale PK-PD of anti-BCMA CAR-T: effector/memory cells in blood and marrow, "
            "CAR-BCMA binding driving expansion and killing, M-protein and sBCMA biomarkers"
        ),
        reference=REFERENCE,
        population=POPULATION,
        parameter_sets={"clinical": {p.name: p.value for p in PARAMETERS}},
        primary_observation="transgene",
        bsv=BSV,
        default_dose=450e6,
        dose_unit="CAR+ T cells (flat dose; CRB-401 levels 50, 150, 450, 800 x 1e6)",
        preferred_method="rodas5p",
        notes="bsv: Table 1 omegas squared + assumed 50% on K12, K21, Kel_e, Kel_m (nlmixr2lib)",
    )
