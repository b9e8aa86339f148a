"""The relay's lease: the one document naming which worker relays, until when, and from
where in the change stream.

The holder renews the lease with every resume token it stores, in one conditional write
(`advance`), so a relay that hangs — stuck on a read, its process stopped — stops renewing
and another worker takes over once `until` has passed: seconds, not Hasura's 30 minutes. A
relay that wakes up after losing its lease finds out at its next write of the token, which
matches nothing, and stops; whatever it wrote in between is keyed and harmless.
"""

from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from resolvers.timestamps import now

LEASE_ID = "relay"


class LeaseLost(Exception):
    """Another worker holds the relay's lease now."""


async def acquire(db: AsyncDatabase, holder: str, lease: timedelta) -> dict[str, Any] | None:
    """Take the lease if it is free, lapsed or already ours; its document, or None."""
    moment = now()
    try:
        return await db.relay.find_one_and_update(
            {"_id": LEASE_ID, "$or": [{"until": {"$lt": moment}}, {"holder": holder}]},
            {"$set": {"holder": holder, "until": moment + lease, "since": moment}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        return None  # held by another: the upsert found no lapsed lease to take


async def advance(
    db: AsyncDatabase, holder: str, lease: timedelta, token: dict[str, Any] | None
) -> None:
    """Store the resume token and renew the lease, if it is still ours (LeaseLost if not)."""
    fields: dict[str, Any] = {"until": now() + lease}
    if token is not None:
        fields["token"] = token
    renewed = await db.relay.update_one({"_id": LEASE_ID, "holder": holder}, {"$set": fields})
    if renewed.matched_count == 0:
        raise LeaseLost(f"{holder} no longer holds the relay's lease")


async def start_afresh(db: AsyncDatabase, holder: str) -> None:
    """Forget the resume token MongoDB no longer has, and count that it happened."""
    forgotten = await db.relay.update_one(
        {"_id": LEASE_ID, "holder": holder},
        {"$unset": {"token": ""}, "$inc": {"historyLost": 1}, "$set": {"historyLostAt": now()}},
    )
    if forgotten.matched_count == 0:
        raise LeaseLost(f"{holder} no longer holds the relay's lease")


async def release(db: AsyncDatabase, holder: str) -> None:
    """Let another worker take over at once (a worker stopping cleanly)."""
    await db.relay.update_one(
        {"_id": LEASE_ID, "holder": holder}, {"$set": {"until": now(), "holder": None}}
    )


async def state(db: AsyncDatabase) -> dict[str, Any] | None:
    return await db.relay.find_one({"_id": LEASE_ID})
