"""The address guard at delivery time: DNS and settings can change after a webhook is saved, so
the worker checks every connection again and refuses loopback before opening it.

The gateway here allows private addresses (webhooks to loopback are saved), but the worker is
started without LOOM_WEBHOOK_ALLOW_PRIVATE: every delivery must fail with the guard's reason,
and the receivers, real servers on 127.0.0.1, must see no request and no connection at all.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from bson import ObjectId

from gateway.settings import Settings
from tests.datasets_world import make_world
from tests.servers import free_port
from tests.waiting import eventually
from tests.webhook_receiver import receiving
from tests.workers import start_worker, stop

CREATE_WEBHOOK = """mutation($p: ID!, $input: WebhookInput!) {
  createWebhook(projectId: $p, input: $input) { webhook { id url } } }"""
PING = "mutation($id: ID!) { pingWebhook(id: $id) { id state } }"
DELIVERY = """query($id: ID!) { webhookDelivery(id: $id) { state reason attemptCount
  attempts { attempt outcome statusCode error } } }"""
ENDED = ("delivered", "failed", "cancelled")


@pytest.fixture
def settings(stack: dict[str, str]) -> Settings:
    """The gateway allows private addresses; the worker below does not."""
    return Settings(**stack, db_name=f"test_{uuid.uuid4().hex[:12]}", webhook_allow_private=True)


@pytest.fixture
def guarded_worker(settings):
    process = start_worker(
        settings,
        LOOM_RELAY_LEASE_S="1",
        LOOM_REAPER_INTERVAL_S="0.2",
        LOOM_WEBHOOK_ALLOW_PRIVATE="false",
    )
    yield process
    stop(process)


@dataclass
class Listener:
    """A bare TCP server on 127.0.0.1 answering 200 to anything: it counts connections, which
    an HTTP receiver cannot (it only sees requests that arrived)."""

    port: int
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[Listener]:
    listener = Listener(free_port())
    server = await asyncio.start_server(listener.serve, "127.0.0.1", listener.port)
    async with server:
        yield listener


async def test_a_worker_without_allow_private_refuses_loopback_before_connecting(
    member, db, settings, guarded_worker
):
    world = await make_world(member)
    async with listening() as listener, receiving(settings) as receiver:
        # The control: the listener does count a connection made to it.
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"http://127.0.0.1:{listener.port}/")).text == "ok"
        assert listener.connections == 1
        listener.connections = 0

        urls = {
            "listener": (f"http://127.0.0.1:{listener.port}/hook", "127.0.0.1 is a loopback"),
            "receiver": (receiver.url, "127.0.0.1 is a loopback"),
            "localhost": (
                f"http://localhost:{listener.port}/hook",
                "localhost resolves to a refused address",
            ),
        }
        pinged = {}
        for name, (url, _) in urls.items():
            made = await world.client.data(
                CREATE_WEBHOOK,
                p=world.project,
                input={"name": name, "url": url, "retryPolicy": {"maxAttempts": 1}},
            )
            webhook = made["createWebhook"]["webhook"]
            assert webhook["url"] == url  # the gateway saved it: it allows private addresses
            delivery = (await world.client.data(PING, id=webhook["id"]))["pingWebhook"]
            pinged[name] = delivery["id"]
        for name, delivery_id in pinged.items():
            await eventually(
                lambda delivery_id=delivery_id: db.deliveries.find_one(
                    {"_id": ObjectId(delivery_id)}
                ),
                lambda doc: doc["state"] in ENDED,
            )
            read = (await world.client.data(DELIVERY, id=delivery_id))["webhookDelivery"]
            assert (read["state"], read["attemptCount"]) == ("failed", 1), (name, read)
            (attempt,) = read["attempts"]
            assert (attempt["outcome"], attempt["statusCode"]) == ("failed", None), name
            _, reason = urls[name]
            assert attempt["error"].startswith("refused by the address guard: "), attempt
            assert reason in attempt["error"], (name, attempt)
            assert reason in read["reason"], (name, read)
        assert receiver.received == []
        assert listener.connections == 0
