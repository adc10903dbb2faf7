"""Benchmark of ``cartkinetics.simulate``: virtual patients per second, scaling, memory, Dask.

Run::

    PYTHONPATH=. python benchmarks/bench_simulate.py            # full (a few minutes)
    PYTHONPATH=. python benchmarks/bench_simulate.py --quick    # ~1 minute

Prints, in one run on this machine:

1. Stein 2019 (closed form) in process, 3 dose levels, n = 1e3 ... 1e6: wall and CPU time,
   virtual patients x scenarios per second, and the time per patient relative to the largest
   run (1.0 = linear scaling). Run with ``dose_exponent=0.5`` so the 3 dose levels are 3
   distinct computations, and once as published (``dose_exponent=0``: the dose levels give
   identical curves and are computed once).
2. The peer in the same run: the model's own vectorised ``solve_batch`` (NumPy, one shared
   grid) followed by ``batch_curve_outcomes``, i.e. what one would write without this module.
3. A mechanistic ODE model (Kimmel 2021, numba batch solver) in process; the matched pair:
   the library's batch solve on one thread against scipy ``solve_ivp`` (LSODA) patient by
   patient, the same patients and tolerances, measured, with their errors.
4. The same on a 2-worker dask LocalCluster (processes; startup reported apart).
5. Peak resident memory of a 1e6 x 3 Stein run, in a fresh subprocess (``ru_maxrss``).

Targets (issue #8): 1e6 Stein x 3 doses < 10 s; 1e5 mechanistic < 60 s on 2 cores;
linear scaling 1e3 -> 1e6; peak memory for 1e6 x 3 < 2 GB. The machine may be shared:
the load average is printed, and CPU seconds / cores is the time on idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOSES = [1e6, 3.5e6, 5e6]
KIMMEL_OMEGA = {"rho_C": 0.1, "b": 0.1, "gamma_B": 0.1}  # illustrative: none published


def _load() -> str:
    try:
        return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def stein_scaling(sizes: list[int], exponent: float) -> list[dict]:
    from cartkinetics.simulate import scenario_grid, simulate

    grid = scenario_grid(dose_per_kg=DOSES)
    simulate("stein2019", n=100, scenarios=grid, seed=0, dose_exponent=exponent)  # warm-up
    rows = []
    for n in sizes:
        res, wall, cpu = timed(lambda n=n: simulate("stein2019", n=n, scenarios=grid, seed=1,
                                                    dose_exponent=exponent, progress=False))
        assert (res.outcomes["status"] == 0).mean() > 0.999
        rows.append({"n": n, "wall": wall, "cpu": cpu, "rate": n * len(grid) / wall})
        del res
    ref = rows[-1]["wall"] / rows[-1]["n"]
    ref_cpu = rows[-1]["cpu"] / rows[-1]["n"]
    for r in rows:
        r["per_patient_vs_largest"] = (r["wall"] / r["n"]) / ref
        r["cpu_us"] = r["cpu"] / (r["n"] * len(grid)) * 1e6
        r["cpu_vs_largest"] = (r["cpu"] / r["n"]) / ref_cpu
    return rows


def stein_peer(n: int) -> dict:
    """Model's vectorised solve_batch on one shared grid + batch_curve_outcomes, 3 doses."""
    from cartkinetics import models
    from cartkinetics.outcomes import batch_curve_outcomes
    from cartkinetics.simulate import ModelPopulation, default_grid

    m = models.get("stein2019")
    pop = ModelPopulation("stein2019")
    t = default_grid([0.0])

    def run():
        rng = np.random.default_rng(1)
        for start in range(0, n, 20_000):
            P, _ = pop.sample(rng, min(20_000, n - start), m)
            for _ in DOSES:
                C = m.solve_batch(t, P).observed["transgene"]
                batch_curve_outcomes(t, C, 50.0)

    _, wall, cpu = timed(run)
    return {"n": n, "wall": wall, "cpu": cpu, "rate": n * len(DOSES) / wall}


def kimmel_inprocess(sizes: list[int]) -> list[dict]:
    from cartkinetics.simulate import ModelPopulation, Scenario, simulate

    pop = ModelPopulation("kimmel2021", omega=KIMMEL_OMEGA)
    sc = [Scenario(dose=1.8e8)]
    simulate("kimmel2021", n=50, population=pop, scenarios=sc, seed=0)  # warm-up / compile
    rows = []
    for n in sizes:
        res, wall, cpu = timed(lambda n=n: simulate("kimmel2021", n=n, population=pop,
                                                    scenarios=sc, seed=1, progress=False))
        rows.append({"n": n, "wall": wall, "cpu": cpu, "rate": n / wall,
                     "failed": int((res.outcomes["status"] != 0).sum())})
    return rows


