"""Names that cannot collide: every public function of ``cartkinetics`` is callable twice.

The bug this guards against: ``cartkinetics.nca`` was both a function and a submodule, and
importing the submodule (which any call did) replaced the function on the package, so the
second ``ck.nca(data)`` of a notebook raised "'module' object is not callable".
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import cartkinetics as ck
from cartkinetics import example


def _public_functions() -> list[str]:
    return sorted(n for n in ck.__all__ if inspect.isfunction(getattr(ck, n)))


def _all_submodules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(ck.__path__, prefix="cartkinetics."))


def test_every_public_name_is_listed_and_resolves():
    assert _public_functions(), "no public functions found in cartkinetics.__all__"
    for name in ck.__all__:
        assert hasattr(ck, name), name


@pytest.mark.parametrize("name", _public_functions())
def test_no_submodule_shares_a_public_function_name(name):
    # a direct submodule of that name would replace the function once imported
    assert importlib.util.find_spec(f"cartkinetics.{name}") is None, (
        f"cartkinetics.{name} is both a public function and a submodule"
    )
    clashes = [m for m in _all_submodules() if m.rsplit(".", 1)[-1] == name
               and m.count(".") == 1]
    assert not clashes


def test_public_functions_survive_importing_every_submodule():
    before = {n: getattr(ck, n) for n in _public_functions()}
    for mod in _all_submodules():
        if mod.startswith("cartkinetics.commands.") or mod.endswith("__main__"):
            continue
        importlib.import_module(mod)
    for name, fn in before.items():
        now = getattr(ck, name)
        assert callable(now) and not inspect.ismodule(now), name
        assert now is fn, f"importing the submodules rebound cartkinetics.{name}"


# ---------------------------------------------------------------- calling each twice
def _data():
    return ck.read_kinetics(example.kinetics_path(), patients=example.patients_path())


def _curve() -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 60.0, 241)
    return t, 1e4 * (np.exp(-0.1 * t) - np.exp(-1.0 * t))


# name -> (call, is it slow); each call is made the way the function is called today
@functools.lru_cache(maxsize=1)
def _population_fit() -> Any:
    return ck.fit_population(_data(), "stein2019", draws=30, tune=30, chains=1, seed=1,
                             progress=False, warn=False)


CALLS: dict[str, tuple[Callable[[], Any], bool]] = {
    "read_kinetics": (_data, False),
    "read_patients": (lambda: ck.read_patients(example.patients_path()), False),
    "write_nonmem": (lambda: ck.write_nonmem(_data()), False),
    "nca": (lambda: ck.nca(_data()), False),
    "compare_infusions": (lambda: ck.compare_infusions(ck.nca(_data())), False),
    "curve_outcomes": (lambda: ck.curve_outcomes(*_curve()), False),
    "batch_curve_outcomes": (
        lambda: ck.batch_curve_outcomes(_curve()[0], np.vstack([_curve()[1]] * 3)), False),
    "auc_linlog": (lambda: ck.auc_linlog(*_curve(), t_end=28.0), False),
    "fit_series": (lambda: ck.fit_series(_data().series()[0], "stein2019", n_boot=20), False),
    "fit_cohort": (lambda: ck.fit_cohort(_data().series()[:2], "stein2019", n_boot=20), False),
    "fit_population": (
        lambda: ck.fit_population(_data(), "stein2019", draws=30, tune=30, chains=1, seed=1,
                                  progress=False, warn=False), True),
    "read_cohort": (lambda: ck.read_cohort(example.patients_path()), False),
    "exposure_response": (
        lambda: ck.exposure_response(example.patients_path(), example.kinetics_path(),
                                     survival=()), False),
    "exposure_draws": (lambda: ck.exposure_draws(_population_fit(), "cmax"), True),
    "cohort_endpoints": (lambda: ck.cohort_endpoints(example.patients_path()), False),
}


def _frame_of(x: Any) -> pd.DataFrame | None:
    """A table that two identical calls must reproduce, when the result has one."""
    if isinstance(x, pd.DataFrame):
        return x
    for attr in ("to_frame", "table", "observations"):
        value = getattr(x, attr, None)
        if callable(value):
            try:
                value = value()
            except Exception:  # noqa: BLE001 - an optional view; the call itself is tested
                continue
        if isinstance(value, pd.DataFrame):
            return value
    return None


def test_every_public_function_has_a_call():
    assert set(_public_functions()) <= set(CALLS), (
        f"add a call for {sorted(set(_public_functions()) - set(CALLS))}"
    )


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if CALLS[n][1] else n for n in sorted(CALLS)],
)
def test_public_function_called_twice(name):
    call, _ = CALLS[name]
    first = call()
    assert not inspect.ismodule(getattr(ck, name))
    second = call()  # the second call of a session is what used to fail
    assert type(second) is type(first)
    a, b = _frame_of(first), _frame_of(second)
    if a is not None and name != "fit_population":  # MCMC: same seed, but not bit-stable
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    elif isinstance(first, dict):
        assert set(first) == set(second)
    elif isinstance(first, float):
        assert first == second
