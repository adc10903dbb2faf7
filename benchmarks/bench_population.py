"""Wall time of the hierarchical fits, with peers measured in the same run.

Part A, Stein 2019 on the bundled example cohort (7 patients x 2 infusions):
  closed form in PyTensor sampled by nutpie (compile time and sampling time separately)
  versus the same PyMC model sampled by PyMC's own NUTS (C backend).
Part B, Liu 2022 (3-state ODE) on the 32 real patients of ../shared/data/liu2022-ball:
  cost of one log-density + gradient evaluation of the whole population likelihood with
  (1) the library's Op, all series in one batched numba sensitivity solve,
  (2) the same Op solving series one by one,
  (3) PyMC's built-in ODE op (pymc.ode.DifferentialEquation, scipy odeint with its own
      sensitivities at odeint's default rtol = atol = 1.49e-8), one op per patient, against
      the library Op at the same tolerances,
  (4) a scipy callback: solve_ivp (LSODA) per patient at the Op's tolerances and central
      finite differences per series, measured;
  each with its errors against a reference (scipy LSODA at rtol 1e-12, central differences);
  then a full sampling run with the library's Op (nutpie; the Op runs in numba object mode).

    PYTHONPATH=. python benchmarks/bench_population.py [--quick] [--skip-liu]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

# the Liu data and the settings of its fit live in cartkinetics.validate.liu2022 (one place:
# this benchmark, the docs and the command line use them)
from cartkinetics.validate import liu2022 as L  # noqa: E402

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022-ball"
LIU_FREE = L.FREE
LIU_CENTRED = L.CENTRED
LIU_RESIDUAL = L.RESIDUAL
LIU_OMEGA_OF = tuple((p, *v) for p, v in L.OMEGA_OF.items())
# Every chain starts at the conditional mode with the between-patient SDs at their prior
# medians: from jittered starts, warm-up left the chains in different modes of single patients
# (seed 2: PR-4 and CR-5, max R-hat 1.81); from this start seeds 1-3 agreed (R-hat <= 1.026)
LIU_INIT = "map"


def _best(f, repeat: int = 5) -> float:
    f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def part_a(args: argparse.Namespace) -> list[tuple]:
    import nutpie
    import pymc as pm

    from cartkinetics.data import read_kinetics
    from cartkinetics.example import __file__ as ex_init
    from cartkinetics.fit import population as P

    csv = Path(ex_init).parent / "example_kinetics.csv"
    pdata = P.prepare_population_data(read_kinetics(csv))
    draws, tune, chains = (300, 300, 2) if args.quick else (1000, 1000, 4)
    rows = []
    t0 = time.perf_counter()
    model, _ = P.build_model(pdata, "stein2019")
    build = time.perf_counter() - t0
    P.register_cacheable_erfcx()  # as fit_population does: the compiled model is cached
    t0 = time.perf_counter()
    c0 = time.process_time()
    compiled = nutpie.compile_pymc_model(model)
    comp = time.perf_counter() - t0
    comp_cpu = time.process_time() - c0
    t0 = time.perf_counter()
    c0 = time.process_time()
    idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=1,
                          progress_bar=False, save_warmup=False,
                          target_accept=P.DEFAULT_TARGET_ACCEPT)
    samp = time.perf_counter() - t0
    samp_cpu = time.process_time() - c0
    print(f"nutpie: build {build:.1f} s, compile {comp:.1f} s wall / {comp_cpu:.1f} s CPU, "
          f"sampling {samp:.1f} s wall / {samp_cpu:.1f} s CPU")
    div = int(idata.sample_stats["diverging"].values.sum())
    rows.append(("Stein closed form, nutpie", f"{chains}x{draws} (+{tune})", build + comp,
                 samp, build + comp + samp, div))
    model, _ = P.build_model(pdata, "stein2019")
    t0 = time.perf_counter()
    with model:
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=2, random_seed=1,
                          progressbar=False, target_accept=P.DEFAULT_TARGET_ACCEPT,
                          compute_convergence_checks=False)
    total = time.perf_counter() - t0
    div = int(idata.sample_stats["diverging"].values.sum())
    rows.append(("Stein closed form, PyMC NUTS", f"{chains}x{draws} (+{tune})", float("nan"),
                 float("nan"), total, div))
    return rows


def _liu_data(leukaemia: bool = False):
    return L.read_cart(LIU, leukaemia)


def _liu_baseline() -> dict[str, float]:
    return L.baseline(LIU)


ODEINT_TOL = 1.49012e-8  # scipy odeint's default rtol and atol (pymc.ode does not set them)


def _scipy_liu(pdata, y, free_idx, rtol: float, atol: float, h: float = 1e-6):
    """The scipy callback: log-likelihood of all series by solve_ivp (LSODA) and its gradient
    in the free parameters by central differences, re-solving only the series a parameter
    belongs to (2 solves per free parameter and series)."""
    from scipy.integrate import solve_ivp

    sels = [pdata.obs_series == s for s in range(pdata.n_series)]

    def series_ll(p, sel):
        tt = np.unique(pdata.t[sel])

        def f(t, yv):
            return np.array([
                p[0] * yv[0] * (1 - yv[0] / p[4]) - p[5] * yv[0] / (yv[0] + p[7]) * yv[1],
                p[1] * yv[0] / (yv[0] + p[8]) * yv[1]
                + p[6] * yv[0] / (yv[0] + p[9]) * yv[2] - p[2] * yv[1],
                -p[6] * yv[0] / (yv[0] + p[9]) * yv[2] - p[3] * yv[2],
            ])

        sol = solve_ivp(f, (0.0, tt[-1]), [p[10], 0.0, p[11]], t_eval=tt, method="LSODA",
                        rtol=rtol, atol=atol)
        c = np.maximum(sol.y[1][np.searchsorted(tt, pdata.t[sel])], 1e-300)
        return -0.5 * np.sum((y[sel] - np.log(c)) ** 2)

    def loglik_grad(th):
        ll = 0.0
        g = np.zeros_like(th)
        for s, sel in enumerate(sels):
            ll += series_ll(th[s], sel)
            for j in free_idx:
                e = h * th[s, j]
                up, dn = th[s].copy(), th[s].copy()
                up[j] += e
                dn[j] -= e
                g[s, j] = (series_ll(up, sel) - series_ll(dn, sel)) / (2 * e)
        return ll, g

    return loglik_grad


def part_b_evaluations(pdata, model, peers: bool = True,
                       free: tuple[str, ...] = LIU_FREE) -> list[tuple]:
    """One population log-likelihood + gradient with each ODE route: (label, seconds,
    tolerances, log-likelihood error, gradient error) against a reference (scipy LSODA at rtol
    1e-12, central differences), errors on the free parameters."""
    import pytensor
    import pytensor.tensor as pt

    from cartkinetics.fit.pytensor_ops import ODEObservationOp

    rng = np.random.default_rng(0)
    theta = model.typical * np.exp(0.1 * rng.standard_normal((pdata.n_series, model.n_params)))
    free_idx = [model.param_names.index(n) for n in free]
    obs = ["car_t", "leukaemia"][:pdata.n_outputs]
    sigma = 1.0
    y = pdata.log_y
    ref_ll, ref_g = _scipy_liu(pdata, y, free_idx, 1e-12, 1e-14, h=1e-5)(theta)
    gscale = float(np.max(np.abs(ref_g[:, free_idx])))

    def errors(ll, g):
        g = np.asarray(g)[:, free_idx]
        return abs(float(ll) - ref_ll), float(np.max(np.abs(g - ref_g[:, free_idx]))) / gscale

    def loglik_grad_op(op):
        th = pt.dmatrix("th")
        lp = op(th)
        ll = -0.5 * pt.sum(((y - lp) / sigma) ** 2)
        return pytensor.function([th], [ll, pytensor.grad(ll, th)])

    rows = []

    def op_row(label, tol, **kw):
        op = ODEObservationOp(model, pdata, observations=obs, **kw)
        f = loglik_grad_op(op)
        err = errors(*f(theta))
        ths = [theta * (1 + 1e-6 * k) for k in range(50)]  # defeat the Op's cache
        it = iter(ths * 10)
        rows.append((label, _best(lambda f=f, it=it: f(next(it)), repeat=5), tol, *err))

    op_row("library Op, batched numba solve", "rtol 1e-6, atol 1e-10", batch=True)
    op_row("library Op, one solve per series", "rtol 1e-6, atol 1e-10", batch=False)
    # the library Op with sensitivities for the free parameters only (the fit's setting)
    op_row(f"library Op, batched, sensitivities of the {len(free)} free parameters only",
           "rtol 1e-6, atol 1e-10", wrt=list(free))
    op_row(f"library Op, batched, {len(free)} free parameters, the Liu fit's rtol",
           f"rtol {L.RTOL:g}, atol 1e-10", wrt=list(free), rtol=L.RTOL)
    if not peers:
        return rows
    # matched to pymc.ode: odeint's default tolerances
    op_row("library Op, batched, at odeint's tolerances (matched to pymc.ode)",
           "rtol = atol = 1.49e-8", rtol=ODEINT_TOL, atol=ODEINT_TOL)

    # PyMC's DifferentialEquation: Liu 2022 right-hand side written in PyTensor
    def rhs(yv, t, p):
        nB, nTA, nTN = yv[0], yv[1], yv[2]
        rBp, rTA0, lTA0, lTN, nMB, eBp, ka, KBp, KBpr, KBpTN = (p[i] for i in range(10))
        rTA = rTA0 * nB / (nB + KBpr)
        return [
            rBp * nB * (1 - nB / nMB) - eBp * nB / (nB + KBp) * nTA,
            rTA * nTA + ka * nB / (nB + KBpTN) * nTN - lTA0 * nTA,
            -ka * nB / (nB + KBpTN) * nTN - lTN * nTN,
        ]

    try:
        from pymc.ode import DifferentialEquation

        th = pt.dmatrix("th")
        ll = 0.0
        for s in range(pdata.n_series):
            sel = pdata.obs_series == s
            tt = np.unique(pdata.t[sel])
            t_obs = tt[tt > 0]
            if t_obs.size == 0:
                continue
            ode = DifferentialEquation(func=rhs, times=t_obs, n_states=3, n_theta=10, t0=0)
            y0 = pt.stack([th[s, 10], pt.constant(0.0), th[s, 11]])
            sol = ode(y0=y0, theta=th[s, :10])
            pos = np.searchsorted(t_obs, pdata.t[sel])
            ok = pdata.t[sel] > 0
            pred = pt.log(pt.maximum(sol[pos[ok], 1], 1e-300))
            ll = ll - 0.5 * pt.sum((y[sel][ok] - pred) ** 2)
        f = pytensor.function([th], [ll, pytensor.grad(ll, th)])
        err = errors(*f(theta))
        rows.append(("pymc.ode.DifferentialEquation (one op per patient)",
                     _best(lambda: f(theta), repeat=2), "rtol = atol = 1.49e-8 (odeint)", *err))
    except Exception as exc:  # report, do not hide
        rows.append((f"pymc.ode.DifferentialEquation failed: {type(exc).__name__}: {exc}",
                     float("nan"), "", float("nan"), float("nan")))

    # the scipy callback at the library Op's tolerances, measured (one full call)
    cb = _scipy_liu(pdata, y, free_idx, 1e-6, 1e-10)
    t0 = time.perf_counter()
    out = cb(theta)
    sec = time.perf_counter() - t0
    rows.append((f"scipy solve_ivp LSODA callback + central differences ({len(free)} free "
                 "params, per series)", sec, "rtol 1e-6, atol 1e-10", *errors(*out)))
    return rows


def part_b_sampling(args: argparse.Namespace, pdata, model) -> tuple:
    import os

    from cartkinetics.fit.population import fit_population

    free = tuple(args.liu_free)
    fixed = {n: v for n, v in zip(model.param_names, model.typical, strict=True)
             if n not in free}
    if "nB0" not in free:
        # the authors' regressor: each patient's measured baseline leukaemia
        fixed["nB0"] = _liu_baseline()
    n = 100 if args.quick else args.liu_draws
    tune = 100 if args.quick else args.liu_tune
    t0 = time.perf_counter()
    c0 = time.process_time()
    # informative priors (documented in docs/population.md): population means centred on the
    # authors' example values with SD args.liu_mu_sd on the log scale; between-patient SDs
    # LogNormal(median, sd_log) = args.liu_omega (no omegas are published with the public code)
    omega_of = LIU_OMEGA_OF if args.liu_omega_of is None else args.liu_omega_of
    priors = L.priors(free, mu_sd=args.liu_mu_sd, omega=tuple(args.liu_omega),
                      omega_of={p: (float(med), float(sdl)) for p, med, sdl in omega_of})
    # the default centred set applies to those of its parameters that have a random effect
    centred = [c for c in args.liu_centred if c in free and c not in (args.liu_pooled or [])]
    print(f"Liu priors: {priors}; centred: {centred}; pooled: {args.liu_pooled or []}; "
          f"residual: {args.liu_residual}")
    obs = {"leukaemia": "leukaemia"} if pdata.n_outputs > 1 else None
    fit = fit_population(pdata, model, fixed=fixed, priors=priors, draws=n, tune=tune,
                         chains=2, seed=args.liu_seed, progress=args.progress, warn=False,
                         residual=args.liu_residual, centred=centred,
                         pooled=args.liu_pooled, observations=obs,
                         low_rank_mass_matrix=args.liu_low_rank, init=args.liu_init,
                         rtol=args.liu_rtol)
    if "init_seconds" in fit.info["sampling"]:
        print(f"Liu start ({args.liu_init}): {fit.info['sampling']['init_seconds']:.1f} s, "
              f"log density {fit.info['sampling']['init_logp']:.1f}")
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(f"Liu sampling: {total:.1f} s wall, {cpu:.1f} s CPU (this process), load average "
          f"at end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    d = fit.diagnostics(warn=False)
    try:
        print(fit.summary().to_string())
    except Exception as exc:  # the summary is informative only
        print(f"summary unavailable: {type(exc).__name__}: {exc}")
    _print_worst(fit)
    if args.liu_save:
        fit.idata.to_netcdf(args.liu_save)  # for a look at the chains afterwards
        print(f"posterior saved to {args.liu_save}")
    return (f"Liu 2022, {pdata.n_patients} patients, free {','.join(free)}",
            f"2x{n} (+{tune})", fit.info["sampling"].get("compile_seconds", float("nan")),
            fit.info["sampling"]["sample_seconds"], total, d["divergences"], d["max_rhat"],
            fit.info["sampling"]["sampler"], d["min_ess_bulk"], d["min_ess_tail"],
            min(d["bfmi"]) if d["bfmi"] else float("nan"),
            float(fit.idata.sample_stats["n_steps"].values.mean()))


def _print_worst(fit, k: int = 12) -> None:
    """The k sampled quantities with the largest R-hat (bulk ESS beside them): where a run
    that fails the convergence checks fails."""
    import arviz as az

    try:
        d = az.summary(fit.idata, var_names=fit._sampled_vars(), kind="diagnostics")
    except Exception as exc:  # informative only
        print(f"diagnostics table unavailable: {type(exc).__name__}: {exc}")
        return
    print(f"worst {k} by R-hat (of {len(d)} sampled quantities):")
    print(d.sort_values("r_hat", ascending=False).head(k)[["r_hat", "ess_bulk", "ess_tail"]]
          .to_string())
    print(f"lowest bulk ESS: {d['ess_bulk'].idxmin()} {d['ess_bulk'].min():.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="population-fit wall times")
    ap.add_argument("--quick", action="store_true", help="fewer draws")
    ap.add_argument("--skip-stein", action="store_true")
    ap.add_argument("--skip-liu", action="store_true")
    ap.add_argument("--skip-liu-sampling", action="store_true")
    ap.add_argument("--skip-liu-peers", action="store_true",
                    help="skip the PyMC-ODE and scipy peers of B1 (slow)")
    # 2 x (250 + 750): seed 1 max R-hat 1.028, min bulk ESS 128, 512 s; seed 2 not converged
    # (max R-hat 1.81: two patients bimodal), docs/population.md
    ap.add_argument("--liu-draws", type=int, default=750, help="Liu draws per chain (750)")
    ap.add_argument("--liu-tune", type=int, default=250, help="Liu warm-up per chain (250)")
    ap.add_argument("--liu-free", nargs="+", default=list(LIU_FREE),
                    help=f"Liu parameters with random effects ({' '.join(LIU_FREE)})")
    ap.add_argument("--liu-mu-sd", type=float, default=L.MU_SD,
                    help="prior SD (log scale) of the Liu population means (0.5)")
    ap.add_argument("--liu-omega", type=float, nargs=2, default=list(L.OMEGA),
                    metavar=("MEDIAN", "SD_LOG"),
                    help="LogNormal prior of the Liu between-patient SDs (0.5 0.5)")
    ap.add_argument("--liu-residual", choices=("normal", "student"), default=LIU_RESIDUAL,
                    help=f"residual distribution of the Liu fit ({LIU_RESIDUAL})")
    ap.add_argument("--liu-centred", nargs="*", default=list(LIU_CENTRED),
                    help=f"Liu parameters sampled centred ({' '.join(LIU_CENTRED)}; none: "
                         "pass the option without names)")
    ap.add_argument("--liu-pooled", nargs="*", default=None,
                    help="Liu free parameters estimated at the population level only (no "
                         "random effect)")
    ap.add_argument("--liu-omega-of", nargs=3, action="append", default=None,
                    metavar=("PARAM", "MEDIAN", "SD_LOG"),
                    help="LogNormal prior of one parameter's between-patient SD (repeatable; "
                         "default " + " ".join(" ".join(map(str, x)) for x in LIU_OMEGA_OF)
                         + "; overrides --liu-omega for that parameter)")
    ap.add_argument("--liu-leukaemia", action="store_true",
                    help="fit the leukaemia counts (y_ID 2) as a second output, as the authors")
    ap.add_argument("--liu-low-rank", action="store_true",
                    help="nutpie's low-rank modified mass matrix for the Liu fit")
    ap.add_argument("--liu-init", choices=("support_point", "map"), default=LIU_INIT,
                    help=f"where the Liu chains start ({LIU_INIT}; see fit_population)")
    ap.add_argument("--liu-rtol", type=float, default=L.RTOL,
                    help=f"relative tolerance of the ODE solves in the likelihood ({L.RTOL:g})")
    ap.add_argument("--liu-seed", type=int, default=1, help="seed of the Liu sampler (1)")
    ap.add_argument("--liu-save", default=None, metavar="NC",
                    help="save the Liu posterior (arviz InferenceData) to this netCDF file")
    ap.add_argument("--progress", action="store_true", help="show the Liu sampler's progress")
    args = ap.parse_args(argv)
    import os

    print("## Hierarchical sampling time\n")
    print("```text")
    print(f"machine: {os.cpu_count()} cores, load average at start "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    if not args.skip_stein:
        rows = part_a(args)
        print("\nA. Stein 2019, example cohort (7 patients x 2 infusions)")
        print(f"{'route':<32} {'draws':>14} {'compile s':>10} {'sample s':>9} {'total s':>8} "
              f"{'div':>4} {'ratio':>6}")
        ref = rows[0][4]
        for r in rows:
            print(f"{r[0]:<32} {r[1]:>14} {r[2]:10.1f} {r[3]:9.1f} {r[4]:8.1f} {r[5]:4d} "
                  f"{r[4] / ref:6.2f}")
    if not args.skip_liu:
        if not LIU.is_dir():
            print(f"\nB. skipped: {LIU} absent")
            print("```")
            return 0
        from cartkinetics import models
        from cartkinetics.fit import population as P

        pdata = P.prepare_population_data(_liu_data(), assay="flow")
        model = models.get("liu2022")
        # B1 on the CAR-T rows (the peers predict CAR-T only); B2 may add the leukaemia
        rows = part_b_evaluations(pdata, model, peers=not args.skip_liu_peers,
                                  free=tuple(args.liu_free))
        print(f"\nB1. Liu 2022, {pdata.n_patients} patients, {pdata.n_obs} CAR-T observations: "
              "one log-likelihood + gradient (wall, best of repeats); errors against scipy "
              "LSODA at rtol 1e-12 with central differences: |log-lik error|, and the largest "
              "gradient error over the free parameters relative to the largest gradient entry")
        ref = rows[0][1]
        matched = next((r[1] for r in rows if "matched to pymc.ode" in r[0]), None)
        print(f"{'route':<72} {'tolerances':<30} {'ms':>9} {'x row 1':>8} {'loglik err':>10} "
              f"{'grad err':>9}")
        for label, sec, tol, lerr, gerr in rows:
            print(f"{label:<72} {tol:<30} {sec * 1e3:9.1f} {sec / ref:8.1f} {lerr:10.1e} "
                  f"{gerr:9.1e}")
        pm_row = next((r for r in rows if r[0].startswith("pymc.ode.DifferentialEquation (")),
                      None)
        if matched and pm_row:
            print(f"pymc.ode / library Op at the same tolerances: {pm_row[1] / matched:.1f}x")
        if args.liu_leukaemia:
            pdata = P.prepare_population_data(_liu_data(True), assay=["flow", "leukaemia"])
        if not args.skip_liu_sampling:
            r = part_b_sampling(args, pdata, model)
            print("\nB2. Liu 2022 population fit with the library Op")
            print(f"{r[0]}: {r[1]} draws, compile {r[2]:.1f} s, sampling {r[3]:.1f} s, "
                  f"total {r[4]:.1f} s, divergences {r[5]}, max R-hat {r[6]:.3f}, "
                  f"min ESS bulk {r[8]:.0f} tail {r[9]:.0f}, min E-BFMI {r[10]:.2f}, "
                  f"mean leapfrog steps per draw {r[11]:.0f}, sampler {r[7]}")
    print("```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
