"""``cartkinetics simulate``: dose scenarios in a virtual population, in process or on Dask."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from cartkinetics.commands._options import (
    add_cluster_arguments,
    add_deprecated_alias,
    add_json_argument,
    add_out_argument,
    add_quiet_argument,
    check_cluster_arguments,
    out_dir,
    print_json,
    quiet,
    resolve_deprecated,
    step,
)

HELP = "dose-scenario simulation of virtual populations"


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def _days(text: str) -> list[float | None]:
    out: list[float | None] = []
    for x in text.split(","):
        x = x.strip()
        if x.lower() in ("none", "no", "-"):
            out.append(None)
        elif x:
            try:
                out.append(float(x))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected days (or 'none'), got {text!r}") from None
    return out


def _targets(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition(">=")
        if not sep:
            key, sep, value = item.partition("<=")
        if not sep:
            key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            from cartkinetics.errors import CartKineticsError

            raise CartKineticsError(
                f"--target expects OUTCOME>=VALUE (quoted in a shell: 'auc_0_28>=1e5'), "
                f"got {item!r}") from None
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``simulate`` subcommand."""
    parser.add_argument("--model", default="stein2019", help="library model (default stein2019)")
    parser.add_argument("--n", type=int, default=1000, help="virtual patients per scenario")
    dose = parser.add_mutually_exclusive_group()
    dose.add_argument("--dose-per-kg", type=_floats, metavar="D1,D2,...",
                      help="dose levels, CAR-T cells/kg (one scenario per level)")
    dose.add_argument("--dose", type=_floats, metavar="D1,D2,...",
                      help="flat dose levels, CAR-T cells")
    parser.add_argument("--split", metavar="DAY:FRACTION,...",
                        help="split each dose, e.g. 0:0.1,1:0.3,2:0.6")
    parser.add_argument("--weight", default=None,
                        help="body weight (kg): '70', 'lognormal:MEDIAN,SDLOG' (default "
                             "lognormal:70,0.2) or FILE.csv[:COLUMN] to resample")
    parser.add_argument("--second-infusion-day", type=_days, metavar="D[,D2|none]",
                        help="day(s) of a second infusion; 'none' adds a single-infusion arm")
    parser.add_argument("--no-lymphodepletion", action="store_true",
                        help="second infusion without lymphodepletion")
    parser.add_argument("--tocilizumab-day", type=float, metavar="DAY",
                        help="first tocilizumab dose (models with a comedication effect)")
    parser.add_argument("--dose-exponent", type=float, default=None,
                        help="closed-form models: Cmax ~ (dose per kg / reference)^EXPONENT "
                             "(default 0 = as published: no dose effect)")
    parser.add_argument("--reference-dose-per-kg", type=float, default=None,
                        help="dose per kg at which the published Cmax applies (default 3.1e6)")
    parser.add_argument("--population", default=None, metavar="SOURCE",
                        help="'model' (published variability, default), 'fits:TABLE.csv' or "
                             "'draws:DRAWS.csv'")
    parser.add_argument("--fits-method", choices=("sample", "lognormal"), default="sample",
                        help="with fits: resample rows, or draw from a fitted log-normal")
    parser.add_argument("--draws-level", choices=("individual", "population"),
                        default="individual",
                        help="with draws: rows are individual parameter sets, or population "
                             "parameters (mu_/omega_ columns) from which patients are drawn")
    parser.add_argument("--assay", default=None,
                        help="with fits: keep the rows of this assay (and --infusion)")
    parser.add_argument("--infusion", type=int, default=None,
                        help="with fits: keep the rows of this infusion")
    parser.add_argument("--omega", metavar="NAME=VAR,...",
                        help="between-subject variances of log-parameters (default: the "
                             "model's published ones; needed for models without them)")
    parser.add_argument("--covariate", action="append", metavar="NAME=SPEC",
                        help="covariate distribution replacing a parameter, e.g. a baseline "
                             "disease burden: nB0=lognormal:2200,1.0 (repeatable)")
    parser.add_argument("--tumour", metavar="OBSERVATION[:THRESHOLD]",
                        help="tumour outcomes (nadir, day below THRESHOLD x baseline, "
                             "relapse) for models with a tumour observation; default 0.01")
    parser.add_argument("--lloq", type=float, default=None,
                        help="limit of quantification for persistence (observation units)")
    parser.add_argument("--target", action="append", metavar="OUTCOME>=VALUE",
                        help="report P(outcome >= value), e.g. auc_0_28>=1e5 (repeatable)")
    add_cluster_arguments(parser, "the chunks of virtual patients")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed if omitted)")
    parser.add_argument("--chunk-size", type=int, default=20_000,
                        help="virtual patients per chunk (part of the seed's definition)")
    add_out_argument(parser, "Parquet partitions, summary.csv/json (and plots with --plot)")
    parser.add_argument("--plot", action="store_true",
                        help="with --out: prediction bands and exposure-vs-dose plots")
    add_quiet_argument(parser)
    add_deprecated_alias(parser, "--no-progress", "quiet", action="store_true", default=None)
    add_json_argument(parser, "per scenario {scenario, n, n_failed, cmax {median, p05, p95}, "
                              "tmax, auc_0_28}")


