"""Real `loom worker` processes for tests, on the test's own database."""

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

from gateway.settings import Settings
from tests.conftest import REPO
from triggers.commands import run_command
from triggers.patience import Patience


def start_worker(settings: Settings, **env: str) -> subprocess.Popen:
    variables = {
        **os.environ,
        "LOOM_MONGODB_URL": str(settings.mongodb_url),
        "LOOM_REDIS_URL": str(settings.redis_url),
        "LOOM_DB_NAME": settings.db_name,
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker"],
        cwd=REPO,
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait()


@contextlib.contextmanager
def worker_processes(settings: Settings, **env: str) -> Iterator[Callable[[], subprocess.Popen]]:
    """`start()` starts one more worker; every worker started is stopped on leaving."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        started.append(start_worker(settings, **env))
        return started[-1]

    try:
        yield start
    finally:
        for worker in started:
            stop(worker)


async def run_command_here(db: Any, redis: Any, settings: Settings, command_id: str) -> None:
    """Carry out a queued command in this process with the worker's own job function
    (triggers/commands.py), for tests about what a command does rather than how it is
    queued."""
    ctx = {
        "db": db,
        "redis": redis,
        "settings": settings,
        "worker_id": "test-process",
        "patience": Patience(settings.transient_retry_s),
    }
    await run_command(ctx, command_id)
