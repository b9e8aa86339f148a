"""Worker side of executions: run one, keep its lease alive, reap the ones lost workers left.

The first job of an execution has the execution's id as its arq job id; a rerun's job is
`<id>:<attempts>`, so queueing the same attempt twice is a no-op while a new attempt always
gets a job of its own. The function runs in its own task so a termination request or the
service's timeout can cancel it.
"""

import asyncio
import logging
from datetime import timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import Job, JobStatus, serialize_job
from arq.utils import timestamp_ms
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import executions, functions
from resolvers.executions import Status
from resolvers.timestamps import now

log = logging.getLogger("loom.executions")

SERVICE_BUSY_RETRY_S = 0.5
"""How soon a job whose service has no free concurrency slot looks again."""
ORPHAN_CHECK_TRIES = 20
"""Every so many tries, a job that keeps finding no slot checks that its service still exists
(a service deleted in the instant an execution was created for it would hold it forever)."""


QUEUE_CHECK_PAGE = 1000


def job_id(execution: dict[str, Any]) -> str:
    """The execution id for its first run; with the length of its status log after that, which
    grows with every change, so each new attempt gets a new job and a repeat queues nothing. A
    run handed back by a stopping worker, and the hand-back, do not count: arq runs that same
    job again."""
    changes = sum(
        -1 if entry["message"].startswith(executions.HANDED_BACK) else 1
        for entry in execution["statusLog"]
    )
    return str(execution["_id"]) if changes == 1 else f"{execution['_id']}:{changes}"


async def enqueue(redis: ArqRedis, execution: dict[str, Any]) -> None:
    await redis.enqueue_job("run_execution", str(execution["_id"]), _job_id=job_id(execution))


