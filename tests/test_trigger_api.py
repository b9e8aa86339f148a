"""The trigger API: create, read, list, change, activate, delete, test and invoke triggers.

Every field a trigger has goes in and comes back out; bad input of every kind is BAD_USER_INPUT
(a name taken is CONFLICT) and leaves the database as it was; roles follow MANAGE_TRIGGERS;
testTrigger runs nothing; invokeTrigger creates one execution and queues it in Redis. Nothing
here needs a relay or a worker: firing is tests/test_trigger_firing.py's.
"""

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId, Timestamp

from resolvers.access import Action
from tests.datasets_world import CREATE_DATASET, CREATE_PROJECT, World, image_bytes, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.test_executions import CREATE_SERVICE
from tests.test_roles import ALL_CASES, Case, _attempt, project_outcome
from tests.waiting import eventually
from tests.ws_client import subscribe
from triggers import execution_queue
from triggers.relay.capture import event_of

TRIGGER_FIELDS = """id projectId name resource actions filter executionMode ordered active
  operation { type serviceId functionName input service { id } } createdAt updatedAt
  firedCount lastFiredAt"""
CREATE_TRIGGER = f"""mutation($p: ID!, $input: TriggerInput!) {{
  createTrigger(projectId: $p, input: $input) {{ {TRIGGER_FIELDS} }} }}"""
UPDATE_TRIGGER = f"""mutation($id: ID!, $input: TriggerChangesInput!) {{
  updateTrigger(id: $id, input: $input) {{ {TRIGGER_FIELDS} }} }}"""
ACTIVATE_TRIGGER = """mutation($id: ID!, $active: Boolean!) {
  activateTrigger(id: $id, active: $active) { id active } }"""
DELETE_TRIGGER = "mutation($id: ID!) { deleteTrigger(id: $id) }"
TRIGGER = f"query($id: ID!) {{ trigger(id: $id) {{ {TRIGGER_FIELDS} }} }}"
PROJECT_TRIGGERS = f"""query($p: ID!, $first: Int, $after: String) {{ project(id: $p) {{
  triggers(first: $first, after: $after) {{ totalCount pageInfo {{ hasNextPage endCursor }}
    nodes {{ {TRIGGER_FIELDS} }} }} }} }}"""
TEST_TRIGGER = """query($t: ID, $definition: TriggerDefinitionInput, $document: JSON,
    $r: ID, $p: ID) {
  testTrigger(triggerId: $t, definition: $definition, document: $document, resourceId: $r,
    projectId: $p) { matches document } }"""
INVOKE_TRIGGER = """mutation($t: ID!, $r: ID!) { invokeTrigger(triggerId: $t, resourceId: $r) {
  id status function input serviceId resource triggerId eventId
  trigger { id name } event { id } } }"""
TRIGGER_EXECUTIONS = """query($id: ID!) { trigger(id: $id) { firedCount lastFiredAt
  executions { totalCount nodes { id triggerId } } } }"""
EVENT_FIELDS = """id projectId resource resourceId action before after time triggerIds
  executions { id triggerId eventId }"""
EVENT = f"query($id: ID!) {{ event(id: $id) {{ {EVENT_FIELDS} }} }}"
PROJECT_EVENTS = """query($p: ID!, $first: Int, $after: String) { project(id: $p) {
  events(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor }
    nodes { id action } } } }"""
TRIGGER_EVENTS = "query($id: ID!) { trigger(id: $id) { events { nodes { id } } } }"
EXECUTION_EVENT = "query($id: ID!) { execution(id: $id) { eventId event { id action } } }"
EVENTS = """subscription($p: ID!, $resources: [TriggerResource!], $actions: [TriggerAction!]) {
  events(projectId: $p, resources: $resources, actions: $actions) {
    id projectId resource resourceId action } }"""
UPDATE_SERVICE = """mutation($id: ID!, $input: ServiceChangesInput!) {
  updateService(id: $id, input: $input) { active } }"""
