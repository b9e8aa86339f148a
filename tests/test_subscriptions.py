"""Subscriptions over a real WebSocket: live progress, tenancy, fan-out, slow consumers."""

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import websockets
from bson import ObjectId
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from gateway.auth_cache import AuthCache
from gateway.change_feed import ChangeFeed
from gateway.inboxes import Overflowed
from gateway.subscription_groups import SubscriptionGroups
from tests.datasets_world import make_world
from tests.servers import running_uvicorn
from tests.test_executions import CREATE_SERVICE, EXECUTE, FAST
from tests.waiting import eventually
from tests.workers import start_worker, stop
from tests.ws_client import subscribe

EXECUTION_UPDATED = """subscription($e: ID, $s: ID, $p: ID, $statuses: [String!]) {
  executionUpdated(executionId: $e, serviceId: $s, projectId: $p, statuses: $statuses) {
    id status progress } }"""


async def _service(world) -> str:
    service = {"name": "tools", "functions": ["echo", "sleeper"]}
    return (await world.client.data(CREATE_SERVICE, p=world.project, input=service))[
        "createService"
    ]["id"]


async def _execute(world, service: str, function: str = "echo", **execution_input) -> str:
    input_ = {"function": function, "input": execution_input}
    return (await world.client.data(EXECUTE, s=service, input=input_))["execute"]["id"]


async def test_subscriber_sees_progress_of_an_execution_run_by_a_real_worker(
    member, server, settings, app
):
    world = await make_world(member)
    service = await _service(world)
    execution = await _execute(world, service, "sleeper", seconds=0.4, steps=4)
    await app.state.feed.ready()
    async with subscribe(server, world.client.key, EXECUTION_UPDATED, e=execution) as updates:
        await _wait_for_subscribers(app, 1)
        worker = start_worker(settings, **FAST)
        try:
            seen = []
            while not seen or seen[-1]["status"] != "success":
                message = await asyncio.wait_for(updates.next(), 30)
                assert message["type"] == "next", message
                seen.append(message["payload"]["data"]["executionUpdated"])
        finally:
            stop(worker)
    assert {u["id"] for u in seen} == {execution}
    assert "inProgress" in [u["status"] for u in seen]
    percents = [u["progress"]["percent"] for u in seen if u["status"] == "inProgress"]
    assert percents == sorted(percents)
    assert max(percents) == 100


async def test_org_b_never_receives_org_a_changes(member, server, db, app):
    a = await make_world(member)
    b = await make_world(member, org="beta")
    a_execution = await _execute(a, await _service(a))
    b_execution = await _execute(b, await _service(b))
    await app.state.feed.ready()
    async with subscribe(server, b.client.key, EXECUTION_UPDATED) as updates:
        await _wait_for_subscribers(app, 1)
        for execution, percent in ((a_execution, 10), (b_execution, 20), (a_execution, 30)):
            await db.executions.update_one(
                {"_id": ObjectId(execution)}, {"$set": {"progress.percent": percent}}
            )
        await db.executions.update_one(
            {"_id": ObjectId(b_execution)}, {"$set": {"progress.percent": 40}}
        )
        received = []
        while len(received) < 2:
            message = await asyncio.wait_for(updates.next(), 10)
            received.append(message["payload"]["data"]["executionUpdated"])
    assert {u["id"] for u in received} == {b_execution}


async def test_subscribing_to_another_orgs_execution_is_not_found(member, server, app):
    a = await make_world(member)
    b = await make_world(member, org="beta")
    a_execution = await _execute(a, await _service(a))
    async with subscribe(server, b.client.key, EXECUTION_UPDATED, e=a_execution) as updates:
        message = await asyncio.wait_for(updates.next(), 10)
    assert message["type"] == "next"
    assert message["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_two_hundred_subscribers_each_receive_every_update_of_their_execution(
    member, server, db, app
):
    world = await make_world(member)
    service = await _service(world)
    executions = [await _execute(world, service, n=n) for n in range(200)]
    await app.state.feed.ready()
    async with contextlib.AsyncExitStack() as stack:
        subscriptions = [
            await stack.enter_async_context(
                subscribe(server, world.client.key, EXECUTION_UPDATED, e=execution)
            )
            for execution in executions
        ]
        await _wait_for_subscribers(app, 200)
        for percent in (10, 20, 30):
            for execution in executions:
                await db.executions.update_one(
                    {"_id": ObjectId(execution)}, {"$set": {"progress.percent": percent}}
                )

        async def three(updates) -> list[dict]:
            return [
                (await asyncio.wait_for(updates.next(), 30))["payload"]["data"]["executionUpdated"]
                for _ in range(3)
            ]

        received = await asyncio.gather(*(three(s) for s in subscriptions))
    for execution, updates in zip(executions, received, strict=True):
        assert [u["id"] for u in updates] == [execution] * 3
        assert updates[-1]["progress"]["percent"] == 30


