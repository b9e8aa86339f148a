"""Webhook deliveries: one message to one webhook, and the log of every attempt to send it.

A delivery is `pending` until an attempt lands (`delivered`), its retries run out or the
receiver refuses it for good (`failed`), or it is given up on by Loom's side — its webhook
deleted or turned off (`cancelled`). The message is stored with the delivery when it is made,
so retries and redeliveries send the same message under the same `webhook-id` however long
the event itself is kept. Workers send them (triggers/webhooks/dispatcher.py); MongoDB is the
truth of what is due, Redis only says when.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from resolvers.access import Access, Action
from resolvers.errors import BadUserInput, Conflict
from resolvers.json_documents import as_json
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.timestamps import new_document, now

NEWEST_FIRST = [("createdAt", -1), ("_id", -1)]
MAX_LOGGED_ATTEMPTS = 100
"""A delivery redelivered many times keeps the log of its latest attempts only."""


class DeliveryState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"
    cancelled = "cancelled"


def event_type(resource: str, action: str) -> str:
    """`item.created`, `execution.statusChanged`: the message's `type`."""
    return f"{resource[0].lower()}{resource[1:]}.{action[0].lower()}{action[1:]}"


def event_message(trigger: dict[str, Any], event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The type and data of the message an event sends for a trigger."""
    data = {
        "trigger": {"id": str(trigger["_id"]), "name": trigger["name"]},
        "event": {
            "id": str(event["_id"]),
            "resource": event["resource"],
            "action": event["action"],
            "old": as_json(event["before"]),
            "new": as_json(event["after"]),
        },
    }
    return event_type(event["resource"], event["action"]), data


def new_delivery(
    webhook: dict[str, Any],
    type_: str,
    data: dict[str, Any],
    timestamp: datetime,
    creator: ObjectId | None,
    **extra: Any,
) -> dict[str, Any]:
    """A pending delivery of a message, due now. `extra` names what made it (`triggerId`,
    `eventId`, `cronFireId`) and its `deliveryKey`, unique, when it must be made once."""
    return new_document(
        creator,
        orgId=webhook["orgId"],
        projectId=webhook["projectId"],
        webhookId=webhook["_id"],
        type=type_,
        message={"type": type_, "timestamp": timestamp.isoformat(), "data": data},
        state=str(DeliveryState.pending),
        reason=None,
        attempts=[],
        attemptCount=0,
        maxAttempts=webhook["retryPolicy"]["maxAttempts"],
        nextAttemptAt=now(),
        lease=None,
        endedAt=None,
        **extra,
    )


async def get_delivery(access: Access, delivery_id: ObjectId) -> dict[str, Any]:
    return await access.visible(
        "deliveries", delivery_id, project_field="projectId", entity="WebhookDelivery"
    )


async def list_deliveries(
    access: Access,
    query: dict[str, Any],
    page: PageRequest,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page:
    """A page of the deliveries the caller sees that match `query`, newest first, narrowed
    by state and by when they were made."""
    if state is not None and state not in DeliveryState.__members__:
        raise BadUserInput(
            f"state must be one of {', '.join(DeliveryState)}, not {state!r}", field="state"
        )
    made: dict[str, Any] = {}
    if since is not None:
        made["$gte"] = since
    if until is not None:
        made["$lt"] = until
    narrowed = {
        **query,
        **({"state": state} if state else {}),
        **({"createdAt": made} if made else {}),
    }
    scoped = {"$and": [await access.scope(), narrowed]}
    return await paginate(access.db.deliveries, scoped, page, NEWEST_FIRST)


async def redeliver(access: Access, delivery_id: ObjectId) -> dict[str, Any]:
    """Send a delivery again, as it was (same `webhook-id`: the receiver may know it), with a
    fresh round of attempts; its log goes on. The caller queues it."""
    delivery = await get_delivery(access, delivery_id)
    await access.require_project(delivery, Action.MANAGE_WEBHOOKS)
    webhook = await access.db.webhooks.find_one(
        {"_id": delivery["webhookId"], "projectId": delivery["projectId"]}
    )
    if webhook is None:
        raise Conflict("The delivery's webhook was deleted")
    if not webhook["active"]:
        raise Conflict("The webhook is turned off; turn it on first", id=str(webhook["_id"]))
    if delivery["state"] == DeliveryState.pending:
        raise Conflict("The delivery is still pending", id=str(delivery_id))
    moment = now()
    updated = await access.db.deliveries.find_one_and_update(
        {"_id": delivery_id, "state": delivery["state"]},
        {
            "$set": {
                "state": str(DeliveryState.pending),
                "reason": None,
                "maxAttempts": delivery["attemptCount"] + webhook["retryPolicy"]["maxAttempts"],
                "nextAttemptAt": moment,
                "lease": None,
                "endedAt": None,
                "updatedAt": moment,
            }
        },
        return_document=ReturnDocument.AFTER,
    )
    if updated is None:
        raise Conflict("The delivery changed meanwhile; try again", id=str(delivery_id))
    return updated


async def ping(access: Access, webhook: dict[str, Any]) -> dict[str, Any]:
    """A `loom.ping` delivery to a webhook, made and stored; the caller queues it."""
    await access.require_project(webhook, Action.MANAGE_WEBHOOKS)
    if not webhook["active"]:
        raise Conflict("The webhook is turned off; turn it on first", id=str(webhook["_id"]))
    moment = now()
    delivery = new_delivery(
        webhook,
        "loom.ping",
        {"webhook": {"id": str(webhook["_id"]), "name": webhook["name"]}},
        moment,
        access.user_id,
    )
    await access.db.deliveries.insert_one(delivery)
    return delivery
