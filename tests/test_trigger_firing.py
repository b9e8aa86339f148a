"""Triggers fired through a real relay and worker: which changes fire which triggers."""

from typing import Any

import pytest
from bson import ObjectId

from tests.datasets_world import image_bytes, make_world
from tests.waiting import eventually
from tests.workers import start_worker, stop

CREATE_SERVICE = """mutation($p: ID!, $input: ServiceInput!) {
  createService(projectId: $p, input: $input) { id } }"""
CREATE_TRIGGER = """mutation($p: ID!, $input: TriggerInput!) {
  createTrigger(projectId: $p, input: $input) { id name resource actions filter executionMode
    ordered active operation { type serviceId functionName input } } }"""
FAST = {"LOOM_EXECUTION_LEASE_S": "1", "LOOM_REAPER_INTERVAL_S": "0.2", "LOOM_RELAY_LEASE_S": "1"}


@pytest.fixture
def worker(settings):
    process = start_worker(settings, **FAST)
    yield process
    stop(process)


async def _service(world) -> str:
    service = {"name": "hooks", "functions": ["echo", "sleeper", "fail"]}
    return (await world.client.data(CREATE_SERVICE, p=world.project, input=service))[
        "createService"
    ]["id"]


async def _trigger(world, service: str, **definition: Any) -> str:
    trigger = {
        "name": definition.pop("name", "on items"),
        "resource": "Item",
        "actions": ["Created"],
        "operation": {"serviceId": service, "functionName": "echo", "input": {"hello": 1}},
        **definition,
    }
    created = await world.client.data(CREATE_TRIGGER, p=world.project, input=trigger)
    return created["createTrigger"]["id"]


async def _relaying(db) -> None:
    """Wait until a relay holds the lease and has stored where it reads from."""
    await eventually(lambda: db.relay.find_one({"_id": "relay"}), lambda doc: doc is not None)


async def test_item_changes_fire_exactly_the_matching_triggers(member, db, worker):
    world = await make_world(member)
    service = await _service(world)
    created = await _trigger(world, service, name="created pngs", filter={"name": "*.png"})
    updated = await _trigger(world, service, name="updated", actions=["Updated"])
    deleted = await _trigger(world, service, name="deleted", actions=["Deleted"])
    await _relaying(db)
    png = await world.upload("a.png", image_bytes("PNG", 4, 4))
    await world.upload("b.jpg", image_bytes("JPEG", 4, 4), "image/jpeg")

    async def fired() -> list[dict]:
        return await db.executions.find({"triggerId": {"$exists": True}}).to_list()

    runs = await eventually(fired, lambda found: len(found) >= 1)
    assert [(run["triggerId"], run["resource"]["id"]) for run in runs] == [
        (ObjectId(created), ObjectId(png["id"]))
    ]
    finished = await eventually(
        lambda: db.executions.find_one({"_id": runs[0]["_id"]}),
        lambda doc: doc["status"] == "success",
    )
    assert finished["output"] == {"hello": 1}
    assert updated != deleted
