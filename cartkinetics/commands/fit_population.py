"""``cartkinetics fit-population KINETICS.csv --model stein2019``: hierarchical Bayesian fit.

Partial pooling across patients (PyMC, sampled by nutpie), BLQ rows by M3, and the second
infusion's effect on Cmax and Tmax with 95% credible intervals.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from cartkinetics.commands._options import (
    add_quiet_argument,
    add_read_arguments,
    out_dir,
    print_json,
    read_from_args,
)

HELP = "hierarchical Bayesian fit with PyMC (infusion effect)"


MODEL_OPTIONS = (
    ("--effect", "P1,P2",
     "parameters shifted by the second infusion, any model parameter (default: cmax,tmax)"),
    ("--iov", "P1,P2",
     "parameters with between-infusion (inter-occasion) variability, NONMEM style (any model "
     "parameter, e.g. alpha,fb,beta); default none"),
    ("--fix", "NAME=VALUE,...",
     "parameters held fixed: a number for everyone (e.g. beta=0.0032), or a column of the "
     "--patients table for a per-patient value (a regressor, e.g. nB0=baseline for Liu "
     "2022's baseline leukaemia)"),
    ("--free", "P1,P2",
     "the parameters estimated (with between-patient random effects); every other parameter "
     "is fixed at the model's published value unless --fix gives one. Default: all "
     "parameters not in --fix. For models with many parameters (Liu 2022: 12) that CAR-T "
     "levels alone cannot identify"),
    ("--centred", "P1,P2",
     "random effects sampled in the centred form phi_i ~ N(mu, omega), the better geometry "
     "for parameters each patient's data pin down; the others non-centred (default: "
     "cmax,tmax,alpha where the model has them; 'none': all non-centred)"),
    ("--priors", "JSON",
     "overrides of the default priors (fit_population's priors=), a JSON file or object, "
     "e.g. '{\"mu\": {\"rTA0\": [0.48, 0.5]}, \"omega\": {\"nTN0\": [\"lognormal\", "
     "1.0, 0.25]}}': mu as [mean, sd] on the parameter's sampling scale (log for rates and "
     "levels), omega as [family, median or scale, sd_log]"),
    ("--covariates", "P=COL[,COL];...",
     "covariates per parameter from the --patients table (or 'dose'), e.g. "
     "'cmax=dose_per_kg,target;tmax=lymphodepletion'"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``fit-population`` subcommand."""
    add_read_arguments(parser)
    parser.add_argument("--model", default="stein2019", help="model name (default stein2019)")
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (1000)")
    parser.add_argument("--tune", type=int, default=1000, help="warm-up per chain (1000)")
    parser.add_argument("--chains", type=int, default=4, help="chains (4)")
    parser.add_argument(
        "--seed", type=int, default=None,
        help="random seed (default: the fixed DEFAULT_SEED of fit_population, recorded in "
        "the output; the same seed gives the same draws on the same machine)",
    )
    parser.add_argument(
        "--sampler", choices=("nutpie", "pymc"), default="nutpie", help="sampler (nutpie)"
    )
    parser.add_argument(
        "--target-accept", type=float, default=None,
        help="NUTS target acceptance (default of fit_population)",
    )
    parser.add_argument(
        "--rtol", type=float, default=None,
        help="relative tolerance of the ODE solves in the likelihood (ODE models; default "
        "1e-6, fit_population's ODE_RTOL): a looser one makes every gradient cheaper at an "
        "error in ln prediction of about 10 x rtol",
    )
    parser.add_argument(
        "--residual", choices=("normal", "student"), default="normal",
        help="residual distribution of ln(level) (normal)",
    )
    parser.add_argument(
        "--init", choices=("support_point", "dispersed", "map"), default="support_point",
        help="where the chains start: PyMC's support point, jittered per chain; 'dispersed': "
        "the conditional posterior mode (between-patient SDs at their prior medians), "
        "jittered per chain; 'map': every chain at that mode (for ODE models whose patients "
        "have more than one local mode; R-hat then cannot see other modes)",
    )
    parser.add_argument(
        "--until-converged", action=argparse.BooleanOptionalAction, default=True,
        help="(default on) if the diagnostics fail, restart stuck chains (in modes of much "
        "lower log density, or apart from the others) near the other chains' draws, or run "
        "every chain again from the round's draws with 2-4 times the draws (warm-up alike, up "
        "to 2000; after "
        "divergences, a higher target acceptance; the same length when divergences are the "
        "only failure), until R-hat <= 1.01, ESS >= 400 and no divergence, or the time budget "
        "is spent, in at most MAX_ROUNDS rounds (cartkinetics.fit.convergence); "
        "--no-until-converged: "
        "one run with the given settings",
    )
    parser.add_argument(
        "--time-budget", type=float, default=900.0, metavar="S",
        help="wall-time budget in seconds of --until-converged (900): the first round "
        "(--tune/--draws) always runs in full, no further round starts that would not end "
        "within the budget, and the last round that fits takes what is left",
    )
    # the model options that take a value (names, assignments or JSON), in --help order
    for flag, metavar, text in MODEL_OPTIONS:
        parser.add_argument(flag, default=None, metavar=metavar, help=text)
    parser.add_argument(
        "--fixed-effect", action="store_true",
        help="the infusion effect shared by all patients (no between-patient SD tau); the "
        "usual choice with --iov on the same parameters",
    )
    parser.add_argument("--out", metavar="DIR", help="write idata, tables, JSON and figures")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print infusion_effect (cmax_ratio: median, ci_low, ci_high, p_greater; "
        "tmax_difference: median, ci_low, ci_high, p_less), diagnostics (max_rhat, "
        "min_ess_bulk, divergences, ...), population, shrinkage and per-patient estimates",
    )
    add_quiet_argument(parser)


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "NA"
    return f"{x:.{nd}g}"


