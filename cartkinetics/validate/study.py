"""A replicate study: N independent replicates, seeded from one SeedSequence, in partitions.

Replicate ``r`` draws every random number from ``child_rng(seed, r)``
(``SeedSequence(seed).spawn(N)[r]``), so its result does not depend on which process ran it,
on the number of workers or on the partition size. Replicates are grouped into partitions of
``partition_size``; a partition is one task (on a Dask worker or in this process) and one
Parquet file ``out/replicates/part-<first>-<last>.parquet`` written atomically. ``resume``
keeps the partitions already written (after checking that ``out/study.json`` describes the
same study) and runs the others; the final table is read back from the partitions in
replicate order, so an interrupted-and-resumed study ends with the same table, summary and
figures as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cartkinetics._dask import (
    child_rng,
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


class Study:
    """What a study is: a name, its options (JSON-safe) and one replicate.

    Subclasses define ``name``, ``config()`` (everything that decides a replicate's result),
    ``replicate(index, rng) -> dict`` (one row; failures are rows with ``status`` and
    ``message``, never exceptions), ``summarize(table) -> DataFrame`` and
    ``figures(table, out) -> list[Path]``.
    """

    name = "study"

    def config(self) -> dict[str, Any]:
        """Options deciding a replicate's result (JSON-safe)."""
        raise NotImplementedError

    def replicate(self, index: int, rng: Any) -> dict[str, Any]:
        """One replicate's row from its generator."""
        raise NotImplementedError

    def summarize(self, table: pd.DataFrame) -> pd.DataFrame:
        """The summary table of the replicates' rows."""
        raise NotImplementedError

    def figures(self, table: pd.DataFrame, out: Path) -> list[Path]:
        """Figures written to ``out``."""
        return []


def run_partition(study: Study, seed: int, first: int, last: int,
                  out_dir: str | None) -> pd.DataFrame | int:
    """Replicates ``first..last`` (inclusive): their rows, or written to a partition."""
    rows = []
    for r in range(first, last + 1):
        row = {"replicate": r}
        row.update(study.replicate(r, child_rng(seed, r)))
        rows.append(row)
    table = pd.DataFrame(rows)
    if out_dir is None:
        return table
    write_parquet_atomic(table, part_path(out_dir, first, last))
    return len(table)


@dataclass
class StudyResult:
    """A finished study.

    Attributes
    ----------
    study : str
    config : dict (the study's options, seed, replicates)
    table : DataFrame (one row per replicate, in replicate order)
    summary_table : DataFrame (the study's summary, e.g. coverage with Wilson intervals)
    out : Path or None
    figures : list of Path
    info : dict (workers or scheduler, partitions resumed, seconds)
    """

    study: str
    config: dict[str, Any]
    table: pd.DataFrame
    summary_table: pd.DataFrame
    out: Path | None = None
    figures: list[Path] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The summary table."""
        return self.summary_table

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: study, config, summary rows, status counts, files, run info."""
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if hasattr(v, "item"):
                return clean(v.item())
            return v

        rows = [{k: clean(v) for k, v in r.items()}
                for r in self.summary_table.to_dict(orient="records")]
        status = (self.table["status"].value_counts().to_dict()
                  if "status" in self.table else {})
        return {"study": self.study, "config": self.config, "replicates": len(self.table),
                "status_counts": {str(k): int(v) for k, v in status.items()},
                "summary": rows, "out": None if self.out is None else str(self.out),
                "figures": [str(p) for p in self.figures],
                "info": {k: clean(v) for k, v in self.info.items()}}

    def summary(self) -> str:
        """The summary table as text."""
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            return (f"{self.study}: {len(self.table)} replicates (seed "
                    f"{self.config.get('seed')})\n{self.summary_table.to_string(index=False)}")

    def __repr__(self) -> str:
        return (f"StudyResult({self.study}, {len(self.table)} replicates, "
                f"{len(self.summary_table)} summary rows, out={self.out})")

    def plot(self, ax: Any = None, **kw: Any) -> Any:
        """The study's main figure on ``ax`` (coverage forest or SBC ECDF difference)."""
        from cartkinetics.validate import plot_for

        return plot_for(self, ax=ax, **kw)


def run_study(
    study: Study,
    replicates: int,
    *,
    seed: int = 2026,
    out: str | Path | None = None,
    resume: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    partition_size: int = 10,
    progress: bool = False,
) -> StudyResult:
    """Run ``replicates`` replicates of ``study`` (in process or on Dask) and summarise.

    Parameters
    ----------
    study : Study
    replicates : int
    seed : int
        Entropy of the study's SeedSequence (replicate r uses its r-th child).
    out : path, optional
        Folder: partitions in ``out/replicates``, ``study.json``, ``replicates.parquet``,
        ``summary.csv``, ``summary.json`` and figures. Without it nothing is written and
        ``resume`` is unavailable.
    resume : bool
        Keep the partitions already in ``out`` (same study) and run the rest.
    workers, scheduler, client : at most one (none: in this process)
    partition_size : int
        Replicates per task and per partition.
    progress : bool
        tqdm bar over partitions (stderr).
    """
    t0 = time.perf_counter()
    if not isinstance(replicates, int) or replicates < 1:
        raise CartKineticsError(f"replicates must be an integer >= 1, got {replicates!r}")
    if not isinstance(seed, int) or seed < 0:
        raise CartKineticsError(f"seed must be a non-negative integer, got {seed!r}")
    config = {"study": study.name, **study.config(), "seed": seed, "replicates": replicates,
              "partition_size": partition_size}
    todo = ranges(replicates, partition_size)
    n_parts = len(todo)
    out_dir: str | None = None
    if out is not None:
        out = Path(out)
        parts = out / "replicates"
        done = finished_parts(parts)
        spec = out / "study.json"
        if spec.exists():
            old = json.loads(spec.read_text())
            if old != config and done:
                diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise CartKineticsError(
                    f"{out} holds partitions of a different study (differs in {diff}); use a "
                    "new --out folder"
                )
        elif done:
            raise CartKineticsError(f"{parts} holds partitions without study.json; use a new "
                                    "--out folder")
        if done and not resume:
            raise CartKineticsError(
                f"{parts} already holds {len(done)} partitions of this study; pass --resume "
                "(resume=True) to keep them, or use a new --out folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json.dumps(config, indent=1), spec)
        todo = [r for r in todo if r not in done]
        out_dir = str(parts)
    info: dict[str, Any] = {"partitions": n_parts, "partitions_resumed": n_parts - len(todo)}
    tasks = [(a, b, out_dir) for a, b in todo]
    frames: dict[int, pd.DataFrame] = {}
    if client is None and workers is None and scheduler is None:
        stream = run_local_tasks(run_partition, tasks, shared=(study, seed), progress=progress,
                                 desc=study.name)
        for i, res in stream:
            if out_dir is None:
                frames[tasks[i][0]] = res
    else:
        with open_client(workers=workers, scheduler=scheduler, client=client) as (cl, cinfo):
            info.update(cinfo)
            for i, res in run_tasks(cl, run_partition, tasks, shared=(study, seed),
                                    progress=progress, desc=study.name):
                if out_dir is None:
                    frames[tasks[i][0]] = res
    if out_dir is not None:
        got = finished_parts(out_dir)
        missing = [r for r in ranges(replicates, partition_size) if r not in got]
        if missing:
            raise CartKineticsError(f"partitions {missing} missing in {out_dir}; re-run with "
                                    "--resume")
        frames = {a: pd.read_parquet(got[(a, b)]) for a, b in ranges(replicates, partition_size)}
    table = pd.concat([frames[k] for k in sorted(frames)], ignore_index=True)
    summary = study.summarize(table)
    info["seconds"] = time.perf_counter() - t0
    result = StudyResult(study=study.name, config=config, table=table, summary_table=summary,
                         out=None if out is None else Path(out), info=info)
    if out is not None:
        out = Path(out)
        write_parquet_atomic(table, out / "replicates.parquet")
        write_text_atomic(summary.to_csv(index=False), out / "summary.csv")
        result.figures = study.figures(table, out)
        write_text_atomic(json.dumps(result.to_dict(), indent=1), out / "summary.json")
    return result


__all__ = ["Study", "StudyResult", "run_study", "run_partition"]
