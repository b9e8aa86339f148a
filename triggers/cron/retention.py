"""Fire records and finished scheduled runs do not pile up: they go after
`LOOM_EVENT_RETENTION_DAYS`, failed ones after twice as long (someone may still be finding out
why), like events (triggers/event_retention.py) and in the same bounded batches: an indexed
read of at most `BATCH` ids, oldest first, and one delete by ids, at most `MAX_BATCHES` times
a round. Runs still scheduled are never removed, however old.
"""

from datetime import timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.timestamps import now
from triggers.event_retention import BATCH, MAX_BATCHES


async def remove_old_fires(db: AsyncDatabase, retention_days: float) -> int:
    """One round over `cron_fires` and `scheduled_runs`; how many documents it removed."""
    moment = now()
    cutoff = moment - timedelta(days=retention_days)
    failed_cutoff = moment - timedelta(days=2 * retention_days)
    fires = {
        "$or": [
            {"scheduledAt": {"$lt": cutoff}, "status": {"$ne": "failed"}},
            {"scheduledAt": {"$lt": failed_cutoff}, "status": "failed"},
        ]
    }
    runs = {
        "$or": [
            {"at": {"$lt": cutoff}, "status": {"$in": ["fired", "missed", "cancelled"]}},
            {"at": {"$lt": failed_cutoff}, "status": "failed"},
        ]
    }
    removed = await _remove(db.cron_fires, fires, "scheduledAt")
    return removed + await _remove(db.scheduled_runs, runs, "at")


async def _remove(collection: AsyncCollection, query: dict[str, Any], time_field: str) -> int:
    removed = 0
    for _ in range(MAX_BATCHES):
        old = await collection.find(query, {"_id": 1}).sort(time_field, 1).limit(BATCH).to_list()
        if not old:
            break
        result = await collection.delete_many({"_id": {"$in": [doc["_id"] for doc in old]}})
        removed += result.deleted_count
    return removed
