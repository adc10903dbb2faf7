"""A self-contained HTML report, and the analysis that fills it.

:class:`HtmlReport` collects sections of text, tables and figures and writes one HTML file
with nothing external: figures are base64 PNG data URIs and the stylesheet is inline, so the
file opens anywhere (e-mail attachment, regulatory submission folder) without a server.

:func:`run_analysis` runs the whole job on a kinetics data set (read, NCA, first vs second
infusion, per-patient fits, hierarchical fit, cohort endpoints, dose-scenario simulation),
each step isolated, writes CSV tables and PNG figures, and :func:`build_report` assembles
``report.html`` from whatever the steps produced. ``cartkinetics demo`` (bundled synthetic
cohort) and ``cartkinetics report`` (the user's files) are this one code path::

    >>> from cartkinetics.report import AnalysisOptions, run_analysis
    >>> a = run_analysis("kinetics.csv", patients="patients.csv", cohort="patients.csv",
    ...                  out="my-report", options=AnalysisOptions(quick=True))  # doctest: +SKIP
    >>> a.report_path, [s.status for s in a.steps]                            # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cartkinetics.errors import CartKineticsError

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #2c5f8a;padding-bottom:.2em}h2{color:#2c5f8a;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#eef3f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}.note{background:#fff8e1;border-left:4px solid #f0b400;
padding:.4em .8em}.meta{color:#666;font-size:.85em}pre{background:#f6f8fa;padding:.6em;
overflow-x:auto;font-size:.85em}caption{text-align:left;font-weight:600;padding:.2em 0}
nav.toc{font-size:.9em;margin:.5em 0 1em}nav.toc a{margin-right:1em}
details{margin:.4em 0;font-size:.85em;color:#555}
"""


def figure_to_png(fig: Any, dpi: int = 110) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return html.escape(str(value))


def _cell(value: Any) -> str:
    """A table cell; numbers right-aligned."""
    import numbers

    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return f'<td class="num">{_fmt(value)}</td>'
    return f"<td>{_fmt(value)}</td>"


