"""The webhook API: create, read, list, change, rotate, delete, ping and redeliver webhooks, and
webhook operations of triggers.

Every field goes in and comes back out; the signing secret is shown once and stored only
encrypted; bad input is BAD_USER_INPUT naming the field (a name taken is CONFLICT) and writes
nothing; the address guard refuses private URLs when they are saved (the default settings keep
LOOM_WEBHOOK_ALLOW_PRIVATE off); roles follow MANAGE_WEBHOOKS. No worker runs here: deliveries
made by pingWebhook, redeliver and invokeWebhookTrigger stay pending (their URL is a public IP
literal, so saving one resolves nothing and, with no worker, nothing is ever sent to it).
Delivery itself is tests/test_webhook_delivery.py's.
"""

import base64
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from bson import ObjectId

from resolvers.access import Action
from resolvers.deliveries import new_delivery
from resolvers.json_documents import as_json
from resolvers.webhooks import signing_secrets
from tests.datasets_world import CREATE_DATASET, CREATE_PROJECT, World, image_bytes, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.test_executions import CREATE_SERVICE
from tests.test_roles import ALL_CASES, Case, _attempt, project_outcome
from triggers.webhooks import delivery_queue
from triggers.webhooks.secret_key import secret_box

PUBLIC_URL = "https://93.184.215.14/hooks/loom"
"""A globally routable IP literal: the guard passes it without resolving anything."""
OTHER_PUBLIC_URL = "http://93.184.215.14:8080/other"

POLICY_FIELDS = "maxAttempts timeoutS initialDelayS maxDelayS multiplier retryClientErrors"
WEBHOOK_FIELDS = f"""id projectId name url description headers active concurrency
  retryPolicy {{ {POLICY_FIELDS} }} secrets {{ id createdAt expiresAt }}
  disabledReason disabledAt createdAt updatedAt"""
DELIVERY_FIELDS = """id projectId webhookId messageId type message state reason attemptCount
  maxAttempts nextAttemptAt triggerId eventId createdAt endedAt webhook { id }
  attempts { attempt outcome statusCode error }"""
CREATE_WEBHOOK = f"""mutation($p: ID!, $input: WebhookInput!) {{
  createWebhook(projectId: $p, input: $input) {{ secret webhook {{ {WEBHOOK_FIELDS} }} }} }}"""
UPDATE_WEBHOOK = f"""mutation($id: ID!, $input: WebhookChangesInput!) {{
  updateWebhook(id: $id, input: $input) {{ {WEBHOOK_FIELDS} }} }}"""
DELETE_WEBHOOK = "mutation($id: ID!) { deleteWebhook(id: $id) }"
ROTATE = f"""mutation($id: ID!, $grace: Float) {{
  rotateWebhookSecret(id: $id, graceSeconds: $grace) {{
    secret webhook {{ {WEBHOOK_FIELDS} }} }} }}"""
PING = f"mutation($id: ID!) {{ pingWebhook(id: $id) {{ {DELIVERY_FIELDS} }} }}"
REDELIVER = f"mutation($id: ID!) {{ redeliver(deliveryId: $id) {{ {DELIVERY_FIELDS} }} }}"
INVOKE_WEBHOOK_TRIGGER = f"""mutation($t: ID!, $r: ID!) {{
  invokeWebhookTrigger(triggerId: $t, resourceId: $r) {{ {DELIVERY_FIELDS} }} }}"""
INVOKE_TRIGGER = """mutation($t: ID!, $r: ID!) {
  invokeTrigger(triggerId: $t, resourceId: $r) { id } }"""
WEBHOOK = f"query($id: ID!) {{ webhook(id: $id) {{ {WEBHOOK_FIELDS} }} }}"
DELIVERY = f"query($id: ID!) {{ webhookDelivery(id: $id) {{ {DELIVERY_FIELDS} }} }}"
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
PROJECT_WEBHOOKS = f"""query($p: ID!, $first: Int, $after: String) {{ project(id: $p) {{
  webhooks(first: $first, after: $after) {{ totalCount pageInfo {{ hasNextPage endCursor }}
    nodes {{ {WEBHOOK_FIELDS} }} }} }} }}"""
PAGE = """totalCount pageInfo { hasNextPage endCursor } nodes { id state createdAt webhookId }"""
WEBHOOK_DELIVERIES = f"""query($id: ID!, $state: DeliveryState, $since: DateTime,
    $until: DateTime, $first: Int, $after: String) {{ webhook(id: $id) {{
  deliveries(state: $state, since: $since, until: $until, first: $first, after: $after) {{
    {PAGE} }} }} }}"""
PROJECT_DELIVERIES = f"""query($id: ID!, $state: DeliveryState, $since: DateTime,
    $until: DateTime, $first: Int, $after: String) {{ project(id: $id) {{
  webhookDeliveries(state: $state, since: $since, until: $until, first: $first,
    after: $after) {{ {PAGE} }} }} }}"""
TRIGGER_FIELDS = """id name ordered
  operation { type webhookId webhook { id name } serviceId functionName input }"""
CREATE_TRIGGER = f"""mutation($p: ID!, $input: TriggerInput!) {{
  createTrigger(projectId: $p, input: $input) {{ {TRIGGER_FIELDS} }} }}"""
UPDATE_TRIGGER = f"""mutation($id: ID!, $input: TriggerChangesInput!) {{
  updateTrigger(id: $id, input: $input) {{ {TRIGGER_FIELDS} }} }}"""
TRIGGER = f"query($id: ID!) {{ trigger(id: $id) {{ {TRIGGER_FIELDS} }} }}"
DELETE_TRIGGER = "mutation($id: ID!) { deleteTrigger(id: $id) }"
ADD_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!, $role: ProjectRole!) {
  addProjectMember(projectId: $project, userId: $user, role: $role) { role } }"""
SECRET_TYPE = '{ __type(name: "WebhookSecret") { fields { name } } }'

DEFAULT_POLICY = {
    "maxAttempts": 8,
    "timeoutS": 15.0,
    "initialDelayS": 5.0,
    "maxDelayS": 36000.0,
    "multiplier": 6.0,
    "retryClientErrors": False,
}
PNG = image_bytes("PNG", 4, 4)


def _codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


def _fields(error: dict[str, Any]) -> set[str]:
    """The fields an error names: its `field`, or each of pydantic's `fields`."""
    extensions = error.get("extensions", {})
    named = {extensions["field"]} if "field" in extensions else set()
    return named | {entry["field"] for entry in extensions.get("fields", [])}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _webhook(
    client: GraphQLClient, project: str, **fields: Any
) -> tuple[dict[str, Any], str]:
    """A webhook made through the API, and its secret."""
    made = await client.data(
        CREATE_WEBHOOK, p=project, input={"name": "hook", "url": PUBLIC_URL, **fields}
    )
    return made["createWebhook"]["webhook"], made["createWebhook"]["secret"]


