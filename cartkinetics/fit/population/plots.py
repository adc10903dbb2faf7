"""Figures of a population fit (matplotlib imported inside each function).

Every function takes a :class:`cartkinetics.fit.population.PopulationFit` and ``ax=None``
(a new figure when None) and returns the axes. BLQ rows are drawn as open markers at their
LLOQ, quantified rows as filled markers.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _axes(ax: Any, figsize: tuple[float, float] = (6.0, 4.0)) -> Any:
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _grid(fit: Any, t_end: float | None = None) -> np.ndarray:
    t_end = float(np.max(fit.data.t)) if t_end is None else float(t_end)
    return np.unique(np.concatenate([np.linspace(0, min(60.0, t_end), 241),
                                     np.linspace(0, t_end, 200)]))


def _thin(n: int, max_draws: int) -> np.ndarray:
    return np.arange(0, n, max(1, n // max_draws))


def _observations(fit: Any, ax: Any, sel: np.ndarray, color: Any) -> None:
    d = fit.data
    sel = sel & d.primary  # the CAR-T levels (other outputs have their own units)
    q = sel & ~d.censored
    c = sel & d.censored
    ax.plot(d.t[q], d.value[q], "o", color=color, ms=4)
    ax.plot(d.t[c], d.value[c], "o", mfc="none", color=color, ms=5)


_COLORS = {1: "tab:blue", 2: "tab:red"}  # first infusion blue, second red


def _band(fit: Any, ax: Any, grid: np.ndarray, th: np.ndarray, q: tuple[float, float], col: str,
          label: str, obs_mask: np.ndarray) -> None:
    """Median and (q_low, q_high) band of the curves of parameter draws ``th``, and the data."""
    curves = np.exp(fit.predict_log(grid, th))
    lo, med, hi = np.nanquantile(curves, [q[0], 0.5, q[1]], axis=0)
    ax.fill_between(grid, lo, hi, color=col, alpha=0.2, lw=0)
    ax.plot(grid, med, color=col, lw=1.5, label=label)
    _observations(fit, ax, obs_mask, col)


def _finish(ax: Any, d: Any, title: str) -> Any:
    """Log y axis, labels in the data's assay units, title and legend."""
    ax.set_yscale("log")
    ax.set_xlabel("days since infusion")
    ax.set_ylabel(f"{d.assay} ({d.unit})")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def plot_population(
    fit: Any, ax: Any = None, *, infusion: int | None = None, max_draws: int = 400,
    t_end: float | None = None,
) -> Any:
    """Population prediction: median and 90% band of new patients' curves over all data.

    The band is the posterior predictive of the *curve* of a new patient (population mean +
    between-patient variability, no residual error), per infusion (first blue, second red).
    """
    ax = _axes(ax)
    d = fit.data
    names, free = fit.info["names"], fit.info["free"]
    mu = fit._stack("mu")
    om = fit._stack("omega")
    idx = _thin(mu.shape[0], max_draws)
    rng = np.random.default_rng(0)
    grid = _grid(fit, t_end)
    infs = sorted(set(d.series_infusion.tolist())) if infusion is None else [infusion]
    for k in infs:
        th = np.tile(fit.model.typical, (idx.size, 1))
        for n, v in fit.info["fixed"].items():
            th[:, names.index(n)] = v
        for j, n in enumerate(free):
            jj = names.index(n)
            phi = mu[idx, j] + om[idx, j] * rng.standard_normal(idx.size)
            if k >= 2 and n in fit.info["effects"]:
                e = fit.info["effects"].index(n)
                phi = phi + fit._stack("delta")[idx, e]
                if "tau" in fit.idata.posterior:
                    phi = phi + fit._stack("tau")[idx, e] * rng.standard_normal(idx.size)
            th[:, jj] = fit.model.parameters[jj].from_scale(phi)
        _band(fit, ax, grid, th, (0.05, 0.95), _COLORS.get(k, "tab:green"),
              f"infusion {k}: median, 90% PI", d.series_infusion[d.obs_series] == k)
    return _finish(ax, d, f"{fit.model.name}: population prediction (open: BLQ at LLOQ)")


def plot_individual(
    fit: Any, patient: str, ax: Any = None, *, max_draws: int = 400, t_end: float | None = None
) -> Any:
    """One patient's posterior curve (median, 95% band) per infusion over its data."""
    ax = _axes(ax)
    d = fit.data
    grid = _grid(fit, t_end)
    found = False
    for s, (p, k, _) in enumerate(d.series_keys):
        if p != str(patient):
            continue
        found = True
        th = fit.theta[:, s, :]
        th = th[_thin(th.shape[0], max_draws)]
        _band(fit, ax, grid, th, (0.025, 0.975), _COLORS.get(k, "tab:green"), f"infusion {k}",
              d.obs_series == s)
    if not found:
        raise ValueError(f"patient {patient!r} is not in the fit")
    return _finish(ax, d, f"patient {patient}")


