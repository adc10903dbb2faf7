"""Shared plotting helpers. matplotlib is imported inside each function, never at import.

Every function takes ``ax=`` (or an array of axes) and returns what it drew on, in the
manner of ``scipy.stats`` result plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

_LABELS = {
    "cmax": "Cmax (level)",
    "tmax": "Tmax (days)",
    "auc_0_28": "AUC0-28 (level x day)",
}
_LOG = {"cmax": True, "tmax": False, "auc_0_28": True}


def paired_plot(
    compare_result: Any,
    ax: Any = None,
    metrics: tuple[str, ...] = ("cmax", "tmax", "auc_0_28"),
    unit: str | None = None,
) -> Any:
    """First versus second infusion, one line per patient (log scale for Cmax and AUC).

    Parameters
    ----------
    compare_result : Comparison
        Output of :func:`cartkinetics.compare_infusions` (uses its ``pairs`` table and each
        metric's medians and p-value); :meth:`Comparison.plot` draws one metric with it.
    ax : matplotlib Axes or array of Axes, optional
        One axes per metric; a new figure when omitted.
    metrics : tuple of str
        Which of ``cmax``, ``tmax``, ``auc_0_28`` to draw.
    unit : str, optional
        Level unit for the axis labels (e.g. ``copies/ug``).

    Returns
    -------
    ndarray of Axes
    """
    import numpy as np

    pairs = compare_result["pairs"]
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(
            1, len(metrics), figsize=(3.4 * len(metrics), 3.6), squeeze=False, layout="constrained"
        )
        axes = np.asarray(ax).ravel()
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
    if axes.size != len(metrics):
        raise ValueError(f"need {len(metrics)} axes for {metrics}, got {axes.size}")
    for a, m in zip(axes, metrics, strict=True):
        first = pairs[f"{m}_first"].to_numpy(dtype=float)
        second = pairs[f"{m}_second"].to_numpy(dtype=float)
        ok = np.isfinite(first) & np.isfinite(second)
        n = int(ok.sum())
        # small horizontal offsets keep tied values (Tmax on a sampling grid) apart
        dx = (np.arange(n) - (n - 1) / 2.0) * (0.12 / max(n, 1))
        labels: dict[float, list[str]] = {}
        for k, (patient, y0, y1) in enumerate(
            zip(pairs["patient"][ok], first[ok], second[ok], strict=True)
        ):
            a.plot([dx[k], 1 + dx[k]], [y0, y1], "-o", color="0.45", lw=1, ms=4)
            labels.setdefault(float(y1), []).append(str(patient))
        for y1, names in labels.items():
            a.annotate(
                ", ".join(names),
                (1.08, y1),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color="0.3",
            )
        res = compare_result.get(m, {})
        a.plot(
            [0, 1],
            [res.get("median_first"), res.get("median_second")],
            "-s",
            color="C3",
            lw=2.2,
            ms=6,
            label="median",
            zorder=3,
        )
        if _LOG.get(m, False):
            a.set_yscale("log")
        label = _LABELS.get(m, m)
        if unit and m != "tmax":
            label = label.replace("level", unit)
        a.set_ylabel(label)
        a.set_xticks([0, 1], ["first", "second"])
        a.set_xlim(-0.3, 1.6)
        p = res.get("p_value")
        if p is not None and np.isfinite(p):
            a.set_title(f"{m}: p = {p:.3g}", fontsize=9)
    axes[0].legend(loc="best", fontsize=8, frameon=False)
    return axes


def plot_kinetics(data: Any, ax: Any = None, fig: Any = None) -> Any:
    """Spaghetti plot of the observed series: one line per patient x infusion, log scale.

    Quantified levels are joined by lines (colour by infusion: first, second, ...); values
    below the limit of quantification are drawn at their LLOQ with a distinct marker (an
    open downward triangle) and not joined, since the level is only known to be lower.
    Excluded rows are not drawn. One panel per assay (qPCR and flow have different units).

    Parameters
    ----------
    data : KineticsData
        As read by :func:`cartkinetics.read_kinetics`.
    ax : matplotlib Axes or sequence of Axes, optional
        One per assay; a new figure when omitted.
    fig : matplotlib Figure, optional
        Figure in which to create the panels (one row) when ``ax`` is not given.

    Returns
    -------
    Axes (one assay) or ndarray of Axes (one per assay, sorted by name)
    """
    import numpy as np

    from cartkinetics.errors import CartKineticsError

    obs = data.observations
    obs = obs[obs["status"] != "excluded"]
    assays = sorted(obs["assay"].astype(str).unique())
    if not assays:
        raise CartKineticsError("no observations to plot (every row is excluded)")
    if ax is None:
        import matplotlib.pyplot as plt

        if fig is None:
            fig = plt.figure(figsize=(5.2 * len(assays), 3.9), layout="constrained")
        axes = np.atleast_1d(np.asarray(fig.subplots(1, len(assays), squeeze=False),
                                        dtype=object)).ravel()
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
    if axes.size != len(assays):
        raise CartKineticsError(
            f"the data hold {len(assays)} assay(s) {assays}: pass {len(assays)} axes, "
            f"got {axes.size}")
    infusions = sorted(int(i) for i in obs["infusion"].unique())
    colours = {inf: f"C{k}" for k, inf in enumerate(infusions)}
    for a, assay in zip(axes, assays, strict=True):
        sub = obs[obs["assay"].astype(str) == assay]
        for (_, inf), s in sub.groupby(["patient", "infusion"], sort=True):
            s = s.sort_values("day")
            blq = s["blq"].to_numpy(dtype=bool)
            day = s["day"].to_numpy(dtype=float)
            value = s["value"].to_numpy(dtype=float)
            lloq = s["lloq"].to_numpy(dtype=float)
            c = colours[int(inf)]
            a.plot(day[~blq], value[~blq], "-o", color=c, lw=0.9, ms=3, alpha=0.75)
            at = np.where(np.isfinite(lloq), lloq, value)[blq]  # a BLQ row's value is its limit
            a.plot(day[blq], at, "v", mfc="none", color=c, ms=5, alpha=0.9)
        a.set_yscale("log")
        units = sorted(sub["unit"].dropna().astype(str).unique())
        unit = units[0] if len(units) == 1 else "assay unit"
        a.set_xlabel("days since infusion")
        a.set_ylabel(f"{assay} level ({unit})")
        n_series = sub.groupby(["patient", "infusion"]).ngroups
        a.set_title(f"{assay}: {sub['patient'].nunique()} patients, {n_series} series",
                    fontsize=9)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=colours[i], marker="o", ms=3, label=f"infusion {i}")
                   for i in infusions]
        handles.append(Line2D([], [], color="0.3", marker="v", mfc="none", ls="none",
                              label="BLQ (at LLOQ)"))
        a.legend(handles=handles, fontsize=7, frameon=False)
    return axes[0] if axes.size == 1 else axes


def save_figures(figures: Mapping[str, Any], out: str | Path, *, dpi: int) -> list[Path]:
    """Write each figure as ``out/<name>.png`` (tight bounding box, ``dpi``) and close it;
    return the paths in the order written."""
    import matplotlib.pyplot as plt  # headless sessions fall back to Agg by themselves

    paths = []
    for name, fig in figures.items():
        path = Path(out) / f"{name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