async def _wait_for_subscribers(app, count: int) -> None:
    """Subscriptions register on the server a moment after their message is sent; the feed
    offers no event for it, so poll its subscriber count."""

    async def registered() -> int:
        return len(app.state.feed.subscribers)

    await eventually(registered, lambda n: n >= count)


async def test_a_subscriber_a_whole_queue_behind_is_dropped_without_blocking_the_feed(db):
    feed = ChangeFeed(db, queue_size=3, auth_cache=AuthCache(maxsize=0))
    async with (
        feed.subscribe("executions", lambda doc: True) as slow,
        feed.subscribe("executions", lambda doc: True) as fast,
    ):
        received = []
        for n in range(5):
            feed.publish("executions", {"n": n})
            received.append(await fast.next())
        assert [d["n"] for d in received] == [0, 1, 2, 3, 4]
        assert [(await slow.next())["n"] for _ in range(3)] == [0, 1, 2]
        with pytest.raises(Overflowed):
            await slow.next()
        assert slow.inbox.overflowed
        assert not fast.inbox.overflowed


# --- grouping: subscriptions that ask the same thing share one execution per change ------------


async def _percent(db, execution: str, percent: int) -> None:
    await db.executions.update_one(
        {"_id": ObjectId(execution)}, {"$set": {"progress.percent": percent}}
    )


async def _members(app, count: int, groups: int) -> None:
    async def registered() -> tuple[int, int, int]:
        registry = app.state.subscription_groups
        return registry.member_count, len(registry.groups), len(app.state.feed.subscribers)

    await eventually(registered, lambda seen: seen == (count, groups, groups))


async def _next_data(updates) -> tuple[str, dict]:
    message = await asyncio.wait_for(updates.next(), 10)
    assert message["type"] == "next", message
    return message["id"], message["payload"]["data"]["executionUpdated"]


async def test_subscribers_asking_the_same_thing_share_one_group_and_each_get_every_update(
    member, server, db, app
):
    world = await make_world(member)
    execution = await _execute(world, await _service(world))
    await app.state.feed.ready()
    async with contextlib.AsyncExitStack() as stack:
        subscriptions = [
            await stack.enter_async_context(
                subscribe(server, world.client.key, EXECUTION_UPDATED, f"op-{n}", e=execution)
            )
            for n in range(3)
        ]
        await _members(app, count=3, groups=1)
        for percent in (10, 20, 30):
            await _percent(db, execution, percent)
        for n, updates in enumerate(subscriptions):
            received = [await _next_data(updates) for _ in range(3)]
            assert [operation for operation, _ in received] == [f"op-{n}"] * 3
            assert [u["progress"]["percent"] for _, u in received] == [10, 20, 30]
            assert {u["id"] for _, u in received} == {execution}


async def test_a_group_outlives_its_first_member_and_ends_with_its_last(member, server, db, app):
    world = await make_world(member)
    execution = await _execute(world, await _service(world))
    await app.state.feed.ready()
    key = world.client.key
    async with subscribe(server, key, EXECUTION_UPDATED, e=execution) as last:
        async with subscribe(server, key, EXECUTION_UPDATED, e=execution):
            await _members(app, count=2, groups=1)
        await _members(app, count=1, groups=1)
        await _percent(db, execution, 50)
        assert (await _next_data(last))[1]["progress"]["percent"] == 50
    await _members(app, count=0, groups=0)


async def test_the_same_subscription_under_another_key_is_never_grouped(member, server, db, app):
    a = await make_world(member)
    b = await make_world(member, org="beta")
    colleague, _ = await member("acme", "admin")
    a_execution = await _execute(a, await _service(a))
    b_execution = await _execute(b, await _service(b))
    await app.state.feed.ready()
    async with (
        subscribe(server, a.client.key, EXECUTION_UPDATED) as a_updates,
        subscribe(server, b.client.key, EXECUTION_UPDATED) as b_updates,
        subscribe(server, colleague.key, EXECUTION_UPDATED, p=a.project) as colleague_updates,
        subscribe(server, a.client.key, EXECUTION_UPDATED, p=a.project) as a_project_updates,
    ):
        await _members(app, count=4, groups=4)
        await _percent(db, a_execution, 10)
        await _percent(db, b_execution, 20)
        assert (await _next_data(a_updates))[1]["id"] == a_execution
        assert (await _next_data(a_project_updates))[1]["id"] == a_execution
        assert (await _next_data(colleague_updates))[1]["id"] == a_execution
        assert (await _next_data(b_updates))[1]["id"] == b_execution
        await _percent(db, b_execution, 30)
        await _percent(db, a_execution, 40)
        assert (await _next_data(b_updates))[1]["progress"]["percent"] == 30
        assert (await _next_data(a_updates))[1]["progress"]["percent"] == 40


