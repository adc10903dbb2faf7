"""``cartkinetics nca KINETICS.csv``: non-compartmental analysis per series."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "non-compartmental analysis per series (Cmax, Tmax, AUC0-28, ...)"


def add_read_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that say how to read a kinetics file (shared by nca and compare)."""
    parser.add_argument(
        "kinetics",
        metavar="KINETICS.csv",
        help="kinetics file: native long format or NONMEM/Monolix layout",
    )
    parser.add_argument(
        "--mapping",
        metavar="JSON",
        help="column mapping and reading options, a JSON file or object, e.g. "
        '\'{"columns": {"TIME": "time", "DV": "y"}, "filter": {"y_ID": 1}, '
        '"blq_values": {"0.2": 0.2}, "assay": "qpcr"}\'',
    )
    parser.add_argument(
        "--assay",
        help="assay of every row when the file has no assay column "
        "(qpcr or flow); with several assays: the one to analyse",
    )
    parser.add_argument("--lloq", type=float, help="limit of quantification for rows without one")
    parser.add_argument("--patients", metavar="PATIENTS.csv", help="patient covariate table")


def read_from_args(args: argparse.Namespace) -> Any:
    """KineticsData from the shared options."""
    from cartkinetics.data import load_mapping, read_kinetics

    mapping = load_mapping(args.mapping) if args.mapping else None
    return read_kinetics(
        args.kinetics, mapping=mapping, assay=args.assay, lloq=args.lloq, patients=args.patients
    )


def selected_assay(data: Any, args: argparse.Namespace) -> str | None:
    """The ``--assay`` asked for (lower case), checked against the series read; None if unset.

    Raises CartKineticsError when the file holds no series of that assay, rather than
    printing an empty table or analysing another assay.
    """
    from cartkinetics.errors import CartKineticsError

    if args.assay is None:
        return None
    obs = data.observations
    present = sorted(obs.loc[obs["status"] != "excluded", "assay"].unique())
    assay = str(args.assay).strip().lower()
    if assay not in present:
        raise CartKineticsError(
            f"no {args.assay} series in the file: it holds {present}", source=args.kinetics
        )
    return assay


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
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a list of records, one per series, with every column of the table "
        "(units, BLQ rule and notes included)",
    )
    parser.add_argument(
        "--out", metavar="NCA.csv", help="also write the full table (+ --patients covariates)"
    )


def run(args: argparse.Namespace) -> int:
    """Run NCA and print the table (or JSON records); 0 on success."""
    from cartkinetics.errors import CartKineticsError

    data = read_from_args(args)
    result = nca_from_args(data, args, assay=selected_assay(data, args))
    if args.out:
        try:
            data.join_patients(result.to_frame()).to_csv(args.out, index=False)
        except OSError as exc:
            raise CartKineticsError(f"cannot write the NCA table ({exc})", source=args.out) from exc
    if args.json:
        print(json.dumps(result.records(), indent=1))
        return 0
    print(data.describe())
    print()
    print(result.summary())
    return 0
