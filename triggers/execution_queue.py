"""The Redis side of executions: which ones wait, per service, for a worker to claim them.

MongoDB is the truth of what waits (`status: created`); Redis only carries the ids, so that a
worker finds work without scanning MongoDB and two workers never reach for the same execution.
Each service has a sorted set of waiting execution ids, scored by when they were queued (oldest
first), and one set names the services whose sorted set is not empty. Queueing an id twice is
a no-op (ZADD NX); popping takes the oldest ids atomically, so two workers get disjoint ones,
and drops the service from the set of ready ones when its last id is taken — in the same
script, so no id is ever queued in a service that no worker will look at.

Losing Redis loses no execution: every `created` execution is queued again at a worker's
start-up and, once quiet for `LOOM_QUEUE_CHECK_S`, by every worker's queue check — which need
not ask whether an id is still queued, since queueing is idempotent and a claim of an execution
that is no longer `created` writes nothing. arq's per-job records (job key, in-progress key,
retry counter, result) are not used for executions: one execution costs Redis a share of one
ZADD and one pop, not five round trips.

Every push also publishes on `WAKE`, in the same pipelined round trip: idle workers listen
there and claim at once, instead of at their next poll (`LOOM_WORKER_POLL_DELAY_S`) — what a
synchronous `predict` waits for. A lost message costs only that poll delay.
"""

from collections.abc import Iterable
from typing import Any

from arq.utils import timestamp_ms
from bson import ObjectId
from redis.asyncio import Redis

READY = "loom:executions:ready"
"""The ids of the services that have queued executions."""
PREFIX = "loom:executions:"
WAKE = "loom:executions:wake"
"""The channel every push publishes on, so idle workers look at once."""

_POP = """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return popped
"""


def service_key(service_id: ObjectId | str) -> str:
    return f"{PREFIX}{service_id}"


async def push(redis: Redis, executions: Iterable[dict[str, Any]], behind_ms: int = 0) -> None:
    """Queue executions (documents with `_id` and `serviceId`) in one pipelined round trip;
    `behind_ms` puts them behind whatever else is queued in that much time (a deployment's
    shadow runs wait behind its champion runs)."""
    by_service: dict[ObjectId, dict[str, int]] = {}
    queued_ms = timestamp_ms() + behind_ms
    for execution in executions:
        by_service.setdefault(execution["serviceId"], {})[str(execution["_id"])] = queued_ms
    await push_scored(redis, by_service)


async def push_scored(redis: Redis, by_service: dict[ObjectId, dict[str, int]]) -> None:
    """Queue ids with the scores given (an id put back keeps its place in the line)."""
    if not by_service:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for service_id, scored in by_service.items():
            pipe.zadd(service_key(service_id), scored, nx=True)
        pipe.sadd(READY, *(str(service_id) for service_id in by_service))
        pipe.publish(WAKE, b"")
        await pipe.execute()


async def ready_services(redis: Redis) -> list[ObjectId]:
    return [ObjectId(raw.decode()) for raw in await redis.smembers(READY)]


async def pop(redis: Redis, service_id: ObjectId, count: int) -> dict[ObjectId, int]:
    """Take up to `count` of the service's oldest queued ids, with their scores."""
    raw = await redis.eval(_POP, 2, service_key(service_id), READY, count, str(service_id))
    return {ObjectId(raw[n].decode()): int(float(raw[n + 1])) for n in range(0, len(raw), 2)}


async def drop_service(redis: Redis, service_id: ObjectId) -> None:
    """Forget a deleted service's queue."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(service_key(service_id))
        pipe.srem(READY, str(service_id))
        await pipe.execute()