async def test_mutations_sent_over_a_websocket_are_never_grouped(member, server, app):
    world = await make_world(member)
    service = await _service(world)
    variables = {"s": service, "input": {"function": "echo", "input": {}}}
    async with (
        subscribe(server, world.client.key, EXECUTE, **variables) as first,
        subscribe(server, world.client.key, EXECUTE, **variables) as second,
    ):
        created = [
            (await asyncio.wait_for(s.next(), 10))["payload"]["data"]["execute"]["id"]
            for s in (first, second)
        ]
    assert len(set(created)) == 2
    assert app.state.subscription_groups.member_count == 0


def _streaming(results: asyncio.Queue[str]) -> Callable[[], Awaitable[AsyncIterator[str]]]:
    """A group's `start`: a subscription whose results are whatever the test puts in the queue."""

    async def start() -> AsyncIterator[str]:
        async def stream() -> AsyncIterator[str]:
            while True:
                yield await results.get()

        return stream()

    return start


async def test_a_member_a_whole_inbox_behind_is_dropped_while_its_group_goes_on():
    results: asyncio.Queue[str] = asyncio.Queue()
    start = _streaming(results)

    groups = SubscriptionGroups(inbox_size=2)
    async with (
        groups.join("key", start, str.upper) as slow,
        groups.join("key", start, str.upper) as fast,
    ):
        assert len(groups.groups) == 1
        for word in ("a", "b", "c", "d"):
            results.put_nowait(word)
            assert (await fast.get()).encoded == word.upper()
        assert [(await slow.get()).encoded for _ in range(2)] == ["A", "B"]
        with pytest.raises(Overflowed):
            await slow.get()
        results.put_nowait("e")
        assert (await fast.get()).result == "e"
    assert groups.groups == {}


async def test_websocket_compression_is_off_unless_configured(app, settings):
    for enabled, offered in ((False, None), (True, "permessage-deflate")):
        configured = settings.model_copy(update={"ws_compression": enabled})
        async with (
            running_uvicorn(app, configured) as base_url,
            websockets.connect(
                base_url.replace("http://", "ws://") + "/graphql",
                subprotocols=["graphql-transport-ws"],
            ) as ws,
        ):
            negotiated = ws.response.headers.get("sec-websocket-extensions")
            assert (negotiated.split(";")[0] if negotiated else None) == offered


async def test_a_malformed_subscribe_is_refused_and_its_id_can_be_used_again(
    member, server, db, app
):
    world = await make_world(member)
    execution = await _execute(world, await _service(world))
    await app.state.feed.ready()
    url = server.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"apiKey": world.client.key}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for name, variables in (({"not": "a name"}, {}), (None, {"e": execution})):
            payload = {"query": EXECUTION_UPDATED, "operationName": name, "variables": variables}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            if name is not None:
                refused = json.loads(await ws.recv())
                assert (refused["id"], refused["type"]) == ("1", "error")
                assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await _members(app, count=1, groups=1)
        await _percent(db, execution, 70)
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["id"] == "1"
    assert message["payload"]["data"]["executionUpdated"]["progress"]["percent"] == 70


async def test_a_subscriber_whose_filter_fails_is_dropped_and_the_feed_goes_on(db):
    feed = ChangeFeed(db, queue_size=3, auth_cache=AuthCache(maxsize=0))
    async with (
        feed.subscribe("executions", lambda doc: doc["status"] == "success") as strict,
        feed.subscribe("executions", lambda doc: True) as everything,
    ):
        waiting = asyncio.create_task(strict.next())
        feed.publish("executions", {"n": 1})
        feed.publish("executions", {"n": 2, "status": "success"})
        assert [(await everything.next())["n"] for _ in range(2)] == [1, 2]
        with pytest.raises(Overflowed):
            await waiting
        assert strict.inbox.overflowed
        assert not everything.inbox.overflowed


# --- changes only: a result that repeats the last one sent is not sent again -------------------

HEARTBEATS = {"LOOM_EXECUTION_LEASE_S": "0.3", "LOOM_REAPER_INTERVAL_S": "0.2"}
"""A lease of 0.3 s is renewed every 0.1 s: a sleeper of 1.2 s has a dozen renewals, none of
which changes the selected `id status progress`."""


