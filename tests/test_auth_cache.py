"""The authentication cache: used while the change feed is open, cleared by every change that
could make it stale — from this gateway, another gateway or a direct write — and never
keeping a lookup that raced with a change."""

import asyncio
import json

import pytest
import websockets
from bson import ObjectId
from graphql import parse
from pymongo import monitoring
from starlette.applications import Starlette

from gateway.auth_cache import KEEPS_ACCESS, AuthCache, keeps_access
from gateway.change_feed import ACCESS, AccessChanged, changes_access
from gateway.connections import Connections, mongo_client
from resolvers.errors import Unauthenticated
from tests.command_monitoring import (
    StartedCommands,
    gateway,
    listening_client,
    listening_gateway,
)
from tests.datasets_world import make_world
from tests.graphql_client import GraphQLClient
from tests.waiting import eventually

ME = "{ me { id email } }"
ORGANIZATION = "query($id: ID!) { organization(id: $id) { id } }"
REVOKE_KEY = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }"
CREATE_PROJECT = """mutation($org: ID!) {
  createProject(organizationId: $org, input: {name: "Vision"}) { id } }"""


class KeyLookups(StartedCommands):
    """Counts the aggregations on api_keys: one per authentication that missed the cache."""

    def __init__(self) -> None:
        self.count = 0
        self.read_concerns: list[dict | None] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "aggregate" and event.command.get("aggregate") == "api_keys":
            self.count += 1
            self.read_concerns.append(event.command.get("readConcern"))


async def caught_up(app: Starlette, db) -> None:
    """Wait until the app's feed has seen every change written so far: a change stream
    delivers in order, so once a marker written now reaches the feed, so has everything
    before it."""
    feed = app.state.feed
    await feed.ready()
    marker = ObjectId()
    async with feed.subscribe("executions", lambda doc: doc["_id"] == marker) as barrier:
        await db.executions.insert_one({"_id": marker})
        while isinstance(await asyncio.wait_for(barrier.next(), 10), AccessChanged):
            continue


async def test_a_key_is_looked_up_once_while_the_feed_is_open(member, settings, stack, redis):
    client, _ = await member("acme", "owner")
    lookups = KeyLookups()
    async with listening_gateway(settings, stack, redis, lookups) as (app, http):
        other = GraphQLClient(http, client.key)
        for _ in range(3):
            assert (await other.data(ME))["me"]["id"]
        assert lookups.count == 1
        assert len(app.state.auth_cache) == 1


async def test_a_revoked_key_is_refused_at_once_here_and_soon_by_another_gateway(
    member, settings, mongo, db, redis, app
):
    client, doc = await member("acme", "owner")
    await caught_up(app, db)
    connections = Connections(mongo=mongo, db=db, redis=redis)
    async with gateway(settings, connections) as (other_app, http):
        other = GraphQLClient(http, client.key)
        for gateway_app, caller in ((app, client), (other_app, other)):
            assert (await caller.data(ME))["me"]["id"]
            assert len(gateway_app.state.auth_cache) == 1
        await client.data(REVOKE_KEY, id=str(doc["_id"]))
        assert await client.code(ME) == "UNAUTHENTICATED"

        async def codes() -> list[str]:
            body = await other.execute(ME)
            return [e["extensions"]["code"] for e in body.get("errors") or []]

        await eventually(codes, lambda seen: seen == ["UNAUTHENTICATED"], within_s=10)


async def test_a_membership_removed_by_a_direct_write_ends_access_on_this_gateway(member, db, app):
    client, doc = await member("acme", "admin")
    org = str(doc["orgId"])
    await caught_up(app, db)
    assert (await client.data(ORGANIZATION, id=org))["organization"]["id"] == org
    assert len(app.state.auth_cache) == 1
    await db.org_members.delete_one({"userId": doc["userId"], "orgId": doc["orgId"]})

    async def codes() -> list[str]:
        body = await client.execute(ORGANIZATION, id=org)
        return [e["extensions"]["code"] for e in body.get("errors") or []]

    await eventually(codes, lambda seen: seen == ["NOT_FOUND"], within_s=10)


async def test_a_lookup_that_raced_with_a_change_is_not_kept(member, db):
    client, _ = await member("acme", "owner")
    cache = AuthCache(maxsize=10)
    cache.open()
    lookup = asyncio.create_task(cache.find_key(db, client.key))
    await asyncio.sleep(0)  # let the lookup reach MongoDB, then change something
    cache.invalidate()
    assert (await lookup)["userId"]
    assert len(cache) == 0
    await cache.find_key(db, client.key)
    assert len(cache) == 1


