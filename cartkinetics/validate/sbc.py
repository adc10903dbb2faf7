"""Simulation-based calibration (Talts et al. 2018) of the hierarchical Stein 2019 fit.

Replicate ``r`` (random numbers from its own ``SeedSequence`` child): draw every population
quantity from the model's own prior (``pm.sample_prior_predictive`` on the PyMC model, so the
prior is exactly the one fitted; the alpha > beta ordering penalty, a ``pm.Potential`` that
prior sampling ignores, is applied by rejection), simulate the cohort's series with the model
library's closed form (``models.get("stein2019")``), censor at the LLOQ, fit with nutpie (one
compiled model per worker process, new data through ``with_data``), and record the rank of
the true value among ``thin_to`` thinned posterior draws. If inference is calibrated the
ranks are uniform on 0..thin_to.

Summary per quantity: a chi-square test of the rank histogram over ``bins`` bins, and the
graphical uniformity test of Säilynoja, Bürkner & Vehtari (2022, Stat. Comput. 32:32): the
ECDF of the fractional ranks against a simultaneous 95% band (``arviz`` 's
``ecdf_confidence_band``, "optimized" method of that paper); figures: rank histograms with a
99% binomial band (Talts et al. 2018, Fig. 3) and ECDF-difference plots with the simultaneous
band (Säilynoja et al. 2022, Fig. 3).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cartkinetics.validate.study import Study

SBC_DAYS = (1.0, 4.0, 7.0, 11.0, 14.0, 21.0, 28.0, 84.0, 168.0)
PRIOR_BATCH = 64  # prior draws per rejection round
# samplings of one replicate before it counts as failed when nutpie finds no start with a
# finite log density (2 of 200 replicates of the cluster record failed so at the first try)
INIT_ATTEMPTS = 3
_CACHE: dict[tuple, dict[str, Any]] = {}  # per worker process: the compiled model


def _setup(patients: int, lloq: float, days: tuple[float, ...]) -> dict[str, Any]:
    """Data template, PyMC model, nutpie-compiled model (once per process and design)."""
    key = (patients, lloq, days)
    if key in _CACHE:
        return _CACHE[key]
    import nutpie

    from cartkinetics.data import read_kinetics
    from cartkinetics.fit import population as P
    from cartkinetics.testing import simulate_stein_cohort

    df, _ = simulate_stein_cohort(patients, seed=0, days=days, lloq=lloq)
    pdata = P.prepare_population_data(read_kinetics(df))
    pm_model, info = P.build_model(pdata, "stein2019", mutable_data=True)
    t0 = time.perf_counter()
    # the same erfcx as fit_population, whatever this process ran before: registered in one
    # process and not in another, the two implementations differ at 1e-12 and a replicate's
    # trajectory (and its divergence count) then depended on which tests ran first
    P.register_cacheable_erfcx()
    compiled = nutpie.compile_pymc_model(pm_model, backend="numba")
    free, effects = info["free"], info["effects"]
    labels = ([f"mu[{n}]" for n in free] + [f"omega[{n}]" for n in free]
              + [f"delta[{e}]" for e in effects] + [f"tau[{e}]" for e in effects] + ["sigma"])
    _CACHE[key] = {"pdata": pdata, "pm_model": pm_model, "info": info, "compiled": compiled,
                   "compile_seconds": time.perf_counter() - t0, "labels": labels}
    return _CACHE[key]


def sbc_labels(patients: int = 8, lloq: float = 150.0,
               days: tuple[float, ...] = SBC_DAYS) -> list[str]:
    """Names of the quantities ranked (mu, omega per free parameter; delta, tau; sigma)."""
    return _setup(patients, lloq, tuple(days))["labels"]


def _prior_draw(s: dict[str, Any], rng: np.random.Generator, max_rounds: int = 50
                ) -> tuple[dict[str, np.ndarray], int]:
    """One exact draw from the prior including the ordering penalty (rejection sampling:
    accept a joint draw with probability prod_i sigmoid(gap_i / ORDER_SCALE) <= 1)."""
    import pymc as pm

    from cartkinetics.fit import population as P

    names = s["info"]["names"]
    first = s["pdata"].series_infusion == 1
    log = logging.getLogger("pymc")
    for k in range(max_rounds):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The effect of Potentials")
            level = log.level
            log.setLevel(logging.WARNING)  # not "Sampling: [...]" once per replicate
            prior = pm.sample_prior_predictive(
                draws=PRIOR_BATCH, model=s["pm_model"], random_seed=int(rng.integers(2**31)),
                var_names=["mu", "omega", "delta", "tau", "sigma", "theta"],
            ).prior
            log.setLevel(level)
        th = prior["theta"].values[0]
        gap = (np.log(th[:, first, names.index("alpha")])
               - np.log(th[:, first, names.index("beta")])) / P.ORDER_SCALE
        accept_p = np.exp(-np.logaddexp(0.0, -gap).sum(axis=1))
        acc = np.flatnonzero(rng.uniform(size=accept_p.size) < accept_p)
        if acc.size:
            i = int(acc[0])
            return {v: prior[v].values[0, i] for v in ("mu", "omega", "delta", "tau", "sigma",
                                                        "theta")}, k + 1
    raise RuntimeError(f"no prior draw accepted by the ordering penalty in "
                       f"{max_rounds * PRIOR_BATCH} draws")


def one_line(message: str) -> str:
    """An error message on one line, without the Rust stack backtrace that nutpie's errors
    carry (tens of lines of frames)."""
    lines = []
    for line in message.splitlines():
        if line.strip().startswith("Stack backtrace"):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)


def sbc_replicate(cfg: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One SBC replicate: prior draw, simulated cohort, nutpie fit, ranks (one row)."""
    import nutpie

    from cartkinetics import models
    from cartkinetics.fit import population as P

    s = _setup(cfg["patients"], cfg["lloq"], tuple(cfg["days"]))
    labels = s["labels"]
    row: dict[str, Any] = {"status": "ok", "message": "", "divergences": -1,
                           "max_rhat": math.nan, "prior_rounds": 0, "attempts": 0}
    row.update({f"rank[{lab}]": -1 for lab in labels})
    try:
        truth, rounds = _prior_draw(s, rng)
        row["prior_rounds"] = rounds
        pdata = s["pdata"]
        stein = models.get("stein2019")
        sigma = float(truth["sigma"])
        log_pred = np.empty(pdata.n_obs)
        for j in range(pdata.n_series):
            sel = pdata.obs_series == j
            sol = stein.solve(pdata.t[sel], truth["theta"][j])
            with np.errstate(divide="ignore"):
                log_pred[sel] = np.log(sol.observed[stein.primary_observation])
        y = log_pred + sigma * rng.standard_normal(pdata.n_obs)
        log_lloq = math.log(cfg["lloq"])
        cens = y < log_lloq
        fitted = s["compiled"].with_data(log_y_data=np.where(cens, log_lloq, y),
                                         log_lower=np.where(cens, log_lloq, -np.inf))
        # cores=1: the chains of one replicate run one after the other, so the draws do not
        # depend on how threads interleave (a replicate was seen to differ by a divergence
        # between runs on a loaded machine); the study's parallelism is across replicates
        # a replicate whose every start has a non-finite log density ("All initialization
        # points failed") is tried again from other jittered starts (a new sampler seed)
        # before it counts as failed: dropping it would select the data sets the sampler
        # starts on easily. The data and the truth stay those of this replicate.
        for attempt in range(1, INIT_ATTEMPTS + 1):
            row["attempts"] = attempt
            try:
                idata = nutpie.sample(fitted, draws=cfg["draws"], tune=cfg["tune"],
                                      chains=cfg["chains"], seed=int(rng.integers(2**31)),
                                      cores=1, progress_bar=False, save_warmup=False,
                                      target_accept=P.DEFAULT_TARGET_ACCEPT)
                break
            except Exception as exc:
                if attempt == INIT_ATTEMPTS or "initializ" not in str(exc).lower():
                    raise
    except Exception as exc:  # a failed replicate is a row, not a lost study
        row["status"], row["message"] = "failed", one_line(f"{type(exc).__name__}: {exc}")
        return row
    import arviz as az

    post = idata.posterior
    nf, ne = len(s["info"]["free"]), len(s["info"]["effects"])
    row["divergences"] = int(idata.sample_stats["diverging"].values.sum())
    row["max_rhat"] = float(max(np.nanmax(az.rhat(idata, var_names=[v])[v].values)
                                for v in ("mu", "omega", "sigma")))
    true_vec = np.concatenate([truth["mu"], truth["omega"], truth["delta"], truth["tau"],
                               [sigma]])
    draws = np.concatenate([
        post["mu"].values.reshape(-1, nf), post["omega"].values.reshape(-1, nf),
        post["delta"].values.reshape(-1, ne), post["tau"].values.reshape(-1, ne),
        post["sigma"].values.reshape(-1, 1),
    ], axis=1)
    # thin (chains interleaved) to roughly independent draws
    keep = np.linspace(0, draws.shape[0] - 1, cfg["thin_to"]).astype(int)
    ranks = (draws[keep] < true_vec[None, :]).sum(axis=0)
    for lab, rk in zip(labels, ranks, strict=True):
        row[f"rank[{lab}]"] = int(rk)
    return row


