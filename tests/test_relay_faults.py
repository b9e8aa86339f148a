"""The relay under faults, through real `loom worker` processes: killed, doubled, hung, its
Redis flushed, its resume token gone. Each test counts exactly: 5,000 items inserted in a burst
make 5,000 `Created` events and 5,000 executions of an `Always` trigger — one per event, one per
item — none missing, none doubled.

Items are inserted with PyMongo, shaped as resolvers/items.py makes them: the burst has to be
faster than the relay, or no fault would strike in its middle. The trigger and its service are
made through GraphQL.
"""

import asyncio
import hashlib
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.timestamps import new_document, now
from tests.datasets_world import make_world
from tests.logged_workers import LoggedWorkers
from tests.waiting import eventually

COUNT = 5000
BATCH = 250
STRIKE_AT = 500
"""Item events relayed when a fault strikes: some, not all. Half the items are inserted
only after it struck, so the burst is always in its middle."""
LEASE_S = 1
FAST = {
    "LOOM_RELAY_LEASE_S": str(LEASE_S),
    "LOOM_EXECUTION_LEASE_S": "10",
    "LOOM_REAPER_INTERVAL_S": "0.2",
}
"""A relay's lease lapses within a second of its holder's death or hang. Executions keep a
long lease: none of these tests waits for a dead worker's runs, and on a busy machine a short
lease has live runs reaped and rerun (in the Redis test, a rerun would not be the flush's)."""
DONE_S = 120.0
"""Ample for 5,000 events and executions on two shared cores."""
LEASE_LOST = "no longer holds the relay's lease"

CREATE_SERVICE = """mutation($p: ID!, $input: ServiceInput!) {
  createService(projectId: $p, input: $input) { id } }"""
CREATE_TRIGGER = """mutation($p: ID!, $input: TriggerInput!) {
  createTrigger(projectId: $p, input: $input) { id executionMode } }"""


@dataclass
class Burst:
    """A project with an `Always` trigger on Item Created, and the items inserted so far."""

    db: AsyncDatabase
    org: ObjectId
    project: ObjectId
    dataset: ObjectId
    creator: ObjectId
    trigger: ObjectId
    ids: list[ObjectId]

    async def insert(self, numbers: range) -> None:
        for start in range(numbers.start, numbers.stop, BATCH):
            batch = [self._item(n) for n in range(start, min(start + BATCH, numbers.stop))]
            await self.db.items.insert_many(batch)
            self.ids += [item["_id"] for item in batch]

    def _item(self, n: int) -> dict[str, Any]:
        name = f"{n}.png"
        return new_document(
            self.creator,
            orgId=self.org,
            projectId=self.project,
            datasetId=self.dataset,
            name=name,
            dir="/",
            filename=f"/{name}",
            type="file",
            mimetype="image/png",
            size=68,
            width=4,
            height=4,
            sha256=hashlib.sha256(name.encode()).hexdigest(),
            metadata={"user": {}, "system": {"originalName": name}},
            tags=[],
            description=None,
            hidden=False,
            annotated=False,
            annotationsCount=0,
        )

    async def item_events(self) -> int:
        return await self.db.events.count_documents({"resource": "Item"})

    async def executions(self, **query: Any) -> int:
        return await self.db.executions.count_documents({"triggerId": self.trigger, **query})


async def _burst(member, db: AsyncDatabase) -> Burst:
    world = await make_world(member)
    service = {"name": "hooks", "functions": ["echo"], "concurrency": 50}
    created = await world.client.data(CREATE_SERVICE, p=world.project, input=service)
    trigger = {
        "name": "every new item",
        "resource": "Item",
        "actions": ["Created"],
        "executionMode": "Always",
        "operation": {
            "serviceId": created["createService"]["id"],
            "functionName": "echo",
            "input": {"seen": True},
        },
    }
    made = (await world.client.data(CREATE_TRIGGER, p=world.project, input=trigger))[
        "createTrigger"
    ]
    assert made["executionMode"] == "Always"
    project = await db.projects.find_one({"_id": ObjectId(world.project)})
    return Burst(
        db,
        ObjectId(world.org),
        project["_id"],
        ObjectId(world.dataset),
        project["creator"],
        ObjectId(made["id"]),
        [],
    )


async def _relaying(burst: Burst) -> None:
    """Wait until a relay reads the stream: a dataset change made now comes back as an event.
    (Holding the lease is not enough: the stream opens after it, and starts from then.)"""

    async def changed_and_seen() -> int:
        await burst.db.datasets.update_one(
            {"_id": burst.dataset}, {"$set": {"description": uuid.uuid4().hex}}
        )
        return await burst.db.events.count_documents({"resource": "Dataset"})

    await eventually(changed_and_seen, lambda seen: seen > 0)