def _webhook_trigger(webhook: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "to the hook",
        "resource": "Item",
        "actions": ["Created"],
        "operation": {"type": "webhook", "webhookId": webhook},
        **fields,
    }


async def _webhooks(db) -> list[dict[str, Any]]:
    return await db.webhooks.find().sort("_id").to_list()


async def _stored_delivery(db, webhook: str, state: str = "failed", **fields: Any) -> ObjectId:
    """A delivery as new_delivery makes it, stored straight into MongoDB in `state`."""
    doc = await db.webhooks.find_one({"_id": ObjectId(webhook)})
    delivery = new_delivery(doc, "loom.ping", {"n": 1}, datetime.now(UTC), None)
    delivery |= {"state": state, **fields}
    if state != "pending":
        delivery["endedAt"] = delivery["createdAt"]
    await db.deliveries.insert_one(delivery)
    return delivery["_id"]


def _queued(webhook: str, delivery: str):
    """The Redis due-set entry of a delivery (its due time in ms), or None."""

    async def read(redis) -> float | None:
        return await redis.zscore(f"{delivery_queue.PREFIX}due:{webhook}", delivery)

    return read


# --- Creating: the secret is shown once -----------------------------------------------------


async def test_create_webhook_shows_a_whsec_secret_of_32_bytes_once_and_stores_only_ciphertext(
    member, db, settings
):
    world = await make_world(member)
    client = world.client
    policy = {
        "maxAttempts": 3,
        "timeoutS": 2.5,
        "initialDelayS": 0.5,
        "maxDelayS": 60,
        "multiplier": 2,
        "retryClientErrors": True,
    }
    made = await client.data(
        CREATE_WEBHOOK,
        p=world.project,
        input={
            "name": "  billing  ",
            "url": PUBLIC_URL,
            "description": "invoices",
            "headers": {"X-Tenant": "acme", "Authorization": "Bearer t0ken"},
            "active": False,
            "retryPolicy": policy,
            "concurrency": 3,
        },
    )
    secret = made["createWebhook"]["secret"]
    webhook = made["createWebhook"]["webhook"]
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert len(key) == 32
    assert webhook == {
        "id": webhook["id"],
        "projectId": world.project,
        "name": "billing",
        "url": PUBLIC_URL,
        "description": "invoices",
        "headers": {"X-Tenant": "acme", "Authorization": "Bearer t0ken"},
        "active": False,
        "concurrency": 3,
        "retryPolicy": {**policy, "maxDelayS": 60.0, "multiplier": 2.0},
        "secrets": [webhook["secrets"][0]],
        "disabledReason": None,
        "disabledAt": None,
        "createdAt": webhook["createdAt"],
        "updatedAt": webhook["createdAt"],
    }
    (entry,) = webhook["secrets"]
    assert entry["expiresAt"] is None

    # No query returns it again: not the webhook, not the list, not node, not a rotation.
    encoded = secret.removeprefix("whsec_")
    reads = [
        await client.execute(WEBHOOK, id=webhook["id"]),
        await client.execute(PROJECT_WEBHOOKS, p=world.project),
        await client.execute(
            "query($id: ID!) { node(id: $id) { ... on Webhook { secrets { id } } } }",
            id=webhook["id"],
        ),
        await client.execute(ROTATE, id=webhook["id"], grace=60),
    ]
    for body in reads:
        assert not body.get("errors"), body
        assert encoded not in str(body)
    fields = (await client.data(SECRET_TYPE))["__type"]["fields"]
    assert {field["name"] for field in fields} == {"id", "createdAt", "expiresAt"}

    # MongoDB holds only ciphertext: neither the text nor the key bytes are in the document.
    stored = await db.webhooks.find_one({"_id": ObjectId(webhook["id"])})
    raw = bson.encode(stored)
    assert secret.encode() not in raw
    assert encoded.encode() not in raw
    assert key not in raw
    # …and that ciphertext is the secret, encrypted with the deployment's key.
    box = secret_box(settings)
    first = stored["secrets"][0]
    assert box.decrypt(bytes(first["cipher"]), stored["_id"].binary) == secret

    _, other = await _webhook(client, world.project, name="second")
    assert other != secret


async def test_a_webhook_made_with_only_a_name_and_url_gets_the_documented_defaults(member):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project)
    assert webhook["retryPolicy"] == DEFAULT_POLICY
    assert (webhook["active"], webhook["concurrency"]) == (True, 10)
    assert (webhook["headers"], webhook["description"]) == ({}, "")


# --- Bad input ------------------------------------------------------------------------------

