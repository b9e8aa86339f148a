"""The delivery log does not grow without bound: ended deliveries are removed, a batch at a
time, once they are older than `LOOM_EVENT_RETENTION_DAYS`.

Age is counted from when a delivery ended, so a pending delivery — still retrying, however
old — is never removed (Hasura's cleanup deleting failed events mid-retry is the gap this
closes); a failed delivery is kept twice as long as a delivered or cancelled one, for someone
to find out why and redeliver it. Each round removes at most `MAX_BATCHES` batches of `BATCH`,
oldest first, each one indexed read and one delete by ids.
"""

from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase

from resolvers.deliveries import DeliveryState
from resolvers.timestamps import now

BATCH = 1000
MAX_BATCHES = 100


async def remove_old_deliveries(db: AsyncDatabase, retention_days: float) -> int:
    """One round; how many deliveries it removed."""
    moment = now()
    kept = timedelta(days=retention_days)
    query = {
        "$or": [
            {
                "state": {"$in": [DeliveryState.delivered, DeliveryState.cancelled]},
                "endedAt": {"$lt": moment - kept},
            },
            {"state": DeliveryState.failed, "endedAt": {"$lt": moment - 2 * kept}},
        ]
    }
    removed = 0
    for _ in range(MAX_BATCHES):
        old = await db.deliveries.find(query, {"_id": 1}).sort("endedAt", 1).limit(BATCH).to_list()
        if not old:
            break
        result = await db.deliveries.delete_many({"_id": {"$in": [doc["_id"] for doc in old]}})
        removed += result.deleted_count
    return removed
