"""Plots of a simulation: prediction bands per scenario, exposure against dose.

matplotlib is imported inside the functions (``import cartkinetics`` never imports it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError


def plot_bands(result: Any, ax: Any = None, log: bool = True) -> Any:
    """Median and 5-95 % band of the kept time courses (``keep_curves``), per scenario.

    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if not result.curves:
        raise CartKineticsError(
            "no time courses kept (the run passed keep_curves=0): run simulate(..., "
            "keep_curves=200) or leave keep_curves at its default")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    for name, (t, C) in result.curves.items():
        ok = np.all(np.isfinite(C), axis=1)
        if not ok.any():
            continue
        lo, med, hi = np.percentile(C[ok], [5, 50, 95], axis=0)
        (line,) = ax.plot(t, med, label=f"{name} (n={int(ok.sum())})")
        ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("days since first infusion")
    ax.set_ylabel(f"{result.model} level (median, 5-95 % band)")
    ax.legend(fontsize=8)
    ax.set_title(f"{result.model}: simulated prediction bands")
    return ax


def plot_dose_exposure(result: Any, key: str = "cmax", ax: Any = None) -> Any:
    """Median and 5-95 % interval of an outcome against the dose per kg (one point per
    scenario with a per-kg dose). Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    table = result.summary(keys=[key])
    doses = {s.name: s.dose_per_kg for s in result.scenarios}
    table = table[[doses[s] is not None for s in table["scenario"]]]
    if table.empty:
        raise CartKineticsError("no scenario has a per-kg dose to plot against")
    x = np.array([doses[s] for s in table["scenario"]], dtype=float)
    order = np.argsort(x)
    med = table[f"{key}_median"].to_numpy()[order]
    lo = table[f"{key}_p05"].to_numpy()[order]
    hi = table[f"{key}_p95"].to_numpy()[order]
    x = x[order]
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="o-", capsize=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dose (CAR-T cells/kg)")
    ax.set_ylabel(f"{key} (median, 5-95 %)")
    ax.set_title(f"{result.model}: {key} against dose")
    return ax