def _scenarios(args: argparse.Namespace) -> list[Any]:
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.simulate import scenario_grid

    factors: dict[str, Any] = {}
    if args.dose_per_kg:
        factors["dose_per_kg"] = args.dose_per_kg
    if args.dose:
        factors["dose"] = args.dose
    if args.split:
        try:
            pairs = [p.split(":") for p in args.split.split(",")]
            factors["split_days"] = tuple(float(d) for d, _ in pairs)
            factors["split_fractions"] = tuple(float(f) for _, f in pairs)
        except ValueError:
            raise CartKineticsError(
                f"--split expects DAY:FRACTION,..., got {args.split!r}") from None
    if args.second_infusion_day:
        factors["second_infusion_day"] = args.second_infusion_day
        factors["lymphodepletion"] = not args.no_lymphodepletion
    if args.tocilizumab_day is not None:
        factors["tocilizumab_day"] = args.tocilizumab_day
    return scenario_grid(**factors) if factors else []


def _fmt(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4g}"


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print one summary per scenario; 0 on success."""
    from cartkinetics.simulate import DoseExposure, simulate
    from cartkinetics.simulate.scenarios import ELIANA_MEDIAN_DOSE_PER_KG

    resolve_deprecated(args, "quiet", "--no-progress", "--quiet")
    check_cluster_arguments(args)
    out = out_dir(args)

    exposure = None
    if args.dose_exponent is not None or args.reference_dose_per_kg is not None:
        exposure = DoseExposure(
            0.0 if args.dose_exponent is None else args.dose_exponent,
            args.reference_dose_per_kg or ELIANA_MEDIAN_DOSE_PER_KG,
        )
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.simulate import ModelPopulation, TumourSpec

    population = args.population
    covs: dict[str, Any] = {} if args.weight is None else {"weight": args.weight}
    for item in args.covariate or []:
        name, sep, spec = item.partition("=")
        if not sep:
            raise CartKineticsError(f"--covariate expects NAME=SPEC, got {item!r}")
        covs[name.strip()] = spec.strip()
    omega = None
    if args.omega:
        omega = {}
        for item in args.omega.split(","):
            name, sep, value = item.partition("=")
            try:
                omega[name.strip()] = float(value)
            except ValueError:
                raise CartKineticsError(
                    f"--omega expects NAME=VARIANCE,..., got {args.omega!r}") from None
    tumour = None
    if args.tumour:
        obs, _, thr = args.tumour.partition(":")
        try:
            tumour = TumourSpec(obs, float(thr) if thr else 0.01, True)
        except ValueError:
            raise CartKineticsError(f"--tumour expects OBS[:THRESHOLD], got {args.tumour!r}") \
                from None
    if population in (None, "model", "published"):
        population = ModelPopulation(args.model, covs, omega=omega)
    if isinstance(population, str) and population.startswith("fits:"):
        from cartkinetics.simulate import FitTablePopulation

        population = FitTablePopulation(
            args.model, covs, table=population[5:], method=args.fits_method,
            infusion=args.infusion, assay=args.assay)
    elif isinstance(population, str) and population.startswith("draws:"):
        from cartkinetics.simulate import DrawsPopulation

        population = DrawsPopulation(args.model, covs, draws=population[6:],
                                     level=args.draws_level)
    targets = _targets(args.target)
    # several chunks: the engine's bar counts them; one chunk: an elapsed-time bar after 2 s
    chunked = args.n > args.chunk_size
    with step("simulating", args, enabled=not chunked):
        result = simulate(
            args.model,
            n=args.n,
            scenarios=_scenarios(args),
            population=population,
            tumour=tumour,
            seed=args.seed,
            exposure=exposure,
            lloq=args.lloq,
            chunk_size=args.chunk_size,
            keep_curves=500 if args.plot else None,
            workers=args.workers,
            scheduler=args.scheduler,
            out=out,
            progress=chunked and not quiet(args),
        )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if out is not None and args.plot:
        _plots(result, out)
    if targets and out is not None:
        result.write(out, targets=targets)
    keys = ["cmax", "tmax", "auc_0_28"]
    if any(sc.second_infusion_day is not None for sc in result.scenarios):
        keys += ["inf2_cmax", "inf2_tmax", "inf2_auc_0_28"]
    if tumour is not None:
        keys += ["tumour_nadir", "tumour_below_day"]
    summary = result.to_json_summary(keys=tuple(keys), targets=targets)
    if args.json:
        print_json(summary)
        return 0
    print(f"model {result.model}: {result.n} virtual patients per scenario, seed {result.seed} "
          f"({result.info.get('seconds', float('nan')):.1f} s)")
    print(f"population: {result.info['population']}")
    header = f"{'scenario':<40} {'Cmax median (5-95%)':>30} {'Tmax median (5-95%)':>24} " \
             f"{'AUC0-28 median (5-95%)':>32}"
    print(header)
    for s in summary:
        cells = [
            f"{_fmt(s[k]['median'])} ({_fmt(s[k]['p05'])}-{_fmt(s[k]['p95'])})"
            for k in ("cmax", "tmax", "auc_0_28")
        ]
        print(f"{s['scenario']:<40} {cells[0]:>30} {cells[1]:>24} {cells[2]:>32}")
        if "inf2_cmax" in s and s["inf2_cmax"]["median"] is not None:
            cells = [
                f"{_fmt(s[k]['median'])} ({_fmt(s[k]['p05'])}-{_fmt(s[k]['p95'])})"
                for k in ("inf2_cmax", "inf2_tmax", "inf2_auc_0_28")
            ]
            label = "  second infusion (days since it)"
            print(f"{label:<40} {cells[0]:>30} {cells[1]:>24} {cells[2]:>32}")
        if "tumour_nadir" in s:
            print(f"    tumour nadir {_fmt(s['tumour_nadir']['median'])} "
                  f"({_fmt(s['tumour_nadir']['p05'])}-{_fmt(s['tumour_nadir']['p95'])}); "
                  f"day below threshold {_fmt(s['tumour_below_day']['median'])} "
                  f"({_fmt(s['tumour_below_day']['p05'])}-{_fmt(s['tumour_below_day']['p95'])})")
        for k, v in s.items():
            if k.startswith("p_") and not k.endswith(("_lo", "_hi")):
                print(f"    {k} = {_fmt(v)} (95% CI {_fmt(s[k + '_lo'])}-{_fmt(s[k + '_hi'])})")
        if s["n_failed"]:
            print(f"    {s['n_failed']} virtual patients failed to solve (see the status column)")
    if out is not None:
        print(f"written to {out}")
    return 0


def _plots(result: Any, out: str) -> None:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = result.plot_bands().figure
    fig.savefig(Path(out) / "bands.png", dpi=120)
    plt.close(fig)
    if any(s.dose_per_kg is not None for s in result.scenarios):
        fig = result.plot_dose_exposure("cmax").figure
        fig.savefig(Path(out) / "cmax_vs_dose.png", dpi=120)
        plt.close(fig)
        fig = result.plot_dose_exposure("auc_0_28").figure
        fig.savefig(Path(out) / "auc_vs_dose.png", dpi=120)
        plt.close(fig)
