"""MkDocs hook: render Sphinx cross-reference roles left in numpy-style docstrings.

Docstrings in cartkinetics use Sphinx roles (``:func:`read_kinetics```,
``:class:`~cartkinetics.errors.CartKineticsError```). mkdocstrings renders docstrings as
Markdown, where such a role becomes the text ":func:" followed by inline code. This hook,
run on every page's HTML, keeps the inline code and drops the role prefix (and the "~"
that in Sphinx means "show only the last component"). It also turns the reStructuredText
"::" that introduces a literal block into a single colon (the block itself is already
rendered as code).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const|ref|term):"
    r"<code>~?([^<]*)</code>"
)


def _replace(match: re.Match[str]) -> str:
    target = match.group(1)
    if match.group(0).split("<code>", 1)[1].startswith("~"):
        target = target.rsplit(".", 1)[-1]
    return f"<code>{target}</code>"


_LITERAL_INTRO = re.compile(r"(?<=\S)::</p>")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Replace ``:role:<code>target</code>`` by ``<code>target</code>``; "::" by ":"."""
    return _LITERAL_INTRO.sub(":</p>", _ROLE.sub(_replace, html))
