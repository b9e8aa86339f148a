"""Webhooks delivered through a real relay and worker to a real receiver on loopback, verified
with the `standardwebhooks` package as any integration would: signatures across a rotation,
retries with backoff, Retry-After, 410 Gone, timeouts, pings and redeliveries."""

import asyncio
import itertools
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from standardwebhooks import Webhook
from starlette.responses import Response

from gateway.settings import Settings
from tests.datasets_world import image_bytes, make_world
from tests.waiting import eventually
from tests.webhook_receiver import Received, receiving
from tests.workers import start_worker, stop

CREATE_WEBHOOK = """mutation($p: ID!, $input: WebhookInput!) {
  createWebhook(projectId: $p, input: $input) { secret webhook { id } } }"""
ROTATE = """mutation($id: ID!, $grace: Float) {
  rotateWebhookSecret(id: $id, graceSeconds: $grace) {
    secret webhook { secrets { expiresAt } } } }"""
CREATE_TRIGGER = """mutation($p: ID!, $input: TriggerInput!) {
  createTrigger(projectId: $p, input: $input) { id } }"""
PING = "mutation($id: ID!) { pingWebhook(id: $id) { id messageId type state } }"
REDELIVER = "mutation($id: ID!) { redeliver(deliveryId: $id) { id state maxAttempts } }"
DELIVERY = """query($id: ID!) { webhookDelivery(id: $id) { id state reason attemptCount
  messageId attempts { attempt outcome statusCode error latencyMs requestId responseBody } } }"""
WEBHOOK = "query($id: ID!) { webhook(id: $id) { active disabledReason } }"
FAST = {
    "LOOM_RELAY_LEASE_S": "1",
    "LOOM_REAPER_INTERVAL_S": "0.2",
    "LOOM_WEBHOOK_ALLOW_PRIVATE": "true",
}
PNG = image_bytes("PNG", 4, 4)
ENDED = ("delivered", "failed", "cancelled")


@pytest.fixture
def settings(stack: dict[str, str]) -> Settings:
    return Settings(**stack, db_name=f"test_{uuid.uuid4().hex[:12]}", webhook_allow_private=True)


@pytest.fixture
def worker(settings):
    process = start_worker(settings, **FAST)
    yield process
    stop(process)


class Hooked:
    """A project whose item uploads are delivered to a webhook."""

    def __init__(self, world: Any, webhook: str, secret: str) -> None:
        self.world, self.webhook, self.secret = world, webhook, secret

    @classmethod
    async def make(cls, member: Any, url: str, **webhook: Any) -> "Hooked":
        world = await make_world(member)
        created = await world.client.data(
            CREATE_WEBHOOK, p=world.project, input={"name": "hook", "url": url, **webhook}
        )
        made = created["createWebhook"]
        hooked = cls(world, made["webhook"]["id"], made["secret"])
        trigger = {
            "name": "uploads",
            "resource": "Item",
            "actions": ["Created"],
            "operation": {"type": "webhook", "webhookId": hooked.webhook},
        }
        await world.client.data(CREATE_TRIGGER, p=world.project, input=trigger)
        return hooked

    async def delivery_of(self, db: Any, item: dict[str, Any]) -> dict[str, Any]:
        """The delivery an item's upload made, once it has ended."""
        event = await eventually(
            lambda: db.events.find_one({"resourceId": ObjectId(item["id"])}), bool
        )
        found = await eventually(
            lambda: db.deliveries.find_one({"eventId": event["_id"]}),
            lambda doc: doc is not None and doc["state"] in ENDED,
        )
        return (await self.world.client.data(DELIVERY, id=str(found["_id"])))["webhookDelivery"]


async def _relaying(db: Any) -> None:
    await eventually(
        lambda: db.relay.find_one({"_id": "relay"}), lambda doc: doc and doc.get("token")
    )


def _verified(secret: str, request: Received) -> dict[str, Any]:
    return Webhook(secret).verify(request.body, request.headers)