def kimmel_matched(n: int) -> dict:
    """The matched pair: the same n Kimmel 2021 patients, the same output grid, rtol 1e-6 and
    atol 1e-10, one thread each: the library's batch solve (numba, one thread) against scipy
    solve_ivp (LSODA) patient by patient, CPU time; the achieved error of each against scipy
    Radau at rtol 1e-11 on 10 of the patients (median over patients of the largest
    |c - c_ref| / (|c_ref| + 1e-6 max |c_ref|) of the blood CAR-T curve)."""
    import numba

    from cartkinetics import models
    from cartkinetics.simulate import ModelPopulation, default_grid

    m = models.get("kimmel2021")
    pop = ModelPopulation("kimmel2021", omega=KIMMEL_OMEGA)
    P, _ = pop.sample(np.random.default_rng(1), n, m)
    t = default_grid([0.0])
    obs = "car_t_blood"
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        m.solve_batch(t, P[:2], dose=1.8e8)  # compiled / loaded before timing
        c0 = time.process_time()
        ours = m.solve_batch(t, P, dose=1.8e8, rtol=1e-6, atol=1e-10).observed[obs]
        cpu_ours = time.process_time() - c0
    finally:
        numba.set_num_threads(threads)
    c0 = time.process_time()
    peer = np.array([m.solve(t, P[i], dose=1.8e8, method="scipy-lsoda", rtol=1e-6,
                             atol=1e-10).observed[obs] for i in range(n)])
    cpu_peer = time.process_time() - c0
    k = min(10, n)
    ref = np.array([m.solve(t, P[i], dose=1.8e8, method="scipy-radau", rtol=1e-11,
                            atol=1e-14).observed[obs] for i in range(k)])

    def err(c):
        scale = 1e-6 * np.abs(ref).max(axis=1, keepdims=True)
        e = np.abs(c[:k] - ref) / (np.abs(ref) + scale)
        return float(np.median(np.nanmax(e, axis=1)))

    return {"n": n, "cpu_ours": cpu_ours, "cpu_peer": cpu_peer, "err_ours": err(ours),
            "err_peer": err(peer), "ratio": cpu_peer / cpu_ours}