ADD_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!, $role: ProjectRole!) {
  addProjectMember(projectId: $project, userId: $user, role: $role) { role } }"""


@dataclass
class Scene:
    """Org "acme" (`world`, its owner calling) with a service "hooks" (echo, sleeper) and a PNG
    item in its project. With neighbours: a second project of the org with a service of its
    own, and org "beta" with a service."""

    world: World
    service: str
    item: dict[str, Any]
    other_project: str = ""
    other_project_service: str = ""
    other_org_service: str = ""


async def _service(client, project: str, name: str = "hooks") -> str:
    service = {"name": name, "functions": ["echo", "sleeper"]}
    created = await client.data(CREATE_SERVICE, p=project, input=service)
    return created["createService"]["id"]


async def _scene(member, neighbours: bool = False) -> Scene:
    world = await make_world(member)
    service = await _service(world.client, world.project)
    item = await world.upload("car.png", image_bytes("PNG", 6, 4))
    if not neighbours:
        return Scene(world, service, item)
    other_project = (await world.client.data(CREATE_PROJECT, org=world.org, name="Lidar"))[
        "createProject"
    ]["id"]
    other_project_service = await _service(world.client, other_project, "lidar hooks")
    beta = await make_world(member, org="beta")
    other_org_service = await _service(beta.client, beta.project)
    return Scene(world, service, item, other_project, other_project_service, other_org_service)


def _definition(service: str, **fields: Any) -> dict[str, Any]:
    operation = {"serviceId": service, "functionName": "echo", "input": {"hello": 1}}
    return {
        "name": "on items",
        "resource": "Item",
        "actions": ["Created"],
        "operation": operation,
        **fields,
    }


async def _create(client, project: str, service: str, **fields: Any) -> dict[str, Any]:
    created = await client.data(CREATE_TRIGGER, p=project, input=_definition(service, **fields))
    return created["createTrigger"]


def _codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


async def _triggers(db) -> list[dict[str, Any]]:
    return await db.triggers.find().sort("_id").to_list()


_tokens = itertools.count()


async def captured(
    db,
    collection: str,
    doc_id: ObjectId,
    kind: str = "insert",
    before: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store the event the relay's capture (`event_of`) makes of a change of the document —
    as it is now, and `before` it for updates and deletes — and return it. For read-side
    tests, which need events but not a relay."""
    doc = await db[collection].find_one({"_id": doc_id})
    number = next(_tokens)
    change = {
        "_id": {"_data": f"82{ObjectId()}{number:08x}"},
        "ns": {"db": db.name, "coll": collection},
        "operationType": kind,
        "documentKey": {"_id": doc_id},
        "fullDocument": None if kind == "delete" else doc,
        "fullDocumentBeforeChange": before,
        "clusterTime": Timestamp(int(datetime.now(UTC).timestamp()), number + 1),
        "wallTime": datetime.now(UTC),
    }
    if kind == "update":
        change["updateDescription"] = {"updatedFields": {"name": doc["name"]}, "removedFields": []}
    event = event_of(change)
    assert event is not None
    await db.events.insert_one(event)
    return event


async def wait_for_subscribers(app, count: int) -> None:
    """A subscription registers a moment after its message is sent; nothing announces it."""

    async def registered() -> int:
        return len(app.state.feed.subscribers)

    await eventually(registered, lambda n: n >= count)


async def next_event(updates) -> dict[str, Any]:
    message = await asyncio.wait_for(updates.next(), 20)
    assert message["type"] == "next", message
    assert not message["payload"].get("errors"), message
    return message["payload"]["data"]["events"]


# --- Create, read, list, change, activate, delete -------------------------------------------


async def test_a_trigger_round_trips_every_field_through_create_read_list_update_and_delete(
    member, db
):
    scene = await _scene(member)
    client, project, service = scene.world.client, scene.world.project, scene.service
    created = await _create(
        client,
        project,
        service,
        name="  big pngs  ",
        actions=["Updated", "Created", "Updated"],
        filter={"$and": [{"name": "*.png"}, {"width": {"$gte": 4}}]},
        executionMode="Once",
        ordered=True,
        active=False,
        operation={
            "type": "function",
            "serviceId": service,
            "functionName": "sleeper",
            "input": {"seconds": 0.5},
        },
    )
    trigger = created["id"]
    expected = {
        "id": trigger,
        "projectId": project,
        "name": "big pngs",
        "resource": "Item",
        "actions": ["Created", "Updated"],
        "filter": {"$and": [{"name": "*.png"}, {"width": {"$gte": 4}}]},
        "executionMode": "Once",
        "ordered": True,
        "active": False,
        # The input as the function's model holds it, its defaults filled in.
        "operation": {
            "type": "function",
            "serviceId": service,
            "functionName": "sleeper",
            "input": {"seconds": 0.5, "steps": 4},
            "service": {"id": service},
        },
        "firedCount": 0,
        "lastFiredAt": None,
    }
    assert {k: v for k, v in created.items() if k not in ("createdAt", "updatedAt")} == expected
    assert (await client.data(TRIGGER, id=trigger))["trigger"] == created
    listed = (await client.data(PROJECT_TRIGGERS, p=project))["project"]["triggers"]
    assert (listed["totalCount"], listed["nodes"]) == (1, [created])

    stored = await db.triggers.find_one({"_id": ObjectId(trigger)})
    assert stored["orgId"] == ObjectId(scene.world.org)
    assert stored["operation"]["serviceId"] == ObjectId(service)

    changes = {
        "name": "any item",
        "actions": ["Deleted"],
        "filter": {"mimetype": "image/*"},
        "executionMode": "Always",
        "ordered": False,
        "active": True,
        "operation": {"serviceId": service, "functionName": "echo", "input": {"n": 2}},
    }
    updated = (await client.data(UPDATE_TRIGGER, id=trigger, input=changes))["updateTrigger"]
    assert updated == {
        **created,
        **changes,
        "operation": {
            "type": "function",
            "serviceId": service,
            "functionName": "echo",
            "input": {"n": 2},
            "service": {"id": service},
        },
        "updatedAt": updated["updatedAt"],
    }
    assert updated["updatedAt"] > created["updatedAt"]
    assert (await client.data(TRIGGER, id=trigger))["trigger"] == updated

    assert (await client.data(DELETE_TRIGGER, id=trigger))["deleteTrigger"] is True
    assert await client.code(TRIGGER, id=trigger) == "NOT_FOUND"
    assert await client.code(DELETE_TRIGGER, id=trigger) == "NOT_FOUND"
    assert (await client.data(PROJECT_TRIGGERS, p=project))["project"]["triggers"][
        "totalCount"
    ] == 0
    assert await db.triggers.count_documents({}) == 0


