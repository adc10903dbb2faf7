"""Coverage of the per-series fits' 95% intervals over simulated Stein 2019 series.

Each replicate is one virtual patient: Stein 2019 typical values x exp(eta), eta ~ N(0,
omega^2) (the model's published between-subject variances), the tisagenlecleucel-like
schedule ``DAYS``, ln-scale residual 0.56, values under the LLOQ censored at it. The series is
fitted with :func:`cartkinetics.fit.cohort.fit_series_isolated` (what ``fit_cohort`` runs per
series) and the row records the truth (the patient's own parameters; AUC0-28 in closed form),
the estimates and the interval limits.

Two studies share the replicate:

* ``fit-coverage`` (:class:`FitCoverageStudy`): the default estimator (MAP with the published
  population prior; SIR posterior intervals) or ML (profile-likelihood intervals of cmax,
  tmax, beta); coverage of the parameters' and the curve outcomes' intervals.
* ``bootstrap`` (:class:`BootstrapStudy`): ML fits with parametric-bootstrap intervals of the
  model-based Cmax, Tmax and AUC0-28 (``n_boot`` draws): their coverage.

Coverage is reported with its Wilson 95% binomial interval (:func:`wilson_interval`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.validate.study import Study

DAYS = np.array([1, 4, 7, 11, 14, 21, 28, 60, 90, 180, 270, 365.0])
PARAM_COLUMNS = {"cmax": 2, "tmax": 1, "beta": 5}  # name -> column in the model's order
OUTCOMES = ("cmax", "tmax", "auc_0_28")


# ------------------------------------------------------------------ simulation


def simulate_stein_series(n: int, lloq: float, rng: np.random.Generator,
                          days: np.ndarray = DAYS) -> tuple[np.ndarray, list[Any]]:
    """``n`` virtual Stein 2019 series: parameters (n, 6) in model order, and Series.

    Typical values x exp(eta), eta ~ N(0, omega^2) (nlmixr2lib variances); tmax clipped to
    [1, 60] days (the model's bounds), fb to <= 0.9; ln-scale residual 0.56; values under
    ``lloq`` (copies/ug) censored at it. Random numbers: all etas, then all residuals.
    """
    from cartkinetics import models
    from cartkinetics.data import Series

    m = models.get("stein2019")
    om = np.sqrt([m.bsv[k] for k in m.param_names])
    P = m.typical * np.exp(rng.standard_normal((n, 6)) * om)
    P[:, 1] = np.clip(P[:, 1], 1.0, 60.0)
    P[:, 4] = np.minimum(P[:, 4], 0.9)
    C = m.solve_batch(days, P).observed["transgene"]
    Y = C * np.exp(m.residual_sd * rng.standard_normal(C.shape))
    out = []
    for i in range(n):
        blq = Y[i] < lloq
        out.append(Series(f"S{i}", 1, "qpcr", "copies/ug", days.copy(),
                          np.where(blq, lloq, Y[i]), np.full(days.size, lloq), blq))
    return P, out


def simulate(n: int, lloq: float, seed: int) -> tuple[np.ndarray, list[Any]]:
    """:func:`simulate_stein_series` with ``default_rng(seed)`` (benchmarks/validate_fit.py)."""
    return simulate_stein_series(n, lloq, np.random.default_rng(seed))


def auc_0_28_closed(P: np.ndarray) -> np.ndarray:
    """AUC from day 0 to 28 of the Stein 2019 curve, closed form (rows of P, model order)."""
    fx, T, cm, a, fb, b = (P[:, j] for j in range(6))
    rho = np.log(fx) / T
    te = np.minimum(T, 28.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where(rho > 1e-12, cm / fx * np.expm1(rho * te) / rho, cm / fx * te)
        d = np.maximum(28.0 - T, 0.0)
        post = cm * ((1 - fb) * -np.expm1(-a * d) / a + fb * -np.expm1(-b * d) / b)
    return rise + post


# ------------------------------------------------------------------ statistics


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n (Wilson 1927).

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with z the normal quantile
    of ``(1 + level) / 2``; (nan, nan) when n = 0.
    """
    if n <= 0:
        return math.nan, math.nan
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def coverage_text(cover: np.ndarray) -> str:
    """Coverage in % with its Wilson 95% interval and the number of intervals."""
    k, n = int(np.sum(cover)), int(np.size(cover))
    if n == 0:
        return "no CI"
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] of {n}"


