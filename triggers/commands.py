"""Worker side of Commands: the arq job that runs one, and the sweep that requeues stalled ones.

The arq job id is `command:<id>:<attempts>`: queueing the same command twice before it runs is
a no-op, while a command whose worker died (one more attempt recorded) gets a fresh job.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any

from arq.connections import ArqRedis
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import batches, clone, commands
from triggers.executions import enqueue_many

log = logging.getLogger("loom.commands")

Runner = Callable[[dict[str, Any], dict[str, Any], timedelta], Awaitable[None]]


async def _clone(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    await clone.run_clone(ctx["db"], command, ctx["settings"].clone_batch_size, lease)


async def _execute_batch(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    enqueue = partial(enqueue_many, ctx["redis"])
    await batches.run_batch(ctx["db"], command, ctx["settings"].batch_page_size, lease, enqueue)


async def _rerun_batch(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    enqueue = partial(enqueue_many, ctx["redis"])
    await batches.run_rerun(ctx["db"], command, ctx["settings"].batch_page_size, lease, enqueue)


RUNNERS: dict[str, Runner] = {
    clone.KIND: _clone,
    batches.EXECUTE: _execute_batch,
    batches.RERUN: _rerun_batch,
}


def job_id(command: dict[str, Any]) -> str:
    return f"command:{command['_id']}:{command['attempts']}"


async def enqueue(redis: ArqRedis, command: dict[str, Any]) -> None:
    await redis.enqueue_job("run_command", str(command["_id"]), _job_id=job_id(command))


async def run_command(ctx: dict[str, Any], command_id: str) -> None:
    db: AsyncDatabase = ctx["db"]
    lease = timedelta(seconds=ctx["settings"].command_lease_s)
    command = await commands.claim(db, ObjectId(command_id), ctx["worker_id"], lease)
    if command is None:
        return
    log.info("command %s (%s) attempt %d", command_id, command["type"], command["attempts"])
    try:
        await RUNNERS[command["type"]](ctx, command, lease)
    except commands.LeaseLost:
        log.warning("command %s was taken over by another worker", command_id)
        return
    except Exception as exc:
        log.exception("command %s failed", command_id)
        await commands.finish(db, command, error=f"{type(exc).__name__}: {exc}")
        return
    await commands.finish(db, command)


async def requeue_stalled(ctx: dict[str, Any]) -> None:
    """Requeue commands whose worker died; every worker runs this, duplicates are harmless."""
    for command_id in await commands.stalled(ctx["db"]):
        command = await ctx["db"].commands.find_one({"_id": command_id})
        if command is not None:
            await enqueue(ctx["redis"], command)
