"""Trigger and event tenancy: a key of organization B neither sees nor touches A's triggers,
events or what they ran, over HTTP and over the `events` subscription.

Everything naming one of A's triggers or events answers NOT_FOUND to B's keys — as an id that
names nothing does — and writes nothing; after each refusal, A's owner gets the same request
through, so the refusal is tenancy, not a malformed request. B's own documents that point at
A's (forged straight into MongoDB: no request can make them) still never show A's. The
attackers are B's owner and a user who owns both A and B, calling with its key limited to B.

Read-side tests store A's and B's events as the relay's capture would make them (`event_of`
on a synthetic insert); the subscription test runs a real worker, so its events come through
the real relay.
"""

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from tests.datasets_world import World, image_bytes, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.test_executions import CREATE_SERVICE
from tests.test_trigger_api import captured, next_event, wait_for_subscribers
from tests.waiting import eventually
from tests.workers import start_worker, stop
from tests.ws_client import subscribe
from triggers import execution_queue

CREATE_TRIGGER = """mutation($p: ID!, $input: TriggerInput!) {
  createTrigger(projectId: $p, input: $input) { id } }"""
UPDATE_TRIGGER = """mutation($id: ID!, $input: TriggerChangesInput!) {
  updateTrigger(id: $id, input: $input) { id } }"""
ACTIVATE_TRIGGER = """mutation($id: ID!) { activateTrigger(id: $id, active: false) { id } }"""
DELETE_TRIGGER = "mutation($id: ID!) { deleteTrigger(id: $id) }"
INVOKE_TRIGGER = """mutation($t: ID!, $r: ID!) {
  invokeTrigger(triggerId: $t, resourceId: $r) { id } }"""
TRIGGER = "query($id: ID!) { trigger(id: $id) { id name } }"
EVENT = "query($id: ID!) { event(id: $id) { id resourceId } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
PROJECT_TRIGGERS = "query($id: ID!) { project(id: $id) { triggers { nodes { id } } } }"
PROJECT_EVENTS = "query($id: ID!) { project(id: $id) { events { nodes { id } } } }"
TEST_SAVED = """query($id: ID!) {
  testTrigger(triggerId: $id, document: {name: "a.png"}) { matches } }"""
TEST_RESOURCE = """query($id: ID!, $p: ID!) {
  testTrigger(definition: {resource: Item, actions: [Created]}, resourceId: $id, projectId: $p) {
    matches document } }"""
EXECUTION = """query($id: ID!) { execution(id: $id) { id triggerId eventId
  trigger { id } event { id } } }"""
TRIGGER_GRAPH = """query($id: ID!) { trigger(id: $id) { firedCount
  operation { service { id } } events { nodes { id } } executions { nodes { id } } } }"""
EVENT_EXECUTIONS = "query($id: ID!) { event(id: $id) { executions { id } } }"
EVENTS = """subscription($p: ID!) { events(projectId: $p) {
  id projectId resource resourceId action } }"""


def _definition(service: str, name: str = "on items") -> dict[str, Any]:
    return {
        "name": name,
        "resource": "Item",
        "actions": ["Created"],
        "operation": {"serviceId": service, "functionName": "echo"},
    }


@dataclass
class Side:
    """One organization's world, with a service, an item, a trigger on items, an event of the
    item's insert that fired the trigger, and an execution the trigger made of it."""

    world: World
    service: str
    item: str
    trigger: str
    event: str
    execution: str

    @property
    def client(self) -> GraphQLClient:
        return self.world.client


