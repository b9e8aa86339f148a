"""A real `loom worker` process: it registers itself, runs jobs, and leaves cleanly."""

import os
import signal
import subprocess
import sys

from arq.jobs import Job

from tests.conftest import REPO
from tests.servers import free_port
from tests.workers import start_worker, stop


async def test_worker_registers_answers_a_job_and_deregisters_on_sigterm(settings, db, redis):
    worker = start_worker(settings)
    try:
        async with await db.workers.watch() as changes:
            registered = (await changes.next())["fullDocument"]
            assert registered["pid"] == worker.pid
            job: Job = await redis.enqueue_job("ping")
            assert await job.result(timeout=30, poll_delay=0.05) == registered["_id"]

            worker.send_signal(signal.SIGTERM)
            async for change in changes:
                if change["operationType"] == "delete":
                    assert change["documentKey"]["_id"] == registered["_id"]
                    break
        assert worker.wait(timeout=30) == 0
        assert await db.workers.count_documents({}) == 0
    finally:
        stop(worker)


def test_a_worker_waiting_for_mongodb_at_start_up_stops_at_once_when_told(settings, tmp_path):
    """Start-up waits for MongoDB as long as it takes — but SIGTERM (Ctrl-C in `loom dev`,
    a rolling deploy) ends that wait instead of being ignored until MongoDB answers."""
    nobody = f"mongodb://127.0.0.1:{free_port()}/?replicaSet=rs0&serverSelectionTimeoutMS=500"
    worker = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker"],
        cwd=REPO,
        env={**os.environ, "LOOM_MONGODB_URL": nobody, "LOOM_REDIS_URL": str(settings.redis_url)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        for line in worker.stderr:
            if "MongoDB unavailable" in line:
                break
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        assert "stopped before it started" in worker.stderr.read()
    finally:
        stop(worker)