async def test_a_trigger_created_with_only_what_it_needs_gets_the_documented_defaults(member):
    scene = await _scene(member)
    trigger = await scene.world.client.data(
        CREATE_TRIGGER,
        p=scene.world.project,
        input={
            "name": "plain",
            "resource": "Dataset",
            "actions": ["Updated"],
            "operation": {"serviceId": scene.service, "functionName": "echo"},
        },
    )
    created = trigger["createTrigger"]
    assert (created["filter"], created["executionMode"], created["ordered"], created["active"]) == (
        None,
        "Always",
        False,
        True,
    )
    assert created["operation"]["type"] == "function"
    assert created["operation"]["input"] == {}


async def test_project_triggers_are_listed_by_name_a_page_at_a_time(member):
    scene = await _scene(member)
    client, project = scene.world.client, scene.world.project
    for name in ("charlie", "alpha", "bravo"):
        await _create(client, project, scene.service, name=name)
    first = (await client.data(PROJECT_TRIGGERS, p=project, first=2))["project"]["triggers"]
    assert [node["name"] for node in first["nodes"]] == ["alpha", "bravo"]
    assert first["totalCount"] == 3
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await client.data(
        PROJECT_TRIGGERS, p=project, first=2, after=first["pageInfo"]["endCursor"]
    )
    assert [node["name"] for node in rest["project"]["triggers"]["nodes"]] == ["charlie"]


async def test_activate_trigger_turns_a_trigger_off_and_on_and_changes_nothing_else(member, db):
    scene = await _scene(member)
    client = scene.world.client
    trigger = await _create(client, scene.world.project, scene.service, filter={"name": "a*"})
    before = await db.triggers.find_one({"_id": ObjectId(trigger["id"])})
    off = await client.data(ACTIVATE_TRIGGER, id=trigger["id"], active=False)
    assert off["activateTrigger"] == {"id": trigger["id"], "active": False}
    after_off = await db.triggers.find_one({"_id": ObjectId(trigger["id"])})
    ignored = ("active", "updatedAt")
    assert {k: v for k, v in after_off.items() if k not in ignored} == {
        k: v for k, v in before.items() if k not in ignored
    }
    on = await client.data(ACTIVATE_TRIGGER, id=trigger["id"], active=True)
    assert on["activateTrigger"]["active"] is True
    assert (await client.data(TRIGGER, id=trigger["id"]))["trigger"]["active"] is True


async def test_a_filter_is_cleared_by_an_empty_filter_and_by_null(member, db):
    scene = await _scene(member)
    client = scene.world.client
    trigger = await _create(client, scene.world.project, scene.service, filter={"name": "a*"})
    emptied = await client.data(UPDATE_TRIGGER, id=trigger["id"], input={"filter": {}})
    assert emptied["updateTrigger"]["filter"] is None
    await client.data(UPDATE_TRIGGER, id=trigger["id"], input={"filter": {"name": "b*"}})
    nulled = await client.data(UPDATE_TRIGGER, id=trigger["id"], input={"filter": None})
    assert nulled["updateTrigger"]["filter"] is None
    assert (await db.triggers.find_one({"_id": ObjectId(trigger["id"])}))["filter"] is None


