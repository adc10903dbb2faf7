"""Solver benchmark: a mechanistic CAR-T model over virtual patients, peers matched and measured.

Model (written here on purpose, independent of the model library): effector CAR-T cells E,
memory M, exhausted X and tumour cells T, per day::

    stim = T / (T + K)
    E' = rho stim E - kex stim E - kmem E + kback stim M - dE E + krec X  [- kbt E + ktb Et]
    M' = kmem E - kback stim M - dM M
    X' = kex stim E - krec X - dX X
    T' = gT T - kill E T / (T + K + E)
    Et' = kbt E - ktb Et                                                   (stiff problem only)

Two problems: **non-stiff**, the 4-state model (rates 1e-4 to ~3 /day), and **stiff**, the same
model with a fifth state, effector cells in tissue, exchanged with blood at kbt = 60 and
ktb = 25 /day (rates 1e-4 to ~85 /day). 60 output days over 180, Y0 = 1e6 effector and 1e9
tumour cells, lognormal parameter sets (CV about 30 %, K fixed).

Every row solves the same patients at the same rtol / atol (1e-6 / 1e-2 cells), the same 60
output times and one thread (thread scaling: wall time against wall time, library only), and
gives its achieved error against a tight reference (scipy ``odeint``, LSODA, rtol 1e-12, atol
1e-10, with the analytic Jacobian): per patient max over outputs and states of
``|y - y_ref| / (|y_ref| + 1e3 cells)``, median over the reference patients. Peers:
numbalsoda (lsoda called inside a numba loop), diffrax (Tsit5, Kvaerno5; jit + vmap on CPU,
float64, one XLA thread, tolerances passed as traced arguments so that one compilation serves
every tolerance), scipy ``solve_ivp`` (LSODA, Radau, analytic Jacobian) on fewer patients
(time per patient). A peer that is not installed is skipped with a line saying so.

Work-precision: every solver over rtol 1e-3 .. 1e-9 (the library at four points per decade),
time per patient against achieved error, one figure per problem; "at equal error" compares a
peer run with the cheapest library run whose achieved error is at most the peer's.

Run: ``PYTHONPATH=. python benchmarks/bench_solvers.py [--quick] [--no-compile]``
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# diffrax/XLA: one intra-op thread so that "single thread" means the same for every solver
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from cartkinetics.solvers import OdeSystem, solve_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAM_NAMES = ("rho", "kex", "krec", "kmem", "kback", "dE", "dM", "dX", "kill", "gT", "K")
TYPICAL = np.array([2.5, 0.3, 0.1, 0.05, 0.5, 0.1, 1e-4, 0.3, 3.0, 0.05, 1e7])
#: the stiff problem: the same parameters plus blood -> tissue and tissue -> blood exchange
PARAM_NAMES5 = (*PARAM_NAMES, "kbt", "ktb")
TYPICAL5 = np.concatenate([TYPICAL, [60.0, 25.0]])
Y0 = np.array([1e6, 0.0, 0.0, 1e9])  # cells
Y0_5 = np.array([1e6, 0.0, 0.0, 1e9, 0.0])
T_EVAL = np.linspace(0.0, 180.0, 60)
RTOL, ATOL = 1e-6, 1e-2
#: the error floor (cells): relative error of values above it, absolute (in units of the
#: floor) below; 1e3 cells is far below any measurable CAR-T or tumour level
ERR_FLOOR = 1e3
REF_RTOL, REF_ATOL = 1e-12, 1e-10
WP_RTOLS = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9]
WP_RTOLS_LIB = [float(x) for x in np.logspace(-3, -9, 25)]  # four per decade
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



@njit(cache=True)
def cart5_rhs(t, y, p, piece, dydt):
    E, M, X, T, Et = y[0], y[1], y[2], y[3], y[4]
    stim = T / (T + p[10])
    dydt[0] = (p[0] * stim * E - p[1] * stim * E - p[3] * E + p[4] * stim * M - p[5] * E
               + p[2] * X - p[11] * E + p[12] * Et)
    dydt[1] = p[3] * E - p[4] * stim * M - p[6] * M
    dydt[2] = p[1] * stim * E - p[2] * X - p[7] * X
    dydt[3] = p[9] * T - p[8] * E * T / (T + p[10] + E)
    dydt[4] = p[11] * E - p[12] * Et


@njit(cache=True)
def cart5_jac(t, y, p, piece, J):
    E, M, T = y[0], y[1], y[3]
    K = p[10]
    stim = T / (T + K)
    ds = K / ((T + K) * (T + K))
    den = T + K + E
    for i in range(5):
        for j in range(5):
            J[i, j] = 0.0
    J[0, 0] = p[0] * stim - p[1] * stim - p[3] - p[5] - p[11]
    J[0, 1] = p[4] * stim
    J[0, 2] = p[2]
    J[0, 3] = (p[0] - p[1]) * ds * E + p[4] * ds * M
    J[0, 4] = p[12]
    J[1, 0] = p[3]
    J[1, 1] = -p[4] * stim - p[6]
    J[1, 3] = -p[4] * ds * M
    J[2, 0] = p[1] * stim
    J[2, 2] = -p[2] - p[7]
    J[2, 3] = p[1] * ds * E
    J[3, 0] = -p[8] * T * (T + K) / (den * den)
    J[3, 3] = p[9] - p[8] * E * (K + E) / (den * den)
    J[4, 0] = p[11]
    J[4, 4] = -p[12]


CART4 = OdeSystem(cart4_rhs, cart4_jac, cart4_dfdp, 4, len(PARAM_NAMES), name="bench_cart4",
                  autonomous=True)
CART5 = OdeSystem(cart5_rhs, cart5_jac, None, 5, len(PARAM_NAMES5), name="bench_cart5",
                  autonomous=True)


class Problem:
    """One benchmark problem: the system, its numba functions, typical parameters, Y0."""

    def __init__(self, label, system, rhs, jac, typical, y0, methods):
        self.label, self.system, self.rhs, self.jac = label, system, rhs, jac
        self.typical, self.y0, self.methods = typical, y0, methods
        self.n, self.npar = y0.size, typical.size


#: library rows per problem: (method, lockstep)
PROBLEMS = {
    "non-stiff": Problem("non-stiff", CART4, cart4_rhs, cart4_jac, TYPICAL, Y0,
                         [("tsit5", True), ("tsit5", False), ("dopri5", True), ("auto", True)]),
    "stiff": Problem("stiff", CART5, cart5_rhs, cart5_jac, TYPICAL5, Y0_5,
                     [("rodas5p", True), ("rodas4", True), ("auto", True)]),
}


def population(m: int, typical: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    P = typical * np.exp(0.3 * rng.standard_normal((m, typical.size)))
    P[:, 10] = typical[10]  # half-saturation fixed
    return P


def median_cpu(fn, repeats: int, clock=time.process_time) -> float:
    """Median of a few runs (robust on a shared machine). CPU time (process_time) by default:
    what one core spends; thread scaling passes time.perf_counter (wall time)."""
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return float(np.median(times))


def achieved_error(y: np.ndarray, ref: np.ndarray) -> float:
    """Median over patients of max over outputs and states of |y - ref| / (|ref| + floor);
    inf when a patient failed (NaN)."""
    k = min(y.shape[0], ref.shape[0])
    e = np.abs(y[:k] - ref[:k]) / (np.abs(ref[:k]) + ERR_FLOOR)
    per = np.where(np.isfinite(e).all(axis=(1, 2)), np.nan_to_num(e).max(axis=(1, 2)), np.inf)
    return float(np.median(per))


# ------------------------------------------------------------------------- reference
def reference(prob: Problem, P: np.ndarray, rtol: float = REF_RTOL,
              atol: float = REF_ATOL) -> np.ndarray:
    """scipy odeint (LSODA, Fortran ODEPACK) with the analytic Jacobian, per patient."""
    from scipy.integrate import odeint

    out = np.empty((P.shape[0], T_EVAL.size, prob.n))
    for i, p in enumerate(P):
        def f(y, t, p=p):
            d = np.empty(prob.n)
            prob.rhs(t, y, p, 0, d)
            return d

        def jac(y, t, p=p):
            J = np.empty((prob.n, prob.n))
            prob.jac(t, y, p, 0, J)
            return J

        out[i] = odeint(f, prob.y0, T_EVAL, Dfun=jac, rtol=rtol, atol=atol, mxstep=10**7)
    return out


# ------------------------------------------------------------------------------ runners
def library_runner(prob: Problem, method: str, lockstep: bool, threads: int = 1):
    def run(P, rtol, atol):
        r = solve_batch(prob.system, T_EVAL, prob.y0, P, method=method, rtol=rtol, atol=atol,
                        n_threads=threads, lockstep=lockstep)
        return r.y, r.status != 0, r.stats

    return run


def scipy_runner(prob: Problem, method: str):
    from scipy.integrate import solve_ivp

    def run(P, rtol, atol):
        out = np.empty((P.shape[0], T_EVAL.size, prob.n))
        bad = np.zeros(P.shape[0], dtype=bool)
        for i, p in enumerate(P):
            def f(t, y, p=p):
                d = np.empty(prob.n)
                prob.rhs(t, y, p, 0, d)
                return d

            def jac(t, y, p=p):
                J = np.empty((prob.n, prob.n))
                prob.jac(t, y, p, 0, J)
                return J

            r = solve_ivp(f, (0.0, T_EVAL[-1]), prob.y0, method=method, t_eval=T_EVAL,
                          rtol=rtol, atol=atol, jac=jac)
            bad[i] = not r.success
            out[i] = np.nan if bad[i] else r.y.T
        return out, bad, None

    # compile the Python-call specialisations of the model functions before timing
    run(population(1, prob.typical), 1e-3, 1.0)
    return run


def numbalsoda_runner(prob: Problem):
    try:
        from numbalsoda import lsoda, lsoda_sig
    except ImportError:
        return None
    from numba import carray, cfunc

    n, npar, model = prob.n, prob.npar, prob.rhs

    @cfunc(lsoda_sig)
    def rhs_c(t, u, du, p):
        model(t, carray(u, (n,)), carray(p, (npar,)), 0, carray(du, (n,)))

    addr = rhs_c.address

    @njit
    def loop(P, y0, t_eval, out, ok, rtol, atol):
        for i in range(P.shape[0]):
            usol, success = lsoda(addr, y0, t_eval, data=P[i].copy(), rtol=rtol, atol=atol,
                                  mxstep=10**6)
            out[i] = usol
            ok[i] = success

    def run(P, rtol, atol):
        out = np.empty((P.shape[0], T_EVAL.size, n))
        ok = np.zeros(P.shape[0], dtype=np.bool_)
        loop(P, prob.y0, T_EVAL, out, ok, rtol, atol)
        return out, ~ok, None

    run(P=population(2, prob.typical), rtol=1e-3, atol=1.0)  # compile
    return run


def diffrax_runner(prob: Problem, solver_name: str):
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import diffrax
        import jax.numpy as jnp
    except ImportError:
        return None

    stiff = prob.n == 5

    def f(t, y, p):
        E, M, X, T = y[0], y[1], y[2], y[3]
        stim = T / (T + p[10])
        dE = p[0] * stim * E - p[1] * stim * E - p[3] * E + p[4] * stim * M - p[5] * E + p[2] * X
        rows = [dE, p[3] * E - p[4] * stim * M - p[6] * M, p[1] * stim * E - p[2] * X - p[7] * X,
                p[9] * T - p[8] * E * T / (T + p[10] + E)]
        if stiff:
            rows[0] = rows[0] - p[11] * E + p[12] * y[4]
            rows.append(p[11] * E - p[12] * y[4])
        return jnp.stack(rows)

    solver = getattr(diffrax, solver_name)()
    term = diffrax.ODETerm(f)
    ts = jnp.asarray(T_EVAL)
    y0 = jnp.asarray(prob.y0)

    def one(p, rtol, atol):
        sol = diffrax.diffeqsolve(
            term, solver, t0=0.0, t1=float(T_EVAL[-1]), dt0=None, y0=y0, args=p,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=1_000_000, throw=False,
        )
        return sol.ys, sol.result == diffrax.RESULTS.successful

    batched = jax.jit(jax.vmap(one, in_axes=(0, None, None)))

    def run(P, rtol, atol):
        ys, ok = batched(jnp.asarray(P), jnp.float64(rtol), jnp.float64(atol))
        ys = np.asarray(ys.block_until_ready())
        return ys, ~np.asarray(ok), None

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
        system, p, y0 = (b.CART5, b.TYPICAL5, b.Y0_5) if stiff else (b.CART4, b.TYPICAL, b.Y0)
        c, w = time.process_time(), time.perf_counter()
        if method == "sensitivities":
            r = solve_sensitivities(system, b.T_EVAL, y0, p)
        else:
            r = solve(system, b.T_EVAL, y0, p, method=method)
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
def measure(run, P, rtol, atol, reps: int, warm: bool = True) -> dict:
    """CPU microseconds per patient (median of ``reps`` runs after a warm-up run unless
    ``warm`` is False), failures, outputs and counters of the last run."""
    holder = {}

    def once():
        holder["r"] = run(P, rtol, atol)

    if warm:
        once()
    us = median_cpu(once, reps) / P.shape[0] * 1e6
    y, bad, stats = holder["r"]
    return {"us": us, "fails": int(np.sum(bad)), "y": y, "stats": stats}


def _peers(prob: Problem, notes: list[str], quick: bool) -> dict:
    """name -> runner of the installed peers for this problem."""
    out = {}
    nb = numbalsoda_runner(prob)
    if nb is None:
        notes.append("numbalsoda not installed (`pip install numbalsoda`, needs gfortran): "
                     "skipped")
    else:
        out["numbalsoda lsoda"] = nb
    names = ("Tsit5", "Kvaerno5") if prob.label == "non-stiff" else ("Kvaerno5",)
    if quick and prob.label == "non-stiff":
        names = ("Tsit5",)  # Kvaerno5's jit compile alone is ~20 s
    for name in names:
        dr = diffrax_runner(prob, name)
        if dr is None:
            notes.append("jax / diffrax not installed (`pip install jax diffrax`): skipped")
            break
        t = time.perf_counter()
        dr(population(2, prob.typical), RTOL, ATOL)  # jit compile (one for every tolerance)
        notes.append(f"diffrax {name} ({prob.label}): jit compile + first run "
                     f"{time.perf_counter() - t:.1f} s, not in the times")
        out[f"diffrax {name}"] = dr
    out["scipy solve_ivp LSODA"] = scipy_runner(prob, "LSODA")
    out["scipy solve_ivp Radau"] = scipy_runner(prob, "Radau")
    return out


def _size(name: str, sizes: dict) -> int:
    for key in ("scipy", "diffrax", "numbalsoda"):
        if name.startswith(key):
            return sizes[key]
    return sizes["library"]


def lib_name(method: str, lockstep: bool) -> str:
    if method in ("tsit5", "dopri5"):
        return f"cartkinetics {method} ({'lock-step' if lockstep else 'one at a time'})"
    return f"cartkinetics {method}"


def run_problem(prob: Problem, sizes: dict, wp_sizes: dict, ref: np.ndarray,
                notes: list[str], log, quick: bool = False) -> dict:
    """The matched table at RTOL / ATOL and the work-precision runs of one problem."""
    rows, wp = [], {}
    runners = {lib_name(m, ls): library_runner(prob, m, ls) for m, ls in prob.methods}
    nlib = len(runners)
    runners.update(_peers(prob, notes, quick))
    for i, (name, run) in enumerate(runners.items()):
        lib = i < nlib
        m = _size(name, sizes)
        P = population(m, prob.typical, seed=1)
        log(f"  {prob.label}: {name}, {m} patients")
        slow = name.startswith("scipy")
        r = measure(run, P, RTOL, ATOL, reps=1 if slow else (5 if lib else 3), warm=not slow)
        row = {"problem": prob.label, "solver": name, "patients": m, "threads": 1,
               "rtol": RTOL, "atol": ATOL, "us_per_patient": r["us"], "failures": r["fails"],
               "achieved_error": achieved_error(r["y"], ref)}
        if lib and r["stats"] is not None:
            row["steps_per_patient"] = float(r["stats"][:, 0].mean())
            row["switched_fraction"] = float(np.mean(r["stats"][:, 5] > 0))
        rows.append(row)
        # work-precision
        mw = _size(name, wp_sizes)
        Pw = P[:mw] if mw <= m else population(mw, prob.typical, seed=1)
        pts = []
        for rtol in (WP_RTOLS_LIB if lib else WP_RTOLS):
            rw = measure(run, Pw, rtol, ATOL, reps=1 if slow else 3, warm=not slow)
            pts.append({"rtol": rtol, "us_per_patient": rw["us"],
                        "achieved_error": achieved_error(rw["y"], ref), "failures": rw["fails"],
                        "patients": mw})
        wp[name] = pts
    return {"rows": rows, "work_precision": wp}


#: thread scaling rows: the fastest explicit kernel and the default method of each problem
THREAD_METHODS = {"non-stiff": [("tsit5", True), ("auto", True)],
                  "stiff": [("rodas5p", True), ("auto", True)]}


def thread_scaling(prob: Problem, sizes: list[int], log, quick: bool = False) -> list[dict]:
    out = []
    for method, lockstep in THREAD_METHODS[prob.label][-1:] if quick else \
            THREAD_METHODS[prob.label]:
        for m in sizes:
            P = population(m, prob.typical, seed=m)
            log(f"  threads: {prob.label} {method} {m}")
            walls, cpus = {}, {}
            for threads in (1, 2):
                run = library_runner(prob, method, lockstep, threads)
                run(P[:8], RTOL, ATOL)
                reps = 5 if m <= 1000 else 2
                walls[threads] = median_cpu(lambda r=run, P=P: r(P, RTOL, ATOL), reps,
                                            time.perf_counter)
                c0, w0 = time.process_time(), time.perf_counter()
                run(P, RTOL, ATOL)
                cpus[threads] = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-12)
            out.append({"problem": prob.label, "solver": lib_name(method, lockstep),
                        "patients": m, "wall_1": walls[1], "wall_2": walls[2],
                        "speedup": walls[1] / walls[2], "cores_used_2": cpus[2]})
    return out


def equal_error(wp: dict, peer: str, ours: str, peer_rtols) -> list[dict]:
    """For each peer run: the cheapest run of ``ours`` whose achieved error is at most the
    peer's (both measured; None when no run of ours is that accurate)."""
    out = []
    for pt in wp.get(peer, []):
        if pt["rtol"] not in peer_rtols or not np.isfinite(pt["achieved_error"]):
            continue
        ok = [q for q in wp[ours] if q["achieved_error"] <= pt["achieved_error"]
              and q["failures"] == 0]
        best = min(ok, key=lambda q: q["us_per_patient"]) if ok else None
        out.append({"peer": peer, "ours": ours, "peer_rtol": pt["rtol"],
                    "peer_error": pt["achieved_error"], "peer_us": pt["us_per_patient"],
                    "our_rtol": best["rtol"] if best else None,
                    "our_error": best["achieved_error"] if best else None,
                    "our_us": best["us_per_patient"] if best else None,
                    "speedup": pt["us_per_patient"] / best["us_per_patient"] if best else None})
    return out