BAD_CREATES: dict[str, tuple[dict[str, Any], str]] = {
    "ftp-url": ({"url": "ftp://93.184.215.14/hook"}, "url"),
    "no-scheme": ({"url": "93.184.215.14/hook"}, "url"),
    "credentials-in-url": ({"url": "https://u:p@93.184.215.14/"}, "url"),
    "loopback": ({"url": "http://127.0.0.1:8000/hook"}, "url"),
    "private": ({"url": "http://10.0.0.1/hook"}, "url"),
    "metadata": ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
    "ipv6-loopback": ({"url": "http://[::1]:8000/hook"}, "url"),
    "ipv4-mapped-loopback": ({"url": "http://[::ffff:127.0.0.1]/hook"}, "url"),
    "localhost": ({"url": "http://localhost:8000/hook"}, "url"),
    "url-too-long": ({"url": PUBLIC_URL + "/" + "a" * 2048}, "url"),
    "overrides-webhook-signature": ({"headers": {"Webhook-Signature": "v1,forged"}}, "headers"),
    "overrides-webhook-id": ({"headers": {"WEBHOOK-ID": "msg_1"}}, "headers"),
    "overrides-webhook-timestamp": ({"headers": {"webhook-timestamp": "1"}}, "headers"),
    "overrides-content-type": ({"headers": {"Content-Type": "text/plain"}}, "headers"),
    "overrides-host": ({"headers": {"host": "10.0.0.1"}}, "headers"),
    "too-many-headers": ({"headers": {f"X-H{n}": "v" for n in range(21)}}, "headers"),
    "header-name-with-a-space": ({"headers": {"X Bad": "v"}}, "headers"),
    "header-value-with-a-newline": ({"headers": {"X-A": "a\r\nX-B: b"}}, "headers"),
    "header-value-not-text": ({"headers": {"X-A": 1}}, "headers.X-A"),
    "headers-not-an-object": ({"headers": ["X-A", "v"]}, "headers"),
    "max-attempts-0": ({"retryPolicy": {"maxAttempts": 0}}, "retryPolicy.maxAttempts"),
    "max-attempts-51": ({"retryPolicy": {"maxAttempts": 51}}, "retryPolicy.maxAttempts"),
    "timeout-0": ({"retryPolicy": {"timeoutS": 0}}, "retryPolicy.timeoutS"),
    "max-delay-below-initial": (
        {"retryPolicy": {"initialDelayS": 10, "maxDelayS": 5}},
        "retryPolicy",
    ),
    "concurrency-0": ({"concurrency": 0}, "concurrency"),
    "blank-name": ({"name": "   "}, "name"),
}


async def test_creating_a_webhook_from_bad_input_is_bad_user_input_naming_the_field(member, db):
    world = await make_world(member)
    before = await snapshot(db)
    outcomes, wrote = {}, []
    for case, (bad, _) in BAD_CREATES.items():
        body = await world.client.execute(
            CREATE_WEBHOOK, p=world.project, input={"name": "hook", "url": PUBLIC_URL, **bad}
        )
        [error] = body["errors"]
        outcomes[case] = (error["extensions"]["code"], _fields(error))
        if await snapshot(db) != before:
            wrote.append(case)
    assert outcomes == {
        case: ("BAD_USER_INPUT", {field}) for case, (_, field) in BAD_CREATES.items()
    }
    assert wrote == []
    assert await _webhooks(db) == []


async def test_a_refused_url_says_why(member, db):
    world = await make_world(member)
    reasons = {
        "http://127.0.0.1/": "127.0.0.1 is a loopback address",
        "http://10.0.0.1/": "10.0.0.1 is a private address",
        "http://169.254.169.254/": "169.254.169.254 is a cloud metadata address",
        "http://[::1]/": "::1 is a loopback address",
        "http://localhost/": "localhost resolves to a refused address",
    }
    for url, reason in reasons.items():
        error = await world.client.error(
            CREATE_WEBHOOK, p=world.project, input={"name": "hook", "url": url}
        )
        assert reason in error["message"], (url, error)
    assert await _webhooks(db) == []


async def test_an_unknown_input_field_is_refused_by_the_schema_and_writes_nothing(member, db):
    world = await make_world(member)
    before = await snapshot(db)
    for bad in (
        {"name": "hook", "url": PUBLIC_URL, "colour": "red"},
        {"name": "hook", "url": PUBLIC_URL, "retryPolicy": {"jitter": "none"}},
    ):
        error = await world.client.error(CREATE_WEBHOOK, p=world.project, input=bad)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert ("colour" in error["message"]) or ("jitter" in error["message"]), error
    assert await snapshot(db) == before


async def test_a_webhook_name_taken_in_the_project_is_a_conflict_on_create_and_rename(member, db):
    world = await make_world(member)
    client = world.client
    await _webhook(client, world.project, name="first")
    second, _ = await _webhook(client, world.project, name="second")
    before = await snapshot(db)
    error = await client.error(
        CREATE_WEBHOOK, p=world.project, input={"name": " first ", "url": PUBLIC_URL}
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("CONFLICT", "name")
    renamed = await client.error(UPDATE_WEBHOOK, id=second["id"], input={"name": "first"})
    assert (renamed["extensions"]["code"], renamed["extensions"]["field"]) == ("CONFLICT", "name")
    assert await snapshot(db) == before
    # Taken per project only.
    other = (await client.data(CREATE_PROJECT, org=world.org, name="Other"))["createProject"]
    elsewhere, _ = await _webhook(client, other["id"], name="first")
    assert elsewhere["name"] == "first"


# --- Changing -------------------------------------------------------------------------------


async def test_update_webhook_changes_the_fields_given_and_keeps_the_rest(member, db):
    world = await make_world(member)
    client = world.client
    webhook, _ = await _webhook(client, world.project, description="before", headers={"X-Old": "1"})
    stored_before = await db.webhooks.find_one({"_id": ObjectId(webhook["id"])})
    policy = {
        "maxAttempts": 2,
        "timeoutS": 1,
        "initialDelayS": 1,
        "maxDelayS": 1,
        "multiplier": 1,
        "retryClientErrors": True,
    }
    changes = {
        "name": "renamed",
        "url": OTHER_PUBLIC_URL,
        "headers": {"X-New": "2"},
        "retryPolicy": policy,
        "concurrency": 1,
        "active": False,
    }
    updated = (await client.data(UPDATE_WEBHOOK, id=webhook["id"], input=changes))["updateWebhook"]
    assert updated == {
        **webhook,
        **changes,
        "retryPolicy": {key: value for key, value in policy.items()},
        "updatedAt": updated["updatedAt"],
    }
    assert updated["description"] == "before"
    assert _at(updated["updatedAt"]) >= _at(webhook["updatedAt"])
    assert (await client.data(WEBHOOK, id=webhook["id"]))["webhook"] == updated
    stored = await db.webhooks.find_one({"_id": ObjectId(webhook["id"])})
    assert stored["secrets"] == stored_before["secrets"]
    assert stored["retryPolicy"] == policy | {"timeoutS": 1.0}


async def test_changing_only_some_retry_settings_keeps_the_others(member, db):
    """retryPolicy's input fields are each optional: a change naming only maxAttempts must
    not put the webhook's timeout and delays back to the defaults behind the user's back."""
    world = await make_world(member)
    policy = {"maxAttempts": 3, "timeoutS": 2.0, "initialDelayS": 0.5, "maxDelayS": 30.0}
    webhook, _ = await _webhook(world.client, world.project, retryPolicy=policy)
    updated = await world.client.data(
        UPDATE_WEBHOOK, id=webhook["id"], input={"retryPolicy": {"maxAttempts": 4}}
    )
    kept = updated["updateWebhook"]["retryPolicy"]
    assert kept == {**webhook["retryPolicy"], "maxAttempts": 4}


async def test_a_changed_url_is_checked_by_the_address_guard_and_nothing_is_written(member, db):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project)
    before = await snapshot(db)
    for url in ("http://10.0.0.1/", "http://127.0.0.1:9/", "http://[::1]/", "ftp://x/"):
        # A good change beside the bad url is not written either.
        error = await world.client.error(
            UPDATE_WEBHOOK, id=webhook["id"], input={"name": "renamed", "url": url}
        )
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            "url",
        ), url
    for bad in ({"headers": {"webhook-signature": "x"}}, {"concurrency": 0}, {}):
        assert await world.client.code(UPDATE_WEBHOOK, id=webhook["id"], input=bad) == (
            "BAD_USER_INPUT"
        ), bad
    assert await snapshot(db) == before


