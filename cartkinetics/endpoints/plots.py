"""Figures for cohort endpoints: Kaplan-Meier curves with CI band and numbers at risk,
and a swimmer plot. matplotlib is imported inside the functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.endpoints.cohort import Cohort
from cartkinetics.endpoints.survival import KaplanMeier

RESPONSE_COLORS = {
    "CR": "#2c7fb8", "CRi": "#41b6c4", "PR": "#a1dab4", "SD": "#fdae61", "PD": "#d7191c",
    "NR": "#d7191c", "NE": "#bbbbbb",
}


def _flag(value: Any) -> bool:
    """A nullable boolean cell as bool (missing = False)."""
    return value is not None and value is not pd.NA and bool(value)


def _step_xy(km: KaplanMeier, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # start at (0, 1) and extend to the last observed time
    x = np.concatenate([[0.0], km.time])
    y = np.concatenate([[1.0], values])
    return x, y


def plot_km(
    curves: KaplanMeier | Mapping[str, KaplanMeier],
    ax: Any = None,
    *,
    at_risk: bool = True,
    ci: bool = True,
    censor_marks: bool = True,
    ticks: Sequence[float] | None = None,
    title: str | None = None,
    ylabel: str = "Survival probability",
    xlabel: str = "Days since infusion",
) -> Any:
    """Kaplan-Meier step curves with shaded log-log CI bands and a numbers-at-risk table.

    Parameters
    ----------
    curves : KaplanMeier or mapping label -> KaplanMeier
        One curve or several (e.g. subgroups).
    ax : matplotlib Axes, optional
        Axes to draw on (a new figure when None).
    at_risk : bool
        Write the number at risk under the x-axis at each tick.
    ci : bool
        Shade the pointwise confidence band.
    censor_marks : bool
        Mark censored times with "+".
    ticks : sequence of float, optional
        x ticks (days) for the axis and the at-risk table; default every 180 days.

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    if isinstance(curves, KaplanMeier):
        curves = {"all patients": curves}
    tmax = max((km.max_time for km in curves.values()), default=1.0)
    if ticks is None:
        step = 180.0 if tmax > 360 else (30.0 if tmax > 60 else max(tmax / 6, 1.0))
        ticks = np.arange(0.0, tmax + step * 0.999, step)
    ticks = np.asarray(ticks, dtype=float)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for i, (label, km) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        x, y = _step_xy(km, km.survival)
        ax.step(x, y, where="post", color=color, lw=1.8,
                label=f"{label} (n={km.n}, events={km.n_events})")
        if ci:
            _, lo = _step_xy(km, km.ci_low)
            _, hi = _step_xy(km, km.ci_high)
            ax.fill_between(x, lo, hi, step="post", color=color, alpha=0.18, lw=0)
        if censor_marks and km.censored.any():
            cens = km.censored > 0
            ax.plot(km.time[cens], km.survival[cens], "+", color=color, ms=9, mew=1.5)
    ax.set_ylim(-0.02, 1.04)
    ax.set_xlim(0, max(ticks[-1], tmax) * 1.02)
    ax.set_xticks(ticks)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    ax.text(0.99, 0.02, "shaded: 95% CI (log-log)", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=7, color="0.4")
    if at_risk:
        trans = ax.get_xaxis_transform()  # x in data, y in axes fraction
        ax.annotate("Number at risk", xy=(0, -0.2), xycoords=trans, fontsize=8,
                    fontweight="bold", ha="left", va="top", annotation_clip=False)
        for i, (label, km) in enumerate(curves.items()):
            yrow = -0.27 - 0.07 * i
            counts = km.number_at_risk(ticks)
            if len(curves) > 1:
                ax.annotate(label, xy=(-0.02, yrow), xycoords="axes fraction", fontsize=7,
                            ha="right", va="top", color=colors[i % len(colors)],
                            annotation_clip=False)
            for tk, c in zip(ticks, counts, strict=True):
                ax.annotate(str(int(c)), xy=(tk, yrow), xycoords=trans, fontsize=8,
                            ha="center", va="top", color=colors[i % len(colors)],
                            annotation_clip=False)
    return ax


def plot_swimmer(cohort: Cohort, ax: Any = None, *, max_day: float | None = None) -> Any:
    """One bar per patient from infusion to last follow-up, coloured by best response.

    Marks: response day (triangle), EFS event other than death (diamond), death (cross),
    ongoing follow-up (arrow); best response, MRD status and CRS / ICANS / aGVHD grades
    written after each bar.

    Parameters
    ----------
    cohort : Cohort
        Needs ``os_days``; other columns are drawn when present.
    ax : matplotlib Axes, optional
    max_day : float, optional
        Right end of the x-axis (days).

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    tab = cohort.table
    if "os_days" not in tab.columns:
        raise ValueError("the swimmer plot needs the 'os_days' column")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * len(tab) + 1.8))
    order = np.argsort(tab["os_days"].to_numpy(float), kind="stable")
    end = float(max_day) if max_day is not None else float(tab["os_days"].max()) * 1.25
    handles = []
    used_resp = set()
    for y, idx in enumerate(order):
        row = tab.iloc[idx]
        days = float(row["os_days"])
        resp = str(row["best_response"]) if "best_response" in tab.columns else "NE"
        mrd = "mrd_negative" in tab.columns and _flag(row["mrd_negative"])
        color = RESPONSE_COLORS.get(resp, "#999999")
        used_resp.add(resp)
        ax.barh(y, days, color=color, height=0.6, edgecolor="0.3", lw=0.5)
        if "response_day" in tab.columns and not np.isnan(row["response_day"]):
            ax.plot(row["response_day"], y, "v", color="black", ms=6)
        died = "death" in tab.columns and _flag(row["death"])
        if "efs_days" in tab.columns and "efs_event" in tab.columns and _flag(row["efs_event"]) \
                and not (died and row["efs_days"] == days):
            ax.plot(row["efs_days"], y, "D", color="#d95f02", ms=6)
        if died:
            ax.plot(days, y, "X", color="#b2182b", ms=9)
        else:
            ax.annotate("", xy=(days + end * 0.04, y), xytext=(days, y),
                        arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 1})
        tox = [f"{resp} MRD-negative" if mrd else resp]
        for col, lab in (("crs_grade", "CRS"), ("icans_grade", "ICANS"), ("agvhd_grade", "aGVHD")):
            if col in tab.columns and int(row[col]) >= 1:
                tox.append(f"{lab} {int(row[col])}")
        ax.text(days + end * 0.06, y, "; ".join(tox), va="center", fontsize=7, color="0.2")
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([str(tab.iloc[i]["patient"]) for i in order])
    ax.set_xlim(0, end * 1.3)
    ax.set_xlabel("Days since infusion")
    ax.set_ylabel("Patient")
    for resp in ["CR", "CRi", "PR", "SD", "PD", "NR", "NE"]:
        if resp in used_resp:
            handles.append(Patch(color=RESPONSE_COLORS[resp], label=resp))
    handles += [
        Line2D([], [], marker="v", color="black", ls="", label="response"),
        Line2D([], [], marker="D", color="#d95f02", ls="", label="relapse/event"),
        Line2D([], [], marker="X", color="#b2182b", ls="", label="death"),
        Line2D([], [], marker=r"$\rightarrow$", color="0.3", ls="", label="ongoing"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
              frameon=False)
    return ax