def boot_ci(x: np.ndarray, stat: Any, rng: np.random.Generator, n_boot: int = 2000
            ) -> tuple[float, float, float]:
    """Statistic of x and its Monte-Carlo (bootstrap over series) percentile 95% interval."""
    x = x[np.isfinite(x)]
    if x.size < 5:
        return math.nan, math.nan, math.nan
    idx = rng.integers(0, x.size, (n_boot, x.size))
    b = stat(x[idx], axis=1)
    return float(stat(x)), float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))


# ------------------------------------------------------------------ the replicate


def coverage_replicate(fit_kws: dict[str, Any], lloq: float, rng: np.random.Generator
                       ) -> dict[str, Any]:
    """Simulate one series, fit it, return truth, estimates and interval limits (one row)."""
    from cartkinetics.fit.cohort import fit_series_isolated

    P, (series,) = simulate_stein_series(1, lloq, rng)
    r = fit_series_isolated(series, "stein2019", fit_kws)
    row: dict[str, Any] = {"status": r.status, "message": r.message,
                           "n_blq": int(series.blq.sum())}
    for name, j in PARAM_COLUMNS.items():
        row[f"true_{name}"] = float(P[0, j])
        row[name] = float(r.params.get(name, math.nan))
        lo, hi = r.ci.get(name, (math.nan, math.nan))
        row[f"{name}_lo"], row[f"{name}_hi"] = float(lo), float(hi)
    truth = {"cmax": float(P[0, 2]), "tmax": float(P[0, 1]),
             "auc_0_28": float(auc_0_28_closed(P)[0])}
    for k in OUTCOMES:
        row[f"true_model_{k}"] = truth[k]
        row[f"model_{k}"] = float(r.outcomes.get(k, math.nan))
        lo, hi = r.outcomes_ci.get(k, (math.nan, math.nan))
        row[f"model_{k}_lo"], row[f"model_{k}_hi"] = float(lo), float(hi)
    return row


def coverage_summary(table: pd.DataFrame, quantities: list[str], level: float = 0.95
                     ) -> pd.DataFrame:
    """Per quantity: intervals covering the truth, coverage with Wilson interval, median
    ln(estimate / truth) over usable fits."""
    ok = table["status"].isin(["converged", "converged_singular"]).to_numpy()
    rows = []
    for q in quantities:
        truth = table[f"true_{q}"].to_numpy(float)
        est = table[q].to_numpy(float)
        lo, hi = table[f"{q}_lo"].to_numpy(float), table[f"{q}_hi"].to_numpy(float)
        has = ok & np.isfinite(lo) & np.isfinite(hi)
        cover = ((lo <= truth) & (truth <= hi))[has]
        k, n = int(cover.sum()), int(has.sum())
        w_lo, w_hi = wilson_interval(k, n, level)
        with np.errstate(divide="ignore", invalid="ignore"):
            lr = np.log(est / truth)[ok]
        lr = lr[np.isfinite(lr)]
        rows.append({"quantity": q, "nominal": level, "intervals": n, "covered": k,
                     "coverage": k / n if n else math.nan, "wilson_lo": w_lo,
                     "wilson_hi": w_hi,
                     "median_log_ratio": float(np.median(lr)) if lr.size else math.nan,
                     "usable_fits": int(ok.sum()), "replicates": len(table)})
    return pd.DataFrame(rows)


