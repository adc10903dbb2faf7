"""Checks of a written HTML report, independent of the code that drew it.

:func:`render_check` loads a page in headless Chromium (where installed) and returns each
image's natural size and the page's console messages; :func:`embedded_pngs` and
:func:`png_size` read the figures embedded in the HTML and their sizes from the PNG header (no
matplotlib). Used by the report tests and handy for checking a report before sending it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

__all__ = ["CHROMIUM", "embedded_pngs", "png_size", "render_check"]

#: the headless browser used by :func:`render_check` (None where none is installed)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

_PROBE = (
    "<script>window.addEventListener('load',()=>{document.body.setAttribute('data-check',"
    "JSON.stringify([...document.images].map(i=>[i.naturalWidth,i.naturalHeight,i.complete])"
    "))});</script>"
)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height (pixels) from the PNG IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def embedded_pngs(html: str) -> list[bytes]:
    """The PNG figures embedded in ``html`` as base64 data URIs, in page order."""
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def render_check(page: Path, tmp: Path) -> tuple[list[list[float]], list[str]]:
    """Load ``page`` in headless Chromium; return per-image [width, height, complete] and
    the console lines that came from the page.

    The page is loaded from a copy in ``tmp`` with a small script appended that, after the
    ``load`` event, writes each image's natural size into a ``data-check`` attribute;
    ``--dump-dom`` prints the DOM after the page settled and ``--enable-logging=stderr`` prints
    console messages as ``CONSOLE`` lines.
    """
    if CHROMIUM is None:
        raise RuntimeError("no chromium binary installed")
    probe = tmp / f"probe_{page.stem}.html"
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-extensions", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=10000", f"--user-data-dir={tmp / 'chromium-profile'}",
           "--dump-dom", probe.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'data-check="([^"]*)"', proc.stdout)
    if not found:
        raise RuntimeError(f"no probe result in the DOM; chromium stderr:\n{proc.stderr[-2000:]}")
    images = json.loads(found.group(1).replace("&quot;", '"'))
    console = [line for line in proc.stderr.splitlines()
               if "CONSOLE" in line and probe.name in line]
    return images, console
