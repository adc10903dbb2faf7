"""Simulation-based calibration (Talts et al. 2018) of the hierarchical Stein 2019 fit.

For each replication: draw every population quantity from the model's own prior
(``pm.sample_prior_predictive`` on the PyMC model, so the prior is exactly the one fitted),
simulate a small cohort with the model library's closed form (``models.get("stein2019")``),
censor at the LLOQ, fit with nutpie (one compiled model, new data through ``with_data``), and
record the rank of the true value among thinned posterior draws. If inference is calibrated
the ranks are uniform: a chi-square test per quantity over ``--bins`` bins, and rank
histograms in ``--out``.

    PYTHONPATH=. python benchmarks/sbc_stein.py --reps 100 --out sbc_out
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = ap.parse_args(argv)

    import nutpie
    import pymc as pm
    from scipy import stats

    from cartkinetics import models
    from cartkinetics.data import read_kinetics
    from cartkinetics.fit import population as P
    from cartkinetics.fit.population_sim import simulate_stein_cohort

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    days = (1.0, 4.0, 7.0, 11.0, 14.0, 21.0, 28.0, 84.0, 168.0)
    df, _ = simulate_stein_cohort(args.patients, seed=0, days=days, lloq=args.lloq)
    pdata = P.prepare_population_data(read_kinetics(df))
    pm_model, info = P.build_model(pdata, "stein2019", mutable_data=True)
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(pm_model)
    compile_s = time.perf_counter() - t0
    import warnings

    with warnings.catch_warnings():
        # the ordering penalty (a Potential) is applied below by rejection
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=3 * args.reps, model=pm_model,
                                           random_seed=args.seed,
                                           var_names=["mu", "omega", "delta", "tau", "sigma",
                                                      "theta"])
    pr = prior.prior
    # the prior includes the alpha > beta penalty ln sigmoid((ln alpha - ln beta) / s) per
    # patient (a pm.Potential, which prior predictive sampling ignores): exact draws from it by
    # rejection, accepting a joint draw with probability prod_i sigmoid(gap_i / s) <= 1
    names = info["names"]
    th_all = pr["theta"].values[0]  # (draws, series, params)
    first = pdata.series_infusion == 1
    gap = (np.log(th_all[:, first, names.index("alpha")])
           - np.log(th_all[:, first, names.index("beta")])) / P.ORDER_SCALE
    accept_p = np.exp(-np.logaddexp(0.0, -gap).sum(axis=1))
    acc = np.flatnonzero(np.random.default_rng(args.seed + 7).uniform(size=accept_p.size)
                         < accept_p)
    if acc.size < args.reps:
        raise SystemExit(f"only {acc.size} prior draws accepted; need {args.reps}")
    pr = pr.isel(draw=acc[: args.reps])
    print(f"prior draws: {acc.size} of {accept_p.size} accepted by the ordering penalty "
          f"(mean acceptance probability {accept_p.mean():.4f})", flush=True)
    stein = models.get("stein2019")
    rng = np.random.default_rng(args.seed + 1)
    free = info["free"]
    effects = info["effects"]
    labels = ([f"mu[{n}]" for n in free] + [f"omega[{n}]" for n in free]
              + [f"delta[{e}]" for e in effects] + [f"tau[{e}]" for e in effects] + ["sigma"])
    ranks = np.full((args.reps, len(labels)), -1, dtype=int)
    div = np.zeros(args.reps, dtype=int)
    rhat = np.full(args.reps, np.nan)
    failed: list[int] = []
    log_lloq = np.log(args.lloq)
    t_start = time.perf_counter()
    for r in range(args.reps):
        theta = pr["theta"].values[0, r]  # (series, params)
        sigma = float(pr["sigma"].values[0, r])
        log_pred = np.empty(pdata.n_obs)
        for s in range(pdata.n_series):
            sel = pdata.obs_series == s
            sol = stein.solve(pdata.t[sel], theta[s])
            with np.errstate(divide="ignore"):
                log_pred[sel] = np.log(sol.observed[stein.primary_observation])
        y = log_pred + sigma * rng.standard_normal(pdata.n_obs)
        cens = y < log_lloq
        log_y = np.where(cens, log_lloq, y)
        lower = np.where(cens, log_lloq, -np.inf)
        fitted = compiled.with_data(log_y_data=log_y, log_lower=lower)
        try:
            idata = nutpie.sample(fitted, draws=args.draws, tune=args.tune, chains=args.chains,
                                  seed=args.seed + r, progress_bar=False, save_warmup=False,
                                  target_accept=P.DEFAULT_TARGET_ACCEPT)
        except Exception as exc:  # a failed replication is recorded, not hidden
            print(f"replication {r}: sampling failed ({exc})", flush=True)
            failed.append(r)
            continue
        post = idata.posterior
        div[r] = int(idata.sample_stats["diverging"].values.sum())
        import arviz as az

        rhat[r] = float(max(np.nanmax(az.rhat(idata, var_names=[v])[v].values)
                            for v in ("mu", "omega", "sigma")))
        truth = np.concatenate([
            pr["mu"].values[0, r], pr["omega"].values[0, r], pr["delta"].values[0, r],
            pr["tau"].values[0, r], [sigma],
        ])
        draws = np.concatenate([
            post["mu"].values.reshape(-1, len(free)),
            post["omega"].values.reshape(-1, len(free)),
            post["delta"].values.reshape(-1, len(effects)),
            post["tau"].values.reshape(-1, len(effects)),
            post["sigma"].values.reshape(-1, 1),
        ], axis=1)
        # thin (chains interleaved) to roughly independent draws
        keep = np.linspace(0, draws.shape[0] - 1, args.thin_to).astype(int)
        ranks[r] = (draws[keep] < truth[None, :]).sum(axis=0)
        if (r + 1) % 10 == 0:
            el = time.perf_counter() - t_start
            print(f"{r + 1}/{args.reps} replications, {el:.0f} s", flush=True)

    ranks = ranks[(ranks >= 0).all(axis=1)]
    L = args.thin_to
    edges = np.linspace(-0.5, L + 0.5, args.bins + 1)
    rows = []
    for j, lab in enumerate(labels):
        counts, _ = np.histogram(ranks[:, j], bins=edges)
        chi2, p = stats.chisquare(counts)
        rows.append({"quantity": lab, "chi2": float(chi2), "p_value": float(p),
                     "counts": counts.tolist()})
    # Bonferroni over the quantities tested
    n_q = len(labels)
    result = {
        "replications": args.reps,
        "failed_replications": failed,
        "replications_used": int(ranks.shape[0]),
        "patients": args.patients,
        "infusions": 2,
        "days": list(days),
        "lloq": args.lloq,
        "blq_fraction_template": float(pdata.censored.mean()),
        "draws_per_chain": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "ranks_out_of": L,
        "bins": args.bins,
        "compile_seconds": compile_s,
        "total_seconds": time.perf_counter() - t_start,
        "divergent_replications": int((div > 0).sum()),
        "max_rhat_median": float(np.nanmedian(rhat)),
        "tests": rows,
        "min_p_value": float(min(r["p_value"] for r in rows)),
        "bonferroni_alpha": 0.05 / n_q,
        "uniform_at_bonferroni": bool(min(r["p_value"] for r in rows) > 0.05 / n_q),
    }
    (out / "sbc_stein.json").write_text(json.dumps(result, indent=1))
    np.savetxt(out / "sbc_stein_ranks.csv", ranks, delimiter=",", header=",".join(labels),
               fmt="%d")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 6
    nrow = int(np.ceil(n_q / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.0 * nrow), squeeze=False)
    expected = ranks.shape[0] / args.bins
    band = stats.binom.ppf([0.005, 0.995], ranks.shape[0], 1 / args.bins)
    for ax, row in zip(axes.ravel(), rows, strict=False):
        ax.bar(np.arange(args.bins), row["counts"], color="tab:blue", width=0.9)
        ax.axhspan(band[0], band[1], color="grey", alpha=0.3)
        ax.axhline(expected, color="k", lw=0.8)
        ax.set_title(f"{row['quantity']}\np={row['p_value']:.2f}", fontsize=8)
        ax.set_xticks([])
    for ax in axes.ravel()[n_q:]:
        ax.set_visible(False)
    fig.suptitle(f"SBC rank histograms, Stein 2019 population model ({args.reps} replications)")
    fig.tight_layout()
    fig.savefig(out / "sbc_stein_ranks.png", dpi=110)
    print(f"{'quantity':<16} {'chi2':>7} {'p':>6}")
    for row in rows:
        print(f"{row['quantity']:<16} {row['chi2']:7.2f} {row['p_value']:6.3f}")
    print(f"min p = {result['min_p_value']:.3f} (Bonferroni threshold {0.05 / n_q:.4f}); "
          f"replications with divergences: {result['divergent_replications']}; "
          f"time {result['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