def plot_coverage(summary: pd.DataFrame, ax: Any = None, title: str = "") -> Any:
    """Coverage of each quantity with its Wilson 95% interval against the nominal level."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 0.45 * len(summary) + 1.4))
    y = np.arange(len(summary))[::-1]
    cov = summary["coverage"].to_numpy(float)
    err = np.vstack([cov - summary["wilson_lo"].to_numpy(float),
                     summary["wilson_hi"].to_numpy(float) - cov])
    ax.errorbar(cov, y, xerr=err, fmt="o", color="tab:blue", capsize=3)
    ax.axvline(float(summary["nominal"].iloc[0]), color="k", lw=0.8, ls="--")
    ax.set_yticks(y, [f"{q} (n={n})" for q, n in zip(summary["quantity"],
                                                     summary["intervals"], strict=True)])
    ax.set_xlabel("coverage of the 95% interval (Wilson 95% CI)")
    low = summary["wilson_lo"].to_numpy(float)
    low = low[np.isfinite(low)]
    ax.set_xlim(max(0.0, float(low.min()) - 0.05) if low.size else 0.0, 1.0)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


class FitCoverageStudy(Study):
    """Coverage of the per-series fit intervals (``cartkinetics validate fit-coverage``).

    Parameters
    ----------
    estimator : {"MAP", "ML"}
        MAP (population prior, SIR intervals; the default of ``cartkinetics fit`` for
        Stein 2019) or ML (profile-likelihood intervals of cmax, tmax, beta).
    censoring : {"M3", "M1"}
    lloq : float (copies/ug)
    n_boot : int (SIR or bootstrap draws per fit)
    """

    name = "fit-coverage"
    quantities = ["cmax", "tmax", "beta", "model_cmax", "model_tmax", "model_auc_0_28"]

    def __init__(self, estimator: str = "MAP", censoring: str = "M3", lloq: float = 75.0,
                 n_boot: int = 300) -> None:
        from cartkinetics.errors import CartKineticsError

        if estimator not in ("MAP", "ML"):
            raise CartKineticsError(f"estimator must be 'MAP' or 'ML', got {estimator!r}")
        if censoring not in ("M3", "M1"):
            raise CartKineticsError(f"censoring must be 'M3' or 'M1', got {censoring!r}")
        self.estimator, self.censoring = estimator, censoring
        self.lloq, self.n_boot = float(lloq), int(n_boot)

    def config(self) -> dict[str, Any]:
        """Options deciding a replicate's result."""
        return {"estimator": self.estimator, "censoring": self.censoring, "lloq": self.lloq,
                "n_boot": self.n_boot, "days": DAYS.tolist()}

    def fit_kws(self) -> dict[str, Any]:
        """Options of fit_series for this estimator."""
        if self.estimator == "MAP":
            return {"prior": "population", "censoring": self.censoring,
                    "n_boot": self.n_boot, "profile": False, "seed": 1}
        return {"prior": None, "censoring": self.censoring, "n_boot": self.n_boot,
                "profile": ("cmax", "tmax", "beta"), "seed": 1}

    def replicate(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """One simulated series, fitted (see coverage_replicate)."""
        return coverage_replicate(self.fit_kws(), self.lloq, rng)

    def summarize(self, table: pd.DataFrame) -> pd.DataFrame:
        """Coverage per quantity with Wilson intervals."""
        return coverage_summary(table, self.quantities)

    def title(self) -> str:
        """Figure title."""
        return (f"{self.name}: Stein 2019, {self.estimator} {self.censoring}, LLOQ "
                f"{self.lloq:g}")

    def figures(self, table: pd.DataFrame, out: Path) -> list[Path]:
        """coverage.png: coverage forest with Wilson intervals."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ax = plot_coverage(self.summarize(table), title=f"{self.title()} ({len(table)} reps)")
        ax.figure.tight_layout()
        path = Path(out) / "coverage.png"
        ax.figure.savefig(path, dpi=110)
        plt.close(ax.figure)
        return [path]


class BootstrapStudy(FitCoverageStudy):
    """Coverage of the parametric-bootstrap intervals of the model-based Cmax, Tmax and
    AUC0-28 of ML fits (``cartkinetics validate bootstrap``)."""

    name = "bootstrap"
    quantities = ["model_cmax", "model_tmax", "model_auc_0_28"]

    def __init__(self, censoring: str = "M3", lloq: float = 75.0, n_boot: int = 200) -> None:
        super().__init__("ML", censoring, lloq, n_boot)

    def fit_kws(self) -> dict[str, Any]:
        """ML, no profiles: the outcomes' intervals by parametric bootstrap."""
        return {"prior": None, "censoring": self.censoring, "n_boot": self.n_boot,
                "profile": False, "seed": 1}


__all__ = ["DAYS", "simulate_stein_series", "simulate", "auc_0_28_closed", "wilson_interval",
           "coverage_text", "boot_ci", "coverage_replicate", "coverage_summary",
           "plot_coverage", "FitCoverageStudy", "BootstrapStudy"]