def dask_runs(stein_n: int, kimmel_n: int) -> dict:
    from dask.distributed import Client, LocalCluster

    from cartkinetics.simulate import ModelPopulation, Scenario, scenario_grid, simulate

    env = {"PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, host="127.0.0.1", env=env)
    client = Client(cluster)
    startup = time.perf_counter() - t0
    out = {"startup": startup}
    try:
        addr = cluster.scheduler_address
        grid = scenario_grid(dose_per_kg=DOSES)
        pop = ModelPopulation("kimmel2021", omega=KIMMEL_OMEGA)
        # warm-up: workers load the numba caches once
        simulate("stein2019", n=1000, scenarios=grid, seed=0, dose_exponent=0.5,
                 scheduler=addr, chunk_size=500)
        simulate("kimmel2021", n=100, population=pop, scenarios=[Scenario(dose=1.8e8)],
                 seed=0, scheduler=addr, chunk_size=50)
        _, wall, _ = timed(lambda: simulate("stein2019", n=stein_n, scenarios=grid, seed=1,
                                            dose_exponent=0.5, scheduler=addr, progress=False))
        out["stein"] = {"n": stein_n, "wall": wall, "rate": stein_n * 3 / wall}
        _, wall, _ = timed(lambda: simulate("kimmel2021", n=kimmel_n, population=pop,
                                            scenarios=[Scenario(dose=1.8e8)], seed=1,
                                            scheduler=addr, chunk_size=2000, progress=False))
        out["kimmel"] = {"n": kimmel_n, "wall": wall, "rate": kimmel_n / wall}
    finally:
        client.close()
        cluster.close()
    return out


MEMORY_SCRIPT = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from cartkinetics.simulate import scenario_grid, simulate
t0 = time.perf_counter()
simulate("stein2019", n=10, seed=0)
first = time.perf_counter() - t0
t0 = time.perf_counter()
res = simulate("stein2019", n={n}, scenarios=scenario_grid(dose_per_kg={doses}), seed=1,
               dose_exponent=0.5, progress=False)
wall = time.perf_counter() - t0
rows = len(res.outcomes)
print(json.dumps({{"first_call": first, "wall": wall, "rows": rows,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def memory_subprocess(n: int) -> dict:
    code = MEMORY_SCRIPT.format(root=str(ROOT), n=n, doses=DOSES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


COMPILE_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from cartkinetics.simulate import simulate
t0 = time.perf_counter()
simulate("stein2019", n=10, seed=0)
print(time.perf_counter() - t0)
"""


def compile_time() -> float:
    """First call with an empty numba cache (compilation of every kernel it uses)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT.format(root=str(ROOT))],
                             capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (~1 minute)")
    ap.add_argument("--skip-dask", action="store_true", help="no LocalCluster runs")
    args = ap.parse_args()
    import numba

    cores = os.cpu_count() or 1
    print("## Simulation throughput\n")
    print("```text")
    print(f"cores {cores}, numba threads {numba.get_num_threads()}, load average {_load()}")
    sizes = [1_000, 10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]

    print("\n1. Stein 2019, in process, 3 dose levels (dose_exponent 0.5: 3 distinct runs)")
    print("   (linearity: time per patient relative to the largest run, 1.0 = linear; the CPU"
          " column is immune to other processes on a shared machine)")
    print(f"{'n':>9} {'wall s':>8} {'cpu s':>8} {'pts x doses/s':>14} {'wall/pt vs largest':>19}"
          f" {'cpu us/pt-dose':>15} {'cpu/pt vs largest':>18}")
    rows = stein_scaling(sizes, 0.5)
    for r in rows:
        print(f"{r['n']:>9} {r['wall']:>8.2f} {r['cpu']:>8.2f} {r['rate']:>14.3g} "
              f"{r['per_patient_vs_largest']:>19.2f} {r['cpu_us']:>15.2f} "
              f"{r['cpu_vs_largest']:>18.2f}")
    big = rows[-1]
    est = big["wall"] * 1_000_000 / big["n"]
    print(f"   1e6 x 3 doses: {est:.1f} s wall"
          f"{' (extrapolated)' if big['n'] < 1_000_000 else ''}; target < 10 s; "
          f"CPU/cores = {big['cpu'] * 1_000_000 / big['n'] / cores:.1f} s")
    pub = stein_scaling([sizes[-1]], 0.0)[0]
    print(f"   as published (dose_exponent 0, dose levels identical, computed once): "
          f"n={pub['n']}: {pub['wall']:.2f} s wall, {pub['rate']:.3g} pts x doses/s")

    n_peer = 100_000 if not args.quick else 20_000
    print(f"\n2. peer: model.solve_batch (NumPy, shared grid) + batch_curve_outcomes, n={n_peer}")
    peer = stein_peer(n_peer)
    ours = next((r for r in rows if r["n"] == n_peer), None)
    if ours is None:
        ours = stein_scaling([n_peer], 0.5)[0]
    print(f"   CPU time (simulate runs on numba threads, the peer on one: wall times are not "
          f"compared): peer {peer['cpu']:.2f} s, simulate {ours['cpu']:.2f} s, "
          f"{peer['cpu'] / ours['cpu']:.1f}x (not the same computation: the peer's Cmax is the "
          "grid maximum, biased low when the peak falls between grid points)")

    k_sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    print("\n3. mechanistic ODE (Kimmel 2021, numba batch solver), in process, 1 dose")
    krows = kimmel_inprocess(k_sizes)
    for r in krows:
        print(f"{r['n']:>9} {r['wall']:>8.2f} s wall {r['cpu']:>8.2f} s cpu "
              f"{r['rate']:>10.3g} patients/s  failed {r['failed']}")
    kb = krows[-1]
    print(f"   1e5 patients: {kb['wall'] * 1e5 / kb['n']:.1f} s wall"
          f"{' (extrapolated)' if kb['n'] < 100_000 else ''}; target < 60 s; "
          f"CPU/cores = {kb['cpu'] * 1e5 / kb['n'] / cores:.1f} s")
    mp = kimmel_matched(100 if args.quick else 300)
    print(f"   matched pair, {mp['n']} patients, rtol 1e-6, atol 1e-10, one thread, CPU time: "
          f"library batch solve {mp['cpu_ours']:.2f} s (error {mp['err_ours']:.1e}), scipy "
          f"LSODA patient by patient {mp['cpu_peer']:.2f} s (error {mp['err_peer']:.1e}): "
          f"{mp['ratio']:.0f}x")
    if not args.skip_dask:
        sn = 100_000 if args.quick else 1_000_000
        kn = 10_000 if args.quick else 100_000
        print(f"\n4. 2-worker dask LocalCluster (processes, 1 numba thread each): Stein {sn} x 3, "
              f"Kimmel {kn}")
        d = dask_runs(sn, kn)
        print(f"   cluster startup {d['startup']:.1f} s (not included below)")
        print(f"   Stein:  {d['stein']['wall']:.2f} s, {d['stein']['rate']:.3g} pts x doses/s "
              f"(in process at that size: "
              f"{next((r['rate'] for r in rows if r['n'] == sn), float('nan')):.3g}/s)")
        k_in = next((r["rate"] for r in krows if r["n"] == kn), float("nan"))
        print(f"   Kimmel: {d['kimmel']['wall']:.2f} s, {d['kimmel']['rate']:.3g} patients/s "
              f"(in process: {k_in:.3g}/s)")

    mn = 100_000 if args.quick else 1_000_000
    print(f"\n5. peak memory, fresh process, Stein {mn} x 3 doses, outcomes collected")
    mem = memory_subprocess(mn)
    print(f"   first call (numba cache load / compile) {mem['first_call']:.2f} s; run "
          f"{mem['wall']:.2f} s; {mem['rows']} outcome rows; peak RSS {mem['maxrss_mb']:.0f} MB "
          "(target < 2048 MB for 1e6 x 3)")
    print(f"   first call with an empty numba cache (compiling): {compile_time():.1f} s")
    print(f"\nload average at the end {_load()}")
    print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
