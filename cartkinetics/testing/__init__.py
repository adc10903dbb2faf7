"""Test data with a known truth: simulated cohorts for recovery tests, SBC and benchmarks.

Public so that tests, benchmarks and users' own validations share one generator.

The curves come from ``models.get("stein2019").solve_batch`` (the model library's own
closed form), not from the PyTensor code being tested, so a recovery test compares two
independent implementations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError

# tisagenlecleucel-trial-like schedule: days 1-28, then months 2, 3, 6, 9, 12
DEFAULT_DAYS = (1.0, 4.0, 7.0, 11.0, 14.0, 21.0, 28.0, 56.0, 84.0, 168.0, 252.0, 365.0)


def simulate_stein_cohort(
    n_patients: int = 20,
    *,
    infusions: int = 2,
    days: tuple[float, ...] | np.ndarray = DEFAULT_DAYS,
    typical: dict[str, float] | None = None,
    omega: dict[str, float] | None = None,
    cmax_ratio: float = 2.0,
    tmax_ratio: float = 11.0 / 14.0,
    tau: dict[str, float] | None = None,
    sigma: float = 0.5,
    lloq: float = 150.0,
    seed: int | np.random.Generator | None = 0,
    iov: dict[str, float] | None = None,
    effects: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate qPCR series of a Stein 2019 cohort with a second-infusion effect.

    Parameters
    ----------
    n_patients : int
    infusions : 1 or 2
    days : sampling days after each infusion
    typical : population typical values (default Stein 2019 Table 1, the model's typical
        values)
    omega : between-patient SD of each log-parameter (logit for fb); default Stein 2019's
        omega^2 taken as variances, i.e. sqrt(2.4, 0.38, 0.65, 0.91, 0.80, 0.86)
    cmax_ratio, tmax_ratio : typical second/first ratios of Cmax and Tmax
    tau : between-patient SD of the log infusion effects (default cmax 0.2, tmax 0.1)
    sigma : residual SD on the ln scale
    lloq : limit of quantification (copies/ug); values below are written as BLQ rows
    seed : int or Generator
    iov : dict parameter -> SD, optional
        Between-infusion (inter-occasion) variability: every series (patient, infusion) adds
        an independent N(0, SD^2) deviation to that log (logit for fb) parameter. Its draws
        come after all other draws of the patient, so ``iov=None`` gives the cohorts of
        earlier versions.
    effects : dict parameter -> shift, optional
        Further second-infusion shifts of the log (logit) parameters, e.g. ``{"beta": 0.5}``,
        added to those of ``cmax_ratio``/``tmax_ratio`` (no between-patient SD).

    Returns
    -------
    (frame, truth)
        frame: native long format (patient, infusion, day, value, lloq, assay, blq);
        truth: dict with ``mu`` (log/logit typical), ``omega``, ``delta`` (log ratios),
        ``tau``, ``sigma``, ``theta`` (n_patients*infusions, 6) and ``blq_fraction``.
    """
    from cartkinetics import models

    if infusions not in (1, 2):
        raise CartKineticsError("infusions must be 1 or 2")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    model = models.get("stein2019")
    names = model.param_names
    typ = {**dict(zip(names, model.typical.tolist(), strict=True)), **(typical or {})}
    om = {n: float(np.sqrt(model.bsv[n])) for n in names}
    om.update(omega or {})
    ta = {"cmax": 0.2, "tmax": 0.1, **(tau or {})}
    mu = {}
    for n in names:
        mu[n] = np.log(typ[n]) if n != "fb" else np.log(typ[n] / (1 - typ[n]))
    delta = {"cmax": float(np.log(cmax_ratio)), "tmax": float(np.log(tmax_ratio))}
    for n, v in (effects or {}).items():
        if n not in names:
            raise CartKineticsError(f"effects: unknown parameter {n!r}")
        delta[n] = delta.get(n, 0.0) + float(v)
    iov = dict(iov or {})
    for n in iov:
        if n not in names:
            raise CartKineticsError(f"iov: unknown parameter {n!r}")
    days = np.asarray(days, dtype=float)
    rows = []
    thetas = []
    for i in range(n_patients):
        eta = {n: om[n] * rng.standard_normal() for n in names}
        u = {e: ta.get(e, 0.0) * rng.standard_normal() for e in ("cmax", "tmax")}
        kappa = {(k, n): sd * rng.standard_normal() for k in range(1, infusions + 1)
                 for n, sd in iov.items()}
        for k in range(1, infusions + 1):
            th = []
            for n in names:
                phi = mu[n] + eta[n] + kappa.get((k, n), 0.0)
                if k == 2 and n in delta:
                    phi += delta[n] + u.get(n, 0.0)
                th.append(np.exp(phi) if n != "fb" else 1.0 / (1.0 + np.exp(-phi)))
            th = np.array(th)
            thetas.append(th)
            sol = model.solve(days, th)
            c = sol.observed[model.primary_observation]
            y = np.exp(np.log(c) + sigma * rng.standard_normal(days.size))
            for d, val in zip(days, y, strict=True):
                blq = bool(val < lloq)
                rows.append(
                    {
                        "patient": f"P{i + 1:02d}",
                        "infusion": k,
                        "day": d,
                        "value": lloq if blq else float(val),
                        "lloq": lloq,
                        "assay": "qpcr",
                        "blq": int(blq),
                    }
                )
    frame = pd.DataFrame(rows)
    truth = {
        "mu": mu,
        "omega": om,
        "delta": delta if infusions == 2 else {},
        "tau": ta if infusions == 2 else {},
        "iov": iov,
        "sigma": sigma,
        "theta": np.array(thetas),
        "typical": typ,
        "cmax_ratio": cmax_ratio,
        "tmax_difference": typ["tmax"] * (tmax_ratio - 1.0),
        "blq_fraction": float(frame["blq"].mean()),
    }
    return frame, truth


