"""Which model fits better: PSIS-LOO for hierarchical fits, AIC/BIC for per-patient fits,
and censoring-aware residuals.

* :func:`loo` -- Pareto-smoothed importance-sampling leave-one-out cross-validation (Vehtari,
  Gelman & Gabry 2017; ArviZ ``az.loo``) of a :class:`PopulationFit`, leaving out one
  observation (``by="observation"``) or one patient's whole data (``by="patient"``: the
  pointwise log-likelihood summed per patient, the question "how well does the model predict
  a new patient's series"), with the Pareto k of every unit (k > 0.7: the importance
  sampling estimate of that unit is unreliable; refit without it or use K-fold).
* :func:`compare_models` -- ranks candidate fits of the same data: hierarchical fits by
  expected log predictive density (elpd, ``az.compare``: differences with their standard
  errors, stacking weights), per-patient maximum-likelihood fits (``FitResult``,
  ``CohortFit``-like objects with ``aic``/``bic``) by AIC and BIC.
* :func:`pit_residuals` -- randomised probability-integral-transform residuals (Dunn & Smyth
  1996): for a quantified row u = F(y), for a row below the LLOQ u ~ Uniform(0, F(LLOQ)),
  with F the posterior predictive CDF; r = Phi^-1(u) is standard normal under a correct
  model whatever the censoring, so BLQ rows enter the residual plot instead of being dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.errors import CartKineticsError

PARETO_K_BAD = 0.7  # Vehtari et al. 2017/2024: above, the PSIS estimate is unreliable


def _clean(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _grouped_idata(fit: Any, by: str) -> Any:
    """InferenceData whose log_likelihood ``log_y`` has one entry per unit of ``by``."""
    import arviz as az
    import xarray as xr

    ll = fit.idata.log_likelihood["log_y"]  # (chain, draw, obs)
    if by == "observation":
        return az.InferenceData(posterior=fit.idata.posterior,
                                log_likelihood=xr.Dataset({"log_y": ll}))
    if by != "patient":
        raise CartKineticsError(f"loo: by must be 'observation' or 'patient', got {by!r}")
    pdata = fit.data
    pat = pdata.series_patient[pdata.obs_series]  # (n_obs,) patient index of each row
    vals = ll.values
    summed = np.stack([vals[..., pat == i].sum(axis=-1) for i in range(pdata.n_patients)],
                      axis=-1)
    ds = xr.Dataset(
        {"log_y": (("chain", "draw", "patient"), summed)},
        coords={"chain": ll["chain"].values, "draw": ll["draw"].values,
                "patient": pdata.patients},
    )
    return az.InferenceData(posterior=fit.idata.posterior, log_likelihood=ds)


@dataclass
class LooResult:
    """PSIS-LOO of one fit.

    Attributes
    ----------
    elpd, se : float
        Expected log pointwise predictive density (sum over units) and its standard error.
    p_loo : float
        Effective number of parameters.
    by : "observation" or "patient"
    units : list of str (observation index or patient id)
    elpd_i, pareto_k : (n_units,) arrays
    """

    elpd: float
    se: float
    p_loo: float
    by: str
    units: list[str]
    elpd_i: np.ndarray
    pareto_k: np.ndarray

    @property
    def n_bad(self) -> int:
        """Units with Pareto k > 0.7 (unreliable importance sampling)."""
        return int(np.sum(self.pareto_k > PARETO_K_BAD))

    def to_frame(self) -> pd.DataFrame:
        """One row per unit: unit, elpd_i, pareto_k, bad."""
        return pd.DataFrame({"unit": self.units, "elpd_i": self.elpd_i,
                             "pareto_k": self.pareto_k,
                             "bad": self.pareto_k > PARETO_K_BAD})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return _clean({
            "elpd_loo": self.elpd, "se": self.se, "p_loo": self.p_loo, "by": self.by,
            "n_units": len(self.units), "n_pareto_k_above_0_7": self.n_bad,
            "pareto_k": dict(zip(self.units, self.pareto_k.tolist(), strict=True)),
        })

    def summary(self) -> str:
        """A short text summary."""
        bad = self.to_frame().query("bad")["unit"].tolist()
        s = (f"PSIS-LOO (leave one {self.by} out): elpd {self.elpd:.1f} (SE {self.se:.1f}), "
             f"p_loo {self.p_loo:.1f}; {self.n_bad} of {len(self.units)} {self.by}s with "
             f"Pareto k > {PARETO_K_BAD}")
        if bad:
            s += f": {', '.join(map(str, bad[:10]))}" + (" ..." if len(bad) > 10 else "")
        return s

    def __repr__(self) -> str:
        return (f"LooResult(by={self.by!r}, elpd={self.elpd:.2f}, se={self.se:.2f}, "
                f"p_loo={self.p_loo:.2f}, n_bad={self.n_bad}/{len(self.units)})")

    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """Pareto k per unit with the 0.7 line; returns ax."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3))
        x = np.arange(len(self.units))
        ax.scatter(x, self.pareto_k, c=np.where(self.pareto_k > PARETO_K_BAD, "C3", "C0"),
                   s=14)
        ax.axhline(PARETO_K_BAD, color="k", ls="--", lw=1)
        if self.by == "patient":
            ax.set_xticks(x, self.units, rotation=90, fontsize=7)
        ax.set_xlabel(self.by)
        ax.set_ylabel("Pareto k")
        ax.set(**kw)
        return ax


