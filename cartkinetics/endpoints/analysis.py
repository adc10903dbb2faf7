"""The cohort endpoints computed the way a paper reports them: one call, one result object
with tables, JSON, text and figures (:func:`cohort_endpoints`, :class:`EndpointResult`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cartkinetics.endpoints.baseline import baseline_summary, baseline_table, dose_text
from cartkinetics.endpoints.cohort import Cohort, read_cohort
from cartkinetics.endpoints.markdown import markdown_table
from cartkinetics.endpoints.response import (
    DEFAULT_ORR,
    Rate,
    normalise_response_codes,
    response_counts,
    response_endpoints,
    response_table,
)
from cartkinetics.endpoints.result import EndpointResultAPI
from cartkinetics.endpoints.safety import deaths, safety_endpoints, safety_table
from cartkinetics.endpoints.survival import (
    FOLLOW_UP_METHOD,
    MEDIAN_METHOD,
    SurvivalEndpoint,
    follow_up,
    logrank_test,
    survival_endpoint,
)
from cartkinetics.errors import CartKineticsError
from cartkinetics.serialize import dumps, jsonable

RATE_KEYS = ("orr", "cr", "mrd_negative_cr", "pet_cmr")
SURVIVAL_COLUMNS = {"os": ("os_days", "death"), "efs": ("efs_days", "efs_event")}
SURVIVAL_LABELS = {"os": "Overall survival", "efs": "Event-free survival"}
KINETIC_METRICS = ("cmax", "tmax", "auc_0_28")


def _pct(x: float | None, digits: int = 1) -> str:
    return "NA" if x is None or (isinstance(x, float) and math.isnan(x)) else (
        f"{100 * x:.{digits}f}%"
    )


def _days(x: float | None) -> str:
    return "not reached" if x is None else f"{x:g}"


def _rate_text(r: Rate) -> str:
    if r.n == 0:
        return f"{r.k}/{r.n}"
    return (f"{r.k}/{r.n} ({_pct(r.rate)}; 95% CI {100 * r.ci_low:.1f}-"
            f"{100 * r.ci_high:.1f}%)")


@dataclass(repr=False)  # the short repr of EndpointResultAPI, not every field
class EndpointResult(EndpointResultAPI):
    """Cohort endpoints, each with its method named.

    Attributes
    ----------
    cohort : Cohort
        The validated input.
    rates : dict
        ``orr``, ``cr``, ``mrd_negative_cr``, ``pet_cmr`` -> :class:`Rate` (those computed).
    os, efs : SurvivalEndpoint or None
        Kaplan-Meier curves, medians and landmark estimates.
    follow_up : dict or None
        Median follow-up (simple and reverse Kaplan-Meier), see :func:`follow_up`.
    safety : dict
        ``crs``, ``icans``, ``agvhd`` -> ``{grade: count}`` (those present).
    deaths : dict or None
        Deaths with days and causes.
    baseline : dict
        Age, dose per kg and category counts.
    kinetics : dict or None
        ``cartkinetics.compare.compare_infusions`` output when a kinetics set was given.
    omitted : list of dict
        ``{"endpoint", "reason"}`` for endpoints that could not be computed.
    landmarks : tuple of float
        Landmark days used.
    orr_codes : tuple of str
        Responses counted in the ORR.
    by : str or None
        Subgroup column; ``subgroups`` maps each level to its own result and ``logrank``
        holds the two-group OS/EFS comparisons.
    notes : list of str
        Warnings worth reading (e.g. kinetics patients missing from the cohort table).
    """

    cohort: Cohort
    rates: dict[str, Rate]
    os: SurvivalEndpoint | None
    efs: SurvivalEndpoint | None
    follow_up: dict | None
    safety: dict[str, dict[str, int]]
    deaths: dict | None
    baseline: dict
    kinetics: dict | None = None
    omitted: list[dict] = field(default_factory=list)
    landmarks: tuple[float, ...] = (365.0, 730.0)
    orr_codes: tuple[str, ...] = DEFAULT_ORR
    by: str | None = None
    subgroups: dict[str, EndpointResult] = field(default_factory=dict)
    logrank: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of patients."""
        return self.cohort.n

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """The ``--json`` document.

        Keys: ``n``; ``orr``, ``cr``, ``mrd_negative_cr``, ``pet_cmr`` each ``{k, n, rate,
        ci_low, ci_high, method}``; ``os``, ``efs`` each ``{events, median, median_ci,
        landmarks {"365": {estimate, ci_low, ci_high, at_risk}, ...}, method}``;
        ``follow_up`` ``{median, min, max, reverse_km_median}``; ``crs``, ``icans``,
        ``agvhd`` each ``{grade: count}``; ``age``, ``dose_per_kg`` each ``{median, min,
        max}``; ``kinetics`` when a kinetics set was given; ``omitted`` (list of
        ``{endpoint, reason}``). An omitted endpoint's key holds ``null``; ``median`` is
        ``null`` when not reached and so is a ``median_ci`` limit. With a subgroup column:
        ``by``, ``subgroups`` (level -> the same document) and ``logrank``; ``notes`` when
        there are warnings.
        Rates and survival probabilities are fractions (0-1); times are days.
        """
        out: dict[str, Any] = {"n": self.n}
        for key in RATE_KEYS:
            out[key] = self.rates[key].to_dict() if key in self.rates else None
        out["os"] = self.os.to_dict() if self.os is not None else None
        out["efs"] = self.efs.to_dict() if self.efs is not None else None
        out["follow_up"] = (
            {k: self.follow_up[k] for k in ("median", "min", "max", "reverse_km_median")}
            if self.follow_up is not None
            else None
        )
        for key in ("crs", "icans", "agvhd"):
            out[key] = self.safety.get(key)
        for key in ("age", "dose_per_kg"):
            s = self.baseline.get(key)
            out[key] = {k: s[k] for k in ("median", "min", "max")} if s else None
        if self.kinetics is not None:
            out["kinetics"] = self.kinetics
        out["omitted"] = list(self.omitted)
        if self.notes:
            out["notes"] = list(self.notes)
        if self.by is not None:
            out["by"] = self.by
            out["subgroups"] = {lev: sub.to_dict() for lev, sub in self.subgroups.items()}
            out["logrank"] = self.logrank
        return jsonable(out)

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string."""
        return dumps(self, indent=indent)

    # ---------------------------------------------------------------- tables
    def efficacy_table(self) -> pd.DataFrame:
        """Response rates and survival estimates: endpoint, value, 95% CI, method."""
        rows = []
        for r in self.rates.values():
            rows.append({
                "endpoint": r.label,
                "value": f"{r.k}/{r.n} ({_pct(r.rate)})",
                "95% CI": f"{100 * r.ci_low:.1f}-{100 * r.ci_high:.1f}%" if r.n else "",
                "method": "Clopper-Pearson exact",
            })
        for name in ("os", "efs"):
            ep = getattr(self, name)
            if ep is None:
                continue
            km = ep.km
            lo, hi = km.median_ci
            rows.append({
                "endpoint": (f"{name.upper()} median, days ({km.n_events} "
                             f"event{'' if km.n_events == 1 else 's'})"),
                "value": _days(km.median),
                "95% CI": f"{_days(lo)}-{_days(hi)}",
                "method": "Kaplan-Meier; Brookmeyer-Crowley (log-log)",
            })
            for day, lm in ep.landmarks.items():
                est = lm["estimate"]
                rows.append({
                    "endpoint": f"{name.upper()} at {_when(day)}, at risk {lm['at_risk']}",
                    "value": _pct(est) if est is not None else "not estimable",
                    "95% CI": (f"{100 * lm['ci_low']:.1f}-{100 * lm['ci_high']:.1f}%"
                               if est is not None else ""),
                    "method": "Kaplan-Meier, log-log CI",
                })
        if self.follow_up is not None:
            fu = self.follow_up
            rows.append({
                "endpoint": "Median follow-up, days",
                "value": f"{fu['median']:g} ({fu['min']:g}-{fu['max']:g})",
                "95% CI": "",
                "method": "median (range) of all patients",
            })
            rows.append({
                "endpoint": "Median follow-up, reverse Kaplan-Meier, days",
                "value": _days(fu["reverse_km_median"]),
                "95% CI": "",
                "method": "reverse Kaplan-Meier",
            })
        return pd.DataFrame(rows, columns=["endpoint", "value", "95% CI", "method"])

    def survival_table(self) -> pd.DataFrame:
        """Tidy survival summary: endpoint, landmark day, estimate, limits, at risk."""
        rows = []
        for name in ("os", "efs"):
            ep = getattr(self, name)
            if ep is None:
                continue
            lo, hi = ep.km.median_ci
            rows.append({"endpoint": name, "quantity": "median", "day": None,
                         "estimate": ep.km.median, "ci_low": lo, "ci_high": hi,
                         "at_risk": None, "events": ep.km.n_events})
            for day, lm in ep.landmarks.items():
                rows.append({"endpoint": name, "quantity": "landmark", "day": float(day),
                             "estimate": lm["estimate"], "ci_low": lm["ci_low"],
                             "ci_high": lm["ci_high"], "at_risk": lm["at_risk"],
                             "events": ep.km.n_events})
        return pd.DataFrame(rows, columns=["endpoint", "quantity", "day", "estimate", "ci_low",
                                           "ci_high", "at_risk", "events"])

    def kinetics_table(self) -> pd.DataFrame | None:
        """First vs second infusion, one row per metric (None without kinetics).

        Columns: metric, n pairs, median after the first and the second infusion, the
        paired estimate (geometric mean ratio second/first for Cmax and AUC0-28, median
        difference second - first in days for Tmax) with its 95% CI, p-value and test.
        """
        if self.kinetics is None:
            return None
        rows = []
        for metric in KINETIC_METRICS:
            r = self.kinetics.get(metric)
            if not isinstance(r, dict):
                continue
            ratio = metric != "tmax"
            # Tmax: the distribution-free CI is that of the Hodges-Lehmann estimate
            hl = r.get("hodges_lehmann")
            label = "GM ratio second/first" if ratio else (
                "difference, days: Hodges-Lehmann (median "
                f"{_num(r.get('median_difference'))})" if hl is not None
                else "median difference, days")
            rows.append({
                "metric": metric,
                "n": r.get("n"),
                "median_first": r.get("median_first"),
                "median_second": r.get("median_second"),
                "estimate": label,
                "value": r.get("ratio_gm") if ratio else (
                    hl if hl is not None else r.get("median_difference")),
                "ci_low": r.get("ci_low"),
                "ci_high": r.get("ci_high"),
                "p_value": r.get("p_value"),
                "test": r.get("test"),
            })
        return pd.DataFrame(rows, columns=["metric", "n", "median_first", "median_second",
                                           "estimate", "value", "ci_low", "ci_high", "p_value",
                                           "test"]).astype({"median_first": float,
                                                            "median_second": float,
                                                            "value": float, "ci_low": float,
                                                            "ci_high": float, "p_value": float})

    def subgroup_table(self) -> pd.DataFrame | None:
        """One row per subgroup level: n, ORR, CR, OS/EFS events and landmark estimates."""
        if self.by is None:
            return None
        rows = []
        for level, sub in self.subgroups.items():
            row: dict[str, Any] = {self.by: level, "n": sub.n}
            for key in ("orr", "cr", "mrd_negative_cr"):
                if key in sub.rates:
                    r = sub.rates[key]
                    row[key] = f"{r.k}/{r.n} ({_pct(r.rate)})"
            for name in ("os", "efs"):
                ep = getattr(sub, name)
                if ep is None:
                    continue
                row[f"{name}_events"] = ep.km.n_events
                for day, lm in ep.landmarks.items():
                    est = lm["estimate"]
                    row[f"{name}_day{day}"] = (
                        f"{_pct(est)} ({100 * lm['ci_low']:.1f}-{100 * lm['ci_high']:.1f}%)"
                        if est is not None else "not estimable"
                    )
            rows.append(row)
        return pd.DataFrame(rows)

    def tables(self) -> dict[str, pd.DataFrame]:
        """All tidy tables by name (written as CSV by :meth:`write`)."""
        out: dict[str, pd.DataFrame] = {
            "baseline": baseline_table(self.cohort),
            "efficacy": self.efficacy_table(),
            "response_rates": response_table(self.rates),
        }
        if self.cohort.has("best_response"):
            out["best_response"] = response_counts(self.cohort)
        if self.os is not None or self.efs is not None:
            out["survival"] = self.survival_table()
        for name in ("os", "efs"):
            ep = getattr(self, name)
            if ep is not None:
                out[f"km_{name}"] = ep.km.table()
        out["safety"] = safety_table(self.cohort)
        if self.deaths is not None:
            out["deaths"] = pd.DataFrame(self.deaths["patients"], columns=["patient", "day",
                                                                           "cause"])
        kin = self.kinetics_table()
        if kin is not None:
            out["kinetics"] = kin
            pairs = self.kinetics.get("pairs")
            if isinstance(pairs, pd.DataFrame):
                out["kinetics_pairs"] = pairs
        sub = self.subgroup_table()
        if sub is not None:
            out["subgroups"] = sub
        if self.omitted:
            out["omitted"] = pd.DataFrame(self.omitted, columns=["endpoint", "reason"])
        return out

    # -------------------------------------------------------------- markdown
    def to_markdown(self) -> str:
        """Paper-style tables: Table 1 baseline, Table 2 efficacy, Table 3 safety, kinetics."""
        parts = [f"# Cohort endpoints (n = {self.n})", ""]
        parts += [markdown_table(baseline_table(self.cohort),
                                 title="Table 1. Baseline characteristics"), ""]
        parts += [markdown_table(self.efficacy_table(), title="Table 2. Efficacy"), ""]
        st = safety_table(self.cohort)
        if len(st):
            st = st.assign(**{"n (%)": [f"{n} ({p:.1f}%)" for n, p in zip(st["n"], st["percent"],
                                                                       strict=True)]})
            parts += [markdown_table(st[["event", "grade", "n (%)"]],
                                     title="Table 3. Safety (ASTCT CRS/ICANS; acute GVHD)"), ""]
        if self.deaths is not None:
            if self.deaths["n"]:
                dt = pd.DataFrame(self.deaths["patients"], columns=["patient", "day", "cause"])
                parts += [markdown_table(dt, title=f"Deaths: {self.deaths['n']}"), ""]
            else:
                parts += ["**Deaths:** none", ""]
        kin = self.kinetics_table()
        if kin is not None:
            parts += [markdown_table(kin, title="Table 4. Kinetics, second vs first infusion"), ""]
        sub = self.subgroup_table()
        if sub is not None:
            parts += [markdown_table(sub, title=f"Subgroups by {self.by}"), ""]
            for name, lr in self.logrank.items():
                if "chi2" in lr:
                    parts.append(f"- {name.upper()} log-rank {lr['groups'][0]} vs "
                                 f"{lr['groups'][1]}: chi-square {lr['chi2']:.2f}, "
                                 f"p = {lr['p']:.3g}")
                else:
                    parts.append(f"- {name.upper()} log-rank: not computed ({lr['reason']})")
            parts.append("")
        parts += ["**Methods.** Rates: Clopper-Pearson exact 95% CI. Survival: Kaplan-Meier with "
                  "log-log (exponential Greenwood) 95% CI; " + MEDIAN_METHOD + ". Follow-up: "
                  + FOLLOW_UP_METHOD + ".", ""]
        if self.notes:
            parts.append("**Notes.**")
            parts += [f"- {note}" for note in self.notes]
            parts.append("")
        if self.omitted:
            parts.append("**Omitted endpoints.**")
            parts += [f"- {o['endpoint']}: {o['reason']}" for o in self.omitted]
            parts.append("")
        return "\n".join(parts)

    # --------------------------------------------------------------- summary
    def summary(self) -> str:
        """A short text that reads like a study abstract, each estimate with its method."""
        lines = []
        base = self.baseline
        head = f"{self.n} patients"
        if base.get("age"):
            a = base["age"]
            head += f", median age {a['median']:g} (range {a['min']:g}-{a['max']:g})"
        cats = base.get("categories", {})
        if "disease" in cats:
            head += ": " + ", ".join(f"{c} {lev}" for lev, c in cats["disease"].items())
        lines.append(head + ".")
        if "target" in cats:
            lines.append("CAR target: " + ", ".join(f"{lev} (n={c})"
                                                     for lev, c in cats["target"].items()) + ".")
        if base.get("dose_per_kg"):
            lines.append(f"Median dose {dose_text(base['dose_per_kg'])}.")

        resp = []
        if "orr" in self.rates:
            resp.append(f"ORR ({' + '.join(self.orr_codes)}) {_rate_text(self.rates['orr'])}")
        if "mrd_negative_cr" in self.rates:
            resp.append(f"MRD-negative CR/CRi {_rate_text(self.rates['mrd_negative_cr'])}")
        elif "cr" in self.rates:
            resp.append(f"CR/CRi {_rate_text(self.rates['cr'])}")
        if "pet_cmr" in self.rates:
            resp.append("complete metabolic remission on PET-CT in extramedullary-only disease "
                        f"{_rate_text(self.rates['pet_cmr'])}")
        if resp:
            lines.append("Response: " + "; ".join(resp) + " (Clopper-Pearson exact CIs).")

        surv = []
        if self.follow_up is not None:
            fu = self.follow_up
            surv.append(f"median follow-up {fu['median']:g} days (range {fu['min']:g}-"
                        f"{fu['max']:g}; reverse Kaplan-Meier {_days(fu['reverse_km_median'])})")
        for name in ("os", "efs"):
            ep = getattr(self, name)
            if ep is None:
                continue
            km = ep.km
            text = f"{name.upper()}: {km.n_events} event{'s' if km.n_events != 1 else ''}, median "
            if km.median is None:
                text += "not reached"
            else:
                lo, hi = km.median_ci
                text += f"{km.median:g} days (95% CI {_days(lo)}-{_days(hi)})"
            for day, lm in ep.landmarks.items():
                when = _when(day, adjective=True)
                if lm["estimate"] is None:
                    text += f", {when} not estimable (follow-up ends on day {km.max_time:g})"
                    continue
                text += (f", {when} {_pct(lm['estimate'])} (95% CI {100 * lm['ci_low']:.1f}-"
                         f"{100 * lm['ci_high']:.1f}%)")
            surv.append(text)
        if surv:
            lines.append("Survival: " + "; ".join(surv)
                         + " (Kaplan-Meier, log-log 95% CIs; median CI by Brookmeyer-Crowley).")

        safe = []
        n = self.n
        for key, label in (("crs", "CRS"), ("icans", "ICANS"), ("agvhd", "acute GVHD")):
            dist = self.safety.get(key)
            if dist is None:
                continue
            anyg = sum(c for g, c in dist.items() if int(g) >= 1)
            if anyg == 0:
                safe.append(f"no {label}")
                continue
            grades = ", ".join(f"grade {g} {c}/{n} ({100 * c / n:.1f}%)"
                               for g, c in dist.items() if int(g) >= 1 and c)
            g3 = sum(c for g, c in dist.items() if int(g) >= 3)
            text = f"{label} in {anyg}/{n} ({grades})"
            if key != "agvhd":
                text += "; no grade >=3" if g3 == 0 else f"; grade >=3 in {g3}/{n}"
            safe.append(text)
        if self.deaths is not None:
            if self.deaths["n"] == 0:
                safe.append("no deaths")
            else:
                who = "; ".join(
                    f"{p['cause']}" + (f" on day {p['day']:g}" if p["day"] is not None else "")
                    for p in self.deaths["patients"]
                )
                safe.append(f"{self.deaths['n']} death{'s' if self.deaths['n'] > 1 else ''} "
                            f"({who})")
        if safe:
            lines.append("Safety (CRS/ICANS by ASTCT consensus grading): " + "; ".join(safe) + ".")

        if self.kinetics is not None:
            lines.append("Kinetics (second vs first infusion): " + _kinetics_text(self.kinetics))
        if self.by is not None and self.logrank:
            for name, lr in self.logrank.items():
                if "chi2" in lr:
                    lines.append(f"{name.upper()} by {self.by} ({lr['groups'][0]} vs "
                                 f"{lr['groups'][1]}): log-rank chi-square {lr['chi2']:.2f}, "
                                 f"p = {lr['p']:.3g}.")
        lines += [f"Note: {note}" for note in self.notes]
        if self.omitted:
            lines.append("Not reported (missing data): "
                         + "; ".join(f"{o['endpoint']} ({o['reason']})" for o in self.omitted)
                         + ".")
        return "\n".join(lines)

    # ---------------------------------------------------------------- output
    def write(self, out_dir: str | Path, *, figures: bool = True) -> list[Path]:
        """Write CSV tables, ``endpoints.md``, ``endpoints.json``, ``summary.txt`` and PNGs.

        Returns the paths written.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, table in self.tables().items():
            path = out / f"{name}.csv"
            table.to_csv(path, index=False)
            written.append(path)
        for name, text in (("endpoints.md", self.to_markdown()),
                           ("endpoints.json", self.to_json()),
                           ("summary.txt", self.summary() + "\n")):
            path = out / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
        if figures:
            written += self._write_figures(out)
        return written

    def figures(self) -> dict[str, Any]:
        """matplotlib Figures by name: ``km_os``, ``km_efs`` (per subgroup when ``by`` was
        given) and ``swimmer``; the caller closes them (e.g. for an HTML report)."""
        import matplotlib.pyplot as plt

        from cartkinetics.endpoints.plots import plot_km, plot_swimmer

        figs: dict[str, Any] = {}
        for name in ("os", "efs"):
            ep = getattr(self, name)
            if ep is None:
                continue
            curves = {"all patients": ep.km}
            if self.by is not None:
                curves = {f"{self.by}={lev}": getattr(sub, name).km
                          for lev, sub in self.subgroups.items() if getattr(sub, name) is not None}
            fig, ax = plt.subplots(figsize=(7, 5))
            plot_km(curves, ax=ax, title=SURVIVAL_LABELS[name], ylabel=SURVIVAL_LABELS[name])
            figs[f"km_{name}"] = fig
        if self.cohort.has("os_days"):
            fig, ax = plt.subplots(figsize=(8, 0.45 * self.n + 1.8))
            plot_swimmer(self.cohort, ax=ax)
            figs["swimmer"] = fig
        return figs

    def _write_figures(self, out: Path) -> list[Path]:
        from cartkinetics.plots import save_figures

        return save_figures(self.figures(), out, dpi=120)


