"""Worker side of Commands: the arq job that runs one, and the sweep that requeues stalled ones.

The arq job id is `command:<id>:<attempts>`: queueing the same command twice before it runs is
a no-op, while a command whose worker died (one more attempt recorded) gets a fresh job. The
job keeps no result (triggers/worker.py), so a job cut short can be queued again.

MongoDB away while a command runs (an election) fails nothing: the runner stops at the step
that met it, waits for MongoDB (triggers/patience.py) and goes on from the command's last
committed cursor — each step commits its cursor with its work, so nothing is done twice. After
`LOOM_TRANSIENT_RETRY_S` the worker gives up without failing the command: its lease lapses and
the sweep queues it again. Redis away only delays queueing a batch's executions: the worker
queues every waiting execution again once Redis is back.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import batches, clone, commands, model_run_commit, prediction_uploads
from resolvers.deployments import batches as deployment_batches
from resolvers.interchange import exports, imports
from resolvers.versions import snapshots
from triggers.executions import enqueue_many
from triggers.patience import MAX_WAIT_S, GaveUp, Patience

log = logging.getLogger("loom.commands")

Runner = Callable[[dict[str, Any], dict[str, Any], timedelta], Awaitable[None]]


async def _clone(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    await clone.run_clone(ctx["db"], command, ctx["settings"].clone_batch_size, lease)


async def _snapshot(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    await snapshots.run_snapshot(ctx["db"], command, ctx["settings"].version_batch_size, lease)


async def _export(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    await exports.run_export(ctx["db"], command, lease)


async def _import(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    await imports.run_import(ctx["db"], command, lease)


def _enqueue(ctx: dict[str, Any]) -> Callable[[list[dict[str, Any]], int], Awaitable[None]]:
    """Queue a committed page's executions; Redis away leaves them to be queued again from
    MongoDB (they are committed), and the batch goes on."""
    patience: Patience = ctx["patience"]

    async def enqueue(page: list[dict[str, Any]], behind_ms: int = 0) -> None:
        try:
            await enqueue_many(ctx["redis"], page, behind_ms)
        except Exception as exc:
            if patience.noticed(exc) is None:
                raise
            log.warning("%d executions left to be queued again: %s", len(page), exc)

    return enqueue


async def _execute_batch(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    page_size = ctx["settings"].batch_page_size
    await batches.run_batch(ctx["db"], command, page_size, lease, _enqueue(ctx))


async def _rerun_batch(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    page_size = ctx["settings"].batch_page_size
    await batches.run_rerun(ctx["db"], command, page_size, lease, _enqueue(ctx))


async def _predict_batch(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    page_size = ctx["settings"].batch_page_size
    await deployment_batches.run_predict_batch(ctx["db"], command, page_size, lease, _enqueue(ctx))


async def _upload_predictions(
    ctx: dict[str, Any], command: dict[str, Any], lease: timedelta
) -> None:
    await prediction_uploads.run_upload(ctx["db"], command, lease)


async def _commit_model_run(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> None:
    await model_run_commit.run_commit(ctx["db"], command, lease)


RUNNERS: dict[str, Runner] = {
    clone.KIND: _clone,
    snapshots.KIND: _snapshot,
    exports.KIND: _export,
    imports.KIND: _import,
    batches.EXECUTE: _execute_batch,
    batches.RERUN: _rerun_batch,
    prediction_uploads.KIND: _upload_predictions,
    deployment_batches.KIND: _predict_batch,
    model_run_commit.KIND: _commit_model_run,
}


FAILURES: dict[str, Callable[[AsyncDatabase, dict[str, Any], str], Awaitable[None]]] = {
    snapshots.KIND: snapshots.mark_failed,
}
"""What else a command's failure fails, by kind (a version whose copy failed)."""


def job_id(command: dict[str, Any]) -> str:
    return f"command:{command['_id']}:{command['attempts']}"


async def enqueue(redis: ArqRedis, command: dict[str, Any]) -> None:
    await redis.enqueue_job("run_command", str(command["_id"]), _job_id=job_id(command))


async def run_command(ctx: dict[str, Any], command_id: str) -> None:
    db: AsyncDatabase = ctx["db"]
    patience: Patience = ctx["patience"]
    lease = timedelta(seconds=ctx["settings"].command_lease_s)
    try:
        command = await patience.call(
            "claiming a command",
            lambda: commands.claim(db, ObjectId(command_id), ctx["worker_id"], lease),
        )
    except GaveUp as exc:
        log.warning("command %s left to the sweep: %s", command_id, exc)
        return
    if command is None:
        return
    log.info("command %s (%s) attempt %d", command_id, command["type"], command["attempts"])
    error = await _carry_out(ctx, command, lease)
    if error is _LEFT:
        return
    if error is not None and command["type"] in FAILURES:
        await FAILURES[command["type"]](db, command, error)
    try:
        await patience.call("finishing a command", lambda: commands.finish(db, command, error))
    except GaveUp as exc:
        log.warning("command %s: its end left to the sweep: %s", command_id, exc)


_LEFT = object()
"""`_carry_out`'s answer when the command is not this worker's to finish."""


async def _carry_out(ctx: dict[str, Any], command: dict[str, Any], lease: timedelta) -> Any:
    """Run the command, resuming it after MongoDB was away; None when done, its error when
    it failed, `_LEFT` when another worker has it now or the wait was given up."""
    patience: Patience = ctx["patience"]
    since: float | None = None
    while True:
        try:
            await RUNNERS[command["type"]](ctx, command, lease)
            return None
        except commands.LeaseLost:
            log.warning("command %s was taken over by another worker", command["_id"])
            return _LEFT
        except Exception as exc:
            dependency = patience.noticed(exc)
            if dependency is None:
                log.exception("command %s failed", command["_id"])
                return f"{type(exc).__name__}: {exc}"
            since = since or time.monotonic()
            if time.monotonic() - since > patience.retry_s:
                log.warning("command %s left to the sweep: %s away", command["_id"], dependency)
                return _LEFT
            log.warning("command %s waits for %s: %s", command["_id"], dependency, exc)
            await asyncio.sleep(MAX_WAIT_S)
            again = await _reread(ctx, command)
            if again is None:
                return _LEFT
            command = again


async def _reread(ctx: dict[str, Any], command: dict[str, Any]) -> dict[str, Any] | None:
    """The command as last committed (its cursor), if it is still this worker's."""
    try:
        again = await ctx["patience"].call(
            "reading a command", lambda: ctx["db"].commands.find_one({"_id": command["_id"]})
        )
    except GaveUp:
        return None
    if again is None or again["worker"] != command["worker"] or again["status"] != "inProgress":
        return None
    return again


async def requeue_stalled(ctx: dict[str, Any]) -> None:
    """Requeue commands whose worker died; every worker runs this, duplicates are harmless."""
    for command_id in await commands.stalled(ctx["db"]):
        command = await ctx["db"].commands.find_one({"_id": command_id})
        if command is not None:
            await enqueue(ctx["redis"], command)