async def test_a_trigger_name_taken_in_the_project_is_a_conflict_on_create_and_rename(member, db):
    scene = await _scene(member, neighbours=True)
    client, project = scene.world.client, scene.world.project
    await _create(client, project, scene.service, name="first")
    second = await _create(client, project, scene.service, name="second")
    before = await snapshot(db)
    error = await client.error(
        CREATE_TRIGGER, p=project, input=_definition(scene.service, name="first")
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("CONFLICT", "name")
    renamed = await client.error(UPDATE_TRIGGER, id=second["id"], input={"name": " first "})
    assert renamed["extensions"]["code"] == "CONFLICT"
    assert await snapshot(db) == before
    # The name is taken per project only.
    elsewhere = await _create(
        client, scene.other_project, scene.other_project_service, name="first"
    )
    assert elsewhere["name"] == "first"


# --- Bad input ------------------------------------------------------------------------------

BadInput = Callable[[Scene], dict[str, Any]]

BAD_CREATES: dict[str, BadInput] = {
    "where-operator": lambda s: {"filter": {"$where": "x"}},
    "unknown-operator": lambda s: {"filter": {"name": {"$like": "a"}}},
    "regex": lambda s: {"filter": {"name": {"$regex": "^a"}}},
    "unknown-field": lambda s: {"filter": {"colour": "red"}},
    "id-not-an-id": lambda s: {"filter": {"datasetId": "not-an-id"}},
    "date-not-a-date": lambda s: {"filter": {"createdAt": {"$gt": "yesterday"}}},
    "filter-with-join": lambda s: {
        "filter": {
            "filter": {"name": "a*"},
            "join": {
                "on": {"resource": "annotations", "local": "itemId", "forigen": "id"},
                "filter": {"label": "car"},
            },
        }
    },
    "filter-with-sort": lambda s: {
        "filter": {"filter": {"name": "a*"}, "sort": {"name": "ascending"}}
    },
    "filter-with-paging": lambda s: {"filter": {"filter": {"name": "a*"}, "pageSize": 10}},
    "filter-of-another-resource": lambda s: {
        "filter": {"resource": "annotations", "filter": {"label": "car"}}
    },
    "filter-not-an-object": lambda s: {"filter": ["name", "a"]},
    "unknown-function": lambda s: {
        "operation": {"serviceId": s.service, "functionName": "no-such-function"}
    },
    "function-the-service-lacks": lambda s: {
        "operation": {"serviceId": s.service, "functionName": "fail"}
    },
    "service-of-another-project": lambda s: {
        "operation": {"serviceId": s.other_project_service, "functionName": "echo"}
    },
    "service-id-not-an-id": lambda s: {"operation": {"serviceId": "nope", "functionName": "echo"}},
    "input-the-function-refuses": lambda s: {
        "operation": {
            "serviceId": s.service,
            "functionName": "sleeper",
            "input": {"seconds": -1},
        }
    },
    "unknown-operation-type": lambda s: {
        "operation": {"type": "webhook", "serviceId": s.service, "functionName": "echo"}
    },
    "status-changed-of-items": lambda s: {"actions": ["Created", "StatusChanged"]},
    "no-actions": lambda s: {"actions": []},
    "blank-name": lambda s: {"name": "   "},
}


async def test_creating_a_trigger_from_bad_input_is_bad_user_input_and_writes_nothing(member, db):
    scene = await _scene(member, neighbours=True)
    before = await snapshot(db)
    codes, wrote = {}, []
    for case, bad in BAD_CREATES.items():
        body = await scene.world.client.execute(
            CREATE_TRIGGER, p=scene.world.project, input=_definition(scene.service, **bad(scene))
        )
        codes[case] = _codes(body)
        if await snapshot(db) != before:
            wrote.append(case)
    assert codes == {case: ["BAD_USER_INPUT"] for case in BAD_CREATES}
    assert wrote == []
    assert await _triggers(db) == []


async def test_status_changed_is_accepted_for_executions(member):
    scene = await _scene(member)
    trigger = await _create(
        scene.world.client,
        scene.world.project,
        scene.service,
        resource="Execution",
        actions=["StatusChanged"],
        filter={"status": "failed"},
    )
    assert (trigger["resource"], trigger["actions"]) == ("Execution", ["StatusChanged"])


async def test_naming_another_orgs_service_is_not_found_and_writes_nothing(member, db):
    """The other org's service is as invisible as one that does not exist: NOT_FOUND, the
    same answer as for a made-up id (BAD_USER_INPUT would confirm it exists)."""
    scene = await _scene(member, neighbours=True)
    before = await snapshot(db)
    for service in (scene.other_org_service, str(ObjectId())):
        error = await scene.world.client.error(
            CREATE_TRIGGER, p=scene.world.project, input=_definition(service)
        )
        assert error["extensions"]["code"] == "NOT_FOUND"
        assert error["message"] == "Service not found"
    assert await snapshot(db) == before


BAD_UPDATES: dict[str, BadInput] = {
    "where-operator": lambda s: {"filter": {"$where": "x"}},
    "filter-with-sort": lambda s: {
        "filter": {"filter": {"name": "a*"}, "sort": {"name": "ascending"}}
    },
    "unknown-function": lambda s: {
        "operation": {"serviceId": s.service, "functionName": "no-such-function"}
    },
    "service-of-another-project": lambda s: {
        "operation": {"serviceId": s.other_project_service, "functionName": "echo"}
    },
    "input-the-function-refuses": lambda s: {
        "operation": {
            "serviceId": s.service,
            "functionName": "sleeper",
            "input": {"seconds": -1},
        }
    },
    "unknown-operation-type": lambda s: {
        "operation": {"type": "webhook", "serviceId": s.service, "functionName": "echo"}
    },
    "status-changed-of-items": lambda s: {"actions": ["StatusChanged"]},
    "no-actions": lambda s: {"actions": []},
    "nothing-to-change": lambda s: {},
    # A good change next to a bad one: neither is written.
    "good-name-bad-filter": lambda s: {"name": "renamed", "filter": {"name": {"$like": "a"}}},
}


async def test_changing_a_trigger_with_bad_input_is_bad_user_input_and_writes_nothing(member, db):
    scene = await _scene(member, neighbours=True)
    trigger = await _create(scene.world.client, scene.world.project, scene.service)
    before = await snapshot(db)
    codes, wrote = {}, []
    for case, bad in BAD_UPDATES.items():
        body = await scene.world.client.execute(UPDATE_TRIGGER, id=trigger["id"], input=bad(scene))
        codes[case] = _codes(body)
        if await snapshot(db) != before:
            wrote.append(case)
    assert codes == {case: ["BAD_USER_INPUT"] for case in BAD_UPDATES}
    assert wrote == []


async def test_a_filter_written_as_a_whole_query_keeps_only_its_filter(member, db):
    scene = await _scene(member)
    trigger = await _create(
        scene.world.client,
        scene.world.project,
        scene.service,
        filter={"resource": "items", "filter": {"name": "a*"}},
    )
    assert trigger["filter"] == {"name": "a*"}


async def test_a_filter_written_as_a_query_without_a_filter_is_no_filter(member, db):
    """`{"resource": "items"}` is the DQL query of every item: a trigger without a filter."""
    scene = await _scene(member)
    body = await scene.world.client.execute(
        CREATE_TRIGGER,
        p=scene.world.project,
        input=_definition(scene.service, filter={"resource": "items"}),
    )
    assert body.get("errors") is None, body
    assert body["data"]["createTrigger"]["filter"] is None


# --- testTrigger ----------------------------------------------------------------------------


async def test_testing_a_saved_trigger_against_json_converts_its_ids_and_dates(member, db):
    scene = await _scene(member)
    client, dataset = scene.world.client, scene.world.dataset
    trigger = await _create(
        client,
        scene.world.project,
        scene.service,
        filter={"createdAt": {"$gt": "2024-01-01T00:00:00Z"}, "datasetId": dataset},
    )
    before = await snapshot(db)

    async def test(document: dict[str, Any]) -> dict[str, Any]:
        found = await client.data(TEST_TRIGGER, t=trigger["id"], document=document)
        return found["testTrigger"]

    # Only as a date is "2024-06-01…" after the filter's date, only as an id equal to its id.
    matching = await test({"datasetId": dataset, "createdAt": "2024-06-01T12:00:00Z"})
    assert matching == {
        "matches": True,
        "document": {"datasetId": dataset, "createdAt": "2024-06-01T12:00:00+00:00"},
    }
    too_early = await test({"datasetId": dataset, "createdAt": "2023-12-31T23:59:59Z"})
    assert too_early["matches"] is False
    elsewhere = await test({"datasetId": str(ObjectId()), "createdAt": "2024-06-01T12:00:00Z"})
    assert elsewhere["matches"] is False
    assert (await test({"datasetId": dataset}))["matches"] is False
    assert await snapshot(db) == before


async def test_testing_a_definition_against_json_says_whether_it_would_match(member, db):
    scene = await _scene(member)
    client = scene.world.client
    before = await snapshot(db)
    definition = {"resource": "Item", "actions": ["Created"], "filter": {"name": "*.png"}}
    png = await client.data(TEST_TRIGGER, definition=definition, document={"name": "a.png"})
    jpg = await client.data(TEST_TRIGGER, definition=definition, document={"name": "a.jpg"})
    assert png["testTrigger"] == {"matches": True, "document": {"name": "a.png"}}
    assert jpg["testTrigger"] == {"matches": False, "document": {"name": "a.jpg"}}
    # Without a filter, every document matches.
    unfiltered = {"resource": "Dataset", "actions": ["Updated"]}
    anything = await client.data(TEST_TRIGGER, definition=unfiltered, document={"x": 1})
    assert anything["testTrigger"]["matches"] is True
    assert await snapshot(db) == before


async def test_testing_against_a_real_item_reads_it_as_stored(member, db):
    scene = await _scene(member)
    client, project, item = scene.world.client, scene.world.project, scene.item
    pngs = {"resource": "Item", "actions": ["Created"], "filter": {"mimetype": "image/png"}}
    jpegs = {**pngs, "filter": {"mimetype": "image/jpeg"}}
    trigger = await _create(
        client, project, scene.service, filter={"id": item["id"], "width": 6, "height": 4}
    )
    before = await snapshot(db)
    png = await client.data(TEST_TRIGGER, definition=pngs, r=item["id"], p=project)
    assert png["testTrigger"]["matches"] is True
    document = png["testTrigger"]["document"]
    assert (document["_id"], document["name"], document["datasetId"]) == (
        item["id"],
        "car.png",
        scene.world.dataset,
    )
    jpeg = await client.data(TEST_TRIGGER, definition=jpegs, r=item["id"], p=project)
    assert jpeg["testTrigger"]["matches"] is False
    # A saved trigger brings its project.
    saved = await client.data(TEST_TRIGGER, t=trigger["id"], r=item["id"])
    assert saved["testTrigger"]["matches"] is True
    assert saved["testTrigger"]["document"] == document
    assert await snapshot(db) == before


def _test_requests(scene: Scene, trigger: str) -> dict[str, dict[str, Any]]:
    definition = {"resource": "Item", "actions": ["Created"]}
    item = scene.item["id"]
    return {
        "neither-trigger-nor-definition": {"document": {"name": "a"}},
        "both-trigger-and-definition": {"t": trigger, "definition": definition, "document": {}},
        "neither-document-nor-resource": {"t": trigger},
        "both-document-and-resource": {"t": trigger, "document": {}, "r": item},
        "resource-without-project": {"definition": definition, "r": item},
        "resource-of-another-project": {
            "definition": definition,
            "r": item,
            "p": scene.other_project,
        },
        "bad-filter": {
            "definition": {**definition, "filter": {"$where": "x"}},
            "document": {"name": "a"},
        },
        "status-changed-of-items": {
            "definition": {"resource": "Item", "actions": ["StatusChanged"]},
            "document": {},
        },
        "document-with-a-bad-id": {"t": trigger, "document": {"datasetId": "not-an-id"}},
        "document-a-list": {
            "definition": {**definition, "filter": {"name": "a"}},
            "document": [{"name": "a"}],
        },
        "document-a-string": {"t": trigger, "document": "name"},
        "trigger-id-not-an-id": {"t": "nope", "document": {}},
    }


async def test_testing_a_trigger_with_bad_arguments_is_bad_user_input_and_runs_nothing(member, db):
    scene = await _scene(member, neighbours=True)
    trigger = await _create(scene.world.client, scene.world.project, scene.service)
    before = await snapshot(db)
    requests = _test_requests(scene, trigger["id"])
    codes = {
        case: _codes(await scene.world.client.execute(TEST_TRIGGER, **arguments))
        for case, arguments in requests.items()
    }
    assert codes == {case: ["BAD_USER_INPUT"] for case in requests}
    assert await snapshot(db) == before


# --- invokeTrigger --------------------------------------------------------------------------


async def test_invoking_a_trigger_creates_and_queues_one_execution_of_its_function(
    member, db, redis
):
    scene = await _scene(member)
    client, item = scene.world.client, scene.item
    # Invoking ignores the filter, the mode and whether the trigger is active.
    trigger = await _create(
        client,
        scene.world.project,
        scene.service,
        filter={"name": "never-this-name"},
        executionMode="Once",
        active=False,
    )
    invoked = (await client.data(INVOKE_TRIGGER, t=trigger["id"], r=item["id"]))["invokeTrigger"]
    assert invoked == {
        "id": invoked["id"],
        "status": "created",
        "function": "echo",
        "input": {"hello": 1},
        "serviceId": scene.service,
        "resource": {"type": "item", "id": item["id"]},
        "triggerId": trigger["id"],
        "eventId": None,
        "trigger": {"id": trigger["id"], "name": "on items"},
        "event": None,
    }
    stored = await db.executions.find_one({"_id": ObjectId(invoked["id"])})
    assert stored["triggerId"] == ObjectId(trigger["id"])
    assert stored["projectId"] == ObjectId(scene.world.project)
    assert stored["resource"] == {"type": "item", "id": ObjectId(item["id"])}
    assert "eventId" not in stored
    queued = await redis.zscore(execution_queue.service_key(scene.service), invoked["id"])
    assert queued is not None

    again = (await client.data(INVOKE_TRIGGER, t=trigger["id"], r=item["id"]))["invokeTrigger"]
    assert again["id"] != invoked["id"]
    fired = (await client.data(TRIGGER_EXECUTIONS, id=trigger["id"]))["trigger"]
    assert fired["firedCount"] == 2
    assert fired["lastFiredAt"] is not None
    listed = {node["id"] for node in fired["executions"]["nodes"]}
    assert listed == {again["id"], invoked["id"]}
    assert await db.events.count_documents({}) == 0


async def test_invoking_a_trigger_on_a_dataset_names_the_dataset(member, db):
    scene = await _scene(member)
    client = scene.world.client
    trigger = await _create(
        client, scene.world.project, scene.service, resource="Dataset", actions=["Updated"]
    )
    invoked = await client.data(INVOKE_TRIGGER, t=trigger["id"], r=scene.world.dataset)
    assert invoked["invokeTrigger"]["resource"] == {"type": "dataset", "id": scene.world.dataset}
    # An item is not a dataset: the trigger's resource is looked for, and not found.
    before = await snapshot(db)
    assert await client.code(INVOKE_TRIGGER, t=trigger["id"], r=scene.item["id"]) == "NOT_FOUND"
    assert await snapshot(db) == before


async def test_invoking_a_trigger_on_another_projects_item_is_bad_user_input(member, db):
    scene = await _scene(member, neighbours=True)
    client = scene.world.client
    trigger = await _create(client, scene.world.project, scene.service)
    dataset = (
        await client.data(CREATE_DATASET, project=scene.other_project, input={"name": "scans"})
    )["createDataset"]["id"]
    elsewhere = await scene.world.upload_to(dataset, "scan.png", image_bytes("PNG", 3, 3))
    before = await snapshot(db)
    error = await client.error(INVOKE_TRIGGER, t=trigger["id"], r=elsewhere["id"])
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "resourceId",
    )
    assert await snapshot(db) == before


