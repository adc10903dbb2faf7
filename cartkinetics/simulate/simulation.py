"""``simulate()``: virtual population x scenarios -> per-patient outcomes and summaries."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError
from cartkinetics.outcomes import OUTCOME_KEYS
from cartkinetics.serialize import is_jsonable
from cartkinetics.simulate.chunks import (
    Plan,
    TumourSpec,
    check_memory,
    run_dask,
    run_local,
)
from cartkinetics.simulate.scenarios import DoseExposure, Scenario
from cartkinetics.simulate.virtual_patients import ModelPopulation, Population, make_population

#: default LLOQ by observation unit, for ``persistence`` (typical qPCR ~50 copies/ug:
#: check your assay and pass ``lloq``)
DEFAULT_LLOQ = {"copies/ug": 50.0}
SUMMARY_KEYS = ("cmax", "tmax", "auc_0_28", "c_day28", "c_day90", "c_day180", "c_day365",
                "persistence")
#: time courses kept per scenario by default: enough for the 5-95 % bands of ``plot_bands``
#: (the 5th/95th percentiles of 200 curves are within ~2 percentile points)
DEFAULT_KEEP_CURVES = 200


def _output_unit(model: Any, population: Any = None) -> str:
    """Unit of the simulated levels: a fitted population's (its level parameters were fitted
    to data in that unit), else the model's observation unit."""
    from cartkinetics.units import canonical_unit

    unit = getattr(population, "unit", "") or ""
    if unit:
        return unit
    return canonical_unit(str(model.observations.get(model.primary_observation, "")))


def _lloq_default(model: Any, population: Any = None) -> float:
    unit = _output_unit(model, population)
    for key, v in DEFAULT_LLOQ.items():
        if unit.startswith(key):
            return v
    return float("nan")


