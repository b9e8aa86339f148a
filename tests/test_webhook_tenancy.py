"""Webhook tenancy: a key of organization B neither sees nor touches A's webhooks, their
deliveries or the webhook triggers that feed them, and A's webhook triggers never deliver B's
changes.

Everything naming one of A's webhooks or deliveries answers NOT_FOUND to B's keys, as an id
that names nothing does (BAD_USER_INPUT where the id is a field inside an input, again as for a
made-up id), and writes nothing; after each refusal A's owner gets the same request through,
so the refusal is tenancy, not a malformed request. B's own documents forged to point at A's
still never show A's. The attackers are B's owner and a user who owns both A and B, calling
with its key limited to B. The last test runs a real relay, worker and receivers.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId

from gateway.settings import Settings
from resolvers.deliveries import new_delivery
from tests.datasets_world import World, image_bytes, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.waiting import eventually
from tests.webhook_receiver import receiving
from tests.workers import start_worker, stop
from triggers.webhooks import delivery_queue

PUBLIC_URL = "https://93.184.215.14/hooks/loom"
"""A public IP literal: saved without resolving anything, never called (no worker runs in
the tests that use it)."""

CREATE_WEBHOOK = """mutation($p: ID!, $input: WebhookInput!) {
  createWebhook(projectId: $p, input: $input) { secret webhook { id } } }"""
UPDATE_WEBHOOK = """mutation($id: ID!, $input: WebhookChangesInput!) {
  updateWebhook(id: $id, input: $input) { id } }"""
DELETE_WEBHOOK = "mutation($id: ID!) { deleteWebhook(id: $id) }"
ROTATE = "mutation($id: ID!) { rotateWebhookSecret(id: $id, graceSeconds: 0) { secret } }"
PING = "mutation($id: ID!) { pingWebhook(id: $id) { id } }"
REDELIVER = "mutation($id: ID!) { redeliver(deliveryId: $id) { id } }"
INVOKE_WEBHOOK_TRIGGER = """mutation($t: ID!, $r: ID!) {
  invokeWebhookTrigger(triggerId: $t, resourceId: $r) { id } }"""
CREATE_TRIGGER = """mutation($p: ID!, $input: TriggerInput!) {
  createTrigger(projectId: $p, input: $input) { id } }"""
UPDATE_TRIGGER = """mutation($id: ID!, $input: TriggerChangesInput!) {
  updateTrigger(id: $id, input: $input) { id } }"""
WEBHOOK = "query($id: ID!) { webhook(id: $id) { id name url } }"
DELIVERY = "query($id: ID!) { webhookDelivery(id: $id) { id message webhook { id } } }"
WEBHOOK_DELIVERIES = """query($id: ID!) { webhook(id: $id) {
  deliveries { totalCount nodes { id } } } }"""
PROJECT_WEBHOOKS = """query($id: ID!) { project(id: $id) {
  webhooks { totalCount nodes { id } } } }"""
PROJECT_DELIVERIES = """query($id: ID!) { project(id: $id) {
  webhookDeliveries { totalCount nodes { id } } } }"""
TRIGGER_OPERATION = """query($id: ID!) { trigger(id: $id) {
  operation { type webhookId webhook { id } } } }"""
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
PNG = image_bytes("PNG", 4, 4)


@pytest.fixture
def settings(stack: dict[str, str]) -> Settings:
    """Private addresses allowed, for the test whose receivers listen on loopback."""
    return Settings(**stack, db_name=f"test_{uuid.uuid4().hex[:12]}", webhook_allow_private=True)


def _webhook_trigger(webhook: str, name: str = "to the hook") -> dict[str, Any]:
    return {
        "name": name,
        "resource": "Item",
        "actions": ["Created", "Updated", "Deleted"],
        "operation": {"type": "webhook", "webhookId": webhook},
    }


async def _make_webhook(client: GraphQLClient, project: str, url: str, name: str = "hook") -> str:
    made = await client.data(CREATE_WEBHOOK, p=project, input={"name": name, "url": url})
    return made["createWebhook"]["webhook"]["id"]


@dataclass
class Side:
    """One organization's world with a webhook, a webhook trigger on items feeding it, an item,
    and a failed delivery of the trigger (so that it may be redelivered)."""

    world: World
    webhook: str
    trigger: str
    item: str
    delivery: str

    @property
    def client(self) -> GraphQLClient:
        return self.world.client


async def _side(member, db, org: str) -> Side:
    world = await make_world(member, org=org)
    webhook = await _make_webhook(world.client, world.project, PUBLIC_URL)
    trigger = (
        await world.client.data(CREATE_TRIGGER, p=world.project, input=_webhook_trigger(webhook))
    )["createTrigger"]["id"]
    item = (await world.upload(f"{org}.png", PNG))["id"]
    doc = await db.webhooks.find_one({"_id": ObjectId(webhook)})
    delivery = new_delivery(
        doc,
        "item.created",
        {"event": {"new": {"name": f"{org}.png"}}},
        datetime.now(UTC),
        None,
        triggerId=ObjectId(trigger),
    )
    delivery |= {"state": "failed", "endedAt": delivery["createdAt"], "reason": "410"}
    await db.deliveries.insert_one(delivery)
    return Side(world, webhook, trigger, item, str(delivery["_id"]))


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
    "webhook": (WEBHOOK, lambda a: {"id": a.webhook}),
    "webhookDelivery": (DELIVERY, lambda a: {"id": a.delivery}),
    "webhook.deliveries": (WEBHOOK_DELIVERIES, lambda a: {"id": a.webhook}),
    "project.webhooks": (PROJECT_WEBHOOKS, lambda a: {"id": a.world.project}),
    "project.webhookDeliveries": (PROJECT_DELIVERIES, lambda a: {"id": a.world.project}),
}


async def test_reading_org_as_webhooks_and_deliveries_with_org_b_keys_is_not_found(tenants):
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
            assert PUBLIC_URL not in str(body)
        assert not (await tenants.a.client.execute(query, **variables)).get("errors"), read


async def test_node_of_org_as_webhook_and_delivery_is_null_for_org_b_keys(tenants):
    targets = {"Webhook": tenants.a.webhook, "WebhookDelivery": tenants.a.delivery}
    for typename, a_id in targets.items():
        for name, attacker in tenants.attackers:
            assert (await attacker.data(NODE, id=a_id))["node"] is None, (typename, name)
        owner_view = await tenants.a.client.data(NODE, id=a_id)
        assert owner_view["node"] == {"__typename": typename, "id": a_id}


# --- Writes ---------------------------------------------------------------------------------

NOT_FOUND_WRITES: dict[str, tuple[str, Callable[[Tenants], dict[str, Any]]]] = {
    "updateWebhook": (UPDATE_WEBHOOK, lambda t: {"id": t.a.webhook, "input": {"name": "x"}}),
    "updateWebhook(url)": (
        UPDATE_WEBHOOK,
        lambda t: {"id": t.a.webhook, "input": {"url": "https://93.184.215.14/evil"}},
    ),
    "deleteWebhook": (DELETE_WEBHOOK, lambda t: {"id": t.a.webhook}),
    "rotateWebhookSecret": (ROTATE, lambda t: {"id": t.a.webhook}),
    "pingWebhook": (PING, lambda t: {"id": t.a.webhook}),
    "redeliver": (REDELIVER, lambda t: {"id": t.a.delivery}),
    "invokeWebhookTrigger": (INVOKE_WEBHOOK_TRIGGER, lambda t: {"t": t.a.trigger, "r": t.a.item}),
    "invokeWebhookTrigger(B's item)": (
        INVOKE_WEBHOOK_TRIGGER,
        lambda t: {"t": t.a.trigger, "r": t.b.item},
    ),
    "invokeWebhookTrigger(B's trigger, A's item)": (
        INVOKE_WEBHOOK_TRIGGER,
        lambda t: {"t": t.b.trigger, "r": t.a.item},
    ),
    "createWebhook(A's project)": (
        CREATE_WEBHOOK,
        lambda t: {"p": t.a.world.project, "input": {"name": "x", "url": PUBLIC_URL}},
    ),
}
"""Writes naming A's webhook, delivery, trigger, item or project as an argument."""