class Context(logging.Handler):
    """The FunctionContext a running function gets: progress, a stored log, its resource.

    Each execution has a logger of its own (not in logging's registry, so concurrent runs of
    one function never share handlers); its lines are written to the execution as they come.
    """

    def __init__(
        self, db: AsyncDatabase, execution: dict[str, Any], resource: dict[str, Any] | None
    ) -> None:
        super().__init__()
        self._db = db
        self._execution = execution
        self._pending: set[asyncio.Task] = set()
        self.resource = resource
        self.log = logging.Logger(f"loom.function.{execution['function']}")
        self.log.addHandler(self)

    async def progress(self, percent: int, message: str = "") -> None:
        await executions.report_progress(self._db, self._execution, percent, message)

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.levelname} {record.getMessage()}"
        task = asyncio.get_running_loop().create_task(
            executions.append_log(self._db, self._execution, line)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush_lines(self) -> None:
        """Wait until every logged line is stored (before the final status is written)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


async def _resource(db: AsyncDatabase, execution: dict[str, Any]) -> dict[str, Any] | None:
    reference = execution["resource"]
    if reference is None:
        return None
    return await db[f"{reference['type']}s"].find_one({"_id": reference["id"]})


async def _watch(
    db: AsyncDatabase, execution: dict[str, Any], run: asyncio.Task, lease: timedelta
) -> str | None:
    """Renew the lease until the run ends; cancel it on a termination request."""
    interval = min(1.0, lease.total_seconds() / 3)
    while not run.done():
        await asyncio.wait({run}, timeout=interval)
        current = await executions.heartbeat(db, execution, lease)
        if current is None or current.get("terminateRequested"):
            run.cancel()
            return "terminated" if current is not None else "lost"
    return None


async def run_execution(ctx: dict[str, Any], execution_id: str) -> None:
    db: AsyncDatabase = ctx["db"]
    lease = timedelta(seconds=ctx["settings"].execution_lease_s)
    try:
        execution = await executions.claim(db, ObjectId(execution_id), ctx["worker_id"], lease)
    except executions.ServiceBusy:
        if ctx["job_try"] % ORPHAN_CHECK_TRIES == 0 and await executions.abort_if_orphaned(
            db, ObjectId(execution_id)
        ):
            return
        raise Retry(defer=SERVICE_BUSY_RETRY_S) from None
    if execution is None:
        return
    try:
        await _run_claimed(db, execution, lease)
    except asyncio.CancelledError:
        if _worker_stopping():
            reason = f"{ctx['worker_id']} stopped"
            if not await executions.hand_back(db, execution, reason):
                await executions.finish(db, execution, Status.TERMINATED, error="terminated")
        raise


async def _run_claimed(db: AsyncDatabase, execution: dict[str, Any], lease: timedelta) -> None:
    resource = await _resource(db, execution)
    reference = execution["resource"]
    if reference is not None and resource is None:
        gone = f"its {reference['type']} {reference['id']} was deleted before it started"
        await executions.finish(db, execution, Status.ABORTED, error=gone)
        return
    context = Context(db, execution, resource)
    function = functions.lookup(execution["function"])
    data = function.input.model_validate(execution["input"])
    run = asyncio.create_task(
        asyncio.wait_for(function.run(data, context), timeout=execution["timeout"])
    )
    watcher = asyncio.create_task(_watch(db, execution, run, lease))
    try:
        output = await run
    except asyncio.CancelledError:
        await context.flush_lines()
        if _worker_stopping():
            raise
        if await watcher == "terminated":
            await executions.finish(db, execution, Status.TERMINATED, error="terminated")
        return
    except TimeoutError:
        await context.flush_lines()
        error = f"timed out after {execution['timeout']} s"
        await executions.finish(db, execution, Status.FAILED, error=error)
        return
    except Exception as exc:
        await context.flush_lines()
        await executions.finish(db, execution, Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return
    finally:
        watcher.cancel()
    await context.flush_lines()
    await executions.finish(db, execution, Status.SUCCESS, output=_json(output))


def _worker_stopping() -> bool:
    """Whether this job itself is being cancelled — arq cancels its jobs when the worker stops
    (SIGTERM) and runs them again later — rather than only the function's run, on termination."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _json(value: Any) -> Any:
    """Outputs are stored as JSON data: anything else is stored as its text."""
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


async def requeue_waiting(ctx: dict[str, Any], unchanged_for: timedelta | None = None) -> None:
    """Queue `created` executions whose job Redis no longer has: at start-up all of them (Redis
    may have lost its data), then periodically those unchanged for `unchanged_for` (a job
    record expires a day after it was queued, which a run handed back later outlives). They
    are read and checked a page at a time."""
    since = now() - unchanged_for if unchanged_for is not None else None
    page: list[dict[str, Any]] = []
    async for execution in executions.waiting(ctx["db"], since):
        page.append(execution)
        if len(page) == QUEUE_CHECK_PAGE:
            await _requeue_unqueued(ctx["redis"], page)
            page = []
    if page:
        await _requeue_unqueued(ctx["redis"], page)


async def _requeue_unqueued(redis: ArqRedis, page: list[dict[str, Any]]) -> None:
    """One round trip finds the jobs in the queue; only the others cost a status check. A job
    record left without its queue entry (a queueing cut short) is replaced: arq would refuse
    to queue a job whose record exists."""
    async with redis.pipeline(transaction=False) as pipe:
        for execution in page:
            pipe.zscore(redis.default_queue_name, job_id(execution))
        scores = await pipe.execute()
    for execution, score in zip(page, scores, strict=True):
        job = job_id(execution)
        if score is None and await Job(job, redis).status() == JobStatus.not_found:
            await redis.delete(job_key_prefix + job)
            await enqueue(redis, execution)


async def reap_lost(ctx: dict[str, Any]) -> None:
    """Rerun or fail executions whose worker died; every worker runs this."""
    for execution in await executions.reap(ctx["db"]):
        log.warning("execution %s lost its worker; queued again", execution["_id"])
        await enqueue(ctx["redis"], execution)
    await executions.reconcile_slots(ctx["db"])


async def enqueue_many(redis: ArqRedis, batch: list[dict[str, Any]]) -> None:
    """Queue the first jobs of many new executions in one pipelined round trip.

    The same records arq's `enqueue_job` writes (job key with its expiry, queue entry), without
    its per-job existence check: these executions were just created, so no job has their ids.
    """
    enqueued_ms = timestamp_ms()
    async with redis.pipeline(transaction=False) as pipe:
        for execution in batch:
            job = serialize_job("run_execution", (str(execution["_id"]),), {}, None, enqueued_ms)
            pipe.psetex(job_key_prefix + job_id(execution), redis.expires_extra_ms, job)
        pipe.zadd(redis.default_queue_name, {job_id(execution): enqueued_ms for execution in batch})
        await pipe.execute()