async def _lease_renewals_until_final(db, execution: str) -> int:
    """The updates MongoDB made to the execution that changed only its lease, until it ended."""
    renewals = 0
    pipeline = [{"$match": {"documentKey._id": ObjectId(execution)}}]
    async with await db.executions.watch(pipeline) as changes:
        async for change in changes:
            changed = change.get("updateDescription", {}).get("updatedFields", {})
            if set(changed) == {"leaseUntil"}:
                renewals += 1
            if changed.get("status") == "success":
                return renewals
    raise AssertionError("the change stream ended before the execution did")


async def _payloads_across_lease_renewals(world, db, settings, receive) -> tuple[list[dict], int]:
    """Run a sleeper on a real worker with a short lease; `receive()` yields the subscriber's
    payloads. Returns the payloads until success, and how many lease renewals happened."""
    service = await _service(world)
    execution = await _execute(world, service, "sleeper", seconds=1.2, steps=2)
    renewals = asyncio.create_task(_lease_renewals_until_final(db, execution))
    payloads = []
    worker = start_worker(settings, **HEARTBEATS)
    try:
        async for payload in receive(execution):
            payloads.append(payload)
            if payload["data"]["executionUpdated"]["status"] == "success":
                break
        return payloads, await asyncio.wait_for(renewals, 30)
    finally:
        renewals.cancel()
        stop(worker)


def _assert_each_payload_differs_from_the_one_before(payloads: list[dict]) -> None:
    assert [p["data"]["executionUpdated"]["status"] for p in payloads[-1:]] == ["success"]
    assert "inProgress" in [p["data"]["executionUpdated"]["status"] for p in payloads]
    repeats = [(a, b) for a, b in itertools.pairwise(payloads) if a == b]
    assert repeats == []


async def test_a_grouped_subscriber_never_gets_the_same_payload_twice_across_lease_renewals(
    member, server, db, app, settings
):
    world = await make_world(member)
    await app.state.feed.ready()

    async def receive(execution: str):
        async with subscribe(server, world.client.key, EXECUTION_UPDATED, e=execution) as updates:
            await _members(app, count=1, groups=1)
            while True:
                message = await asyncio.wait_for(updates.next(), 30)
                assert message["type"] == "next", message
                yield message["payload"]

    payloads, renewals = await _payloads_across_lease_renewals(world, db, settings, receive)
    assert renewals >= 5
    _assert_each_payload_differs_from_the_one_before(payloads)


async def test_a_legacy_graphql_ws_subscriber_never_gets_the_same_payload_twice_across_renewals(
    member, server, db, app, settings
):
    """subscriptions-transport-ws clients (here gql's, unmodified) are served by Strawberry's
    own handler, ungrouped; they too get only changes."""
    world = await make_world(member)
    await app.state.feed.ready()
    transport = WebsocketsTransport(
        url=server.replace("http://", "ws://") + "/graphql",
        init_payload={"apiKey": world.client.key},
        subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL],
    )

    async def receive(execution: str):
        async with Client(transport=transport) as session:
            request = GraphQLRequest(EXECUTION_UPDATED, variable_values={"e": execution})
            subscription = session.subscribe(request)
            first = asyncio.create_task(anext(subscription))
            await eventually(_feed_subscribers(app), lambda n: n == 1)
            yield {"data": await asyncio.wait_for(first, 30)}
            while True:
                yield {"data": await asyncio.wait_for(anext(subscription), 30)}

    payloads, renewals = await _payloads_across_lease_renewals(world, db, settings, receive)
    assert transport.subprotocol == WebsocketsTransport.APOLLO_SUBPROTOCOL
    assert renewals >= 5
    _assert_each_payload_differs_from_the_one_before(payloads)


def _feed_subscribers(app):
    async def count() -> int:
        return len(app.state.feed.subscribers)

    return count


async def test_a_member_that_joins_after_a_result_gets_the_next_even_when_it_repeats_it():
    results: asyncio.Queue[str] = asyncio.Queue()
    start = _streaming(results)

    groups = SubscriptionGroups(inbox_size=10)
    async with groups.join("key", start, str.upper, lambda word: word == "error") as first:
        for word in ("a", "a", "b"):
            results.put_nowait(word)
        assert [(await first.get()).encoded for _ in range(2)] == ["A", "B"]
        async with groups.join("key", start, str.upper) as late:
            for word in ("b", "c", "c", "error", "error"):
                results.put_nowait(word)
            assert [(await late.get()).encoded for _ in range(4)] == ["B", "C", "ERROR", "ERROR"]
            assert [(await first.get()).encoded for _ in range(3)] == ["C", "ERROR", "ERROR"]