@dataclass
class SimulationResult:
    """Per-patient outcomes of every scenario, with summaries and plots.

    Attributes
    ----------
    outcomes : DataFrame or None
        One row per virtual patient x scenario: ``scenario`` (name, categorical),
        ``patient``, ``weight`` (kg), ``dose_per_kg`` (cells/kg; NaN without a dose),
        ``status`` (0 success; else the solver status), the outcome columns of
        :mod:`cartkinetics.outcomes` (``cmax`` ...; days since the first infusion), with
        ``inf2_`` columns for a second infusion (days since it) and ``tumour_`` columns for
        tumour models. None when the run wrote Parquet partitions without collecting.
    scenarios : list of Scenario
    model : str
    n : int
        Virtual patients per scenario.
    seed : int
        Entropy of the run (pass it back as ``seed`` to reproduce the run exactly).
    curves : dict scenario name -> (t (nt,), C (q, nt)), the first q patients' time courses
        (q = ``keep_curves``, 200 by default), from which :meth:`plot_bands` draws.
    notes : list of str
        Modelling assumptions the reader must know (printed by the CLI).
    info : dict
        Population description, chunking, cluster, timings.
    """

    outcomes: pd.DataFrame | None
    scenarios: list[Scenario]
    model: str
    n: int
    seed: int
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    out_dir: str | None = None

    # ------------------------------------------------------------ data access
    def _frame(self, columns: list[str] | None = None) -> pd.DataFrame:
        if self.outcomes is not None:
            return self.outcomes if columns is None else self.outcomes[columns]
        if self.out_dir is None:
            raise CartKineticsError("this result holds no outcomes")
        frame = pd.read_parquet(Path(self.out_dir) / "outcomes", columns=columns)
        names = [s.name for s in self.scenarios]
        frame["scenario"] = pd.Categorical.from_codes(frame["scenario"].to_numpy(), names)
        return frame

    # ------------------------------------------------------------ summaries
    def summary(
        self,
        keys: tuple[str, ...] | list[str] | None = None,
        targets: dict[str, float] | None = None,
    ) -> pd.DataFrame:
        """Per scenario: n, failed solves, median and 5th/95th percentiles of each outcome,
        and the probability of reaching each exposure target.

        Parameters
        ----------
        keys : outcome columns to summarise (default: Cmax, Tmax, AUC0-28, levels at days
            28/90/180/365, persistence; plus the ``inf2_``/``tumour_`` columns present)
        targets : dict outcome -> threshold
            ``P(outcome >= threshold)`` among successful patients, with a 95 % Clopper-
            Pearson interval (columns ``p_<outcome>_ge_<threshold>`` and ``_lo``/``_hi``).
            A threshold on ``tumour_below_day`` etc. counts values <= threshold instead.

        Returns
        -------
        DataFrame, one row per scenario; columns ``<key>_median``, ``<key>_p05``,
        ``<key>_p95`` in the outcome's unit.
        """
        from scipy.stats import binomtest

        frame = self._frame()
        if keys is None:
            keys = [k for k in SUMMARY_KEYS if k in frame.columns]
            keys += [f"inf2_{k}" for k in SUMMARY_KEYS if f"inf2_{k}" in frame.columns]
            keys += [c for c in frame.columns if c.startswith("tumour_")]
        missing = [k for k in list(keys) + list(targets or {}) if k not in frame.columns]
        if missing:
            raise CartKineticsError(
                f"unknown outcome(s) {missing}; available: "
                f"{[c for c in frame.columns if c not in ('scenario', 'patient', 'status')]}"
            )
        rows = []
        for sc in self.scenarios:
            sub = frame[frame["scenario"] == sc.name]
            ok = sub["status"].to_numpy() == 0
            row: dict[str, Any] = {"scenario": sc.name, "n": int(len(sub)),
                                   "n_failed": int((~ok).sum())}
            for k in keys:
                v = sub[k].to_numpy(dtype=float)[ok]
                v = v[np.isfinite(v)]
                if v.size:
                    p05, med, p95 = np.percentile(v, [5, 50, 95])
                else:
                    p05 = med = p95 = float("nan")
                row[f"{k}_median"], row[f"{k}_p05"], row[f"{k}_p95"] = med, p05, p95
                row[f"{k}_n"] = int(v.size)
            for k, thr in (targets or {}).items():
                v = sub[k].to_numpy(dtype=float)[ok]
                below = k.endswith("_day") or k == "tumour_nadir"
                if below:
                    hit = np.isfinite(v) & (v <= thr)
                else:
                    hit = np.isfinite(v) & (v >= thr)
                name = f"p_{k}_{'le' if below else 'ge'}_{thr:g}"
                n_ok = int(ok.sum())
                if n_ok:
                    ci = binomtest(int(hit.sum()), n_ok).proportion_ci(0.95, method="exact")
                    row[name], row[name + "_lo"], row[name + "_hi"] = (
                        hit.sum() / n_ok, ci.low, ci.high)
                else:
                    row[name] = row[name + "_lo"] = row[name + "_hi"] = float("nan")
            rows.append(row)
        return pd.DataFrame(rows)

    def to_json_summary(
        self, keys: tuple[str, ...] = ("cmax", "tmax", "auc_0_28"),
        targets: dict[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """Per scenario ``{scenario, n, n_failed, cmax: {median, p05, p95}, ...}``."""
        table = self.summary(keys=list(keys), targets=targets)
        out = []
        for _, r in table.iterrows():
            d: dict[str, Any] = {"scenario": r["scenario"], "n": int(r["n"]),
                                 "n_failed": int(r["n_failed"])}
            for k in keys:
                d[k] = {s: _num(r[f"{k}_{s}"]) for s in ("median", "p05", "p95")}
            for c in table.columns:
                if c.startswith("p_"):
                    d[c] = _num(r[c])
            out.append(d)
        return out

    def to_frame(self) -> pd.DataFrame:
        """The per-patient outcomes: one row per virtual patient x scenario (see
        ``outcomes``; read back from the Parquet partitions when not collected)."""
        return self._frame()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description: model, n, seed, scenarios, notes and, per scenario, the
        median and 5-95 % interval of Cmax, Tmax and AUC0-28 (``to_json_summary``)."""
        return {
            "model": self.model, "n": self.n, "seed": self.seed,
            "scenarios": [s.as_dict() for s in self.scenarios],
            "summary": self.to_json_summary(),
            "notes": list(self.notes),
            "info": {k: v for k, v in self.info.items() if is_jsonable(v)},
        }

    def __repr__(self) -> str:
        names = [s.name for s in self.scenarios]
        shown = ", ".join(names[:4]) + (f", ... ({len(names)})" if len(names) > 4 else "")
        where = "in memory" if self.outcomes is not None else f"in {self.out_dir}"
        return (f"SimulationResult(model={self.model!r}, n={self.n} per scenario, "
                f"scenarios=[{shown}], seed={self.seed}, outcomes {where}, "
                f"curves kept for {len(self.curves)} scenario(s))")

    def _repr_html_(self) -> str:
        table = self.summary(keys=[k for k in ("cmax", "tmax", "auc_0_28")
                                   if k in self._frame().columns])
        cols = ["scenario", "n", "n_failed"] + [c for c in table.columns
                                                if c.endswith(("_median", "_p05", "_p95"))]
        head = (f"<p><b>SimulationResult</b>: model {self.model}, {self.n} virtual patients "
                f"per scenario, seed {self.seed}</p>")
        return head + table[cols].to_html(index=False, float_format=lambda x: f"{x:.4g}")

    # ------------------------------------------------------------ plots
    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """Prediction bands per scenario (:meth:`plot_bands`); returns the Axes."""
        return self.plot_bands(ax=ax, **kw)

    def plot_bands(self, ax: Any = None, log: bool = True) -> Any:
        """Median and 5-95 % prediction band of the kept time courses, per scenario.

        Returns the matplotlib Axes.
        """
        from cartkinetics.simulate.plots import plot_bands

        return plot_bands(self, ax=ax, log=log)

    def plot_dose_exposure(self, key: str = "cmax", ax: Any = None) -> Any:
        """Median and 5-95 % interval of an outcome against the dose per kg; returns the
        matplotlib Axes."""
        from cartkinetics.simulate.plots import plot_dose_exposure

        return plot_dose_exposure(self, key=key, ax=ax)

    def write(self, out_dir: str | Path, targets: dict[str, float] | None = None) -> Path:
        """Write summary.csv, summary.json and (if collected) outcomes.parquet."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.summary(targets=targets).to_csv(d / "summary.csv", index=False)
        meta = {
            "model": self.model, "n": self.n, "seed": self.seed, "notes": self.notes,
            "scenarios": [s.as_dict() for s in self.scenarios],
            "summary": self.to_json_summary(targets=targets),
            "info": {k: v for k, v in self.info.items() if is_jsonable(v)},
        }
        (d / "summary.json").write_text(json.dumps(meta, indent=2, default=_num))
        if self.outcomes is not None and not (d / "outcomes").exists():
            # (a run with out=DIR has streamed its partitions to DIR/outcomes already)
            self.outcomes.to_parquet(d / "outcomes.parquet", index=False)
        return d


def _num(x: Any) -> Any:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return None if not math.isfinite(f) else f


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        if isinstance(n, float) and n.is_integer():
            n = int(n)
        else:
            raise CartKineticsError(f"n (virtual patients) must be a positive integer, got {n!r}")
    if n <= 0:
        raise CartKineticsError(f"n (virtual patients) must be >= 1, got {n}")
    return int(n)


def simulate(
    model: str = "stein2019",
    n: int = 1000,
    scenarios: Scenario | list[Scenario] | None = None,
    *,
    population: Population | str | pd.DataFrame | None = None,
    covariates: dict[str, Any] | None = None,
    weight: Any = None,
    seed: int | None = None,
    exposure: DoseExposure | None = None,
    dose_exponent: float | None = None,
    lloq: float | None = None,
    times: Any = None,
    horizon: float = 365.0,
    chunk_size: int = 20_000,
    keep_curves: int | None = None,
    keep_params: bool = False,
    tumour: TumourSpec | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    out: str | Path | None = None,
    collect: bool = True,
    progress: bool | None = None,
    solver_options: dict[str, Any] | None = None,
) -> SimulationResult:
    """Simulate virtual patients of a library model under one or more dosing scenarios.

    Parameters
    ----------
    model : str
        Library model name (``cartkinetics.models.available()``).
    n : int
        Virtual patients (each scenario is run on the same n patients).
    scenarios : Scenario or list, optional
        Default: one scenario with the model's default dose. See :func:`scenario_grid`.
    population : Population, "fits:PATH", "draws:PATH", DataFrame of fits, optional
        Default: the model's typical values with its published log-normal variability.
    covariates : dict, optional
        Covariate distributions of the default population (``weight`` in kg, or a model
        parameter such as a baseline disease burden).
    weight : distribution spec, optional
        Shortcut for ``covariates["weight"]`` (e.g. ``"lognormal:70,0.2"``, ``70``, an array).
    seed : int, optional
        Same seed -> identical results, in process or on any Dask cluster. None: a fresh
        seed, reported in ``result.seed``.
    exposure, dose_exponent : DoseExposure / float, optional
        Dose-exposure assumption of the closed-form Stein model (default exponent 0: the
        published model, where dose does not change exposure).
    lloq : float, optional
        Limit of quantification (observation units) for ``persistence``; default 50
        copies/ug for qPCR models, else NaN (not computed).
    times : array, optional
        Output grid in days (default: fine after each infusion, to ``horizon`` days).
    chunk_size : int
        Virtual patients per chunk (fixes the random streams: keep it to reproduce a run).
    keep_curves : int, optional
        Keep the time courses of the first ``keep_curves`` patients per scenario (default
        200, enough for the prediction bands of ``plot_bands``; 0 keeps none).
    keep_params : bool
        Add the sampled parameters (``param_<name>``) to the outcome table.
    tumour : TumourSpec, optional
        Tumour outcomes for models with a tumour observation.
    workers : int, optional
        Run on a new dask.distributed LocalCluster with this many worker processes.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``).
    out : path, optional
        Write one Parquet partition per chunk to ``out/outcomes/`` (plus summaries).
    collect : bool
        Keep the per-patient outcomes in memory (False needs ``out``; summaries then read
        the partitions back).
    progress : bool, optional
        Progress bar (tqdm here, the Dask progress bar on a cluster); default on for runs
        of more than 10 chunks when stderr is a terminal.
    solver_options : dict, optional
        Passed to ``model.solve_batch`` for ODE models (``rtol``, ``method``, ...).

    Returns
    -------
    SimulationResult

    Notes
    -----
    Outcomes come from :mod:`cartkinetics.outcomes`, the code used for observed and fitted
    curves. Closed-form Stein 2019 runs in a fused numba kernel where every patient's grid
    holds his own kinks (Tmax, infusion and comedication days), so Cmax and Tmax are exact;
    ODE models run the numba batch solver on the shared grid (``times``) and the peak is
    refined between grid points by the outcome code. Registered user models work in
    process; Dask workers only know the library models (they look models up by name).
    """
    import time

    from cartkinetics import models

    t0 = time.perf_counter()
    n = _check_n(n)
    m = models.get(model) if isinstance(model, str) else model
    if not isinstance(m, models.Model):
        raise CartKineticsError(f"model must be a library model name, got {model!r}")
    if isinstance(scenarios, Scenario):
        scenarios = [scenarios]
    scenarios = list(scenarios) if scenarios else [Scenario()]
    for sc in scenarios:
        if not isinstance(sc, Scenario):
            raise CartKineticsError(f"scenarios must be Scenario objects, got {type(sc).__name__}")
        for what in ("parameter_factors", "second_factors", "no_lymphodepletion_factors"):
            for name in getattr(sc, what):
                m.parameter(name)  # raises CartKineticsError naming the parameter
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise CartKineticsError(f"scenario names must be unique, got {names}")
    if workers is not None and scheduler is not None:
        raise CartKineticsError("give workers (a new local cluster) or scheduler, not both")
    if not collect and out is None:
        raise CartKineticsError("collect=False needs out=DIR for the Parquet partitions")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise CartKineticsError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if keep_curves is None:
        keep_curves = DEFAULT_KEEP_CURVES
    if isinstance(keep_curves, bool) or not isinstance(keep_curves, int | np.integer) \
            or keep_curves < 0:
        raise CartKineticsError(f"keep_curves must be an integer >= 0, got {keep_curves!r}")
    covariates = dict(covariates or {})
    if weight is not None:
        covariates["weight"] = weight
    if isinstance(population, Population):
        if population.model != m.name:
            raise CartKineticsError(
                f"population is for model {population.model}, simulation for {m.name}")
        pop = population
        if covariates:
            raise CartKineticsError("give covariates to the Population, not to simulate()")
    else:
        pop = make_population(m.name, population, covariates=covariates)
    if exposure is None:
        exposure = DoseExposure(0.0 if dose_exponent is None else float(dose_exponent))
    elif dose_exponent is not None:
        raise CartKineticsError("give exposure or dose_exponent, not both")
    if lloq is None:
        lloq = _lloq_default(m, pop)
    if not (isinstance(lloq, int | float) and (math.isnan(lloq) or lloq > 0)):
        raise CartKineticsError(f"lloq must be > 0 (or NaN), got {lloq!r}")
    if not (isinstance(horizon, int | float) and horizon >= 28):
        raise CartKineticsError(f"horizon must be >= 28 days, got {horizon!r}")
    grid = None if times is None else m.check_times(times)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise CartKineticsError(f"seed must be a non-negative integer, got {seed!r}")

    notes = _notes(m, scenarios, exposure, pop, lloq)
    plan = Plan(
        model=m.name, population=pop, scenarios=scenarios, n=n, chunk_size=chunk_size,
        entropy=int(seed), exposure=exposure, lloq=float(lloq), horizon=float(horizon),
        times=grid, keep_curves=int(keep_curves), keep_params=bool(keep_params), tumour=tumour,
        out_dir=None if out is None else str(out), collect=collect,
        solver_options=dict(solver_options or {}),
    )
    check_memory(plan)
    if progress is None:
        progress = plan.n_chunks > 10 and sys.stderr.isatty()
    info: dict[str, Any] = {"population": pop.describe(), "unit": _output_unit(m, pop),
                            "chunk_size": chunk_size,
                            "n_chunks": plan.n_chunks}
    if workers is not None or scheduler is not None:
        parts, cinfo = run_dask(plan, workers, scheduler, progress)
        info.update(cinfo)
    else:
        parts = run_local(plan, progress)
    table = None
    if collect:
        # scenario-major, patients in order: the same table whatever ran the chunks
        table = pd.concat(
            [p["tables"][s] for s in range(len(scenarios)) for p in parts], ignore_index=True
        )
        table["scenario"] = pd.Categorical.from_codes(table["scenario"].to_numpy(), names)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if keep_curves:
        for s_idx, sc in enumerate(scenarios):
            blocks = [p["curves"][s_idx] for p in parts if s_idx in p["curves"]]
            if blocks:
                curves[sc.name] = (plan.grid(sc), np.concatenate(blocks)[:keep_curves])
    info["seconds"] = time.perf_counter() - t0
    result = SimulationResult(
        outcomes=table, scenarios=scenarios, model=m.name, n=n, seed=int(seed), curves=curves,
        notes=notes, info=info, out_dir=None if (out is None or collect) else str(out),
    )
    if out is not None:
        result.write(out)
    return result


def _notes(
    model: Any, scenarios: list[Scenario], exposure: DoseExposure, pop: Population,
    lloq: float,
) -> list[str]:
    notes = []
    doses = {(s.dose_per_kg, s.dose) for s in scenarios if s.needs_weight()}
    if model.is_closed_form:
        if exposure.exponent == 0.0 and (len(doses) > 1 or any(
                s.second_dose_per_kg or s.second_dose for s in scenarios)):
            notes.append(
                f"{model.name}: the published model has no dose covariate (dose did not "
                "change exposure in the data it was fitted to), so every dose level gives the "
                "same exposure here. Pass dose_exponent (--dose-exponent) to assume "
                f"Cmax ~ (dose per kg / {exposure.reference_per_kg:g})^exponent."
            )
        elif exposure.exponent != 0.0:
            notes.append(
                f"assumption, not from the published model: Cmax scales as (dose per kg / "
                f"{exposure.reference_per_kg:g} cells/kg)^{exposure.exponent:g}."
            )
        if any(len(s.split_days) > 1 for s in scenarios):
            notes.append(
                f"{model.name}: split doses are simulated as superposed curves, each "
                "fraction expanding like a whole dose scaled by its fraction (a linear-"
                "kinetics assumption; the published model has single infusions only)."
            )
        if any(s.second_infusion_day is not None for s in scenarios):
            notes.append(
                f"{model.name}: a second infusion adds a new curve from its day with the "
                "patient's own parameters times second_factors (default none: same expansion "
                "as the first); the published model has no second-infusion effect."
            )
        if any(s.second_infusion_day is not None and not s.lymphodepletion
               and not s.no_lymphodepletion_factors for s in scenarios):
            notes.append(
                f"{model.name} has no lymphodepletion mechanism: without "
                "no_lymphodepletion_factors a second infusion without lymphodepletion is "
                "simulated like one with it."
            )
    else:
        from cartkinetics.simulate.chunks import BLOOD_ML_PER_KG

        if str(model.dose_unit).startswith("cells/uL") and any(
                s.needs_weight() for s in scenarios):
            notes.append(
                f"{model.name} takes its dose as a blood concentration: cells are divided by "
                f"a blood volume of {BLOOD_ML_PER_KG:g} mL/kg x body weight.")
        if any(s.second_infusion_day is not None for s in scenarios):
            if model.lymphodepletion_reset:
                states = ", ".join(model.lymphodepletion_reset)
                notes.append(
                    f"{model.name}: lymphodepletion before the second infusion resets {states} "
                    "to its initial (post-lymphodepletion) level; without it the state goes on.")
            else:
                notes.append(
                    f"{model.name} has no lymphocyte state: lymphodepletion before a second "
                    "infusion changes nothing in this model.")
    if isinstance(pop, ModelPopulation) and any(s.needs_weight() for s in scenarios):
        notes.append(f"body weight: {pop.covariates['weight'].describe()} kg.")
    if math.isnan(lloq):
        notes.append("no LLOQ given: persistence is not computed (pass lloq).")
    return notes


__all__ = ["SimulationResult", "simulate", "OUTCOME_KEYS", "TumourSpec"]
