"""Shared plotting helpers. matplotlib is imported inside each function, never at import.

Every function takes ``ax=`` (or an array of axes) and returns what it drew on, in the
manner of ``scipy.stats`` result plots.
"""

from __future__ import annotations

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
