"""Exposure-response figures as regulatory clinical-pharmacology reviews draw them.

* probability of the outcome against exposure (log axis): each patient at 0 or 1, the
  Firth-fitted logistic curve with its pointwise 95% band, and the observed proportion per
  exposure quartile (at the quartile's median exposure) with Clopper-Pearson 95% bars;
* Kaplan-Meier from the landmark by exposure tertile, with numbers at risk;
* a forest plot of odds and hazard ratios per doubling of exposure.

matplotlib is imported inside the functions. Each takes ``ax=`` and returns the Axes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cartkinetics.exposure.metrics import metric_label


def _axes(ax: Any, size: tuple[float, float] = (6.5, 4.5)) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=size)
    return ax


def plot_probability(analysis: Any, ax: Any = None, *, band: bool = True,
                     quartiles: bool = True, title: str | None = None) -> Any:
    """Probability of a binary outcome against exposure.

    Parameters
    ----------
    analysis : BinaryAnalysis
    ax : matplotlib Axes, optional
    band : bool
        Draw the 95% band of the fitted curve (Wald on the logit scale).
    quartiles : bool
        Draw the observed proportion per exposure quartile with Clopper-Pearson 95% bars.

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    a = analysis
    x, y = a.exposure, a.y
    if x.size == 0:
        ax.text(0.5, 0.5, "no patient with a usable exposure", ha="center",
                transform=ax.transAxes)
        return ax
    lo_x, hi_x = float(x.min()), float(x.max())
    span = max(hi_x / lo_x, 1.01)
    grid = np.geomspace(lo_x / span ** 0.08, hi_x * span ** 0.08, 200)
    if a.firth.exists or np.isfinite(a.firth.coef):
        p, lo, hi = a.predict(grid)
        if band:
            ax.fill_between(grid, lo, hi, color="C0", alpha=0.18, lw=0, label="95% CI")
        ax.plot(grid, p, color="C0", lw=2, label="Firth logistic fit")
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.025, 0.025, y.size)
    ax.plot(x, y + jitter, "o", ms=5, color="0.25", alpha=0.7, mfc="none",
            label="patients (0 = no, 1 = yes)")
    if quartiles and not a.quartiles.empty:
        q = a.quartiles
        yerr = np.vstack([q["proportion"] - q["ci_low"], q["ci_high"] - q["proportion"]])
        ax.errorbar(q["exposure_median"], q["proportion"], yerr=yerr, fmt="s", color="C3",
                    ms=6, capsize=3, label="observed by quartile (Clopper-Pearson 95%)")
    ax.set_xscale("log")
    ax.set_ylim(-0.07, 1.07)
    unit = f" ({a.unit})" if a.unit else ""
    ax.set_xlabel(f"{metric_label(a.metric)}{unit}")
    ax.set_ylabel(f"P({a.outcome_label})")
    f = a.firth
    if f.exists:
        r = f.ratio
        txt = (f"OR per doubling {r[0]:.2f} (95% CI {r[1]:.2f}-{r[2]:.2f}); "
               f"n={a.n}, events={a.events}")
    else:
        txt = f"n={a.n}, events={a.events}; {f.note}"
    ax.set_title(title or f"{a.outcome_label} vs {metric_label(a.metric)}", fontsize=10)
    ax.text(0.01, 0.99, txt, transform=ax.transAxes, fontsize=7, va="top", color="0.3")
    ax.legend(loc="center right", fontsize=7, frameon=False)
    return ax


def plot_km_by_exposure(analysis: Any, ax: Any = None, **kw: Any) -> Any:
    """Kaplan-Meier from the landmark by exposure group, log-rank p in the title.

    Parameters
    ----------
    analysis : SurvivalAnalysis
    ax : matplotlib Axes, optional
    **kw
        Passed to :func:`cartkinetics.endpoints.plots.plot_km`.

    Returns
    -------
    matplotlib Axes
    """
    from cartkinetics.endpoints.plots import plot_km

    ax = _axes(ax, (7, 5))
    a = analysis
    if not a.km:
        ax.text(0.5, 0.5, "no patient followed beyond the landmark", ha="center",
                transform=ax.transAxes)
        return ax
    labels = {}
    for g, km in a.km.items():
        xs = a.exposure[a.groups == g]
        labels[f"{g} ({xs.min():.3g}-{xs.max():.3g})"] = km
    kw.setdefault("xlabel", f"Days since the landmark (day {a.landmark.day:g})")
    kw.setdefault("ylabel", f"{a.endpoint_label} probability")
    p = a.logrank.get("p")
    ptxt = f"log-rank p = {p:.2g}" if p is not None else "log-rank not computed"
    kw.setdefault("title", f"{a.endpoint_label} by {metric_label(a.metric)} "
                           f"{a.group_scheme} ({ptxt})")
    plot_km(labels, ax=ax, **kw)
    return ax


def plot_forest(rows: Any, ax: Any = None, *, title: str | None = None) -> Any:
    """Forest plot of odds / hazard ratios per doubling of exposure.

    Parameters
    ----------
    rows : DataFrame
        :meth:`ExposureResponseResult.to_frame` rows (columns ``label``, ``ratio``,
        ``ratio_ci_low``, ``ratio_ci_high``, ``measure``, ``n``, ``events``); rows without a
        ratio are listed with their reason.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt

    n = len(rows)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * n + 1.4))
    if n == 0:
        ax.text(0.5, 0.5, "no estimate", ha="center", transform=ax.transAxes)
        return ax
    ypos = np.arange(n)[::-1]
    finite = rows["ratio"].notna()
    vals = np.concatenate([rows.loc[finite, c].to_numpy(float)
                           for c in ("ratio", "ratio_ci_low", "ratio_ci_high")]) \
        if finite.any() else np.array([0.5, 2.0])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    lo = max(min(vals.min(), 0.5), 1e-3) / 1.3
    hi = min(max(vals.max(), 2.0), 1e3) * 1.3
    for yv, (_, r) in zip(ypos, rows.iterrows(), strict=True):
        color = "C0" if r["measure"].startswith("OR") else "C1"
        if not np.isfinite(r["ratio"]):
            ax.text(math.sqrt(lo * hi), yv, "not estimable", ha="center", va="center",
                    fontsize=7, color="0.4")
            continue
        cl, ch = max(r["ratio_ci_low"], lo), min(r["ratio_ci_high"], hi)
        ax.plot([cl, ch], [yv, yv], color=color, lw=1.6)
        ax.plot(r["ratio"], yv, "s", color=color, ms=6)
        if r["ratio_ci_low"] < lo:
            ax.annotate("", xy=(lo, yv), xytext=(lo * 1.25, yv),
                        arrowprops={"arrowstyle": "->", "color": color})
        if r["ratio_ci_high"] > hi:
            ax.annotate("", xy=(hi, yv), xytext=(hi / 1.25, yv),
                        arrowprops={"arrowstyle": "->", "color": color})
    ax.axvline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_yticks(ypos)
    ax.set_yticklabels([f"{r['label']}  (n={r['n']}, events={r['events']})"
                        for _, r in rows.iterrows()], fontsize=8)
    ax.set_xlabel("ratio per doubling of exposure (95% CI); OR blue, HR orange")
    ax.set_title(title or "Exposure-response: odds and hazard ratios per doubling", fontsize=10)
    return ax
