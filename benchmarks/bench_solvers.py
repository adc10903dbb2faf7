"""Solver benchmark: a 4-state mechanistic CAR-T model over virtual patients.

Model (written here on purpose, independent of the model library): effector CAR-T cells E,
memory M, exhausted X and tumour cells T, per day::

    stim = T / (T + K)
    E' = rho stim E - kex stim E - kmem E + kback stim M - dE E + krec X
    M' = kmem E - kback stim M - dM M
    X' = kex stim E - krec X - dX X
    T' = gT T - kill E T / (T + K + E)

The non-stiff set has rates from 1e-4 (memory death) to ~3 /day. The stiff set adds a fast
exhaustion / recovery exchange (kex = 100, krec = 50 /day) so rates span 1e-4 to 1e2 /day.

60 sample days over 180 days, rtol = 1e-6, atol = 1e-2 cells, lognormal parameter sets
(CV about 30 %). Prints a markdown table of microseconds per patient and ratios measured in
the same run against scipy solve_ivp (LSODA, Radau; on a subsample, scaled per patient),
numbalsoda (lsoda called inside a numba loop) and diffrax (Tsit5, Kvaerno5; jit + vmap on
CPU, float64); peers that are not installed are skipped with a note.

Explicit methods (tsit5, dopri5) run by default in the lock-step kernel (two problems stepped
side by side per thread, ``cartkinetics.solvers._lockstep``); the rows "(one at a time)" run
the same solves in the generic kernel (``solve_batch(..., lockstep=False)``, the kernel that
also serves "auto"), with bitwise the same results.

Run: ``PYTHONPATH=. python benchmarks/bench_solvers.py [--quick]``
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

# diffrax/XLA: one intra-op thread so that "single thread" means the same for every solver
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from cartkinetics.solvers import OdeSystem, solve_batch  # noqa: E402

PARAM_NAMES = ("rho", "kex", "krec", "kmem", "kback", "dE", "dM", "dX", "kill", "gT", "K")
TYPICAL = np.array([2.5, 0.3, 0.1, 0.05, 0.5, 0.1, 1e-4, 0.3, 3.0, 0.05, 1e7])
TYPICAL_STIFF = TYPICAL.copy()
TYPICAL_STIFF[1] = 100.0
TYPICAL_STIFF[2] = 50.0
Y0 = np.array([1e6, 0.0, 0.0, 1e9])  # cells
T_EVAL = np.linspace(0.0, 180.0, 60)
RTOL, ATOL = 1e-6, 1e-2


@njit(cache=True)
def cart4_rhs(t, y, p, piece, dydt):
    E, M, X, T = y[0], y[1], y[2], y[3]
    stim = T / (T + p[10])
    dydt[0] = (p[0] * stim * E - p[1] * stim * E - p[3] * E + p[4] * stim * M - p[5] * E
               + p[2] * X)
    dydt[1] = p[3] * E - p[4] * stim * M - p[6] * M
    dydt[2] = p[1] * stim * E - p[2] * X - p[7] * X
    dydt[3] = p[9] * T - p[8] * E * T / (T + p[10] + E)


@njit(cache=True)
def cart4_jac(t, y, p, piece, J):
    E, M, T = y[0], y[1], y[3]
    K = p[10]
    stim = T / (T + K)
    ds = K / ((T + K) * (T + K))
    den = T + K + E
    J[0, 0] = p[0] * stim - p[1] * stim - p[3] - p[5]
    J[0, 1] = p[4] * stim
    J[0, 2] = p[2]
    J[0, 3] = (p[0] - p[1]) * ds * E + p[4] * ds * M
    J[1, 0] = p[3]
    J[1, 1] = -p[4] * stim - p[6]
    J[1, 2] = 0.0
    J[1, 3] = -p[4] * ds * M
    J[2, 0] = p[1] * stim
    J[2, 1] = 0.0
    J[2, 2] = -p[2] - p[7]
    J[2, 3] = p[1] * ds * E
    J[3, 0] = -p[8] * T * (T + K) / (den * den)
    J[3, 1] = 0.0
    J[3, 2] = 0.0
    J[3, 3] = p[9] - p[8] * E * (K + E) / (den * den)


@njit(cache=True)
def cart4_dfdp(t, y, p, piece, Jp):
    """df/dp (4 x 11), for the compile time of a first sensitivity solve."""
    E, M, X, T = y[0], y[1], y[2], y[3]
    K = p[10]
    stim = T / (T + K)
    dsk = -T / ((T + K) * (T + K))  # d stim / dK
    den = T + K + E
    for i in range(4):
        for j in range(11):
            Jp[i, j] = 0.0
    Jp[0, 0] = stim * E
    Jp[0, 1] = -stim * E
    Jp[0, 2] = X
    Jp[0, 3] = -E
    Jp[0, 4] = stim * M
    Jp[0, 5] = -E
    Jp[0, 10] = (p[0] - p[1]) * dsk * E + p[4] * dsk * M
    Jp[1, 3] = E
    Jp[1, 4] = -stim * M
    Jp[1, 6] = -M
    Jp[1, 10] = -p[4] * dsk * M
    Jp[2, 1] = stim * E
    Jp[2, 2] = -X
    Jp[2, 7] = -X
    Jp[2, 10] = p[1] * dsk * E
    Jp[3, 8] = -E * T / den
    Jp[3, 9] = T
    Jp[3, 10] = p[8] * E * T / (den * den)


CART4 = OdeSystem(cart4_rhs, cart4_jac, cart4_dfdp, 4, len(PARAM_NAMES), name="bench_cart4",
                  autonomous=True)


def population(m: int, typical: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    P = typical * np.exp(0.3 * rng.standard_normal((m, typical.size)))
    P[:, 10] = typical[10]  # half-saturation fixed
    return P


def best_of(fn, repeats: int, clock=time.process_time) -> float:
    """Median of a few runs (robust on a shared machine, where the minimum flatters whoever
    ran during a quiet moment). Single-thread rows use CPU time (process_time): CPU time is what
    one core spends; thread speed-ups need wall time."""
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return float(np.median(times))


# ------------------------------------------------------------------------------------ peers
def scipy_us(P: np.ndarray, method: str) -> tuple[float, np.ndarray]:
    from scipy.integrate import solve_ivp

    out = np.empty((P.shape[0], T_EVAL.size, 4))
    # compile the Python-call specialisations of the model functions before timing
    cart4_rhs(0.0, Y0.copy(), P[0].copy(), 0, np.empty(4))
    cart4_jac(0.0, Y0.copy(), P[0].copy(), 0, np.empty((4, 4)))
    t0 = time.process_time()
    for i, p in enumerate(P):
        buf = np.empty(4)
        jbuf = np.empty((4, 4))

        def f(t, y, p=p, buf=buf):
            cart4_rhs(t, y, p, 0, buf)
            return buf.copy()

        def jac(t, y, p=p, jbuf=jbuf):
            cart4_jac(t, y, p, 0, jbuf)
            return jbuf.copy()

        kw = {"jac": jac} if method in ("Radau", "LSODA") else {}
        r = solve_ivp(f, (0.0, T_EVAL[-1]), Y0, method=method, t_eval=T_EVAL, rtol=RTOL,
                      atol=ATOL, **kw)
        out[i] = r.y.T if r.success else np.nan
    return (time.process_time() - t0) / P.shape[0] * 1e6, out


def numbalsoda_runner():
    try:
        from numbalsoda import lsoda, lsoda_sig
    except ImportError:
        return None
    from numba import carray, cfunc

    @cfunc(lsoda_sig)
    def rhs_c(t, u, du, p):
        y = carray(u, (4,))
        q = carray(p, (11,))
        E, M, X, T = y[0], y[1], y[2], y[3]
        stim = T / (T + q[10])
        du[0] = (q[0] * stim * E - q[1] * stim * E - q[3] * E + q[4] * stim * M - q[5] * E
                 + q[2] * X)
        du[1] = q[3] * E - q[4] * stim * M - q[6] * M
        du[2] = q[1] * stim * E - q[2] * X - q[7] * X
        du[3] = q[9] * T - q[8] * E * T / (T + q[10] + E)

    addr = rhs_c.address

    @njit
    def run(P, y0, t_eval, out, ok):
        for i in range(P.shape[0]):
            usol, success = lsoda(addr, y0, t_eval, data=P[i].copy(), rtol=RTOL, atol=ATOL)
            out[i] = usol
            ok[i] = success

    return run


def diffrax_runner(solver_name: str):
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import diffrax
        import jax.numpy as jnp
    except ImportError:
        return None

    def f(t, y, p):
        E, M, X, T = y[0], y[1], y[2], y[3]
        stim = T / (T + p[10])
        return jnp.stack([
            p[0] * stim * E - p[1] * stim * E - p[3] * E + p[4] * stim * M - p[5] * E + p[2] * X,
            p[3] * E - p[4] * stim * M - p[6] * M,
            p[1] * stim * E - p[2] * X - p[7] * X,
            p[9] * T - p[8] * E * T / (T + p[10] + E),
        ])

    solver = getattr(diffrax, solver_name)()
    term = diffrax.ODETerm(f)
    ts = jnp.asarray(T_EVAL)
    y0 = jnp.asarray(Y0)

    def one(p):
        sol = diffrax.diffeqsolve(
            term, solver, t0=0.0, t1=float(T_EVAL[-1]), dt0=None, y0=y0, args=p,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
            max_steps=100_000, throw=False,
        )
        return sol.ys

    batched = jax.jit(jax.vmap(one))

    def run(P):
        return np.asarray(batched(jnp.asarray(P)).block_until_ready())

    return run


# --------------------------------------------------------------------------- compile times
_COMPILE_SCRIPT = textwrap.dedent(
    """
    import time, sys
    t0 = time.perf_counter()
    sys.path.insert(0, {bench_dir!r})
    import numpy as np
    import bench_solvers as b
    from cartkinetics.solvers import solve, solve_sensitivities
    t1 = time.perf_counter()
    for name in sys.argv[1:]:
        stiff = name.endswith("stiff")
        method = name.split()[0]
        p = b.TYPICAL_STIFF if stiff else b.TYPICAL
        c, w = time.process_time(), time.perf_counter()
        if method == "sensitivities":
            r = solve_sensitivities(b.CART4, b.T_EVAL, b.Y0, p)
        else:
            r = solve(b.CART4, b.T_EVAL, b.Y0, p, method=method)
        assert r.status == 0, r.message
        print(name, time.process_time() - c, time.perf_counter() - w, flush=True)
    # a model never seen before (new module file): only its own functions compile
    sys.path.insert(0, {tmp!r})
    import newmodel
    from cartkinetics.solvers import OdeSystem
    new = OdeSystem(newmodel.cart4_rhs, newmodel.cart4_jac, None, 4, 11, autonomous=True)
    c, w = time.process_time(), time.perf_counter()
    solve(new, b.T_EVAL, b.Y0, b.TYPICAL)
    print("new", time.process_time() - c, time.perf_counter() - w)
    print("import", t1 - t0, t1 - t0)
    """
)

#: first calls timed in a fresh process each with an empty numba cache (what a user waits for
#: on the first solve of that kind after installing), then all in one process from the cache
FIRST_CALLS = ("auto", "tsit5", "rodas5p stiff", "auto stiff", "sensitivities")


def compile_times() -> dict[str, dict[str, tuple[float, float]]]:
    """{"empty cache" | "from cache": {call: (CPU s, wall s)}}; "new" is a model compiled in a
    process whose cache holds the kernels, "import" the import time of the package."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    res: dict[str, dict[str, tuple[float, float]]] = {"empty cache": {}, "from cache": {}}
    with tempfile.TemporaryDirectory() as tmp:
        script = _COMPILE_SCRIPT.format(
            bench_dir=os.path.dirname(os.path.abspath(__file__)), tmp=tmp
        )
        runs = [("empty cache", [call], os.path.join(tmp, f"numba{i}"))
                for i, call in enumerate(FIRST_CALLS)]
        runs.append(("from cache", list(FIRST_CALLS), os.path.join(tmp, "numba0")))
        for i, (label, calls, cache) in enumerate(runs):
            if label == "from cache":  # fill the cache the first run left with all kernels
                _run_compile_script(script, list(FIRST_CALLS), cache, env, tmp, f"fill{i}")
            out = _run_compile_script(script, calls, cache, env, tmp, f"{label}{i}")
            for line in out.splitlines():
                key, cpu, wall = line.rsplit(maxsplit=2)
                if label == "empty cache" and key in ("new", "import") and key in res[label]:
                    continue  # keep the first process's figures
                res[label][key] = (float(cpu), float(wall))
    return res


