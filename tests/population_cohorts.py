"""Simulated Liu 2022 cohorts shared by the population and solver tests (defines no tests)."""

from __future__ import annotations

import numpy as np

from cartkinetics import models

DAYS = np.array([2.0, 5.0, 7.0, 10.0, 14.0, 21.0, 28.0, 60.0])
CAR_T = (("qpcr", "car_t", 0.3),)


def liu_cohort(seed: int, outputs: tuple = CAR_T, rtol: float | None = None,
               unit: str | None = None, n_patients: int = 4):
    """Known Liu 2022 parameters per patient (typical x lognormal, CV about 20%), observed
    through ``outputs`` (assay, model observation, ln-scale residual SD) at ``DAYS``; values
    below 0.2 cells/uL are BLQ. Returns (PopulationData of all outputs, model, thetas)."""
    import pandas as pd

    from cartkinetics.data import read_kinetics
    from cartkinetics.fit.population import prepare_population_data

    model = models.get("liu2022")
    rng = np.random.default_rng(seed)
    solve_kw = {} if rtol is None else {"rtol": rtol}
    rows, thetas = [], []
    for i in range(n_patients):
        th = model.typical * np.exp(0.2 * rng.standard_normal(model.n_params))
        thetas.append(th)
        sol = model.solve(DAYS, th, **solve_kw)
        for assay, obs, sd in outputs:
            y = sol.observed[obs] * np.exp(sd * rng.standard_normal(DAYS.size))
            for d, v in zip(DAYS, y, strict=True):
                row = {"patient": f"L{i}", "infusion": 1, "day": d, "value": max(v, 0.2),
                       "lloq": 0.2, "assay": assay, "blq": int(v < 0.2)}
                if unit is not None and assay not in ("qpcr", "flow"):
                    row["unit"] = unit  # the built-in assays keep their own unit
                rows.append(row)
    assays = [a for a, _, _ in outputs]
    extra = {a: unit for a in assays if a not in ("qpcr", "flow")} or None
    data = read_kinetics(pd.DataFrame(rows), assays=extra)
    pdata = prepare_population_data(data, assay=assays if len(assays) > 1 else None)
    return pdata, model, np.array(thetas)
