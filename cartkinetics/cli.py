"""The ``cartkinetics`` command: one entry point, one module per subcommand.

Each subcommand lives in ``cartkinetics/commands/<name>.py`` and defines
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their subcommand runs, so ``cartkinetics --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module name in cartkinetics.commands, with one-line help
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole job on the bundled (synthetic) example cohort"),
    "nca": ("nca", "non-compartmental analysis per series (Cmax, Tmax, AUC0-28, ...)"),
    "compare": ("compare", "first versus second infusion, paired (NCA-based)"),
    "fit": ("fit", "fit each series with a model (lmfit, BLQ by M3)"),
    "fit-population": ("fit_population", "hierarchical Bayesian fit with PyMC (infusion effect)"),
    "endpoints": ("endpoints", "cohort endpoints: response, survival, safety, kinetics"),
    "exposure-response": ("exposure_response", "exposure against response, toxicity and "
                          "survival (logistic/Firth, landmark KM and Cox)"),
    "simulate": ("simulate", "dose-scenario simulation of virtual populations"),
    "validate": ("validate", "validation studies of the fits (coverage, SBC, bootstrap) on Dask"),
    "report": ("report", "self-contained HTML report for your own files"),
    "models": ("models", "list the model library"),
    "bench": ("bench", "benchmarks against peer tools"),
}


def _available() -> dict[str, tuple[str, str]]:
    """Subcommands whose module exists (lets the package grow one command at a time)."""
    import importlib.util

    out = {}
    for name, (mod, helptext) in COMMANDS.items():
        if importlib.util.find_spec(f"cartkinetics.commands.{mod}") is not None:
            out[name] = (mod, helptext)
    return out


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subparser per available subcommand."""
    from cartkinetics import __version__
    from cartkinetics.commands._options import Parser

    parser = Parser(
        prog="cartkinetics",
        description="CAR-T cellular kinetics: models, fits, endpoints and simulation.",
    )
    parser.add_argument("--version", action="version", version=f"cartkinetics {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # subparsers: Parser too
    for name, (mod, helptext) in _available().items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_module=mod)
        # argument definitions are cheap; the heavy imports happen in run()
        importlib.import_module(f"cartkinetics.commands.{mod}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``cartkinetics`` command with ``argv``; return the exit code (2 on bad input)."""
    from cartkinetics.errors import CartKineticsError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    module = importlib.import_module(f"cartkinetics.commands.{args._module}")
    try:
        return int(module.run(args) or 0)
    except CartKineticsError as exc:
        print(f"cartkinetics {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
