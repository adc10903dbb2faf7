"""``exposure_response``: one call from a cohort and its kinetics to every analysis, and the
result object with tables, JSON, text, figures and an HTML section."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.endpoints.response import DEFAULT_ORR
from cartkinetics.errors import CartKineticsError
from cartkinetics.exposure.binary import BinaryAnalysis, binary_analysis
from cartkinetics.exposure.draws import DrawsAnalysis, cox_over_draws, logistic_over_draws
from cartkinetics.exposure.metrics import (
    DEFAULT_METRICS,
    known_by,
    level_unit,
    metric_columns,
    metric_label,
    metric_unit,
    per_patient,
    series_metrics,
)
from cartkinetics.exposure.survival import LANDMARK_RULE, SurvivalAnalysis, survival_analysis
from cartkinetics.serialize import dumps, jsonable

SURVIVAL = {"efs": ("efs_days", "efs_event", "Event-free survival"),
            "os": ("os_days", "death", "Overall survival")}
FRAME_COLUMNS = ["analysis", "outcome", "metric", "unit", "estimator", "measure", "label", "n",
                 "events", "ratio", "ratio_ci_low", "ratio_ci_high", "p", "p_method", "note"]
ESTIMATOR_NAMES = {"firth": "Firth logistic", "ml": "ML logistic", "ordinal":
                   "proportional odds", "cox": "Cox (ML)", "firth_cox": "Firth Cox",
                   "draws_logistic": "Firth logistic over posterior draws",
                   "draws_cox": "Firth Cox over posterior draws"}


def binary_outcomes(cohort: Any, *, orr: Iterable[str] = DEFAULT_ORR,
                    grade_threshold: int = 2) -> tuple[dict[str, tuple], list[dict]]:
    """Binary outcomes of a cohort: key -> (label, 0/1 Series by patient, grade or None).

    Response flags come from :func:`cartkinetics.endpoints.response.response_flags` (the
    definitions behind the cohort's response rates); toxicities are grade >=
    ``grade_threshold`` of ``crs_grade`` / ``icans_grade``.
    """
    from cartkinetics.endpoints.response import normalise_response_codes, response_flags

    out: dict[str, tuple] = {}
    omitted: list[dict] = []
    t = cohort.table
    idx = pd.Index(t["patient"].astype(str), name="patient")
    if cohort.has("best_response"):
        flags = response_flags(cohort, orr=orr)
        codes = normalise_response_codes(orr)
        out["response"] = (f"response ({' + '.join(codes)})", flags["orr"].astype(int), None)
        if "mrd_negative_cr" in flags:
            out["mrd_negative_cr"] = ("MRD-negative CR/CRi",
                                      flags["mrd_negative_cr"].astype(int), None)
    else:
        omitted.append({"outcome": "response", "reason": "no 'best_response' column"})
    for col, name in (("crs_grade", "CRS"), ("icans_grade", "ICANS")):
        if cohort.has(col):
            g = pd.Series(t[col].astype(int).to_numpy(), index=idx)
            out[f"{name.lower()}_ge{grade_threshold}"] = (
                f"{name} grade >= {grade_threshold}", (g >= grade_threshold).astype(int), g)
        else:
            omitted.append({"outcome": f"{name.lower()}_ge{grade_threshold}",
                            "reason": f"no '{col}' column"})
    return out, omitted


@dataclass
class ExposureResponseResult:
    """Exposure-response analyses of one cohort.

    Attributes
    ----------
    exposure : DataFrame
        One row per patient in both the cohort and the kinetics: ``patient``, ``infusion``,
        ``assay``, ``unit`` and the metric columns (units in ``metric_units``).
    metric_units : dict
        Metric -> unit (levels in the assay unit, areas in unit x day, times in days).
    metrics : list of str
        Metrics related to the binary outcomes.
    binary : list of BinaryAnalysis
    survival : list of SurvivalAnalysis
        From the landmark (``landmark_day``), metrics known by then.
    draws : list of DrawsAnalysis
        Over posterior draws of exposure, when given.
    landmark_day : float
    notes : list of str
        Choices made and warnings (unmatched patients, truncated AUCs ...).
    omitted : list of dict
        ``{"outcome", "reason"}`` for analyses that could not be run.
    source : str
        Where the exposure metrics came from.
    """

    exposure: pd.DataFrame
    metric_units: dict[str, str]
    metrics: list[str]
    binary: list[BinaryAnalysis] = field(default_factory=list)
    survival: list[SurvivalAnalysis] = field(default_factory=list)
    draws: list[DrawsAnalysis] = field(default_factory=list)
    landmark_day: float = 28.0
    notes: list[str] = field(default_factory=list)
    omitted: list[dict] = field(default_factory=list)
    source: str = ""

    # ------------------------------------------------------------------ tables
    @property
    def n(self) -> int:
        """Patients with both outcomes and exposure."""
        return len(self.exposure)

    def to_frame(self) -> pd.DataFrame:
        """Every estimate: one row per (analysis, outcome, metric, estimator).

        ``ratio`` is the odds ratio (logistic, proportional odds) or hazard ratio (Cox) per
        doubling of exposure, with its 95% limits; NaN with the reason in ``note`` where the
        estimate does not exist.
        """
        rows = []

        def add(kind: str, outcome: str, label: str, metric: str, unit: str, fit: Any,
                n: int, events: int, extra_note: str = "") -> None:
            measure = "HR per doubling" if "cox" in fit.estimator else "OR per doubling"
            ok = fit.exists and math.isfinite(fit.coef)
            r = fit.ratio if ok else (math.nan,) * 3
            rows.append({
                "analysis": kind, "outcome": outcome, "metric": metric, "unit": unit,
                "estimator": fit.estimator, "measure": measure,
                "label": f"{label} ~ {metric_label(metric)} [{ESTIMATOR_NAMES[fit.estimator]}]",
                "n": n, "events": events, "ratio": r[0], "ratio_ci_low": r[1],
                "ratio_ci_high": r[2], "p": fit.p if ok else math.nan,
                "p_method": fit.p_method if ok else "",
                "note": "; ".join(x for x in (fit.note, extra_note) if x),
            })

        for a in self.binary:
            for fit in (a.firth, a.ml):
                add("binary", a.outcome, a.outcome_label, a.metric, a.unit, fit, a.n, a.events,
                    a.note)
            if a.ordinal is not None:
                add("ordinal", a.outcome.split("_ge")[0] + "_grade",
                    a.outcome_label.split(" >=")[0] + " grade", a.metric, a.unit, a.ordinal,
                    a.n, a.events)
        for s in self.survival:
            for fit in (s.firth_cox, s.cox):
                add("survival", s.endpoint, s.endpoint_label, s.metric, s.unit, fit, s.n,
                    s.events, s.note)
        for d in self.draws:
            rows.append({
                "analysis": "draws", "outcome": d.outcome, "metric": d.metric,
                "unit": self.metric_units.get(d.metric, ""),
                "estimator": f"draws_{d.kind}",
                "measure": "HR per doubling" if d.kind == "cox" else "OR per doubling",
                "label": f"{d.outcome} ~ {metric_label(d.metric)} "
                         f"[{ESTIMATOR_NAMES['draws_' + d.kind]}]",
                "n": d.n, "events": math.nan, "ratio": math.exp(d.coef),
                "ratio_ci_low": math.exp(d.ci_low), "ratio_ci_high": math.exp(d.ci_high),
                "p": math.nan, "p_method": "",
                "note": f"{d.n_draws} draws; kinetics uncertainty alone "
                        f"{math.exp(d.kinetics_low):.3g}-{math.exp(d.kinetics_high):.3g}",
            })
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def tests_frame(self) -> pd.DataFrame:
        """Exact and rank tests per binary analysis, with the smallest attainable p."""
        rows = []
        for a in self.binary:
            for key, t in a.tests.items():
                rows.append({"outcome": a.outcome, "metric": a.metric, "test": key,
                             "p": t.get("p"), "min_attainable_p": t.get("min_attainable_p"),
                             "method": t.get("method", ""), "n": a.n, "events": a.events})
        return pd.DataFrame(rows, columns=["outcome", "metric", "test", "p", "min_attainable_p",
                                           "method", "n", "events"])

    def quartiles_frame(self) -> pd.DataFrame:
        """Observed proportions by exposure quartile (Clopper-Pearson 95%), all analyses."""
        parts = []
        for a in self.binary:
            q = a.quartiles.copy()
            q.insert(0, "metric", a.metric)
            q.insert(0, "outcome", a.outcome)
            parts.append(q)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def survival_frame(self) -> pd.DataFrame:
        """Per survival analysis: landmark exclusions, groups and the log-rank test."""
        rows = []
        for s in self.survival:
            lr = s.logrank
            rows.append({
                "endpoint": s.endpoint, "metric": s.metric, "landmark_day": s.landmark.day,
                "n": s.n, "events": s.events,
                "excluded_event_before_landmark": len(s.landmark.excluded_event),
                "excluded_censored_before_landmark": len(s.landmark.excluded_censored),
                "groups": s.group_scheme, "logrank_chi2": lr.get("chi2"), "logrank_p": lr.get("p"),
                "ph_test_p": None if s.ph_test is None else s.ph_test["p"],
            })
        return pd.DataFrame(rows)

    def forest_frame(self) -> pd.DataFrame:
        """The rows of the forest plot: the Firth estimates (logistic and Cox)."""
        f = self.to_frame()
        return f[f["estimator"].isin(["firth", "firth_cox", "draws_logistic", "draws_cox"])]

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary of every analysis (ratios per doubling of exposure)."""
        binary = []
        for a in self.binary:
            binary.append({
                "outcome": a.outcome, "label": a.outcome_label, "metric": a.metric,
                "unit": a.unit, "n": a.n, "events": a.events, "firth": a.firth.to_dict(),
                "ml": a.ml.to_dict(), "ordinal": None if a.ordinal is None else
                a.ordinal.to_dict(), "tests": a.tests, "quartiles": a.quartiles,
                "small_sample_note": a.note, "excluded": a.excluded,
            })
        surv = []
        for s in self.survival:
            surv.append({
                "endpoint": s.endpoint, "label": s.endpoint_label, "metric": s.metric,
                "unit": s.unit, "landmark_day": s.landmark.day, "landmark_rule":
                s.landmark.rule, "excluded_event_before_landmark": s.landmark.excluded_event,
                "excluded_censored_before_landmark": s.landmark.excluded_censored,
                "n": s.n, "events": s.events, "groups": s.group_scheme,
                "group_sizes": {g: int(np.sum(s.groups == g)) for g in s.km},
                "logrank": s.logrank, "cox": s.cox.to_dict(), "firth_cox": s.firth_cox.to_dict(),
                "ph_test": s.ph_test, "small_sample_note": s.note, "excluded": s.excluded,
            })
        return jsonable({
            "n": self.n, "source": self.source, "metrics": self.metrics,
            "metric_units": self.metric_units, "landmark_day": self.landmark_day,
            "landmark_rule": LANDMARK_RULE.format(L=self.landmark_day),
            "exposure": self.exposure, "binary": binary, "survival": surv,
            "draws": [d.to_dict() for d in self.draws], "notes": self.notes,
            "omitted": self.omitted,
        })

    def to_json(self, indent: int | None = 1) -> str:
        """:meth:`to_dict` as a JSON string."""
        return dumps(self, indent=indent)

    def summary(self) -> str:
        """Plain-text report of every analysis, its method and what it can tell."""
        lines = [f"Exposure-response: {self.n} patients ({self.source})"]
        lines += [f"  note: {n}" for n in self.notes]
        if self.n < 20:
            lines.append(
                f"  With {self.n} patients no exposure-response relation can be estimated with "
                "useful precision: the intervals below show how wide the uncertainty is. "
                "p-values are given with the smallest value each exact test could reach.")
        lines.append("")
        lines.append("Binary outcomes (ratio per doubling of exposure, 95% CI):")
        for a in self.binary:
            lines.append(f"- {a.outcome_label} ~ {metric_label(a.metric)} ({a.unit}): "
                         f"n={a.n}, with the outcome {a.events}")
            for fit in (a.firth, a.ml) + ((a.ordinal,) if a.ordinal is not None else ()):
                lines.append(f"    {ESTIMATOR_NAMES[fit.estimator]}: {_fit_text(fit, 'OR')}")
            for t in a.tests.values():
                extra = (f" (smallest attainable {t['min_attainable_p']:.3g})"
                         if "min_attainable_p" in t else "")
                lines.append(f"    {t['method']}: p = {t['p']:.3g}{extra}")
            if a.excluded:
                lines.append(f"    excluded: {'; '.join(a.excluded)}")
            if a.note:
                lines.append(f"    ! {a.note}")
        for o in self.omitted:
            lines.append(f"- {o['outcome']}: not analysed ({o['reason']})")
        if self.survival:
            lines.append("")
            lines.append("Time to event " + LANDMARK_RULE.format(L=self.landmark_day) + ":")
        for s in self.survival:
            lm = s.landmark
            lines.append(
                f"- {s.endpoint_label} ~ {metric_label(s.metric)}: n={s.n}, events={s.events}; "
                f"excluded before the landmark: {len(lm.excluded_event)} with the event "
                f"({', '.join(lm.excluded_event) or '-'}), {len(lm.excluded_censored)} censored "
                f"({', '.join(lm.excluded_censored) or '-'})")
            p = s.logrank.get("p")
            lines.append(f"    log-rank by {s.group_scheme}: "
                         + ("not computed" if p is None else f"p = {p:.3g}"))
            for fit in (s.firth_cox, s.cox):
                lines.append(f"    {ESTIMATOR_NAMES[fit.estimator]}: {_fit_text(fit, 'HR')}")
            if s.ph_test is not None:
                lines.append(f"    proportional hazards: p = {s.ph_test['p']:.3g} "
                             f"({s.ph_test['method']})")
            if s.note:
                lines.append(f"    ! {s.note}")
        if self.draws:
            lines.append("")
            lines.append("Over posterior draws of exposure:")
            for d in self.draws:
                m = "HR" if d.kind == "cox" else "OR"
                lines.append(
                    f"- {d.outcome} ~ {metric_label(d.metric)}: {m} per doubling "
                    f"{math.exp(d.coef):.3g} (95% {math.exp(d.ci_low):.3g}-"
                    f"{math.exp(d.ci_high):.3g}; kinetics alone {math.exp(d.kinetics_low):.3g}-"
                    f"{math.exp(d.kinetics_high):.3g}; {d.n_draws} draws)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        k = len(self.binary) + len(self.survival) + len(self.draws)
        return (f"ExposureResponseResult(n={self.n}, metrics={self.metrics}, analyses={k}, "
                f"landmark_day={self.landmark_day:g})")

    # ------------------------------------------------------------------ figures
    def _find(self, items: Sequence[Any], key: str, outcome: str | None,
              metric: str | None) -> Any:
        for a in items:
            if (outcome is None or getattr(a, key) == outcome) and (metric is None
                                                                  or a.metric == metric):
                return a
        raise CartKineticsError(f"no analysis of {outcome or 'any outcome'} with "
                                f"{metric or 'any metric'}")

    def plot(self, ax: Any = None, kind: str = "forest", *, outcome: str | None = None,
             metric: str | None = None, **kw: Any) -> Any:
        """One figure panel.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        kind : {"forest", "probability", "km"}
            Forest of ratios per doubling; probability of a binary ``outcome`` against
            ``metric``; Kaplan-Meier of a survival ``outcome`` (``efs``/``os``) by exposure.

        Returns
        -------
        matplotlib Axes
        """
        from cartkinetics.exposure.plots import plot_forest

        if kind == "forest":
            return plot_forest(self.forest_frame(), ax=ax, **kw)
        if kind == "probability":
            return self._find(self.binary, "outcome", outcome, metric).plot(ax=ax, **kw)
        if kind == "km":
            return self._find(self.survival, "endpoint", outcome, metric).plot(ax=ax, **kw)
        raise CartKineticsError(f"plot kind {kind!r}: use 'forest', 'probability' or 'km'")

    def figure(self, fig: Any = None) -> Any:
        """Multi-panel overview: probability curves (first metric), the first survival KM and
        the forest plot; ``fig`` to draw into an existing figure. Returns the Figure."""
        import matplotlib.pyplot as plt

        prob = [a for a in self.binary if a.metric == (self.metrics[0] if self.metrics else "")]
        panels = len(prob) + (1 if self.survival else 0)
        ncols = 2
        nrows = max(1, math.ceil(panels / ncols)) + 1
        if fig is None:
            fig = plt.figure(figsize=(12, 4.2 * nrows))
        gs = fig.add_gridspec(nrows, ncols)
        i = 0
        for a in prob:
            a.plot(ax=fig.add_subplot(gs[i // ncols, i % ncols]))
            i += 1
        if self.survival:
            self.survival[0].plot(ax=fig.add_subplot(gs[i // ncols, i % ncols]))
        self.plot(ax=fig.add_subplot(gs[nrows - 1, :]), kind="forest")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # long forest labels: layout is best effort
            fig.tight_layout()
        return fig

    def figures(self) -> dict[str, Any]:
        """Figures by file name stem: ``probability_<outcome>_<metric>``,
        ``km_<endpoint>_<metric>``, ``forest``."""
        import matplotlib.pyplot as plt

        out: dict[str, Any] = {}
        for a in self.binary:
            if a.events in (0, a.n):  # no contrast: nothing to draw but dots on one line
                continue
            fig, ax = plt.subplots(figsize=(6.5, 4.5))
            a.plot(ax=ax)
            out[f"probability_{a.outcome}_{a.metric}"] = fig
        for s in self.survival:
            fig, ax = plt.subplots(figsize=(7, 5.2))
            s.plot(ax=ax)
            fig.subplots_adjust(bottom=0.3)
            out[f"km_{s.endpoint}_{s.metric}"] = fig
        rows = self.forest_frame()
        fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6))
        self.plot(ax=ax, kind="forest")
        fig.tight_layout()
        out["forest"] = fig
        return out

    def write(self, out_dir: str | Path, *, figures: bool = True) -> list[Path]:
        """Write tables (CSV), ``summary.txt``, ``exposure_response.json`` and PNG figures
        into ``out_dir`` (created); returns the paths written."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CartKineticsError(f"cannot create the output folder ({exc})",
                                    source=str(out)) from exc
        paths = []
        tables = {"estimates": self.to_frame(), "exposure": self.exposure,
                  "tests": self.tests_frame(), "quartiles": self.quartiles_frame(),
                  "survival": self.survival_frame()}
        for name, t in tables.items():
            p = out / f"{name}.csv"
            t.to_csv(p, index=False)
            paths.append(p)
        (out / "summary.txt").write_text(self.summary() + "\n", encoding="utf-8")
        (out / "exposure_response.json").write_text(self.to_json(), encoding="utf-8")
        paths += [out / "summary.txt", out / "exposure_response.json"]
        if figures:
            from cartkinetics.plots import save_figures

            paths += save_figures(self.figures(), out, dpi=110)
        return paths


def _fit_text(fit: Any, measure: str) -> str:
    if not (fit.exists and math.isfinite(fit.coef)):
        return f"not estimable ({fit.note})"
    r = fit.ratio
    txt = (f"{measure} per doubling {r[0]:.3g} (95% CI {r[1]:.3g}-{r[2]:.3g}), "
           f"{fit.p_method} p = {fit.p:.3g}")
    return txt + (f" [{fit.note}]" if fit.note else "")


def _cohort(cohort: Any, mapping: dict[str, str] | None) -> Any:
    from cartkinetics.endpoints.cohort import Cohort, read_cohort

    return cohort if isinstance(cohort, Cohort) else read_cohort(cohort, mapping=mapping)


def exposure_response(
    cohort: Any,
    kinetics: Any,
    *,
    assay: str | None = None,
    infusion: int | str = "last",
    metrics: Sequence[str] | None = None,
    outcomes: Sequence[str] | None = None,
    survival: Sequence[str] = ("efs", "os"),
    landmark_day: float = 28.0,
    groups: str = "tertile",
    orr: Iterable[str] = DEFAULT_ORR,
    grade_threshold: int = 2,
    draws: Any = None,
    draw_metrics: Sequence[str] = ("auc_0_28",),
    read_options: dict[str, Any] | None = None,
    cohort_mapping: dict[str, str] | None = None,
) -> ExposureResponseResult:
    """Relate CAR-T exposure (Cmax, AUC0-28 ...) to response, toxicity and survival.

    Parameters
    ----------
    cohort : path, DataFrame or Cohort
        One row per patient (:func:`cartkinetics.read_cohort`): ``best_response``,
        ``mrd_negative``, ``crs_grade``, ``icans_grade``, ``efs_days``/``efs_event``,
        ``os_days``/``death`` (those present are analysed; times in days from the infusion).
    kinetics : KineticsData, path, DataFrame or object with ``.to_frame()``
        Kinetics (NCA is run here) or a metrics table, per series (``patient, infusion,
        assay, unit`` + metric columns) or per patient; e.g. the NCA table.
    assay : str, optional
        The assay whose exposure is used (default qPCR when several).
    infusion : int or "last"
        The infusion whose exposure is related to the outcomes (default each patient's last:
        the cohort's outcome times count from it).
    metrics : sequence of str, optional
        Metric columns for the binary outcomes (default ``cmax`` and ``auc_0_28``, those
        present).
    outcomes : sequence of str, optional
        Binary outcomes among ``response``, ``mrd_negative_cr``, ``crs_ge2``, ``icans_ge2``
        (default all present).
    survival : sequence of str
        Time-to-event endpoints (``efs``, ``os``).
    landmark_day : float
        Landmark for the survival analyses (days); only metrics known by then are used
        (``cmax`` becomes ``cmax_by_<day>``).
    groups : {"tertile", "median"}
        Exposure groups of the Kaplan-Meier curves and the log-rank test.
    orr : iterable of str
        Response codes counted as response.
    grade_threshold : int
        Toxicity outcome = grade >= this.
    draws : DataFrame, dict or PopulationFit, optional
        Posterior draws of exposure (patients x draws; see
        :func:`cartkinetics.exposure.exposure_draws`): a DataFrame (``attrs["metric"]``
        names the metric), a dict metric -> DataFrame, or a fit (``draw_metrics`` are
        drawn from it).
    read_options : dict, optional
        Passed to :func:`cartkinetics.read_kinetics` when ``kinetics`` is a path.
    cohort_mapping : dict, optional
        Column mapping for :func:`cartkinetics.read_cohort`.

    Returns
    -------
    ExposureResponseResult
    """
    coh = _cohort(cohort, cohort_mapping)
    series = series_metrics(kinetics, assay=assay, landmark=landmark_day,
                            read_options=read_options)
    table, notes = per_patient(series, infusion=infusion, assay=assay)
    lunit = level_unit(table)
    cohort_ids = coh.table["patient"].astype(str).tolist()
    in_both = [p for p in cohort_ids if p in set(table["patient"])]
    only_c = [p for p in cohort_ids if p not in set(table["patient"])]
    only_k = sorted(set(table["patient"]) - set(cohort_ids))
    from cartkinetics.data import patient_id_key

    near = [(c, k) for c in only_c for k in only_k if patient_id_key(c) == patient_id_key(k)]
    if near:
        raise CartKineticsError(
            "patient ids differ only in case, spaces, '-' or '_' between the cohort table and "
            "the kinetics: " + ", ".join(f"{c!r} (cohort) vs {k!r} (kinetics)" for c, k in near)
            + ": write each patient's id the same way in both files (ids are never matched "
            "by guesswork)")
    if not in_both:
        raise CartKineticsError(
            f"no patient is in both the cohort ({', '.join(cohort_ids[:5])} ...) and the "
            f"kinetics ({', '.join(sorted(table['patient'])[:5])} ...); check the patient ids")
    if only_c:
        notes.append(f"no exposure for cohort patient(s) {', '.join(only_c)}: left out")
    if only_k:
        notes.append(f"kinetics patient(s) {', '.join(only_k)} not in the cohort table: left out")
    table = table.set_index("patient").loc[in_both].reset_index()
    available = metric_columns(table)
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in available]
        if not metrics:
            raise CartKineticsError(
                f"the exposure table has neither cmax nor auc_0_28; name the metrics to use "
                f"(metrics=..., --metrics) among {', '.join(available)}")
    else:
        missing = [m for m in metrics if m not in available]
        if missing:
            raise CartKineticsError(
                f"exposure metric(s) {', '.join(missing)} not in the table; available: "
                f"{', '.join(available)}")
    units = {m: metric_unit(m, lunit) for m in available}
    trunc = [c for c in table.columns if c.endswith("_truncated")]
    for c in trunc:
        flagged = table.loc[table[c].astype(bool), "patient"].tolist()
        if flagged:
            notes.append(f"{c[:-10]} is a lower bound (series ends earlier) for "
                         f"{', '.join(flagged)}")
    result = ExposureResponseResult(
        exposure=table, metric_units=units, metrics=list(metrics), landmark_day=landmark_day,
        notes=notes, source=str(series.attrs.get("source", "")),
    )
    exp_by = table.set_index("patient")

    outs, omitted = binary_outcomes(coh, orr=orr, grade_threshold=grade_threshold)
    if outcomes is not None:
        unknown = [o for o in outcomes if o not in outs]
        if unknown:
            raise CartKineticsError(
                f"binary outcome(s) {', '.join(unknown)} not available; available: "
                f"{', '.join(outs)}")
        outs = {k: outs[k] for k in outcomes}
    result.omitted.extend(omitted)
    for key, (label, y, grade) in outs.items():
        yv = y.loc[in_both].to_numpy(int)
        gv = None if grade is None else grade.loc[in_both].to_numpy(int)
        for m in metrics:
            result.binary.append(binary_analysis(
                key, label, m, units.get(m, ""), in_both,
                exp_by.loc[in_both, m].to_numpy(float), yv, gv))

    # survival: metrics known by the landmark only
    surv_metrics = []
    for m in metrics:
        kb = known_by(m)
        if m == "cmax":
            cand = f"cmax_by_{landmark_day:g}".replace(".", "p")
            if cand in available:
                surv_metrics.append(cand)
                units.setdefault(cand, lunit)
                continue
        if kb is not None and kb <= landmark_day:
            surv_metrics.append(m)
        else:
            result.notes.append(
                f"{m} is not known by the landmark (day {landmark_day:g}): not used for "
                "survival (immortal-time bias)")
    t = coh.table.set_index(coh.table["patient"].astype(str))
    for ep in survival:
        if ep not in SURVIVAL:
            raise CartKineticsError(f"survival endpoint {ep!r}: use 'efs' or 'os'")
        tcol, ecol, label = SURVIVAL[ep]
        if not coh.has(tcol, ecol):
            result.omitted.append({"outcome": ep, "reason": f"no '{tcol}'/'{ecol}' columns"})
            continue
        for m in surv_metrics:
            result.survival.append(survival_analysis(
                ep, label, m, units.get(m, ""), in_both,
                exp_by.loc[in_both, m].to_numpy(float),
                t.loc[in_both, tcol].to_numpy(float),
                t.loc[in_both, ecol].astype(bool).to_numpy(), landmark_day=landmark_day,
                group_scheme=groups))

    if not result.binary and not result.survival:
        raise CartKineticsError(
            "the cohort table has no outcome to relate exposure to: add best_response, "
            "crs_grade, icans_grade, efs_days/efs_event or os_days/death columns",
            source=coh.source)
    if draws is not None:
        _draws_analyses(result, draws, draw_metrics, infusion, outs, t, landmark_day,
                        survival, coh)
    return result


def _draws_analyses(result: ExposureResponseResult, draws: Any, draw_metrics: Sequence[str],
                    infusion: int | str, outs: dict, t: pd.DataFrame, landmark_day: float,
                    survival: Sequence[str], coh: Any) -> None:
    from cartkinetics.exposure.draws import exposure_draws

    if isinstance(draws, pd.DataFrame):
        tables = {str(draws.attrs.get("metric", "exposure")): draws}
    elif isinstance(draws, dict):
        tables = {str(k): v for k, v in draws.items()}
        for k, v in tables.items():
            v.attrs.setdefault("metric", k)
    else:
        tables = {m: exposure_draws(draws, m, infusion=infusion) for m in draw_metrics}
    for metric, d in tables.items():
        d = d.copy()
        d.attrs["metric"] = metric
        d.index = d.index.astype(str)
        for key, (_label, y, _g) in outs.items():
            if y.min() == y.max():
                continue
            result.draws.append(logistic_over_draws(d, y, name=key))
        kb = known_by(metric)
        if kb is None or kb > landmark_day:
            result.notes.append(
                f"posterior draws of {metric}: not known by the landmark (day "
                f"{landmark_day:g}), not used for survival (immortal-time bias)")
            continue
        for ep in survival:
            tcol, ecol, _ = SURVIVAL.get(ep, (None, None, None))
            if tcol is None or not coh.has(tcol, ecol):
                continue
            try:
                result.draws.append(cox_over_draws(
                    d, t[tcol].astype(float), t[ecol].astype(bool), landmark_day=landmark_day,
                    name=ep))
            except CartKineticsError as exc:
                result.notes.append(f"posterior draws, {ep}: {exc}")


def html_section(result: ExposureResponseResult, *, level: int = 2,
                 anchor: str = "exposure-response") -> str:
    """The exposure-response section of an HTML report: heading, small-sample statement,
    estimates table, landmark rule, figures (embedded PNG). Returns an HTML fragment for
    :class:`cartkinetics.report.HtmlReport` (``report.blocks.append(...)``)."""
    from cartkinetics.report import HtmlReport

    rep = HtmlReport("exposure-response")
    rep.heading("Exposure-response", level=level, anchor=anchor)
    intro = (f"{result.n} patients; exposure from {result.source}. Ratios are per doubling of "
             "exposure. Survival from the landmark: "
             + LANDMARK_RULE.format(L=result.landmark_day) + ".")
    rep.text(intro)
    if result.n < 20:
        rep.text(f"With {result.n} patients no exposure-response relation can be estimated "
                 "with useful precision: read the width of the intervals, not the p-values.",
                 note=True)
    for n in result.notes:
        rep.text(n, note=True)
    cols = ["label", "n", "events", "ratio", "ratio_ci_low", "ratio_ci_high", "p", "p_method",
            "note"]
    rep.table(result.to_frame()[cols], caption="Estimates (ratio per doubling of exposure)")
    tests = result.tests_frame()
    if not tests.empty:
        rep.table(tests, caption="Exact and rank tests (smallest p each test could reach)")
    sf = result.survival_frame()
    if not sf.empty:
        rep.table(sf, caption="Survival from the landmark: exclusions and log-rank tests")
    captions = {"forest": "Odds (blue) and hazard (orange) ratios per doubling of exposure, "
                          "Firth estimates with 95% CI."}
    first = result.metrics[0] if result.metrics else ""
    surv_first = {s.endpoint: s.metric for s in reversed(result.survival)}
    for name, fig in result.figures().items():
        keep = (name == "forest" or (name.startswith("probability_") and name.endswith(first))
                or any(name == f"km_{e}_{m}" for e, m in surv_first.items()))
        if not keep:  # the report shows one metric per outcome; --out writes them all
            import matplotlib.pyplot as plt

            plt.close(fig)
            continue
        if name.startswith("probability_"):
            captions[name] = ("Probability of the outcome against exposure: Firth logistic fit "
                              "with 95% band; quartile proportions with Clopper-Pearson 95%.")
        elif name.startswith("km_"):
            captions[name] = (f"Kaplan-Meier from the day-{result.landmark_day:g} landmark by "
                              "exposure group, log-log 95% bands.")
        rep.figure(fig, f"{name.replace('_', ' ')}. {captions.get(name, '')}")
    return "\n".join(rep.blocks)

