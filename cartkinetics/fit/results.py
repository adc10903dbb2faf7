"""The common base of per-patient fit results (single series, joint, multi-output).

Gives every result the same small interface: a short ``repr`` (< 2,000 characters, the
full content is in ``summary()`` / ``to_dict()``), ``to_frame()`` (one row) and a default
``summary()``. Subclasses are dataclasses declared with ``repr=False`` so that this repr is
kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

REPR_MAX = 2000  # characters


def _short(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def json_safe(v: Any) -> Any:
    """None for NaN and infinities, plain Python numbers for numpy scalars (a value of a
    result's ``to_dict()``)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class FitResultBase:
    """Shared behaviour of fit results; subclasses define ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        """The result as a plain dict (defined by each result class)."""
        raise NotImplementedError

    def to_frame(self) -> pd.DataFrame:
        """The result as a one-row DataFrame (the columns of :meth:`to_dict`)."""
        return pd.DataFrame([self.to_dict()])

    def summary(self) -> str:
        """Plain-text summary: one ``key = value`` line per entry of :meth:`to_dict`."""
        lines = [f"[[{type(self).__name__}]]"]
        lines += [f"    {k:<20} = {_short(v)}" for k, v in self.to_dict().items()]
        return "\n".join(lines)

    def _repr_fields(self) -> dict[str, Any]:
        keys = ("patient", "infusion", "assay", "model", "status")
        return {k: getattr(self, k) for k in keys if hasattr(self, k)}

    def __repr__(self) -> str:
        head = ", ".join(f"{k}={_short(v)!s}" for k, v in self._repr_fields().items())
        params = getattr(self, "params", None) or {}
        if params and all(isinstance(v, (int, float)) for v in params.values()):
            est = ", ".join(f"{k}={_short(float(v))}" for k, v in params.items())
            text = f"<{type(self).__name__} {head}; {est}>"
        else:
            text = f"<{type(self).__name__} {head}>"
        if len(text) > REPR_MAX:
            text = text[: REPR_MAX - 5] + " ...>"
        return text
