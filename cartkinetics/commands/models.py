"""``cartkinetics models``: list the model library with references (``--json`` for machines)."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "list the model library"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="show one model in detail (parameters, sets)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _describe(name: str) -> dict:
    from cartkinetics import models

    return models.get(name).info()


def run(args: argparse.Namespace) -> int:
    from cartkinetics import models

    names = [args.name] if args.name else models.available()
    infos = [_describe(n) for n in names]
    if args.json:
        json.dump(infos if not args.name else infos[0], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    for info in infos:
        kind = "closed form" if info["closed_form"] else f"ODE, {len(info['states'])} states"
        out.write(f"{info['name']}  ({kind}, {len(info['parameters'])} parameters)\n")
        out.write(f"  {info['description']}\n")
        out.write(f"  reference:   {info['reference']}\n")
        out.write(f"  population:  {info['population']}\n")
        obs = ", ".join(f"{k} [{u}]" for k, u in info["observations"].items())
        out.write(f"  observed:    {obs}\n")
        if info["parameter_sets"]:
            sets = info["parameter_sets"]
            shown = ", ".join(sets[:6]) + (f", ... ({len(sets)} sets)" if len(sets) > 6 else "")
            out.write(f"  sets:        {shown}\n")
        if args.name:
            out.write("  parameters:\n")
            for p in info["parameters"]:
                out.write(
                    f"    {p['name']:<10} {p['value']:<12.6g} {p['unit']:<24} {p['source']}\n"
                )
            if info["bsv_omega2"]:
                out.write(f"  BSV (omega^2 of log-parameters): {info['bsv_omega2']}\n")
            if info["residual_sd"] is not None:
                out.write(f"  residual SD: {info['residual_sd']} ({info['residual_model']})\n")
            if info.get("equations"):
                out.write("  equations:\n")
                for line in info["equations"]:
                    out.write(f"    {line}\n")
            if info["notes"]:
                out.write(f"  notes: {info['notes']}\n")
        out.write("\n")
    return 0