def plot_work_precision(label: str, wp: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, pts in wp.items():
        e = np.array([q["achieved_error"] for q in pts])
        t = np.array([q["us_per_patient"] for q in pts])
        ok = np.isfinite(e) & (e > 0)
        style = "-o" if name.startswith("cartkinetics") else "--s"
        ax.loglog(e[ok], t[ok], style, ms=4, label=name.replace("cartkinetics ", "ck "))
    ax.set_xlabel("achieved error (median over patients of max |y - y_ref| / (|y_ref| + 1e3))")
    ax.set_ylabel("CPU time per patient (us), one thread")
    ax.set_title(f"Work-precision, {label} CAR-T problem, rtol 1e-3 .. 1e-9")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _e(x) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.1e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer patients")
    parser.add_argument("--no-compile", action="store_true", help="skip compile-time runs")
    parser.add_argument("--json-out", metavar="FILE", help="write the measurements as JSON")
    parser.add_argument("--figures", metavar="DIR", default=str(ROOT / "docs" / "figures"),
                        help="where the work-precision PNGs go (docs/figures)")
    parser.add_argument("--figure-link", default="../docs/figures/",
                        help="how the markdown links the figures")
    args = parser.parse_args(argv)
    quick = args.quick

    def log(text):
        print(text, file=sys.stderr, flush=True)

    sizes = {"library": 1000, "numbalsoda": 1000, "diffrax": 100 if quick else 200,
             "scipy": 10 if quick else 30}
    wp_sizes = {"library": 100 if quick else 200, "numbalsoda": 100 if quick else 200,
                "diffrax": 10 if quick else 30, "scipy": 3 if quick else 8}
    n_ref = 30 if quick else 50
    notes: list[str] = []
    doc = {"settings": {"rtol": RTOL, "atol": ATOL, "outputs": T_EVAL.size, "t_end": 180.0,
                        "error_floor": ERR_FLOOR, "reference": "scipy odeint rtol 1e-12 atol "
                        "1e-10", "reference_patients": n_ref, "sizes": sizes,
                        "wp_sizes": wp_sizes}, "problems": {}}
    print("## Solver speed\n")
    print(f"CAR-T model of `benchmarks/bench_solvers.py`, 60 outputs over 180 days, "
          f"rtol {RTOL:g}, atol {ATOL:g} cells, one thread, numba {numba.__version__}. "
          "Time: CPU microseconds per patient (median of repeats). Error: median over "
          f"{n_ref} patients of max |y - y_ref| / (|y_ref| + {ERR_FLOOR:g} cells) against "
          "scipy odeint at rtol 1e-12. \"x auto\": the row's time over cartkinetics `auto`'s "
          "(> 1: the library's default is faster). Work-precision: each solver at rtol 1e-3 "
          f".. 1e-9 (the library at four points per decade), atol {ATOL:g}; patients per run: "
          f"library and numbalsoda {wp_sizes['library']}, diffrax {wp_sizes['diffrax']}, "
          f"scipy {wp_sizes['scipy']}. \"At equal error\": a peer run against the cheapest "
          "library run whose achieved error is at most the peer's (both measured in this "
          "run).\n", flush=True)
    for label, prob in PROBLEMS.items():
        log(f"{label}: reference ({n_ref} patients)")
        Pref = population(n_ref, prob.typical, seed=1)
        ref = reference(prob, Pref)
        ref_check = achieved_error(reference(prob, Pref[:10], 1e-11, 1e-9), ref[:10])
        res = run_problem(prob, sizes, wp_sizes, ref, notes, log, quick)
        res["reference_check"] = ref_check
        res["equal_error"] = []
        ours = ["cartkinetics auto",
                "cartkinetics tsit5 (lock-step)" if label == "non-stiff" else
                "cartkinetics rodas5p"]
        for peer in res["work_precision"]:
            if peer.startswith("cartkinetics"):
                continue
            # numbalsoda (the fastest peer) at three tolerances against both library rows;
            # the other peers at the benchmark's rtol against the default method
            lsoda = peer.startswith("numbalsoda")
            for o in (ours if lsoda else ours[:1]):
                res["equal_error"] += equal_error(res["work_precision"], peer, o,
                                                  (1e-4, RTOL, 1e-8) if lsoda else (RTOL,))
        name = f"work_precision_{label.replace('-', '')}.png"
        plot_work_precision(label, res["work_precision"], Path(args.figures) / name)
        res["figure"] = args.figure_link + name
        if label == "stiff":
            # the stiff target: auto against numbalsoda's LSODA at equal error, rtol 1e-6
            tgt = next((q for q in res["equal_error"] if q["peer"] == "numbalsoda lsoda"
                        and q["ours"] == "cartkinetics auto" and q["peer_rtol"] == RTOL), None)
            auto_row = next(r for r in res["rows"] if r["solver"] == "cartkinetics auto")
            doc["stiff_target"] = {"speedup": tgt["speedup"] if tgt else None, "target": 1.5,
                                   "auto_switched_fraction": auto_row.get("switched_fraction")}
        doc["problems"][label] = res
        print_problem(label, res, doc.get("stiff_target"))
    threads_sizes = [1000] if quick else [1000, 10_000]
    doc["threads"] = [r for prob in PROBLEMS.values()
                      for r in thread_scaling(prob, threads_sizes, log, quick)]
    print_threads(doc["threads"])
    if not args.no_compile:
        log("compile times (fresh processes)")
        doc["compile"] = compile_times()
        print_compile(doc["compile"])
    if notes:
        print("Notes:\n")
        for n in notes:
            print(f"- {n}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=1, default=float))
    return 0


def print_problem(label: str, res: dict, target: dict | None) -> None:
    prob = PROBLEMS[label]
    print(f"### {label.capitalize()} problem ({prob.n} states"
          + (", blood-tissue exchange 60 and 25 per day" if prob.n == 5 else "") + ")\n")
    auto_us = next(r["us_per_patient"] for r in res["rows"]
                   if r["solver"] == "cartkinetics auto")
    print("| solver | patients | us / patient | x auto | achieved error | failures |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        extra = ""
        if r["solver"] == "cartkinetics auto" and r.get("switched_fraction") is not None:
            extra = f" (switched to Rodas5P: {100 * r['switched_fraction']:.0f}%)"
        print(f"| {r['solver']}{extra} | {r['patients']} | {r['us_per_patient']:,.1f} | "
              f"{r['us_per_patient'] / auto_us:.2f} | {_e(r['achieved_error'])} | "
              f"{r['failures']} |")
    print(f"\nReference check: odeint at rtol 1e-11 against rtol 1e-12, same measure: "
          f"{_e(res['reference_check'])}.\n")
    print(f"![work-precision, {label}]({res['figure']})\n")
    print("| peer (rtol) | peer error | peer us | cartkinetics run (rtol) | error | us | "
          "peer / cartkinetics |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for q in res["equal_error"]:
        sp = "-" if q["speedup"] is None else f"{q['speedup']:.2f}x"
        our = "none as accurate" if q["our_rtol"] is None else \
            f"{q['ours'].replace('cartkinetics ', '')} ({q['our_rtol']:.1e})"
        our_us = "-" if q["our_us"] is None else f"{q['our_us']:,.1f}"
        print(f"| {q['peer']} ({q['peer_rtol']:.0e}) | {_e(q['peer_error'])} | "
              f"{q['peer_us']:,.1f} | {our} | {_e(q['our_error'])} | {our_us} | {sp} |")
    if label == "stiff" and target is not None:
        sp = target["speedup"]
        print(f"\n**Stiff target** (cartkinetics `auto` >= 1.5x numbalsoda LSODA at equal "
              f"error, LSODA at rtol {RTOL:g}): "
              + ("not measured (numbalsoda missing)" if sp is None else
                 f"{sp:.2f}x, {'met' if sp >= 1.5 else 'not met'}")
              + (f"; `auto` switched to its stiff method on "
                 f"{100 * target['auto_switched_fraction']:.0f}% of the stiff patients"
                 if target["auto_switched_fraction"] is not None else "") + ".")
    print(flush=True)


def print_threads(rows: list[dict]) -> None:
    print("### Thread scaling (wall time against wall time, library)\n")
    print("| problem | solver | patients | 1 thread (s) | 2 threads (s) | speed-up | cores the "
          "2-thread run got |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['problem']} | {r['solver']} | {r['patients']} | {r['wall_1']:.3f} | "
              f"{r['wall_2']:.3f} | {r['speedup']:.2f}x | {r['cores_used_2']:.2f} |")
    print("\n(\"cores the 2-thread run got\": CPU time / wall time of that run; below ~1.8 the "
          "machine was busy and the speed-up cannot show)\n", flush=True)


def print_compile(ct: dict) -> None:
    print("### Compile time\n")
    print("Each first call in a fresh process with an empty numba cache, then from the "
          "cache.\n")
    print("| first call | empty cache: CPU (s) | wall (s) | from cache: CPU (s) | wall (s) |")
    print("|---|---:|---:|---:|---:|")
    labels = {"auto": "solve, method 'auto' (non-stiff: the explicit entry point)",
              "tsit5": "solve, method 'tsit5' (lock-step kernel)",
              "rodas5p stiff": "solve, method 'rodas5p'",
              "auto stiff": "solve, method 'auto', stiff problem (both methods)",
              "sensitivities": "solve_sensitivities, method 'auto' (non-stiff)",
              "new": "a new model, kernels compiled", "import": "import (not a compile)"}
    for key, text in labels.items():
        e, c = ct["empty cache"].get(key), ct["from cache"].get(key)
        cells = [f"{v[0]:.2f} | {v[1]:.2f}" if v else "- | -" for v in (e, c)]
        print(f"| {text} | {cells[0]} | {cells[1]} |")
    print("\n(each empty-cache row is its own process with an empty numba cache: what a "
          "user waits for on the first solve of that kind after installing)\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