def loo(fit: Any, by: str = "patient") -> LooResult:
    """PSIS-LOO of a hierarchical fit (ArviZ ``az.loo`` on its pointwise log-likelihood).

    Parameters
    ----------
    fit : PopulationFit
        Its ``idata.log_likelihood["log_y"]`` holds ln p(ln y | draw) per observation (M3 for
        BLQ rows: ln P(ln Y < ln LLOQ)).
    by : "patient" (default) or "observation"
        Leave out one patient's whole data (log-likelihoods summed per patient) or one
        observation. The per-patient version asks how well the model predicts a new patient;
        its Pareto k flags patients whose data the posterior depends on strongly.

    Returns
    -------
    LooResult
    """
    import arviz as az

    idata = _grouped_idata(fit, by)
    res = az.loo(idata, pointwise=True, var_name="log_y")
    units = ([str(p) for p in fit.data.patients] if by == "patient"
             else [str(i) for i in range(fit.data.n_obs)])
    return LooResult(
        elpd=float(res["elpd_loo"]), se=float(res["se"]), p_loo=float(res["p_loo"]), by=by,
        units=units, elpd_i=np.asarray(res["loo_i"].values, dtype=float),
        pareto_k=np.asarray(res["pareto_k"].values, dtype=float),
    )


@dataclass
class ModelComparison:
    """Ranking of candidate fits of the same data.

    ``table`` columns: hierarchical fits -- model, rank, elpd_loo, se, elpd_diff (to the
    best), dse (SE of the difference), p_loo, weight (stacking), n_pareto_k_bad; per-patient
    fits -- model, rank, aic, bic, delta_aic, delta_bic, akaike_weight, n_parameters.
    """

    table: pd.DataFrame
    criterion: str
    by: str | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per unit or model (a copy)."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return _clean({"criterion": self.criterion, "by": self.by,
                       "models": self.table.to_dict(orient="records")})

    def summary(self) -> str:
        """A short text summary."""
        head = (f"model comparison by {self.criterion}"
                + (f" (leave one {self.by} out)" if self.by else ""))
        return head + "\n" + self.table.to_string(index=False)

    def __repr__(self) -> str:
        best = self.table.iloc[0]["model"] if len(self.table) else None
        return (f"ModelComparison(criterion={self.criterion!r}, n_models={len(self.table)}, "
                f"best={best!r})")

    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """elpd (with +-1 SE of the difference to the best) or delta AIC per model."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.5 * len(self.table) + 1))
        t = self.table.iloc[::-1]
        if self.criterion == "elpd_loo":
            ax.errorbar(t["elpd_diff"], t["model"], xerr=t["dse"], fmt="o")
            ax.set_xlabel("elpd difference to the best model")
        else:
            ax.scatter(t["delta_aic"], t["model"])
            ax.set_xlabel("delta AIC")
        ax.axvline(0, color="k", lw=1)
        ax.set(**kw)
        return ax


def compare_models(fits: dict[str, Any] | list[Any], by: str = "patient") -> ModelComparison:
    """Rank candidate models fitted to the same data.

    Parameters
    ----------
    fits : dict name -> fit, or list of fits (named by their model, with a suffix when
        repeated)
        Either all hierarchical (``PopulationFit``: ranked by PSIS-LOO elpd, ``az.compare``
        with stacking weights; differences with standard errors) or all per-patient maximum
        likelihood fits (objects with ``aic``, ``bic``, ``n_params`` or ``k``: ranked by AIC;
        Akaike weights exp(-delta/2) normalised).
    by : "patient" or "observation"
        LOO unit of hierarchical fits (see :func:`loo`).

    Returns
    -------
    ModelComparison
        Best model first. Hierarchical fits must share the data (same observations).
    """
    import arviz as az

    if isinstance(fits, (list, tuple)):
        named: dict[str, Any] = {}
        for f in fits:
            base = str(getattr(getattr(f, "model", None), "name", None) or
                       getattr(f, "model_name", None) or getattr(f, "model", "model"))
            name, k = base, 2
            while name in named:
                name, k = f"{base}_{k}", k + 1
            named[name] = f
        fits = named
    if len(fits) < 2:
        raise CartKineticsError("compare_models needs at least two fits")
    hier = [hasattr(f, "idata") for f in fits.values()]
    if all(hier):
        ns = {f.data.n_obs for f in fits.values()}
        if len(ns) > 1:
            raise CartKineticsError(
                "compare_models: the fits do not share the data (numbers of observations "
                f"{sorted(ns)}); LOO compares models of the same observations"
            )
        loos = {n: loo(f, by=by) for n, f in fits.items()}
        cmp = az.compare({n: _grouped_idata(f, by) for n, f in fits.items()}, ic="loo",
                         var_name="log_y")
        cmp = cmp.reset_index().rename(columns={"index": "model", "elpd_loo": "elpd_loo"})
        cmp["n_pareto_k_bad"] = [loos[m].n_bad for m in cmp["model"]]
        cols = ["model", "rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight",
                "n_pareto_k_bad"]
        return ModelComparison(cmp[cols].reset_index(drop=True), "elpd_loo", by)
    if any(hier):
        raise CartKineticsError(
            "compare_models: mix of hierarchical (LOO) and per-patient (AIC) fits; compare "
            "like with like"
        )
    rows = []
    for n, f in fits.items():
        if not (hasattr(f, "aic") and hasattr(f, "bic")):
            raise CartKineticsError(f"compare_models: {n!r} has no aic/bic ({type(f).__name__})")
        k = getattr(f, "n_params", None)
        if k is None:
            k = getattr(f, "k", None)
        rows.append({"model": n, "aic": float(f.aic), "bic": float(f.bic), "n_parameters": k})
    t = pd.DataFrame(rows).sort_values("aic").reset_index(drop=True)
    t["delta_aic"] = t["aic"] - t["aic"].min()
    t["delta_bic"] = t["bic"] - t["bic"].min()
    w = np.exp(-0.5 * t["delta_aic"].to_numpy())
    t["akaike_weight"] = w / w.sum()
    t.insert(1, "rank", np.arange(len(t)))
    return ModelComparison(t, "aic", None)


# ------------------------------------------------------------------ residuals
def randomised_pit(
    log_y: np.ndarray,
    censored: np.ndarray,
    log_pred: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator | int | None = 0,
    nu: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Randomised PIT values and normal residuals of ln-scale observations.

    Parameters
    ----------
    log_y : (n,) ln observation; on censored rows ln LLOQ
    censored : (n,) bool, below the LLOQ
    log_pred : (m, n) ln prediction per posterior draw (m = 1 for a point estimate)
    sigma : (m,) or (m, n) residual SD on the ln scale per draw
    rng : Generator or seed (the uniform draws of the censored rows)
    nu : (m,) Student-t degrees of freedom, or None (normal residual)

    Returns
    -------
    (u, r) : (n,) PIT values in (0, 1) and r = Phi^-1(u)
        ``F`` is the predictive CDF averaged over draws; u = F(ln y) on quantified rows,
        u ~ Uniform(0, F(ln LLOQ)) on censored rows. Under a correct model r is standard
        normal (Dunn & Smyth 1996).
    """
    from scipy import stats

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    log_pred = np.atleast_2d(log_pred)
    sig = np.asarray(sigma, dtype=float)
    sig = sig[:, None] if sig.ndim == 1 else sig
    z = (np.asarray(log_y)[None, :] - log_pred) / sig
    cdf = stats.norm.cdf(z) if nu is None else stats.t.cdf(z, df=np.asarray(nu)[:, None])
    F = cdf.mean(axis=0)
    u = np.where(censored, rng.uniform(size=F.shape) * F, F)
    u = np.clip(u, 1e-12, 1 - 1e-12)
    return u, stats.norm.ppf(u)


