"""The HTML report rendered in headless Chromium: every figure loads, no console message.

Skipped where no ``chromium`` binary is installed (Debian package ``chromium``). The page is
loaded from a copy with a small script appended that, after the ``load`` event, writes each
image's natural size into a ``data-check`` attribute; ``--dump-dom`` prints the DOM after the
page settled and ``--enable-logging=stderr`` prints console messages as ``CONSOLE`` lines.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cartkinetics import example
from cartkinetics.pipeline import AnalysisOptions, run_analysis

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")

_PROBE = (
    "<script>window.addEventListener('load',()=>{document.body.setAttribute('data-check',"
    "JSON.stringify([...document.images].map(i=>[i.naturalWidth,i.naturalHeight,i.complete])"
    "))});</script>"
)


def render_check(page: Path, tmp: Path) -> tuple[list[list[float]], list[str]]:
    """Load ``page`` in headless Chromium; return per-image [width, height, complete] and
    the console lines that came from the page."""
    probe = tmp / f"probe_{page.stem}.html"
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-extensions", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=10000", f"--user-data-dir={tmp / 'chromium-profile'}",
           "--dump-dom", probe.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'data-check="([^"]*)"', proc.stdout)
    assert found, f"no probe result in the DOM; chromium stderr:\n{proc.stderr[-2000:]}"
    images = json.loads(found.group(1).replace("&quot;", '"'))
    console = [line for line in proc.stderr.splitlines()
               if "CONSOLE" in line and probe.name in line]
    return images, console


@needs_chromium
def test_checker_sees_broken_image_and_console_error(tmp_path):
    # positive control: the check fails where it should
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="x" src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom")</script></body></html>')
    images, console = render_check(page, tmp_path)
    assert images == [[0, 0, True]]
    assert any("boom" in line for line in console)


@needs_chromium
def test_report_renders_in_chromium(tmp_path):
    a = run_analysis(example.kinetics_path(), patients=example.patients_path(),
                     cohort=example.patients_path(), out=tmp_path / "out", log=None,
                     options=AnalysisOptions(only=("nca", "compare", "endpoints", "exposure")))
    assert a.report_path is not None
    n_img = a.report_path.read_text().count("<img ")
    images, console = render_check(a.report_path, tmp_path)
    # paired plot, two Kaplan-Meier curves, swimmer plot; exposure-response: two
    # probability-of-outcome curves, two landmark Kaplan-Meier plots, the forest plot
    assert len(images) == n_img == 9
    for width, height, complete in images:
        assert complete and width > 100 and height > 100
    assert console == []