async def test_turning_a_disabled_webhook_on_clears_why_it_was_disabled(member, db):
    world = await make_world(member)
    client = world.client
    webhook, _ = await _webhook(client, world.project)
    gone_at = datetime.now(UTC).replace(microsecond=0)
    reason = "410 Gone: the receiver asked to stop"
    await db.webhooks.update_one(
        {"_id": ObjectId(webhook["id"])},
        {"$set": {"active": False, "disabledReason": reason, "disabledAt": gone_at}},
    )
    read = (await client.data(WEBHOOK, id=webhook["id"]))["webhook"]
    assert (read["active"], read["disabledReason"]) == (False, reason)
    assert _at(read["disabledAt"]) == gone_at

    # Another change leaves the reason; so does turning it off again.
    for change in ({"description": "still gone"}, {"active": False}):
        kept = (await client.data(UPDATE_WEBHOOK, id=webhook["id"], input=change))["updateWebhook"]
        assert (kept["active"], kept["disabledReason"]) == (False, reason), change

    on = (await client.data(UPDATE_WEBHOOK, id=webhook["id"], input={"active": True}))[
        "updateWebhook"
    ]
    assert (on["active"], on["disabledReason"], on["disabledAt"]) == (True, None, None)
    stored = await db.webhooks.find_one({"_id": ObjectId(webhook["id"])})
    assert (stored["disabledReason"], stored["disabledAt"]) == (None, None)


# --- Rotating -------------------------------------------------------------------------------


async def test_rotating_a_secret_keeps_the_old_one_signing_for_the_grace_period(
    member, db, settings
):
    world = await make_world(member)
    client = world.client
    webhook, old = await _webhook(client, world.project)
    box = secret_box(settings)
    rotated = (await client.data(ROTATE, id=webhook["id"], grace=3600))["rotateWebhookSecret"]
    new = rotated["secret"]
    assert new != old
    assert len(base64.b64decode(new.removeprefix("whsec_"), validate=True)) == 32
    first, second = rotated["webhook"]["secrets"]
    assert first["id"] == webhook["secrets"][0]["id"]
    assert second["expiresAt"] is None
    expected_end = datetime.now(UTC) + timedelta(seconds=3600)
    assert abs(_at(first["expiresAt"]) - expected_end) < timedelta(seconds=10)

    stored = await db.webhooks.find_one({"_id": ObjectId(webhook["id"])})
    assert signing_secrets(box, stored) == [old, new]

    # Without graceSeconds the grace is one day; the earlier grace is cut to the new end.
    again = (await client.data(ROTATE, id=webhook["id"]))["rotateWebhookSecret"]
    ends = [_at(s["expiresAt"]) for s in again["webhook"]["secrets"][:2]]
    assert ends[0] == _at(first["expiresAt"])
    day = datetime.now(UTC) + timedelta(days=1)
    assert abs(ends[1] - day) < timedelta(seconds=10)
    stored = await db.webhooks.find_one({"_id": ObjectId(webhook["id"])})
    assert signing_secrets(box, stored) == [old, new, again["secret"]]


async def test_rotating_with_no_grace_leaves_only_the_new_secret_signing(member, db, settings):
    world = await make_world(member)
    webhook, old = await _webhook(world.client, world.project)
    rotated = (await world.client.data(ROTATE, id=webhook["id"], grace=0))["rotateWebhookSecret"]
    stored = await db.webhooks.find_one({"_id": ObjectId(webhook["id"])})
    assert signing_secrets(secret_box(settings), stored) == [rotated["secret"]]
    assert old not in signing_secrets(secret_box(settings), stored)


async def test_secrets_whose_grace_ended_are_dropped_at_the_next_rotation(member, db, settings):
    world = await make_world(member)
    client = world.client
    webhook, _ = await _webhook(client, world.project)
    ended = (await client.data(ROTATE, id=webhook["id"], grace=0))["rotateWebhookSecret"]
    assert len(ended["webhook"]["secrets"]) == 2
    latest = (await client.data(ROTATE, id=webhook["id"], grace=60))["rotateWebhookSecret"]
    ids = [entry["id"] for entry in latest["webhook"]["secrets"]]
    assert webhook["secrets"][0]["id"] not in ids
    assert ids[0] == ended["webhook"]["secrets"][1]["id"]
    assert len(ids) == 2
    stored = await db.webhooks.find_one({"_id": ObjectId(webhook["id"])})
    assert signing_secrets(secret_box(settings), stored) == [ended["secret"], latest["secret"]]


async def test_a_grace_out_of_range_is_bad_user_input_and_rotates_nothing(member, db):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project)
    before = await snapshot(db)
    for grace in (-1, 30 * 24 * 3600 + 1):
        error = await world.client.error(ROTATE, id=webhook["id"], grace=grace)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", grace
        assert _fields(error) == {"graceS"}, error
    assert await snapshot(db) == before


# --- Deleting -------------------------------------------------------------------------------


