"""A self-contained HTML report of an analysis: it renders, it computes nothing.

:class:`HtmlReport` collects sections of text, tables and figures and writes one HTML file
with nothing external: figures are base64 PNG data URIs and the stylesheet is inline, so the
file opens anywhere (e-mail attachment, regulatory submission folder) without a server.
:func:`build_report` assembles ``report.html`` from what :func:`cartkinetics.pipeline.run_analysis`
computed (each result once: NCA, comparison, fits, endpoints, exposure-response, simulation).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from cartkinetics.pipeline import Analysis

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
        rep.text(f"Model {f.model}; one fit per series (lmfit, estimator: "
                 f"{f.estimator_label()}); values "
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
        ex = status.get("exposure")
        if a.exposure is not None:
            from cartkinetics.exposure import html_section

            rep.blocks.append(html_section(a.exposure, level=3))
        elif ex is not None and ex.status != "pending":
            rep.heading("Exposure-response", level=3, anchor="exposure-response")
            gate("exposure")

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