@dataclass
class PitResiduals:
    """Randomised PIT residuals of a fit, one per observation (BLQ rows included)."""

    frame: pd.DataFrame  # patient, infusion, day, censored, u, residual

    def to_frame(self) -> pd.DataFrame:
        """One row per unit or model (a copy)."""
        return self.frame.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary."""
        from scipy import stats

        r = self.frame["residual"].to_numpy()
        ks = stats.kstest(self.frame["u"], "uniform")
        return _clean({"n": len(r), "n_censored": int(self.frame["censored"].sum()),
                       "mean": float(r.mean()), "sd": float(r.std(ddof=1)),
                       "ks_uniform_p": float(ks.pvalue)})

    def summary(self) -> str:
        """A short text summary."""
        d = self.to_dict()
        return (f"randomised PIT residuals: {d['n']} rows ({d['n_censored']} BLQ), mean "
                f"{d['mean']:.2f}, SD {d['sd']:.2f} (N(0, 1) under a correct model); KS "
                f"test of uniform PIT p = {d['ks_uniform_p']:.3f}")

    def __repr__(self) -> str:
        d = self.to_dict()
        return f"PitResiduals(n={d['n']}, mean={d['mean']:.2f}, sd={d['sd']:.2f})"

    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """Residuals against days since infusion (BLQ rows as open markers); returns ax."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        f = self.frame
        q = ~f["censored"]
        ax.scatter(f.loc[q, "day"], f.loc[q, "residual"], s=12, label="quantified")
        ax.scatter(f.loc[~q, "day"], f.loc[~q, "residual"], s=12, facecolors="none",
                   edgecolors="C3", label="BLQ (randomised)")
        for y in (-1.96, 0.0, 1.96):
            ax.axhline(y, color="k", lw=0.8, ls="-" if y == 0 else "--")
        ax.set_xscale("symlog", linthresh=30)
        ax.set_xlabel("days since infusion")
        ax.set_ylabel("randomised PIT residual")
        ax.legend(fontsize=7)
        ax.set(**kw)
        return ax


def pit_residuals(fit: Any, seed: int | None = None, max_draws: int = 1000) -> PitResiduals:
    """Censoring-aware residuals of a hierarchical fit (see :func:`randomised_pit`).

    Parameters
    ----------
    fit : PopulationFit
    seed : int, optional
        Seed of the censored rows' uniform draws (default: the fit's seed).
    max_draws : int
        Posterior draws used (thinned evenly).
    """
    lp = fit._log_pred
    if lp is None:
        raise CartKineticsError("pit_residuals: the fit has no stored predictions")
    sigma = fit._stack("sigma")
    step = max(1, lp.shape[0] // max_draws)
    lp, sigma = lp[::step], sigma[::step]
    from cartkinetics.fit.population import row_sigma

    sig = np.broadcast_to(row_sigma(sigma, fit.data), lp.shape)
    nu = fit._stack("nu")[::step] if "nu" in fit.idata.posterior else None
    if seed is None:
        seed = fit.info.get("settings", {}).get("seed")
    u, r = randomised_pit(fit.data.log_y, fit.data.censored, lp, sig, seed, nu)
    frame = fit.data.frame()[["patient", "infusion", "day", "censored"]].copy()
    frame["u"], frame["residual"] = u, r
    return PitResiduals(frame)
