"""``cartkinetics endpoints COHORT.csv``: response, survival, safety (and kinetics) report."""

from __future__ import annotations

import argparse
import sys

from cartkinetics.errors import CartKineticsError

HELP = "cohort endpoints: response, survival, safety, kinetics"


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated days, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("give at least one landmark day")
    return values


def _codes(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _read_table(path: str | None):
    if path is None:
        return None
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CartKineticsError(f"cannot read the outcomes table ({exc})", source=path) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``endpoints`` subcommand."""
    parser.add_argument("cohort", help="cohort table (CSV, one row per patient)")
    parser.add_argument("--kinetics", metavar="KINETICS.csv",
                        help="kinetics data set: NCA, then first vs second infusion")
    parser.add_argument("--kinetics-table", metavar="OUTCOMES.csv",
                        help="per-infusion outcomes (patient, infusion, cmax, tmax, auc_0_28), "
                             "e.g. from fits, compared instead of NCA")
    parser.add_argument("--kinetics-assay", metavar="ASSAY",
                        help="assay to compare when the kinetics set has several "
                             "(default qpcr when present)")
    parser.add_argument("--landmarks", type=_floats, default=(365.0, 730.0), metavar="DAYS",
                        help="landmark days for survival estimates (default 365,730)")
    parser.add_argument("--orr", type=_codes, default=("CR", "CRi", "PR"), metavar="CODES",
                        help="responses counted in the ORR (default CR,CRi,PR)")
    parser.add_argument("--by", metavar="COLUMN",
                        help="subgroups by a column (log-rank for OS/EFS when two groups)")
    parser.add_argument("--out", metavar="DIR",
                        help="write CSV and markdown tables, JSON and PNG figures here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-figures", action="store_true", help="with --out: skip PNGs")


def run(args: argparse.Namespace) -> int:
    """Compute the endpoints and print the summary (or JSON); 0 on success."""
    from cartkinetics.endpoints import cohort_endpoints

    result = cohort_endpoints(
        args.cohort,
        kinetics=args.kinetics,
        kinetics_table=_read_table(args.kinetics_table),
        kinetics_assay=args.kinetics_assay,
        landmarks=args.landmarks,
        orr=args.orr,
        by=args.by,
    )
    if args.out:
        try:
            paths = result.write(args.out, figures=not args.no_figures)
        except OSError as exc:
            raise CartKineticsError(f"cannot write output ({exc})", source=args.out) from exc
        if not args.json:
            print(f"wrote {len(paths)} files to {args.out}", file=sys.stderr)
    if args.json:
        print(result.to_json())
    else:
        print(result.summary())
        print()
        print(result.to_markdown())
    return 0