async def _side(member, db, org: str) -> Side:
    world = await make_world(member, org=org)
    service = {"name": "hooks", "functions": ["echo"]}
    service_id = (await world.client.data(CREATE_SERVICE, p=world.project, input=service))[
        "createService"
    ]["id"]
    item = (await world.upload(f"{org}.png", image_bytes("PNG", 4, 4)))["id"]
    trigger = (
        await world.client.data(CREATE_TRIGGER, p=world.project, input=_definition(service_id))
    )["createTrigger"]["id"]
    event = await captured(db, "items", ObjectId(item))
    await db.events.update_one({"_id": event["_id"]}, {"$set": {"triggers": [ObjectId(trigger)]}})
    execution = (await world.client.data(INVOKE_TRIGGER, t=trigger, r=item))["invokeTrigger"]["id"]
    await db.executions.update_one(
        {"_id": ObjectId(execution)}, {"$set": {"eventId": event["_id"]}}
    )
    return Side(world, service_id, item, trigger, str(event["_id"]), execution)


@dataclass
class Tenants:
    a: Side
    b: Side
    dual_b: GraphQLClient  # owns A and B, its key limited to B

    @property
    def attackers(self) -> list[tuple[str, GraphQLClient]]:
        return [("b-owner", self.b.client), ("same-user-b-key", self.dual_b)]


@pytest.fixture
async def tenants(member, db) -> Tenants:
    a = await _side(member, db, "acme")
    b = await _side(member, db, "beta")
    await member("acme", "owner", email="dual@both.io")
    dual_b, _ = await member("beta", "owner", email="dual@both.io")
    return Tenants(a, b, dual_b)


# --- Reads ----------------------------------------------------------------------------------

READS: dict[str, tuple[str, Callable[[Side], dict[str, str]]]] = {
    "trigger": (TRIGGER, lambda a: {"id": a.trigger}),
    "event": (EVENT, lambda a: {"id": a.event}),
    "project.triggers": (PROJECT_TRIGGERS, lambda a: {"id": a.world.project}),
    "project.events": (PROJECT_EVENTS, lambda a: {"id": a.world.project}),
    "testTrigger(triggerId)": (TEST_SAVED, lambda a: {"id": a.trigger}),
    "testTrigger(resourceId, A's project)": (
        TEST_RESOURCE,
        lambda a: {"id": a.item, "p": a.world.project},
    ),
}


async def test_reading_org_as_triggers_and_events_with_org_b_keys_is_not_found(tenants):
    for read, (query, target) in READS.items():
        variables = target(tenants.a)
        for name, attacker in tenants.attackers:
            body = await attacker.execute(query, **variables)
            assert body["data"] is None, (read, name)
            [error] = body["errors"]
            assert error["extensions"]["code"] == "NOT_FOUND", (read, name, error)
            missing = {key: str(ObjectId()) for key in variables}
            assert error["message"] == (await attacker.error(query, **missing))["message"]
            assert "acme" not in str(body).lower()
        assert not (await tenants.a.client.execute(query, **variables)).get("errors"), read


async def test_testing_a_definition_on_org_as_item_in_org_bs_project_is_not_found(tenants):
    for name, attacker in tenants.attackers:
        body = await attacker.execute(TEST_RESOURCE, id=tenants.a.item, p=tenants.b.world.project)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], name
        assert body["data"] is None


async def test_node_of_org_as_trigger_and_event_is_null_for_org_b_keys(tenants):
    """`node` answers null, not NOT_FOUND, for any id it cannot show (the Relay convention
    test_data_tenancy pins for datasets, items and annotations)."""
    targets = {"Trigger": tenants.a.trigger, "Event": tenants.a.event}
    for typename, a_id in targets.items():
        for name, attacker in tenants.attackers:
            assert (await attacker.data(NODE, id=a_id))["node"] is None, (typename, name)
        owner_view = await tenants.a.client.data(NODE, id=a_id)
        assert owner_view["node"] == {"__typename": typename, "id": a_id}


# --- Writes ---------------------------------------------------------------------------------