async def _caught_up(burst: Burst) -> None:
    """Wait until a relay has written all that was committed before now: a dataset change made
    now has its event, and the relay's stored token is at or past that event's (a token is
    stored after its round's events and executions; tokens sort as the oplog does)."""
    marker = uuid.uuid4().hex
    await burst.db.datasets.update_one({"_id": burst.dataset}, {"$set": {"description": marker}})
    probe = await eventually(
        lambda: burst.db.events.find_one({"after.description": marker}),
        lambda event: event is not None,
        DONE_S,
    )
    await eventually(
        lambda: burst.db.relay.find_one({"_id": "relay"}),
        lambda doc: doc.get("token", {}).get("_data", "") >= probe["token"],
        DONE_S,
    )


async def _all_relayed(burst: Burst) -> None:
    await eventually(burst.item_events, lambda n: n >= COUNT, DONE_S)
    await eventually(burst.executions, lambda n: n >= COUNT, DONE_S)
    await _caught_up(burst)


async def _holder(db: AsyncDatabase) -> str:
    doc = await eventually(
        lambda: db.relay.find_one({"_id": "relay"}), lambda doc: bool(doc and doc["holder"])
    )
    return doc["holder"]


async def _burst_with(burst: Burst, fault: Callable[[], Awaitable[None]]) -> int:
    """Insert COUNT items; `fault` strikes once STRIKE_AT of their events exist, and the second
    half is inserted after it struck. The item events that existed when it struck."""
    struck_at = 0

    async def strike() -> None:
        nonlocal struck_at
        await eventually(burst.item_events, lambda n: n >= STRIKE_AT, DONE_S)
        await fault()
        struck_at = await burst.item_events()

    striking = asyncio.create_task(strike())
    try:
        await burst.insert(range(COUNT // 2))
        await striking
    finally:
        striking.cancel()
    await burst.insert(range(COUNT // 2, COUNT))
    return struck_at


async def _assert_each_item_fired_once(burst: Burst) -> list[dict[str, Any]]:
    """Exactly COUNT executions of the trigger, one per event, one per item; exactly COUNT
    Created events, one per item, each having fired the trigger. The executions."""
    runs = await burst.db.executions.find(
        {"triggerId": burst.trigger},
        {"eventId": 1, "resource": 1, "status": 1, "attempts": 1},
    ).to_list()
    events = await burst.db.events.find(
        {"resource": "Item"}, {"action": 1, "resourceId": 1, "triggers": 1}
    ).to_list()
    items = set(burst.ids)
    assert len(items) == COUNT
    assert len(runs) == COUNT
    assert len({run["eventId"] for run in runs}) == COUNT
    assert {run["resource"]["id"] for run in runs} == items
    assert len(events) == COUNT
    assert {event["action"] for event in events} == {"Created"}
    assert {event["resourceId"] for event in events} == items
    assert {(run["eventId"], run["resource"]["id"]) for run in runs} == {
        (event["_id"], event["resourceId"]) for event in events
    }
    assert all(event["triggers"] == [burst.trigger] for event in events)
    return runs


async def test_a_relay_killed_mid_burst_is_taken_over_and_every_item_fires_exactly_once(
    member, db, settings, tmp_path
):
    burst = await _burst(member, db)
    with LoggedWorkers(settings, tmp_path, **FAST) as workers:
        workers.start(), workers.start()
        await _relaying(burst)
        killed: list[str] = []

        async def kill_the_relay() -> None:
            holder = await _holder(db)
            await workers.stop(workers.holding(holder), signal.SIGKILL)
            killed.append(holder)

        struck_at = await _burst_with(burst, kill_the_relay)
        await _all_relayed(burst)
        (survivor,) = [worker for worker in workers.started if worker.poll() is None]
        taken_over = await _holder(db)
        assert taken_over != killed[0]
        assert workers.holding(taken_over) is survivor
        await _assert_each_item_fired_once(burst)
    assert 0 < struck_at < COUNT


async def test_two_relays_started_at_once_fire_every_item_exactly_once(
    member, db, settings, tmp_path
):
    burst = await _burst(member, db)
    with LoggedWorkers(settings, tmp_path, **FAST) as workers:
        both = [workers.start(), workers.start()]
        await _relaying(burst)
        await burst.insert(range(COUNT))
        await _all_relayed(burst)
        assert all(worker.poll() is None for worker in both)
        assert workers.holding(await _holder(db)) in both
        await _assert_each_item_fired_once(burst)


async def test_redis_flushed_mid_burst_then_a_worker_restart_runs_every_item_once(
    member, db, redis, settings, tmp_path
):
    burst = await _burst(member, db)
    with LoggedWorkers(settings, tmp_path, **FAST) as workers:
        first = workers.start()
        await _relaying(burst)

        async def flush_redis() -> None:
            await redis.flushall()

        struck_at = await _burst_with(burst, flush_redis)
        await workers.stop(first, signal.SIGTERM)
        second = workers.start()
        await _all_relayed(burst)
        await eventually(lambda: burst.executions(status="success"), lambda n: n >= COUNT, DONE_S)
        runs = await _assert_each_item_fired_once(burst)
        assert second.poll() is None
    assert {(run["status"], run["attempts"]) for run in runs} == {("success", 1)}
    assert 0 < struck_at < COUNT


async def test_a_hung_relay_loses_its_lease_and_on_waking_relays_nothing_twice(
    member, db, settings, tmp_path
):
    burst = await _burst(member, db)
    with LoggedWorkers(settings, tmp_path, **FAST) as workers:
        workers.start(), workers.start()
        await _relaying(burst)
        hung: list[str] = []

        async def hang_the_relay() -> None:
            holder = await _holder(db)
            workers.holding(holder).send_signal(signal.SIGSTOP)
            hung.append(holder)

        struck_at = await _burst_with(burst, hang_the_relay)
        sleeper = workers.holding(hung[0])
        (awake,) = [worker for worker in workers.started if worker is not sleeper]
        # The lease lapses a second after the hung relay's last renewal; the other worker,
        # trying every third of that, takes it.
        await eventually(
            lambda: db.relay.find_one({"_id": "relay"}),
            lambda doc: doc["holder"] not in (None, hung[0]),
            within_s=10 * LEASE_S,
        )
        # …and relays the whole burst while the hung one sleeps.
        await eventually(burst.item_events, lambda n: n >= COUNT, DONE_S)
        await eventually(burst.executions, lambda n: n >= COUNT, DONE_S)
        assert workers.holding(await _holder(db)) is awake
        sleeper.send_signal(signal.SIGCONT)
        await eventually(
            lambda: asyncio.to_thread(workers.log, sleeper),
            lambda log: f"{hung[0]} {LEASE_LOST}" in log,
            DONE_S,
        )
        await _caught_up(burst)
        await _assert_each_item_fired_once(burst)
        assert all(worker.poll() is None for worker in workers.started)
    assert 0 < struck_at < COUNT


async def _token_without_history(db: AsyncDatabase) -> str:
    """A resume token naming a change at a time MongoDB has no history of.

    A real token's `_data` is hex: "82", then the change's cluster time as 8 big-endian bytes
    (seconds, then increment), then the rest of the change's key. Moving its time back to
    second 1 of 1970 keeps it well formed but points it before everything this replica set's
    oplog holds. Resuming there, mongod (6.0) reads from that time, finds the first change
    after it is not the one the token names, and refuses: 280 ChangeStreamFatalError, "the
    resume token was not found" (a rolled-over oplog answers 286 ChangeStreamHistoryLost; the
    relay takes both, and 260, as its place lost).
    """
    async with await db.watch() as stream:
        await db.relay_probe.insert_one({})
        change = await stream.next()
    real = change["_id"]["_data"]
    assert real[:2] == "82"
    second_one = (1).to_bytes(4, "big").hex().upper() + (1).to_bytes(4, "big").hex().upper()
    return real[:2] + second_one + real[18:]


async def test_a_resume_token_mongodb_no_longer_has_is_counted_and_the_relay_starts_afresh(
    member, db, settings, http, tmp_path
):
    burst = await _burst(member, db)
    lost = await _token_without_history(db)
    await db.relay.insert_one(
        {"_id": "relay", "holder": None, "until": now(), "token": {"_data": lost}}
    )
    await burst.insert(range(3))  # while no relay runs: after the token, before "afresh"
    with LoggedWorkers(settings, tmp_path, **FAST) as workers:
        worker = workers.start()
        await eventually(
            lambda: db.relay.find_one({"_id": "relay"}),
            lambda doc: doc.get("historyLost") == 1,
            DONE_S,
        )
        await _relaying(burst)
        await burst.insert(range(3, 13))
        await eventually(burst.item_events, lambda n: n >= 10, DONE_S)
        await eventually(burst.executions, lambda n: n >= 10, DONE_S)
        await _caught_up(burst)
        assert worker.poll() is None, "the relay's worker lives on"
        log = workers.log(worker)
    relayed = await db.events.distinct("resourceId", {"resource": "Item"})
    assert set(relayed) == set(burst.ids[3:])
    assert await burst.executions() == 10
    doc = await db.relay.find_one({"_id": "relay"})
    assert doc["historyLost"] == 1
    assert doc["token"]["_data"] != lost
    assert "THE RELAY LOST ITS PLACE" in log
    metrics = await http.get("/metrics")
    assert "loom_relay_history_lost_total 1.0" in metrics.text.splitlines()
