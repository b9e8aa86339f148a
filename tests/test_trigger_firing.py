"""Triggers fired through a real relay and worker: which changes fire which triggers, how often,
in which order, and what the functions they run are given.

The relay reads changes in commit order, so a test knows every change before a last one was
relayed once that last one's execution exists: each test ends its changes with a sentinel
upload that only the sentinel trigger matches, and awaits it, before asserting that nothing
else fired."""

import itertools
from typing import Any

import pytest
from bson import ObjectId

from tests.datasets_world import image_bytes, make_world
from tests.waiting import eventually
from tests.workers import start_worker, stop

CREATE_SERVICE = """mutation($p: ID!, $input: ServiceInput!) {
  createService(projectId: $p, input: $input) { id } }"""
CREATE_TRIGGER = """mutation($p: ID!, $input: TriggerInput!) {
  createTrigger(projectId: $p, input: $input) { id } }"""
UPDATE_ITEM = """mutation($id: ID!, $input: ItemChangesInput!) {
  updateItem(id: $id, input: $input) { id } }"""
DELETE_ITEMS = """mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"""
CREATE_ANNOTATION = (
    """mutation($input: AnnotationInput!) { createAnnotation(input: $input) { id } }"""
)
EXECUTE = (
    """mutation($s: ID!, $input: ExecuteInput!) { execute(serviceId: $s, input: $input) { id } }"""
)
ACTIVATE = "mutation($id: ID!, $on: Boolean!) { activateTrigger(id: $id, active: $on) { active } }"
FAST = {"LOOM_EXECUTION_LEASE_S": "1", "LOOM_REAPER_INTERVAL_S": "0.2", "LOOM_RELAY_LEASE_S": "1"}
PNG = image_bytes("PNG", 4, 4)
FINAL = ("success", "failed", "aborted", "terminated")


@pytest.fixture
def worker(settings):
    process = start_worker(settings, **FAST)
    yield process
    stop(process)


class Scene:
    """A project with a service and triggers, and a sentinel to know the relay caught up."""

    def __init__(self, world: Any, db: Any, service: str) -> None:
        self.world, self.db, self.service = world, db, service
        self.sentinel_items: set[ObjectId] = set()

    @classmethod
    async def make(cls, member: Any, db: Any, world: Any = None) -> "Scene":
        world = world or await make_world(member)
        service = {"name": "hooks", "functions": ["echo", "sleeper", "fail"], "concurrency": 5}
        created = await world.client.data(CREATE_SERVICE, p=world.project, input=service)
        scene = cls(world, db, created["createService"]["id"])
        scene.sentinel = await scene.trigger("sentinel", filter={"name": {"$glob": "sentinel-*"}})
        return scene

    async def trigger(self, name: str, resource: str = "Item", **definition: Any) -> str:
        trigger = {
            "name": name,
            "resource": resource,
            "actions": definition.pop("actions", ["Created"]),
            "operation": {
                "serviceId": self.service,
                "functionName": definition.pop("function", "echo"),
                "input": definition.pop("input", {"trigger": name}),
            },
            **definition,
        }
        created = await self.world.client.data(CREATE_TRIGGER, p=self.world.project, input=trigger)
        return created["createTrigger"]["id"]

    async def ordered_updates(self, name: str, updates: int, seconds: float) -> tuple[str, dict]:
        """An ordered trigger running `sleeper` on item updates, and an item updated
        `updates` times (its tags `v0`, `v1`, …) once a relay reads: (trigger id, item)."""
        ordered = await self.trigger(
            "ordered",
            actions=["Updated"],
            ordered=True,
            function="sleeper",
            input={"seconds": seconds, "steps": 1},
        )
        await _relaying(self.db)
        item = await self.world.upload(name, PNG)
        for n in range(updates):
            await self.world.client.data(UPDATE_ITEM, id=item["id"], input={"tags": [f"v{n}"]})
        return ordered, item

    async def caught_up(self) -> None:
        """Upload a sentinel and wait for its execution: every change before it was relayed."""
        item = await self.world.upload(f"sentinel-{len(self.sentinel_items)}.png", PNG)
        self.sentinel_items.add(ObjectId(item["id"]))
        await eventually(
            lambda: self.db.executions.count_documents(
                {"triggerId": ObjectId(self.sentinel), "resource.id": ObjectId(item["id"])}
            ),
            lambda count: count == 1,
        )

    async def fired(self) -> list[tuple[str, str, str]]:
        """(trigger, resource id, action of its event) of every execution a trigger created
        for a change that was not a sentinel's, in the order they were created."""
        found = []
        query = {"triggerId": {"$exists": True}}
        async for execution in self.db.executions.find(query).sort("_id", 1):
            event = await self.db.events.find_one({"_id": execution["eventId"]})
            if event["resourceId"] not in self.sentinel_items:
                found.append(
                    (str(execution["triggerId"]), str(event["resourceId"]), event["action"])
                )
        return found


