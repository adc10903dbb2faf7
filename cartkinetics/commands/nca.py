"""``cartkinetics nca KINETICS.csv``: non-compartmental analysis per series."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cartkinetics.commands._options import (
    add_json_argument,
    add_out_argument,
    add_read_arguments,
    out_dir,
    print_json,
    read_from_args,
    selected_assay,
)

HELP = "non-compartmental analysis per series (Cmax, Tmax, AUC0-28, ...)"


def add_nca_arguments(parser: argparse.ArgumentParser) -> None:
    """NCA options (shared by nca and compare)."""
    parser.add_argument(
        "--blq-rule",
        default="pknca",
        metavar="RULE",
        help="BLQ values by position: 'pknca' (default: before the first quantifiable value "
        "0, between dropped, after the last 0), 'phoenix' (before Tmax 0, after Tmax "
        "dropped) or JSON '{\"first\": \"zero\", \"middle\": \"drop\", \"last\": \"zero\"}'",
    )
    parser.add_argument(
        "--auc-days",
        default="28,84",
        metavar="D,D",
        help="days D of the partial areas auc_0_D (default 28,84)",
    )


def nca_from_args(data: Any, args: argparse.Namespace, assay: str | None = None) -> Any:
    """NCAResult of ``data`` with the options of :func:`add_nca_arguments`."""
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.noncompartmental import nca

    rule: Any = args.blq_rule
    if rule.strip().startswith("{"):
        try:
            rule = json.loads(rule)
        except json.JSONDecodeError as exc:
            raise CartKineticsError(f"--blq-rule is not valid JSON ({exc})") from exc
    try:
        days = [float(x) for x in str(args.auc_days).split(",") if x.strip()]
    except ValueError as exc:
        raise CartKineticsError(f"--auc-days needs days separated by commas ({exc})") from exc
    return nca(data, assay=assay, blq_rule=rule, auc_days=days)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``nca`` subcommand."""
    add_read_arguments(parser)
    add_nca_arguments(parser)
    add_json_argument(parser, "a list of records, one per series, with every column of the "
                      "table (units, BLQ rule and notes included)")
    add_out_argument(parser, "nca.csv, the full table (+ --patients covariates)")


def run(args: argparse.Namespace) -> int:
    """Run NCA and print the table (or JSON records); 0 on success."""
    from cartkinetics.errors import CartKineticsError

    data = read_from_args(args, announce=bool(args.json))  # the table prints it otherwise
    result = nca_from_args(data, args, assay=selected_assay(data, args))
    out = out_dir(args)
    if out is not None:
        try:
            data.join_patients(result.to_frame()).to_csv(out / "nca.csv", index=False)
        except OSError as exc:
            raise CartKineticsError(f"cannot write the NCA table ({exc})", source=str(out)) from exc
    if args.json:
        print_json(result.records())
        return 0
    print(data.describe())
    print()
    print(result.summary())
    return 0
