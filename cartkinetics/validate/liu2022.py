"""Liu 2022's 32 B-ALL patients: reading the authors' files, and the settings of their
hierarchical fit (one place: the benchmark, the docs and the command line use these).

The authors' data (Lunan12/CAR-T-model, digitised in ``../shared/data/liu2022-ball``) are four
files ``Data_{CR,PR,NR,NegR}.csv`` with columns ID, time (days), y and y_ID (1: CAR-T cells/uL,
2: CD19+ leukaemic cells/uL); BLQ CAR-T levels are written as 0.2. Patient ids restart in every
file, so patients are named ``CR-1``, ``PR-3``, ...

Write a kinetics file, a patient table and the priors for the command line::

    python -m cartkinetics.validate.liu2022 ../shared/data/liu2022-ball OUT_DIR

which prints the ``cartkinetics fit-population`` command that fits them (docs/population.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError

GROUPS = ("CR", "PR", "NR", "NegR")
# the shared data folder next to the repository (present in CI; never copied into it)
DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "liu2022-ball"
MAPPING = {"columns": {"TIME": "time", "DV": "y"}, "filter": {"y_ID": 1},
           "blq_values": {"0.2": 0.2}, "assay": "flow"}

# Free parameters (per-patient random effects); the others fixed at the authors' example
# values, nB0 at each patient's measured baseline leukaemia (the authors' regressor). With
# rTA0, lTA0 and ka free, ka was not identified (log-SD 8 between patients) and the residual
# SD was 1.0; with these four it was 0.7 (per-patient fits, docs/population.md).
FREE = ("rTA0", "lTA0", "eBp", "nTN0")
# Centred random effects: those each patient's data pin down. Posterior SD within a patient
# against the between-patient SD (2 x 400 draws, run of 2026-12-06): rTA0 0.2-1.5 vs 1.4,
# lTA0 0.2-0.8 vs 0.7 (centred); eBp 0.4-0.9 vs 0.6 and nTN0 0.8-3.8 vs 3.1, set by the
# prior (non-centred). Centring rTA0 as well as lTA0 (eBp non-centred) raised the least bulk
# ESS per second 6-fold over centring eBp and lTA0 (docs/population.md).
CENTRED = ("rTA0", "lTA0")
# a normal residual: with Student-t (nu 2-3) sparse series had one mode per choice of outliers
RESIDUAL = "normal"
# relative tolerance of the ODE solves in the likelihood: 1e-4 halves the solver's steps
# against the library's default 1e-6 (2755 against 5499 Tsit5 steps for the 32 series), an
# error in ln prediction of 7e-4 against a residual SD of 1.4, and gave the same posterior
# (population medians within 3%; runs of 2026-12-06, docs/population.md)
RTOL = 1e-4
# population means: Normal(ln authors' example value, MU_SD) on the log scale; between-patient
# SDs LogNormal(median, sd_log) (no omegas are published with the authors' code), nTN0's (the
# dose, cells/uL) with median 1.0 and sd_log 0.25: CAR-T doses vary within about a factor 10
MU_SD = 0.5
OMEGA = (0.5, 0.5)
OMEGA_OF = {"nTN0": (1.0, 0.25)}


def _frame(src: Path, group: str) -> Any:
    import pandas as pd

    path = src / f"Data_{group}.csv"
    if not path.is_file():
        raise CartKineticsError(f"Liu 2022 data: {path} not found (expected Data_{{CR,PR,NR,"
                                "NegR}.csv from Lunan12/CAR-T-model)", source=str(path))
    return pd.read_csv(path)


def read_cart(src: str | Path = DEFAULT_SOURCE, leukaemia: bool = False) -> Any:
    """CAR-T levels (y_ID 1, assay ``flow``, cells/uL) of the 32 patients as KineticsData;
    with ``leukaemia`` also the CD19+ leukaemia counts (y_ID 2, assay ``leukaemia``) after day
    0 (the day-0 count is the regressor nB0, see :func:`baseline`, so it does not enter
    twice)."""
    from cartkinetics.data import KineticsData, read_kinetics

    src = Path(src)
    parts = [read_kinetics(src / f"Data_{g}.csv", mapping=MAPPING, patient_prefix=f"{g}-")
             for g in GROUPS]
    if leukaemia:
        for g in GROUPS:
            d = _frame(src, g)
            d = d[(d["y_ID"] == 2) & (d["time"] > 0)]
            parts.append(read_kinetics(
                d, mapping={"columns": {"TIME": "time", "DV": "y"}, "blq_values": {"0.2": 0.2},
                            "assay": "leukaemia", "unit": "cells/uL"},
                patient_prefix=f"{g}-", assays={"leukaemia": "cells/uL"}))
    return KineticsData.concat(parts)


def baseline(src: str | Path = DEFAULT_SOURCE) -> dict[str, float]:
    """Each patient's baseline CD19+ leukaemia (cells/uL): the day-0 leukaemia count (y_ID 2),
    the authors' regressor nB0 (their ``Reg`` column where the file has one; Data_PR.csv has
    none, its day-0 leukaemia rows carry the same value)."""
    out = {}
    for g in GROUPS:
        d = _frame(Path(src), g)
        base = d[(d["y_ID"] == 2) & (d["time"] == 0)].groupby("ID")["y"].first()
        for pid, v in base.items():
            out[f"{g}-{pid}"] = float(v)
    return out


def priors(free: tuple[str, ...] | list[str] = FREE, mu_sd: float = MU_SD,
           omega: tuple[float, float] = OMEGA,
           omega_of: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """The priors of the fit (``fit_population(priors=...)``): means on the log scale
    around the authors' example values, between-patient SDs LogNormal(median, sd_log)."""
    from cartkinetics import models

    model = models.get("liu2022")
    typical = dict(zip(model.param_names, model.typical, strict=True))
    out: dict[str, Any] = {
        "mu": {p: [float(np.log(typical[p])), float(mu_sd)] for p in free},
        "omega": {p: ["lognormal", float(omega[0]), float(omega[1])] for p in free},
    }
    for p, (med, sdl) in (OMEGA_OF if omega_of is None else omega_of).items():
        if p in free:
            out["omega"][p] = ["lognormal", float(med), float(sdl)]
    return out