@dataclass
class HtmlReport:
    """Collects sections and writes one self-contained HTML file."""

    title: str
    blocks: list[str] = field(default_factory=list)
    #: (anchor, label) pairs of a table of contents drawn under the title
    toc: list[tuple[str, str]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        """Add a section heading (optionally with an HTML anchor)."""
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.blocks.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")

    def details(self, summary: str, text: str) -> None:
        """A collapsed block of preformatted text (warnings, tracebacks)."""
        self.blocks.append(
            f"<details><summary>{html.escape(summary)}</summary>"
            f"<pre>{html.escape(text)}</pre></details>"
        )

    def text(self, text: str, note: bool = False) -> None:
        """Add paragraphs of text (blank-line separated); ``note=True`` shows them as a
        highlighted note.
        """
        paras = "".join(f"<p>{html.escape(p)}</p>" for p in text.strip().split("\n\n"))
        self.blocks.append(f'<div class="note">{paras}</div>' if note else paras)

    def preformatted(self, text: str) -> None:
        """Add text shown verbatim in a monospace block."""
        self.blocks.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, df: pd.DataFrame, caption: str | None = None, index: bool = False) -> None:
        """Add a DataFrame as an HTML table with an optional caption."""
        frame = df.reset_index() if index else df
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = "".join(
            "<tr>" + "".join(_cell(v) for v in row) + "</tr>"
            for row in frame.itertuples(index=False)
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")

    def figure(self, fig_or_png: Any, caption: str = "") -> None:
        """Add a matplotlib figure (or PNG bytes) embedded as a base64 image with a caption."""
        png = fig_or_png if isinstance(fig_or_png, bytes) else figure_to_png(fig_or_png)
        data = base64.b64encode(png).decode("ascii")
        alt = html.escape(caption or "figure")
        self.blocks.append(
            f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        """The whole report as one self-contained HTML string."""
        from cartkinetics import __version__

        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = "\n".join(self.blocks)
        if self.toc:
            links = "".join(
                f'<a href="#{html.escape(k)}">{html.escape(v)}</a>' for k, v in self.toc
            )
            body = f'<nav class="toc">{links}</nav>\n{body}'
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>"
            f'<p class="meta">cartkinetics {__version__}, generated {stamp}</p>{body}'
            "</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write the report to ``path`` (folders created) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path


# =============================================================================== the analysis
#: step key -> title, in the order they run (the demo and ``cartkinetics report`` share them)
STEPS: dict[str, str] = {
    "data": "read the kinetics",
    "nca": "non-compartmental analysis",
    "compare": "first vs second infusion (NCA)",
    "fits": "per-patient fits",
    "population": "hierarchical fit",
    "endpoints": "cohort endpoints",
    "simulation": "dose-scenario simulation",
    "report": "HTML report",
}

#: section id of the HTML report -> heading (tests and readers can rely on these ids)
SECTIONS: dict[str, str] = {
    "overview": "Overview",
    "data": "Data",
    "nca": "Non-compartmental analysis",
    "compare": "First versus second infusion (NCA)",
    "fits": "Per-patient model fits",
    "population": "Hierarchical fit: infusion effect",
    "endpoints": "Cohort endpoints",
    "simulation": "Dose-scenario simulation",
    "methods": "Methods and software",
}


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
    n_jobs : int
        Worker processes of the per-patient fits.
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
    n_jobs: int = 1
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
    from cartkinetics.data import read_kinetics

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
    assays = sorted(set(a.data.observations["assay"]))
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
    a.write_text(json.dumps(result.to_dict(), indent=1), "compare.json")
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
    fits = fit_cohort(a.data, o.model, assay=o.assay, n_jobs=o.n_jobs, prior=prior)
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
        a.write_text(json.dumps(cmp.to_dict(), indent=1), "fits/fit_compare.json")
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

    res = cohort_endpoints(cohort, kinetics=a.data, kinetics_assay=a.options.assay)
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
             "endpoints": "data"}
    funcs: dict[str, Callable[[], str]] = {
        "data": lambda: _step_data(a, kinetics, patients),
        "nca": lambda: _step_nca(a),
        "compare": lambda: _step_compare(a),
        "fits": lambda: _step_fits(a),
        "population": lambda: _step_population(a),
        "endpoints": lambda: _step_endpoints(a, cohort),
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
    report = build_report(a)
    a.report_path = report.write(a.out / "report.html")
    size = a.report_path.stat().st_size / 1e6
    return f"{a.report_path.name}, {size:.1f} MB"


# ------------------------------------------------------------------------------ report
def _fmt_ci(d: dict[str, Any], key: str = "median") -> str:
    return f"{d[key]:.3g} (95% CrI {d['ci_low']:.3g} to {d['ci_high']:.3g})"


def build_report(analysis: Analysis) -> HtmlReport:
    """Assemble the HTML report from whatever the analysis holds.

    Sections (ids in ``SECTIONS``): overview (step table), data, NCA, first vs second
    infusion, per-patient fits, hierarchical fit, cohort endpoints, simulation, methods. A
    section whose step failed or was skipped says so instead of showing results.
    """
    a = analysis
    o = a.options
    rep = HtmlReport(o.title)
    rep.toc = [(k, v) for k, v in SECTIONS.items()]
    status = {s.key: s for s in a.steps}

    def gate(key: str) -> bool:
        """True when the step ran; otherwise a note saying why the section is empty."""
        st = status.get(key)
        if st is None or st.status == "ok":
            if st is not None and st.warnings:
                rep.details(f"{len(st.warnings)} warning(s) while this step ran",
                            "\n".join(st.warnings))
            return True
        what = "failed" if st.status == "failed" else "was skipped"
        rep.text(f"This step {what}: {st.message}", note=True)
        if st.warnings:
            rep.details("details", "\n".join(st.warnings))
        return False

    def fig(name: str) -> None:
        if name in a.figures:
            png, caption = a.figures[name]
            rep.figure(png, caption)

    # overview
    rep.heading(SECTIONS["overview"], anchor="overview")
    if o.synthetic:
        rep.text("SYNTHETIC data: the bundled example cohort was simulated from published "
                 "model structures; it is not patient data.", note=True)
    src = "; ".join(f"{k}: {v}" for k, v in a.sources.items())
    if src:
        rep.text(f"Input files: {src}.")
    rep.table(pd.DataFrame(
        [(i, s.title, "this file" if s.key == "report" and s.status == "pending" else s.status,
          round(s.seconds, 1), s.message)
         for i, s in enumerate(a.steps, start=1)],
        columns=["step", "what", "status", "seconds", "result / reason"]),
        caption="Analysis steps")

    # data
    rep.heading(SECTIONS["data"], anchor="data")
    if gate("data"):
        rep.preformatted(a.data.describe())
        summ = a.data.observations.groupby(["assay", "unit", "status"]).size()
        rep.table(summ.rename("rows").reset_index(), caption="Rows by assay and status")

    # nca
    rep.heading(SECTIONS["nca"], anchor="nca")
    if gate("nca"):
        nca_table = a.nca.to_frame()
        cols = [c for c in ("patient", "infusion", "assay", "unit", "cmax", "tmax",
                            "auc_0_28", "auc_0_84", "auc_0_last", "tlast", "half_life",
                            "doubling_time", "n_obs", "n_blq", "note") if c in nca_table]
        units = ", ".join(sorted(set(nca_table["auc_unit"].dropna().astype(str))))
        rules = " ".join(f"{'BLQ' if k == 'blq' else k.replace('_', ' ').capitalize()}: {v}."
                         for k, v in a.nca.rules.items())
        rep.text(f"Levels in {a.unit or 'the data unit'}, times and half-lives in days since "
                 f"each infusion; AUC by linear-up/log-down trapezoids ({units or 'level x day'}"
                 f"). {rules}")
        rep.table(nca_table[cols], caption="NCA per series")

    # compare
    rep.heading(SECTIONS["compare"], anchor="compare")
    if gate("compare"):
        rep.preformatted(a.compare.summary())
        fig("paired_plot.png")

    # fits
    rep.heading(SECTIONS["fits"], anchor="fits")
    if gate("fits"):
        f = a.fits
        rep.text(f"Model {f.model}; one maximum-likelihood fit per series (lmfit); values "
                 f"below the LLOQ through the {f.censoring} likelihood. Status counts: "
                 + ", ".join(f"{k} {v}" for k, v in f.counts().items()) + ".")
        fig("fits/fits.png")
        t = f.table
        keep = ["patient", "infusion", "status"]
        keep += _model_params(f.model)
        keep += [c for c in ("model_cmax", "model_tmax", "model_auc_0_28", "residual_sd",
                             "condition_number") if c in t.columns]
        rep.table(t[[c for c in dict.fromkeys(keep) if c in t.columns]],
                  caption="Estimates per series (natural scale, model units)")
        if "message" in t.columns:
            odd = t[t["status"] != "converged"]
            if len(odd):
                rep.table(odd[["patient", "infusion", "status", "message"]],
                          caption="Fits that need a look")
        if a.fit_compare is not None:
            rep.heading("First versus second infusion (model-based)", level=3)
            paired = set(a.fit_compare["pairs"]["patient"].astype(str))
            weak = sorted({str(p) for p, s in zip(t["patient"], t["status"], strict=True)
                           if s != "converged" and str(p) in paired})
            if weak:
                rep.text(f"{len(weak)} of {len(paired)} patients have a fit that is not "
                         f"regular ({', '.join(weak)}: singular or flagged, some parameters "
                         "not identified by the data, e.g. a peak between samples). Their "
                         "model-based Cmax and AUC are weakly determined: read this comparison "
                         "with the NCA one and the hierarchical fit, which borrows strength "
                         "across patients.", note=True)
            rep.preformatted(a.fit_compare.summary())
            fig("fits/fit_paired_plot.png")

    # population
    rep.heading(SECTIONS["population"], anchor="population")
    if gate("population"):
        p = a.population
        draws, tune, chains = o.sampling()
        eff = p.infusion_effect()
        diag = p.diagnostics(warn=False)
        rep.text(f"Hierarchical {p.model.name} fit (PyMC, sampler "
                 f"{p.info['sampling']['sampler']}, seed {p.info['settings']['seed']}): "
                 f"{chains} chains x {draws} draws after "
                 f"{tune} warm-up iterations; patients' random effects shared by both "
                 "infusions, infusion effect on log Cmax and log Tmax; BLQ by M3.")
        if eff:
            rows = [("Cmax ratio (second/first), typical patient",
                     _fmt_ci(eff["cmax_ratio"]),
                     f"{eff['cmax_ratio']['p_greater']:.3f}"),
                    ("Tmax difference (second - first), days",
                     _fmt_ci(eff["tmax_difference"]),
                     f"{eff['tmax_difference']['p_less']:.3f} (earlier)")]
            rep.table(pd.DataFrame(rows, columns=["infusion effect", "posterior median",
                                                  "P(ratio > 1) / P(diff < 0)"]))
        dtab = pd.DataFrame([
            ("max R-hat", diag["max_rhat"], "<= 1.01"),
            ("min bulk ESS", diag["min_ess_bulk"], ">= 400"),
            ("min tail ESS", diag["min_ess_tail"], ">= 400"),
            ("divergences", diag["divergences"], "0"),
            ("min E-BFMI", min(diag["bfmi"]) if diag["bfmi"] else float("nan"), ">= 0.3"),
        ], columns=["diagnostic", "value", "target"])
        rep.table(dtab, caption="Sampler diagnostics")
        if not diag["ok"]:
            worst = ", ".join(w["quantity"] for w in diag["worst"][:5])
            pats = sorted({d["patient"] for d in diag["patients_disagreeing"]})
            rep.text("NOT CONVERGED. Diagnostics not met: " + "; ".join(diag["problems"])
                     + f". Worst quantities: {worst}."
                     + (f" The chains disagree about patient(s) {', '.join(pats)}." if pats
                        else "")
                     + f" What to do: {diag['advice']}. "
                     + ("This is a short run for illustration; for inference use "
                        "`cartkinetics fit-population` with its defaults (4 chains x 1000 "
                        "draws)." if draws < 1000 else ""), note=True)
        rep.table(p.summary()[["kind", "name", "median", "ci_low", "ci_high", "r_hat",
                               "ess_bulk"]], caption="Population parameters (95% CrI)")
        for name in ("population_pred", "forest_cmax_ratio", "individual_pred",
                     "vpc_censored", "pit_residuals"):
            fig(f"population/{name}.png")

    # endpoints
    rep.heading(SECTIONS["endpoints"], anchor="endpoints")
    if gate("endpoints"):
        e = a.endpoints
        rep.text(e.summary().replace("\n", "\n\n"))
        tables = e.tables()
        for name, caption in (("baseline", "Table 1. Baseline characteristics"),
                              ("efficacy", "Table 2. Efficacy"),
                              ("survival", "Survival estimates"),
                              ("safety", "Table 3. Safety (ASTCT CRS/ICANS; acute GVHD)"),
                              ("deaths", "Deaths"),
                              ("kinetics", "Kinetics, second vs first infusion (NCA)")):
            if name in tables and len(tables[name]):
                rep.table(tables[name], caption=caption)
        for name in ("km_os", "km_efs", "swimmer"):
            fig(f"endpoints/{name}.png")
        if a.data is not None:  # exposure-response: one self-contained section, never raising
            from cartkinetics.exposure import report_section

            rep.blocks.append(report_section(e.cohort, a.data, a.out, assay=o.assay, level=3))

    # simulation
    rep.heading(SECTIONS["simulation"], anchor="simulation")
    if gate("simulation"):
        s = a.simulation
        rep.text(f"{s.n} virtual patients per scenario from {s.info.get('population', s.model)}"
                 f"; seed {s.seed}.")
        for note in s.notes:
            rep.text(note, note=True)
        summ = s.summary(keys=["cmax", "tmax", "auc_0_28"])
        cols = ["scenario", "n", "n_failed"] + [f"{k}_{q}" for k in ("cmax", "tmax", "auc_0_28")
                                                for q in ("median", "p05", "p95")]
        rep.table(summ[cols], caption="Outcomes per scenario (median, 5th and 95th percentile)")
        fig("simulation/bands.png")
        fig("simulation/dose_cmax.png")

    # methods
    rep.heading(SECTIONS["methods"], anchor="methods")
    rep.table(_versions(), caption="Software")
    rep.text(f"Output folder: {a.out.resolve()} (CSV tables and PNG figures next to this "
             "report).")
    return rep


def _model_params(name: str) -> list[str]:
    try:
        from cartkinetics import models

        return list(models.get(name).param_names)
    except Exception:  # an unknown model only loses the parameter columns
        return []


def _versions() -> pd.DataFrame:
    import importlib.metadata as md
    import platform

    from cartkinetics import __version__

    rows = [("cartkinetics", __version__), ("python", platform.python_version())]
    for pkg in ("numpy", "scipy", "pandas", "numba", "lmfit", "pymc", "nutpie", "matplotlib"):
        try:
            rows.append((pkg, md.version(pkg)))
        except md.PackageNotFoundError:
            rows.append((pkg, "not installed"))
    return pd.DataFrame(rows, columns=["package", "version"])
