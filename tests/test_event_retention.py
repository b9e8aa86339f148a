"""The events log is trimmed in bounded batches, keeping events whose executions failed twice
as long."""

from datetime import timedelta

from bson import ObjectId
from pymongo import monitoring

from resolvers.timestamps import now
from tests.command_monitoring import StartedCommands, listening_client
from triggers import event_retention


def _event(days_old: float) -> dict:
    return {
        "_id": ObjectId(),
        "token": ObjectId().binary.hex(),
        "time": now() - timedelta(days=days_old),
        "resource": "Item",
        "action": "Created",
        "triggers": [],
    }


async def test_old_events_go_and_events_of_failed_executions_stay_twice_as_long(db):
    fresh, old = _event(6), _event(8)
    failed_recent, failed_ancient = _event(10), _event(15)
    succeeded_old = _event(9)
    await db.events.insert_many([fresh, old, failed_recent, failed_ancient, succeeded_old])
    await db.executions.insert_many(
        [
            {"eventId": failed_recent["_id"], "status": "failed"},
            {"eventId": failed_ancient["_id"], "status": "failed"},
            {"eventId": succeeded_old["_id"], "status": "success"},
        ]
    )
    removed = await event_retention.remove_old_events(db, retention_days=7)
    left = set(await db.events.distinct("_id"))
    assert left == {fresh["_id"], failed_recent["_id"]}
    assert removed == 3
    again = await event_retention.remove_old_events(db, retention_days=7)
    assert again == 0
    assert set(await db.events.distinct("_id")) == left


class Deletes(StartedCommands):
    """The size of each delete sent to the events collection."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "delete" and event.command["delete"] == "events":
            ids = event.command["deletes"][0]["q"]["_id"]["$in"]
            self.sizes.append(len(ids))


async def test_a_large_backlog_is_removed_a_batch_at_a_time(db, stack, settings):
    backlog = [_event(30) for _ in range(event_retention.BATCH * 2 + 10)]
    await db.events.insert_many(backlog)
    await db.events.insert_one(_event(1))
    deletes = Deletes()
    async with listening_client(stack, deletes) as client:
        removed = await event_retention.remove_old_events(client[settings.db_name], 7)
    assert removed == len(backlog)
    assert await db.events.count_documents({}) == 1
    assert deletes.sizes == [event_retention.BATCH, event_retention.BATCH, 10]