async def test_a_webhook_a_trigger_uses_is_deleted_only_after_the_trigger_and_pending_deliveries_cancel(  # noqa: E501
    member, db
):
    world = await make_world(member)
    client = world.client
    webhook, _ = await _webhook(client, world.project)
    trigger = (
        await client.data(CREATE_TRIGGER, p=world.project, input=_webhook_trigger(webhook["id"]))
    )["createTrigger"]
    pending = (await client.data(PING, id=webhook["id"]))["pingWebhook"]
    delivered = await _stored_delivery(db, webhook["id"], "delivered")
    before = await snapshot(db)
    error = await client.error(DELETE_WEBHOOK, id=webhook["id"])
    assert error["extensions"]["code"] == "CONFLICT"
    assert "to the hook" in error["message"]
    assert await snapshot(db) == before

    assert (await client.data(DELETE_TRIGGER, id=trigger["id"]))["deleteTrigger"] is True
    assert (await client.data(DELETE_WEBHOOK, id=webhook["id"]))["deleteWebhook"] is True
    assert await db.webhooks.count_documents({}) == 0
    assert await client.code(WEBHOOK, id=webhook["id"]) == "NOT_FOUND"
    # The log stays: the pending delivery is cancelled, with why; the delivered one is kept.
    cancelled = (await client.data(DELIVERY, id=pending["id"]))["webhookDelivery"]
    assert (cancelled["state"], cancelled["reason"]) == ("cancelled", "the webhook was deleted")
    assert cancelled["endedAt"] is not None
    assert cancelled["webhook"] is None
    kept = await db.deliveries.find_one({"_id": delivered})
    assert kept["state"] == "delivered"
    assert await client.code(DELETE_WEBHOOK, id=webhook["id"]) == "NOT_FOUND"


# --- Webhook operations of triggers ---------------------------------------------------------


@dataclass
class Scene:
    """Org "acme" with a webhook and a service in its project and an item; a second project of
    the org with a webhook of its own; org "beta" with a webhook."""

    world: World
    webhook: dict[str, Any]
    service: str
    item: dict[str, Any]
    other_project: str
    other_project_webhook: str
    other_org_webhook: str


async def _scene(member) -> Scene:
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project)
    service = {"name": "hooks", "functions": ["echo"]}
    service_id = (await world.client.data(CREATE_SERVICE, p=world.project, input=service))[
        "createService"
    ]["id"]
    item = await world.upload("car.png", PNG)
    other = (await world.client.data(CREATE_PROJECT, org=world.org, name="Lidar"))["createProject"][
        "id"
    ]
    other_webhook, _ = await _webhook(world.client, other, name="lidar")
    beta = await make_world(member, org="beta")
    beta_webhook, _ = await _webhook(beta.client, beta.project, name="beta")
    return Scene(world, webhook, service_id, item, other, other_webhook["id"], beta_webhook["id"])


async def test_a_webhook_trigger_reads_back_its_operation_and_webhook(member):
    scene = await _scene(member)
    client = scene.world.client
    created = (
        await client.data(
            CREATE_TRIGGER, p=scene.world.project, input=_webhook_trigger(scene.webhook["id"])
        )
    )["createTrigger"]
    expected = {
        "type": "webhook",
        "webhookId": scene.webhook["id"],
        "webhook": {"id": scene.webhook["id"], "name": "hook"},
        "serviceId": None,
        "functionName": None,
        "input": None,
    }
    assert (created["operation"], created["ordered"]) == (expected, False)
    assert (await client.data(TRIGGER, id=created["id"]))["trigger"]["operation"] == expected


async def test_creating_a_webhook_trigger_from_bad_input_is_bad_user_input_and_writes_nothing(
    member, db
):
    scene = await _scene(member)
    webhook = scene.webhook["id"]
    bad_operations: dict[str, tuple[dict[str, Any], set[str]]] = {
        "webhook-of-another-project": (
            {"operation": {"type": "webhook", "webhookId": scene.other_project_webhook}},
            {"operation.webhookId"},
        ),
        "webhook-of-another-org": (
            {"operation": {"type": "webhook", "webhookId": scene.other_org_webhook}},
            {"operation.webhookId"},
        ),
        "webhook-that-does-not-exist": (
            {"operation": {"type": "webhook", "webhookId": str(ObjectId())}},
            {"operation.webhookId"},
        ),
        "webhook-id-not-an-id": (
            {"operation": {"type": "webhook", "webhookId": "nope"}},
            {"operation.webhookId"},
        ),
        "ordered-webhook": ({"ordered": True}, {"ordered"}),
        "unknown-operation-type": (
            {"operation": {"type": "email", "webhookId": webhook}},
            {"operation.type"},
        ),
        "webhook-without-its-id": ({"operation": {"type": "webhook"}}, {"operation.webhookId"}),
        "webhook-with-a-function": (
            {
                "operation": {
                    "type": "webhook",
                    "webhookId": webhook,
                    "serviceId": scene.service,
                    "functionName": "echo",
                }
            },
            {"operation.serviceId", "operation.functionName"},
        ),
    }
    before = await snapshot(db)
    outcomes, wrote = {}, []
    for case, (bad, _) in bad_operations.items():
        body = await scene.world.client.execute(
            CREATE_TRIGGER, p=scene.world.project, input=_webhook_trigger(webhook, **bad)
        )
        [error] = body["errors"]
        outcomes[case] = (error["extensions"]["code"], _fields(error))
        if await snapshot(db) != before:
            wrote.append(case)
    assert outcomes == {
        case: ("BAD_USER_INPUT", fields) for case, (_, fields) in bad_operations.items()
    }
    assert wrote == []
    assert await db.triggers.count_documents({}) == 0
    # Another org's webhook is answered as one that does not exist: nothing confirms it.
    other_org = await scene.world.client.error(
        CREATE_TRIGGER,
        p=scene.world.project,
        input=_webhook_trigger(scene.other_org_webhook),
    )
    made_up = await scene.world.client.error(
        CREATE_TRIGGER, p=scene.world.project, input=_webhook_trigger(str(ObjectId()))
    )
    assert other_org["message"] == made_up["message"]


