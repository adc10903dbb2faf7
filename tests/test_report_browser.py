"""The HTML report rendered in headless Chromium: every figure loads, no console message.

Skipped where no ``chromium`` binary is installed (Debian package ``chromium``). The page is
loaded from a copy with a small script appended that, after the ``load`` event, writes each
image's natural size into a ``data-check`` attribute; ``--dump-dom`` prints the DOM after the
page settled and ``--enable-logging=stderr`` prints console messages as ``CONSOLE`` lines.
"""

from __future__ import annotations

import pytest

from cartkinetics import example
from cartkinetics.pipeline import AnalysisOptions, run_analysis
from cartkinetics.testing.report_check import CHROMIUM, render_check

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")


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
