"""The arq worker process.

Each worker registers itself in MongoDB's `workers` collection and renews a heartbeat, so
operators (and, later, the execution reaper) know which workers are alive; a worker that stops
cleanly removes its entry, one that is killed expires by TTL. The `ping` job answers with the
worker's id: the cheapest proof that the queue path gateway → Redis → worker works.
`run_command` carries out Commands (triggers/commands.py), `run_execution` runs service
functions (triggers/executions.py). In the background each worker also requeues stalled
commands, reaps executions whose worker died and sweeps stored files a crash left behind
(triggers/periodic.py).
"""

import asyncio
import contextlib
import os
import socket
from datetime import timedelta
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

from gateway.connections import mongo_client
from gateway.settings import Settings
from resolvers.timestamps import now
from triggers.commands import requeue_stalled, run_command
from triggers.executions import reap_lost, requeue_waiting, run_execution
from triggers.file_sweeps import sweep_files
from triggers.periodic import every

HEARTBEAT_INTERVAL_S = 10.0
MAX_EXECUTION_S = 7 * 24 * 3600


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
        ctx["loops"] = [
            asyncio.create_task(every(interval, name, lambda work=work: work(ctx), first_in))
            for interval, name, work, first_in in rounds
        ]
        await requeue_waiting(ctx)

    async def shutdown(ctx: dict[str, Any]) -> None:
        for loop in ctx["loops"]:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await ctx["db"].workers.delete_one({"_id": ctx["worker_id"]})
        await ctx["mongo"].close()

    return Worker(
        functions=[
            ping,
            run_command,
            # A job waiting for a free slot of its service retries until one frees up.
            func(run_execution, max_tries=1_000_000),
        ],
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        # Executions enforce their services' own timeouts; arq's must never cut them short.
        job_timeout=MAX_EXECUTION_S + 60,
        **{
            "handle_signals": True,
            "max_jobs": settings.worker_max_jobs,
            "poll_delay": settings.worker_poll_delay_s,
            **overrides,
        },
    )