async def test_an_ordered_trigger_cannot_be_changed_to_a_webhook_or_a_webhook_one_to_ordered(
    member, db
):
    scene = await _scene(member)
    client, project = scene.world.client, scene.world.project
    function_op = {"serviceId": scene.service, "functionName": "echo"}
    ordered = (
        await client.data(
            CREATE_TRIGGER,
            p=project,
            input=_webhook_trigger("", name="ordered", ordered=True, operation=function_op),
        )
    )["createTrigger"]
    hooked = (
        await client.data(CREATE_TRIGGER, p=project, input=_webhook_trigger(scene.webhook["id"]))
    )["createTrigger"]
    before = await snapshot(db)
    to_webhook = {"operation": {"type": "webhook", "webhookId": scene.webhook["id"]}}
    for trigger, change in ((ordered["id"], to_webhook), (hooked["id"], {"ordered": True})):
        error = await client.error(UPDATE_TRIGGER, id=trigger, input=change)
        assert (error["extensions"]["code"], _fields(error)) == ("BAD_USER_INPUT", {"ordered"})
    assert await snapshot(db) == before
    # Both at once is fine: no longer ordered, now a webhook.
    changed = await client.data(
        UPDATE_TRIGGER, id=ordered["id"], input={**to_webhook, "ordered": False}
    )
    assert changed["updateTrigger"]["operation"]["type"] == "webhook"


# --- Invoking -------------------------------------------------------------------------------


async def test_each_invoke_mutation_refuses_the_other_kind_of_trigger_and_names_the_right_one(
    member, db
):
    scene = await _scene(member)
    client, project = scene.world.client, scene.world.project
    hooked = (
        await client.data(CREATE_TRIGGER, p=project, input=_webhook_trigger(scene.webhook["id"]))
    )["createTrigger"]
    function_op = {"serviceId": scene.service, "functionName": "echo"}
    functional = (
        await client.data(
            CREATE_TRIGGER, p=project, input=_webhook_trigger("", name="f", operation=function_op)
        )
    )["createTrigger"]
    before = await snapshot(db)
    item = scene.item["id"]
    on_webhook = await client.error(INVOKE_TRIGGER, t=hooked["id"], r=item)
    on_function = await client.error(INVOKE_WEBHOOK_TRIGGER, t=functional["id"], r=item)
    for error, names in ((on_webhook, "invokeWebhookTrigger"), (on_function, "invokeTrigger")):
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["field"] == "triggerId"
        assert f"use {names}" in error["message"]
    assert await snapshot(db) == before


async def test_invoking_a_webhook_trigger_makes_and_queues_an_updated_delivery_of_the_resource(
    member, db, redis
):
    scene = await _scene(member)
    client = scene.world.client
    # Invoking ignores the filter and whether the trigger is active.
    trigger = (
        await client.data(
            CREATE_TRIGGER,
            p=scene.world.project,
            input=_webhook_trigger(
                scene.webhook["id"], filter={"name": "never-this"}, active=False
            ),
        )
    )["createTrigger"]
    invoked = (await client.data(INVOKE_WEBHOOK_TRIGGER, t=trigger["id"], r=scene.item["id"]))[
        "invokeWebhookTrigger"
    ]
    item_doc = await db.items.find_one({"_id": ObjectId(scene.item["id"])})
    assert invoked["type"] == "item.updated"
    assert invoked["state"] == "pending"
    assert (invoked["webhookId"], invoked["projectId"]) == (
        scene.webhook["id"],
        scene.world.project,
    )
    assert (invoked["triggerId"], invoked["eventId"]) == (trigger["id"], None)
    assert (invoked["attemptCount"], invoked["maxAttempts"], invoked["attempts"]) == (0, 8, [])
    assert invoked["messageId"] == f"msg_{invoked['id']}"
    message = invoked["message"]
    assert message["type"] == "item.updated"
    data = message["data"]
    assert data["trigger"] == {"id": trigger["id"], "name": "to the hook"}
    event = data["event"]
    assert (event["resource"], event["action"]) == ("Item", "Updated")
    assert event["new"] == as_json(item_doc)
    assert event["old"] == event["new"]
    assert event["new"]["name"] == "car.png"
    stored = await db.deliveries.find_one({"_id": ObjectId(invoked["id"])})
    assert stored["triggerId"] == ObjectId(trigger["id"])
    assert await _queued(scene.webhook["id"], invoked["id"])(redis) is not None


async def test_invoking_a_webhook_trigger_whose_webhook_is_off_is_a_conflict(member, db, redis):
    scene = await _scene(member)
    client = scene.world.client
    trigger = (
        await client.data(
            CREATE_TRIGGER, p=scene.world.project, input=_webhook_trigger(scene.webhook["id"])
        )
    )["createTrigger"]
    await client.data(UPDATE_WEBHOOK, id=scene.webhook["id"], input={"active": False})
    before = await snapshot(db)
    code = await client.code(INVOKE_WEBHOOK_TRIGGER, t=trigger["id"], r=scene.item["id"])
    assert code == "CONFLICT"
    assert await snapshot(db) == before
    assert await redis.zcard(f"{delivery_queue.PREFIX}due:{scene.webhook['id']}") == 0


async def test_invoking_a_webhook_trigger_on_another_projects_item_is_bad_user_input(member, db):
    scene = await _scene(member)
    client = scene.world.client
    trigger = (
        await client.data(
            CREATE_TRIGGER, p=scene.world.project, input=_webhook_trigger(scene.webhook["id"])
        )
    )["createTrigger"]
    dataset = (
        await client.data(CREATE_DATASET, project=scene.other_project, input={"name": "scans"})
    )["createDataset"]["id"]
    elsewhere = await scene.world.upload_to(dataset, "scan.png", PNG)
    before = await snapshot(db)
    error = await client.error(INVOKE_WEBHOOK_TRIGGER, t=trigger["id"], r=elsewhere["id"])
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "resourceId",
    )
    assert await snapshot(db) == before


# --- Ping and redeliver ---------------------------------------------------------------------


async def test_a_ping_is_a_pending_loom_ping_delivery_queued_in_redis(member, db, redis):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project, retryPolicy={"maxAttempts": 2})
    pinged = (await world.client.data(PING, id=webhook["id"]))["pingWebhook"]
    assert (pinged["type"], pinged["state"], pinged["maxAttempts"]) == ("loom.ping", "pending", 2)
    assert pinged["message"]["data"] == {"webhook": {"id": webhook["id"], "name": "hook"}}
    assert (pinged["triggerId"], pinged["eventId"], pinged["webhook"]) == (
        None,
        None,
        {"id": webhook["id"]},
    )
    assert pinged["nextAttemptAt"] is not None
    assert await _queued(webhook["id"], pinged["id"])(redis) is not None
    assert (await world.client.data(DELIVERY, id=pinged["id"]))["webhookDelivery"] == pinged


