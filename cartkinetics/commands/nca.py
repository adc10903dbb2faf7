"""``cartkinetics nca KINETICS.csv``: non-compartmental analysis per series."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from cartkinetics.commands._options import (
    add_json_argument,
    add_out_argument,
    add_read_arguments,
    out_dir,
    read_from_args,
    selected_assay,
)

HELP = "non-compartmental analysis per series (Cmax, Tmax, AUC0-28, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``nca`` subcommand."""
    add_read_arguments(parser)
    add_json_argument(parser, "a list of records (patient, infusion, assay, cmax, tmax, "
                      "auc_0_28, auc_0_last, clast, tlast, n_obs, n_blq)")
    add_out_argument(parser, "nca.csv, the full table (+ --patients covariates)")


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
    out = out_dir(args)
    if out is not None:
        try:
            data.join_patients(table).to_csv(out / "nca.csv", index=False)  # + covariates
        except OSError as exc:
            raise CartKineticsError(f"cannot write the NCA table ({exc})", source=str(out)) from exc
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
