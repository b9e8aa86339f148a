"""Bursts do not drop subscribers: a dashboard behind a burst is coalesced, not dropped.

Real WebSockets against a real uvicorn; the bursts are written straight into MongoDB with bulk
writes and reach the gateway through its real change stream. Each dashboard reads slowly on
purpose — it does not read at all until the writer is done, over a socket with a small receive
buffer, so the gateway cannot hand the burst to the kernel and must hold it itself. Both a
grouped subscriber (graphql-transport-ws) and an ungrouped one (the legacy graphql-ws
protocol, served by Strawberry's own handler) are tried.
"""

import asyncio
import contextlib
import itertools
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import websockets
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from gateway.app import create_app
from gateway.connections import Connections
from gateway.inboxes import ENTITIES_PER_SLOT, Entity, Inbox, Overflowed
from resolvers.executions import new_execution
from tests.datasets_world import make_world
from tests.servers import running_uvicorn
from tests.test_batches import EXECUTE_BATCH
from tests.test_clone import _seed_items
from tests.waiting import eventually
from tests.workers import worker_processes

CREATE_SERVICE = """mutation($p: ID!, $input: ServiceInput!) {
  createService(projectId: $p, input: $input) { id } }"""
SERVICE_UPDATES = """subscription($s: ID!) {
  executionUpdated(serviceId: $s) { id status input } }"""
BURST = 20_000
FINALS = ("success", "failed", "aborted", "terminated")
PROTOCOLS = ("graphql-transport-ws", "graphql-ws")
"""graphql-transport-ws subscriptions are grouped; legacy graphql-ws ones run alone."""
RECEIVE_BUFFER = 4096
NOTE = "a dashboard shows what each execution was asked to do; " * 8
"""Each message carries ~500 bytes: a burst is far more than the kernel's socket buffers (up to
4 MB on Linux) take in, so the gateway must hold what the paused dashboard has not read."""
MAX_LAG_S = 1.0


