"""``cartkinetics demo``: the whole job on the bundled SYNTHETIC example cohort.

First version: load the example (kinetics + patient table), NCA per series, first versus
second infusion, write the tables and the paired plot to ``--out`` and print a summary.
Later capabilities (fits, endpoints, simulation) add their steps here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "run the whole job on the bundled (synthetic) example cohort"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``demo`` subcommand."""
    parser.add_argument(
        "--out",
        default="cartkinetics-demo",
        metavar="DIR",
        help="output folder (default ./cartkinetics-demo)",
    )


def run_kinetics(out: Path) -> dict[str, Any]:
    """NCA and the paired comparison of the example; writes CSV, JSON and PNG into ``out``.

    Returns
    -------
    dict
        ``data`` (KineticsData), ``nca`` (DataFrame), ``compare`` (dict), ``files`` (paths).
    """
    from matplotlib.figure import Figure

    from cartkinetics import example
    from cartkinetics.compare import compare_infusions, compare_json
    from cartkinetics.nca import nca
    from cartkinetics.plots import paired_plot

    data = example.load()
    table = nca(data)
    result = compare_infusions(table)
    files = {
        "observations": out / "observations.csv",
        "nca": out / "nca.csv",
        "pairs": out / "compare_pairs.csv",
        "compare": out / "compare.json",
        "paired_plot": out / "paired_plot.png",
    }
    data.observations.to_csv(files["observations"], index=False)
    data.join_patients(table).to_csv(files["nca"], index=False)
    result["pairs"].to_csv(files["pairs"], index=False)
    files["compare"].write_text(json.dumps(compare_json(result), indent=1))
    fig = Figure(figsize=(10.5, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    paired_plot(result, ax=axes, unit="copies/ug")
    fig.suptitle("SYNTHETIC example: first vs second CAR-T infusion (NCA)", fontsize=10)
    fig.savefig(files["paired_plot"], dpi=120)
    return {"data": data, "nca": table, "compare": result, "files": files}


def run(args: argparse.Namespace) -> int:
    """Run the demo and print a summary; 0 on success."""
    from cartkinetics.compare import format_compare
    from cartkinetics.errors import CartKineticsError

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CartKineticsError(
            f"cannot create the output folder ({exc})", source=str(out)
        ) from exc
    print("cartkinetics demo on the bundled SYNTHETIC example cohort (not patient data)")
    res = run_kinetics(out)
    print(res["data"].describe())
    print()
    print(format_compare(res["compare"]))
    print()
    print(f"wrote to {out}/: " + ", ".join(p.name for p in res["files"].values()))
    return 0
