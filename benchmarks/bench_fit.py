"""Fit speed: one series with Stein 2019 (closed form and ODE), against scipy solve_ivp.

Prints median wall time per series fit (after compilation) for:
  * stein2019 closed form (analytic sensitivities), fit only (1 start, the former lmfit
    5-start default, the vectorised 25-start default), fit + bootstrap outcomes, MAP + SIR;
  * stein2019_ode with the numba solver and its forward sensitivities;
  * the same ODE fitted through scipy.integrate.solve_ivp (LSODA, rtol 1e-8) with a
    finite-difference Jacobian: the peer measured in the same run;
  * fit_cohort over the series: serial, 2 processes, 2 threads.
Targets (issue #5): 12-point Stein series < 20 ms median, ODE series < 300 ms.

Run:  cd /work/main && PYTHONPATH=. python benchmarks/bench_fit.py [--n 30]
"""

from __future__ import annotations

import argparse
import os
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


class ScipyStein(Model):
    """Stein 2019 two-state ODE integrated by scipy solve_ivp in two pieces (no numba)."""

    def __init__(self) -> None:
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
                       rtol=1e-8, atol=1e-10, t_eval=t[pre] if pre.any() else None)
        out[:, pre] = s1.y if pre.any() else out[:, pre]
        yT = np.array([cmax, 0.0])
        post = ~pre
        if post.any():
            s2 = solve_ivp(lambda _t, y: [-alpha * y[0], k * y[0] - beta * y[1]],
                           (tmax, t[-1]), yT, method="LSODA", rtol=1e-8, atol=1e-10,
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


def timed(fn, series, **kw):
    ts, st = [], []
    for s in series:
        t0 = time.perf_counter()
        r = fn(s, **kw)
        ts.append(time.perf_counter() - t0)
        st.append(r.ok)
    return float(np.median(ts)), float(np.mean(st))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    a = ap.parse_args()
    _, series = simulate(a.n, 75.0, 11)
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (shared machine)")
    t0 = time.perf_counter()
    fit_series(series[0], "stein2019")
    fit_series(series[0], "stein2019_ode", n_boot=50)
    print(f"first calls (imports, numba compile or cache load): {time.perf_counter() - t0:.1f} s")
    rows = []
    for label, model, kw in [
        ("stein2019 closed form, fit only, 1 start", "stein2019",
         dict(outcomes=False, n_starts=1, profile=False)),
        ("stein2019 closed form, fit only, former default: lmfit 5 starts / 100", "stein2019",
         dict(outcomes=False, profile=False, multistart="lmfit", n_starts=5,
              n_candidates=100)),
        ("stein2019 closed form, fit only, default: 25 vectorised starts / 200", "stein2019",
         dict(outcomes=False, profile=False)),
        ("stein2019 closed form, fit + 500 bootstrap outcomes", "stein2019",
         dict(n_boot=500, profile=False)),
        ("stein2019 closed form, defaults (+ auto profile)", "stein2019", {}),
        ("stein2019 closed form, MAP + SIR intervals (500 draws)", "stein2019",
         dict(prior="population", profile=False)),
        ("stein2019_ode numba + sensitivities, fit only (default: lmfit 5 starts)", "stein2019_ode",
         dict(outcomes=False, profile=False)),
        ("stein2019_ode numba + sensitivities, fit only, 25 vectorised starts", "stein2019_ode",
         dict(outcomes=False, profile=False, multistart="vectorised")),
        ("stein2019_ode numba, fit only, 1 start", "stein2019_ode",
         dict(outcomes=False, n_starts=1, profile=False)),
        ("scipy solve_ivp LSODA + FD Jacobian, fit only, 1 start", ScipyStein(),
         dict(outcomes=False, n_starts=1, profile=False)),
    ]:
        ser = series if "scipy" not in label else series[: max(5, a.n // 5)]
        med, ok = timed(lambda s, m=model, **k: fit_series(s, m, **k), ser, **kw)
        rows.append((label, med, ok, len(ser)))
    base = {r[0]: r[1] for r in rows}
    print(f"\n{'fit of one 12-point series':72s} {'median ms':>10s} {'usable':>7s} {'n':>4s}")
    for label, med, ok, n in rows:
        print(f"{label:72s} {1e3 * med:10.1f} {100 * ok:6.0f}% {n:4d}")
    r_ode = base["scipy solve_ivp LSODA + FD Jacobian, fit only, 1 start"] / base[
        "stein2019_ode numba, fit only, 1 start"]
    r_ms = base["stein2019 closed form, fit only, former default: lmfit 5 starts / 100"] / base[
        "stein2019 closed form, fit only, default: 25 vectorised starts / 200"]
    print(f"\nformer lmfit 5-start default / vectorised 25-start default: {r_ms:.1f}x")
    print(f"scipy solve_ivp / numba ODE (1 start each): {r_ode:.1f}x")
    print("targets: closed form < 20 ms, ODE < 300 ms (fit only, after compilation)")
    # parallel across series
    print(f"\nfit_cohort over {a.n} series (stein2019, fit + 500-draw bootstrap):")
    res = {}
    for label, kw in [("serial", dict(n_jobs=1)), ("2 processes", dict(n_jobs=2)),
                      ("2 threads", dict(n_jobs=2, backend="thread"))]:
        t0 = time.perf_counter()
        fit_cohort(series, "stein2019", profile=False, **kw)
        res[label] = time.perf_counter() - t0
        print(f"  {label:12s} {res[label]:7.2f} s   speed-up {res['serial'] / res[label]:.2f}x")


if __name__ == "__main__":
    main()
