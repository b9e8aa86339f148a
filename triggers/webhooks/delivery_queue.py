"""The Redis side of deliveries: when each is due, and how many run per webhook at once.

MongoDB is the truth of what is pending (`state: pending`, `nextAttemptAt`); Redis carries
only ids, so that workers find due deliveries without scanning MongoDB and a webhook's
concurrency holds across every worker. Per webhook there is a sorted set of its deliveries
scored by when they are due, and a sorted set of its slots — the deliveries in flight, scored
by when their slot lapses if the worker holding it dies. One sorted set names the webhooks
with something queued, scored by when their next delivery is due (or, for a webhook whose
slots are all taken, when its first slot lapses). `take` pops due deliveries of ready
webhooks and takes a slot for each, in one script: the limit is never exceeded, and a slow
receiver's backlog is never in the way of another webhook's deliveries.

Losing Redis loses no delivery: workers queue every pending delivery again at start-up, when
Redis comes back empty, and in their sweep (`requeue_pending`); queueing an id twice only
sets its due time again, and a worker claims a delivery in MongoDB before sending it.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from redis.asyncio import Redis

PREFIX = "loom:deliveries:"
READY = f"{PREFIX}ready"
LIMITS = f"{PREFIX}limits"
SCAN = 200
"""How many ready webhooks one `take` looks at."""

_TAKE = """
local now, want, lapse = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local prefix = ARGV[4]
local out = {}
local ready = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[5])
for _, webhook in ipairs(ready) do
  if want <= 0 then break end
  local due, slots = prefix .. 'due:' .. webhook, prefix .. 'slots:' .. webhook
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  local limit = tonumber(redis.call('HGET', KEYS[2], webhook) or '1')
  local free = limit - redis.call('ZCARD', slots)
  if free > 0 then
    local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, math.min(free, want))
    for _, id in ipairs(ids) do
      redis.call('ZREM', due, id)
      redis.call('ZADD', slots, lapse, id)
      table.insert(out, webhook)
      table.insert(out, id)
      want = want - 1
    end
    free = free - #ids
  end
  local head = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
  if #head == 0 then
    redis.call('ZREM', KEYS[1], webhook)
  elseif free > 0 then
    redis.call('ZADD', KEYS[1], head[2], webhook)
  else
    local first = redis.call('ZRANGE', slots, 0, 0, 'WITHSCORES')
    redis.call('ZADD', KEYS[1], math.max(tonumber(head[2]), tonumber(first[2])), webhook)
  end
end
return out
"""

_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #head > 0 then redis.call('ZADD', KEYS[3], 'LT', head[2], ARGV[2]) end
"""


@dataclass(frozen=True)
class Due:
    """A delivery to queue: its webhook, when it is due, and the webhook's concurrency."""

    webhook_id: ObjectId
    delivery_id: ObjectId
    due_ms: int
    concurrency: int

    @classmethod
    def pending(cls, delivery: dict[str, Any], concurrency: int) -> "Due":
        """A stored pending delivery, due at its `nextAttemptAt`."""
        due_ms = int(delivery["nextAttemptAt"].timestamp() * 1000)
        return cls(delivery["webhookId"], delivery["_id"], due_ms, concurrency)


def _due_key(webhook_id: ObjectId | str) -> str:
    return f"{PREFIX}due:{webhook_id}"


def slots_key(webhook_id: ObjectId | str) -> str:
    return f"{PREFIX}slots:{webhook_id}"


async def push(redis: Redis, queued: Iterable[Due]) -> None:
    """Queue deliveries in one pipelined round trip (an id queued again gets the new due
    time)."""
    earliest: dict[ObjectId, int] = {}
    async with redis.pipeline(transaction=False) as pipe:
        for due in queued:
            pipe.zadd(_due_key(due.webhook_id), {str(due.delivery_id): due.due_ms})
            pipe.hset(LIMITS, str(due.webhook_id), due.concurrency)
            earliest[due.webhook_id] = min(due.due_ms, earliest.get(due.webhook_id, due.due_ms))
        if not earliest:
            return
        for webhook_id, due_ms in earliest.items():
            pipe.zadd(READY, {str(webhook_id): due_ms}, lt=True)
        await pipe.execute()


async def set_concurrency(redis: Redis, webhook_id: ObjectId, concurrency: int) -> None:
    """A webhook's new concurrency, for the deliveries already queued too."""
    await redis.hset(LIMITS, str(webhook_id), concurrency)


async def take(
    redis: Redis, now_ms: int, want: int, slot_lapse_ms: int
) -> list[tuple[ObjectId, ObjectId]]:
    """Up to `want` due deliveries as (webhook id, delivery id), each holding one of its
    webhook's slots until it is released or `slot_lapse_ms` passes."""
    raw = await redis.eval(_TAKE, 2, READY, LIMITS, now_ms, want, slot_lapse_ms, PREFIX, SCAN)
    return [
        (ObjectId(raw[n].decode()), ObjectId(raw[n + 1].decode())) for n in range(0, len(raw), 2)
    ]


async def release(redis: Redis, held: Iterable[tuple[ObjectId, ObjectId]]) -> None:
    """Give slots back, (webhook id, delivery id) each, in one round trip: each webhook's next
    due delivery may go at once."""
    async with redis.pipeline(transaction=False) as pipe:
        for webhook_id, delivery_id in held:
            pipe.eval(
                _RELEASE,
                3,
                slots_key(webhook_id),
                _due_key(webhook_id),
                READY,
                str(delivery_id),
                str(webhook_id),
            )
        await pipe.execute()
