"""One JSON serialiser for the library: every ``to_dict()`` and every ``--json`` goes through it.

Strict JSON (RFC 8259) has no NaN or infinity: they become ``null``. numpy scalars and arrays,
pandas tables, paths and dates become plain JSON values; objects with a ``to_dict()`` are
serialised through it. Anything else is left for :func:`json.dumps` to refuse loudly, never
written as an opaque string.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["dumps", "is_jsonable", "jsonable"]


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict, list, str, int, float, bool, None).

    NaN and infinities -> None; numpy scalars -> Python numbers; arrays, tuples and sets ->
    lists; DataFrames -> a list of row dicts; Series and objects with ``to_dict()`` -> dicts;
    paths -> str; dates and timestamps -> ISO 8601 strings; pandas' NA and NaT -> None.
    """
    import numpy as np
    import pandas as pd

    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return [jsonable(v) for v in sorted(obj, key=str)]
    if isinstance(obj, pd.DataFrame):
        return [jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return jsonable(obj.to_dict())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, pd.Timestamp | _dt.datetime | _dt.date):
        return obj.isoformat()
    if isinstance(obj, np.datetime64):
        return None if np.isnat(obj) else str(obj)
    if isinstance(obj, Path):
        return str(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    return obj


def dumps(obj: Any, *, indent: int | None = 1) -> str:
    """Strict JSON text of ``obj`` (through :func:`jsonable`); TypeError for what is not."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def is_jsonable(obj: Any) -> bool:
    """True when :func:`dumps` can write ``obj``."""
    try:
        dumps(obj)
    except (TypeError, ValueError):
        return False
    return True
