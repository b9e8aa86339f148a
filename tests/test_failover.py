"""A gateway (real uvicorn) on a three-node replica set whose primary is SIGKILLed, and on a
Valkey that is killed: every answer tells the truth, subscriptions survive, readiness recovers.

Run with `-s` to see the figures: the election as MongoDB dates it, and how long after the
kill the first write through the gateway succeeded.
"""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from bson import ObjectId
from pymongo import MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.bootstrap import create_key
from gateway.http_negotiation import GRAPHQL_RESPONSE_JSON, JSON
from gateway.indexes import ensure_indexes
from gateway.settings import Settings
from resolvers.access import OrgRole
from resolvers.clone import KIND
from resolvers.timestamps import new_document
from tests.datasets_world import CREATE_DATASET, CREATE_PROJECT
from tests.servers import running_uvicorn
from tests.waiting import eventually
from tests.ws_client import subscribe

pytest_plugins = ["tests.replica_set"]

PROJECT = "query($id: ID!) { project(id: $id) { id name } }"
COMMAND_UPDATED = """subscription($c: ID!) { commandUpdated(commandId: $c) { id progress } }"""
CLONE = """mutation($id: ID!, $name: String!) {
  cloneDataset(datasetId: $id, input: {name: $name}) { id } }"""


@dataclass
class Gateway:
    settings: Settings
    app: Starlette
    base_url: str
    http: httpx.AsyncClient
    key: str
    org: dict[str, Any]

    @property
    def db(self) -> AsyncDatabase:
        return self.app.state.connections.db

    async def post(
        self, query: str, media_type: str = GRAPHQL_RESPONSE_JSON, **variables: Any
    ) -> httpx.Response:
        return await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.key}", "Accept": media_type},
        )

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = (await self.post(query, **variables)).json()
        assert not body.get("errors"), body
        return body["data"]


@contextlib.asynccontextmanager
async def gateway(replica_set, **settings: Any) -> AsyncIterator[Gateway]:
    """A gateway with connections of its own (its own waits for MongoDB) on the set."""
    config = Settings(
        mongodb_url=replica_set.mongodb_url,
        redis_url=replica_set.redis_url,
        db_name=f"failover_{uuid.uuid4().hex[:12]}",
        **settings,
    )
    app = create_app(config)
    async with (
        app.router.lifespan_context(app),
        running_uvicorn(app, config) as base_url,
        # Idle connections are dropped before uvicorn's keep-alive (5 s) closes them: reusing
        # one just as the server closes it is a ReadError that no gateway caused.
        httpx.AsyncClient(
            base_url=base_url, timeout=60, limits=httpx.Limits(keepalive_expiry=2)
        ) as http,
    ):
        db = app.state.connections.db
        await ensure_indexes(db)
        key, org = await create_key(db, "acme", OrgRole.OWNER, "owner@acme.io", "test")
        yield Gateway(config, app, base_url, http, key, org)
    # Dropped once the gateway is gone: its change feed would see its database vanish.
    with MongoClient(replica_set.mongodb_url) as client:
        await asyncio.to_thread(client.drop_database, config.db_name)


async def project_of(gw: Gateway) -> str:
    created = await gw.data(CREATE_PROJECT, org=str(gw.org["orgId"]), name="Vision")
    return created["createProject"]["id"]


def codes(body: dict[str, Any]) -> set[str]:
    return {e["extensions"]["code"] for e in body.get("errors") or ()}


async def test_calls_during_an_election_succeed_or_answer_unavailable_never_an_internal_error(
    replica_set,
):
    async with gateway(replica_set, unavailable_wait_s=0.5, unavailable_retry_after_s=1) as gw:
        project = await project_of(gw)
        kill = await replica_set.kill_primary()
        answers: list[tuple[str, str, httpx.Response]] = []
        for attempt in range(200):
            media_type = (GRAPHQL_RESPONSE_JSON, JSON)[attempt % 2]
            name = f"attempt-{attempt}"
            query, mutation = await asyncio.gather(
                gw.post(PROJECT, media_type, id=project),
                gw.post(CREATE_DATASET, media_type, project=project, input={"name": name}),
            )
            answers += [(media_type, "", query), (media_type, name, mutation)]
            if not mutation.json().get("errors"):
                break
        election = await replica_set.wait_for_new_primary(kill)
        print(f"\n{election.report(kill)}; {len(answers)} calls during it")

        unavailable = set()
        for media_type, name, response in answers:
            body = response.json()
            assert codes(body) <= {"UNAVAILABLE"}, body
            if not codes(body):
                assert response.status_code == 200
                continue
            unavailable.add(name)
            error = body["errors"][0]
            assert error["extensions"]["retryAfter"] == 1
            assert "INTERNAL" not in response.text
            if media_type == GRAPHQL_RESPONSE_JSON:
                assert response.status_code == 503
                assert response.headers["retry-after"] == "1"
            else:
                assert response.status_code == 200
        assert unavailable - {""}, "a 0.5 s wait is shorter than the election: some must fail"
        created = {d["name"] async for d in gw.db.datasets.find({}, {"name": 1})}
        sent = {name for _, name, _ in answers if name}
        assert created == sent - unavailable, "a mutation answered UNAVAILABLE changed nothing"


