"""Does the default hierarchical Stein 2019 fit converge? Seeds x simulated cohorts.

For each cohort kind (below) and each seed s = 1..N, a cohort is simulated from Stein 2019
with a known second-infusion effect (``cartkinetics.testing.simulate_stein_cohort``,
the model library's closed form, data seed s) and fitted with ``fit_population``'s defaults
(4 chains x 1000 draws after 1000 warm-up, nutpie; sampler seed s). Reported per run: wall
time (compile, sampling), max R-hat, min bulk and tail ESS, divergences, whether every
threshold is met (R-hat <= 1.01, ESS >= 400, 0 divergences: ``diagnostics.ok``), the worst
quantities, whether the 95% CrI of the typical Cmax ratio covers the truth, and min bulk
ESS per second of sampling. For the first ``--pymc-seeds`` seeds of each kind the same PyMC
model is also sampled by PyMC's own NUTS (same settings) in the same run, for ESS/s.

Cohort kinds (the example cohort's kind: 5-40 patients, 1-2 infusions, 20-40% BLQ):

* ``example7``: 7 patients x 2 infusions, the bundled example's schedule (days 1, 4, 7,
  10, 14, 21, 28, 60, 90 after each infusion), LLOQ 300 copies/ug (BLQ 25-36%);
* ``trial20``: 20 patients x 2 infusions, the trial-like schedule to day 365, LLOQ 150
  (the cohort of issue #18; BLQ 24-40%);
* ``single40``: 40 patients x 1 infusion, trial-like schedule, LLOQ 60 (BLQ 21-31%).

``--until-converged BUDGET`` measures the CLI's default mode instead
(``fit_until_converged``: the same first round, then restarts or longer rounds within BUDGET
seconds); each record then also holds the first round's diagnostics (``first_round``), so one
run of the benchmark gives both shares. The PyMC comparison is always one run of each sampler
(nutpie, then PyMC NUTS) with the same settings on the same data, back to back.

Every run is appended to ``--out`` (JSON lines) as soon as it ends, so a partial run keeps
its results and ``--resume`` skips the runs already there. The acceptance run::

    PYTHONPATH=. python benchmarks/bench_population_convergence.py --seeds 20 \
        --until-converged 900 --out benchmarks/results/population_convergence.jsonl

``--summary FILE`` prints the table of a results file without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402

EXAMPLE_DAYS = (1.0, 4.0, 7.0, 10.0, 14.0, 21.0, 28.0, 60.0, 90.0)
KINDS: dict[str, dict[str, Any]] = {
    "example7": {"n_patients": 7, "infusions": 2, "days": EXAMPLE_DAYS, "lloq": 300.0},
    "trial20": {"n_patients": 20, "infusions": 2, "lloq": 150.0},
    "single40": {"n_patients": 40, "infusions": 1, "lloq": 60.0},
}
TRUE_CMAX_RATIO = 2.0  # simulate_stein_cohort's default typical second/first Cmax ratio


def one_run(kind: str, seed: int, sampler: str, fit_kw: dict[str, Any],
            until_converged: float | None = None) -> dict[str, Any]:
    """Simulate cohort ``kind`` with data seed ``seed``, fit it, return the run's record
    (``until_converged``: the time budget of ``fit_until_converged``, None: one run)."""
    import warnings

    from cartkinetics.data import read_kinetics
    from cartkinetics.fit.convergence import MAX_ROUNDS, fit_until_converged
    from cartkinetics.fit.population import fit_population
    from cartkinetics.testing import simulate_stein_cohort

    df, truth = simulate_stein_cohort(seed=seed, cmax_ratio=TRUE_CMAX_RATIO, **KINDS[kind])
    data = read_kinetics(df)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    if until_converged is None:
        fit = fit_population(data, "stein2019", seed=seed, sampler=sampler, progress=False,
                             warn=False, **fit_kw)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_until_converged(data, "stein2019", seed=seed, sampler=sampler,
                                      progress=False, time_budget=until_converged, **fit_kw)
    wall = time.perf_counter() - t0
    diag = fit.diagnostics(warn=False)
    s = fit.info["sampling"]
    rec = {
        "kind": kind, "seed": seed, "sampler": s["sampler"],
        "n_patients": KINDS[kind]["n_patients"], "infusions": KINDS[kind]["infusions"],
        "blq_fraction": truth["blq_fraction"], "settings": fit.info["settings"],
        "init": s.get("init"),
        "wall_seconds": wall, "compile_seconds": s.get("compile_seconds"),
        "sample_seconds": s.get("sample_seconds"),
        "max_rhat": diag["max_rhat"], "min_ess_bulk": diag["min_ess_bulk"],
        "min_ess_tail": diag["min_ess_tail"], "divergences": diag["divergences"],
        "ok": diag["ok"], "problems": diag["problems"], "worst": diag["worst"][:3],
        "stuck_chains": diag["stuck_chains"],
        "patients_disagreeing": sorted({p["patient"] for p in diag["patients_disagreeing"]}),
        "ess_bulk_per_second": diag["min_ess_bulk"] / s["sample_seconds"],
        "mode": "one run" if until_converged is None else f"until converged ({until_converged} s)",
        # what the run is a record of: the code and how busy the machine was (a shared
        # machine stretches wall times, and the time budget with them)
        # (the records this script appends under benchmarks/results/ do not count as changes)
        "commit": record.short_commit("benchmarks/results"),
        "load_start": load_start, "load_end": os.getloadavg()[0],
    }
    conv = fit.info.get("convergence")
    if conv:
        rec["rounds"] = [r["action"] for r in conv["rounds"]]
        # each round's length and time (chains, warm-up, draws, seconds): what a budget buys
        rec["round_lengths"] = [[r["chains"], r["tune"], r["draws"], round(r["seconds"], 1)]
                                for r in conv["rounds"]]
        rec["stopped"] = conv["stopped"]
        rec["max_rounds"] = MAX_ROUNDS
        first = conv["rounds"][0]["diagnostics"]
        rec["first_round"] = {k: first[k] for k in ("ok", "max_rhat", "min_ess_bulk",
                                                    "min_ess_tail", "divergences")}
    eff = fit.infusion_effect()
    if eff:
        c = eff["cmax_ratio"]
        rec["cmax_ratio"] = [c["median"], c["ci_low"], c["ci_high"]]
        rec["cmax_ratio_covered"] = bool(c["ci_low"] <= TRUE_CMAX_RATIO <= c["ci_high"])
    return rec


def summarise(records: list[dict[str, Any]]) -> str:
    """Per kind and sampler: runs, share meeting every threshold, median wall time, ESS/s."""
    lines = [f"{'kind':<10} {'sampler':<7} {'runs':>4} {'ok':>9} {'median wall s':>13} "
             f"{'median ESS/s':>12} {'max R-hat':>9} {'min bulk':>8} {'min tail':>8} "
             f"{'div':>4}"]
    keys = sorted({(r["kind"], r["sampler"]) for r in records})
    for kind, sampler in keys:
        rs = [r for r in records if r["kind"] == kind and r["sampler"] == sampler]
        ok = sum(r["ok"] for r in rs)
        lines.append(
            f"{kind:<10} {sampler:<7} {len(rs):>4} {ok:>4}/{len(rs):<4} "
            f"{np.median([r['wall_seconds'] for r in rs]):>13.1f} "
            f"{np.median([r['ess_bulk_per_second'] for r in rs]):>12.2f} "
            f"{max(r['max_rhat'] for r in rs):>9.3f} "
            f"{min(r['min_ess_bulk'] for r in rs):>8.0f} "
            f"{min(r['min_ess_tail'] for r in rs):>8.0f} "
            f"{sum(r['divergences'] for r in rs):>4}"
        )
    uc = [r for r in records if "first_round" in r]
    if uc:
        lines.append(f"until converged: first round ok in {sum(r['first_round']['ok'] for r in uc)}"
                     f"/{len(uc)}, finally ok in {sum(r['ok'] for r in uc)}/{len(uc)}; rounds "
                     + ", ".join(str(len(r["rounds"])) for r in uc))
    for r in records:
        if not r["ok"]:
            worst = ", ".join(w["quantity"] for w in r["worst"])
            lines.append(f"  not met: {r['kind']} seed {r['seed']} {r['sampler']}: "
                         f"{'; '.join(r['problems'])}; worst {worst}")
    return "\n".join(lines)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The runs of a JSON-lines results file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def _load(r: dict[str, Any]) -> str:
    if "load_start" in r:
        return f"{r['load_start']:.1f}-{r['load_end']:.1f}"
    return r.get("load_note", "?")  # records written before the load was recorded


def markdown_table(records: list[dict[str, Any]]) -> str:
    """One row per run (kind, then seed; the table of docs/population.md)."""
    head = ("| cohort | seed | mode | BLQ | first round ok | final ok | rounds (stopped) | "
            "max R-hat | min bulk / tail ESS | divergences | wall s | load | commit | "
            "Cmax ratio CrI covers 2.0 |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    order = {k: i for i, k in enumerate(KINDS)}
    modes = {"nutpie-uc": "until converged", "nutpie": "one run, nutpie",
             "pymc": "one run, PyMC NUTS"}
    for r in sorted(records, key=lambda r: (order.get(r["kind"], 99), r["seed"],
                                            list(modes).index(r["sampler"]))):
        uc = "first_round" in r
        first = r["first_round"]["ok"] if uc else r["ok"]
        rounds = f"{len(r['rounds'])} ({r['stopped']})" if uc else "1"
        lines.append(
            f"| {r['kind']} | {r['seed']} | {modes.get(r['sampler'], r['sampler'])} | "
            f"{r['blq_fraction']:.0%} | {'yes' if first else 'no'} | "
            f"{'yes' if r['ok'] else '**no**'} | {rounds} | {r['max_rhat']:.3f} | "
            f"{r['min_ess_bulk']:.0f} / {r['min_ess_tail']:.0f} | {r['divergences']} | "
            f"{r['wall_seconds']:.0f} | {_load(r)} | {r.get('commit', '-')} | "
            f"{r.get('cmax_ratio_covered', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20, help="seeds per cohort kind (20)")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--kinds", default=",".join(KINDS), help="cohort kinds (all three)")
    p.add_argument("--pymc-seeds", type=int, default=1,
                   help="seeds per kind also sampled by PyMC's NUTS (1)")
    p.add_argument("--draws", type=int, default=None, help="override the default draws")
    p.add_argument("--tune", type=int, default=None, help="override the default warm-up")
    p.add_argument("--until-converged", type=float, default=None, metavar="BUDGET",
                   help="measure fit_until_converged with this time budget (s) instead of "
                   "one run (the CLI's default mode)")
    p.add_argument("--out", default="population_convergence.jsonl", help="JSON-lines file")
    p.add_argument("--resume", action="store_true", help="skip runs already in --out")
    p.add_argument("--summary", metavar="FILE", help="only print the table of FILE")
    p.add_argument("--markdown", metavar="FILE",
                   help="only print the per-run table of FILE (docs/population.md)")
    a = p.parse_args(argv)
    if a.markdown:
        print(markdown_table(read_records(a.markdown)))
        return 0
    if a.summary:
        print(summarise(read_records(a.summary)))
        return 0
    fit_kw = {k: v for k, v in (("draws", a.draws), ("tune", a.tune)) if v is not None}
    out = Path(a.out)
    done = set()
    if a.resume and out.exists():
        # nutpie-uc: until converged
        done = {(r["kind"], r["seed"], r["sampler"]) for r in read_records(out)}
    kinds = [k for k in a.kinds.split(",") if k]
    for seed in range(a.first_seed, a.first_seed + a.seeds):  # seeds outer: every kind early
        for kind in kinds:
            # the ESS/s comparison: one run of each sampler, back to back, same model and data
            runs = [("nutpie", a.until_converged)]
            if seed - a.first_seed < a.pymc_seeds:
                if a.until_converged is not None:
                    runs.append(("nutpie", None))
                runs.append(("pymc", None))
            for sampler, budget in runs:
                tag = sampler if budget is None or sampler != "nutpie" else "nutpie-uc"
                if (kind, seed, tag) in done:
                    continue
                rec = one_run(kind, seed, sampler, fit_kw, budget)
                rec["sampler"] = tag if rec["sampler"] == sampler else rec["sampler"]
                with out.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(f"{kind} seed {seed} {rec['sampler']}: ok={rec['ok']} wall "
                      f"{rec['wall_seconds']:.0f} s, R-hat {rec['max_rhat']:.3f}, ESS "
                      f"{rec['min_ess_bulk']:.0f}/{rec['min_ess_tail']:.0f}, div "
                      f"{rec['divergences']}", flush=True)
    print(summarise(read_records(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
