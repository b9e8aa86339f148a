"""The delivery log is trimmed in bounded batches: delivered and cancelled deliveries go after
the retention period, failed ones after twice that, pending ones never (still retrying)."""

from datetime import timedelta

from bson import ObjectId

from resolvers.timestamps import now
from triggers.webhooks import delivery_retention


def _delivery(state: str, ended_days_ago: float | None, made_days_ago: float = 30) -> dict:
    moment = now()
    return {
        "_id": ObjectId(),
        "state": state,
        "createdAt": moment - timedelta(days=made_days_ago),
        "endedAt": None if ended_days_ago is None else moment - timedelta(days=ended_days_ago),
    }


async def test_ended_deliveries_go_failed_ones_stay_twice_as_long_and_pending_ones_stay(db):
    delivered_old = _delivery("delivered", 8)
    delivered_fresh = _delivery("delivered", 6)
    cancelled_old = _delivery("cancelled", 8)
    failed_recent = _delivery("failed", 10)
    failed_ancient = _delivery("failed", 15)
    retrying_for_a_month = _delivery("pending", None, made_days_ago=30)
    docs = [
        delivered_old,
        delivered_fresh,
        cancelled_old,
        failed_recent,
        failed_ancient,
        retrying_for_a_month,
    ]
    await db.deliveries.insert_many(docs)
    removed = await delivery_retention.remove_old_deliveries(db, retention_days=7)
    assert removed == 3
    left = set(await db.deliveries.distinct("_id"))
    assert left == {delivered_fresh["_id"], failed_recent["_id"], retrying_for_a_month["_id"]}
    assert await delivery_retention.remove_old_deliveries(db, retention_days=7) == 0


async def test_a_large_backlog_is_removed_in_bounded_batches(db):
    backlog = [_delivery("delivered", 30) for _ in range(delivery_retention.BATCH * 2 + 10)]
    await db.deliveries.insert_many(backlog)
    assert await delivery_retention.remove_old_deliveries(db, retention_days=7) == len(backlog)
    assert await db.deliveries.count_documents({}) == 0