async def test_invoking_a_trigger_whose_service_is_inactive_is_a_conflict(member, db, redis):
    scene = await _scene(member)
    client = scene.world.client
    trigger = await _create(client, scene.world.project, scene.service)
    await client.data(UPDATE_SERVICE, id=scene.service, input={"active": False})
    before = await snapshot(db)
    assert await client.code(INVOKE_TRIGGER, t=trigger["id"], r=scene.item["id"]) == "CONFLICT"
    assert await snapshot(db) == before
    assert await redis.zcard(execution_queue.service_key(scene.service)) == 0


async def test_invoking_with_ids_that_name_nothing_is_not_found(member, db):
    scene = await _scene(member)
    client = scene.world.client
    trigger = await _create(client, scene.world.project, scene.service)
    before = await snapshot(db)
    assert await client.code(INVOKE_TRIGGER, t=str(ObjectId()), r=scene.item["id"]) == "NOT_FOUND"
    assert await client.code(INVOKE_TRIGGER, t=trigger["id"], r=str(ObjectId())) == "NOT_FOUND"
    assert await client.code(INVOKE_TRIGGER, t="nope", r=scene.item["id"]) == "BAD_USER_INPUT"
    assert await snapshot(db) == before


# --- Events -------------------------------------------------------------------------------


