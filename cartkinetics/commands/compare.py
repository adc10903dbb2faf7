"""``cartkinetics compare KINETICS.csv``: first versus second infusion, paired (NCA-based).

Exit status: 0 when pairs were compared, 1 when no patient has both infusions (the result,
with its ``warning``, is still printed; the warning also goes to stderr), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from cartkinetics.commands._options import (
    add_json_argument,
    add_out_argument,
    add_read_arguments,
    out_dir,
    print_json,
    read_from_args,
    selected_assay,
)
from cartkinetics.commands.nca import add_nca_arguments, nca_from_args

HELP = "first versus second infusion, paired (NCA-based)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``compare`` subcommand."""
    add_read_arguments(parser)
    add_nca_arguments(parser)
    parser.add_argument(
        "--metrics",
        default="cmax,tmax,auc_0_28",
        metavar="M,M",
        help="NCA columns to compare (default cmax,tmax,auc_0_28; e.g. auc_0_84, half_life, "
        "doubling_time, tlast): levels, areas and half-lives by geometric mean ratio, days "
        "by difference",
    )
    add_json_argument(parser, "n_pairs, one entry per metric (median_first, median_second, "
                      "ratio_gm or median_difference, ci_low, ci_high, p_value, test, kind, "
                      "unit), first, second, assay, unit, basis, rule and warning")
    add_out_argument(parser, "pairs.csv, the per-patient pairs")


def run(args: argparse.Namespace) -> int:
    """Run NCA, compare the infusions and print the result; 0 with pairs, 1 without."""
    from cartkinetics.compare import compare_infusions
    from cartkinetics.errors import CartKineticsError

    data = read_from_args(args)
    table = nca_from_args(data, args).to_frame()
    assays = sorted(table["assay"].unique())
    assay = selected_assay(data, args)  # never another assay than the one asked for
    if assay is None and len(assays) > 1:
        raise CartKineticsError(
            f"the file holds several assays {assays}: choose one with --assay", source=args.kinetics
        )
    metrics = [m.strip() for m in str(args.metrics).split(",") if m.strip()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no pairs: said below, once
        result = compare_infusions(table, assay=assay, metrics=metrics, basis="NCA")
    out = out_dir(args)
    if out is not None:
        try:
            result.pairs.to_csv(out / "pairs.csv", index=False)
        except OSError as exc:
            raise CartKineticsError(f"cannot write the pairs ({exc})", source=str(out)) from exc
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.summary())
    if not result.ok:
        print(f"cartkinetics compare: {result.warning}", file=sys.stderr)
        return 1
    return 0
