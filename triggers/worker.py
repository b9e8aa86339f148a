"""The arq worker process.

Each worker registers itself in MongoDB's `workers` collection and renews a heartbeat, so
operators (and, later, the execution reaper) know which workers are alive; a worker that stops
cleanly removes its entry, one that is killed expires by TTL. The `ping` job answers with the
worker's id: the cheapest proof that the queue path gateway → Redis → worker works.
`run_command` carries out Commands (triggers/commands.py). Executions do not come as arq jobs:
each worker's execution engine (triggers/execution_engine.py) claims them from their services'
queues, up to `LOOM_WORKER_MAX_JOBS` at once (`loom worker --concurrency N`); run several
`loom worker` processes (one per core, on as many hosts as wanted) to run more. In the
background each worker also requeues stalled commands, reaps executions whose worker died,
queues again executions Redis lost, and sweeps stored files a crash left behind
(triggers/periodic.py).
"""

import asyncio
import contextlib
import os
import socket
from datetime import timedelta
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker

from gateway.connections import mongo_client
from gateway.indexes import INDEXES
from gateway.settings import Settings
from resolvers.timestamps import now
from triggers.commands import requeue_stalled, run_command
from triggers.execution_engine import Engine
from triggers.executions import reap_lost, requeue_waiting
from triggers.file_sweeps import sweep_files
from triggers.periodic import every

HEARTBEAT_INTERVAL_S = 10.0
MAX_COMMAND_S = 7 * 24 * 3600


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def ping(ctx: dict[str, Any]) -> str:
    return ctx["worker_id"]


async def _heartbeat(ctx: dict[str, Any]) -> None:
    await ctx["db"].workers.update_one(
        {"_id": ctx["worker_id"]},
        {"$set": {"lastSeenAt": now(), "pid": os.getpid(), "startedAt": ctx["started_at"]}},
        upsert=True,
    )


async def _requeue_quiet(ctx: dict[str, Any]) -> None:
    await requeue_waiting(ctx, timedelta(seconds=ctx["settings"].queue_check_s))


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    if settings.mongodb_url is None or settings.redis_url is None:
        raise ValueError("resolve the embedded stack's URLs before building a worker")
    mongodb_url = settings.mongodb_url

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["mongo"] = mongo_client(mongodb_url, settings)
        ctx["db"] = ctx["mongo"][settings.db_name]
        ctx["settings"] = settings
        ctx["worker_id"] = worker_id()
        ctx["started_at"] = now()
        # (interval, name, work, first round after): the queue check's first round would
        # repeat the start-up one below.
        rounds = [
            (HEARTBEAT_INTERVAL_S, "heartbeat", _heartbeat, 0),
            (settings.command_sweep_s, "command sweep", requeue_stalled, 0),
            (settings.reaper_interval_s, "execution reaper", reap_lost, 0),
            (settings.file_sweep_s, "file sweep", sweep_files, 0),
            (settings.queue_check_s, "queue check", _requeue_quiet, settings.queue_check_s),
        ]
        # The slot index is what bounds a service's concurrency: never run without it.
        await ctx["db"].executions.create_indexes(INDEXES["executions"])
        ctx["loops"] = [
            asyncio.create_task(every(interval, name, lambda work=work: work(ctx), first_in))
            for interval, name, work, first_in in rounds
        ]
        await requeue_waiting(ctx)
        ctx["engine"] = Engine(
            ctx["db"],
            ctx["redis"],
            ctx["worker_id"],
            settings.worker_max_jobs,
            timedelta(seconds=settings.execution_lease_s),
            settings.worker_poll_delay_s,
        )
        ctx["engine"].start()

    async def shutdown(ctx: dict[str, Any]) -> None:
        await ctx["engine"].stop(f"{ctx['worker_id']} stopped")
        for loop in ctx["loops"]:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await ctx["db"].workers.delete_one({"_id": ctx["worker_id"]})
        await ctx["mongo"].close()

    return Worker(
        functions=[ping, run_command],
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        # Commands renew their own leases; arq's timeout must never cut them short.
        job_timeout=MAX_COMMAND_S,
        **{
            "handle_signals": True,
            "max_jobs": settings.worker_max_jobs,
            "poll_delay": settings.worker_poll_delay_s,
            **overrides,
        },
    )
