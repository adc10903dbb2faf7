"""Shared machinery for running work on dask.distributed (simulation, cohort fits, studies).

One place for:

* :func:`child_rng` -- the random stream of work unit ``i`` of a run seeded with ``entropy``:
  ``SeedSequence(entropy).spawn(n)[i]``, whatever ran it (this process, any worker, any
  number of workers).
* :func:`open_client` -- a ``Client`` on a new ``LocalCluster`` of worker processes (which
  can import this package even when it is not installed) or on an existing scheduler.
* :func:`run_tasks` -- submit one task per argument tuple and yield results as they finish
  (with a progress bar), so that the caller streams them instead of holding them all. A task
  whose worker dies is re-run on another worker by the scheduler (it holds no state: every
  task is a pure function of its arguments and its seed).
* :func:`write_parquet_atomic`, :func:`part_path`, :func:`finished_parts` -- output
  partitions named by the index (seed) range they hold, written under a temporary name and
  renamed (``os.replace``): a partition either exists complete or not at all, so a run
  interrupted anywhere can be resumed by skipping the partitions that exist.

dask is imported inside the functions, so that importing cartkinetics stays fast.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cartkinetics.errors import CartKineticsError

PART_RE = re.compile(r"^part-(\d+)-(\d+)\.parquet$")


def child_rng(entropy: int, index: int) -> np.random.Generator:
    """Generator of work unit ``index``: ``SeedSequence(entropy).spawn(index + 1)[index]``.

    Parameters
    ----------
    entropy : int
        The run's seed (non-negative).
    index : int
        Chunk or replicate index (0-based).
    """
    return np.random.default_rng(np.random.SeedSequence(int(entropy), spawn_key=(int(index),)))


def package_root() -> str:
    """The folder holding the ``cartkinetics`` package (put on the workers' PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[1])


def worker_env() -> dict[str, str]:
    """Environment of local worker processes: this package first on PYTHONPATH."""
    return {"PYTHONPATH": os.pathsep.join(
        p for p in (package_root(), os.environ.get("PYTHONPATH", "")) if p
    )}


def check_cluster_args(workers: int | None, scheduler: str | None, client: Any = None) -> None:
    """Refuse contradictory or invalid cluster options (at most one of the three)."""
    given = [k for k, v in (("workers", workers), ("scheduler", scheduler), ("client", client))
             if v is not None]
    if len(given) > 1:
        raise CartKineticsError(f"give one of workers, scheduler, client; got {given}")
    if workers is not None and (not isinstance(workers, int | np.integer) or workers < 1):
        raise CartKineticsError(f"workers must be an integer >= 1, got {workers!r}")


@contextmanager
def open_client(
    workers: int | None = None, scheduler: str | None = None, client: Any = None
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A dask.distributed Client for the duration of the block, and a description of it.

    Parameters
    ----------
    workers : int, optional
        Start a ``LocalCluster`` of this many single-threaded worker processes on 127.0.0.1
        (closed at the end of the block).
    scheduler : str, optional
        Address of an existing scheduler, e.g. ``tcp://10.0.0.5:8786``, or the path of its
        scheduler file (``dask scheduler --scheduler-file F``); the client is closed at the
        end of the block, the cluster is left running.
    client : dask.distributed.Client, optional
        An existing client (left open).

    Yields
    ------
    (client, info) with ``info`` holding ``workers`` or ``scheduler``.
    """
    check_cluster_args(workers, scheduler, client)
    from dask.distributed import Client, LocalCluster

    info: dict[str, Any] = {}
    cluster = None
    own = client is None
    if client is not None:
        info["scheduler"] = str(getattr(client, "scheduler", None) and client.scheduler.address)
    elif scheduler:
        try:
            if os.path.isfile(scheduler):  # a scheduler file (dask scheduler --scheduler-file)
                client = Client(scheduler_file=scheduler, timeout="30s")
            else:
                client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise CartKineticsError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with "
                "`dask scheduler` and workers with `dask worker ADDR`"
            ) from exc
        info["scheduler"] = scheduler
    else:
        if workers is None:
            raise CartKineticsError("give workers=N, scheduler=ADDR or client=Client")
        cluster = LocalCluster(
            n_workers=int(workers), threads_per_worker=1, processes=True,
            dashboard_address=":0", host="127.0.0.1", env=worker_env(),
        )
        client = Client(cluster)
        info["workers"] = int(workers)
    try:
        yield client, info
    finally:
        if own:
            client.close()
        if cluster is not None:
            cluster.close()


def run_tasks(
    client: Any,
    func: Callable[..., Any],
    tasks: Iterable[tuple[Any, ...]],
    *,
    shared: tuple[Any, ...] = (),
    progress: bool = False,
    desc: str = "tasks",
    max_in_flight: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """Run ``func(*shared, *task)`` for every task on the cluster; yield ``(i, result)`` as
    tasks finish (completion order, not submission order).

    Parameters
    ----------
    client : dask.distributed.Client
    func : callable (importable by the workers)
    tasks : iterable of argument tuples
    shared : tuple
        Arguments common to every task, scattered once to every worker.
    progress : bool
        tqdm progress bar (on stderr) over the finished tasks.
    max_in_flight : int, optional
        At most this many tasks submitted and not yet collected (bounds what the scheduler
        and the workers hold at once); default 4 per worker thread, at least 8.

    A task whose worker died is rescheduled by Dask; an exception raised by ``func`` is
    re-raised here (tasks are expected to catch their own per-item failures).
    """
    from dask.distributed import as_completed

    tasks = list(tasks)
    if max_in_flight is None:
        threads = sum(client.nthreads().values()) or 1
        max_in_flight = max(8, 4 * threads)
    shared_f = [client.scatter(s, broadcast=True) for s in shared]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=desc, unit="task", file=sys.stderr)
    index: dict[str, int] = {}
    pending = iter(enumerate(tasks))

    def submit_next(ac: Any) -> bool:
        nxt = next(pending, None)
        if nxt is None:
            return False
        i, args = nxt
        fut = client.submit(func, *shared_f, *args, pure=False)
        index[fut.key] = i
        ac.add(fut)
        return True

    ac = as_completed([])
    for _ in range(max_in_flight):
        if not submit_next(ac):
            break
    try:
        for fut in ac:
            if fut.status == "error":
                fut.result()  # re-raise the worker's exception here
            res = fut.result()
            i = index.pop(fut.key)
            fut.release()
            submit_next(ac)
            if bar is not None:
                bar.update(1)
            yield i, res
    finally:
        if bar is not None:
            bar.close()


def run_local_tasks(
    func: Callable[..., Any],
    tasks: Iterable[tuple[Any, ...]],
    *,
    shared: tuple[Any, ...] = (),
    progress: bool = False,
    desc: str = "tasks",
) -> Iterator[tuple[int, Any]]:
    """The same contract as :func:`run_tasks`, in this process (in order)."""
    tasks = list(tasks)
    it: Iterable[Any] = enumerate(tasks)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(tasks), desc=desc, unit="task", file=sys.stderr)
    for i, args in it:
        yield i, func(*shared, *args)


# ------------------------------------------------------------------ partitions


def part_path(folder: str | os.PathLike[str], first: int, last: int) -> Path:
    """``folder/part-<first>-<last>.parquet``: the partition holding indices first..last
    (inclusive; replicate or series indices, i.e. the seeds' spawn keys)."""
    return Path(folder) / f"part-{int(first):07d}-{int(last):07d}.parquet"


def finished_parts(folder: str | os.PathLike[str]) -> dict[tuple[int, int], Path]:
    """Complete partitions in ``folder``: (first, last) -> path (temporary files ignored)."""
    folder = Path(folder)
    out: dict[tuple[int, int], Path] = {}
    if not folder.is_dir():
        return out
    for p in folder.iterdir():
        m = PART_RE.match(p.name)
        if m:
            out[(int(m.group(1)), int(m.group(2)))] = p
    return out


def write_parquet_atomic(frame: Any, path: str | os.PathLike[str]) -> Path:
    """Write a DataFrame to ``path`` atomically: to a unique temporary name in the same
    folder, then ``os.replace`` (readers never see a half-written partition; two workers
    writing the same partition leave one complete copy)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file atomically (temporary name in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def ranges(n: int, size: int) -> list[tuple[int, int]]:
    """Inclusive index ranges ``(first, last)`` of ``size`` covering 0..n-1."""
    if size < 1:
        raise CartKineticsError(f"partition size must be >= 1, got {size}")
    return [(a, min(a + size, n) - 1) for a in range(0, n, size)]


__all__ = ["child_rng", "package_root", "worker_env", "check_cluster_args", "open_client",
           "run_tasks", "run_local_tasks", "part_path", "finished_parts",
           "write_parquet_atomic", "write_text_atomic", "ranges"]
