"""Test data with a known truth: simulated cohorts for recovery tests, SBC and benchmarks.

Public so that tests, benchmarks and users' own validations share one generator
(``cartkinetics.fit.population_sim`` re-exports it under its old name).

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
