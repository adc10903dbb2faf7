"""``cartkinetics endpoints COHORT.csv``: response, survival, safety (and kinetics) report."""

from __future__ import annotations

import argparse
import sys

from cartkinetics.commands._options import (
    add_deprecated_alias,
    add_json_argument,
    add_out_argument,
    add_quiet_argument,
    add_read_arguments,
    out_dir,
    read_from_args,
    resolve_deprecated,
    step,
)
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
    add_read_arguments(parser, positional=False, patients=False)
    add_deprecated_alias(parser, "--kinetics-assay", "assay")
    parser.add_argument("--landmarks", type=_floats, default=(365.0, 730.0), metavar="DAYS",
                        help="landmark days for survival estimates (default 365,730)")
    parser.add_argument("--orr", type=_codes, default=("CR", "CRi", "PR"), metavar="CODES",
                        help="responses counted in the ORR (default CR,CRi,PR)")
    parser.add_argument("--by", metavar="COLUMN",
                        help="subgroups by a column (log-rank for OS/EFS when two groups)")
    add_out_argument(parser, "CSV and markdown tables, JSON and PNG figures")
    add_json_argument(parser, "the endpoints (rates, survival, safety, kinetics)")
    parser.add_argument("--no-figures", action="store_true", help="with --out: skip PNGs")
    add_quiet_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Compute the endpoints and print the summary (or JSON); 0 on success."""
    from cartkinetics.endpoints import cohort_endpoints

    resolve_deprecated(args, "assay", "--kinetics-assay", "--assay")
    if args.kinetics is None and (args.mapping or args.lloq is not None):
        raise CartKineticsError("--mapping and --lloq say how to read --kinetics: "
                                "give the kinetics file with --kinetics")
    # the kinetics file is read with the reading options every subcommand shares
    kinetics = read_from_args(args, args.kinetics) if args.kinetics else None
    with step("endpoints", args):
        result = cohort_endpoints(
            args.cohort,
            kinetics=kinetics,
            kinetics_table=_read_table(args.kinetics_table),
            kinetics_assay=args.assay,
            landmarks=args.landmarks,
            orr=args.orr,
            by=args.by,
        )
    out = out_dir(args)
    if out is not None:
        try:
            with step("writing tables and figures", args):
                paths = result.write(out, figures=not args.no_figures)
        except OSError as exc:
            raise CartKineticsError(f"cannot write output ({exc})", source=str(out)) from exc
        print(f"wrote {len(paths)} files to {out}", file=sys.stderr)
    if args.json:
        print(result.to_json())
    else:
        print(result.summary())
        print()
        print(result.to_markdown())
    return 0
