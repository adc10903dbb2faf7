"""``cartkinetics compare KINETICS.csv``: first versus second infusion, paired (NCA-based)."""

from __future__ import annotations

import argparse
import json

from cartkinetics.commands._options import (
    add_json_argument,
    add_out_argument,
    add_read_arguments,
    out_dir,
    read_from_args,
    selected_assay,
)

HELP = "first versus second infusion, paired (NCA-based)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``compare`` subcommand."""
    add_read_arguments(parser)
    add_json_argument(parser, "n_pairs and, for cmax, tmax and auc_0_28: median_first, "
                      "median_second, ratio_gm (median_difference for tmax), ci_low, "
                      "ci_high, p_value, test")
    add_out_argument(parser, "pairs.csv, the per-patient pairs")


def run(args: argparse.Namespace) -> int:
    """Run NCA, compare the infusions and print the result; 0 on success."""
    from cartkinetics.compare import compare_infusions, compare_json, format_compare
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.noncompartmental import nca

    data = read_from_args(args)
    table = nca(data)
    assays = sorted(table["assay"].unique())
    assay = selected_assay(data, args)  # never another assay than the one asked for
    if assay is None and len(assays) > 1:
        raise CartKineticsError(
            f"the file holds several assays {assays}: choose one with --assay", source=args.kinetics
        )
    result = compare_infusions(table, assay=assay)
    out = out_dir(args)
    if out is not None:
        try:
            result["pairs"].to_csv(out / "pairs.csv", index=False)
        except OSError as exc:
            raise CartKineticsError(f"cannot write the pairs ({exc})", source=str(out)) from exc
    if args.json:
        print(json.dumps(compare_json(result), indent=1))
        return 0
    print(format_compare(result))
    return 0
