"""A tiny GitHub-flavoured markdown table writer (no ``tabulate`` dependency)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return format(value, floatfmt)
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, *, floatfmt: str = ".4g", title: str | None = None) -> str:
    """Render a DataFrame as a markdown pipe table.

    Numbers are right-aligned, text left-aligned; NaN and None print as empty cells;
    ``|`` inside a cell is escaped.

    Parameters
    ----------
    df : DataFrame
        The table (its index is not written; reset it first if it carries data).
    floatfmt : str
        Format spec for floats.
    title : str, optional
        A bold line written above the table.
    """
    headers = [str(c) for c in df.columns]
    body = [[_cell(v, floatfmt) for v in row] for row in df.itertuples(index=False, name=None)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    widths = [max([len(h), 3, *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric,
                                                                           strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, numeric, strict=True)) + "|"
    lines = [line(headers), rule, *(line(r) for r in body)]
    text = "\n".join(lines)
    return f"**{title}**\n\n{text}" if title else text
