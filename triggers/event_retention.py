"""The events log does not grow without bound: old events are removed, a batch at a time.

Events older than `LOOM_EVENT_RETENTION_DAYS` go; an event one of whose executions failed is
kept twice as long (someone may still be finding out why). Each round removes at most
`MAX_BATCHES` batches of `BATCH` events, oldest first, each one indexed read and one delete
by ids — never one delete of everything at once, which would hold MongoDB for as long as it
took. Any worker may run it: two removing the same events remove them once.
"""

from datetime import timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from resolvers.timestamps import now

BATCH = 1000
MAX_BATCHES = 100


async def remove_old_events(db: AsyncDatabase, retention_days: float) -> int:
    """One round; how many events it removed."""
    moment = now()
    cutoff = moment - timedelta(days=retention_days)
    removed = 0
    for _ in range(MAX_BATCHES):
        old = await (
            db.events.find({"time": {"$lt": cutoff}, "keepUntil": {"$exists": False}}, {"_id": 1})
            .sort("time", 1)
            .limit(BATCH)
            .to_list()
        )
        expired = await (
            db.events.find({"keepUntil": {"$lt": moment}}, {"_id": 1}).limit(BATCH).to_list()
        )
        if not old and not expired:
            break
        ids = [doc["_id"] for doc in old]
        failed = set(
            await db.executions.distinct("eventId", {"eventId": {"$in": ids}, "status": "failed"})
        )
        if failed:
            await _keep(db, failed, timedelta(days=retention_days))
        gone = [event_id for event_id in ids if event_id not in failed]
        gone += [doc["_id"] for doc in expired]
        if gone:
            result = await db.events.delete_many({"_id": {"$in": gone}})
            removed += result.deleted_count
    return removed


async def _keep(db: AsyncDatabase, event_ids: set[Any], longer: timedelta) -> None:
    """Keep events whose executions failed for another retention period after their time."""
    await db.events.update_many(
        {"_id": {"$in": list(event_ids)}},
        [{"$set": {"keepUntil": {"$add": ["$time", longer.total_seconds() * 2000]}}}],
    )
