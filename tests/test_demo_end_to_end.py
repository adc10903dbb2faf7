"""``cartkinetics demo --quick`` end to end in a temporary folder (slow: ~1-2 minutes).

Checks the printed step lines and summary, the files, the report's sections and embedded
figures, the hierarchical infusion effect against the truth the example was simulated with
(typical Cmax x 2.5 and Tmax 14 -> 11 days, ``cartkinetics/example/README.md``) and, where
Chromium is installed, that the report renders with every figure loaded.
"""

from __future__ import annotations

import importlib.util
import json
import re

import pandas as pd
import pytest

from cartkinetics.cli import main
from cartkinetics.pipeline import STEPS
from cartkinetics.report import SECTIONS
from cartkinetics.testing.report_check import CHROMIUM, embedded_pngs, png_size, render_check

pytestmark = pytest.mark.slow
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
HAVE_PYMC = importlib.util.find_spec("pymc") is not None


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "cartkinetics-demo"
    capture = pytest.MonkeyPatch()
    import io
    import sys

    buf = io.StringIO()
    capture.setattr(sys, "stdout", buf)
    try:
        code = main(["demo", "--quick", "--out", str(out)])
    finally:
        capture.undo()
    return code, buf.getvalue(), out


def test_demo_exit_code_and_step_lines(demo):
    code, text, out = demo
    assert code == 0, text
    n = len(STEPS)
    lines = re.findall(rf"^\[(\d)/{n}\] (.+?) \.\.\. (?:(SKIPPED|FAILED) )?([\d.]+) s", text,
                       re.M)
    assert [int(k) for k, *_ in lines] == list(range(1, n + 1))
    assert all(flag == "" for *_, flag, _ in lines), text
    assert "SYNTHETIC" in text and "First vs second infusion: 7 patients" in text
    assert text.rstrip().endswith(str((out / "report.html").resolve()))


def test_demo_files(demo):
    _, _, out = demo
    for name in ("observations.csv", "nca.csv", "compare_pairs.csv", "compare.json",
                 "paired_plot.png", "fits/fits.csv", "fits/fit_outcomes.csv", "fits/fits.png",
                 "endpoints/efficacy.csv", "endpoints/km_os.png", "endpoints/swimmer.png",
                 "simulation/summary.csv", "simulation/bands.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "compare.json").read_text())["n_pairs"] == 7
    fits = pd.read_csv(out / "fits" / "fits.csv")
    assert len(fits) == 14 and set(fits["patient"]) == {f"P0{i}" for i in range(1, 8)}
    sim = pd.read_csv(out / "simulation" / "summary.csv")
    assert len(sim) == 3 and (sim["n_failed"] == 0).all()
    # dose exponent 0.5: Cmax medians rise with the dose level (1, 3.1, 5 x 10^6/kg)
    assert sim["cmax_median"].is_monotonic_increasing


def test_demo_report_sections_and_figures(demo):
    _, _, out = demo
    html = (out / "report.html").read_text()
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in html
    assert "This step failed" not in html
    # paired x2, fits, KM x2, swimmer, simulation x2 (+ population: 4)
    # (+ population: 4 and the PIT residuals); the exposure-response section embeds its own
    expected = 8 + (5 if HAVE_PYMC else 0)
    er = re.search(r'<h3 id="exposure-response">.*?(?=<h2 )', html, re.S)
    assert er is not None
    pngs = embedded_pngs(html.replace(er.group(0), ""))
    assert len(pngs) == expected
    written = {p.read_bytes() for p in out.rglob("*.png")}
    assert set(pngs) <= written  # each embedded figure is a PNG file of the output
    for png in pngs:
        w, h = png_size(png)
        assert w > 200 and h > 100


@pytest.mark.skipif(not HAVE_PYMC, reason="PyMC not installed")
def test_demo_population_recovers_infusion_effect(demo):
    _, _, out = demo
    res = json.loads((out / "population" / "population_results.json").read_text())
    eff = res["infusion_effect"]
    # the example was simulated with typical Cmax x 2.5 and Tmax 14 -> 11 days
    assert eff["cmax_ratio"]["ci_low"] < 2.5 < eff["cmax_ratio"]["ci_high"]
    assert eff["cmax_ratio"]["ci_low"] > 1.0
    assert eff["tmax_difference"]["ci_low"] < -3.0 < eff["tmax_difference"]["ci_high"]
    assert res["n_patients"] == 7 and res["n_series"] == 14


@needs_chromium
def test_demo_report_renders(demo, tmp_path):
    _, _, out = demo
    images, console = render_check(out / "report.html", tmp_path)
    assert len(images) == (out / "report.html").read_text().count("<img ")
    assert all(c and w > 100 and h > 100 for w, h, c in images)
    assert console == []