def _run_compile_script(script: str, calls: list[str], cache: str, env: dict, tmp: str,
                        tag: str) -> str:
    env = dict(env, NUMBA_CACHE_DIR=cache)
    with open(os.path.join(tmp, "newmodel.py"), "w") as fh:  # a new file each time
        fh.write(f"# {tag}\nimport numpy as np\nfrom numba import njit\n\n"
                 + "\n".join(inspect.getsource(f) for f in (cart4_rhs, cart4_jac)))
    shutil.rmtree(os.path.join(tmp, "__pycache__"), ignore_errors=True)  # no stale bytecode
    out = subprocess.run([sys.executable, "-c", script, *calls], capture_output=True, text=True,
                         env=env, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout


# --------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 patients only, fewer peers")
    parser.add_argument("--no-compile", action="store_true", help="skip compile-time runs")
    args = parser.parse_args()
    sizes = [1000] if args.quick else [1000, 10_000]
    n_sub = 20 if args.quick else 50
    notes = []

    # warm up (compile or load from cache)
    solve_batch(CART4, T_EVAL, Y0, population(4, TYPICAL), method="tsit5")
    solve_batch(CART4, T_EVAL, Y0, population(4, TYPICAL_STIFF), method="rodas5p")

    rows = []  # (problem, solver, m, threads, us/patient, failures)
    ours: dict[tuple, float] = {}
    for stiff in (False, True):
        typical = TYPICAL_STIFF if stiff else TYPICAL
        label = "stiff" if stiff else "non-stiff"
        # (method, lockstep): explicit methods also in the generic kernel, one problem at a time
        methods = ([("rodas5p", True), ("auto", True)] if stiff else
                   [("tsit5", True), ("tsit5", False), ("dopri5", True), ("auto", True)])
        for m in sizes:
            P = population(m, typical, seed=m)
            for method, lockstep in methods:
                if not lockstep and m > 1000 and args.quick:
                    continue
                name = method if lockstep else f"{method} (one at a time)"
                for threads in (1, 2):
                    reps = 5 if m <= 1000 else 1
                    holder = {}

                    def run(P=P, method=method, threads=threads, holder=holder, ls=lockstep):
                        holder["r"] = solve_batch(CART4, T_EVAL, Y0, P, method=method,
                                                  rtol=RTOL, atol=ATOL, n_threads=threads,
                                                  lockstep=ls)

                    # CPU time for one thread; wall time for the thread speed-up
                    cpu = best_of(run, reps) / m * 1e6
                    wall = best_of(run, reps, time.perf_counter) / m * 1e6
                    fails = int(np.sum(holder["r"].status != 0))
                    us = cpu if threads == 1 else wall
                    rows.append((label, f"cartkinetics {name}", m, threads, us, fails))
                    ours[(label, name, m, threads)] = us
                    ours[(label, name, m, threads, "wall")] = wall
                    if threads == 2:
                        # CPU / wall time = cores the process actually got: on a loaded machine
                        # (fair per-session scheduling) 2 threads may share one core's worth
                        cores = cpu / wall if wall > 0 else float("nan")
                        if cores < 1.5:
                            notes.append(f"{label} {name} {m} patients on 2 threads: the "
                                         f"process got {cores:.2f} cores on average (CPU time "
                                         "/ wall time), so the thread speed-up cannot show")

        # scipy on a subsample
        Psub = population(n_sub, typical, seed=1)
        for meth in ("LSODA", "Radau"):
            us, ref_out = scipy_us(Psub, meth)
            rows.append((label, f"scipy solve_ivp {meth}", n_sub, 1, us,
                         int(np.isnan(ref_out).any(axis=(1, 2)).sum())))
            ours[(label, f"scipy {meth}", 0, 1)] = us

        # numbalsoda
        nb = numbalsoda_runner()
        if nb is None:
            if not stiff:
                notes.append("numbalsoda not installed: skipped")
        else:
            m = sizes[0]
            P = population(m, typical, seed=m)
            out = np.empty((m, T_EVAL.size, 4))
            ok = np.zeros(m, dtype=np.bool_)
            nb(P[:2], Y0, T_EVAL, out[:2], ok[:2])  # compile
            sec = best_of(lambda P=P, out=out, ok=ok, nb=nb: nb(P, Y0, T_EVAL, out, ok), 5)
            rows.append((label, "numbalsoda lsoda", m, 1, sec / m * 1e6, int((~ok).sum())))
            ours[(label, "numbalsoda", 0, 1)] = sec / m * 1e6

        # diffrax
        for solver_name in ("Tsit5", "Kvaerno5"):
            dr = diffrax_runner(solver_name)
            if dr is None:
                if not stiff and solver_name == "Tsit5":
                    notes.append("jax/diffrax not installed: skipped")
                continue
            m = sizes[0]
            P = population(m, typical, seed=m)
            t = time.perf_counter()
            dr(P)  # jit compile + first run
            jit_s = time.perf_counter() - t
            holder = {}
            sec = best_of(lambda P=P, holder=holder, dr=dr: holder.update(y=dr(P)), 3)
            fails = int(np.isnan(holder["y"]).any(axis=(1, 2)).sum()) + int(
                np.isinf(holder["y"]).any(axis=(1, 2)).sum())
            rows.append((label, f"diffrax {solver_name}", m, 1, sec / m * 1e6, fails))
            ours[(label, f"diffrax {solver_name}", 0, 1)] = sec / m * 1e6
            notes.append(f"diffrax {solver_name} ({label}) jit compile + first run: {jit_s:.1f} s")

    # accuracy check of our batch against Radau rtol 1e-10 (same model, 5 patients)
    from scipy.integrate import solve_ivp

    acc = []
    for stiff in (False, True):
        typical = TYPICAL_STIFF if stiff else TYPICAL
        P = population(5, typical, seed=7)
        r = solve_batch(CART4, T_EVAL, Y0, P, method="auto", rtol=RTOL, atol=ATOL)
        worst = 0.0
        for i, p in enumerate(P):
            def f(t, y, p=p):
                b = np.empty(4)
                cart4_rhs(t, y, p, 0, b)
                return b

            def jac(t, y, p=p):
                J = np.empty((4, 4))
                cart4_jac(t, y, p, 0, J)
                return J

            ref = solve_ivp(f, (0, T_EVAL[-1]), Y0, method="Radau", jac=jac, t_eval=T_EVAL,
                            rtol=1e-10, atol=1e-6).y.T
            worst = max(worst, float(np.max(np.abs(r.y[i] - ref) / (RTOL * np.abs(ref) + ATOL))))
        acc.append(("stiff" if stiff else "non-stiff", worst))

    print("## Solver benchmark: 4-state CAR-T model, 60 samples over 180 days, rtol 1e-6\n")
    print(f"numba {numba.__version__}, {os.cpu_count()} CPUs (shared machine: timings are noisy)\n")
    print("Single-thread rows: CPU microseconds per patient (process_time), median of repeats; "
          "2-thread rows: wall time.\n")
    print("| problem | solver | patients | threads | us / patient | failures |")
    print("|---|---|---:|---:|---:|---:|")
    for label, name, m, th, us, fails in rows:
        print(f"| {label} | {name} | {m} | {th} | {us:,.1f} | {fails} |")

    def ratio(num_key, den_key):
        a, b = ours.get(num_key), ours.get(den_key)
        return "n/a" if a is None or b is None else f"{a / b:.1f}x"

    m0 = sizes[0]
    print("\n### Speed-up ratios (peer time / cartkinetics time, single thread, "
          f"{m0} patients)\n")
    print("| comparison | ratio | target |")
    print("|---|---:|---:|")
    st = ("stiff", "rodas5p", m0, 1)
    for kernel, name in (("lock-step", "tsit5"), ("one at a time", "tsit5 (one at a time)")):
        ex = ("non-stiff", name, m0, 1)
        print(f"| Tsit5 ({kernel}) vs scipy LSODA | "
              f"{ratio(('non-stiff', 'scipy LSODA', 0, 1), ex)} | >= 100x |")
        print(f"| Tsit5 ({kernel}) vs scipy Radau | "
              f"{ratio(('non-stiff', 'scipy Radau', 0, 1), ex)} | |")
        print(f"| Tsit5 ({kernel}) vs numbalsoda | "
              f"{ratio(('non-stiff', 'numbalsoda', 0, 1), ex)} | >= 1.5x |")
        print(f"| Tsit5 ({kernel}) vs diffrax Tsit5 | "
              f"{ratio(('non-stiff', 'diffrax Tsit5', 0, 1), ex)} | >= 2x |")
    print("| Tsit5 lock-step vs one at a time (same results) | "
          f"{ratio(('non-stiff', 'tsit5 (one at a time)', m0, 1), ('non-stiff', 'tsit5', m0, 1))} "
          "| |")
    print(f"| Rodas5P vs diffrax Kvaerno5 (stiff) | "
          f"{ratio(('stiff', 'diffrax Kvaerno5', 0, 1), st)} | >= 20x |")
    print(f"| Rodas5P vs scipy Radau (stiff) | {ratio(('stiff', 'scipy Radau', 0, 1), st)} | |")
    print(f"| Rodas5P vs numbalsoda (stiff) | {ratio(('stiff', 'numbalsoda', 0, 1), st)} | |")
    for m in sizes:
        for lab, meth in (("non-stiff", "tsit5"), ("non-stiff", "tsit5 (one at a time)"),
                          ("stiff", "rodas5p")):
            one = (lab, meth, m, 1, "wall")
            if one not in ours:
                continue
            two = (lab, meth, m, 2, "wall")
            print(f"| 2 threads vs 1 (wall), {meth} {lab}, {m} patients | {ratio(one, two)} "
                  "| >= 1.8x |")
    print("\n### Accuracy of method='auto' against Radau rtol=1e-10 (5 patients)\n")
    for label, worst in acc:
        print(f"- {label}: max |error| / (rtol |y| + atol) = {worst:.2f}")
    if not args.no_compile:
        ct = compile_times()
        print("\n### Compile time (fresh processes)\n")
        print("| first call | empty cache: CPU (s) | wall (s) | from cache: CPU (s) | wall (s) |")
        print("|---|---:|---:|---:|---:|")
        labels = {"auto": "solve, method 'auto' (non-stiff: the explicit entry point)",
                  "tsit5": "solve, method 'tsit5' (lock-step kernel)",
                  "rodas5p stiff": "solve, method 'rodas5p'",
                  "auto stiff": "solve, method 'auto', stiff problem (both methods)",
                  "sensitivities": "solve_sensitivities, method 'auto' (non-stiff)",
                  "new": "a new model, kernels compiled", "import": "import (not a compile)"}
        for key, label in labels.items():
            e, c = ct["empty cache"].get(key), ct["from cache"].get(key)
            cells = [f"{v[0]:.2f} | {v[1]:.2f}" if v else "- | -" for v in (e, c)]
            print(f"| {label} | {cells[0]} | {cells[1]} |")
        print("\n(each empty-cache row is its own process with an empty numba cache: what a "
              "user waits for on the first solve of that kind after installing; the kernels are "
              "shared by every model, so 'a new model' is the cost of each further model; CPU "
              "time is the compile work itself, wall time includes waiting for a shared CPU)")
    if notes:
        print("\nNotes:")
        for n in notes:
            print(f"- {n}")


if __name__ == "__main__":
    main()