async def test_a_write_sent_during_an_election_waits_for_the_new_primary_and_succeeds(
    replica_set,
):
    async with gateway(replica_set) as gw:
        project = await project_of(gw)
        kill = await replica_set.kill_primary()
        response = await gw.post(CREATE_DATASET, project=project, input={"name": "patient"})
        first_write_s = time.monotonic() - kill.monotonic
        assert response.status_code == 200, response.text
        assert not response.json().get("errors"), response.text
        election = await replica_set.wait_for_new_primary(kill)
        elected_s = election.after_kill_s(kill, "lastElectionDate")
        print(
            f"\nfirst successful write through the gateway {first_write_s:.2f} s after the kill"
            f" (recovery {first_write_s - elected_s:+.2f} s after MongoDB's election); "
            f"{election.report(kill)}"
        )
        assert first_write_s < gw.settings.unavailable_wait_s
        assert await gw.db.datasets.count_documents({"name": "patient"}) == 1


async def _registered(app: Starlette, count: int) -> None:
    async def subscribers() -> int:
        return len(app.state.feed.subscribers)

    await eventually(subscribers, lambda n: n >= count)


async def test_a_subscription_opened_before_the_election_keeps_delivering_after_it(replica_set):
    async with gateway(replica_set) as gw:
        project = ObjectId(await project_of(gw))
        command = new_document(
            gw.org["userId"],
            orgId=gw.org["orgId"],
            projectId=project,
            type=KIND,
            status="created",
            progress=0,
            input={},
            cursor=None,
            attempts=0,
            leaseUntil=None,
            worker=None,
            error=None,
        )
        await gw.db.commands.insert_one(command)
        await gw.app.state.feed.ready()
        async with subscribe(gw.base_url, gw.key, COMMAND_UPDATED, c=str(command["_id"])) as feed:
            await _registered(gw.app, 1)

            async def progress(percent: int) -> None:
                await gw.db.commands.update_one(
                    {"_id": command["_id"]}, {"$set": {"progress": percent}}
                )
                message = await asyncio.wait_for(feed.next(), 30)
                assert message["type"] == "next", message
                assert message["payload"]["data"]["commandUpdated"]["progress"] == percent

            await progress(10)
            kill = await replica_set.kill_primary()
            await replica_set.wait_for_new_primary(kill)
            await progress(50)
            await progress(90)
        assert not gw.app.state.feed.subscribers


async def test_readyz_names_mongodb_during_an_election_then_recovers_without_raising(
    replica_set,
):
    async with gateway(replica_set, readiness_timeout_s=0.5) as gw:
        project = await project_of(gw)
        assert (await gw.http.get("/readyz")).status_code == 200
        kill = await replica_set.kill_primary()
        seen: list[httpx.Response] = []
        # Requests waiting for a primary beside the probes, as in production.
        waiting = [asyncio.create_task(gw.post(PROJECT, id=project)) for _ in range(4)]

        async def probe() -> set[int]:
            probes = await asyncio.gather(*(gw.http.get("/readyz") for _ in range(4)))
            seen.extend(probes)
            return {r.status_code for r in probes}

        await eventually(probe, lambda statuses: 503 in statuses, within_s=30)
        await eventually(probe, lambda statuses: statuses == {200}, within_s=60)
        await asyncio.gather(*waiting)
        await replica_set.wait_for_new_primary(kill)
        assert {r.status_code for r in seen} <= {200, 503}
        down = [r.json() for r in seen if r.status_code == 503]
        assert down
        assert all(set(body["failing"]) == {"mongodb"} for body in down)
        assert not any("RuntimeError" in json.dumps(body) for body in down), down


async def test_a_redis_outage_fails_nothing_that_committed_and_readiness_recovers(replica_set):
    async with gateway(replica_set) as gw:
        project = await project_of(gw)
        dataset = (await gw.data(CREATE_DATASET, project=project, input={"name": "cars"}))[
            "createDataset"
        ]["id"]
        redis = gw.app.state.connections.redis
        await asyncio.to_thread(replica_set.stack.kill_valkey)

        down = await gw.http.get("/readyz")
        assert down.status_code == 503
        assert set(down.json()["failing"]) == {"redis"}
        assert (await gw.data(PROJECT, id=project))["project"]["id"] == project
        during = ObjectId((await gw.data(CLONE, id=dataset, name="during"))["cloneDataset"]["id"])
        left = await gw.db.commands.find_one({"_id": during})
        assert (left["status"], left["attempts"]) == ("created", 0), "left to the sweep"

        await asyncio.to_thread(replica_set.stack.restart_valkey)
        await eventually(lambda: gw.http.get("/readyz"), lambda r: r.status_code == 200)
        after = (await gw.data(CLONE, id=dataset, name="after"))["cloneDataset"]["id"]
        assert await redis.exists(f"arq:job:command:{after}:0") == 1
        assert await redis.exists(f"arq:job:command:{during}:0") == 0


async def test_an_operation_over_websocket_during_an_election_gets_an_unavailable_error(
    replica_set,
):
    async with gateway(
        replica_set, unavailable_wait_s=0.5, unavailable_retry_after_s=1, auth_cache_size=0
    ) as gw:
        project = await project_of(gw)
        url = gw.base_url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": gw.key}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            kill = await replica_set.kill_primary()
            payload = {"query": PROJECT, "variables": {"id": project}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            await replica_set.wait_for_new_primary(kill)
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["UNAVAILABLE"], message
    assert errors[0]["extensions"]["retryAfter"] == 1
