"""A self-contained HTML report: sections of text, tables and figures, nothing external.

Figures are embedded as base64 PNG data URIs and the stylesheet is inline, so the file
opens anywhere (e-mail attachment, regulatory submission folder) without a server.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #2c5f8a;padding-bottom:.2em}h2{color:#2c5f8a;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eef3f7}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}.note{background:#fff8e1;border-left:4px solid #f0b400;
padding:.4em .8em}.meta{color:#666;font-size:.85em}pre{background:#f6f8fa;padding:.6em;
overflow-x:auto;font-size:.85em}
"""


def figure_to_png(fig: Any, dpi: int = 110) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return html.escape(str(value))


@dataclass
class HtmlReport:
    """Collects sections and writes one self-contained HTML file."""

    title: str
    blocks: list[str] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str, note: bool = False) -> None:
        paras = "".join(f"<p>{html.escape(p)}</p>" for p in text.strip().split("\n\n"))
        self.blocks.append(f'<div class="note">{paras}</div>' if note else paras)

    def preformatted(self, text: str) -> None:
        self.blocks.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, df: pd.DataFrame, caption: str | None = None, index: bool = False) -> None:
        frame = df.reset_index() if index else df
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = "".join(
            "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
            for row in frame.itertuples(index=False)
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")

    def figure(self, fig_or_png: Any, caption: str = "") -> None:
        png = fig_or_png if isinstance(fig_or_png, bytes) else figure_to_png(fig_or_png)
        data = base64.b64encode(png).decode("ascii")
        alt = html.escape(caption or "figure")
        self.blocks.append(
            f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        from cartkinetics import __version__

        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = "\n".join(self.blocks)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>"
            f'<p class="meta">cartkinetics {__version__}, generated {stamp}</p>{body}'
            "</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path