async def test_an_event_reads_back_with_its_documents_and_what_it_ran(member, db):
    scene = await _scene(member)
    client, item = scene.world.client, scene.item
    trigger = await _create(client, scene.world.project, scene.service)
    event = await captured(db, "items", ObjectId(item["id"]))
    await db.events.update_one(
        {"_id": event["_id"]}, {"$set": {"triggers": [ObjectId(trigger["id"])]}}
    )
    execution = (await client.data(INVOKE_TRIGGER, t=trigger["id"], r=item["id"]))["invokeTrigger"]
    await db.executions.update_one(
        {"_id": ObjectId(execution["id"])}, {"$set": {"eventId": event["_id"]}}
    )

    read = (await client.data(EVENT, id=str(event["_id"])))["event"]
    after = read.pop("after")
    kept = await db.events.find_one({"_id": event["_id"]})
    assert read == {
        "id": str(event["_id"]),
        "projectId": scene.world.project,
        "resource": "Item",
        "resourceId": item["id"],
        "action": "Created",
        "before": None,
        "time": kept["time"].isoformat(),
        "triggerIds": [trigger["id"]],
        "executions": [
            {"id": execution["id"], "triggerId": trigger["id"], "eventId": str(event["_id"])}
        ],
    }
    # The item as MongoDB holds it, as JSON: ids as strings, dates as ISO-8601.
    stored = await db.items.find_one({"_id": ObjectId(item["id"])})
    assert set(after) == set(stored)
    assert (after["_id"], after["datasetId"], after["orgId"], after["projectId"]) == (
        item["id"],
        scene.world.dataset,
        scene.world.org,
        scene.world.project,
    )
    assert (after["name"], after["width"], after["height"]) == ("car.png", 6, 4)
    assert after["createdAt"] == stored["createdAt"].isoformat()
    fired = (await client.data(TRIGGER_EVENTS, id=trigger["id"]))["trigger"]["events"]["nodes"]
    assert fired == [{"id": str(event["_id"])}]
    by_execution = (await client.data(EXECUTION_EVENT, id=execution["id"]))["execution"]
    assert by_execution == {
        "eventId": str(event["_id"]),
        "event": {"id": str(event["_id"]), "action": "Created"},
    }


