"""Real `loom worker` processes whose log each goes to a file of its own, so a test can read
what a worker said (that its relay lost its lease, or its place in the stream), and find the
process behind a holder named in MongoDB ("<hostname>:<pid>")."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from gateway.settings import Settings
from tests.conftest import REPO

STOP_S = 30.0
"""Ample for a clean stop: a worker hands its runs back and its lease over in a second or two."""


class LoggedWorkers:
    """`start()` starts one more worker; every worker started is killed on leaving (a stopped
    one too: SIGKILL needs no SIGCONT)."""

    def __init__(self, settings: Settings, logs: Path, **env: str) -> None:
        self.variables = {
            **os.environ,
            "LOOM_MONGODB_URL": str(settings.mongodb_url),
            "LOOM_REDIS_URL": str(settings.redis_url),
            "LOOM_DB_NAME": settings.db_name,
            **env,
        }
        self.logs = logs
        self.started: list[subprocess.Popen] = []
        self.log_files: dict[int, Path] = {}

    def __enter__(self) -> "LoggedWorkers":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for worker in self.started:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    def start(self) -> subprocess.Popen:
        path = self.logs / f"worker-{len(self.started)}.log"
        with path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "worker"],
                cwd=REPO,
                env=self.variables,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.started.append(worker)
        self.log_files[worker.pid] = path
        return worker

    def log(self, worker: subprocess.Popen) -> str:
        return self.log_files[worker.pid].read_text(errors="replace")

    def holding(self, holder: str) -> subprocess.Popen:
        """The worker a holder names; fails if it is none of ours."""
        host, pid = holder.rsplit(":", 1)
        assert host == socket.gethostname(), holder
        (worker,) = [worker for worker in self.started if worker.pid == int(pid)]
        return worker

    async def stop(self, worker: subprocess.Popen, signum: signal.Signals) -> None:
        """Stop a worker and await its exit (SIGTERM: once it stopped cleanly); one still
        running after STOP_S fails the test, with the end of its log."""
        worker.send_signal(signum)
        try:
            await asyncio.to_thread(worker.wait, STOP_S)
        except subprocess.TimeoutExpired:
            tail = "".join(self.log(worker).splitlines(keepends=True)[-20:])
            raise AssertionError(
                f"worker {worker.pid} still running {STOP_S} s after {signum.name}:\n{tail}"
            ) from None