# ------------------------------------------------------------------ Liu 2022 cohorts
LIU_DAYS = np.array([2.0, 5.0, 7.0, 10.0, 14.0, 21.0, 28.0, 60.0])
LIU_CAR_T = (("qpcr", "car_t", 0.3),)


def liu_cohort(seed: int, outputs: tuple = LIU_CAR_T, rtol: float | None = None,
               unit: str | None = None, n_patients: int = 4):
    """Known Liu 2022 parameters per patient (typical x lognormal, CV about 20%), observed
    through ``outputs`` (assay, model observation, ln-scale residual SD) at ``LIU_DAYS``; values
    below 0.2 cells/uL are BLQ. Returns (PopulationData of all outputs, model, thetas)."""
    import pandas as pd

    from cartkinetics import models
    from cartkinetics.data import read_kinetics
    from cartkinetics.fit.population import prepare_population_data

    model = models.get("liu2022")
    rng = np.random.default_rng(seed)
    solve_kw = {} if rtol is None else {"rtol": rtol}
    rows, thetas = [], []
    for i in range(n_patients):
        th = model.typical * np.exp(0.2 * rng.standard_normal(model.n_params))
        thetas.append(th)
        sol = model.solve(LIU_DAYS, th, **solve_kw)
        for assay, obs, sd in outputs:
            y = sol.observed[obs] * np.exp(sd * rng.standard_normal(LIU_DAYS.size))
            for d, v in zip(LIU_DAYS, y, strict=True):
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


# ------------------------------------------------------------------ series factories
def make_series(
    day: Any,
    value: Any,
    blq: Any = None,
    lloq: float = 50.0,
    *,
    patient: str = "P",
    infusion: int = 1,
    assay: str = "qpcr",
    unit: str = "copies/ug",
    censor: bool = True,
) -> Any:
    """A :class:`cartkinetics.data.Series` from arrays (days, values in ``unit``).

    ``blq`` defaults to ``value < lloq``; with ``censor`` the BLQ rows' values are set to
    ``lloq`` (as the reader stores them), otherwise the values are kept as given.
    """
    from cartkinetics.data import Series

    day = np.asarray(day, dtype=float)
    value = np.asarray(value, dtype=float)
    blq = value < lloq if blq is None else np.asarray(blq, dtype=bool)
    if censor:
        value = np.where(blq, lloq, value)
    return Series(patient=patient, infusion=infusion, assay=assay, unit=unit, day=day.copy(),
                  value=value, lloq=np.full(day.size, float(lloq)), blq=blq)


def stein_series(
    params: dict[str, float] | None,
    days: Any,
    *,
    noise: float = 0.0,
    lloq: float = 50.0,
    seed: int = 0,
    patient: str = "P1",
    infusion: int = 1,
) -> Any:
    """A qPCR series of the Stein 2019 closed form (``params`` natural scale, default
    typical) at ``days``, log-normal noise of SD ``noise``, BLQ below ``lloq`` copies/ug."""
    from cartkinetics import models

    days = np.asarray(days, dtype=float)
    c = models.get("stein2019").solve(days, params).observed["transgene"]
    rng = np.random.default_rng(seed)
    y = c * np.exp(noise * rng.standard_normal(c.size))
    return make_series(days, y, lloq=lloq, patient=patient, infusion=infusion)

