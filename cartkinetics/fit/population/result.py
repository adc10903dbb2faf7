"""PopulationFit: the posterior, summaries, diagnostics, outcomes and plots of a hierarchical fit.

Part of :mod:`cartkinetics.fit.population` (split from one module; names re-exported there).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.fit.population.constants import FREE_VARS
from cartkinetics.fit.population.data import PopulationData
from cartkinetics.fit.population.sampling import log_likelihood_np, row_sigma


def _ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    q = np.nanquantile(x, [0.5, lo, hi])
    return float(q[0]), float(q[1]), float(q[2])


class PopulationFit:
    """Result of :func:`fit_population`.

    Attributes
    ----------
    idata : arviz.InferenceData
        Groups posterior, sample_stats, posterior_predictive (``log_y``: ln level, censored at
        the LLOQ as the model defines it), log_likelihood (``log_y``), observed_data,
        constant_data.
    data : PopulationData
    model : Model
    info : dict (settings, priors, sampler, timings)
    """

    def __init__(self, idata: Any, pdata: PopulationData, info: dict[str, Any]) -> None:
        self.idata = idata
        self.data = pdata
        self.info = info
        self.model = info["model"]
        self.pm_model: Any = None
        self._log_pred: np.ndarray | None = None
        self._theta: np.ndarray | None = None
        self._outcomes: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------ draws
    def _sampled_vars(self) -> list[str]:
        """Names of the sampled population and random-effect variables in the posterior
        (``omega`` is a Deterministic, not sampled, when some parameters are pooled)."""
        post = self.idata.posterior
        vn = [v for v in FREE_VARS if v in post]
        if "omega_re" in post or self.info.get("pooled"):
            vn = [v for v in vn if v != "omega"]
        return vn

    def _stack(self, name: str) -> np.ndarray:
        """Posterior draws of a variable with chain and draw merged first."""
        da = self.idata.posterior[name]
        arr = da.values
        return arr.reshape((-1,) + arr.shape[2:])

    @property
    def theta(self) -> np.ndarray:
        """(n_draws, n_series, n_params) natural-scale parameters per series."""
        if self._theta is None:
            self._theta = self._stack("theta")
        return self._theta

    def predict_log(
        self, t: np.ndarray, theta: np.ndarray, observation: str | None = None
    ) -> np.ndarray:
        """ln prediction at days ``t`` for parameter rows ``theta`` (m, n_params) -> (m, nt);
        ``observation``: a model observation (default: the primary one, the CAR-T level)."""
        return self.predict_logs(t, theta, [observation or self.model.primary_observation])[0]

    def predict_logs(
        self, t: np.ndarray, theta: np.ndarray, observations: list[str]
    ) -> list[np.ndarray]:
        """As :meth:`predict_log` for several model observations from one solve."""
        if self.model.closed_form_numpy is not None:
            return [self.model.closed_form_numpy(t[None, :], theta[:, None, :])] * len(
                observations)
        sol = self.model.solve_batch(t, theta)
        out = []
        for name in observations:
            obs = sol.observed[name]
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(np.where(obs > 0, np.log(np.where(obs > 0, obs, 1.0)), -np.inf))
        return out

    # ------------------------------------------------------------ summaries
    def summary(self) -> pd.DataFrame:
        """Population parameters: typical value, between-patient SD, effects, residual SD.

        Columns: name, kind, median, ci_low, ci_high (95% CrI), r_hat, ess_bulk, ess_tail.
        Typical values are on the parameter's natural scale (units of the model); ``omega``
        is the SD of the log (or logit) parameter; ``ratio`` rows are exp(delta); ``iov``
        rows the between-infusion SD (same scale as omega).
        """
        import arviz as az

        post = self.idata.posterior
        rows = []
        # unrounded (ArviZ rounds R-hat to 2 decimals by default: 1.014 would read 1.01)
        diag = az.summary(self.idata, var_names=self._sampled_vars(), kind="diagnostics",
                          round_to="none")
        pooled = self.info.get("pooled", [])
        par = {p.name: p for p in self.model.parameters}

        def diag_of(label: str) -> tuple[float, float, float]:
            if label in diag.index:
                r = diag.loc[label]
                return float(r["r_hat"]), float(r["ess_bulk"]), float(r["ess_tail"])
            return (float("nan"),) * 3

        for j, n in enumerate(self.info["free"]):
            mu = self._stack("mu")[:, j]
            typ = par[n].from_scale(mu)
            rows.append(("typical", n, *_ci(typ), *diag_of(f"mu[{n}]")))
            if n in pooled:  # no random effect, no between-patient SD
                continue
            om_label = f"omega_re[{n}]" if pooled else f"omega[{n}]"
            rows.append(("omega", n, *_ci(self._stack("omega")[:, j]), *diag_of(om_label)))
        for j, e in enumerate(self.info["effects"]):
            d = self._stack("delta")[:, j]
            rows.append(("ratio", e, *_ci(np.exp(d)), *diag_of(f"delta[{e}]")))
            if "tau" in post:
                rows.append(("tau", e, *_ci(self._stack("tau")[:, j]), *diag_of(f"tau[{e}]")))
        for j, n in enumerate(self.info.get("iov") or []):
            rows.append(("iov", n, *_ci(self._stack("omega_iov")[:, j]),
                         *diag_of(f"omega_iov[{n}]")))
        if "b" in post:
            b = self._stack("b")
            design = self.info["design"]
            for ci, c in enumerate(design.names):
                for j, n in enumerate(self.info["free"]):
                    if c in design.targets.get(n, []):
                        rows.append(
                            ("covariate", f"{c} on {n}", *_ci(b[:, ci, j]),
                             *diag_of(f"b[{c}, {n}]"))
                        )
        sig = self._stack("sigma")
        if sig.ndim == 1:
            rows.append(("sigma", "residual", *_ci(sig), *diag_of("sigma")))
        else:  # one residual SD per output
            for k, a in enumerate(self.data.outputs):
                rows.append(("sigma", f"residual {a}", *_ci(sig[:, k]),
                             *diag_of(f"sigma[{a}]")))
        if "nu" in post:
            rows.append(("nu", "residual", *_ci(self._stack("nu")), *diag_of("nu")))
        return pd.DataFrame(
            rows,
            columns=["kind", "name", "median", "ci_low", "ci_high", "r_hat", "ess_bulk",
                     "ess_tail"],
        )

    def diagnostics(self, warn: bool = True) -> dict[str, Any]:
        """R-hat, bulk/tail ESS (all sampled quantities), divergences, E-BFMI per chain.

        ``max_rhat`` and the ESS minima run over every sampled quantity (population
        parameters and each patient's random effects); ``max_rhat_population`` over the
        population parameters only (mu, omega, delta, tau, b, sigma, nu).

        Thresholds: R-hat <= 1.01, ESS >= 400 (bulk and tail), no divergence, E-BFMI >= 0.3.
        Computed by :func:`cartkinetics.fit.convergence.diagnose`, which also names the worst
        quantities (``worst``), stuck chains (``stuck_chains``) and the patients the chains
        disagree about (``patients_disagreeing``). A ``RuntimeWarning`` names every failed
        check and the worst quantities when ``warn`` is true.
        """
        from cartkinetics.fit.convergence import diagnose

        rep = diagnose(self.idata, var_names=self._sampled_vars())
        out = rep.to_dict()
        out["n_draws"] = int(rep.n_chains * rep.n_draws)
        # the floats as computed (to_dict maps non-finite values to None for JSON)
        for k in ("max_rhat", "max_rhat_population", "min_ess_bulk", "min_ess_tail"):
            out[k] = float(getattr(rep, k))
        if warn and not rep.ok:
            warnings.warn(
                "population fit diagnostics failed: " + "; ".join(rep.problems)
                + f"; worst: {rep.worst_text()} (what to do: {rep.advice()})",
                RuntimeWarning,
                stacklevel=2,
            )
        return out

    def shrinkage(self) -> pd.DataFrame:
        """Eta-shrinkage of each random effect: 1 - SD_i(E[eta_i]) / E[omega].

        The NONMEM definition on posterior means; near 1 means the data say little about the
        patients' individual values (their estimates collapse to the population value).
        """
        rows = []
        eta = self._stack("eta")
        om = self._stack("omega")
        for j, n in enumerate(self.info["free"]):
            if n in self.info.get("pooled", []):  # no random effect to shrink
                continue
            sd = float(np.std(eta[:, :, j].mean(axis=0), ddof=1)) if eta.shape[1] > 1 else np.nan
            rows.append(("omega", n, 1.0 - sd / float(np.mean(om[:, j]))))
        if "tau" in self.idata.posterior:
            u = self._stack("u")
            tau = self._stack("tau")
            e = u * tau[:, None, :]
            has2 = np.zeros(self.data.n_patients, bool)
            has2[self.data.series_patient[self.data.series_infusion >= 2]] = True
            for j, n in enumerate(self.info["effects"]):
                if has2.sum() > 1:
                    sd = float(np.std(e[:, has2, j].mean(axis=0), ddof=1))
                    rows.append(("tau", n, 1.0 - sd / float(np.mean(tau[:, j]))))
        return pd.DataFrame(rows, columns=["random_effect", "parameter", "shrinkage"])

    # ------------------------------------------------------------ outcomes
    def outcome_draws(self, max_draws: int = 1000, t_end: float = 400.0) -> dict[str, np.ndarray]:
        """Per-series posterior draws of curve outcomes (``cartkinetics.outcomes``).

        Returns dict key -> (n_draws_used, n_series) for ``cmax``, ``tmax``, ``auc_0_28``
        (and the other ``OUTCOME_KEYS``), computed on a dense grid from 0 to ``t_end`` days.
        """
        if self._outcomes is not None:
            return self._outcomes
        from cartkinetics.outcomes import batch_curve_outcomes

        th = self.theta
        step = max(1, th.shape[0] // max_draws)
        th = th[::step]
        grid = np.unique(np.concatenate([np.linspace(0, 60, 601), np.linspace(60, t_end, 200)]))
        m, ns, npar = th.shape
        rows = th.reshape(m * ns, npar)
        logc = self.predict_log(grid, rows)
        out = batch_curve_outcomes(grid, np.exp(logc))
        self._outcomes = {k: v.reshape(m, ns) for k, v in out.items()}
        return self._outcomes

    def patient_outcomes(self) -> pd.DataFrame:
        """Per-series posterior Cmax, Tmax, AUC0-28 (median and 95% CrI) and parameters.

        Cmax and Tmax of Stein 2019 are the fitted parameters themselves; AUC0-28 (level x
        day) and, for ODE models, Cmax/Tmax come from the curves through
        ``cartkinetics.outcomes.batch_curve_outcomes``.
        """
        draws = self.outcome_draws()
        names = self.info["names"]
        th = self.theta
        rows = []
        for s, (p, k, _) in enumerate(self.data.series_keys):
            row: dict[str, Any] = {"patient": p, "infusion": k}
            for key in ("cmax", "tmax", "auc_0_28"):
                if key in self.model.outcome_parameters:
                    x = th[:, s, names.index(key)]
                else:
                    x = draws[key][:, s]
                row[key], row[f"{key}_low"], row[f"{key}_high"] = _ci(x)
            for j, n in enumerate(names):
                row[f"param_{n}"] = float(np.median(th[:, s, j]))
            rows.append(row)
        return pd.DataFrame(rows)

    def _per_series_draws(self, key: str) -> np.ndarray:
        names = self.info["names"]
        if key in self.model.outcome_parameters:
            return self.theta[:, :, names.index(key)]
        return self.outcome_draws()[key]

    def patient_infusion_effects(self) -> pd.DataFrame:
        """Per patient with both infusions: Cmax ratio (2nd/1st), Tmax difference (days)."""
        keys = self.data.series_keys
        index = {(p, k): s for s, (p, k, _) in enumerate(keys)}
        cm = self._per_series_draws("cmax")
        tm = self._per_series_draws("tmax")
        rows = []
        for p in self.data.patients:
            if (p, 1) in index and (p, 2) in index:
                s1, s2 = index[(p, 1)], index[(p, 2)]
                r = cm[:, s2] / cm[:, s1]
                d = tm[:, s2] - tm[:, s1]
                rows.append(
                    {
                        "patient": p,
                        "cmax_ratio": _ci(r)[0],
                        "cmax_ratio_low": _ci(r)[1],
                        "cmax_ratio_high": _ci(r)[2],
                        "p_greater": float(np.mean(r > 1)),
                        "tmax_difference": _ci(d)[0],
                        "tmax_difference_low": _ci(d)[1],
                        "tmax_difference_high": _ci(d)[2],
                        "p_less": float(np.mean(d < 0)),
                    }
                )
        return pd.DataFrame(rows)

    def infusion_effect(self) -> dict[str, Any]:
        """Typical-patient infusion effect with 95% CrIs.

        ``cmax_ratio``: Cmax(second)/Cmax(first) of the typical patient (exp(delta_cmax) for
        Stein); ``p_greater`` = P(ratio > 1). ``tmax_difference``: Tmax(second) - Tmax(first)
        in days of the typical patient; ``p_less`` = P(difference < 0), i.e. an earlier peak.
        For ODE models both come from the typical curves (population means, second infusion
        with the population shifts) through ``cartkinetics.outcomes``.
        Returns an empty dict when no patient has a second infusion.
        """
        effects = self.info["effects"]
        if not effects:
            return {}
        free = self.info["free"]
        mu = self._stack("mu")
        delta = self._stack("delta")
        outp = self.model.outcome_parameters
        if "cmax" in outp and "cmax" in effects and self.model.parameter("cmax").transform == "log":
            ratio = np.exp(delta[:, effects.index("cmax")])
        else:
            ratio = None
        if "tmax" in outp and "tmax" in free and self.model.parameter("tmax").transform == "log":
            tm1 = np.exp(mu[:, free.index("tmax")])
            dt = delta[:, effects.index("tmax")] if "tmax" in effects else 0.0
            diff = tm1 * (np.exp(dt) - 1.0)
        else:
            diff = None
        if ratio is None or diff is None:
            c_r, t_d = self._typical_outcome_effect()
            ratio = c_r if ratio is None else ratio
            diff = t_d if diff is None else diff
        out: dict[str, Any] = {}
        m, lo, hi = _ci(ratio)
        out["cmax_ratio"] = {"median": m, "ci_low": lo, "ci_high": hi,
                             "p_greater": float(np.mean(ratio > 1))}
        m, lo, hi = _ci(diff)
        out["tmax_difference"] = {"median": m, "ci_low": lo, "ci_high": hi,
                                  "p_less": float(np.mean(diff < 0))}
        out["effects"] = {
            e: dict(zip(("median", "ci_low", "ci_high"), _ci(np.exp(delta[:, i])), strict=True))
            for i, e in enumerate(effects)
        }
        out["n_pairs"] = int(len(self.patient_infusion_effects()))
        return out

    def _typical_outcome_effect(self, max_draws: int = 500) -> tuple[np.ndarray, np.ndarray]:
        from cartkinetics.outcomes import batch_curve_outcomes

        names, free = self.info["names"], self.info["free"]
        mu = self._stack("mu")
        delta = self._stack("delta")
        step = max(1, mu.shape[0] // max_draws)
        mu, delta = mu[::step], delta[::step]
        m = mu.shape[0]
        th1 = np.tile(self.model.typical, (m, 1))
        for n, v in self.info["fixed"].items():
            th1[:, names.index(n)] = v
        th2 = th1.copy()
        for k, n in enumerate(free):
            j = names.index(n)
            par = self.model.parameters[j]
            th1[:, j] = par.from_scale(mu[:, k])
            sh = delta[:, self.info["effects"].index(n)] if n in self.info["effects"] else 0.0
            th2[:, j] = par.from_scale(mu[:, k] + sh)
        grid = np.linspace(0, 60, 601)
        o1 = batch_curve_outcomes(grid, np.exp(self.predict_log(grid, th1)))
        o2 = batch_curve_outcomes(grid, np.exp(self.predict_log(grid, th2)))
        return o2["cmax"] / o1["cmax"], o2["tmax"] - o1["tmax"]

    # ------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly result (the keys of ``cartkinetics fit-population --json``)."""
        diag = self.diagnostics(warn=False)
        pat = self.patient_outcomes()
        eff = self.patient_infusion_effects()

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, (np.floating,)):
                return clean(float(x))
            if isinstance(x, (np.integer,)):
                return int(x)
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        return clean(
            {
                "model": self.model.name,
                "assay": self.data.assay,
                "outputs": list(self.data.outputs),
                "unit": self.data.unit,
                "n_patients": self.data.n_patients,
                "n_series": self.data.n_series,
                "n_observations": self.data.n_obs,
                "n_censored": int(self.data.censored.sum()),
                "censoring": "M3 (likelihood of ln Y < ln LLOQ, pm.Censored)",
                "residual": self.info["residual"],
                # the ODE solves' relative tolerance in the likelihood (None: closed form)
                "rtol": self.info.get("rtol"),
                "sampler": self.info["sampling"]["sampler"],
                "seed": self.info.get("settings", {}).get("seed"),
                "settings": dict(self.info.get("settings", {})),
                "timing_seconds": {
                    k: v for k, v in self.info["sampling"].items() if k.endswith("seconds")
                },
                "infusion_effect": self.infusion_effect(),
                "diagnostics": {
                    k: diag[k]
                    for k in ("max_rhat", "max_rhat_population", "min_ess_bulk", "min_ess_tail",
                              "divergences", "bfmi", "ok", "problems", "thresholds", "worst",
                              "stuck_chains", "chain_logp", "patients_disagreeing", "advice")
                },
                "convergence": self.info.get("convergence"),
                "model_checking": self._model_checking(),
                "population": self.summary().to_dict(orient="records"),
                "shrinkage": self.shrinkage().to_dict(orient="records"),
                "patients": pat.to_dict(orient="records"),
                "patient_infusion_effects": eff.to_dict(orient="records"),
            }
        )

    def _model_checking(self) -> dict[str, Any]:
        """PSIS-LOO per patient and the PIT residuals' summary (never raising)."""
        out: dict[str, Any] = {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out["loo_patient"] = self.loo("patient").to_dict()
                out["pit_residuals"] = self.pit_residuals().to_dict()
        except Exception as exc:  # e.g. no log_likelihood group
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out

    def save(self, out_dir: str | Path, figures: bool = True) -> dict[str, Path]:
        """Write idata (NetCDF), tables (CSV), results.json and figures (PNG) to ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "idata": out / "population_idata.nc",
            "summary": out / "population_summary.csv",
            "patients": out / "population_patients.csv",
            "infusion": out / "population_infusion_effects.csv",
            "json": out / "population_results.json",
        }
        self.idata.to_netcdf(str(paths["idata"]))
        self.summary().to_csv(paths["summary"], index=False)
        self.patient_outcomes().to_csv(paths["patients"], index=False)
        self.patient_infusion_effects().to_csv(paths["infusion"], index=False)
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2))
        if figures:
            import matplotlib

            from cartkinetics.fit.population import plots as pp

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            for name, fn in (
                ("population_pred", pp.plot_population),
                ("individual_pred", pp.plot_individuals),
                ("forest_cmax_ratio", pp.plot_forest_cmax_ratio),
                ("vpc_censored", pp.plot_vpc_censored),
                # beside the censored VPC: residuals with the BLQ rows randomised
                ("pit_residuals", lambda f: f.pit_residuals().plot()),
            ):
                try:
                    res = fn(self)
                except ValueError:  # e.g. no second infusions for the forest plot
                    continue
                fig = res.figure if hasattr(res, "figure") else res
                p = out / f"{name}.png"
                fig.savefig(p, dpi=120, bbox_inches="tight")
                plt.close(fig)
                paths[name] = p
        return paths

    # ------------------------------------------------------------ model checking
    def loo(self, by: str = "patient") -> Any:
        """PSIS-LOO leaving out one patient (or ``by="observation"``): elpd, SE, Pareto k per
        unit (:func:`cartkinetics.fit.model_comparison.loo`)."""
        from cartkinetics.fit.model_comparison import loo

        return loo(self, by=by)

    def pit_residuals(self, seed: int | None = None) -> Any:
        """Randomised PIT residuals, BLQ rows included
        (:func:`cartkinetics.fit.model_comparison.pit_residuals`)."""
        from cartkinetics.fit.model_comparison import pit_residuals

        return pit_residuals(self, seed=seed)

    # ------------------------------------------------------------ plots
    def plot_population(self, ax: Any = None, **kw: Any) -> Any:
        """Population posterior predictive band over all series' data (BLQ as open markers);
        returns ax.
        """
        from cartkinetics.fit.population.plots import plot_population

        return plot_population(self, ax=ax, **kw)

    def plot_individual(self, patient: str, ax: Any = None, **kw: Any) -> Any:
        """Posterior predictive bands of one patient's series over the data (days, assay units);
        returns ax.
        """
        from cartkinetics.fit.population.plots import plot_individual

        return plot_individual(self, patient, ax=ax, **kw)

    def plot_forest_cmax_ratio(self, ax: Any = None) -> Any:
        """Forest plot of per-patient Cmax ratios (second/first infusion) with 95% CrIs; returns
        ax.
        """
        from cartkinetics.fit.population.plots import plot_forest_cmax_ratio

        return plot_forest_cmax_ratio(self, ax=ax)

    def plot_vpc(self, ax: Any = None, **kw: Any) -> Any:
        """Censored visual predictive check: fraction below the LLOQ over time (days), observed
        vs predicted; returns ax.
        """
        from cartkinetics.fit.population.plots import plot_vpc_censored

        return plot_vpc_censored(self, ax=ax, **kw)


def add_groups(idata: Any, pdata: PopulationData, info: dict[str, Any], seed: int | None,
                fit: PopulationFit) -> None:
    """posterior_predictive, log_likelihood, observed_data, constant_data groups."""
    import xarray as xr

    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    theta = fit.theta  # (nc*nd, series, params)
    log_pred = np.empty((theta.shape[0], pdata.n_obs))
    obs_names = [info["observations"][k] for k in range(pdata.n_outputs)]
    for s in range(pdata.n_series):
        # one solve per series serves the rows of every output
        rows = np.flatnonzero(pdata.obs_series == s)
        tt, inv = np.unique(pdata.t[rows], return_inverse=True)
        logs = fit.predict_logs(tt, theta[:, s, :], obs_names)
        for k in range(pdata.n_outputs):
            mine = pdata.obs_output[rows] == k
            log_pred[:, rows[mine]] = logs[k][:, inv[mine]]
    sigma = fit._stack("sigma")
    nu = fit._stack("nu") if "nu" in post else None
    ll = log_likelihood_np(log_pred, pdata, sigma, nu)
    rng = np.random.default_rng(seed)
    if nu is None:
        eps = rng.standard_normal(log_pred.shape)
    else:
        eps = rng.standard_t(nu[:, None], size=log_pred.shape)
    y_rep = log_pred + row_sigma(sigma, pdata) * eps
    # censored exactly as pm.Censored: values below the row's lower bound sit at the bound
    y_rep = np.maximum(y_rep, pdata.log_lower[None, :])
    coords = {"chain": post.coords["chain"].values, "draw": post.coords["draw"].values,
              "obs": np.arange(pdata.n_obs)}
    dims = ("chain", "draw", "obs")

    def ds(name: str, arr: np.ndarray) -> xr.Dataset:
        return xr.Dataset({name: (dims, arr.reshape(nc, nd, -1))}, coords=coords)

    # PyMC's own sampler already wrote observed/constant data from the model: ours replace them
    # (the same values, on the coordinates the result object uses)
    for group in ("posterior_predictive", "log_likelihood", "observed_data", "constant_data"):
        if group in idata.groups():
            delattr(idata, group)
    idata.add_groups(
        posterior_predictive=ds("log_y", y_rep),
        log_likelihood=ds("log_y", ll),
        observed_data=xr.Dataset({"log_y": (("obs",), pdata.log_y)},
                                 coords={"obs": coords["obs"]}),
        constant_data=xr.Dataset(
            {
                "day": (("obs",), pdata.t),
                "series": (("obs",), pdata.obs_series),
                "lloq": (("obs",), pdata.lloq),
                "censored": (("obs",), pdata.censored),
                "log_lower": (("obs",), pdata.log_lower),
            },
            coords={"obs": coords["obs"]},
        ),
    )
    fit._log_pred = log_pred
