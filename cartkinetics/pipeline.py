"""The analysis pipeline: every step computed once, its tables and figures written.

:func:`run_analysis` runs the whole job on a kinetics data set (read, NCA, first vs second
infusion, per-patient fits, hierarchical fit, cohort endpoints, exposure-response,
dose-scenario simulation), each step isolated, and writes CSV tables and PNG figures; the
last step hands the :class:`Analysis` to :func:`cartkinetics.report.build_report`, which only
renders. Later steps use earlier steps' results (the endpoints reuse the NCA and its
comparison; nothing is computed twice). ``cartkinetics demo`` (bundled synthetic cohort) and
``cartkinetics report`` (the user's files) are this one code path::

    >>> from cartkinetics.pipeline import AnalysisOptions, run_analysis
    >>> a = run_analysis("kinetics.csv", patients="patients.csv", cohort="patients.csv",
    ...                  out="my-report", options=AnalysisOptions(quick=True))  # doctest: +SKIP
    >>> a.report_path, [s.status for s in a.steps]                            # doctest: +SKIP
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cartkinetics.errors import CartKineticsError
from cartkinetics.report import figure_to_png
from cartkinetics.serialize import dumps

STEPS: dict[str, str] = {
    "data": "read the kinetics",
    "nca": "non-compartmental analysis",
    "compare": "first vs second infusion (NCA)",
    "fits": "per-patient fits",
    "population": "hierarchical fit",
    "endpoints": "cohort endpoints",
    "exposure": "exposure-response",
    "simulation": "dose-scenario simulation",
    "report": "HTML report",
}

#: section id of the HTML report -> heading (tests and readers can rely on these ids)
@dataclass
class StepResult:
    """Outcome of one analysis step.

    Attributes
    ----------
    key, title : str
    status : "ok" | "failed" | "skipped" | "pending"
    seconds : float
        Wall time of the step (s).
    message : str
        Why a step failed or was skipped; a one-line result otherwise.
    warnings : list of str
        Warnings raised while the step ran (deduplicated).
    """

    key: str
    title: str
    status: str = "pending"
    seconds: float = 0.0
    message: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class AnalysisOptions:
    """Settings of :func:`run_analysis`.

    Attributes
    ----------
    model : str
        Library model of the fits and the simulation (default ``stein2019``).
    assay : str, optional
        Assay to fit when the data hold several.
    population : bool
        Run the hierarchical (PyMC) fit.
    simulation : bool
        Run the dose-scenario simulation.
    quick : bool
        Fewer posterior draws and virtual patients (a smoke run, not for inference).
    draws, tune, chains : int, optional
        Hierarchical fit settings (default 300/300/2, quick 100/150/2).
    target_accept : float, optional
        NUTS target acceptance of the hierarchical fit (None: the fit's default).
    n_virtual : int, optional
        Virtual patients per simulated scenario (default 2000, quick 500).
    dose_levels : tuple of float
        Simulated doses, CAR-T cells/kg.
    dose_exponent : float
        Dose-exposure assumption of closed-form models (0: as published, no dose effect).
    workers, scheduler : optional
        The per-patient fits on a new local Dask cluster of ``workers`` processes, or on the
        Dask scheduler at ``scheduler`` (default: in this process).
    prior : {"population", None}
        Per-patient estimator: ``"population"`` (default) gives MAP fits with the model's
        published population distribution as prior, the estimator recommended for sparse
        series (docs/fitting.md, Validation); None gives plain maximum likelihood. Models
        without a published population fall back to maximum likelihood.
    seed : int
    title : str
    synthetic : bool
        The data are the bundled synthetic example (said at the top of the report).
    only : tuple of str, optional
        Run only these steps (keys of ``STEPS``; ``data`` and ``report`` always run).
    """

    model: str = "stein2019"
    assay: str | None = None
    population: bool = True
    simulation: bool = True
    quick: bool = False
    draws: int | None = None
    tune: int | None = None
    chains: int = 2
    target_accept: float | None = None
    n_virtual: int | None = None
    dose_levels: tuple[float, ...] = (1.0e6, 3.1e6, 5.0e6)
    dose_exponent: float = 0.5
    workers: int | None = None
    scheduler: str | None = None
    prior: str | None = "population"
    seed: int = 2026
    title: str = "cartkinetics report"
    synthetic: bool = False
    only: tuple[str, ...] | None = None

    def sampling(self) -> tuple[int, int, int]:
        """(draws, tune, chains) of the hierarchical fit, after the quick/default choice."""
        draws = self.draws or (100 if self.quick else 300)
        tune = self.tune or (150 if self.quick else 300)
        return draws, tune, self.chains


@dataclass
class Analysis:
    """Everything one run of :func:`run_analysis` produced.

    Attributes
    ----------
    out : Path
        Output folder.
    options : AnalysisOptions
    steps : list of StepResult
    data : KineticsData or None
    nca : NCAResult or None
    compare, fit_compare : dict or None
        ``compare_infusions`` output (a Comparison) on NCA and on model-based outcomes.
    fits : CohortFit or None
    population : PopulationFit or None
    endpoints : EndpointResult or None
    exposure : ExposureResponseResult or None
    simulation : SimulationResult or None
    figures : dict name -> (PNG bytes, caption), in the order drawn
    files : list of Path written
    report_path : Path or None
    """

    out: Path
    options: AnalysisOptions
    steps: list[StepResult] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    data: Any = None
    nca: Any = None
    compare: Any = None
    fits: Any = None
    fit_compare: Any = None
    population: Any = None
    endpoints: Any = None
    exposure: Any = None
    simulation: Any = None
    figures: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    report_path: Path | None = None

    def step(self, key: str) -> StepResult:
        """The result of the step named ``key`` (KeyError when there is none)."""
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(key)

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps if s.status == "failed"]

    @property
    def unit(self) -> str | None:
        """Level unit of the analysed assay (for axis labels)."""
        if self.data is None:
            return None
        obs = self.data.observations
        obs = obs[obs["status"] != "excluded"]
        if self.options.assay is not None:
            obs = obs[obs["assay"] == self.options.assay]
        units = obs["unit"].dropna().unique()
        return str(units[0]) if len(units) else None

    # ---------------------------------------------------------------- outputs
    def write_table(self, table: pd.DataFrame, name: str) -> Path:
        """Write ``table`` as CSV under the output folder as ``name``; return its path."""
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        self.files.append(path)
        return path

    def write_text(self, text: str, name: str) -> Path:
        """Write ``text`` under the output folder as ``name``; return its path."""
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.files.append(path)
        return path

    def add_figure(self, fig_or_png: Any, name: str, caption: str) -> Path:
        """Write ``name`` (PNG path relative to ``out``) and keep the bytes for the report."""
        png = fig_or_png if isinstance(fig_or_png, bytes) else figure_to_png(_as_figure(fig_or_png))
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        self.files.append(path)
        self.figures[name] = (png, caption)
        return path


def _as_figure(obj: Any) -> Any:
    """The Figure behind what a plotting function returned (Figure, Axes, array of Axes)."""
    if hasattr(obj, "savefig"):
        return obj
    if hasattr(obj, "figure"):
        return obj.figure
    import numpy as np

    return np.asarray(obj, dtype=object).ravel()[0].figure


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


class _Skip(Exception):
    """A step that cannot run with what was given (reported as skipped, not failed)."""


# ----------------------------------------------------------------------------- steps
def _step_data(a: Analysis, kinetics: Any, patients: Any) -> str:
    import dataclasses

    from cartkinetics.data import KineticsData, read_kinetics, read_patients

    if isinstance(kinetics, KineticsData):
        # read already (e.g. with the CLI's reading options): its row accounting is kept
        a.data = kinetics
        if patients is not None:
            a.data = dataclasses.replace(kinetics, patients=read_patients(patients))
    else:
        a.data = read_kinetics(kinetics, patients=patients)
    a.write_table(a.data.observations, "observations.csv")
    s = a.data.summary()
    return f"{s['patients']} patients, {s['series']} series, {s['rows']} rows"


def _step_nca(a: Analysis) -> str:
    from cartkinetics.noncompartmental import nca

    a.nca = nca(a.data, assay=a.options.assay)
    a.write_table(a.data.join_patients(a.nca.to_frame()), "nca.csv")
    return f"{len(a.nca)} series"


def _paired_figure(result: Any, title: str, unit: str | None) -> Any:
    from matplotlib.figure import Figure

    from cartkinetics.plots import paired_plot

    fig = Figure(figsize=(10.5, 3.8), layout="constrained")
    paired_plot(result, ax=fig.subplots(1, 3), unit=unit)
    fig.suptitle(title, fontsize=10)
    return fig


def _main_assay(a: Analysis) -> str | None:
    """The assay compared and fitted hierarchically: the one asked for, the only one, or
    qPCR (the assay of the CK literature) when the data hold several."""
    if a.options.assay is not None:
        return a.options.assay
    assays = _assays_read(a)
    if len(assays) <= 1:
        return None
    return "qpcr" if "qpcr" in assays else assays[0]


def _step_compare(a: Analysis) -> str:
    import warnings

    from cartkinetics.compare import compare_infusions

    table = a.nca.to_frame()
    assay = _main_assay(a)
    if assay is not None:
        table = table[table["assay"] == assay]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no pairs: this step says it below
        result = compare_infusions(table, basis="NCA")
    if not result.ok:
        raise _Skip("no patient has both a first and a second infusion")
    a.compare = result
    a.write_table(result.pairs, "compare_pairs.csv")
    a.write_text(dumps(result), "compare.json")
    tag = "SYNTHETIC example: " if a.options.synthetic else ""
    a.add_figure(
        _paired_figure(result, f"{tag}first vs second CAR-T infusion (NCA)", a.unit),
        "paired_plot.png",
        "First versus second infusion, one line per patient (NCA Cmax, Tmax, AUC0-28).",
    )
    return f"{result.n_pairs} pairs"


def _step_fits(a: Analysis) -> str:
    from cartkinetics import models
    from cartkinetics.fit.cohort import fit_cohort

    o = a.options
    # MAP needs a published population (typical values and variability) to act as prior
    prior = o.prior if getattr(models.get(o.model), "bsv", None) else None
    fits = fit_cohort(a.data, o.model, assay=o.assay, prior=prior,
                      workers=o.workers if (o.workers or 0) > 1 else None,
                      scheduler=o.scheduler)
    a.fits = fits
    estimator = "MAP, published population as prior" if prior else "maximum likelihood"
    a.write_table(fits.table, "fits/fits.csv")
    a.write_table(fits.outcome_table(), "fits/fit_outcomes.csv")
    a.add_figure(_fit_grid(fits), "fits/fits.png",
                 f"Per-patient {fits.model} fits (lmfit, {estimator}, BLQ by {fits.censoring}): "
                 "observed "
                 "levels (BLQ as open markers at the LLOQ), fitted curve and 95% band.")
    counts = ", ".join(f"{v} {k}" for k, v in fits.counts().items()) + f" ({estimator})"
    try:
        cmp = fits.compare(assay=_main_assay(a))
    except Exception as exc:  # e.g. too few usable pairs: the fits themselves stand
        return f"{counts}; model-based comparison not computed ({_short(exc)})"
    if cmp.get("n_pairs"):
        a.fit_compare = cmp
        a.write_table(cmp["pairs"], "fits/fit_compare_pairs.csv")
        a.write_text(dumps(cmp), "fits/fit_compare.json")
        a.add_figure(
            _paired_figure(cmp, f"first vs second infusion ({fits.model} fits)", a.unit),
            "fits/fit_paired_plot.png",
            "First versus second infusion on the fitted curves (model-based Cmax, Tmax, "
            "AUC0-28).",
        )
    return counts


def _fit_grid(fits: Any, ncols: int = 4) -> Any:
    """One panel per series; the band only for regular fits and the y range set by the data
    (a singular fit's band can span many decades and would flatten the panel)."""
    import math

    import numpy as np
    from matplotlib.figure import Figure

    n = max(1, len(fits.results))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.5 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, r in zip(axes.flat, fits.results, strict=False):
        try:
            r.plot(ax=ax, band=r.status == "converged")
        except Exception as exc:  # a failed fit still gets its panel
            ax.text(0.5, 0.5, _short(exc), ha="center", va="center", fontsize=7, wrap=True,
                    transform=ax.transAxes)
        pr = getattr(r, "predictions", None)
        if pr is not None and len(pr):
            v = pr["value"].to_numpy(float)
            v = v[np.isfinite(v) & (v > 0)]
            if v.size:
                ax.set_ylim(v.min() / 10.0, v.max() * 10.0)
        ax.set_title(f"{r.patient} inf {r.infusion} ({r.status})", fontsize=8)
        ax.set_xlabel("")
        ax.set_ylabel("")
        if ax.get_legend():
            ax.get_legend().remove()
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.supxlabel("days since infusion")
    return fig


def _step_population(a: Analysis) -> str:
    o = a.options
    if not o.population:
        raise _Skip("not requested (--population)")
    try:
        from cartkinetics.fit.population import fit_population
    except ImportError as exc:  # PyMC stack missing or module not there yet
        raise _Skip(f"hierarchical fit not available ({_short(exc)})") from exc
    draws, tune, chains = o.sampling()
    fit = fit_population(a.data, o.model, assay=_main_assay(a), draws=draws, tune=tune,
                         chains=chains, seed=o.seed, progress=False, warn=False, cores=1,
                         target_accept=o.target_accept)
    a.population = fit
    paths = fit.save(a.out / "population", figures=True)
    a.files += [p for k, p in paths.items() if not str(p).endswith(".png")]
    captions = {
        "population_pred": "Population prediction: median and 90% band of a new patient's "
                           "curve, per infusion, over the observations.",
        "individual_pred": "Individual posterior predictions (median and 95% band).",
        "forest_cmax_ratio": "Per-patient Cmax ratio (second/first), posterior median and "
                             "95% credible interval.",
        "vpc_censored": "Visual predictive check with the BLQ fraction (censored VPC).",
        "pit_residuals": "Randomised PIT residuals over time (BLQ rows drawn within their "
                         "censored range): standard normal under a correct model.",
    }
    for name, caption in captions.items():
        if name in paths:
            png = Path(paths[name]).read_bytes()
            a.add_figure(png, f"population/{name}.png", caption)
    eff = fit.infusion_effect()
    diag = fit.diagnostics(warn=False)
    text = f"{draws} draws x {chains} chains"
    if eff:
        r = eff["cmax_ratio"]
        text += f"; Cmax ratio {r['median']:.2f} ({r['ci_low']:.2f}-{r['ci_high']:.2f})"
    if not diag["ok"]:
        text += "; diagnostics not met (short run)"
    return text


def _step_endpoints(a: Analysis, cohort: Any) -> str:
    if cohort is None:
        raise _Skip("no cohort table (--cohort, or --patients with outcome columns)")
    from cartkinetics.endpoints import cohort_endpoints

    # the NCA and its comparison computed by the earlier steps, not again
    if a.nca is None:
        res = cohort_endpoints(cohort)
    else:
        res = cohort_endpoints(cohort, kinetics_table=a.nca.to_frame(),
                               kinetics_assay=_compare_assay(a), comparison=a.compare)
    a.endpoints = res
    for name, table in res.tables().items():
        a.write_table(table, f"endpoints/{name}.csv")
    a.write_text(res.to_markdown(), "endpoints/endpoints.md")
    a.write_text(res.to_json(), "endpoints/endpoints.json")
    captions = {
        "km_os": "Overall survival, Kaplan-Meier with log-log 95% band.",
        "km_efs": "Event-free survival, Kaplan-Meier with log-log 95% band.",
        "swimmer": "Swimmer plot: follow-up, response and events per patient.",
    }
    for name, fig in res.figures().items():
        a.add_figure(fig, f"endpoints/{name}.png", captions.get(name, name))
    return f"{res.n} patients"


def _compare_assay(a: Analysis) -> str | None:
    """The assay of the comparison: as :func:`_main_assay`, or the data's only assay."""
    assay = _main_assay(a)
    if assay is None and a.data is not None:
        assays = _assays_read(a)
        assay = assays[0] if assays else None
    return assay


def _assays_read(a: Analysis) -> list[str]:
    """Assays of the used and censored rows (an excluded row's assay may be blank)."""
    obs = a.data.observations
    kept = obs[obs["status"] != "excluded"]
    return sorted({str(x) for x in kept["assay"] if str(x)})


def _step_exposure(a: Analysis) -> str:
    import warnings

    if a.endpoints is None:
        raise _Skip("needs the cohort endpoints (a cohort table)")
    from cartkinetics.exposure import exposure_response

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every caveat is stated in the result itself
        try:
            res = exposure_response(a.endpoints.cohort, a.data, assay=a.options.assay)
        except (CartKineticsError, ValueError, KeyError) as exc:  # e.g. no outcome columns
            raise _Skip(f"not run: {exc}") from exc
    a.exposure = res
    for path in res.write(a.out / "exposure-response", figures=False):
        a.files.append(Path(path))
    return f"{res.n} patients, {len(res.binary)} binary, {len(res.survival)} time-to-event"


def _step_simulation(a: Analysis) -> str:
    o = a.options
    if not o.simulation:
        raise _Skip("not requested (--simulate)")
    try:
        from cartkinetics.simulate import scenario_grid, simulate
    except ImportError as exc:
        raise _Skip(f"simulation not available ({_short(exc)})") from exc
    from cartkinetics import models

    m = models.get(o.model)
    n = o.n_virtual or (500 if o.quick else 2000)
    kws: dict[str, Any] = {}
    if m.is_closed_form:
        kws["dose_exponent"] = o.dose_exponent
    res = simulate(o.model, n=n, scenarios=scenario_grid(dose_per_kg=list(o.dose_levels)),
                   seed=o.seed, keep_curves=min(n, 300), progress=False, **kws)
    a.simulation = res
    a.write_table(res.summary(), "simulation/summary.csv")
    a.add_figure(res.plot_bands(), "simulation/bands.png",
                 "Simulated median and 5-95% band of the level per dose scenario.")
    try:
        a.add_figure(res.plot_dose_exposure("cmax"), "simulation/dose_cmax.png",
                     "Simulated Cmax (median, 5-95%) against the dose per kg.")
    except Exception:  # no per-kg scenario: the bands stand alone
        pass
    return f"{len(res.scenarios)} scenarios x {n} virtual patients"


# ------------------------------------------------------------------------------ runner
def run_analysis(
    kinetics: Any,
    *,
    patients: Any = None,
    cohort: Any = None,
    out: str | Path = "cartkinetics-report",
    options: AnalysisOptions | None = None,
    log: Callable[..., None] | None = print,
) -> Analysis:
    """Run every analysis step on a kinetics data set and write tables, figures, report.html.

    Each step runs inside its own ``try``: a failing step is recorded (status, reason) and
    shown in the report; the others still run (those that need its result are skipped).

    Parameters
    ----------
    kinetics : path, DataFrame or KineticsData
        Kinetics data (see :func:`cartkinetics.data.read_kinetics`).
    patients : path or DataFrame, optional
        Patient covariates (joined by patient).
    cohort : path, DataFrame or Cohort, optional
        Cohort table for the endpoints (response, survival, safety).
    out : path
        Output folder (created).
    options : AnalysisOptions, optional
    log : callable, optional
        ``print``-like; receives one line per step. None: silent.

    Returns
    -------
    Analysis
        With ``report_path`` set when the report was written.
    """
    import warnings

    o = options or AnalysisOptions()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CartKineticsError(
            f"cannot create the output folder ({exc})", source=str(out)
        ) from exc
    a = Analysis(out=out, options=o)
    for key, value in (("kinetics", kinetics), ("patients", patients), ("cohort", cohort)):
        if isinstance(value, str | Path):
            a.sources[key] = str(value)
    a.steps = [StepResult(k, t) for k, t in STEPS.items()]
    needs = {"nca": "data", "compare": "nca", "fits": "data", "population": "data",
             "endpoints": "data", "exposure": "endpoints"}
    funcs: dict[str, Callable[[], str]] = {
        "data": lambda: _step_data(a, kinetics, patients),
        "nca": lambda: _step_nca(a),
        "compare": lambda: _step_compare(a),
        "fits": lambda: _step_fits(a),
        "population": lambda: _step_population(a),
        "endpoints": lambda: _step_endpoints(a, cohort),
        "exposure": lambda: _step_exposure(a),
        "simulation": lambda: _step_simulation(a),
        "report": lambda: _step_report(a),
    }
    n = len(a.steps)
    for i, st in enumerate(a.steps, start=1):
        if log is not None:
            log(f"[{i}/{n}] {st.title} ...", end="", flush=True)
        t0 = time.perf_counter()
        dep = needs.get(st.key)
        if o.only is not None and st.key not in ("data", "report") and st.key not in o.only:
            st.status, st.message = "skipped", "not selected (--only)"
        elif dep is not None and a.step(dep).status != "ok":
            st.status, st.message = "skipped", f"needs the '{STEPS[dep]}' step"
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    st.message = funcs[st.key]() or ""
                    st.status = "ok"
                except _Skip as exc:
                    st.status, st.message = "skipped", str(exc)
                except Exception as exc:  # one failing step must not stop the others
                    st.status, st.message = "failed", _short(exc)
                    st.warnings.append(traceback.format_exc(limit=6))
            seen = []
            for w in caught:
                text = f"{w.category.__name__}: {str(w.message).splitlines()[0][:300]}"
                if text not in seen:
                    seen.append(text)
            st.warnings[:0] = seen
        st.seconds = time.perf_counter() - t0
        if log is not None:
            tail = "" if st.status == "ok" else f" {st.status.upper()}"
            msg = f" ({st.message})" if st.message else ""
            log(f"{tail} {st.seconds:.1f} s{msg}")
    return a


def _step_report(a: Analysis) -> str:
    from cartkinetics.report import build_report

    report = build_report(a)
    a.report_path = report.write(a.out / "report.html")
    size = a.report_path.stat().st_size / 1e6
    return f"{a.report_path.name}, {size:.1f} MB"

