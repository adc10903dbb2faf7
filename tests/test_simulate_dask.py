"""Same seed -> identical results on a real dask LocalCluster (2 worker processes)."""

import pandas as pd
import pytest

from cartkinetics.simulate import scenario_grid, simulate


@pytest.mark.slow
def test_local_cluster_gives_identical_numbers(tmp_path):
    pytest.importorskip("dask.distributed")
    kw = dict(n=5000, scenarios=scenario_grid(dose_per_kg=[1e6, 5e6]), seed=123,
              chunk_size=1000, dose_exponent=0.5, keep_params=True)
    local = simulate("stein2019", **kw)
    on_dask = simulate("stein2019", workers=2, out=tmp_path / "parts", **kw)
    assert on_dask.info["workers"] == 2 and on_dask.info["n_chunks"] == 5
    pd.testing.assert_frame_equal(local.outcomes, on_dask.outcomes)
    pd.testing.assert_frame_equal(local.summary(), on_dask.summary())
    # the workers wrote one Parquet partition per chunk
    assert len(list((tmp_path / "parts" / "outcomes").glob("part-*.parquet"))) == 5
