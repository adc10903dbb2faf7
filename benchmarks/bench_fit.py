"""Fit speed: one series with Stein 2019 (closed form and ODE), against scipy solve_ivp.

Prints median wall time per series fit (after compilation) for:
  * stein2019 closed form (analytic sensitivities), fit only (1 start, the former lmfit
    5-start default, the vectorised 25-start default), fit + bootstrap outcomes, MAP + SIR;
  * stein2019_ode with the numba solver and its forward sensitivities;
  * the matched pair: the same ODE fitted with a finite-difference Jacobian through the numba
    solver and through scipy.integrate.solve_ivp (LSODA), both at rtol 1e-8, atol 1e-10 (the
    library's sensitivity tolerance), 1 start, the same series: the peer measured in the same
    run; each row gives its achieved error, the largest relative difference of its fitted
    parameters from the closed-form fit of the same series (the exact solution of the same
    ODE), median over series;
  * fit_cohort over the series: serial, 2 processes, 2 threads.
Targets (issue #5): 12-point Stein series < 20 ms median, ODE series < 300 ms.

Run:  PYTHONPATH=. python benchmarks/bench_fit.py [--n 30] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_fit import simulate  # noqa: E402

from cartkinetics import models  # noqa: E402
from cartkinetics.fit import fit_cohort, fit_series  # noqa: E402
from cartkinetics.models.base import BatchSolution, Model, Solution  # noqa: E402

#: tolerances of the matched pair (the library's default for its sensitivity solves)
MATCH_RTOL, MATCH_ATOL = 1e-8, 1e-10


class ScipyStein(Model):
    """Stein 2019 two-state ODE integrated by scipy solve_ivp in two pieces (no numba)."""

    def __init__(self, rtol: float = MATCH_RTOL, atol: float = MATCH_ATOL) -> None:
        self.rtol, self.atol = rtol, atol
        base = models.get("stein2019")
        super().__init__(
            name="stein2019_scipy", description="Stein 2019 ODE via scipy solve_ivp",
            reference=base.reference, population=base.population,
            states={"E": "copies/ug", "M": "copies/ug"}, parameters=list(base.parameters),
            observations={"transgene": "copies/ug"}, bsv=dict(base.bsv),
            residual_sd=base.residual_sd,
        )

    def solve(self, times, params=None, dose=None, **kw):
        t = self.check_times(times)
        foldx, tmax, cmax, alpha, fb, beta = self.param_vector(params)
        rho = np.log(foldx) / tmax
        k = fb * (alpha - beta)
        out = np.empty((2, t.size))
        y0 = np.array([cmax / foldx, 0.0])
        pre = t < tmax
        s1 = solve_ivp(lambda _t, y: [rho * y[0], 0.0], (0.0, tmax), y0, method="LSODA",
                       rtol=self.rtol, atol=self.atol, t_eval=t[pre] if pre.any() else None)
        out[:, pre] = s1.y if pre.any() else out[:, pre]
        yT = np.array([cmax, 0.0])
        post = ~pre
        if post.any():
            s2 = solve_ivp(lambda _t, y: [-alpha * y[0], k * y[0] - beta * y[1]],
                           (tmax, t[-1]), yT, method="LSODA", rtol=self.rtol, atol=self.atol,
                           t_eval=t[post])
            out[:, post] = s2.y
        obs = out[0] + out[1]
        return Solution(t=t, states={"E": out[0], "M": out[1]}, observed={"transgene": obs},
                        status=0, message="ok")

    def solve_batch(self, times, params_table, dose=None, **kw):
        P = self.param_table(params_table)
        rows = [self.solve(times, p).observed["transgene"] for p in P]
        return BatchSolution(t=np.asarray(times, float), observed={"transgene": np.array(rows)},
                             status=np.zeros(len(rows), dtype=np.int64))

    def sensitivities(self, *a, **k):
        raise NotImplementedError  # the fit then uses finite differences via solve_batch


def numba_fd(rtol: float = MATCH_RTOL, atol: float = MATCH_ATOL) -> Model:
    """stein2019_ode solved by the numba solver at the given tolerances, without its
    sensitivities (the fit then takes finite differences through solve_batch, as it does for
    the scipy peer)."""
    m = copy.copy(models.get("stein2019_ode"))
    cls = type(m)
    m.solve = lambda times, params=None, dose=None, **kw: cls.solve(
        m, times, params, dose, rtol=rtol, atol=atol, **kw)
    m.solve_batch = lambda times, table, dose=None, **kw: cls.solve_batch(
        m, times, table, dose, rtol=rtol, atol=atol, **kw)

    def no_sens(*a, **k):
        raise NotImplementedError

    m.sensitivities = no_sens
    return m


def timed(fn, series, **kw):
    """Median wall time per fit, fraction usable, fitted parameters (dicts)."""
    ts, st, ps = [], [], []
    for s in series:
        t0 = time.perf_counter()
        r = fn(s, **kw)
        ts.append(time.perf_counter() - t0)
        st.append(r.ok)
        ps.append(dict(r.params) if r.ok else None)
    return float(np.median(ts)), float(np.mean(st)), ps


def param_error(ps: list, ref: list) -> float:
    """Median over series of the largest relative difference of fitted parameters from the
    reference fit of the same series (inf for a failed fit)."""
    errs = []
    for p, r in zip(ps, ref, strict=False):
        if p is None or r is None:
            errs.append(np.inf)
            continue
        errs.append(max(abs(p[k] - r[k]) / max(abs(r[k]), 1e-300) for k in r))
    return float(np.median(errs)) if errs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--json-out", metavar="FILE", help="write the measurements as JSON")
    a = ap.parse_args()
    _, series = simulate(a.n, 75.0, 11)
    t0 = time.perf_counter()
    fit_series(series[0], "stein2019")
    fit_series(series[0], "stein2019_ode", n_boot=50)
    fit_series(series[0], numba_fd(), outcomes=False, n_starts=1, profile=False)
    first = time.perf_counter() - t0
    n_peer = max(5, a.n // 3)
    rows = []
    one = dict(outcomes=False, n_starts=1, profile=False)
    for label, model, kw, nser in [
        ("stein2019 closed form, fit only, 1 start (the reference fit)", "stein2019", one, a.n),
        ("stein2019 closed form, fit only, former default: lmfit 5 starts / 100", "stein2019",
         dict(outcomes=False, profile=False, multistart="lmfit", n_starts=5,
              n_candidates=100), a.n),
        ("stein2019 closed form, fit only, default: 25 vectorised starts / 200", "stein2019",
         dict(outcomes=False, profile=False), a.n),
        ("stein2019 closed form, fit + 500 bootstrap outcomes", "stein2019",
         dict(n_boot=500, profile=False), a.n),
        ("stein2019 closed form, defaults (+ auto profile)", "stein2019", {}, a.n),
        ("stein2019 closed form, MAP + SIR intervals (500 draws; MAP: a different estimate)",
         "stein2019",
         dict(prior="population", profile=False), a.n),
        ("stein2019_ode numba + sensitivities, fit only (default: lmfit 5 starts)",
         "stein2019_ode", dict(outcomes=False, profile=False), a.n),
        ("stein2019_ode numba + sensitivities, fit only, 25 vectorised starts", "stein2019_ode",
         dict(outcomes=False, profile=False, multistart="vectorised"), a.n),
        ("stein2019_ode numba + sensitivities, fit only, 1 start", "stein2019_ode", one, a.n),
        ("matched: numba solver, FD Jacobian, rtol 1e-8, 1 start", numba_fd(), one, n_peer),
        ("matched: scipy solve_ivp LSODA, FD Jacobian, rtol 1e-8, 1 start", ScipyStein(), one,
         n_peer),
    ]:
        med, ok, ps = timed(lambda s, m=model, **k: fit_series(s, m, **{"prior": None, **k}),
                            series[:nser], **kw)
        rows.append({"fit": label, "median_ms": 1e3 * med, "usable": ok, "series": nser,
                     "params": ps})
    ref = rows[0]["params"]
    for r in rows:
        r["param_error"] = None if r is rows[0] else param_error(r["params"], ref)
    print("## Per-series fit time\n")
    print(f"{a.n} simulated 12-point Stein 2019 series (benchmarks/validate_fit.py), one "
          "thread, wall time per fit after the first calls (imports, numba compile or cache "
          f"load: {first:.1f} s). Parameter error: median over series of the largest relative "
          "difference of the fitted parameters from the closed-form 1-start fit of the same "
          "series (the closed form is the exact solution of the same ODE).\n")
    print("| fit of one series | median ms | usable | series | parameter error |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        err = "reference" if r["param_error"] is None else f"{r['param_error']:.1e}"
        print(f"| {r['fit']} | {r['median_ms']:.1f} | {100 * r['usable']:.0f}% | "
              f"{r['series']} | {err} |")
    base = {r["fit"]: r["median_ms"] for r in rows}
    r_ode = base["matched: scipy solve_ivp LSODA, FD Jacobian, rtol 1e-8, 1 start"] / base[
        "matched: numba solver, FD Jacobian, rtol 1e-8, 1 start"]
    print(f"\nMatched pair (same series, same tolerances, same finite-difference route): "
          f"scipy / numba {r_ode:.1f}x.\n")
    print("Targets: closed form < 20 ms, ODE < 300 ms (fit only, after compilation).\n")
    print(f"fit_cohort over {a.n} series (stein2019, fit + 500-draw bootstrap), wall time:\n")
    print("| route | s | speed-up over serial |")
    print("|---|---:|---:|")
    res = {}
    for label, kw in [("serial", dict(n_jobs=1)), ("2 processes", dict(n_jobs=2)),
                      ("2 threads", dict(n_jobs=2, backend="thread"))]:
        t0 = time.perf_counter()
        fit_cohort(series, "stein2019", profile=False, prior=None, **kw)
        res[label] = time.perf_counter() - t0
        print(f"| {label} | {res[label]:.2f} | {res['serial'] / res[label]:.2f}x |")
    if a.json_out:
        for r in rows:
            r.pop("params")
        with open(a.json_out, "w") as fh:
            json.dump({"rows": rows, "matched_ratio": r_ode, "cohort_seconds": res}, fh)


if __name__ == "__main__":
    main()
