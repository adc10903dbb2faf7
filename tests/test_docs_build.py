"""The documentation site builds with warnings as errors, and stays in step with the code."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

_HAVE_MKDOCS = all(
    importlib.util.find_spec(name) is not None for name in ("mkdocs", "material", "mkdocstrings")
)
_API_BLOCK = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)


def _api_blocks() -> list[tuple[Path, str]]:
    """(page relative to docs/, module) for every mkdocstrings block of the site."""
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        rel = page.relative_to(DOCS)
        if rel.parts[0] == "dev":
            continue
        blocks.extend((rel, t) for t in _API_BLOCK.findall(page.read_text(encoding="utf-8")))
    return blocks


def _html_of(site: Path, rel: Path) -> Path:
    """Built HTML file of a markdown page (mkdocs' directory URLs)."""
    if rel.stem == "index":
        return site / rel.parent / "index.html"
    return site / rel.parent / rel.stem / "index.html"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or not _HAVE_MKDOCS,
    reason="mkdocs, mkdocs-material or mkdocstrings not installed (pip install '.[docs]')",
)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(MKDOCS_YML),
         "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    warnings = [ln for ln in log.splitlines() if ln.lstrip().startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    # the pages exist, the maths went through arithmatex, the API pages were rendered
    assert (site / "index.html").is_file()
    stein = (site / "models" / "stein2019" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in stein
    for rel, target in _api_blocks():
        html = _html_of(site, rel).read_text(encoding="utf-8")
        assert f'id="{target}"' in html, f"API block {target} not rendered in {rel}"


def test_api_reference_modules_import() -> None:
    """Every ``::: module`` block of the API reference names a module that imports."""
    blocks = _api_blocks()
    assert blocks, "the API reference has no mkdocstrings block"
    for _, target in blocks:
        importlib.import_module(target)


def test_cli_subcommands_documented() -> None:
    """Every subcommand of the ``cartkinetics`` command appears on the getting-started page."""
    from cartkinetics.cli import COMMANDS

    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    missing = [name for name in COMMANDS if f"cartkinetics {name}" not in text]
    assert not missing, f"subcommands missing from docs/getting-started.md: {missing}"


def test_nav_pages_exist() -> None:
    """Every page named in mkdocs.yml's nav exists (also checked by the build; this runs
    without mkdocs installed)."""
    nav_pages = re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w/.-]+\.md)\s*$",
                           MKDOCS_YML.read_text(encoding="utf-8"), re.MULTILINE)
    assert nav_pages
    missing = [p for p in nav_pages if not (DOCS / p).is_file()]
    assert not missing, f"pages in the nav but not in docs/: {missing}"


def test_sphinx_role_hook() -> None:
    """The docs hook keeps the code of Sphinx roles and drops the role markup."""
    spec = importlib.util.spec_from_file_location(
        "sphinx_roles", DOCS / "_hooks" / "sphinx_roles.py"
    )
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    html = (
        "<p>See :func:<code>read_kinetics</code> and "
        ":class:<code>~cartkinetics.errors.CartKineticsError</code>; keep a:b and "
        "<code>x::y</code>. For example::</p><pre><code>x = 1</code></pre>"
    )
    assert hook.on_page_content(html) == (
        "<p>See <code>read_kinetics</code> and <code>CartKineticsError</code>; keep a:b and "
        "<code>x::y</code>. For example:</p><pre><code>x = 1</code></pre>"
    )