INPUT_WRITES: dict[str, tuple[str, Callable[[Tenants], dict[str, Any]]]] = {
    "createTrigger(B's project, A's webhook)": (
        CREATE_TRIGGER,
        lambda t: {"p": t.b.world.project, "input": _webhook_trigger(t.a.webhook, "x")},
    ),
    "updateTrigger(B's trigger to A's webhook)": (
        UPDATE_TRIGGER,
        lambda t: {
            "id": t.b.trigger,
            "input": {"operation": {"type": "webhook", "webhookId": t.a.webhook}},
        },
    ),
}
"""Writes naming A's webhook inside an input: BAD_USER_INPUT, as for a made-up id."""


async def _queues(redis, *webhooks: str) -> list[list[bytes]]:
    return [
        await redis.zrange(f"{delivery_queue.PREFIX}{kind}:{webhook}", 0, -1)
        for webhook in webhooks
        for kind in ("due", "slots")
    ]


async def test_org_b_keys_change_delete_rotate_ping_redeliver_and_invoke_none_of_org_as(
    tenants, db, redis
):
    queued = await _queues(redis, tenants.a.webhook, tenants.b.webhook)
    before = await snapshot(db)
    outcomes = {}
    for writes in (NOT_FOUND_WRITES, INPUT_WRITES):
        for write, (query, arguments) in writes.items():
            for name, attacker in tenants.attackers:
                body = await attacker.execute(query, **arguments(tenants))
                outcomes[write, name] = [e["extensions"]["code"] for e in body.get("errors") or []]
                assert "acme" not in str(body).lower()
    assert outcomes == {
        **{(w, n): ["NOT_FOUND"] for w in NOT_FOUND_WRITES for n, _ in tenants.attackers},
        **{(w, n): ["BAD_USER_INPUT"] for w in INPUT_WRITES for n, _ in tenants.attackers},
    }
    assert await snapshot(db) == before
    assert await _queues(redis, tenants.a.webhook, tenants.b.webhook) == queued

    # A's webhook inside B's input is answered as a made-up id is: nothing confirms it exists.
    for write, (query, arguments) in INPUT_WRITES.items():
        variables = arguments(tenants)
        made_up = {**variables}
        made_up["input"] = {
            **variables["input"],
            "operation": {"type": "webhook", "webhookId": str(ObjectId())},
        }
        for _, attacker in tenants.attackers:
            refused = await attacker.error(query, **variables)
            assert refused["message"] == (await attacker.error(query, **made_up))["message"]
            assert refused["extensions"]["field"] == "operation.webhookId", write

    # The control: A's owner may do each of them to A's webhook (the delete last).
    a = tenants.a
    for query, variables in (
        (UPDATE_WEBHOOK, {"id": a.webhook, "input": {"name": "renamed"}}),
        (ROTATE, {"id": a.webhook}),
        (PING, {"id": a.webhook}),
        (REDELIVER, {"id": a.delivery}),
        (INVOKE_WEBHOOK_TRIGGER, {"t": a.trigger, "r": a.item}),
        (CREATE_TRIGGER, {"p": a.world.project, "input": _webhook_trigger(a.webhook, "x")}),
        (UPDATE_TRIGGER, {"id": a.trigger, "input": {"name": "renamed"}}),
    ):
        assert not (await a.client.execute(query, **variables)).get("errors"), query
    body = await a.client.execute(DELETE_WEBHOOK, id=a.webhook)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["CONFLICT"]  # triggers use it