def write_files(src: str | Path, out: str | Path, data: Any = None) -> dict[str, Path]:
    """Write ``liu2022_cart.csv`` (native long format: the used and BLQ CAR-T rows),
    ``liu2022_patients.csv`` (patient, nB0) and ``liu2022_priors.json`` into ``out``;
    ``data``: :func:`read_cart` of ``src`` when the caller has read it already."""
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = read_cart(src) if data is None else data
    obs = data.observations
    rows = obs[obs["status"] != "excluded"]
    kin = rows[["patient", "infusion", "day", "value", "lloq", "blq", "assay", "unit"]]
    paths = {"kinetics": out / "liu2022_cart.csv", "patients": out / "liu2022_patients.csv",
             "priors": out / "liu2022_priors.json"}
    kin.to_csv(paths["kinetics"], index=False)
    base = baseline(src)
    pd.DataFrame({"patient": list(base), "nB0": list(base.values())}).to_csv(
        paths["patients"], index=False)
    paths["priors"].write_text(json.dumps(priors(), indent=1) + "\n")
    return paths


def _short(x: float) -> str:
    """1e-4 rather than 0.0001 (as the docs write it); 1.5e-4 keeps its digits."""
    mant, exp = f"{x:e}".split("e")
    return f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"


def command(paths: dict[str, Path], time_budget: float = 600.0) -> str:
    """The ``cartkinetics fit-population`` command of the fit (4 dispersed chains)."""
    return (
        f"cartkinetics fit-population {paths['kinetics']} --model liu2022 --patients "
        f"{paths['patients']} --free {','.join(FREE)} --fix nB0=nB0 --centred "
        f"{','.join(CENTRED)} --priors {paths['priors']} --residual {RESIDUAL} "
        f"--rtol {_short(RTOL)} --chains 4 --init dispersed --tune 300 --draws 500 "
        f"--time-budget {time_budget:g}"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m cartkinetics.validate.liu2022 SOURCE_DIR OUT_DIR``: write the files, say
    what was read (rows used, censored, excluded) and print the fit's command."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m cartkinetics.validate.liu2022 SOURCE_DIR OUT_DIR",
              file=sys.stderr)
        return 2
    try:
        data = read_cart(argv[0])
        paths = write_files(argv[0], argv[1], data)
    except CartKineticsError as e:
        # a wrong folder is the usual mistake: the message names the file looked for
        print(f"error: {e}\n  SOURCE_DIR is the folder of the authors' Data_CR.csv, "
              "Data_PR.csv, Data_NR.csv and Data_NegR.csv (e.g. ../shared/data/liu2022-ball)",
              file=sys.stderr)
        return 2
    print(data.describe())
    for k, p in paths.items():
        print(f"{k}: {p}")
    print("\nfit all 32 patients with:\n  " + command(paths))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