def _kinetics_text(kin: dict) -> str:
    """The compare_infusions result as an abstract sentence, tests named."""
    parts = []
    for metric, label in (("cmax", "Cmax"), ("tmax", "Tmax"), ("auc_0_28", "AUC0-28")):
        r = kin.get(metric)
        if not isinstance(r, dict) or not r.get("n"):
            continue
        unit = " days" if metric == "tmax" else (
            f" {kin['unit']}" if metric == "cmax" and kin.get("unit") else "")
        text = (f"{label} median {_num(r.get('median_second'))}{unit} after the second vs "
                f"{_num(r.get('median_first'))}{unit} after the first")
        if metric == "tmax":
            # the interval is the Hodges-Lehmann one: give it with its own estimate
            text += f", median difference {_num(r.get('median_difference'))} days"
            if r.get("hodges_lehmann") is not None and _ci_text(r, "", ""):
                text += (f" (Hodges-Lehmann estimate {_num(r['hodges_lehmann'])} days"
                         + _ci_text(r, "", " days").replace(" (", ", ", 1))
            else:
                text += _ci_text(r, "", " days")
        else:
            text += f", geometric mean ratio {_num(r.get('ratio_gm'))}" + _ci_text(r, "", "")
        if r.get("p_value") is not None and math.isfinite(r["p_value"]):
            text += f", P = {r['p_value']:.3g} ({r.get('test', '')})"
        if r.get("n_truncated_excluded"):
            text += (f" ({r['n_truncated_excluded']} pair(s) left out: AUC0-28 truncated before "
                     "day 28)")
        parts.append(text)
    head = f"{kin.get('n_pairs')} patients with both infusions"
    if kin.get("assay"):
        head += f" ({kin['assay']}, {kin.get('source', 'NCA')})"
    return head + ": " + "; ".join(parts) + "." if parts else head + "."


