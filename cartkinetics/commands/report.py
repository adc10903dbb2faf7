"""``cartkinetics report KINETICS.csv``: the demo's HTML report for your own files.

The same steps and the same code as ``cartkinetics demo`` (:func:`cartkinetics.pipeline.
run_analysis`): NCA, first versus second infusion, per-patient fits of ``--model``, cohort
endpoints when a cohort table is given, and on request the hierarchical fit
(``--population``) and a dose-scenario simulation (``--simulate``). Writes CSV tables, PNG
figures and one self-contained ``report.html`` to ``--out``. Exit code 1 when a step failed,
2 when an input file cannot be read. The kinetics file is read with the options every
subcommand shares (``--mapping``, ``--assay``, ``--lloq``, ``--patients``), so a NONMEM file
without an assay column works with ``--assay qpcr``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from cartkinetics.commands._options import (
    StepLog,
    add_deprecated_alias,
    add_out_argument,
    add_read_arguments,
    out_dir,
    reading_options_given,
    resolve_deprecated,
)
from cartkinetics.commands.demo import (
    add_analysis_arguments,
    cluster_options,
    parse_only,
    print_summary,
)

HELP = "self-contained HTML report for your own files"

# a patient table with any of these columns can serve as the cohort table of the endpoints
_COHORT_COLUMNS = {"os_days", "efs_days", "best_response", "crs_grade", "icans_grade"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``report`` subcommand."""
    # KINETICS.csv is positional as everywhere; --kinetics K.csv still works, with a warning
    add_read_arguments(parser, required=False)
    add_deprecated_alias(parser, "--kinetics", "kinetics", metavar="K.csv")
    parser.add_argument("--cohort", metavar="C.csv",
                        help="cohort table for response, survival and safety endpoints "
                             "(default: --patients when it has outcome columns)")
    parser.add_argument("--model", default="stein2019",
                        help="library model of the fits (default stein2019; see "
                             "`cartkinetics models`)")
    parser.add_argument("--population", action="store_true",
                        help="add the hierarchical Bayesian fit (PyMC; minutes)")
    parser.add_argument("--simulate", action="store_true",
                        help="add a dose-scenario simulation of the model")
    parser.add_argument("--title", default="cartkinetics report", help="report title")
    add_out_argument(parser, "CSV tables, PNG figures and report.html",
                     default="cartkinetics-report")
    add_analysis_arguments(parser)


def _cohort_source(args: argparse.Namespace) -> str | None:
    from cartkinetics.errors import CartKineticsError

    if args.cohort:
        return args.cohort
    if not args.patients:
        return None
    try:
        with open(args.patients, encoding="utf-8-sig") as fh:
            header = fh.readline()
    except OSError as exc:
        raise CartKineticsError(f"cannot read the patient table ({exc})",
                                source=args.patients) from exc
    columns = {c.strip().strip('"').lower() for c in header.split(",")}
    return args.patients if columns & _COHORT_COLUMNS else None


def _kinetics_source(args: argparse.Namespace) -> Any:
    """The kinetics for run_analysis: the path, or with reading options the data read by them
    (a KineticsData: the report's Data section then shows the file's own row accounting)."""
    from cartkinetics.commands._options import read_from_args

    if not reading_options_given(args):
        return args.kinetics
    return read_from_args(args, announce=False)  # the report shows it


def run(args: argparse.Namespace) -> int:
    """Run the analysis on the user's files and print a summary."""
    from cartkinetics.commands.demo import use_agg
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.pipeline import AnalysisOptions, run_analysis

    started = time.perf_counter()
    resolve_deprecated(args, "kinetics", "--kinetics", "the file as first argument")
    if args.kinetics is None:
        raise CartKineticsError("give the kinetics file: cartkinetics report KINETICS.csv")
    for what in ("kinetics", "patients", "cohort"):
        path = getattr(args, what)
        if path and not Path(path).is_file():
            flag = "KINETICS.csv" if what == "kinetics" else f"--{what}"
            raise CartKineticsError(f"no such file ({flag})", source=path)
    out_dir(args)  # a folder, created (refuses a file name)
    use_agg()
    options = AnalysisOptions(
        model=args.model, assay=args.assay, population=args.population,
        simulation=args.simulate, quick=args.quick, draws=args.draws, chains=args.chains,
        **cluster_options(args), seed=args.seed, title=args.title, only=parse_only(args.only),
    )
    analysis = run_analysis(_kinetics_source(args), patients=args.patients,
                            cohort=_cohort_source(args), out=args.out, options=options,
                            log=StepLog(args))
    data_step = analysis.step("data")
    if data_step.status == "failed" and "CartKineticsError" in data_step.message:
        # unreadable input: the CLI's exit code for bad input, after the report said why
        print_summary(analysis, started)
        return 2
    return print_summary(analysis, started)