def _parse_fixed(text: str | None) -> dict[str, float | str] | None:
    """``--fix``: NAME=number (everyone) or NAME=column (per patient, --patients table)."""
    from cartkinetics.errors import CartKineticsError

    if not text:
        return None
    out: dict[str, float | str] = {}
    for item in text.split(","):
        name, sep, val = item.partition("=")
        if not sep or not name.strip() or not val.strip():
            raise CartKineticsError(f"--fix: expected NAME=VALUE or NAME=COLUMN, got {item!r}")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            out[name.strip()] = val.strip()  # a column of the patient table
    return out


def _names(text: str | None) -> list[str] | None:
    """A comma-separated list of names (None when the option was not given)."""
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def _fixed_and_centred(args: argparse.Namespace) -> tuple[dict | None, list[str] | None]:
    """``fixed=`` and ``centred=`` of the fit from --fix, --free and --centred."""
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.fit.problem import get_model

    fixed = _parse_fixed(args.fix)
    free = _names(args.free)
    if free is not None:
        model = get_model(args.model)
        names = list(model.param_names)
        unknown = [p for p in free if p not in names]
        if unknown or not free:
            raise CartKineticsError(
                f"--free: {unknown or 'no parameter'} not parameters of {model.name} ({names})")
        both = [p for p in free if p in (fixed or {})]
        if both:
            raise CartKineticsError(f"--free and --fix both name {both}")
        # the others at the model's published values (a --fix value takes precedence)
        fixed = {**{n: float(v) for n, v in zip(names, model.typical, strict=True)
                    if n not in free}, **(fixed or {})}
    centred = _names(args.centred)
    if centred == ["none"]:
        centred = []
    return fixed, centred


def _parse_covariates(text: str | None) -> dict[str, list[str]] | None:
    from cartkinetics.errors import CartKineticsError

    if not text:
        return None
    out: dict[str, list[str]] = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        name, sep, cols = item.partition("=")
        if not sep or not cols.strip():
            raise CartKineticsError(f"--covariates: expected PARAM=COL[,COL], got {item!r}")
        out[name.strip()] = [c.strip() for c in cols.split(",") if c.strip()]
    return out


