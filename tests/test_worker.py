"""A real `loom worker` process: it registers itself, runs jobs, and leaves cleanly."""

import signal

from arq.jobs import Job

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
