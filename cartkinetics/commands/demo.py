"""``cartkinetics demo``: the whole job on the bundled SYNTHETIC example cohort.

Steps (each isolated: a failure is reported and the others still run): read the example
kinetics and patient table, NCA per series, first versus second infusion (paired plot),
per-patient Stein 2019 fits and the model-based comparison, a short hierarchical fit with
the infusion effect, cohort endpoints (tables, Kaplan-Meier, swimmer plot) and a small
dose-scenario simulation. Writes CSV tables, PNG figures and one self-contained
``report.html`` to ``--out`` (default ``./cartkinetics-demo``) through
:func:`cartkinetics.pipeline.run_analysis`, the code path of ``cartkinetics report``.
Exit code 1 when a step failed.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from cartkinetics.commands._options import StepLog, add_out_argument, add_quiet_argument, out_dir

if TYPE_CHECKING:  # pragma: no cover
    from cartkinetics.pipeline import Analysis

HELP = "run the whole job on the bundled (synthetic) example cohort"


#: the demo's hierarchical fit (without --quick): 4 chains x (1000 warm-up + 1000 draws) at
#: target acceptance 0.95, so that the showcase fit meets the convergence checks of
#: ``fit.diagnostics()`` (R-hat <= 1.01, bulk and tail ESS >= 400, no divergence; thresholds
#: unchanged) on the example cohort with the demo's seed: measured, 2 x (300 + 300) (the
#: report default) fell short of ESS and R-hat, 4 x (500 + 500) of R-hat (1.017), 4 x (500 +
#: 1000) and 4 x (1000 + 1000) at 0.9 had one divergence each; this setting: R-hat 1.004,
#: ESS >= 830, no divergence. Sampling is a few seconds of the step.
DEMO_DRAWS, DEMO_TUNE, DEMO_CHAINS, DEMO_TARGET_ACCEPT = 1000, 1000, 4, 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``demo`` subcommand."""
    add_out_argument(parser, "CSV tables, PNG figures and report.html",
                     default="cartkinetics-demo")
    add_analysis_arguments(parser)
    for action in parser._actions:  # the demo's own sampling defaults (see DEMO_DRAWS)
        if action.dest == "draws":
            action.help = f"hierarchical fit: draws per chain (default {DEMO_DRAWS}; quick 100)"
        elif action.dest == "chains":
            action.default = None
            action.help = f"hierarchical fit: chains (default {DEMO_CHAINS}; quick 2)"