async def _relaying(db: Any) -> None:
    """Wait until a relay reads the change stream (it stores where it started)."""
    await eventually(
        lambda: db.relay.find_one({"_id": "relay"}), lambda doc: doc and doc.get("token")
    )


async def test_item_changes_fire_exactly_the_triggers_whose_resource_action_and_filter_match(
    member, db, worker
):
    scene = await Scene.make(member, db)
    pngs = await scene.trigger("created pngs", filter={"name": "*.png", "size": {"$gt": 0}})
    updated = await scene.trigger("updated", actions=["Updated"], filter={"tags": "review"})
    deleted = await scene.trigger("deleted", actions=["Deleted"])
    await scene.trigger("annotations", resource="Annotation")
    await scene.trigger("datasets", resource="Dataset", actions=["Deleted"])
    await _relaying(db)
    world = scene.world
    png = await world.upload("a.png", PNG)
    jpg = await world.upload("b.jpg", image_bytes("JPEG", 4, 4), "image/jpeg")
    await world.client.data(UPDATE_ITEM, id=png["id"], input={"tags": ["other"]})
    await world.client.data(UPDATE_ITEM, id=jpg["id"], input={"tags": ["review"]})
    await world.client.data(DELETE_ITEMS, d=world.dataset, ids=[jpg["id"]])
    await scene.caught_up()
    assert await scene.fired() == [
        (pngs, png["id"], "Created"),
        (updated, jpg["id"], "Updated"),
        (deleted, jpg["id"], "Deleted"),
    ]


async def test_functions_get_the_resource_and_a_deleted_resource_from_the_event(member, db, worker):
    scene = await Scene.make(member, db)
    await scene.trigger("deleted", actions=["Deleted"])
    await _relaying(db)
    item = await scene.world.upload("gone.png", PNG)
    await scene.world.client.data(DELETE_ITEMS, d=scene.world.dataset, ids=[item["id"]])
    await scene.caught_up()
    (execution,) = await db.executions.find(
        {"triggerId": {"$ne": ObjectId(scene.sentinel), "$exists": True}, "resource": None}
    ).to_list()
    assert execution["resource"] is None
    event = await db.events.find_one({"_id": execution["eventId"]})
    assert event["before"]["name"] == "gone.png"
    assert event["after"] is None
    done = await eventually(
        lambda: db.executions.find_one({"_id": execution["_id"]}),
        lambda doc: doc["status"] in FINAL,
    )
    assert done["status"] == "success"


async def test_once_fires_once_per_resource_however_often_it_changes(member, db, worker):
    scene = await Scene.make(member, db)
    once = await scene.trigger("once", actions=["Updated"], executionMode="Once")
    await _relaying(db)
    first = await scene.world.upload("one.png", PNG)
    second = await scene.world.upload("two.png", PNG)
    for n in range(3):
        await scene.world.client.data(UPDATE_ITEM, id=first["id"], input={"tags": [f"t{n}"]})
    await scene.world.client.data(UPDATE_ITEM, id=second["id"], input={"tags": ["x"]})
    await scene.caught_up()
    assert await scene.fired() == [
        (once, first["id"], "Updated"),
        (once, second["id"], "Updated"),
    ]
    events = await db.events.count_documents(
        {"resourceId": ObjectId(first["id"]), "action": "Updated"}
    )
    assert events == 3


async def test_ordered_runs_one_resources_executions_one_at_a_time_in_event_order(
    member, db, worker
):
    scene = await Scene.make(member, db)
    ordered, _ = await scene.ordered_updates("busy.png", updates=5, seconds=0.15)
    query = {"triggerId": ObjectId(ordered)}
    runs = await eventually(
        lambda: db.executions.find(query).to_list(),
        lambda found: len(found) == 5 and all(run["status"] in FINAL for run in found),
    )
    events = {
        event["_id"]: event
        async for event in db.events.find({"_id": {"$in": [run["eventId"] for run in runs]}})
    }
    in_event_order = sorted(runs, key=lambda run: events[run["eventId"]]["token"])
    tags = [events[run["eventId"]]["after"]["tags"] for run in in_event_order]
    assert tags == [[f"v{n}"] for n in range(5)]

    def window(run: dict) -> tuple:
        log = {entry["status"]: entry["time"] for entry in run["statusLog"]}
        return log["inProgress"], log["success"]

    windows = [window(run) for run in in_event_order]
    for (_, ended), (started, _) in itertools.pairwise(windows):
        assert started >= ended


