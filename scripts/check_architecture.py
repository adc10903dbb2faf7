"""Architecture checks of issue #17 (exit 1 when one fails).

* no private name (``_x``) imported from another cartkinetics module (sibling submodules
  such as ``solvers._kernels`` imported as modules are allowed);
* no model name compared in ``cartkinetics/fit`` or ``cartkinetics/simulate``;
* no solver status number written as a literal next to a status variable outside
  ``solvers/status.py``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "cartkinetics"
MODEL_NAMES = ("stein2019", "stein2019_ode", "kimmel2021", "liu2022", "liu2022_cd19neg",
               "barros2021", "singh2021", "hardiansyah2019", "kirouac2023")
STATUS_LITERAL = re.compile(
    r"status\w*(\[[^]]*\])? *(==|!=|>=|<=) *-?\d\b|status\w* *= *-?\d\b|return -?\d, t, ie")


def main() -> int:
    problems: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "cartkinetics"):
                for alias in node.names:
                    name = alias.name
                    is_module = (ROOT.parent / (node.module.replace(".", "/") + f"/{name}.py")
                                 ).exists()
                    if name.startswith("_") and not name.startswith("__") and not is_module:
                        problems.append(f"{rel}:{node.lineno}: imports private {node.module}."
                                        f"{name}")
            if (rel.parts[1] in ("fit", "simulate") and isinstance(node, ast.Compare)
                    and any(isinstance(c, ast.Constant) and c.value in MODEL_NAMES
                            for c in [node.left, *node.comparators])):
                problems.append(f"{rel}:{node.lineno}: compares a model name")
        if rel.as_posix() != "cartkinetics/solvers/status.py":
            for i, line in enumerate(text.splitlines(), 1):
                if STATUS_LITERAL.search(line.split("#")[0]):
                    problems.append(f"{rel}:{i}: status literal: {line.strip()}")
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
