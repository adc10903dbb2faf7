"""``cartkinetics bench``: the benchmark suite of ``benchmarks/`` (``python -m benchmarks``).

The benchmarks live in the repository, not in the installed package: this command finds
``benchmarks/__main__.py`` next to the package (a clone or an editable install) or in the
current folder and runs its ``run(args)``, the same code as ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HELP = "benchmarks against peer tools"


def _locate() -> Path | None:
    import cartkinetics

    for base in (Path(cartkinetics.__file__).resolve().parents[1], Path.cwd()):
        candidate = base / "benchmarks" / "__main__.py"
        if candidate.is_file():
            return candidate
    return None


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks.__main__", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a file we just found
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``bench`` subcommand (those of ``python -m benchmarks``)."""
    parser.add_argument("--quick", action="store_true",
                        help="quick flags of each script and a ~4.5 minute budget")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--only", metavar="NAME,...",
                        help="subset (printed, not recorded): import, compile, demo, solvers, "
                             "fit, population, simulate")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="total wall-time budget; scripts are stopped at their share")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not write RESULTS.md, RESULTS.json, the docs page")


def run(args: argparse.Namespace) -> int:
    """Run the suite; 2 when the benchmarks folder is not found."""
    path = _locate()
    if path is None:
        print("cartkinetics bench: the benchmarks/ folder is not installed with the package; "
              "run it from a clone of the repository (python -m benchmarks)", file=sys.stderr)
        return 2
    return int(_load(path).run(args))