async def test_nothing_is_kept_while_the_feed_is_lost_and_a_revoked_key_fails(member, db):
    client, doc = await member("acme", "owner")
    cache = AuthCache(maxsize=10)
    await cache.find_key(db, client.key)
    assert len(cache) == 0
    cache.open()
    await cache.find_key(db, client.key)
    assert len(cache) == 1
    cache.close()
    assert len(cache) == 0
    await db.api_keys.update_one({"_id": doc["_id"]}, {"$set": {"revokedAt": doc["createdAt"]}})
    with pytest.raises(Unauthenticated):
        await cache.find_key(db, client.key)


def _change(collection: str, operation: str, **description: object) -> dict:
    change = {"ns": {"coll": collection}, "operationType": operation}
    if description:
        change["updateDescription"] = {"removedFields": [], "truncatedArrays": [], **description}
    return change


@pytest.mark.parametrize(
    ("change", "clears"),
    [
        (_change("api_keys", "update", updatedFields={"lastUsedAt": 1}), False),
        (_change("api_keys", "update", updatedFields={"lastUsedAt": 1, "revokedAt": 1}), True),
        (_change("api_keys", "update", updatedFields={}, removedFields=["lastUsedAt"]), False),
        (_change("api_keys", "insert"), True),
        (_change("api_keys", "delete"), True),
        (_change("org_members", "delete"), True),
        (_change("org_members", "update", updatedFields={"role": "member"}), True),
        (_change("users", "update", updatedFields={"email": "x@y.io"}), True),
        (_change("organizations", "replace"), True),
        (_change("organizations", "update", updatedFields={"membersVersion": 2}), False),
        (_change("organizations", "update", updatedFields={"name": "Renamed"}), True),
        (_change("project_members", "delete"), True),
    ],
)
def test_every_access_change_but_bookkeeping_clears_the_cache(change, clears):
    assert changes_access(change) is clears


async def test_concurrent_requests_with_a_key_not_cached_share_one_majority_read(
    member, settings, stack
):
    client, _ = await member("acme", "owner")
    lookups = KeyLookups()
    async with listening_client(stack, lookups) as mongo:
        db = mongo[settings.db_name]
        cache = AuthCache(maxsize=10)
        cache.open()
        found = await asyncio.gather(*(cache.find_key(db, client.key) for _ in range(20)))
        assert lookups.count == 1
        assert all(f is found[0] for f in found)

        cache.invalidate()

        async def after_a_change() -> dict:
            cache.invalidate()  # a change arrives while the first lookup is under way
            return await cache.find_key(db, client.key)

        await asyncio.gather(cache.find_key(db, client.key), after_a_change())
        assert lookups.count == 3

        bogus = "loom_" + "0" * 43
        refused = await asyncio.gather(
            *(cache.find_key(db, bogus) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, Unauthenticated) for r in refused)
        assert lookups.count == 4
        # Only majority-committed grants, as the feed that clears the cache reports them.
        assert lookups.read_concerns == [{"level": "majority"}] * 4


async def test_the_cache_keeps_the_most_recently_used_keys(member, db):
    first, _ = await member("acme", "owner")
    second, _ = await member("acme", "admin")
    cache = AuthCache(maxsize=1)
    cache.open()
    await cache.find_key(db, first.key)
    found = await cache.find_key(db, second.key)
    assert len(cache) == 1
    assert await cache.find_key(db, second.key) is found


async def test_a_mutation_that_may_change_access_clears_the_cache_of_its_gateway_before_it_answers(
    member, db, app
):
    client, doc = await member("acme", "owner")
    await caught_up(app, db)
    assert (await client.data(ME))["me"]["id"]
    assert len(app.state.auth_cache) == 1
    created = await client.data(CREATE_PROJECT, org=str(doc["orgId"]))
    assert created["createProject"]["id"]
    assert len(app.state.auth_cache) == 0