async def test_a_trigger_never_fires_on_another_projects_changes(member, db, worker):
    scene = await Scene.make(member, db)
    mine = await scene.trigger("mine")
    other = await make_world(member, org="globex")
    await _relaying(db)
    await other.upload("theirs.png", PNG)
    own = await scene.world.upload("own.png", PNG)
    await scene.caught_up()
    assert await scene.fired() == [(mine, own["id"], "Created")]


async def test_counter_changes_are_events_and_bookkeeping_updates_are_not(member, db, worker):
    scene = await Scene.make(member, db)
    annotated = await scene.trigger(
        "annotated", actions=["Updated"], filter={"annotationsCount": {"$gte": 1}}
    )
    await _relaying(db)
    item = await scene.world.upload("counted.png", PNG)
    await db.items.update_one({"_id": ObjectId(item["id"])}, {"$currentDate": {"updatedAt": True}})
    label = {"itemId": item["id"], "type": "CLASSIFICATION", "label": "car"}
    await scene.world.client.data(CREATE_ANNOTATION, input=label)
    await scene.caught_up()
    assert await scene.fired() == [(annotated, item["id"], "Updated")]
    updates = await db.events.find(
        {"resourceId": ObjectId(item["id"]), "action": "Updated"}
    ).to_list()
    assert [event["after"]["annotationsCount"] for event in updates] == [1]


async def test_an_execution_status_change_fires_an_execution_trigger(member, db, worker):
    scene = await Scene.make(member, db)
    failures = await scene.trigger(
        "failures", resource="Execution", actions=["StatusChanged"], filter={"status": "failed"}
    )
    await _relaying(db)
    started = await scene.world.client.data(
        EXECUTE, s=scene.service, input={"function": "fail", "input": {"message": "boom"}}
    )
    failed_id = ObjectId(started["execute"]["id"])
    (alert,) = await eventually(
        lambda: db.executions.find({"triggerId": ObjectId(failures)}).to_list(),
        lambda found: len(found) >= 1,
    )
    assert alert["resource"] == {"type": "execution", "id": failed_id}
    event = await db.events.find_one({"_id": alert["eventId"]})
    assert (event["before"]["status"], event["after"]["status"]) == ("inProgress", "failed")
    await scene.caught_up()
    assert await db.executions.count_documents({"triggerId": ObjectId(failures)}) == 1


async def test_a_trigger_fires_only_on_changes_made_while_it_is_active(member, db, worker):
    scene = await Scene.make(member, db)
    await _relaying(db)
    before = await scene.world.upload("before.png", PNG)
    late = await scene.trigger("late")
    during = await scene.world.upload("during.png", PNG)
    await scene.world.client.data(ACTIVATE, id=late, on=False)
    await scene.world.upload("paused.png", PNG)
    await scene.caught_up()
    fired = await scene.fired()
    assert fired == [(late, during["id"], "Created")]
    assert before["id"] not in {resource for _, resource, _ in fired}


async def test_an_ordered_line_goes_on_when_its_executions_are_aborted(member, db, worker):
    scene = await Scene.make(member, db)
    ordered, item = await scene.ordered_updates("doomed.png", updates=3, seconds=0.3)
    query = {"triggerId": ObjectId(ordered)}
    await eventually(lambda: db.executions.count_documents(query), lambda count: count == 3)
    await scene.world.client.data(DELETE_ITEMS, d=scene.world.dataset, ids=[item["id"]])
    # Each abort queues the next in line at once: nothing waits for the queue check (minutes).
    runs = await eventually(
        lambda: db.executions.find(query).to_list(),
        lambda found: all(run["status"] in FINAL for run in found),
        within_s=15,
    )
    assert "aborted" in {run["status"] for run in runs}


async def test_a_service_a_trigger_runs_cannot_be_deleted(member, db):
    scene = await Scene.make(member, db)
    delete = "mutation($id: ID!) { deleteService(id: $id) }"
    refused = await scene.world.client.execute(delete, id=scene.service)
    assert refused["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert "sentinel" in refused["errors"][0]["message"]
    assert await db.services.count_documents({"_id": ObjectId(scene.service)}) == 1
    await scene.world.client.data(
        "mutation($id: ID!) { deleteTrigger(id: $id) }", id=scene.sentinel
    )
    assert (await scene.world.client.data(delete, id=scene.service))["deleteService"] is True