async def test_update_and_delete_events_carry_the_document_before_the_change(member, db):
    scene = await _scene(member)
    client, item = scene.world.client, ObjectId(scene.item["id"])
    before = await db.items.find_one({"_id": item})
    await db.items.update_one({"_id": item}, {"$set": {"name": "renamed.png"}})
    updated = await captured(db, "items", item, "update", before=before)
    after_update = await db.items.find_one({"_id": item})
    await db.items.delete_one({"_id": item})
    deleted = await captured(db, "items", item, "delete", before=after_update)

    changed = (await client.data(EVENT, id=str(updated["_id"])))["event"]
    assert (changed["action"], changed["before"]["name"], changed["after"]["name"]) == (
        "Updated",
        "car.png",
        "renamed.png",
    )
    gone = (await client.data(EVENT, id=str(deleted["_id"])))["event"]
    assert (gone["action"], gone["before"]["name"], gone["after"]) == (
        "Deleted",
        "renamed.png",
        None,
    )
    assert gone["resourceId"] == str(item)


async def test_project_events_are_listed_newest_first_a_page_at_a_time(member, db):
    scene = await _scene(member)
    client = scene.world.client
    events = [await captured(db, "datasets", ObjectId(scene.world.dataset)) for _ in range(3)]
    first = (await client.data(PROJECT_EVENTS, p=scene.world.project, first=2))["project"]["events"]
    newest = [str(event["_id"]) for event in reversed(events)]
    assert [node["id"] for node in first["nodes"]] == newest[:2]
    assert (first["totalCount"], first["pageInfo"]["hasNextPage"]) == (3, True)
    rest = await client.data(
        PROJECT_EVENTS, p=scene.world.project, first=2, after=first["pageInfo"]["endCursor"]
    )
    assert [node["id"] for node in rest["project"]["events"]["nodes"]] == newest[2:]