class AccessWrites(StartedCommands):
    """The write commands sent to a collection access is built from (change_feed.ACCESS)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in ("insert", "update", "delete", "findAndModify"):
            collection = event.command[name]
            if collection in ACCESS:
                self.seen.append((name, collection))
        elif name == "bulkWrite":
            self.seen += [
                (name, ns["ns"].split(".", 1)[1])
                for ns in event.command["nsInfo"]
                if ns["ns"].split(".", 1)[1] in ACCESS
            ]


SERVICE = """mutation($p: ID!) {
  createService(projectId: $p, input: {name: "tools", functions: ["echo"]}) { id } }"""
KEEPING = [
    ("execute", 'mutation($s: ID!) { execute(serviceId: $s, input: {function: "echo"}) { id } }'),
    ("terminateExecution", "mutation($e: ID!) { terminateExecution(id: $e) { status } }"),
    ("rerunExecution", "mutation($e: ID!) { rerunExecution(id: $e) { status } }"),
    (
        "executeBatch",
        'mutation($s: ID!) { executeBatch(serviceId: $s, input: {function: "echo"}) { id } }',
    ),
    ("rerunBatch", "mutation($p: ID!) { rerunBatch(projectId: $p) { id } }"),
]


async def test_execution_mutations_write_no_access_collection_and_keep_the_cache(
    member, settings, stack, redis, db
):
    world = await make_world(member)
    service = (await world.client.data(SERVICE, p=world.project))["createService"]["id"]
    assert sorted(name for name, _ in KEEPING) == sorted(KEEPS_ACCESS)
    writes = AccessWrites()
    async with listening_gateway(settings, stack, redis, writes) as (app, http):
        client = GraphQLClient(http, world.client.key)
        assert (await client.data(ME))["me"]["id"]  # cached, its lastUsedAt already written
        writes.seen.clear()
        execution = None
        for name, mutation in KEEPING:
            answer = await client.data(mutation, s=service, p=world.project, e=execution)
            execution = execution or answer[name]["id"]
            assert len(app.state.auth_cache) == 1, name
        assert writes.seen == []
        assert await db.commands.count_documents({"projectId": ObjectId(world.project)}) == 2
        revoked = await client.execute(REVOKE_KEY, id=str(ObjectId()))
        assert revoked["errors"]
        assert len(app.state.auth_cache) == 0


@pytest.mark.parametrize(
    ("document", "keeps"),
    [
        ('mutation { execute(serviceId: "s", input: {function: "echo"}) { id } }', True),
        (
            'mutation { ran: execute(serviceId: "s", input: {function: "e"}) { id } __typename }',
            True,
        ),
        ("{ me { id } }", True),
        ('mutation { revokeApiKey(id: "k") { id } }', False),
        (
            'mutation { execute(serviceId: "s", input: {function: "e"}) { id } '
            'createProject(organizationId: "o", input: {name: "p"}) { id } }',
            False,
        ),
        ('mutation { executeBatch: revokeApiKey(id: "k") { id } }', False),
        (
            'mutation { ...F } fragment F on Mutation { execute(serviceId: "s", '
            'input: {function: "e"}) { id } }',
            False,
        ),
        (
            'mutation { ... on Mutation { execute(serviceId: "s", '
            'input: {function: "e"}) { id } } }',
            False,
        ),
        ('query Q { me { id } } mutation M { removeOrganizationMember(id: "m") }', False),
    ],
)
def test_only_documents_whose_mutations_all_keep_access_leave_the_cache(document, keeps):
    assert keeps_access(parse(document)) is keeps


async def test_an_entry_past_its_max_age_is_looked_up_again(member, db):
    client, doc = await member("acme", "owner")
    revoked = {"$set": {"revokedAt": doc["createdAt"]}}
    for max_age_s, outcome in ((60.0, "stale"), (0.0, "refused")):
        cache = AuthCache(maxsize=10, max_age_s=max_age_s)
        cache.open()
        await db.api_keys.update_one({"_id": doc["_id"]}, {"$set": {"revokedAt": None}})
        await cache.find_key(db, client.key)
        await db.api_keys.update_one({"_id": doc["_id"]}, revoked)  # unseen: no feed here
        try:
            await cache.find_key(db, client.key)
            seen = "stale"
        except Unauthenticated:
            seen = "refused"
        assert seen == outcome


async def test_a_websocket_whose_key_was_revoked_is_closed_at_its_next_operation(
    member, server, app
):
    client, doc = await member("acme", "owner")
    url = server.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": client.key}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        me = {"id": "1", "type": "subscribe", "payload": {"query": ME}}
        await ws.send(json.dumps(me))
        assert json.loads(await ws.recv())["payload"]["data"]["me"]["id"]
        await client.data(REVOKE_KEY, id=str(doc["_id"]))
        await ws.send(json.dumps({**me, "id": "2"}))
        await asyncio.wait_for(ws.wait_closed(), 10)
    assert ws.close_code == 4403


async def test_writes_are_acknowledged_by_the_majority_that_access_reads_see(stack, settings):
    client = mongo_client(stack["mongodb_url"], settings)
    try:
        assert client.write_concern.document == {"w": "majority"}
    finally:
        await client.close()