# ------------------------------------------------------------------ uniformity of ranks


def ecdf_band(n: int, n_ranks: int, prob: float = 0.95) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Simultaneous ``prob`` band of the ECDF of ``n`` fractional ranks (Säilynoja et al.
    2022), evaluated at z_i = i / K, i = 1..K-1, K = ``n_ranks`` (the number of possible rank
    values, thin_to + 1): returns (z, lower, upper) as ECDF values."""
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    z = np.arange(1, n_ranks) / n_ranks
    lo, hi = ecdf_confidence_band(n, z, z, prob=prob, method="optimized")
    return z, np.asarray(lo, float), np.asarray(hi, float)


def rank_ecdf(ranks: np.ndarray, n_ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """ECDF of fractional ranks (rank + 1) / K at z_i = i / K (exactly uniform CDF z_i
    under calibration, for ranks uniform on 0..K-1)."""
    z = np.arange(1, n_ranks) / n_ranks
    u = (np.asarray(ranks) + 1) / n_ranks
    return z, (u[None, :] <= z[:, None] + 1e-12).mean(axis=1)


def sbc_summary(table: pd.DataFrame, thin_to: int, bins: int, prob: float = 0.95
                ) -> pd.DataFrame:
    """Per quantity: chi-square test of the binned ranks, and whether the rank ECDF stays
    inside the simultaneous band (Säilynoja et al. 2022)."""
    from scipy import stats

    ok = table[table["status"] == "ok"]
    cols = [c for c in table.columns if c.startswith("rank[")]
    n_ranks = thin_to + 1
    edges = np.linspace(-0.5, thin_to + 0.5, bins + 1)
    rows = []
    band = ecdf_band(len(ok), n_ranks, prob) if len(ok) else None
    for c in cols:
        r = ok[c].to_numpy(int)
        counts, _ = np.histogram(r, bins=edges)
        chi2, p = stats.chisquare(counts) if len(r) else (math.nan, math.nan)
        inside = math.nan
        if band is not None:
            _, F = rank_ecdf(r, n_ranks)
            inside = bool(np.all((F >= band[1] - 1e-12) & (F <= band[2] + 1e-12)))
        rows.append({"quantity": c[5:-1], "replicates": len(r), "chi2": float(chi2),
                     "p_value": float(p), "ecdf_inside_band": inside,
                     "counts": " ".join(str(int(k)) for k in counts)})
    out = pd.DataFrame(rows)
    out["bonferroni_alpha"] = 0.05 / max(1, len(cols))
    return out


def plot_rank_histograms(table: pd.DataFrame, thin_to: int, bins: int, title: str = "") -> Any:
    """Rank histograms with the 99% binomial band of each bin's count (Talts et al. 2018)."""
    import matplotlib.pyplot as plt
    from scipy import stats

    ok = table[table["status"] == "ok"]
    cols = [c for c in table.columns if c.startswith("rank[")]
    ncol = 6
    nrow = max(1, math.ceil(len(cols) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.0 * nrow), squeeze=False)
    edges = np.linspace(-0.5, thin_to + 0.5, bins + 1)
    n = len(ok)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    for ax, c in zip(axes.ravel(), cols, strict=False):
        counts, _ = np.histogram(ok[c].to_numpy(int), bins=edges)
        ax.bar(np.arange(bins), counts, color="tab:blue", width=0.9)
        ax.axhspan(lo, hi, color="grey", alpha=0.3)
        ax.axhline(n / bins, color="k", lw=0.8)
        ax.set_title(c[5:-1], fontsize=8)
        ax.set_xticks([])
    for ax in axes.ravel()[len(cols):]:
        ax.set_visible(False)
    fig.suptitle(title or f"SBC rank histograms ({n} replicates; grey: 99% binomial band)")
    fig.tight_layout()
    return fig