WRITES: dict[str, tuple[str, Callable[[Tenants], dict[str, Any]]]] = {
    "updateTrigger": (UPDATE_TRIGGER, lambda t: {"id": t.a.trigger, "input": {"name": "x"}}),
    "activateTrigger": (ACTIVATE_TRIGGER, lambda t: {"id": t.a.trigger}),
    "invokeTrigger": (INVOKE_TRIGGER, lambda t: {"t": t.a.trigger, "r": t.a.item}),
    "invokeTrigger(B's item)": (INVOKE_TRIGGER, lambda t: {"t": t.a.trigger, "r": t.b.item}),
    "invokeTrigger(B's trigger, A's item)": (
        INVOKE_TRIGGER,
        lambda t: {"t": t.b.trigger, "r": t.a.item},
    ),
    "createTrigger(A's project)": (
        CREATE_TRIGGER,
        lambda t: {"p": t.a.world.project, "input": _definition(t.a.service, "x")},
    ),
    "createTrigger(B's project, A's service)": (
        CREATE_TRIGGER,
        lambda t: {"p": t.b.world.project, "input": _definition(t.a.service, "x")},
    ),
    "updateTrigger(B's trigger to A's service)": (
        UPDATE_TRIGGER,
        lambda t: {
            "id": t.b.trigger,
            "input": {"operation": {"serviceId": t.a.service, "functionName": "echo"}},
        },
    ),
    "deleteTrigger": (DELETE_TRIGGER, lambda t: {"id": t.a.trigger}),
}


async def test_org_b_keys_change_delete_and_invoke_none_of_org_as_triggers(tenants, db, redis):
    a_queue = execution_queue.service_key(tenants.a.service)
    queued = await redis.zrange(a_queue, 0, -1)
    before = await snapshot(db)
    outcomes = {}
    for write, (query, arguments) in WRITES.items():
        for name, attacker in tenants.attackers:
            body = await attacker.execute(query, **arguments(tenants))
            outcomes[write, name] = [e["extensions"]["code"] for e in body.get("errors") or []]
            assert "acme" not in str(body).lower()
    assert outcomes == {key: ["NOT_FOUND"] for key in outcomes}
    assert await snapshot(db) == before
    assert await redis.zrange(a_queue, 0, -1) == queued

    # The control: A's owner may do each of them to A's trigger (the delete last).
    a = tenants.a
    for query, variables in (
        (UPDATE_TRIGGER, {"id": a.trigger, "input": {"name": "renamed"}}),
        (ACTIVATE_TRIGGER, {"id": a.trigger}),
        (INVOKE_TRIGGER, {"t": a.trigger, "r": a.item}),
        (DELETE_TRIGGER, {"id": a.trigger}),
    ):
        assert not (await a.client.execute(query, **variables)).get("errors"), query


# --- B's own documents pointing at A's ------------------------------------------------------


async def test_org_bs_fields_never_show_org_as_triggers_events_or_executions(tenants, db):
    a, b = tenants.a, tenants.b
    # The control: B's own execution shows B's own trigger and event.
    own = (await b.client.data(EXECUTION, id=b.execution))["execution"]
    assert (own["trigger"], own["event"]) == ({"id": b.trigger}, {"id": b.event})

    await db.executions.update_one(
        {"_id": ObjectId(b.execution)},
        {"$set": {"triggerId": ObjectId(a.trigger), "eventId": ObjectId(a.event)}},
    )
    await db.triggers.update_one(
        {"_id": ObjectId(b.trigger)}, {"$set": {"operation.serviceId": ObjectId(a.service)}}
    )
    await db.events.update_one(
        {"_id": ObjectId(a.event)}, {"$addToSet": {"triggers": ObjectId(b.trigger)}}
    )
    await db.executions.update_one(
        {"_id": ObjectId(a.execution)}, {"$set": {"eventId": ObjectId(b.event)}}
    )
    for name, attacker in tenants.attackers:
        execution = (await attacker.data(EXECUTION, id=b.execution))["execution"]
        assert (execution["trigger"], execution["event"]) == (None, None), name
        graph = (await attacker.data(TRIGGER_GRAPH, id=b.trigger))["trigger"]
        assert graph["operation"]["service"] is None, name
        assert graph["events"]["nodes"] == [{"id": b.event}], name
        assert graph["executions"]["nodes"] == [], name
        event = (await attacker.data(EVENT_EXECUTIONS, id=b.event))["event"]
        assert event["executions"] == [], name
        events = (await attacker.data(PROJECT_EVENTS, id=b.world.project))["project"]
        assert events["events"]["nodes"] == [{"id": b.event}], name