def plot_individuals(fit: Any, max_patients: int = 12, **kw: Any) -> Any:
    """Grid of :func:`plot_individual` panels (first ``max_patients`` patients); the figure."""
    import matplotlib.pyplot as plt

    pats = fit.data.patients[:max_patients]
    ncol = min(4, len(pats))
    nrow = int(np.ceil(len(pats) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False,
                             sharex=True, sharey=True)
    for a, p in zip(axes.ravel(), pats, strict=False):
        plot_individual(fit, p, ax=a, **kw)
        a.set_xlabel("")
        a.set_ylabel("")
        if a.get_legend() is not None:
            a.get_legend().remove()
        a.title.set_fontsize(9)
    for a in axes.ravel()[len(pats):]:
        a.set_visible(False)
    fig.supxlabel("days since infusion")
    fig.supylabel(f"{fit.data.assay} ({fit.data.unit})")
    fig.tight_layout()
    return fig


def plot_forest_cmax_ratio(fit: Any, ax: Any = None) -> Any:
    """Per-patient Cmax ratio (second/first), posterior median and 95% CrI, log axis.

    The top row is the typical-patient ratio; the dashed line is no change (ratio 1).
    """
    tab = fit.patient_infusion_effects()
    if tab.empty:
        raise ValueError("no patient has both a first and a second infusion")
    eff = fit.infusion_effect()["cmax_ratio"]
    ax = _axes(ax, figsize=(5.0, 0.3 * len(tab) + 1.5))
    y = np.arange(len(tab))[::-1]
    med = tab["cmax_ratio"].to_numpy()
    lo = tab["cmax_ratio_low"].to_numpy()
    hi = tab["cmax_ratio_high"].to_numpy()
    ax.errorbar(med, y, xerr=[med - lo, hi - med], fmt="o", color="k", ms=4, capsize=2)
    top = len(tab) + 0.5
    ax.errorbar([eff["median"]], [top],
                xerr=[[eff["median"] - eff["ci_low"]], [eff["ci_high"] - eff["median"]]],
                fmt="D", color="tab:red", ms=6, capsize=3)
    ax.set_yticks(list(y) + [top])
    ax.set_yticklabels(list(tab["patient"]) + ["typical patient"])
    ax.axvline(1.0, ls="--", color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("Cmax ratio, second / first infusion (95% CrI)")
    ax.set_title(f"P(typical ratio > 1) = {eff['p_greater']:.3f}")
    return ax


def vpc_censored_table(fit: Any, bins: np.ndarray | None = None,
                       level: float = 0.9) -> dict[str, np.ndarray]:
    """Observed fraction below the LLOQ per time bin and its posterior predictive band.

    Rows with a known LLOQ enter. The predicted fraction of a bin is computed per posterior
    draw from replicated observations of the fitted patients (each patient's posterior curve
    + a residual draw, compared with each row's LLOQ: a posterior predictive check conditional
    on the patients, not a new-patient simulation), then summarised by its median and
    ``level`` interval.
    """
    d = fit.data
    has = np.isfinite(d.lloq) & d.primary  # the CAR-T levels
    if not has.any():
        raise ValueError("no row has an LLOQ: a censored VPC needs the limits")
    if bins is None:
        edges = np.unique(np.quantile(d.t[has], np.linspace(0, 1, 9)))
        edges[-1] += 1e-9
    else:
        edges = np.asarray(bins, dtype=float)
    from cartkinetics.fit.population import row_sigma

    log_pred = fit._log_pred
    sigma = fit._stack("sigma")
    rng = np.random.default_rng(1)
    idx = _thin(log_pred.shape[0], 1000)
    if "nu" in fit.idata.posterior:
        eps = rng.standard_t(fit._stack("nu")[idx, None], size=(idx.size, d.n_obs))
    else:
        eps = rng.standard_normal((idx.size, d.n_obs))
    y_rep = log_pred[idx] + row_sigma(sigma[idx], d) * eps
    below_rep = y_rep < np.log(np.where(has, d.lloq, 1.0))[None, :]
    mids, obs, lo, med, hi, n = [], [], [], [], [], []
    a = (1 - level) / 2
    for b0, b1 in zip(edges[:-1], edges[1:], strict=True):
        sel = has & (d.t >= b0) & (d.t < b1)
        if not sel.any():
            continue
        mids.append(float(np.median(d.t[sel])))
        obs.append(float(d.censored[sel].mean()))
        frac = below_rep[:, sel].mean(axis=1)
        q = np.quantile(frac, [a, 0.5, 1 - a])
        lo.append(q[0])
        med.append(q[1])
        hi.append(q[2])
        n.append(int(sel.sum()))
    return {"day": np.array(mids), "observed": np.array(obs), "pred_low": np.array(lo),
            "pred_median": np.array(med), "pred_high": np.array(hi), "n": np.array(n)}


def plot_vpc_censored(fit: Any, ax: Any = None, **kw: Any) -> Any:
    """Censored VPC: fraction of rows below the LLOQ over time, observed vs 90% band."""
    tab = vpc_censored_table(fit, **kw)
    ax = _axes(ax)
    ax.fill_between(tab["day"], tab["pred_low"], tab["pred_high"], color="tab:blue",
                    alpha=0.25, lw=0, label="predicted 90% interval")
    ax.plot(tab["day"], tab["pred_median"], color="tab:blue", lw=1.2, label="predicted median")
    ax.plot(tab["day"], tab["observed"], "o-", color="k", ms=4, label="observed")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("days since infusion (bin median)")
    ax.set_ylabel("fraction below LLOQ")
    ax.set_title("censored predictive check: fraction below LLOQ")
    ax.legend(fontsize=8)
    return ax
