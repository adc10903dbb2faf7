"""``cartkinetics exposure-response COHORT.csv --kinetics KINETICS.csv``: exposure against
response, toxicity and survival."""

from __future__ import annotations

import argparse

HELP = "exposure-response: Cmax/AUC against response, CRS/ICANS and survival (landmark)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``exposure-response`` subcommand."""
    parser.add_argument("cohort", metavar="COHORT.csv",
                        help="cohort table: one row per patient (best_response, crs_grade, "
                        "efs_days, efs_event, os_days, death, ...)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--kinetics", metavar="KINETICS.csv",
                     help="kinetics file (native long format or NONMEM/Monolix layout); NCA "
                     "is run on it")
    src.add_argument("--exposure", metavar="METRICS.csv",
                     help="a metrics table instead: patient (+ infusion, assay, unit) and "
                     "numeric metric columns, e.g. the table of 'cartkinetics nca --out'")
    from cartkinetics.commands._options import add_read_arguments

    # the reading options of every kinetics-reading subcommand (one definition)
    add_read_arguments(parser, positional=False, patients=False)
    parser.add_argument("--infusion", default="last",
                        help="infusion whose exposure is used: a number or 'last' (default: "
                        "each patient's last, the one the cohort's times count from)")
    parser.add_argument("--metrics", help="comma-separated metric columns (default cmax,auc_0_28)")
    parser.add_argument("--landmark", type=float, default=28.0,
                        help="landmark day of the survival analyses (default 28)")
    parser.add_argument("--groups", choices=("tertile", "median"), default="tertile",
                        help="exposure groups of the Kaplan-Meier curves (default tertile)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document with every analysis")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for the tables (CSV), summary, JSON and figures (PNG)")
    parser.add_argument("--no-figures", action="store_true", help="with --out: no PNG files")


def run(args: argparse.Namespace) -> int:
    """Run the analyses; print the summary (or JSON); write --out files. 0 on success."""
    import warnings

    from cartkinetics.errors import CartKineticsError
    from cartkinetics.exposure import exposure_response

    infusion: int | str = args.infusion
    if str(infusion).strip().lower() != "last":
        try:
            infusion = int(infusion)
        except ValueError as exc:
            raise CartKineticsError(
                f"--infusion {args.infusion!r}: give a number or 'last'") from exc
    else:
        infusion = "last"
    if args.kinetics is not None:
        from cartkinetics.commands._options import read_from_args

        # read as every subcommand reads (the row accounting goes to stderr)
        kinetics = read_from_args(args, args.kinetics)
    else:
        import pandas as pd

        try:
            kinetics = pd.read_csv(args.exposure)
        except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise CartKineticsError(f"cannot read the metrics table ({exc})",
                                    source=args.exposure) from exc
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the result states every caveat itself
        res = exposure_response(
            args.cohort, kinetics, assay=args.assay.lower() if args.assay else None,
            infusion=infusion, metrics=metrics, landmark_day=args.landmark, groups=args.groups,
        )
        if args.out:
            import matplotlib

            matplotlib.use("Agg")
            res.write(args.out, figures=not args.no_figures)
    if args.json:
        from cartkinetics.commands._options import print_json

        print_json(res)
        return 0
    print(res.summary())
    if args.out:
        print(f"\nwritten to {args.out}")
    return 0
