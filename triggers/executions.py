"""Executions on the worker side: queueing them, queueing again what Redis lost, reaping the
runs of dead workers. Running them is the engine's (triggers/execution_engine.py).

Executions do not travel as arq jobs: a job per execution costs five Redis round trips and a
worker poll, more than a no-op run itself. Each service has a queue of execution ids in Redis
(triggers/execution_queue.py) that workers claim from a page at a time; MongoDB stays the
truth of what waits, so the queue can be rebuilt from it at any time.
"""

import logging
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from resolvers import execution_runs
from resolvers.timestamps import now
from triggers import execution_queue

log = logging.getLogger("loom.executions")

QUEUE_CHECK_PAGE = 1000


async def enqueue(redis: Redis, execution: dict[str, Any], behind_ms: int = 0) -> None:
    await execution_queue.push(redis, [execution], behind_ms)


async def enqueue_many(redis: Redis, batch: list[dict[str, Any]], behind_ms: int = 0) -> None:
    """Queue many executions in one pipelined round trip (a batch's page), `behind_ms` behind
    the others (a predict batch's shadow runs)."""
    await execution_queue.push(redis, batch, behind_ms)


async def requeue_waiting(ctx: dict[str, Any], unchanged_for: timedelta | None = None) -> None:
    """Queue `created` executions again: all of them at start-up and whenever Redis comes
    back (it may have lost its data, or an id popped or pushed meanwhile), and periodically
    those unchanged for `unchanged_for` (their ids may have been popped by a worker that died
    before claiming them, or the gateway's push failed). Queueing is idempotent — an id still
    queued keeps its place — so nothing needs to be asked of Redis first, and nothing Redis
    holds (or lost) is trusted."""
    since = now() - unchanged_for if unchanged_for is not None else None
    page: list[dict[str, Any]] = []
    async for execution in execution_runs.waiting(ctx["db"], since):
        page.append(execution)
        if len(page) == QUEUE_CHECK_PAGE:
            await execution_queue.push(ctx["redis"], page)
            page = []
    await execution_queue.push(ctx["redis"], page)


async def reap_lost(ctx: dict[str, Any]) -> None:
    """Rerun or fail executions whose worker died; every worker runs this.

    Not within a lease of MongoDB being away: leases lapse during an outage because nobody
    could renew them, not because their workers died — each is given a lease's time to be
    renewed (the renewal that gets through tells its worker whether the run is still its)."""
    lease_s = ctx["settings"].execution_lease_s
    if ctx["patience"].away_within("MongoDB", lease_s):
        return
    again = await execution_runs.reap(ctx["db"])
    for execution in again:
        log.warning("execution %s lost its worker; queued again", execution["_id"])
    await execution_queue.push(ctx["redis"], again)