async def test_pinging_a_webhook_that_is_off_is_a_conflict_and_makes_nothing(member, db):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project, active=False)
    before = await snapshot(db)
    assert await world.client.code(PING, id=webhook["id"]) == "CONFLICT"
    assert await snapshot(db) == before


async def test_redelivering_a_pending_delivery_is_a_conflict(member, db):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project)
    pinged = (await world.client.data(PING, id=webhook["id"]))["pingWebhook"]
    before = await snapshot(db)
    error = await world.client.error(REDELIVER, id=pinged["id"])
    assert error["extensions"]["code"] == "CONFLICT"
    assert "pending" in error["message"]
    assert await snapshot(db) == before


async def test_redelivering_to_a_webhook_that_is_off_is_a_conflict(member, db):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project)
    failed = await _stored_delivery(db, webhook["id"], "failed")
    await world.client.data(UPDATE_WEBHOOK, id=webhook["id"], input={"active": False})
    before = await snapshot(db)
    assert await world.client.code(REDELIVER, id=str(failed)) == "CONFLICT"
    assert await snapshot(db) == before


async def test_redelivering_an_ended_delivery_gives_it_a_fresh_round_of_attempts(member, db, redis):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project, retryPolicy={"maxAttempts": 3})
    attempts = [
        {"attempt": n, "outcome": "retry", "at": datetime.now(UTC), "statusCode": 503}
        for n in (1, 2)
    ]
    attempts[-1]["outcome"] = "failed"
    failed = await _stored_delivery(
        db,
        webhook["id"],
        "failed",
        attemptCount=2,
        maxAttempts=2,
        attempts=attempts,
        reason="gave up after 2 attempts: 503 Service Unavailable",
    )
    again = (await world.client.data(REDELIVER, id=str(failed)))["redeliver"]
    assert (again["state"], again["reason"], again["endedAt"]) == ("pending", None, None)
    assert (again["attemptCount"], again["maxAttempts"]) == (2, 5)
    assert [a["attempt"] for a in again["attempts"]] == [1, 2]
    assert again["messageId"] == f"msg_{failed}"
    assert await _queued(webhook["id"], str(failed))(redis) is not None


# --- Listing --------------------------------------------------------------------------------


async def test_project_webhooks_are_listed_by_name_a_page_at_a_time(member):
    world = await make_world(member)
    for name in ("c", "a", "b"):
        await _webhook(world.client, world.project, name=name)
    first = (await world.client.data(PROJECT_WEBHOOKS, p=world.project, first=2))["project"][
        "webhooks"
    ]
    assert [w["name"] for w in first["nodes"]] == ["a", "b"]
    assert (first["totalCount"], first["pageInfo"]["hasNextPage"]) == (3, True)
    rest = (
        await world.client.data(
            PROJECT_WEBHOOKS, p=world.project, first=2, after=first["pageInfo"]["endCursor"]
        )
    )["project"]["webhooks"]
    assert [w["name"] for w in rest["nodes"]] == ["c"]
    assert rest["pageInfo"]["hasNextPage"] is False


@dataclass
class Log:
    world: World
    webhooks: list[str]
    deliveries: list[dict[str, Any]]
    """Newest first, as listed: id, webhook, state, createdAt."""
    start: datetime


async def _log(member, db) -> Log:
    """Two webhooks of one project, with 8 deliveries made a minute apart (two of them at the
    same instant, to tie on createdAt) in states that cycle; oldest first in the database."""
    world = await make_world(member)
    hooks = [
        (await _webhook(world.client, world.project, name=name))[0]["id"] for name in ("a", "b")
    ]
    start = datetime(2030, 1, 1, tzinfo=UTC)
    states = itertools.cycle(["pending", "delivered", "failed", "cancelled"])
    made = []
    for n in range(8):
        webhook = hooks[n % 3 == 2]
        at = start + timedelta(minutes=min(n, 6))  # the last two share a createdAt
        doc = await db.webhooks.find_one({"_id": ObjectId(webhook)})
        delivery = new_delivery(doc, "loom.ping", {"n": n}, at, None)
        delivery |= {"createdAt": at, "updatedAt": at, "state": next(states)}
        made.append(delivery)
    await db.deliveries.insert_many(made)
    listed = sorted(made, key=lambda d: (d["createdAt"], d["_id"]), reverse=True)
    rows = [
        {
            "id": str(d["_id"]),
            "webhookId": str(d["webhookId"]),
            "state": d["state"],
            "createdAt": d["createdAt"],
        }
        for d in listed
    ]
    return Log(world, hooks, rows, start)


async def _walk(client, query: str, page_size: int, **variables: Any) -> list[dict[str, Any]]:
    """Every node, a page at a time; checks the connection's count and page flags."""
    nodes, after, total = [], None, None
    while True:
        data = await client.data(query, first=page_size, after=after, **variables)
        connection = next(iter(data.values()))
        connection = connection.get("deliveries") or connection.get("webhookDeliveries")
        total = connection["totalCount"] if total is None else total
        assert connection["totalCount"] == total
        nodes += connection["nodes"]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        assert len(connection["nodes"]) == page_size
        after = connection["pageInfo"]["endCursor"]
    assert len(nodes) == total
    return nodes


def _rows(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**node, "createdAt": _at(node["createdAt"])} for node in nodes]


