"""A real Dask cluster for tests: ``dask scheduler`` and ``dask worker`` subprocesses on
127.0.0.1 (not an in-process LocalCluster), so that a worker can be killed mid-run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class SubprocessCluster:
    """Scheduler + ``n_workers`` single-threaded worker processes (no nanny: a killed worker
    stays dead, as when a node is lost)."""

    def __init__(self, tmp: Path, n_workers: int = 2) -> None:
        self.tmp = Path(tmp)
        self.file = self.tmp / "scheduler.json"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        dask = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
        self.env = env
        self.scheduler = subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.file)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: self.file.exists(), "scheduler")
        self.workers = [
            subprocess.Popen(
                [dask, "worker", "--scheduler-file", str(self.file), "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                 "--name", f"w{i}"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for i in range(n_workers)
        ]

    def _wait(self, cond, what: str, timeout: float = 120.0) -> None:
        t0 = time.time()
        while not cond():
            if time.time() - t0 > timeout:
                self.close()
                raise TimeoutError(f"{what} did not start within {timeout} s")
            time.sleep(0.2)

    def client(self, n_workers: int):
        from dask.distributed import Client

        c = Client(scheduler_file=str(self.file), timeout="60s")
        c.wait_for_workers(n_workers, timeout=180)
        return c

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker i (no chance to hand its tasks or results over)."""
        self.workers[i].send_signal(signal.SIGKILL)
        self.workers[i].wait(timeout=30)

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
