"""A notebook session, as a new user would type it: read the example, NCA twice, compare,
fit, simulate, endpoints; plot each result on a given Axes and print each repr.

Every result must plot on the Axes it is given (``ax=`` in, the Axes out) and print in
less than 2,000 characters.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import cartkinetics as ck  # noqa: E402
from cartkinetics import example  # noqa: E402

MAX_REPR = 2000

NAMES = ["data", "nca", "compare", "fit_series", "fit_cohort", "endpoints", "simulation"]


@pytest.fixture(scope="module")
def session() -> dict[str, Any]:
    data = ck.read_kinetics(example.kinetics_path(), patients=example.patients_path())
    first = ck.nca(data)
    second = ck.nca(data)  # the second call of a session used to raise TypeError
    compared = ck.compare_infusions(second)
    # two patients, both infusions: a cohort fit in seconds
    cohort = ck.fit_cohort(data.series()[:4], "stein2019", n_boot=50)
    from cartkinetics.simulate import scenario_grid, simulate

    return {
        "data": data,
        "nca": second,
        "nca_first": first,
        "compare": compared,
        "fit_series": cohort.results[0],
        "fit_cohort": cohort,
        "endpoints": ck.cohort_endpoints(example.patients_path(), kinetics=data),
        "simulation": simulate("stein2019", n=500, seed=1,
                               scenarios=scenario_grid(dose_per_kg=[1e6, 5e6])),
    }


def _table(x: Any) -> pd.DataFrame:
    return x if isinstance(x, pd.DataFrame) else x.to_frame()


def test_nca_twice_gives_the_same_table(session):
    a, b = _table(session["nca_first"]), _table(session["nca"])
    pd.testing.assert_frame_equal(a, b)
    raw = pd.read_csv(example.kinetics_path())
    assert len(b) == raw.groupby(["patient", "infusion", "assay"]).ngroups


def test_fits_converged(session):
    assert all(r.ok for r in session["fit_cohort"].results)


@pytest.mark.parametrize("name", NAMES)
def test_repr_fits_on_a_screen(name, session, capsys):
    text = repr(session[name])
    print(text)
    assert capsys.readouterr().out.strip() == text.strip()
    assert len(text) < MAX_REPR, f"repr({name}) is {len(text)} characters"


@pytest.mark.parametrize("name", NAMES)
def test_plot_on_a_given_axes(name, session):
    fig, ax = plt.subplots()
    try:
        out = session[name].plot(ax=ax)
        axes = np.atleast_1d(np.asarray(out, dtype=object)).ravel()
        assert any(a is ax for a in axes), f"{name}.plot(ax=ax) did not return that Axes"
        assert ax.has_data(), f"{name}.plot(ax=ax) drew nothing on it"
    finally:
        plt.close(fig)
