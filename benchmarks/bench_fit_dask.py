"""Cohort fits and an SBC study on a 2-worker Dask cluster (issue #21 benchmark).

A. ``--series`` simulated Stein 2019 series (``cartkinetics.validate.coverage.simulate``),
   fitted with the ``cartkinetics fit`` defaults for Stein 2019 (MAP with the population
   prior, SIR intervals from ``--n-boot`` draws): in process with a 2-process pool (what
   ``--jobs 2`` did), then on a new local Dask cluster of ``--workers`` processes with the
   table streamed to Parquet partitions. Throughput in series/s (wall, cluster start-up
   included and also shown alone); the two tables are checked to be identical.
B. An SBC study of the hierarchical Stein 2019 fit (``--sbc-replicates`` replicates, the
   ``cartkinetics validate sbc`` design) on the same number of workers: wall time (each worker
   compiles the nutpie model once), the calibration tests and the study's two figures.

With ``--write`` the run is the cluster record: ``benchmarks/CLUSTER.md`` and its JSON twin,
headed like RESULTS.md (commit, machine, load, versions), the SBC figures in docs/figures, and
docs/benchmarks.md regenerated (RESULTS.md, then this record). About 40 minutes on 2 cores.

Run:  python benchmarks/bench_fit_dask.py [--write] [--series 10000] [--sbc-replicates 200]
      [--workers 2] [--skip-fit] [--skip-sbc]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402

COMMAND = "python benchmarks/bench_fit_dask.py --write"


def bench_fit(n: int, workers: int, n_boot: int) -> dict[str, Any]:
    """Fit n simulated series in a process pool and on a local Dask cluster; timings."""
    import pandas as pd

    from cartkinetics._dask import open_client
    from cartkinetics.fit import fit_cohort
    from cartkinetics.validate.coverage import simulate

    _, series = simulate(n, 75.0, 2026)
    kw = dict(prior="population", n_boot=n_boot)
    load = os.getloadavg()[0]
    print(f"\n## A. {n} Stein 2019 series, MAP + SIR ({n_boot} draws), {os.cpu_count()} cores, "
          f"load average {load:.1f}", flush=True)
    t0 = time.perf_counter()
    with open_client(workers=workers):
        pass
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = fit_cohort(series, "stein2019", n_jobs=workers, **kw)
    t_local = time.perf_counter() - t0
    print(f"in process, {workers}-process pool (--jobs {workers}): {t_local:8.1f} s  "
          f"{n / t_local:6.2f} series/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        dist = fit_cohort(series, "stein2019", workers=workers, out=tmp, **kw)
        t_dask = time.perf_counter() - t0
        parts = len(list(Path(tmp).rglob("*.parquet")))
        same = local.table.equals(dist.table)
        if not same:
            pd.testing.assert_frame_equal(local.table, dist.table, rtol=1e-12)
    counts = dist.counts()
    print(f"Dask, {workers} workers, streamed to Parquet:   {t_dask:8.1f} s  "
          f"{n / t_dask:6.2f} series/s  (cluster start-up alone {start:.1f} s)")
    print(f"Dask / process pool throughput: {t_local / t_dask:.2f}x; tables identical: "
          f"{'bitwise' if same else 'to 1e-12'}; statuses {counts}", flush=True)
    return {"series": n, "n_boot": n_boot, "workers": workers, "load_at_start": load,
            "pool_seconds": t_local, "dask_seconds": t_dask, "cluster_start_seconds": start,
            "parquet_partitions": parts, "identical": "bitwise" if same else "to 1e-12",
            "statuses": counts}


def bench_sbc(reps: int, workers: int, patients: int, draws: int, tune: int,
              figures: Path | None = None) -> dict[str, Any]:
    """An SBC study of ``reps`` replicates on ``workers`` local Dask workers; timings, tests."""
    from cartkinetics.validate import SBCStudy, run_study

    load = os.getloadavg()[0]
    print(f"\n## B. SBC, {reps} replicates ({patients} patients x 2 infusions, {draws} draws + "
          f"{tune} tuning per chain, 2 chains) on {workers} Dask workers, load average "
          f"{load:.1f}", flush=True)
    study = SBCStudy(patients=patients, draws=draws, tune=tune)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_study(study, reps, seed=2026, out=tmp, workers=workers, partition_size=5)
        wall = time.perf_counter() - t0
        saved = []
        if figures is not None:
            figures.mkdir(parents=True, exist_ok=True)
            for p in res.figures:
                dest = figures / f"cluster_{Path(p).name}"
                shutil.copyfile(p, dest)
                saved.append(dest.name)
    ok = int((res.table["status"] == "ok").sum())
    failed = [f"replicate {r.replicate}: {r.message}"
              for r in res.table[res.table["status"] != "ok"].itertuples(index=False)]
    for line in failed:
        print(f"failed {line}")
    tests = res.summary_table.sort_values("p_value")
    worst = tests.iloc[0]
    inside = int(tests["ecdf_inside_band"].sum())
    print(f"wall {wall:.0f} s ({wall / reps:.1f} s per replicate); replicates ok {ok}/{reps}; "
          f"smallest chi-square p {worst['p_value']:.3f} ({worst['quantity']}); ECDF inside the "
          f"simultaneous band for {inside}/{len(tests)} quantities", flush=True)
    return {"replicates": reps, "workers": workers, "load_at_start": load, "design": study.cfg,
            "seconds": wall, "ok": ok, "failed": failed, "figures": saved,
            "tests": tests[["quantity", "chi2", "p_value", "ecdf_inside_band"]]
            .to_dict(orient="records")}


def to_markdown(doc: dict[str, Any]) -> str:
    """The cluster record (CLUSTER.md) of one run."""
    from cartkinetics.validate.sbc import one_line

    lines = [record.header_markdown(doc["header"], title="Cluster benchmark results",
                                    command=COMMAND), ""]
    fit = doc.get("fit")
    if fit:
        n, w = fit["series"], fit["workers"]
        lines += [
            f"## Cohort fits on Dask: {n:,} Stein 2019 series", "",
            f"Simulated Stein 2019 series (`cartkinetics.validate.coverage.simulate`, seed 2026), "
            f"fitted with the `cartkinetics fit --model stein2019` defaults (MAP with the "
            f"published population as prior, SIR intervals from {fit['n_boot']} draws). The "
            f"same series in the same run: in process with a {w}-process pool (what `--jobs {w}`"
            f" did), then on a new local Dask cluster of {w} worker processes (`--workers {w}`)"
            f" streaming the table to Parquet. Wall time, load average "
            f"{fit['load_at_start']:.1f} at start.", "",
            "| route | wall (s) | series / s | relative throughput |",
            "|---|---:|---:|---:|",
            f"| in process, {w}-process pool | {fit['pool_seconds']:.1f} | "
            f"{n / fit['pool_seconds']:.2f} | 1.00 |",
            f"| Dask, {w} local workers, streamed to {fit['parquet_partitions']} Parquet "
            f"partitions | {fit['dask_seconds']:.1f} | {n / fit['dask_seconds']:.2f} | "
            f"{fit['pool_seconds'] / fit['dask_seconds']:.2f} |", "",
            f"The Dask time includes starting the cluster ({fit['cluster_start_seconds']:.1f} s "
            f"alone). Tables identical: {fit['identical']}. Fit statuses: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(fit["statuses"].items())) + ".", ""]
    sbc = doc.get("sbc")
    if sbc:
        d = sbc["design"]
        lines += [
            f"## Simulation-based calibration on Dask: {sbc['replicates']} replicates", "",
            f"`cartkinetics validate sbc --replicates {sbc['replicates']} --workers "
            f"{sbc['workers']}` (design: {d['patients']} patients x 2 infusions, "
            f"{d['chains']} chains x {d['draws']} draws + {d['tune']} tuning, ranks among "
            f"{d['thin_to']} thinned draws), seed 2026, load average {sbc['load_at_start']:.1f}"
            " at start.", "",
            f"**Wall time {sbc['seconds']:.0f} s** ({sbc['seconds'] / sbc['replicates']:.1f} s "
            f"per replicate, each worker compiling the model once); replicates ok "
            f"{sbc['ok']}/{sbc['replicates']}.", "",
            "| quantity | chi-square | p | ECDF inside the 95% simultaneous band |",
            "|---|---:|---:|---|"]
        lines += [f"| {t['quantity']} | {t['chi2']:.1f} | {t['p_value']:.3f} | "
                  f"{'yes' if t['ecdf_inside_band'] else 'no'} |" for t in sbc["tests"]]
        if sbc["failed"]:
            lines += ["", "Failed replicates (left out of the ranks):", ""]
            lines += [f"- {one_line(x)}" for x in sbc["failed"]]
        lines += [""]
        lines += [f"![SBC {name}]({record.FIGURE_LINK_RESULTS}{name})" for name in sbc["figures"]]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sbc-replicates", type=int, default=200)
    ap.add_argument("--sbc-patients", type=int, default=8)
    ap.add_argument("--sbc-draws", type=int, default=250)
    ap.add_argument("--sbc-tune", type=int, default=400)
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--skip-sbc", action="store_true")
    ap.add_argument("--write", action="store_true",
                    help="write benchmarks/CLUSTER.md, CLUSTER.json and the docs page")
    ap.add_argument("--render", metavar="JSON",
                    help="only render CLUSTER.md (and the docs page) again from a CLUSTER.json")
    a = ap.parse_args()
    if a.render:
        import json

        doc = json.loads(Path(a.render).read_text(encoding="utf-8"))
        for path in record.write_cluster(to_markdown(doc), doc):
            print(f"wrote {path}")
        return
    if a.write and (a.skip_fit or a.skip_sbc):
        ap.error("--write records a whole run: drop --skip-fit / --skip-sbc")
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"header": record.start_header(quick=False)}
    doc["header"]["run"] = "cluster (fits at scale)"
    if not a.skip_fit:
        doc["fit"] = bench_fit(a.series, a.workers, a.n_boot)
    if not a.skip_sbc:
        doc["sbc"] = bench_sbc(a.sbc_replicates, a.workers, a.sbc_patients, a.sbc_draws,
                               a.sbc_tune, figures=record.FIGURES if a.write else None)
    record.finish_header(doc["header"], time.perf_counter() - t0)
    if a.write:
        for path in record.write_cluster(to_markdown(doc), doc):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