def _when(day: str, adjective: bool = False) -> str:
    """'2-year' / '2 years (day 730)' for whole years of 365 days, else 'day 100'."""
    years = float(day) / 365.0
    if years.is_integer() and years > 0:
        n = int(years)
        return f"{n}-year" if adjective else f"{n} year{'s' if n > 1 else ''} (day {day})"
    return f"day-{day}" if adjective else f"day {day}"


def _num(x: Any) -> str:
    return "NA" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def _ci_text(r: dict, prefix: str, unit: str) -> str:
    lo, hi = r.get("ci_low"), r.get("ci_high")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" (95% CI {prefix}{lo:.3g} to {hi:.3g}{unit})"


def _kinetics_compare(kinetics: Any, kinetics_table: pd.DataFrame | None,
                      assay: str | None, comparison: Any = None) -> dict:
    """NCA of a kinetics data set (or a given per-infusion table) -> first vs second.

    With several assays and none chosen, qPCR (the transgene measure) is used when present,
    else the first assay alphabetically; the choice is recorded under ``assay``. A
    ``comparison`` already computed on that table (and assay) is used as it is.
    """
    from cartkinetics.compare import compare_infusions

    source = "fitted outcomes table"
    if kinetics_table is None and comparison is not None:
        raise CartKineticsError("a comparison needs the table it was computed on "
                                "(kinetics_table=)")
    if kinetics_table is None:
        from cartkinetics.noncompartmental import nca

        kinetics_table = nca(kinetics).to_frame()  # nca reads paths, DataFrames, KineticsData
        source = "NCA"
    if assay is None and "assay" in kinetics_table.columns:
        assays = sorted(kinetics_table["assay"].astype(str).unique())
        if assays:
            assay = "qpcr" if "qpcr" in assays else assays[0]
    if comparison is not None:
        res = comparison
        source = comparison.basis or source
    else:
        res = compare_infusions(kinetics_table, assay=assay, basis=source)
    out = res.to_dict()
    out["assay"] = assay
    unit = None
    if "unit" in kinetics_table.columns:
        rows = kinetics_table if assay is None else kinetics_table[
            kinetics_table["assay"].astype(str) == assay]
        units = sorted(rows["unit"].dropna().astype(str).unique())
        unit = units[0] if len(units) == 1 else None
    out["unit"] = unit
    out["source"] = source
    out["pairs"] = res.pairs
    return out


