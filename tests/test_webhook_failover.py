"""A worker SIGKILLed while 1,000 deliveries are in flight loses none of them: every delivery
ends `delivered`, and the receiver sees a `webhook-id` twice only for deliveries whose attempt
was cut off between sending and writing the answer — each logged as a lost attempt."""

import asyncio
import collections
import signal
import uuid

import pytest
from bson import ObjectId
from starlette.responses import Response

from gateway.settings import Settings
from tests.datasets_world import make_world
from tests.logged_workers import LoggedWorkers
from tests.test_relay_faults import Burst
from tests.test_webhook_delivery import CREATE_TRIGGER, CREATE_WEBHOOK
from tests.waiting import eventually
from tests.webhook_receiver import Received, receiving

COUNT = 1000
CONCURRENCY = 100
KILL_AFTER = 300
"""Requests the receiver has seen when the worker is killed: the burst is in its middle."""
FAST = {
    "LOOM_RELAY_LEASE_S": "1",
    "LOOM_REAPER_INTERVAL_S": "0.2",
    "LOOM_WEBHOOK_ALLOW_PRIVATE": "true",
}
DONE_S = 120.0


@pytest.fixture
def settings(stack: dict[str, str]) -> Settings:
    return Settings(**stack, db_name=f"test_{uuid.uuid4().hex[:12]}", webhook_allow_private=True)


async def test_sigkill_mid_burst_loses_no_delivery_and_repeats_only_cut_off_attempts(
    member, db, settings, tmp_path
):
    async def slow(_: Received, __: int) -> Response:
        await asyncio.sleep(0.05)
        return Response("ok")

    async with receiving(settings, slow) as receiver:
        world = await make_world(member)
        policy = {"timeoutS": 2, "initialDelayS": 0.1, "maxAttempts": 10}
        made = await world.client.data(
            CREATE_WEBHOOK,
            p=world.project,
            input={
                "name": "burst",
                "url": receiver.url,
                "concurrency": CONCURRENCY,
                "retryPolicy": policy,
            },
        )
        webhook = made["createWebhook"]["webhook"]["id"]
        trigger = {
            "name": "every new item",
            "resource": "Item",
            "actions": ["Created"],
            "operation": {"type": "webhook", "webhookId": webhook},
        }
        await world.client.data(CREATE_TRIGGER, p=world.project, input=trigger)
        project = await db.projects.find_one({"_id": ObjectId(world.project)})
        burst = Burst(
            db,
            project["orgId"],
            project["_id"],
            ObjectId(world.dataset),
            project["creator"],
            ObjectId(),
            [],
        )
        with LoggedWorkers(settings, tmp_path, **FAST) as workers:
            first = workers.start()
            await eventually(
                lambda: db.relay.find_one({"_id": "relay"}), lambda d: d and d.get("token")
            )
            await burst.insert(range(COUNT))
            await receiver.wait_for(KILL_AFTER, within_s=DONE_S)
            in_flight = await db.deliveries.count_documents({"lease": {"$ne": None}})
            first.send_signal(signal.SIGKILL)
            first.wait()
            workers.start()
            await eventually(
                lambda: db.deliveries.count_documents({"state": "delivered"}),
                lambda count: count == COUNT,
                within_s=DONE_S,
            )
    assert await db.deliveries.count_documents({}) == COUNT
    seen = collections.Counter(request.headers["webhook-id"] for request in receiver.received)
    assert len(seen) == COUNT
    repeated = {msg_id for msg_id, count in seen.items() if count > 1}
    lost = {
        f"msg_{doc['_id']}"
        async for doc in db.deliveries.find({"attempts.outcome": "lost"}, {"_id": 1})
    }
    # Only a delivery whose attempt the killed worker never answered is sent again, and only
    # once; there can be no more of those than were in flight when it died.
    assert repeated <= lost
    assert all(seen[msg_id] == 2 for msg_id in repeated)
    assert len(lost) <= max(in_flight, CONCURRENCY)
    print(
        f"in flight at the kill: {in_flight}; lost attempts: {len(lost)}; "
        f"ids the receiver saw twice: {len(repeated)} of {COUNT}"
    )