def plot_ecdf_difference(ranks: np.ndarray, thin_to: int, ax: Any = None, prob: float = 0.95,
                         title: str = "") -> Any:
    """ECDF minus uniform CDF of the fractional ranks, with the simultaneous band
    (Säilynoja et al. 2022); returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3, 2.4))
    n_ranks = thin_to + 1
    z, F = rank_ecdf(ranks, n_ranks)
    _, lo, hi = ecdf_band(len(ranks), n_ranks, prob)
    ax.fill_between(z, lo - z, hi - z, step="post", color="grey", alpha=0.3, lw=0)
    ax.step(z, F - z, where="post", color="tab:blue", lw=1)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlim(0, 1)
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def plot_ecdf_differences(table: pd.DataFrame, thin_to: int, title: str = "") -> Any:
    """One ECDF-difference panel per quantity."""
    import matplotlib.pyplot as plt

    ok = table[table["status"] == "ok"]
    cols = [c for c in table.columns if c.startswith("rank[")]
    ncol = 6
    nrow = max(1, math.ceil(len(cols) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.0 * nrow), squeeze=False,
                             sharey=True)
    for ax, c in zip(axes.ravel(), cols, strict=False):
        plot_ecdf_difference(ok[c].to_numpy(int), thin_to, ax=ax, title=c[5:-1])
    for ax in axes.ravel()[len(cols):]:
        ax.set_visible(False)
    fig.suptitle(title or f"SBC: ECDF - uniform CDF of fractional ranks ({len(ok)} replicates; "
                 "grey: simultaneous 95% band, Säilynoja et al. 2022)")
    fig.tight_layout()
    return fig


class SBCStudy(Study):
    """SBC of the hierarchical Stein 2019 fit (``cartkinetics validate sbc``).

    Parameters
    ----------
    patients : int (two infusions each)
    draws, tune, chains : nutpie settings (draws and tuning steps per chain)
    thin_to : int (posterior draws kept for the ranks; ranks in 0..thin_to)
    bins : int (rank histogram bins)
    lloq : float (copies/ug)
    """

    name = "sbc"

    def __init__(self, patients: int = 8, draws: int = 250, tune: int = 400, chains: int = 2,
                 thin_to: int = 99, bins: int = 10, lloq: float = 150.0,
                 days: tuple[float, ...] = SBC_DAYS) -> None:
        self.cfg = {"patients": int(patients), "draws": int(draws), "tune": int(tune),
                    "chains": int(chains), "thin_to": int(thin_to), "bins": int(bins),
                    "lloq": float(lloq), "days": [float(d) for d in days]}

    def config(self) -> dict[str, Any]:
        """Options deciding a replicate's result."""
        return dict(self.cfg)

    def replicate(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """One SBC replicate (see sbc_replicate)."""
        return sbc_replicate(self.cfg, rng)

    def summarize(self, table: pd.DataFrame) -> pd.DataFrame:
        """Chi-square and ECDF-band tests per quantity."""
        return sbc_summary(table, self.cfg["thin_to"], self.cfg["bins"])

    def figures(self, table: pd.DataFrame, out: Path) -> list[Path]:
        """sbc_ranks.png (rank histograms), sbc_ecdf_difference.png."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        paths = []
        for name, fig in (
            ("sbc_ranks.png", plot_rank_histograms(table, self.cfg["thin_to"],
                                                   self.cfg["bins"])),
            ("sbc_ecdf_difference.png", plot_ecdf_differences(table, self.cfg["thin_to"])),
        ):
            path = Path(out) / name
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
        return paths


def sbc_stein_main(argv: list[str] | None = None) -> int:
    """The command line of ``benchmarks/sbc_stein.py`` (same options and files as before:
    sbc_stein.json, sbc_stein_ranks.csv, sbc_stein_ranks.png; now also
    sbc_stein_ecdf_difference.png and the study's partitions, resumable)."""
    import argparse
    import json

    from cartkinetics._dask import write_text_atomic
    from cartkinetics.commands._options import add_cluster_arguments
    from cartkinetics.validate.study import run_study

    ap = argparse.ArgumentParser(description="Simulation-based calibration (Talts et al. 2018) "
                                 "of the hierarchical Stein 2019 fit.")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument("--draws", type=int, default=250, help="draws per chain")
    ap.add_argument("--tune", type=int, default=400)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--thin-to", type=int, default=99, help="posterior draws kept for ranks")
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--lloq", type=float, default=150.0)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default="sbc_stein_out")
    ap.add_argument("--resume", action="store_true", help="keep finished partitions in --out")
    add_cluster_arguments(ap)
    args = ap.parse_args(argv)

    study = SBCStudy(patients=args.patients, draws=args.draws, tune=args.tune,
                     chains=args.chains, thin_to=args.thin_to, bins=args.bins, lloq=args.lloq)
    out = Path(args.out)
    res = run_study(study, args.reps, seed=args.seed, out=out / "study", resume=args.resume,
                    workers=args.workers, scheduler=args.scheduler, partition_size=5,
                    progress=True)
    t = res.table
    ok = t[t["status"] == "ok"]
    rows = res.summary_table
    labels = rows["quantity"].tolist()
    n_q = len(labels)
    min_p = float(rows["p_value"].min())
    s = _setup(args.patients, args.lloq, tuple(study.cfg["days"]))
    result = {
        "replications": args.reps,
        "failed_replications": t.loc[t["status"] != "ok", "replicate"].astype(int).tolist(),
        "replications_used": len(ok),
        "patients": args.patients,
        "infusions": 2,
        "days": list(SBC_DAYS),
        "lloq": args.lloq,
        "blq_fraction_template": float(s["pdata"].censored.mean()),
        "draws_per_chain": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "ranks_out_of": args.thin_to,
        "bins": args.bins,
        "compile_seconds": s["compile_seconds"],
        "total_seconds": res.info["seconds"],
        "divergent_replications": int((ok["divergences"] > 0).sum()),
        "max_rhat_median": float(ok["max_rhat"].median()) if len(ok) else math.nan,
        "tests": [{"quantity": r.quantity, "chi2": r.chi2, "p_value": r.p_value,
                   "counts": [int(c) for c in r.counts.split()],
                   "ecdf_inside_band": bool(r.ecdf_inside_band)}
                  for r in rows.itertuples(index=False)],
        "min_p_value": min_p,
        "bonferroni_alpha": 0.05 / n_q,
        "uniform_at_bonferroni": bool(min_p > 0.05 / n_q),
        "ecdf_inside_band_all": bool(rows["ecdf_inside_band"].all()),
    }
    write_text_atomic(json.dumps(result, indent=1), out / "sbc_stein.json")
    np.savetxt(out / "sbc_stein_ranks.csv", ok[[f"rank[{q}]" for q in labels]].to_numpy(int),
               delimiter=",", header=",".join(labels), fmt="%d")
    import shutil

    for src, dst in (("sbc_ranks.png", "sbc_stein_ranks.png"),
                     ("sbc_ecdf_difference.png", "sbc_stein_ecdf_difference.png")):
        shutil.copyfile(out / "study" / src, out / dst)
    print(f"{'quantity':<16} {'chi2':>7} {'p':>6}  ECDF in band")
    for r in rows.itertuples(index=False):
        print(f"{r.quantity:<16} {r.chi2:7.2f} {r.p_value:6.3f}  {r.ecdf_inside_band}")
    print(f"min p = {min_p:.3f} (Bonferroni threshold {0.05 / n_q:.4f}); replications with "
          f"divergences: {result['divergent_replications']}; time "
          f"{result['total_seconds']:.0f} s")
    return 0


__all__ = ["SBCStudy", "sbc_stein_main", "sbc_replicate", "sbc_summary", "sbc_labels",
           "ecdf_band", "rank_ecdf",
           "plot_rank_histograms", "plot_ecdf_difference", "plot_ecdf_differences", "SBC_DAYS"]