async def test_the_events_subscription_delivers_only_the_resources_and_actions_asked_for(
    member, db, server, app
):
    scene = await _scene(member)
    client, dataset = scene.world.client, ObjectId(scene.world.dataset)
    item = ObjectId(scene.item["id"])
    stored = await db.items.find_one({"_id": item})
    async with subscribe(
        server, client.key, EVENTS, p=scene.world.project, resources=["Item"], actions=["Deleted"]
    ) as updates:
        await wait_for_subscribers(app, 1)
        await captured(db, "items", item)
        await captured(db, "datasets", dataset)
        first = await captured(db, "items", item, "delete", before=stored)
        await captured(
            db,
            "datasets",
            dataset,
            "delete",
            before={
                "_id": dataset,
                **{k: v for k, v in stored.items() if k in ("orgId", "projectId")},
            },
        )
        second = await captured(db, "items", item, "delete", before=stored)
        received = [await next_event(updates), await next_event(updates)]
    assert received == [
        {
            "id": str(event["_id"]),
            "projectId": scene.world.project,
            "resource": "Item",
            "resourceId": str(item),
            "action": "Deleted",
        }
        for event in (first, second)
    ]


# --- Roles ----------------------------------------------------------------------------------

MANAGES = {
    "org-owner": None,
    "org-admin": None,
    "org-member": "NOT_FOUND",
    "org-worker": "NOT_FOUND",
    "project-owner": None,
    "project-developer": None,
    "project-annotationManager": "FORBIDDEN",
    "project-annotator": "FORBIDDEN",
}
"""Who may manage and invoke triggers, written out by hand: the policy, not the table."""


def test_the_manage_triggers_policy_is_the_grant_tables():
    assert {case.id: project_outcome(case, Action.MANAGE_TRIGGERS) for case in ALL_CASES} == (
        MANAGES
    )
    assert [case.id for case in ALL_CASES] == list(MANAGES)


@dataclass
class Caller:
    case: Case
    client: GraphQLClient
    trigger: str
    """A trigger of the founder's, for this caller to change, invoke and delete."""


async def _callers(member) -> tuple[str, str, str, list[Caller]]:
    """One org: its founder (an owner) made a project with a service, an item, and one trigger
    per caller; the callers hold every org role, and every project role (as org members).
    Returns (project, service, item, callers)."""
    founder, founder_doc = await member("acme", "owner")
    org = str(founder_doc["orgId"])
    project = (await founder.data(CREATE_PROJECT, org=org, name="Main"))["createProject"]["id"]
    service = await _service(founder, project)
    dataset = (await founder.data(CREATE_DATASET, project=project, input={"name": "d"}))[
        "createDataset"
    ]["id"]
    item = (await World(founder, org, project, dataset).upload("i.png", image_bytes("PNG", 2, 2)))[
        "id"
    ]
    callers = []
    for case in ALL_CASES:
        client, doc = await member("acme", case.org_role.value)
        if case.project_role is not None:
            await founder.data(
                ADD_PROJECT_MEMBER,
                project=project,
                user=str(doc["userId"]),
                role=case.project_role.name,
            )
        trigger = (await _create(founder, project, service, name=f"for {case.id}"))["id"]
        callers.append(Caller(case, client, trigger))
    return project, service, item, callers


async def test_creating_changing_invoking_and_deleting_triggers_follows_the_role_table(
    member, db, redis
):
    project, service, item, callers = await _callers(member)
    outcomes: dict[str, dict[str, str | None]] = {}
    for caller in callers:
        client, trigger, case = caller.client, caller.trigger, caller.case.id
        before = await snapshot(db)
        attempts = {
            # Reading follows project visibility: anyone in the project sees its triggers.
            "read": await _attempt(client, TRIGGER, id=trigger),
            "test": await _attempt(client, TEST_TRIGGER, t=trigger, document={"name": "x"}),
            "create": await _attempt(
                client, CREATE_TRIGGER, p=project, input=_definition(service, name=case)
            ),
            "update": await _attempt(client, UPDATE_TRIGGER, id=trigger, input={"ordered": True}),
            "activate": await _attempt(client, ACTIVATE_TRIGGER, id=trigger, active=False),
            "invoke": await _attempt(client, INVOKE_TRIGGER, t=trigger, r=item),
        }
        if MANAGES[case] is not None:
            assert await snapshot(db) == before, case
        else:
            stored = await db.triggers.find_one({"_id": ObjectId(trigger)})
            assert (stored["ordered"], stored["active"]) == (True, False), case
            assert await db.triggers.count_documents({"name": case}) == 1, case
            assert await db.executions.count_documents({"triggerId": ObjectId(trigger)}) == 1
        attempts["delete"] = await _attempt(client, DELETE_TRIGGER, id=trigger)
        still_there = await db.triggers.count_documents({"_id": ObjectId(trigger)})
        assert still_there == (MANAGES[case] is not None), case
        outcomes[case] = attempts

    invisible = {"org-member", "org-worker"}
    assert outcomes == {
        case: {
            "read": "NOT_FOUND" if case in invisible else None,
            "test": "NOT_FOUND" if case in invisible else None,
            **dict.fromkeys(("create", "update", "activate", "invoke", "delete"), expected),
        }
        for case, expected in MANAGES.items()
    }
    # One execution per allowed invocation, each queued; it outlives its deleted trigger.
    allowed = [caller.trigger for caller in callers if MANAGES[caller.case.id] is None]
    executions = await db.executions.find().to_list()
    assert sorted(str(e["triggerId"]) for e in executions) == sorted(allowed)
    assert await redis.zcard(execution_queue.service_key(service)) == len(allowed)