class Dashboard:
    """One subscription over its own WebSocket, in either protocol."""

    def __init__(self, ws: websockets.ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol

    async def next(self) -> dict[str, Any]:
        """The next message as {type: next | error | complete, payload}; legacy `data` is
        `next`."""
        message = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
        kind = {"data": "next"}.get(message["type"], message["type"])
        return {"type": kind, "payload": message.get("payload")}


@contextlib.asynccontextmanager
async def dashboard(
    base_url: str, key: str, protocol: str, **variables: Any
) -> AsyncIterator[Dashboard]:
    """A subscriber to SERVICE_UPDATES whose socket takes in little until it is read."""
    address = urlsplit(base_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (address.hostname, address.port))
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url, subprotocols=[protocol], sock=sock, max_queue=4, ping_interval=None
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        start = "subscribe" if protocol == "graphql-transport-ws" else "start"
        payload = {"query": SERVICE_UPDATES, "variables": variables}
        await ws.send(json.dumps({"id": "1", "type": start, "payload": payload}))
        yield Dashboard(ws, protocol)


async def _service(member) -> tuple[Any, dict[str, Any]]:
    world = await make_world(member)
    service = {"name": "tools", "functions": ["echo"]}
    created = await world.client.data(CREATE_SERVICE, p=world.project, input=service)
    return world, {"id": created["createService"]["id"]}


async def _subscribed(app, protocol: str) -> None:
    """The subscription registered on the server; it offers no event for it, so poll."""

    async def registered() -> tuple[int, int]:
        grouped = app.state.subscription_groups.member_count
        return len(app.state.feed.subscribers), grouped

    wanted = (1, 1 if protocol == "graphql-transport-ws" else 0)
    await eventually(registered, lambda seen: seen == wanted)


async def _executions(db: AsyncDatabase, service_id: str, count: int) -> list[dict[str, Any]]:
    service = await db.services.find_one({"_id": ObjectId(service_id)})
    return [
        new_execution(service["creator"], service, "echo", {"n": n, "note": NOTE}, None)
        for n in range(count)
    ]


async def _insert_before_subscribing(app, db: AsyncDatabase, executions: list[dict]) -> None:
    """Insert the executions and wait until the gateway's feed has passed their inserts, so a
    subscriber that joins afterwards sees only the changes that follow."""
    await app.state.feed.ready()
    last = executions[-1]["_id"]
    async with app.state.feed.subscribe("executions", lambda doc: doc["_id"] == last) as probe:
        await db.executions.insert_many(executions)
        await asyncio.wait_for(probe.next(), 60)


async def _burst(db: AsyncDatabase, executions: list[dict[str, Any]]) -> dict[str, str]:
    """Move every execution to inProgress, then each to a final status: two status changes per
    execution, in bulk writes. Returns each one's final status."""
    ids = [execution["_id"] for execution in executions]
    await db.executions.update_many({"_id": {"$in": ids}}, {"$set": {"status": "inProgress"}})
    finals = {str(i): status for i, status in zip(ids, itertools.cycle(FINALS), strict=False)}
    for status in FINALS:
        chosen = [ObjectId(i) for i, final in finals.items() if final == status]
        await db.executions.update_many({"_id": {"$in": chosen}}, {"$set": {"status": status}})
    return finals


@pytest.fixture
async def gateway(settings, mongo, db, redis):
    """`await gateway(max_lag_s)` — a gateway of its own, (app, base URL), that drops a
    subscriber behind for longer than `max_lag_s`. uvicorn's keepalive pings are off: a
    dashboard that stops reading would not answer them, and they are not under test here."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(max_lag_s: float) -> tuple[Any, str]:
            configured = settings.model_copy(update={"subscription_max_lag_s": max_lag_s})
            application = create_app(configured, Connections(mongo=mongo, db=db, redis=redis))
            await stack.enter_async_context(application.router.lifespan_context(application))
            serving = running_uvicorn(application, configured, ws_ping_interval=None)
            return application, await stack.enter_async_context(serving)

        yield start


@dataclass
class Received:
    """What a dashboard received for each execution of a burst."""

    last: dict[str, str] = field(default_factory=dict)
    stands_for: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    coalesced: int = 0


async def _read_until_every_final(
    updates: Dashboard, db: AsyncDatabase, finals: dict[str, str], later: dict[str, Any]
) -> Received:
    """Read until every execution showed a final status, then until the insert of `later`,
    a change made after that: whatever was still on its way for the burst arrives before it."""
    received = Received()
    unfinished = set(finals)
    sentinel = None
    while True:
        message = await updates.next()
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        shown = message["payload"]["data"]["executionUpdated"]
        if shown["id"] == sentinel:
            return received
        coalesced = (message["payload"].get("extensions") or {}).get("coalesced", 0)
        received.messages += 1
        received.coalesced += coalesced > 0
        received.last[shown["id"]] = shown["status"]
        received.stands_for[shown["id"]] += 1 + coalesced
        if shown["status"] in FINALS:
            unfinished.discard(shown["id"])
        if not unfinished and sentinel is None:
            sentinel = str((await db.executions.insert_one(later)).inserted_id)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_dashboard_behind_a_burst_stays_subscribed_and_ends_with_every_final_status(
    protocol, member, db, gateway
):
    # However long this machine takes to write the burst, the dashboard is not dropped for lag.
    app, server = await gateway(max_lag_s=600.0)
    world, service = await _service(member)
    executions = await _executions(db, service["id"], BURST + 1)
    later = executions.pop()
    await _insert_before_subscribing(app, db, executions)
    async with dashboard(server, world.client.key, protocol, s=service["id"]) as updates:
        await _subscribed(app, protocol)
        finals = await _burst(db, executions)
        # Only now does the dashboard read: the whole burst was written while it was paused.
        received = await _read_until_every_final(updates, db, finals, later)
    assert received.last == finals
    assert received.coalesced > 0
    assert received.messages < 2 * BURST
    assert set(received.stands_for.values()) == {2}, "each one's messages stand for 2 changes"


def _dropped_on_the_server(app) -> bool:
    """Whether the gateway dropped the subscriber: its feed inbox or its group member's is
    overflowed, or it is already gone."""
    members = [m for group in app.state.subscription_groups.groups.values() for m in group.members]
    feeds = [subscriber.inbox for subscriber in app.state.feed.subscribers]
    return not feeds or any(inbox.overflowed for inbox in members + feeds)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_dashboard_behind_for_longer_than_the_max_lag_is_dropped_with_rate_limited(
    protocol, member, db, gateway
):
    app, base_url = await gateway(MAX_LAG_S)
    world, service = await _service(member)
    executions = await _executions(db, service["id"], 5_000)
    await _insert_before_subscribing(app, db, executions)
    ids = [execution["_id"] for execution in executions]
    async with dashboard(base_url, world.client.key, protocol, s=service["id"]) as updates:
        await _subscribed(app, protocol)
        rounds = itertools.count(1)

        async def change_and_look() -> bool:
            """Burst after burst while the dashboard does not read: the gateway notices how
            long it has been behind as changes arrive."""
            await db.executions.update_many(
                {"_id": {"$in": ids}}, {"$set": {"input.round": next(rounds)}}
            )
            return _dropped_on_the_server(app)

        await eventually(change_and_look, lambda dropped: dropped)
        while (message := await updates.next())["type"] == "next" and not message["payload"].get(
            "errors"
        ):
            pass
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "RATE_LIMITED"
    assert errors[0]["extensions"]["limit"] == "subscriptionMaxLag"
    assert errors[0]["extensions"]["max"] == MAX_LAG_S

    async def subscribers() -> int:
        return len(app.state.feed.subscribers) + app.state.subscription_groups.member_count

    await eventually(subscribers, lambda n: n == 0)


# --- the inbox itself ---------------------------------------------------------------------------


def _state(key: str, status: str) -> dict[str, str]:
    return {"key": key, "status": status}


def _entity(item: dict[str, str]) -> Entity | None:
    if "key" not in item:
        return None
    return Entity(item["key"], item["status"] in FINALS)


async def _drain(inbox: Inbox) -> list[tuple[str, str, int]]:
    got = []
    while inbox:
        item = await inbox.get()
        got.append((item.get("key", "marker"), item.get("status", ""), inbox.coalesced))
    return got


async def test_an_inbox_behind_keeps_the_latest_state_of_each_entity_in_arrival_order():
    inbox: Inbox[dict[str, str]] = Inbox(2, _entity)
    for key, status in (("a", "created"), ("b", "created"), ("a", "inProgress"), ("c", "created")):
        inbox.put(_state(key, status))
    inbox.put(_state("b", "inProgress"))
    inbox.put(_state("a", "success"))
    assert await _drain(inbox) == [("c", "created", 0), ("b", "inProgress", 1), ("a", "success", 2)]
    assert inbox.behind_since is None


async def test_a_final_state_is_never_replaced_and_a_later_state_waits_behind_it():
    inbox: Inbox[dict[str, str]] = Inbox(1, _entity)
    for status in ("created", "failed", "created", "inProgress", "success"):
        inbox.put(_state("a", status))
    assert await _drain(inbox) == [("a", "failed", 1), ("a", "success", 2)]


async def test_a_state_after_a_marker_never_moves_before_it():
    inbox: Inbox[dict[str, str]] = Inbox(1, _entity)
    for item in (_state("a", "created"), _state("a", "inProgress"), {}, _state("a", "success")):
        inbox.put(item)
    assert await _drain(inbox) == [("marker", "", 0), ("a", "success", 2)]


async def test_a_consumer_that_caught_up_gets_every_state_again():
    inbox: Inbox[dict[str, str]] = Inbox(1, _entity)
    for status in ("created", "inProgress", "success"):
        inbox.put(_state("a", status))
    assert await _drain(inbox) == [("a", "success", 2)]
    for status in ("created", "inProgress"):
        inbox.put(_state("b", status))
        assert (await inbox.get())["status"] == status


async def test_an_inbox_behind_holds_a_bounded_number_of_entities_then_drops_its_consumer():
    inbox: Inbox[dict[str, str]] = Inbox(2, _entity)
    for n in range(ENTITIES_PER_SLOT * 2):
        inbox.put(_state(str(n), "created"))
    assert not inbox.overflowed
    inbox.put(_state("one too many", "created"))
    assert inbox.overflowed
    assert not inbox
    with pytest.raises(Overflowed):
        await inbox.get()


async def test_items_that_show_no_entity_are_never_coalesced_and_overflow_the_inbox():
    inbox: Inbox[dict[str, str]] = Inbox(2, _entity)
    inbox.put(_state("a", "created"))
    for _ in range(3):
        inbox.put({})
    assert [(await inbox.get()).get("key") for _ in range(3)] == ["a", None, None]
    with pytest.raises(Overflowed):
        await inbox.get()


async def test_a_dashboard_watching_an_execute_batch_of_20000_ends_with_every_final_status(
    member, db, gateway, settings
):
    """The burst as users make it: a real executeBatch over 20,000 items, run by two real
    workers, watched by a dashboard that reads as it goes — the moment a dashboard is most
    watched, when it used to be dropped within two seconds."""
    # What is under test is that coalescing keeps it (it used to overflow in two seconds),
    # not the lag limit: with the suite's other worker loading the same 2 cores, draining
    # 60,000 changes can take longer than the default 30 s.
    app, server = await gateway(max_lag_s=4 * settings.subscription_max_lag_s)
    world, service = await _service(member)
    await _seed_items(db, ObjectId(world.dataset), BURST)
    with worker_processes(settings) as start:
        updates_of = dashboard(server, world.client.key, "graphql-transport-ws", s=service["id"])
        async with updates_of as updates:
            await _subscribed(app, "graphql-transport-ws")
            for _ in range(2):
                start()
            started = await world.client.data(
                EXECUTE_BATCH, s=service["id"], input={"function": "echo", "filter": {}}
            )
            assert started["executeBatch"]["status"]
            last: dict[str, str] = {}
            finished: set[str] = set()
            while len(finished) < BURST:
                message = await updates.next()
                assert message["type"] == "next", message
                assert "errors" not in message["payload"], message
                shown = message["payload"]["data"]["executionUpdated"]
                last[shown["id"]] = shown["status"]
                if shown["status"] in FINALS:
                    finished.add(shown["id"])
    assert len(last) == BURST
    assert set(last.values()) == {"success"}
    stored = db.executions.find({"serviceId": ObjectId(service["id"])}, {"status": 1})
    assert {str(e["_id"]): e["status"] async for e in stored} == last
