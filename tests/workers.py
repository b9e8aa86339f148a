"""Real `loom worker` processes for tests, on the test's own database."""

import os
import subprocess
import sys

from gateway.settings import Settings
from tests.conftest import REPO


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