async def test_deliveries_are_listed_newest_first_by_keyset_pages_and_filtered(member, db):
    log = await _log(member, db)
    client, rows = log.world.client, log.deliveries
    project = log.world.project
    t = log.start

    def expect(webhook: str | None = None, state=None, since=None, until=None):
        return [
            row
            for row in rows
            if (webhook is None or row["webhookId"] == webhook)
            and (state is None or row["state"] == state)
            and (since is None or row["createdAt"] >= since)
            and (until is None or row["createdAt"] < until)
        ]

    filters: list[dict[str, Any]] = [
        {},
        {"state": "pending"},
        {"state": "failed"},
        {"since": t + timedelta(minutes=2)},
        {"until": t + timedelta(minutes=6)},
        {"since": t + timedelta(minutes=1), "until": t + timedelta(minutes=5)},
        {"state": "delivered", "since": t + timedelta(minutes=1)},
    ]
    for narrowed in filters:
        variables = {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in narrowed.items()
        }
        for page_size in (1, 2, 3):
            listed = await _walk(client, PROJECT_DELIVERIES, page_size, id=project, **variables)
            assert _rows(listed) == expect(**narrowed), (narrowed, page_size)
            for webhook in log.webhooks:
                of_one = await _walk(client, WEBHOOK_DELIVERIES, page_size, id=webhook, **variables)
                assert _rows(of_one) == expect(webhook, **narrowed), (webhook, narrowed)
    # The tie on createdAt is broken by id, newest first.
    assert rows[0]["createdAt"] == rows[1]["createdAt"]
    assert rows[0]["id"] > rows[1]["id"]


async def test_a_bad_delivery_cursor_or_page_size_is_bad_user_input(member, db):
    log = await _log(member, db)
    client = log.world.client
    for variables in ({"after": "not-a-cursor"}, {"first": -1}):
        body = await client.execute(PROJECT_DELIVERIES, id=log.world.project, **variables)
        assert _codes(body) == ["BAD_USER_INPUT"], variables


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
"""Who may manage webhooks, written out by hand: the policy, not the table."""


def test_the_manage_webhooks_policy_is_the_grant_tables():
    assert {case.id: project_outcome(case, Action.MANAGE_WEBHOOKS) for case in ALL_CASES} == (
        MANAGES
    )
    assert [case.id for case in ALL_CASES] == list(MANAGES)


@dataclass
class Caller:
    case: Case
    client: GraphQLClient
    webhook: str
    """A webhook of the founder's for this caller to change, rotate, ping and delete."""
    delivery: str
    """A failed delivery of it, for this caller to read and redeliver."""


async def _callers(member, db) -> tuple[str, list[Caller]]:
    founder, founder_doc = await member("acme", "owner")
    org = str(founder_doc["orgId"])
    project = (await founder.data(CREATE_PROJECT, org=org, name="Main"))["createProject"]["id"]
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
        webhook, _ = await _webhook(founder, project, name=f"for {case.id}")
        delivery = await _stored_delivery(db, webhook["id"], "failed")
        callers.append(Caller(case, client, webhook["id"], str(delivery)))
    return project, callers


async def test_managing_webhooks_follows_the_role_table_and_members_read_them(member, db, redis):
    project, callers = await _callers(member, db)
    outcomes: dict[str, dict[str, str | None]] = {}
    for caller in callers:
        client, webhook, case = caller.client, caller.webhook, caller.case.id
        reads = {
            "webhook": await _attempt(client, WEBHOOK, id=webhook),
            "delivery": await _attempt(client, DELIVERY, id=caller.delivery),
            "webhook.deliveries": await _attempt(client, WEBHOOK_DELIVERIES, id=webhook),
            "project.webhooks": await _attempt(client, PROJECT_WEBHOOKS, p=project),
            "project.webhookDeliveries": await _attempt(client, PROJECT_DELIVERIES, id=project),
        }
        if reads["webhook"] is None:
            listed = await client.data(WEBHOOK_DELIVERIES, id=webhook)
            nodes = listed["webhook"]["deliveries"]["nodes"]
            assert [node["id"] for node in nodes] == [caller.delivery], case
        before = await snapshot(db)
        writes = {
            "create": await _attempt(
                client, CREATE_WEBHOOK, p=project, input={"name": case, "url": PUBLIC_URL}
            ),
            "update": await _attempt(
                client, UPDATE_WEBHOOK, id=webhook, input={"description": "changed"}
            ),
            "rotate": await _attempt(client, ROTATE, id=webhook, grace=0),
            "redeliver": await _attempt(client, REDELIVER, id=caller.delivery),
            "ping": await _attempt(client, PING, id=webhook),
        }
        stored = await db.webhooks.find_one({"_id": ObjectId(webhook)})
        if MANAGES[case] is not None:
            assert await snapshot(db) == before, case
        else:
            assert await db.webhooks.count_documents({"name": case}) == 1, case
            assert stored["description"] == "changed", case
            assert len(stored["secrets"]) == 2, case
            redelivered = await db.deliveries.find_one({"_id": ObjectId(caller.delivery)})
            assert redelivered["state"] == "pending", case
            assert await db.deliveries.count_documents({"webhookId": ObjectId(webhook)}) == 2
        writes["delete"] = await _attempt(client, DELETE_WEBHOOK, id=webhook)
        still_there = await db.webhooks.count_documents({"_id": ObjectId(webhook)})
        assert still_there == (MANAGES[case] is not None), case
        outcomes[case] = {**reads, **writes}

    invisible = {"org-member", "org-worker"}
    assert outcomes == {
        case: {
            **dict.fromkeys(
                (
                    "webhook",
                    "delivery",
                    "webhook.deliveries",
                    "project.webhooks",
                    "project.webhookDeliveries",
                ),
                "NOT_FOUND" if case in invisible else None,
            ),
            **dict.fromkeys(
                ("create", "update", "rotate", "redeliver", "ping", "delete"), expected
            ),
        }
        for case, expected in MANAGES.items()
    }


async def test_custom_header_values_are_shown_only_to_those_who_manage_webhooks(member, db):
    """Custom headers often carry a receiver's credentials: a member who may read the project
    but not manage its webhooks sees their names, never their values."""
    _, callers = await _callers(member, db)
    secret_headers = {"Authorization": "Bearer t0ken", "X-Tenant": "acme"}
    seen = {}
    for caller in callers:
        await db.webhooks.update_one(
            {"_id": ObjectId(caller.webhook)}, {"$set": {"headers": secret_headers}}
        )
        body = await caller.client.execute(
            "query($id: ID!) { webhook(id: $id) { headers } }", id=caller.webhook
        )
        seen[caller.case.id] = None if body.get("errors") else body["data"]["webhook"]["headers"]
    hidden = dict.fromkeys(secret_headers, "HIDDEN")
    assert seen == {
        case: None
        if case in {"org-member", "org-worker"}
        else (secret_headers if MANAGES[case] is None else hidden)
        for case in seen
    }
    assert hidden in seen.values()
    assert secret_headers in seen.values()