def cohort_endpoints(
    cohort: Cohort | str | Path | pd.DataFrame,
    *,
    kinetics: Any = None,
    kinetics_table: pd.DataFrame | None = None,
    landmarks: Sequence[float] = (365.0, 730.0),
    orr: Iterable[str] = DEFAULT_ORR,
    by: str | None = None,
    mapping: dict[str, str] | None = None,
    kinetics_assay: str | None = None,
    comparison: Any = None,
) -> EndpointResult:
    """Response, survival, safety, baseline (and kinetics) endpoints of a cohort.

    Parameters
    ----------
    cohort : Cohort, path or DataFrame
        The cohort table (read with :func:`read_cohort` unless already a Cohort).
    kinetics : path, DataFrame or KineticsData, optional
        A kinetics data set: read with ``cartkinetics.data.read_kinetics``, reduced with
        ``cartkinetics.noncompartmental.nca`` and compared first vs second infusion with
        ``cartkinetics.compare.compare_infusions``.
    kinetics_table : DataFrame, optional
        A per-infusion table (patient, infusion, cmax, tmax, auc_0_28) from fits instead
        of NCA; passed to ``compare_infusions`` directly. The ``kinetics`` entry of the
        result is ``Comparison.to_dict()`` output plus ``assay``, ``source`` and ``pairs``.
    landmarks : sequence of float
        Landmark days for survival estimates (default 1 and 2 years).
    orr : iterable of str
        Responses counted in the overall response rate (default CR, CRi, PR).
    by : str, optional
        A column (e.g. target, disease, extramedullary_only): every endpoint per level, and
        OS/EFS log-rank tests when there are exactly two levels.
    mapping : dict, optional
        Column mapping passed to :func:`read_cohort`.
    kinetics_assay : str, optional
        Assay compared when the kinetics set has several (default qpcr when present).
    comparison : Comparison, optional
        The first-vs-second comparison already computed on ``kinetics_table`` for
        ``kinetics_assay`` (e.g. by :func:`cartkinetics.pipeline.run_analysis`): used instead
        of comparing again.

    Returns
    -------
    EndpointResult
    """
    if not isinstance(cohort, Cohort):
        cohort = read_cohort(cohort, mapping=mapping)
    landmarks = tuple(float(x) for x in landmarks)
    if any(not math.isfinite(x) or x < 0 for x in landmarks):
        raise CartKineticsError("landmark days must be finite and >= 0")
    orr_codes = normalise_response_codes(orr)
    rates, omitted = response_endpoints(cohort, orr=orr_codes)

    surv: dict[str, SurvivalEndpoint | None] = {}
    table = cohort.table
    for name, (tcol, ecol) in SURVIVAL_COLUMNS.items():
        missing = cohort.missing(tcol, ecol)
        if missing:
            surv[name] = None
            omitted.append({"endpoint": name,
                            "reason": f"no {' or '.join(repr(m) for m in missing)} column"})
        else:
            surv[name] = survival_endpoint(name, table[tcol].to_numpy(float),
                                           table[ecol].astype(bool).to_numpy(), landmarks)
    fu = None
    if surv["os"] is not None:
        fu = follow_up(table["os_days"].to_numpy(float), table["death"].astype(bool).to_numpy())
    else:
        omitted.append({"endpoint": "follow_up", "reason": "needs 'os_days' and 'death'"})

    safety, om = safety_endpoints(cohort)
    omitted += om
    base = baseline_summary(cohort)
    for key in ("age", "dose_per_kg"):
        if base.get(key) is None:
            omitted.append({"endpoint": key, "reason": f"no '{key}' column or no values"})

    kin = None
    notes: list[str] = []
    if kinetics is not None or kinetics_table is not None:
        kin = _kinetics_compare(kinetics, kinetics_table, kinetics_assay, comparison)
        pairs = kin["pairs"]
        unknown = sorted(set(pairs["patient"].astype(str)) - set(cohort.table["patient"]))
        if unknown:
            notes.append(f"{len(unknown)} of {kin['n_pairs']} patients in the kinetic "
                         f"comparison are not in the cohort table ({', '.join(unknown[:5])}"
                         f"{', ...' if len(unknown) > 5 else ''}): check the patient ids")

    result = EndpointResult(
        cohort=cohort, rates=rates, os=surv["os"], efs=surv["efs"], follow_up=fu,
        safety=safety, deaths=deaths(cohort), baseline=base, kinetics=kin, omitted=omitted,
        landmarks=landmarks, orr_codes=orr_codes, notes=notes,
    )
    if by is not None:
        _add_subgroups(result, by, landmarks, orr_codes)
    return result


