"""The Python examples of docs/nca.md and docs/compare.md run, and say what they print."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def _blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    out = []
    for indent, body in _BLOCK.findall(text):
        lines = [ln[len(indent):] if ln.startswith(indent) else ln for ln in body.splitlines()]
        out.append("\n".join(lines))
    return out


@pytest.mark.parametrize("page", ["nca.md", "compare.md"])
def test_python_blocks_run(page):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = _blocks(page)
    assert blocks
    for code in blocks:
        ns: dict = {}
        exec(compile(code, f"{page}", "exec"), ns)  # noqa: S102
        plt.close("all")


def test_the_numbers_the_docs_quote():
    import cartkinetics as ck
    from cartkinetics import example

    ns: dict = {}
    exec(_blocks("nca.md")[1], ns)  # noqa: S102 - the issue-16 example
    assert round(ns["r"]["auc_0_28"], 1) == 157444.2 and ns["r"]["auc_unit"] == "copies*day/ug"
    res = ck.nca(example.kinetics_path())
    cmp = ck.compare_infusions(res, metrics=("cmax", "tmax", "auc_0_28", "auc_0_84",
                                             "half_life", "doubling_time"))
    m = cmp.metrics
    assert round(m["cmax"]["ratio_gm"], 2) == 3.20
    assert round(m["auc_0_84"]["ratio_gm"], 2) == 2.56 and m["auc_0_84"]["n"] == 3
    assert m["auc_0_84"]["n_truncated_excluded"] == 4
    assert round(m["half_life"]["median_second"], 1) == 92.2
    assert round(m["doubling_time"]["ratio_gm"], 3) == 0.629
    assert "NCAResult(14 series, 7 patients" in repr(res)
