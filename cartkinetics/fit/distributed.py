"""Cohort fits on Dask, and streamed to Parquet: thousands of series, bounded memory.

:func:`fit_cohort_distributed` (reached through ``fit_cohort(..., client=, workers=,
scheduler=, out=)``) cuts the series into chunks of ``chunk_size`` (in data order) and runs
:func:`cartkinetics.fit.cohort.fit_series_isolated` on every series of a chunk, on a Dask
worker or in this process. Each series is fitted exactly as :func:`fit_cohort` fits it in
process (same function, same options, same seed), so the numbers are the same whatever ran
them; a series that fails gives a row with its status and reason, never an exception.

With ``out=DIR`` each chunk's table (one row per series, the columns of
``CohortFit.table`` plus ``series_index``) is written by the worker to
``DIR/fits/part-<first>-<last>.parquet`` atomically (temporary name, then rename), and only a
status count comes back: the driver never holds the fits. ``resume=True`` keeps the
partitions already written (the run's options are checked against ``DIR/fits/run.json``) and
fits only the rest. A worker killed mid-run loses nothing: its chunk is re-run elsewhere, and
a partition is either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cartkinetics._dask import (
    finished_parts,
    open_client,
    part_path,
    ranges,
    run_local_tasks,
    run_tasks,
    write_parquet_atomic,
    write_text_atomic,
)
from cartkinetics.errors import CartKineticsError
from cartkinetics.fit.cohort import (
    CohortFit,
    censoring_of,
    fit_joint_isolated,
    fit_series_isolated,
    joint_groups,
    joint_kws,
)

DEFAULT_CHUNK = 25


def fit_chunk(model: Any, fit_kws: dict[str, Any], series: list[Any], first: int,
              out_dir: str | None) -> dict[str, Any]:
    """Fit series ``first, first+1, ...`` (one chunk); the unit of work on a worker.

    Returns ``{"first", "last", "counts", "results"}``; ``results`` is the list of
    FitResult when ``out_dir`` is None, else None (the table went to a partition).
    """
    results = [fit_series_isolated(s, model, fit_kws) for s in series]
    last = first + len(series) - 1
    counts = dict(Counter(r.status for r in results))
    if out_dir is None:
        return {"first": first, "last": last, "counts": counts, "results": results}
    table = pd.DataFrame([r.row() for r in results])
    table.insert(0, "series_index", range(first, last + 1))
    write_parquet_atomic(table, part_path(out_dir, first, last))
    return {"first": first, "last": last, "counts": counts, "results": None}


def _joint_task(model: Any, kws: dict[str, Any], group: list[Any]) -> Any:
    return fit_joint_isolated(group, model, kws)


def _fingerprint(series: list[Any], model: Any, fit_kws: dict[str, Any], chunk: int) -> str:
    """Hash of everything that decides the partitions' content (data, model, options)."""
    h = hashlib.sha256()
    for obj in (model if isinstance(model, str) else getattr(model, "name", repr(model)),
                sorted((k, repr(v)) for k, v in fit_kws.items()), chunk, len(series)):
        h.update(repr(obj).encode())
    for s in series:
        h.update(pickle.dumps(s, protocol=4))
    return h.hexdigest()[:16]


@dataclass
class StreamedCohortFit:
    """A cohort fit whose per-series table lives in Parquet partitions (``out/fits``).

    Attributes
    ----------
    out : Path
        The run folder; partitions in ``out/fits/part-<first>-<last>.parquet``.
    model, censoring : str
    n_series : int
    status_counts : dict status -> number of series
    joint : list of JointFitResult (when ``joint=True``; held in memory)
    info : dict (workers or scheduler, chunks, chunks resumed, seconds)
    """

    out: Path
    model: str
    censoring: str
    n_series: int
    status_counts: dict[str, int]
    joint: list[Any] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def parts_dir(self) -> Path:
        """The folder of the partitions."""
        return Path(self.out) / "fits"

    @property
    def table(self) -> pd.DataFrame:
        """One row per series in data order (the columns of ``CohortFit.table``)."""
        parts = finished_parts(self.parts_dir)
        frames = [pd.read_parquet(p) for _, p in sorted(parts.items())]
        t = pd.concat(frames, ignore_index=True).sort_values("series_index", kind="stable")
        if len(t) != self.n_series or t["series_index"].tolist() != list(range(self.n_series)):
            raise CartKineticsError(
                f"the partitions in {self.parts_dir} hold {len(t)} of {self.n_series} series; "
                "re-run with resume=True (--resume) to complete them"
            )
        return t.drop(columns="series_index").reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """The per-series fit table (read from the partitions)."""
        return self.table

    to_dataframe = to_frame

    def counts(self) -> dict[str, int]:
        """Number of series per fit status."""
        return dict(self.status_counts)

    def joint_table(self) -> pd.DataFrame:
        """One row per joint (first + second infusion) fit."""
        return pd.DataFrame([j.row() for j in self.joint])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the run (not the per-series rows: see ``table``)."""
        return {"out": str(self.out), "model": self.model, "censoring": self.censoring,
                "n_series": self.n_series, "status_counts": self.counts(),
                "n_joint": len(self.joint),
                "info": {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                         for k, v in self.info.items()}}

    def summary(self) -> str:
        """Series fitted, statuses, where the table is."""
        st = ", ".join(f"{k} {v}" for k, v in sorted(self.status_counts.items()))
        where = self.info.get("scheduler") or (
            f"{self.info['workers']} local Dask workers" if self.info.get("workers")
            else "in process")
        return (f"{self.n_series} series fitted with {self.model} ({self.censoring}) "
                f"{where}: {st}; table in {self.parts_dir}")

    def __repr__(self) -> str:
        return f"StreamedCohortFit({self.summary()})"

    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """Bar chart of the number of series per fit status; returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        keys = sorted(self.status_counts)
        ax.bar(keys, [self.status_counts[k] for k in keys], **kw)
        ax.set_ylabel("series")
        ax.set_title(f"{self.model}: {self.n_series} series")
        ax.tick_params(axis="x", rotation=30)
        return ax


