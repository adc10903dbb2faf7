"""Validation of the per-series fits (issue #5 acceptance); prints tables, saves a figure.

1. Recovery and 95% CI coverage over simulated Stein 2019 series (published typical values
   and between-subject variability, tisagenlecleucel-like schedule, 25-40% BLQ), for ML and
   MAP (population prior), each with M3 and M1: median and mean of ln(estimate / truth) of
   Cmax, Tmax, beta and AUC0-28 (closed form), and of the fitted curve at every sampled day,
   each with a bootstrap (over series) 95% Monte-Carlo interval; CI coverage with its
   Monte-Carlo interval. The truth is each simulated patient's own parameters.
2. Real data (Liu 2022, 32 B-ALL patients, ../shared/data/liu2022-ball; skipped if absent):
   status of every Stein fit, convergence count, fitted Tmax inside the sampling interval
   around the observed Tmax; figure docs/figures/liu2022_stein_fits.png.
3. Bad input: short, all-BLQ and constant series give a status, no exception.
4. Liu 2022 mechanistic model on the complete-remission patients: CAR-T level and CD19+
   leukaemia in one likelihood (rTA0, lTA0, nTN0, eBp, ka fitted; nB0 = the patient's
   baseline burden Reg; other parameters at the authors' example values; one shared ln-scale
   sigma estimated); figure docs/figures/liu2022_mechanistic_cr_fits.png.

Run:  cd /work/main && PYTHONPATH=. python benchmarks/validate_fit.py [--n 200] [--jobs 2]
      [--skip-real] [--skip-mechanistic]

Section 1's coverage, one replicate per task on Dask and resumable:
``cartkinetics validate fit-coverage`` (:mod:`cartkinetics.validate.coverage`).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cartkinetics import models
from cartkinetics.data import Series
from cartkinetics.fit import fit_cohort
from cartkinetics.validate import liu2022 as _liu
from cartkinetics.validate.coverage import DAYS, auc_0_28_closed, boot_ci, simulate
from cartkinetics.validate.coverage import coverage_text as _coverage

# the shared data folder next to the repository (cartkinetics.validate.liu2022 says where)
LIU = _liu.DEFAULT_SOURCE
FIG = Path(__file__).resolve().parents[2] / "docs" / "figures" / "liu2022_stein_fits.png"
FIG_MECH = FIG.with_name("liu2022_mechanistic_cr_fits.png")
LIU_FREE = ["rTA0", "lTA0", "nTN0", "eBp", "ka"]


def _fmt_pct(v: tuple[float, float, float]) -> str:
    """Median log-ratio as a percentage bias exp(m) - 1, with its interval."""
    m, lo, hi = (100 * math.expm1(x) for x in v)
    return f"{m:+.1f}% [{lo:+.1f}, {hi:+.1f}]"


def _fmt_lr(v: tuple[float, float, float]) -> str:
    return f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]"


ESTIMATORS = (("ML M3", None, "M3"), ("ML M1", None, "M1"), ("MAP M3", "population", "M3"),
              ("MAP M1", "population", "M1"))


def recovery(n: int, jobs: int, lloq: float, seed: int) -> None:
    """Section 1: bias and 95% CI coverage over ``n`` simulated series, four estimators."""
    m = models.get("stein2019")
    P, series = simulate(n, lloq, seed)
    blq = np.array([s.blq for s in series])
    blq_frac = float(blq.mean())
    print(f"\n## 1. Recovery over {n} simulated Stein 2019 series "
          f"(LLOQ {lloq:g} copies/ug, {100 * blq_frac:.1f}% of values BLQ)")
    rng = np.random.default_rng(seed + 1)
    true_auc = auc_0_28_closed(P)
    true_c = m.solve_batch(DAYS, P).observed["transgene"]
    # series whose slow phase is seen: >= 2 quantified values from day 60 on
    late = (~blq & (DAYS >= 60)).sum(axis=1) >= 2
    rows, cov_rows, day_rows, fits = {}, {}, {}, {}
    for label, prior, cens in ESTIMATORS:
        tic = time.perf_counter()
        # CIs: profile likelihood for ML; for MAP the default, SIR of the posterior
        c = fit_cohort(series, "stein2019", censoring=cens, n_jobs=jobs, n_boot=300, seed=1,
                       prior=prior, profile=("cmax", "tmax", "beta") if prior is None else False)
        fits[label] = c
        t = c.table
        ok = t["status"].isin(["converged", "converged_singular"]).to_numpy()
        E = t[m.param_names].to_numpy(float)
        E[~ok] = np.nan
        lr = {name: np.log(E[:, j] / P[:, j])
              for j, name in ((2, "cmax"), (1, "tmax"), (5, "beta"))}
        lr["beta (slow phase seen)"] = np.where(late, lr["beta"], np.nan)
        lr["AUC0-28"] = np.log(auc_0_28_closed(E) / true_auc)
        lr["curve Cmax (bootstrap grid)"] = np.log(t["model_cmax"].to_numpy(float) / P[:, 2])
        col = {}
        for q, x in lr.items():
            x = np.where(ok, x, np.nan)
            col[f"{q}: median bias"] = _fmt_pct(boot_ci(x, np.median, rng))
            col[f"{q}: mean log-ratio"] = _fmt_lr(boot_ci(x, np.mean, rng))
        col["usable fits"] = f"{ok.sum()}/{n}"
        col["parameter at a bound"] = int(t["message"].str.contains("at a bound").sum())
        col["wall s"] = round(time.perf_counter() - tic, 1)
        rows[label] = col
        cv = {}
        for j, name in ((2, "cmax"), (1, "tmax"), (5, "beta")):
            lo, hi = t[f"{name}_lo"].to_numpy(float), t[f"{name}_hi"].to_numpy(float)
            has = ok & np.isfinite(lo) & np.isfinite(hi)
            cover = ((lo <= P[:, j]) & (P[:, j] <= hi))[has]
            cv[f"{name} (profile / SIR CI)"] = _coverage(cover)
        for key, truth in (("cmax", P[:, 2]), ("tmax", P[:, 1]), ("auc_0_28", true_auc)):
            lo = t[f"model_{key}_lo"].to_numpy(float)
            hi = t[f"model_{key}_hi"].to_numpy(float)
            has = ok & np.isfinite(lo) & np.isfinite(hi)
            cover = ((lo <= truth) & (truth <= hi))[has]
            cv[f"curve {key} (bootstrap / SIR CI)"] = _coverage(cover)
        cov_rows[label] = cv
        # the fitted curve at the sampled days against the true (noise-free) curve
        Cf = np.full_like(true_c, np.nan)
        if ok.any():
            Cf[ok] = m.solve_batch(DAYS, E[ok]).observed["transgene"]
        lrc = np.log(Cf / true_c)
        day_rows[label] = {f"day {d:g}": _fmt_lr(boot_ci(lrc[:, k], np.median, rng))
                           for k, d in enumerate(DAYS)}
    with pd.option_context("display.width", 250, "display.max_colwidth", 40):
        print("\n### Bias: median (as % bias) and mean of ln(estimate / truth) over series, "
              "with bootstrap 95% Monte-Carlo intervals [resampling series]")
        print(pd.DataFrame(rows).to_string())
        print("\n### 95% CI coverage of the truth [Wilson 95% binomial interval], over fits "
              "with a finite CI")
        print(pd.DataFrame(cov_rows).to_string())
        print("\n### Fitted curve at the sampled days vs the true curve: median ln(fit/true) "
              "[Monte-Carlo 95%]; BLQ share of the observations per day in brackets")
        dt = pd.DataFrame(day_rows)
        dt.index = [f"{i} ({100 * f:.0f}% BLQ)" for i, f in zip(dt.index, blq.mean(axis=0),
                                                                 strict=True)]
        print(dt.to_string())
    print(f"series with the slow phase seen (>= 2 quantified values from day 60): "
          f"{int(late.sum())}/{n}")
    print("ML: maximum likelihood; MAP: maximum a posteriori with the published Stein 2019 "
          "population distribution as prior (prior='population'). Truth = the simulated "
          "patient's own parameters (not the typical values). CIs of cmax, tmax, beta: profile "
          "likelihood (of the posterior for MAP); curve outcomes: parametric bootstrap. AUC0-28 "
          "in closed form for both estimate and truth.")
    for label, c in fits.items():
        print(f"{label} statuses: {c.counts()}")


def optimum_agreement(n: int, lloq: float, seed: int) -> None:
    """The default multi-start against the former default (lmfit from the 5 best of 100
    screened candidates) and a long search, on the simulated series of section 1."""
    from cartkinetics.fit import fit_series

    _, series = simulate(n, lloq, seed)
    print(f"\n## 1b. Optimum found: default vectorised multi-start vs former lmfit 5-start "
          f"default, {n} series (objective = -2 log L [+ -2 log prior])")
    rows = {}
    for label, prior, cens in (("ML M3", None, "M3"), ("MAP M3", "population", "M3"),
                               ("ML M1", None, "M1")):
        kw = dict(outcomes=False, profile=False, prior=prior, censoring=cens)
        new, old, t_new, t_old = [], [], [], []
        for s in series:
            t0 = time.perf_counter()
            a = fit_series(s, **kw)
            t_new.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = fit_series(s, multistart="lmfit", n_starts=5, n_candidates=100, **kw)
            t_old.append(time.perf_counter() - t0)
            new.append(a.objective if a.ok else np.nan)
            old.append(b.objective if b.ok else np.nan)
        d = np.array(new) - np.array(old)
        rows[label] = {
            "series fitted by both": int(np.isfinite(d).sum()),
            "default worse by > 1e-3": int((d > 1e-3).sum()),
            "default worse by > 0.1": int((d > 0.1).sum()),
            "largest (default - former)": f"{np.nanmax(d):+.4f}",
            "default better by > 1e-3": int((d < -1e-3).sum()),
            "default better by > 1": int((d < -1).sum()),
            "median ms default / former": f"{1e3 * np.median(t_new):.1f} / "
                                          f"{1e3 * np.median(t_old):.1f}",
        }
    print(pd.DataFrame(rows).to_string())


def beta_m3_m1(n: int, lloq: float, seed: int, jobs: int, n_boot: int = 4000) -> None:
    """M3 vs M1 on beta (the slow phase) in the issue's design, ML and MAP, paired by series.

    Bias = mean and median of ln(beta estimate / the series' true beta); the difference of
    absolute biases |bias M1| - |bias M3| (> 0: M3 less biased) with a bootstrap interval
    resampling series (the four fits of a series stay together). Also by the number of
    quantified values from day 60 (how much of the slow phase is seen above the LLOQ).
    """
    P, series = simulate(n, lloq, seed)
    blq = np.array([s.blq for s in series])
    late_q = (~blq & (DAYS >= 60)).sum(axis=1)
    late_blq = (blq & (DAYS >= 60)).sum(axis=1)
    print(f"\n## 1c. M3 vs M1 on beta: {n} series, {100 * blq.mean():.1f}% BLQ; BLQ values "
          f"from day 60 on: {int(late_blq.sum())} of {int(blq.sum())}; series with >= 1 BLQ "
          f"value from day 60: {int((late_blq > 0).sum())}")
    est = {}
    for label, prior, cens in ESTIMATORS:
        # MAP fits also give the SIR posterior mean (n_boot > 0 switches SIR on)
        c = fit_cohort(series, "stein2019", censoring=cens, prior=prior, outcomes=False,
                       profile=False, n_boot=300 if prior else 0, n_jobs=jobs)
        b = [r.params.get("beta", math.nan) if r.ok else math.nan for r in c.results]
        est[label] = np.log(np.array(b) / P[:, 5])
        if prior:
            pm = [r.sir_mean.get("beta", math.nan) if r.ok else math.nan for r in c.results]
            est[label.replace("MAP", "PM")] = np.log(np.array(pm) / P[:, 5])
    rng = np.random.default_rng(seed + 7)
    idx = rng.integers(0, n, (n_boot, n))
    rows = {}
    for kind in ("ML", "MAP", "PM"):
        m3, m1 = est[f"{kind} M3"], est[f"{kind} M1"]
        ok = np.isfinite(m3) & np.isfinite(m1)
        for sub_label, sub in (("all series", ok), ("<= 1 quantified value from day 60",
                                                    ok & (late_q <= 1)),
                               (">= 2 quantified values from day 60", ok & (late_q >= 2)),
                               ("with a BLQ value from day 60", ok & (late_blq > 0))):
            for stat_name, stat in (("mean", np.mean), ("median", np.median)):
                w = np.flatnonzero(sub)
                a3, a1 = m3[w], m1[w]
                d = abs(stat(a1)) - abs(stat(a3))
                bi = idx[:, : w.size] % w.size
                bd = np.abs(stat(a1[bi], axis=1)) - np.abs(stat(a3[bi], axis=1))
                rows[(kind, sub_label, stat_name)] = {
                    "n": int(w.size),
                    "bias M3": f"{stat(a3):+.3f}",
                    "bias M1": f"{stat(a1):+.3f}",
                    "|M1| - |M3| [95% bootstrap]": f"{d:+.3f} [{np.percentile(bd, 2.5):+.3f}, "
                                                   f"{np.percentile(bd, 97.5):+.3f}]",
                    "M3 closer (share)": f"{np.mean(np.abs(a3) < np.abs(a1)):.2f}",
                }
    with pd.option_context("display.width", 250):
        print(pd.DataFrame(rows).T.to_string())
    print("bias: of ln(estimate / true beta) over series (mean or median); > 0 in the "
          "difference column: M3 less biased; interval: bootstrap over series (paired). PM: "
          "posterior mean of ln beta (SIR) with the population prior, the estimator whose mean "
          "error is zero over series drawn from the prior when the likelihood is right.")


def liu_data():
    """The Liu 2022 B-ALL CAR-T series (flow, cells/uL, four response groups) as KineticsData
    (:func:`cartkinetics.validate.liu2022.read_cart`, the one reader of the authors' files)."""
    return _liu.read_cart(LIU)


def real_data(jobs: int) -> None:
    """Section 2: Stein 2019 fits of the Liu 2022 patients; figure."""
    print("\n## 2. Real data: Liu 2022, 32 r/r B-ALL patients, Stein 2019 closed form (M3)")
    if not LIU.is_dir():
        print(f"skipped: {LIU} absent")
        return
    data = liu_data()
    series = data.series()
    tic = time.perf_counter()
    c = fit_cohort(series, "stein2019", n_jobs=jobs, n_boot=300, prior=None)
    wall = time.perf_counter() - tic
    rows = []
    inside = 0
    for s, r in zip(series, c.results, strict=True):
        q = ~s.blq
        i = int(np.argmax(np.where(q, s.value, -np.inf)))
        t_obs = s.day[i]
        lo = s.day[i - 1] if i > 0 else 0.0
        hi = s.day[i + 1] if i + 1 < s.day.size else math.inf
        t_fit = r.params.get("tmax", math.nan)
        ins = bool(lo <= t_fit <= hi)
        inside += ins
        rows.append({"patient": r.patient, "n": r.n_obs, "BLQ": r.n_blq, "status": r.status,
                     "obs Tmax": t_obs, "interval": f"[{lo:g}, {hi:g}]",
                     "fit Tmax": round(t_fit, 2), "inside": ins,
                     "fit Cmax": round(r.params.get("cmax", math.nan), 1),
                     "obs Cmax": s.value[i], "res SD": round(r.residual_sd, 3),
                     "note": r.message.split("; ", 1)[1][:70] if "; " in r.message else ""})
    tab = pd.DataFrame(rows)
    with pd.option_context("display.width", 220, "display.max_colwidth", 70):
        print(tab.to_string(index=False))
    n_ok = int(tab["status"].isin(["converged", "converged_singular"]).sum())
    print(f"\nseries: {len(series)}; converged: {n_ok}/{len(series)} "
          f"({(tab['status'] == 'converged').sum()} with every SE, the rest with a parameter at "
          f"a bound or not identifiable); fitted Tmax inside the sampling interval around the "
          f"observed Tmax: {inside}/{len(series)}; wall time {wall:.1f} s")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the grid's Axes (one per series); the figure is theirs
    fig = np.ravel(c.plot(ncols=6))[0].figure
    fig.suptitle("Liu 2022 CAR-T series (32 patients) fitted with Stein 2019 (M3; open = BLQ)",
                 y=1.0)
    FIG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"figure: {FIG}")


def bad_input() -> None:
    """Section 3: short, all-BLQ and constant series give a status, not an exception."""
    print("\n## 3. Bad input")
    d = np.array([1.0, 7, 14, 28, 60, 90])
    cases = [
        Series("too-few", 1, "qpcr", "copies/ug", d[:1], np.array([100.0]),
                  np.full(1, 50.0), np.zeros(1, bool)),
        Series("all-blq", 1, "qpcr", "copies/ug", d, np.full(6, 50.0), np.full(6, 50.0),
                  np.ones(6, bool)),
        Series("constant", 1, "qpcr", "copies/ug", d, np.full(6, 300.0), np.full(6, 50.0),
                  np.zeros(6, bool)),
    ]
    c = fit_cohort(cases, "stein2019", prior=None)
    print(c.table[["patient", "status", "message"]].to_string(index=False))


def mechanistic(jobs: int) -> None:
    """Section 4: the Liu 2022 mechanistic model on the CR patients (CAR-T + leukaemia)."""
    print("\n## 4. Liu 2022 mechanistic model, CR patients: CAR-T + leukaemia in one likelihood")
    if not LIU.is_dir():
        print(f"skipped: {LIU} absent")
        return
    from cartkinetics.data import read_kinetics
    from cartkinetics.fit.multi_output import fit_outputs

    f = LIU / "Data_CR.csv"
    kw = dict(mapping={"TIME": "time", "DV": "y"}, blq_values={0.2: 0.2}, patient_prefix="CR-")
    # CAR-T levels are flow counts (cells/uL), read as validate.liu2022 reads them
    car = {s.patient: s for s in read_kinetics(f, mapping=_liu.MAPPING,
                                               patient_prefix="CR-").series()}
    leu = {s.patient: s for s in read_kinetics(f, filter={"y_ID": 2}, assay="leukaemia",
                                               assays={"leukaemia": "cells/uL"}, **kw).series()}
    base = _liu.baseline(LIU)  # nB0: the day-0 leukaemia count, the authors' Reg
    rows, fits = [], []
    tic = time.perf_counter()
    for pid in sorted(car, key=lambda x: int(x.split("-")[1])):
        r = fit_outputs({"car_t": car[pid], "leukaemia": leu[pid]}, "liu2022", free=LIU_FREE,
                        fixed={"nB0": base[pid]})
        fits.append(r)
        rows.append({"patient": pid, "status": r.status,
                     "n CAR-T/leuk": f"{r.n_obs['car_t']}/{r.n_obs['leukaemia']}",
                     **{k: round(r.params.get(k, math.nan), 4) for k in LIU_FREE},
                     "sigma": round(r.sigma, 3),
                     "-2LL CAR-T": round(r.neg2ll_by_output.get("car_t", math.nan), 2),
                     "-2LL leuk": round(r.neg2ll_by_output.get("leukaemia", math.nan), 2),
                     "s": round(r.elapsed, 2)})
    tab = pd.DataFrame(rows)
    print(tab.to_string(index=False))
    n_ok = int(tab["status"].isin(["converged", "converged_singular"]).sum())
    print(f"converged: {n_ok}/{len(tab)} CR patients; wall {time.perf_counter() - tic:.1f} s")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(fits)
    fig, axes = plt.subplots(n // 2 + n % 2, 4, figsize=(13, 2.2 * (n // 2 + n % 2)),
                             squeeze=False)
    for k, r in enumerate(fits):
        r.plot(axes=axes[k // 2, 2 * (k % 2): 2 * (k % 2) + 2])
    fig.suptitle("Liu 2022 model, CR patients: CAR-T (left) and CD19+ leukaemia (right) "
                 "fitted together (open = BLQ)", y=1.0)
    fig.tight_layout()
    fig.savefig(FIG_MECH, dpi=80, bbox_inches="tight")
    plt.close(fig)
    print(f"figure: {FIG_MECH}")


def main(argv: list[str] | None = None) -> None:
    """The command line of benchmarks/validate_fit.py."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--lloq", type=float, default=75.0)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--skip-recovery", action="store_true")
    ap.add_argument("--skip-agreement", action="store_true")
    ap.add_argument("--skip-beta", action="store_true")
    ap.add_argument("--n-beta", type=int, default=600)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-mechanistic", action="store_true")
    a = ap.parse_args(argv)
    if not a.skip_agreement:
        optimum_agreement(a.n, a.lloq, a.seed)
    if not a.skip_beta:
        beta_m3_m1(a.n_beta, a.lloq, a.seed, a.jobs)
    if not a.skip_recovery:
        recovery(a.n, a.jobs, a.lloq, a.seed)
    if not a.skip_real:
        real_data(a.jobs)
    bad_input()
    if not a.skip_mechanistic:
        mechanistic(a.jobs)


if __name__ == "__main__":
    main()
