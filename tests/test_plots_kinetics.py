"""plot_kinetics: a spaghetti of the observed series, BLQ at the LLOQ, one panel per assay."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import cartkinetics as ck  # noqa: E402
from cartkinetics import example  # noqa: E402
from cartkinetics.errors import CartKineticsError  # noqa: E402
from cartkinetics.plots import plot_kinetics  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _blq_points(ax) -> np.ndarray:
    pts = [np.column_stack([ln.get_xdata(), ln.get_ydata()]) for ln in ax.lines
           if ln.get_marker() == "v" and len(ln.get_xdata())]
    return np.vstack(pts) if pts else np.empty((0, 2))


def test_one_line_per_series_and_blq_at_the_lloq():
    raw = pd.read_csv(example.kinetics_path())  # the file itself, not the reader's output
    ax = plot_kinetics(ck.read_kinetics(example.kinetics_path()))
    assert ax.get_yscale() == "log"
    quantified = [ln for ln in ax.lines if ln.get_marker() == "o" and len(ln.get_xdata())]
    n_series = raw.groupby(["patient", "infusion"]).ngroups
    assert len(quantified) == n_series
    # every quantified value of the file is drawn, on its day
    drawn = np.vstack([np.column_stack([ln.get_xdata(), ln.get_ydata()]) for ln in quantified])
    q = raw[raw["blq"] == 0]
    assert len(drawn) == len(q)
    assert sorted(drawn[:, 1]) == pytest.approx(sorted(q["value"]))
    # every BLQ row appears once, at its LLOQ, with the distinct marker
    blq = _blq_points(ax)
    b = raw[raw["blq"] == 1]
    assert len(blq) == len(b) > 0
    expected = np.array(sorted(zip(b["day"], b["lloq"], strict=True)), dtype=float)
    np.testing.assert_allclose(np.array(sorted(map(tuple, blq))), expected)
    # colour by infusion: the second infusion's lines share one colour, another than the first
    colours = {ln.get_color() for ln in quantified}
    assert len(colours) == raw["infusion"].nunique()


def test_one_panel_per_assay_and_given_axes():
    raw = pd.read_csv(example.kinetics_path())
    flow = raw.assign(assay="flow", unit="cells/uL", value=raw["value"] / 100.0,
                      lloq=raw["lloq"] / 100.0)
    data = ck.read_kinetics(pd.concat([raw, flow], ignore_index=True))
    axes = plot_kinetics(data)
    assert isinstance(axes, np.ndarray) and axes.size == 2
    assert [a.get_ylabel().split()[0] for a in axes] == ["flow", "qpcr"]
    fig, given = plt.subplots(1, 2)
    out = plot_kinetics(data, ax=given)
    assert list(out) == list(given)
    with pytest.raises(CartKineticsError, match="2 axes"):
        plot_kinetics(data, ax=given[0])


def test_draws_into_a_given_figure():
    fig = plt.figure()
    ax = plot_kinetics(ck.read_kinetics(example.kinetics_path()), fig=fig)
    assert ax.figure is fig
