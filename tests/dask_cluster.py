"""A real Dask cluster on this machine for the ``--engine dask`` tests: a scheduler and
worker processes started with Dask's own CLI (as a university cluster would run them),
which a test can kill one by one.

    with LocalDask(tmp_path, workers=2) as cluster:
        load(..., engine="dask", address=cluster.address)
        cluster.kill_worker(0)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import distributed
except ImportError:  # a skip here, a failure under CI=true (conftest)
    distributed = None


def need_dask() -> None:
    if distributed is None:
        pytest.skip("Dask's distributed is not installed: pip install -e '.[test]' brings it")


class LocalDask:
    def __init__(self, folder: Path, workers: int = 2, *, nanny: bool = False, preload: str | None = None,
                 env: dict[str, str] | None = None):
        need_dask()
        self.folder, self.nanny, self.preload = Path(folder), nanny, preload
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.address = ""
        self._start(workers)

    def _start(self, workers: int) -> None:
        file = self.folder / "scheduler.json"
        self.scheduler = self._spawn("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                     "--scheduler-file", str(file))
        deadline = time.monotonic() + 60
        while not file.exists() or not file.read_text().strip():
            assert self.scheduler.poll() is None, "the Dask scheduler did not start"
            assert time.monotonic() < deadline, "the Dask scheduler did not write its address"
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written in one go, but give it a beat
        self.address = json.loads(file.read_text())["address"]
        self.add_workers(workers)

    def _spawn(self, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"dask-{args[0]}-{len(self.workers)}-{time.monotonic_ns()}.log", "wb")
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=log, env=self.env,
                                start_new_session=True)

    def add_workers(self, n: int) -> None:
        want = self.alive() + n
        for _ in range(n):
            args = ["worker", self.address, "--nthreads", "1", "--no-dashboard", "--memory-limit", "0",
                    "--nanny" if self.nanny else "--no-nanny"]
            if self.preload:
                args += ["--preload", self.preload]
            self.workers.append(self._spawn(*args))
        self.wait_for(want)

    def alive(self) -> int:
        with distributed.Client(self.address, timeout="20s") as c:
            return len(c.scheduler_info()["workers"])

    def wait_for(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while self.alive() != n:
            assert time.monotonic() < deadline, f"the Dask cluster did not reach {n} workers"
            time.sleep(0.2)

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` (its whole process group: a nanny and its worker)."""
        os.killpg(self.workers[i].pid, signal.SIGKILL)
        self.workers[i].wait(timeout=30)

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=30)

    def __enter__(self) -> "LocalDask":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