def fit_cohort_distributed(
    series: list[Any],
    model: Any = "stein2019",
    *,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    joint: bool = False,
    **fit_kws: Any,
) -> CohortFit | StreamedCohortFit:
    """Fit every series on a Dask cluster (or in process) in chunks, optionally streamed.

    Parameters
    ----------
    series : list of Series (data order; a failure of one series is a row, not an error)
    model : str or Model (a name is best: workers look library models up by name)
    client, workers, scheduler : at most one
        An existing Client; a new local cluster of ``workers`` processes; or the scheduler
        at this address. None of them: in this process.
    out : path, optional
        Stream the table to ``out/fits/part-<first>-<last>.parquet`` (series indices,
        inclusive) and return a :class:`StreamedCohortFit`.
    resume : bool
        With ``out``: skip the partitions already there (refused if the data or options
        differ from the run that wrote them).
    progress : bool
        tqdm bar over the chunks, on stderr.
    chunk_size : int
        Series per task and per partition (default 25).
    joint : bool
        Also the joint fits of patients with two infusions (one task each, collected).
    **fit_kws : passed to :func:`cartkinetics.fit.fit_series`

    Returns
    -------
    CohortFit (without ``out``; results in data order, identical to the in-process
    ``fit_cohort``) or StreamedCohortFit (with ``out``).
    """
    t0 = time.perf_counter()
    name = model if isinstance(model, str) else getattr(model, "name", str(model))
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise CartKineticsError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    n = len(series)
    todo = ranges(n, chunk_size)
    out_dir: str | None = None
    skipped = 0
    if out is not None:
        parts = Path(out) / "fits"
        parts.mkdir(parents=True, exist_ok=True)
        fp = _fingerprint(series, model, fit_kws, chunk_size)
        run_file = parts / "run.json"
        done = finished_parts(parts)
        if run_file.exists():
            old = json.loads(run_file.read_text())
            if old.get("fingerprint") != fp and (resume or done):
                raise CartKineticsError(
                    f"{parts} holds partitions of another run (different data, model, options "
                    "or chunk size); use a new --out folder"
                )
        elif done:
            raise CartKineticsError(f"{parts} holds partitions without run.json; use a new "
                                    "--out folder")
        if done and not resume:
            raise CartKineticsError(
                f"{parts} already holds {len(done)} partitions of this run; pass resume=True "
                "(--resume) to keep them, or use a new --out folder"
            )
        write_text_atomic(json.dumps({"fingerprint": fp, "model": name, "n_series": n,
                                      "chunk_size": chunk_size}), run_file)
        todo = [r for r in todo if r not in done]
        skipped = len(ranges(n, chunk_size)) - len(todo)
        out_dir = str(parts)
    tasks = [(series[a: b + 1], a, out_dir) for a, b in todo]
    shared = (model, fit_kws)
    results: list[Any] = [None] * n
    counts: Counter[str] = Counter()
    joint_results: list[Any] = []
    info: dict[str, Any] = {"chunks": len(ranges(n, chunk_size)), "chunks_resumed": skipped,
                            "chunk_size": chunk_size}

    def collect(stream: Any) -> None:
        for _, res in stream:
            counts.update(res["counts"])
            if res["results"] is not None:
                results[res["first"]: res["last"] + 1] = res["results"]

    groups = joint_groups(series) if joint else []
    jkws = joint_kws(fit_kws)
    if client is None and workers is None and scheduler is None:
        collect(run_local_tasks(fit_chunk, tasks, shared=shared, progress=progress,
                                desc="fit"))
        if groups:
            joint_results = [fit_joint_isolated(g, model, jkws) for g in groups]
    else:
        with open_client(workers=workers, scheduler=scheduler, client=client) as (cl, cinfo):
            info.update(cinfo)
            collect(run_tasks(cl, fit_chunk, tasks, shared=shared, progress=progress,
                              desc="fit"))
            if groups:
                joint_results = [None] * len(groups)
                for i, j in run_tasks(cl, _joint_task, [(g,) for g in groups],
                                      shared=(model, jkws), progress=progress, desc="joint"):
                    joint_results[i] = j
    info["seconds"] = time.perf_counter() - t0
    censoring = censoring_of(fit_kws)
    if out_dir is None:
        cf = CohortFit(results=results, model=name, censoring=censoring, joint=joint_results)
        return cf
    # the resumed partitions' statuses (not in ``counts``) are read back from their files
    if skipped:
        counts = Counter()
        for p in finished_parts(out_dir).values():
            counts.update(pd.read_parquet(p, columns=["status"])["status"].tolist())
    return StreamedCohortFit(out=Path(out), model=name, censoring=censoring,  # type: ignore[arg-type]
                             n_series=n, status_counts=dict(counts), joint=joint_results,
                             info=info)


__all__ = ["fit_cohort_distributed", "fit_chunk", "StreamedCohortFit", "DEFAULT_CHUNK"]