# --- Lists, and B's own documents pointing at A's -------------------------------------------


async def test_org_bs_lists_hold_only_org_bs_webhooks_and_deliveries(tenants):
    b = tenants.b
    for name, attacker in tenants.attackers:
        hooks = (await attacker.data(PROJECT_WEBHOOKS, id=b.world.project))["project"]
        assert hooks["webhooks"] == {"totalCount": 1, "nodes": [{"id": b.webhook}]}, name
        made = (await attacker.data(PROJECT_DELIVERIES, id=b.world.project))["project"]
        assert made["webhookDeliveries"] == {"totalCount": 1, "nodes": [{"id": b.delivery}]}
        of_hook = (await attacker.data(WEBHOOK_DELIVERIES, id=b.webhook))["webhook"]
        assert of_hook["deliveries"] == {"totalCount": 1, "nodes": [{"id": b.delivery}]}, name


async def test_org_bs_fields_never_show_org_as_webhooks_or_deliveries(tenants, db):
    a, b = tenants.a, tenants.b
    # The control: B's own trigger and delivery show B's own webhook.
    own = (await b.client.data(TRIGGER_OPERATION, id=b.trigger))["trigger"]["operation"]
    assert own["webhook"] == {"id": b.webhook}
    assert (await b.client.data(DELIVERY, id=b.delivery))["webhookDelivery"]["webhook"] == {
        "id": b.webhook
    }

    # Forged straight into MongoDB: B's trigger and delivery name A's webhook, and A's
    # delivery names B's webhook.
    await db.triggers.update_one(
        {"_id": ObjectId(b.trigger)}, {"$set": {"operation.webhookId": ObjectId(a.webhook)}}
    )
    await db.deliveries.update_one(
        {"_id": ObjectId(b.delivery)}, {"$set": {"webhookId": ObjectId(a.webhook)}}
    )
    await db.deliveries.update_one(
        {"_id": ObjectId(a.delivery)}, {"$set": {"webhookId": ObjectId(b.webhook)}}
    )
    for name, attacker in tenants.attackers:
        operation = (await attacker.data(TRIGGER_OPERATION, id=b.trigger))["trigger"]["operation"]
        assert (operation["webhookId"], operation["webhook"]) == (a.webhook, None), name
        delivery = (await attacker.data(DELIVERY, id=b.delivery))["webhookDelivery"]
        assert delivery["webhook"] is None, name
        of_hook = (await attacker.data(WEBHOOK_DELIVERIES, id=b.webhook))["webhook"]
        assert of_hook["deliveries"] == {"totalCount": 0, "nodes": []}, name
        made = (await attacker.data(PROJECT_DELIVERIES, id=b.world.project))["project"]
        assert made["webhookDeliveries"]["nodes"] == [{"id": b.delivery}], name


