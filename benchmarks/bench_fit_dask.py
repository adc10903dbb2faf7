"""Cohort fits and an SBC study on a 2-worker Dask cluster (issue #21 benchmark).

A. ``--series`` simulated Stein 2019 series (``cartkinetics.validate.coverage.simulate``),
   fitted with the ``cartkinetics fit`` defaults for Stein 2019 (MAP with the population
   prior, SIR intervals from ``--n-boot`` draws): in process with a 2-process pool (what
   ``--jobs 2`` did), then on a new local Dask cluster of ``--workers`` processes with the
   table streamed to Parquet partitions. Throughput in series/s (wall, cluster start-up
   included and also shown alone); the two tables are checked to be identical.
B. An SBC study of the hierarchical Stein 2019 fit (``--sbc-replicates`` replicates) on the
   same number of workers: wall time (each worker compiles the nutpie model once).

Run:  PYTHONPATH=. python benchmarks/bench_fit_dask.py [--series 10000] [--sbc-replicates 200]
      [--workers 2] [--skip-fit] [--skip-sbc]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def bench_fit(n: int, workers: int, n_boot: int) -> None:
    import pandas as pd

    from cartkinetics._dask import open_client
    from cartkinetics.fit import fit_cohort
    from cartkinetics.validate.coverage import simulate

    _, series = simulate(n, 75.0, 2026)
    kw = dict(prior="population", n_boot=n_boot)
    print(f"\n## A. {n} Stein 2019 series, MAP + SIR ({n_boot} draws), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
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
        same = local.table.equals(dist.table)
        if not same:
            pd.testing.assert_frame_equal(local.table, dist.table, rtol=1e-12)
    print(f"Dask, {workers} workers, streamed to Parquet:   {t_dask:8.1f} s  "
          f"{n / t_dask:6.2f} series/s  (cluster start-up alone {start:.1f} s)")
    print(f"Dask / process pool throughput: {t_local / t_dask:.2f}x; tables identical: "
          f"{'bitwise' if same else 'to 1e-12'}; statuses {dist.counts()}")


def bench_sbc(reps: int, workers: int, patients: int, draws: int, tune: int) -> None:
    from cartkinetics.validate import SBCStudy, run_study

    print(f"\n## B. SBC, {reps} replicates ({patients} patients x 2 infusions, {draws} draws + "
          f"{tune} tuning per chain, 2 chains) on {workers} Dask workers, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    study = SBCStudy(patients=patients, draws=draws, tune=tune)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_study(study, reps, seed=2026, out=tmp, workers=workers, partition_size=5)
        wall = time.perf_counter() - t0
    ok = int((res.table["status"] == "ok").sum())
    for r in res.table[res.table["status"] != "ok"].itertuples(index=False):
        print(f"replicate {r.replicate} failed: {r.message}")
    worst = res.summary_table.sort_values("p_value").iloc[0]
    print(f"wall {wall:.0f} s ({wall / reps:.1f} s per replicate); replicates ok {ok}/{reps}; "
          f"smallest chi-square p {worst['p_value']:.3f} ({worst['quantity']}); ECDF inside the "
          f"simultaneous band for {int(res.summary_table['ecdf_inside_band'].sum())}/"
          f"{len(res.summary_table)} quantities")


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
    a = ap.parse_args()
    if not a.skip_fit:
        bench_fit(a.series, a.workers, a.n_boot)
    if not a.skip_sbc:
        bench_sbc(a.sbc_replicates, a.workers, a.sbc_patients, a.sbc_draws, a.sbc_tune)


if __name__ == "__main__":
    main()
