"""The one JSON serialiser: strict JSON from numpy, pandas and result objects."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cartkinetics.serialize import dumps, is_jsonable, jsonable


def test_numbers_become_strict_json():
    doc = {"a": np.float64(1.5), "b": np.nan, "c": -np.inf, "d": np.int32(3), "e": np.bool_(True),
           "f": math.inf, "g": 2, "h": None, 7: "key"}
    text = dumps(doc)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": 1.5, "b": None, "c": None, "d": 3, "e": True, "f": None,
                                "g": 2, "h": None, "7": "key"}
    assert type(jsonable(np.int64(4))) is int and type(jsonable(np.bool_(False))) is bool


def test_containers_tables_paths_dates():
    df = pd.DataFrame({"p": ["P01", "P02"], "x": [1.0, np.nan]})
    doc = {"t": df, "s": pd.Series({"u": np.float32(0.5)}), "arr": np.array([[1, 2], [3, 4]]),
           "tup": (1, np.nan), "set": {"b", "a"}, "path": Path("/x/y.csv"),
           "day": dt.date(2026, 1, 2), "ts": pd.Timestamp("2026-01-02 03:04"), "na": pd.NA,
           "nat": pd.NaT}
    assert json.loads(dumps(doc)) == {
        "t": [{"p": "P01", "x": 1.0}, {"p": "P02", "x": None}], "s": {"u": 0.5},
        "arr": [[1, 2], [3, 4]], "tup": [1, None], "set": ["a", "b"], "path": "/x/y.csv",
        "day": "2026-01-02", "ts": "2026-01-02T03:04:00", "na": None, "nat": None}


def test_objects_with_to_dict_and_refusal_of_the_rest():
    class R:
        def to_dict(self):
            return {"v": np.nan}

    assert json.loads(dumps([R()])) == [{"v": None}]
    assert not is_jsonable(object())
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_cli_and_results_share_it():
    # the CLI's --json printer and the results' to_dict() give the same strict text
    from cartkinetics import compare_infusions, example, nca

    r = compare_infusions(nca(example.kinetics_path()))
    text = dumps(r)
    assert json.loads(text)["n_pairs"] == r.n_pairs and "NaN" not in text