# --- Delivery, through a real relay and worker ----------------------------------------------

FAST = {
    "LOOM_RELAY_LEASE_S": "1",
    "LOOM_REAPER_INTERVAL_S": "0.2",
    "LOOM_WEBHOOK_ALLOW_PRIVATE": "true",
}


async def test_a_webhook_trigger_of_org_a_never_delivers_org_bs_changes(member, db, settings):
    a = await make_world(member, org="acme")
    b = await make_world(member, org="beta")
    worker = start_worker(settings, **FAST)
    try:
        async with receiving(settings) as a_receiver, receiving(settings) as b_receiver:
            a_hook = await _make_webhook(a.client, a.project, a_receiver.url)
            b_hook = await _make_webhook(b.client, b.project, b_receiver.url)
            for world, hook in ((a, a_hook), (b, b_hook)):
                await world.client.data(
                    CREATE_TRIGGER, p=world.project, input=_webhook_trigger(hook)
                )
            await eventually(
                lambda: db.relay.find_one({"_id": "relay"}), lambda doc: doc and doc.get("token")
            )
            b_items = [(await b.upload(f"b{n}.png", PNG))["name"] for n in range(3)]
            # B's changes were relayed: B's own webhook got each of them.
            b_got = await b_receiver.wait_for(3)
            sentinel = await a.upload("sentinel.png", PNG)
            (a_got,) = await a_receiver.wait_for(1)
            # Deliveries are made in the order of the changes: once the sentinel's delivery
            # exists, any delivery a B change made for A's webhook would exist too.
            event = await eventually(
                lambda: db.events.find_one({"resourceId": ObjectId(sentinel["id"])}), bool
            )
            await eventually(
                lambda: db.deliveries.find_one({"eventId": event["_id"]}),
                lambda doc: doc is not None and doc["state"] == "delivered",
            )
            a_deliveries = await db.deliveries.find({"webhookId": ObjectId(a_hook)}).to_list()
            a_requests = list(a_receiver.received)
    finally:
        stop(worker)
    assert [d["eventId"] for d in a_deliveries] == [event["_id"]]
    assert {d["projectId"] for d in a_deliveries} == {ObjectId(a.project)}
    assert len(a_requests) == 1
    assert b"sentinel.png" in a_got.body
    for name in b_items:
        assert name.encode() not in a_got.body
    assert sorted(name for name in b_items if any(name.encode() in r.body for r in b_got)) == (
        sorted(b_items)
    )
    assert all(b"sentinel.png" not in r.body for r in b_receiver.received)
