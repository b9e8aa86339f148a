"""A real `loom worker` process: it registers itself, runs jobs, and leaves cleanly."""

import os
import signal
import subprocess
import sys

from arq.jobs import Job

from tests.conftest import REPO


def _start_worker(settings) -> subprocess.Popen:
    env = {
        **os.environ,
        "LOOM_MONGODB_URL": settings.mongodb_url,
        "LOOM_REDIS_URL": settings.redis_url,
        "LOOM_DB_NAME": settings.db_name,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def test_worker_registers_answers_a_job_and_deregisters_on_sigterm(settings, db, redis):
    worker = _start_worker(settings)
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
        if worker.poll() is None:
            worker.kill()
            worker.wait()