async def test_every_delivery_verifies_with_standardwebhooks_across_a_secret_rotation(
    member, db, settings, worker
):
    async with receiving(settings) as receiver:
        hooked = await Hooked.make(member, receiver.url, headers={"X-Tenant": "acme"})
        await _relaying(db)
        item = await hooked.world.upload("first.png", PNG)
        (first,) = await receiver.wait_for(1)
        body = _verified(hooked.secret, first)
        assert body["type"] == "item.created"
        assert body["data"]["event"]["new"]["name"] == "first.png"
        assert body["data"]["event"]["old"] is None
        assert body["data"]["trigger"]["name"] == "uploads"
        assert body["data"]["deliveryInfo"] == {"attempt": 1, "maxAttempts": 8}
        assert first.headers["x-tenant"] == "acme"
        assert first.headers["webhook-id"] == f"msg_{(await hooked.delivery_of(db, item))['id']}"

        rotated = await hooked.world.client.data(ROTATE, id=hooked.webhook, grace=3600)
        new_secret = rotated["rotateWebhookSecret"]["secret"]
        assert new_secret != hooked.secret
        await hooked.world.upload("second.png", PNG)
        _, second = await receiver.wait_for(2)
        assert len(second.headers["webhook-signature"].split(" ")) == 2
        for secret in (hooked.secret, new_secret):
            assert _verified(secret, second)["data"]["event"]["new"]["name"] == "second.png"
        with pytest.raises(Exception, match="signature"):
            Webhook("whsec_" + "A" * 43 + "=").verify(second.body, second.headers)


async def test_a_receiver_failing_twice_gets_three_attempts_with_jittered_backoff(
    member, db, settings, worker
):
    async def flaky(_: Received, seen: int) -> Response:
        return Response("busy", status_code=503) if seen < 2 else Response("ok")

    policy = {"initialDelayS": 0.3, "multiplier": 4}
    async with receiving(settings, flaky) as receiver:
        hooked = await Hooked.make(member, receiver.url, retryPolicy=policy)
        await _relaying(db)
        item = await hooked.world.upload("flaky.png", PNG)
        requests = await receiver.wait_for(3)
        delivery = await hooked.delivery_of(db, item)
    assert delivery["state"] == "delivered"
    assert [a["statusCode"] for a in delivery["attempts"]] == [503, 503, 200]
    assert [a["outcome"] for a in delivery["attempts"]] == ["retry", "retry", "delivered"]
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    infos = [json.loads(r.body)["data"]["deliveryInfo"]["attempt"] for r in requests]
    assert infos == [1, 2, 3]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    # Full jitter: each wait is drawn from [0, 0.3 s] then [0, 1.2 s] (plus the poll).
    assert gaps[0] <= 0.3 + 0.5
    assert gaps[1] <= 1.2 + 0.5


async def test_retry_after_is_honoured(member, db, settings, worker):
    async def later(_: Received, seen: int) -> Response:
        if seen == 0:
            return Response("later", status_code=429, headers={"Retry-After": "2"})
        return Response("ok")

    async with receiving(settings, later) as receiver:
        hooked = await Hooked.make(member, receiver.url, retryPolicy={"initialDelayS": 0.05})
        await _relaying(db)
        item = await hooked.world.upload("later.png", PNG)
        first, second = await receiver.wait_for(2)
        delivery = await hooked.delivery_of(db, item)
    assert second.at - first.at >= 2.0
    assert [a["statusCode"] for a in delivery["attempts"]] == [429, 200]


async def test_410_gone_disables_the_webhook_and_records_why(member, db, settings, worker):
    async def gone(_: Received, __: int) -> Response:
        return Response("unsubscribed", status_code=410)

    async with receiving(settings, gone) as receiver:
        hooked = await Hooked.make(member, receiver.url)
        await _relaying(db)
        item = await hooked.world.upload("gone.png", PNG)
        delivery = await hooked.delivery_of(db, item)
        assert delivery["state"] == "failed"
        assert delivery["attemptCount"] == 1
        assert delivery["attempts"][0]["responseBody"] == "unsubscribed"
        webhook = (await hooked.world.client.data(WEBHOOK, id=hooked.webhook))["webhook"]
        assert webhook["active"] is False
        assert "410" in webhook["disabledReason"]
        after = await hooked.world.upload("after.png", PNG)
        cancelled = await hooked.delivery_of(db, after)
        assert cancelled["state"] == "cancelled"
        assert len(receiver.received) == 1


async def test_a_timeout_counts_as_a_failed_attempt(member, db, settings, worker):
    async def slow_once(_: Received, seen: int) -> Response:
        if seen == 0:
            await asyncio.sleep(3)
        return Response("ok")

    policy = {"timeoutS": 0.5, "initialDelayS": 0.05}
    async with receiving(settings, slow_once) as receiver:
        hooked = await Hooked.make(member, receiver.url, retryPolicy=policy)
        await _relaying(db)
        item = await hooked.world.upload("slow.png", PNG)
        delivery = await hooked.delivery_of(db, item)
        await receiver.wait_for(2)
    first, second = delivery["attempts"]
    assert first["outcome"] == "retry"
    assert first["statusCode"] is None
    assert "timeout" in first["error"]
    assert second["statusCode"] == 200
    assert delivery["state"] == "delivered"