def run(args: argparse.Namespace) -> int:
    """Fit, print a summary (or JSON) and optionally write everything to --out."""
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.fit.population import fit_population

    data = read_from_args(args)
    out_dir(args)  # --out is a folder: checked (and created) before the sampling
    assays = sorted({s.assay for s in data.series()})
    assay = args.assay if args.assay in assays else None
    if assay is None and len(assays) > 1:
        raise CartKineticsError(
            f"the file holds several assays {assays}: choose one with --assay",
            source=args.kinetics,
        )
    effects = _names(args.effect)
    fixed, centred = _fixed_and_centred(args)
    priors = None
    if args.priors:
        from cartkinetics.data import load_json_object

        priors = load_json_object(args.priors, "--priors",
                                  '{"omega": {"nTN0": ["lognormal", 1.0, 0.25]}}')
    kw: dict[str, Any] = {}
    if args.until_converged:
        from cartkinetics.fit.convergence import fit_until_converged

        fitter: Any = fit_until_converged
        kw["time_budget"] = args.time_budget
    else:
        fitter = fit_population
        kw["warn"] = False
    fit = fitter(
        data,
        args.model,
        assay=assay,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        progress=not (args.quiet or args.json),
        residual=args.residual,
        infusion_effect=effects,
        fixed=fixed,
        centred=centred,
        priors=priors,
        covariates=_parse_covariates(args.covariates),
        init=args.init,
        iov=_names(args.iov),
        infusion_effect_random=not args.fixed_effect,
        rtol=args.rtol,  # None: fit_population's default (ODE_RTOL)
        **kw,
        **({} if args.target_accept is None else {"target_accept": args.target_accept}),
    )
    result = fit.to_dict()
    if args.out:
        paths = fit.save(args.out)
        result["files"] = {k: str(v) for k, v in paths.items()}
    diag = result["diagnostics"]
    conv = result.get("convergence")
    if conv:
        print(f"--until-converged: {len(conv['rounds'])} round(s) in {conv['seconds']:.0f} s, "
              f"stopped: {conv['stopped']}", file=sys.stderr)
    if not diag["ok"]:
        # never quietly unconverged: on stderr whatever the output format
        worst = ", ".join(
            f"{w['quantity']} (R-hat {_fmt(w['r_hat'])}, bulk ESS {_fmt(w['ess_bulk'], 4)}, "
            f"tail ESS {_fmt(w['ess_tail'], 4)})" for w in diag["worst"][:3]
        )
        print("WARNING: NOT CONVERGED: " + "; ".join(diag["problems"]), file=sys.stderr)
        print(f"  worst quantities: {worst}", file=sys.stderr)
        pats = sorted({p["patient"] for p in diag["patients_disagreeing"]})
        if pats:
            print(f"  the chains disagree about patient(s) {', '.join(pats)}", file=sys.stderr)
        print(f"  what to do: {diag['advice']}", file=sys.stderr)
    if args.json:
        print_json(result)
        return 0
    print(f"model {result['model']}, {result['n_patients']} patients, {result['n_series']} "
          f"series, {result['n_observations']} observations ({result['n_censored']} BLQ, "
          f"{result['censoring']}); sampler {result['sampler']}, seed {result['seed']}")
    print("\npopulation parameters (median [95% CrI]):")
    for r in result["population"]:
        print(f"  {r['kind']:>9} {r['name']:<12} {_fmt(r['median'])} "
              f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]  R-hat {_fmt(r['r_hat'])}")
    eff = result["infusion_effect"]
    if eff:
        c, t = eff["cmax_ratio"], eff["tmax_difference"]
        print(f"\ninfusion effect (second vs first, typical patient, {eff['n_pairs']} pairs):")
        print(f"  Cmax ratio      {_fmt(c['median'])} [{_fmt(c['ci_low'])}, "
              f"{_fmt(c['ci_high'])}]  P(higher) = {c['p_greater']:.3f}")
        print(f"  Tmax difference {_fmt(t['median'])} d [{_fmt(t['ci_low'])}, "
              f"{_fmt(t['ci_high'])}]  P(earlier) = {t['p_less']:.3f}")
    print(f"\ndiagnostics: max R-hat {_fmt(diag['max_rhat'])}, min bulk ESS "
          f"{_fmt(diag['min_ess_bulk'], 4)}, min tail ESS {_fmt(diag['min_ess_tail'], 4)}, "
          f"divergences {diag['divergences']}, E-BFMI "
          f"{', '.join(_fmt(b, 2) for b in diag['bfmi'])}: "
          f"{'ok' if diag['ok'] else 'NOT CONVERGED'}")
    if not diag["ok"]:
        print("  failed: " + "; ".join(diag["problems"]))
        print("  worst: " + ", ".join(w["quantity"] for w in diag["worst"][:5]))
    if args.out:
        print(f"\nwritten to {args.out}")
    return 0