async def test_a_triggers_fired_count_counts_only_executions_its_caller_may_see(tenants, db):
    a, b = tenants.a, tenants.b
    await db.executions.update_one(
        {"_id": ObjectId(a.execution)}, {"$set": {"triggerId": ObjectId(b.trigger)}}
    )
    await db.executions.update_one(
        {"_id": ObjectId(b.execution)}, {"$set": {"triggerId": ObjectId(a.trigger)}}
    )
    for name, attacker in tenants.attackers:
        graph = (await attacker.data(TRIGGER_GRAPH, id=b.trigger))["trigger"]
        assert (graph["firedCount"], graph["executions"]["nodes"]) == (0, []), name


# --- The events subscription, over a real uvicorn -------------------------------------------


async def test_subscribing_to_org_as_events_with_an_org_b_key_is_not_found(tenants, server):
    for name, attacker in tenants.attackers:
        async with subscribe(server, attacker.key, EVENTS, p=tenants.a.world.project) as updates:
            message = await asyncio.wait_for(updates.next(), 10)
        assert message["type"] == "next", name
        assert message["payload"]["data"] is None, name
        [error] = message["payload"]["errors"]
        assert error["extensions"]["code"] == "NOT_FOUND", name


async def _relaying(db, dataset: str) -> None:
    """Wait until a relay reads the change stream: until a change made now becomes an event.
    (The lease document alone says a worker holds the lease, not that its stream is open.)"""
    probes = itertools.count()

    async def probe() -> int:
        await db.datasets.update_one(
            {"_id": ObjectId(dataset)}, {"$set": {"description": f"probe {next(probes)}"}}
        )
        return await db.events.count_documents({"resourceId": ObjectId(dataset)})

    await eventually(probe, lambda found: found > 0)


async def test_org_b_subscribed_to_its_project_receives_only_its_own_events(
    member, db, server, settings, app
):
    a = await make_world(member, org="acme")
    b = await make_world(member, org="beta")
    worker = start_worker(settings, LOOM_RELAY_LEASE_S="1")
    try:
        await _relaying(db, a.dataset)
        async with subscribe(server, b.client.key, EVENTS, p=b.project) as updates:
            await wait_for_subscribers(app, 1)
            uploads = [
                (world, await world.upload(f"{n}.png", image_bytes("PNG", 3, 3, (n, 0, 0))))
                for n, world in enumerate((a, b, a, b))
            ]
            a_items = {item["id"] for world, item in uploads if world is a}
            b_items = [item["id"] for world, item in uploads if world is b]
            received = []
            # Changes are relayed, and events delivered, in commit order: once B's last
            # item's insert arrives, every change before it has been through the feed.
            while not received or received[-1]["resourceId"] != b_items[-1]:
                received.append(await next_event(updates))
        # A's changes did become events, in A's project: B's stream left them out.
        a_created = {"projectId": ObjectId(a.project), "action": "Created", "resource": "Item"}
        stored = await eventually(
            lambda: db.events.distinct("resourceId", a_created),
            lambda found: len(found) == len(a_items),
        )
        assert {str(item) for item in stored} == a_items
    finally:
        stop(worker)
    assert {event["projectId"] for event in received} == {b.project}
    assert not {event["resourceId"] for event in received} & (a_items | {a.dataset})
    created = [
        e["resourceId"] for e in received if (e["resource"], e["action"]) == ("Item", "Created")
    ]
    assert created == b_items