async def test_a_client_error_fails_at_once_and_the_log_keeps_the_answer(
    member, db, settings, worker
):
    async def refuse(_: Received, __: int) -> Response:
        return Response("bad payload", status_code=400, headers={"X-Why": "schema"})

    async with receiving(settings, refuse) as receiver:
        hooked = await Hooked.make(member, receiver.url)
        await _relaying(db)
        item = await hooked.world.upload("bad.png", PNG)
        delivery = await hooked.delivery_of(db, item)
        assert len(receiver.received) == 1
    assert delivery["state"] == "failed"
    (attempt,) = delivery["attempts"]
    assert attempt["statusCode"] == 400
    assert attempt["responseBody"] == "bad payload"
    assert attempt["requestId"] == receiver.received[0].headers["x-request-id"]
    assert attempt["latencyMs"] > 0
    assert "400" in delivery["reason"]


async def test_ping_and_redeliver_send_the_same_message_id_again(member, db, settings, worker):
    async with receiving(settings) as receiver:
        hooked = await Hooked.make(member, receiver.url)
        pinged = (await hooked.world.client.data(PING, id=hooked.webhook))["pingWebhook"]
        assert pinged["type"] == "loom.ping"
        (first,) = await receiver.wait_for(1)
        assert _verified(hooked.secret, first)["type"] == "loom.ping"
        await eventually(
            lambda: db.deliveries.find_one({"_id": ObjectId(pinged["id"])}),
            lambda doc: doc["state"] == "delivered",
        )
        again = (await hooked.world.client.data(REDELIVER, id=pinged["id"]))["redeliver"]
        assert again["state"] == "pending"
        _, second = await receiver.wait_for(2)
        assert second.headers["webhook-id"] == first.headers["webhook-id"] == pinged["messageId"]
        done = await eventually(
            lambda: db.deliveries.find_one({"_id": ObjectId(pinged["id"])}),
            lambda doc: doc["state"] == "delivered",
        )
        assert [a["attempt"] for a in done["attempts"]] == [1, 2]


SCHEDULE_RUN = """mutation($p: ID!, $at: DateTime!, $op: TriggerOperationInput!, $input: JSON) {
  scheduleRun(projectId: $p, at: $at, operation: $op, input: $input) { id } }"""
CREATE_CRON = """mutation($p: ID!, $input: CronTriggerInput!) {
  createCronTrigger(projectId: $p, input: $input) { id } }"""


async def test_cron_triggers_and_scheduled_runs_deliver_signed_scheduled_messages(
    member, db, settings, worker
):
    async with receiving(settings) as receiver:
        world = await make_world(member)
        made = await world.client.data(
            CREATE_WEBHOOK, p=world.project, input={"name": "ticks", "url": receiver.url}
        )
        webhook, secret = made["createWebhook"]["webhook"]["id"], made["createWebhook"]["secret"]
        operation = {"type": "webhook", "webhookId": webhook}
        at = datetime.now(UTC).isoformat()
        run = await world.client.data(
            SCHEDULE_RUN, p=world.project, at=at, op=operation, input={"report": "now"}
        )
        (first,) = await receiver.wait_for(1)
        scheduled = _verified(secret, first)
        assert scheduled["type"] == "loom.scheduled"
        assert scheduled["data"]["input"] == {"report": "now"}
        assert scheduled["data"]["scheduledRunId"] == run["scheduleRun"]["id"]

        cron = {
            "name": "every second",
            "cron": "* * * * * *",
            "operation": operation,
            "input": {"tick": True},
        }
        made = await world.client.data(CREATE_CRON, p=world.project, input=cron)
        cron_id = made["createCronTrigger"]["id"]
        ticks = await receiver.wait_for(3)
        bodies = [_verified(secret, request) for request in ticks[1:]]
    assert {body["data"]["trigger"]["id"] for body in bodies} == {cron_id}
    assert all(body["data"]["input"] == {"tick": True} for body in bodies)
    assert len({request.headers["webhook-id"] for request in ticks}) == 3
    fires = await db.cron_fires.find({"cronTriggerId": ObjectId(cron_id)}).to_list()
    fire_ids = {str(fire["_id"]) for fire in fires}
    assert {body["data"]["cronFireId"] for body in bodies} <= fire_ids
    assert all(fire["deliveryId"] is not None for fire in fires if fire["status"] == "fired")