def add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``demo`` and ``report``."""
    parser.add_argument("--quick", action="store_true",
                        help="fewer posterior draws and virtual patients (a smoke run)")
    from cartkinetics.commands._options import add_cluster_arguments, add_deprecated_alias

    # the grammar of every subcommand with parallel work (default: in this process)
    add_cluster_arguments(parser, "the per-patient fits")
    add_deprecated_alias(parser, "--jobs", "workers", type=int, metavar="N")
    parser.add_argument("--draws", type=int, default=None,
                        help="hierarchical fit: draws per chain (default 300; quick 100)")
    parser.add_argument("--chains", type=int, default=2,
                        help="hierarchical fit: chains (default 2)")
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    parser.add_argument("--only", metavar="STEP,...", default=None,
                        help="run only these steps: nca, compare, fits, population, "
                             "endpoints, exposure, simulation")
    add_quiet_argument(parser)


def cluster_options(args: argparse.Namespace) -> dict:
    """``workers`` and ``scheduler`` of :class:`AnalysisOptions` from ``--workers`` /
    ``--scheduler`` (and the deprecated ``--jobs``), checked."""
    from cartkinetics.commands._options import check_cluster_arguments, resolve_deprecated

    resolve_deprecated(args, "workers", "--jobs", "--workers")
    check_cluster_arguments(args)
    return {"workers": args.workers, "scheduler": args.scheduler}


def parse_only(text: str | None) -> tuple[str, ...] | None:
    """``--only`` value -> step keys (CartKineticsError naming an unknown step)."""
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.pipeline import STEPS

    if text is None:
        return None
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in keys if k not in STEPS]
    if bad:
        raise CartKineticsError(
            f"--only: unknown step(s) {', '.join(bad)}; known: {', '.join(STEPS)}"
        )
    return keys


def print_summary(analysis: Analysis, started: float) -> int:
    """Print the step outcomes and the report path; return the exit code (1 on failure)."""
    failed = analysis.failed
    skipped = [s for s in analysis.steps if s.status == "skipped"]
    print()
    print(f"done in {time.perf_counter() - started:.1f} s: "
          f"{sum(s.status == 'ok' for s in analysis.steps)} steps ok, {len(skipped)} skipped, "
          f"{len(failed)} failed")
    for s in skipped:
        print(f"  skipped  {s.title}: {s.message}")
    for s in failed:
        print(f"  FAILED   {s.title}: {s.message}")
    print(f"{len(analysis.files)} files in {analysis.out}/ (CSV tables, PNG figures)")
    if analysis.report_path is not None:
        print(f"report: {analysis.report_path.resolve()}")
    return 1 if failed else 0


def use_agg() -> None:
    """Draw to files only (matplotlib's Agg backend): a command-line run never opens a window."""
    import matplotlib

    matplotlib.use("Agg")


def first_run_note() -> str | None:
    """A console line for a first run on this machine (no compiled kernels in numba's cache):
    what is compiled, that it happens once and where it is kept; None otherwise."""
    import os
    from pathlib import Path

    import cartkinetics

    env = os.environ.get("NUMBA_CACHE_DIR")
    # numba's cache: $NUMBA_CACHE_DIR, else each module's __pycache__ folder
    root = Path(env) if env else Path(cartkinetics.__file__).parent / "__pycache__"
    try:
        # the outcome kernels serve every step that summarises curves: their absence means
        # nothing of the library has been compiled into this cache yet
        cached = root.is_dir() and any(root.rglob("outcomes._outcomes_one-*.nbi"))
    except OSError:
        cached = False
    if cached:
        return None
    return ("first run on this machine: numba compiles the curve-outcome, fit and simulation "
            "kernels, and PyTensor the hierarchical model, each when a step first needs it "
            "(about a minute on 2 cores). This happens once: the compiled code is cached "
            f"(numba: {root}) and later runs load it in seconds.")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print a summary; 0 on success, 1 when a step failed."""
    from cartkinetics import example
    from cartkinetics.pipeline import AnalysisOptions, run_analysis

    started = time.perf_counter()
    out_dir(args)  # a folder, created (refuses a file name)
    use_agg()
    print("cartkinetics demo on the bundled SYNTHETIC example cohort (not patient data)")
    note = first_run_note()
    if note:
        print(note, flush=True)
    draws, tune, chains = args.draws, None, getattr(args, "chains", None)
    target_accept = None
    if not args.quick:
        draws = draws or DEMO_DRAWS
        tune = DEMO_TUNE
        target_accept = DEMO_TARGET_ACCEPT
    chains = chains or (2 if args.quick else DEMO_CHAINS)
    options = AnalysisOptions(
        model="stein2019", quick=args.quick, draws=draws, tune=tune, chains=chains,
        target_accept=target_accept,
        **cluster_options(args), seed=args.seed, synthetic=True, only=parse_only(args.only),
        title="cartkinetics demo: SYNTHETIC example cohort",
    )
    analysis = run_analysis(
        example.kinetics_path(),
        patients=example.patients_path(),
        cohort=example.patients_path(),
        out=args.out,
        options=options,
        log=StepLog(args),
    )
    if analysis.data is not None:
        print()
        print(analysis.data.describe())
    if analysis.compare is not None:
        print()
        print(analysis.compare.summary())
    eff = analysis.population.infusion_effect() if analysis.population is not None else None
    if eff:
        r = eff["cmax_ratio"]
        print(f"\nhierarchical fit: typical Cmax ratio (second/first) {r['median']:.2f} "
              f"(95% CrI {r['ci_low']:.2f}-{r['ci_high']:.2f}), P(ratio > 1) = "
              f"{r['p_greater']:.2f}")
    return print_summary(analysis, started)