def _add_subgroups(result: EndpointResult, by: str, landmarks, orr_codes) -> None:
    cohort = result.cohort
    key = by.strip().lower()
    if key not in cohort.table.columns or key == "source_row":
        raise CartKineticsError(
            f"subgroup column '{by}' not in the cohort table", source=cohort.source, column=by
        )
    col = cohort.table[key]
    if col.isna().any():
        row = int(cohort.table.loc[col.isna(), "source_row"].iloc[0])
        raise CartKineticsError("subgroup value missing", source=cohort.source, row=row,
                                column=cohort.columns.get(key, by))
    if pd.api.types.is_bool_dtype(col):
        labels = col.map({True: "yes", False: "no"}).astype(str)
    else:
        labels = col.astype(str)
    result.by = key
    for level in sorted(labels.unique()):
        sub = cohort.subset((labels == level).to_numpy())
        result.subgroups[level] = cohort_endpoints(sub, landmarks=landmarks, orr=orr_codes)
    for name, (tcol, ecol) in SURVIVAL_COLUMNS.items():
        if getattr(result, name) is None:
            continue
        if labels.nunique() != 2:
            result.logrank[name] = {"reason": f"log-rank is for two groups; '{by}' has "
                                              f"{labels.nunique()} levels"}
            continue
        result.logrank[name] = logrank_test(cohort.table[tcol].to_numpy(float),
                                            cohort.table[ecol].astype(bool).to_numpy(),
                                            labels.to_numpy())
