"""``cartkinetics nca KINETICS.csv``: non-compartmental analysis per series."""

from __future__ import annotations

import argparse
import json
import math
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``nca`` subcommand."""
    add_read_arguments(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a list of records (patient, infusion, assay, cmax, tmax, "
        "auc_0_28, auc_0_last, clast, tlast, n_obs, n_blq)",
    )
    parser.add_argument(
        "--out", metavar="NCA.csv", help="also write the full table (+ --patients covariates)"
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "NA" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def run(args: argparse.Namespace) -> int:
    """Run NCA and print the table (or JSON records); 0 on success."""
    from cartkinetics.errors import CartKineticsError
    from cartkinetics.noncompartmental import BLQ_RULE, JSON_KEYS, nca, nca_records

    data = read_from_args(args)
    table = nca(data, assay=selected_assay(data, args))
    if args.out:
        try:
            data.join_patients(table).to_csv(args.out, index=False)  # + covariates, if given
        except OSError as exc:
            raise CartKineticsError(f"cannot write the NCA table ({exc})", source=args.out) from exc
    if args.json:
        print(json.dumps(nca_records(table), indent=1))
        return 0
    print(data.describe())
    print()
    cols = list(JSON_KEYS)  # the printed table has the columns of the JSON records
    rows = [[_fmt(v) for v in r] for r in table[cols].itertuples(index=False)]
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)
    ]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))
    notes = table.loc[table["note"] != "", ["patient", "infusion", "assay", "note"]]
    for r in notes.itertuples(index=False):
        print(f"note: {r.patient} infusion {r.infusion} {r.assay}: {r.note}")
    print(f"BLQ rule: {BLQ_RULE}. Units: levels in the assay unit, days, AUC unit x day.")
    return 0
