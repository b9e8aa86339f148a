"""What a fired trigger starts, once per key: an execution of its function, or a delivery to
its webhook (a `loom.scheduled` message with the trigger, its input and what fired it).

The relay fires event triggers in bulk (triggers/relay/relay.py); the cron scheduler, one-off
scheduled runs and manual invocations fire one operation at a time, through `fire`. Each
firing has a key — (trigger, event), (trigger, resource) for `Once`, (cron trigger, scheduled
time) — that the execution or delivery is stored under, unique: a firing repeated after a crash
or by a second worker finds what the first one made instead of making another.
"""

from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

from resolvers import deliveries, trigger_operations
from resolvers.json_documents import as_json
from resolvers.timestamps import now
from triggers import execution_queue
from triggers.webhooks import delivery_queue
from triggers.webhooks.delivery_queue import Due


class OperationUnavailable(Exception):
    """The operation cannot run: its service or webhook is gone or turned off."""


async def fire(
    db: AsyncDatabase,
    redis: Redis,
    owner: dict[str, Any],
    key: str,
    resource: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, ObjectId]:
    """Start `owner`'s operation (a trigger or a cron trigger: a document with `_id`,
    `creator` and `operation`) once for `key`; `{"executionId": id}` or `{"deliveryId": id}` of
    what it made, or of what an earlier firing with the same key made. Queued in Redis when
    still waiting; if Redis is away it stays stored, and the workers queue it again."""
    operation = owner["operation"]
    if operation["type"] == "webhook":
        return await _deliver(db, redis, owner, key, extra)
    service = await db.services.find_one({"_id": operation["serviceId"]})
    if service is None:
        raise OperationUnavailable("its service was deleted")
    if not service["active"]:
        raise OperationUnavailable(f"service {service['name']!r} is not active")
    execution = trigger_operations.execution_for(owner, service, resource, triggerKey=key, **extra)
    try:
        await db.executions.insert_one(execution)
    except DuplicateKeyError:
        execution = await db.executions.find_one({"triggerKey": key}, {"serviceId": 1, "status": 1})
        if execution is None:
            raise
        if execution["status"] != "created":
            return {"executionId": execution["_id"]}
    await execution_queue.push(redis, [execution])
    return {"executionId": execution["_id"]}


async def _deliver(
    db: AsyncDatabase, redis: Redis, owner: dict[str, Any], key: str, extra: dict[str, Any]
) -> dict[str, ObjectId]:
    webhook = await db.webhooks.find_one(
        {"_id": owner["operation"]["webhookId"], "projectId": owner["projectId"]}
    )
    if webhook is None:
        raise OperationUnavailable("its webhook was deleted")
    if not webhook["active"]:
        raise OperationUnavailable(f"webhook {webhook['name']!r} is turned off")
    moment = now()
    data = {
        "trigger": {"id": str(owner["_id"]), "name": owner.get("name")},
        "input": as_json(owner["operation"].get("input") or owner.get("input") or {}),
        **as_json(extra),
    }
    delivery = deliveries.new_delivery(
        webhook, "loom.scheduled", data, moment, owner.get("creator"), deliveryKey=key, **extra
    )
    try:
        await db.deliveries.insert_one(delivery)
    except DuplicateKeyError:
        delivery = await db.deliveries.find_one({"deliveryKey": key})
        if delivery is None:
            raise
        if delivery["state"] != "pending":
            return {"deliveryId": delivery["_id"]}
    await delivery_queue.push(
        redis,
        [Due.pending(delivery, webhook["concurrency"])],
    )
    return {"deliveryId": delivery["_id"]}
