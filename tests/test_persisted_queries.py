"""Automatic persisted queries as Apollo clients speak them: an unknown hash is
PersistedQueryNotFound, the hash with its query registers it in MongoDB, the hash alone then
runs it — over POST and GET, on every gateway, each keeping its hits in memory."""

import hashlib
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from pymongo import monitoring

from gateway.persisted_documents import COLLECTION, MAX_STORED_BYTES
from tests.command_monitoring import StartedCommands, listening_gateway
from tests.conftest import REPO
from tests.datasets_world import CREATE_PROJECT
from tests.servers import free_port, running_uvicorn
from tests.waiting import eventually

GR = "application/graphql-response+json"
ME = "query Me { me { email } }"


def sha256(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def apq(query: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(query)}}


async def _post(
    base_url: str, body: dict, key: str | None = None, accept: str = GR
) -> httpx.Response:
    headers = {"Accept": accept, **({"Authorization": f"Bearer {key}"} if key else {})}
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.post("/graphql", json=body, headers=headers)


async def _get(base_url: str, params: dict, key: str | None = None) -> httpx.Response:
    headers = {"Accept": GR, **({"Authorization": f"Bearer {key}"} if key else {})}
    encoded = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.get("/graphql", params=encoded, headers=headers)


class PersistedDocumentReads(StartedCommands):
    def __init__(self) -> None:
        self.reads = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == COLLECTION:
            self.reads += 1


@pytest.mark.parametrize(("accept", "status"), [(GR, 404), ("application/json", 200)])
async def test_an_unknown_hash_is_persisted_query_not_found(server, accept, status):
    response = await _post(server, {"extensions": apq(ME)}, accept=accept)
    assert response.status_code == status
    assert response.headers["cache-control"] == "private, no-cache, must-revalidate"
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]


async def test_miss_then_register_then_hit_over_post_and_get(server, member, db):
    client, doc = await member("acme", "member")
    missed = await _post(server, {"extensions": apq(ME)}, client.key)
    assert missed.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

    registered = await _post(server, {"query": ME, "extensions": apq(ME)}, client.key)
    assert registered.json()["data"]["me"]["email"].endswith("@acme.io")
    stored = await db[COLLECTION].find_one({"_id": f"{doc['userId']}:{sha256(ME)}"})
    assert (stored["query"], stored["trusted"]) == (ME, False)

    posted = await _post(server, {"extensions": apq(ME), "operationName": "Me"}, client.key)
    got = await _get(server, {"extensions": apq(ME), "operationName": "Me"}, client.key)
    assert posted.status_code == got.status_code == 200
    assert posted.json() == got.json() == registered.json()


async def test_a_document_registered_on_one_gateway_runs_on_another_which_then_keeps_it(
    server, member, settings, stack, redis
):
    client, _ = await member("acme", "member")
    reads = PersistedDocumentReads()
    async with (
        listening_gateway(settings, stack, redis, reads) as (other_app, _),
        running_uvicorn(other_app, settings) as other,
    ):
        missed = await _post(other, {"extensions": apq(ME)}, client.key)
        assert missed.json()["errors"][0]["message"] == "PersistedQueryNotFound"
        await _post(server, {"query": ME, "extensions": apq(ME)}, client.key)
        first = await _post(other, {"extensions": apq(ME)}, client.key)
        again = await _get(other, {"extensions": apq(ME)}, client.key)
    assert first.json()["data"]["me"]["email"].endswith("@acme.io")
    assert again.json() == first.json()
    # The miss and the first hit read MongoDB; the second hit is served from memory.
    assert reads.reads == 2


async def test_a_hash_that_is_not_the_querys_sha256_is_refused_and_stores_nothing(
    server, member, db
):
    client, _ = await member("acme", "member")
    body = {"query": ME, "extensions": apq("{ __typename }")}
    response = await _post(server, body, client.key)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "sha256" in error["message"]
    assert await db[COLLECTION].count_documents({}) == 0


@pytest.mark.parametrize(
    "persisted",
    [
        {"version": 2, "sha256Hash": sha256(ME)},
        {"version": 1, "sha256Hash": "not-a-hash"},
        {"version": 1, "sha256Hash": sha256(ME).upper()},
        {"version": 1},
        "v1",
    ],
    ids=["version-2", "not-hex", "upper-case", "no-hash", "not-an-object"],
)
async def test_a_malformed_persisted_query_extension_is_bad_user_input(server, persisted):
    response = await _post(server, {"query": ME, "extensions": {"persistedQuery": persisted}})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_documents_from_callers_without_a_valid_key_run_but_are_not_stored(server, db):
    query = "{ __typename }"
    for key in (None, "loom_" + "x" * 43):
        response = await _post(server, {"query": query, "extensions": apq(query)}, key)
        assert response.json() == {"data": {"__typename": "Query"}}
    assert await db[COLLECTION].count_documents({}) == 0


async def test_documents_that_fail_validation_are_not_stored(server, member, db):
    client, _ = await member("acme", "member")
    query = "{ me { password } }"
    response = await _post(server, {"query": query, "extensions": apq(query)}, client.key)
    assert response.status_code == 400
    assert await db[COLLECTION].count_documents({}) == 0


async def test_a_persisted_mutation_sent_over_get_is_405_and_runs_nothing(server, member, db):
    client, doc = await member("acme", "owner")
    variables = {"org": str(doc["orgId"]), "name": "persisted"}
    body = {"query": CREATE_PROJECT, "variables": variables, "extensions": apq(CREATE_PROJECT)}
    assert (await _post(server, body, client.key)).json()["data"]["createProject"]["id"]
    response = await _get(
        server, {"extensions": apq(CREATE_PROJECT), "variables": variables}, client.key
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert await db.projects.count_documents({"name": "persisted"}) == 1


async def test_a_hash_another_user_stored_is_not_found_so_nobody_learns_what_others_ran(
    server, member
):
    """Tenancy: a hash alone runs only its caller's documents. Were the store shared, probing
    a guessed text's hash would tell whether anyone, in any organization, had run it."""
    acme, _ = await member("acme", "owner")
    globex, _ = await member("globex", "owner")
    query = "{ organizations { edges { node { name } } } }"
    registered = await _post(server, {"query": query, "extensions": apq(query)}, acme.key)
    assert [e["node"]["name"] for e in registered.json()["data"]["organizations"]["edges"]] == [
        "acme"
    ]
    assert (await _post(server, {"extensions": apq(query)}, acme.key)).json() == registered.json()
    for other in (globex.key, None):
        probe = await _post(server, {"extensions": apq(query)}, other)
        assert probe.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    sent = await _post(server, {"query": query, "extensions": apq(query)}, globex.key)
    names = [e["node"]["name"] for e in sent.json()["data"]["organizations"]["edges"]]
    assert names == ["globex"]


async def test_a_document_too_long_to_store_runs_but_is_not_stored(server, member, db):
    client, _ = await member("acme", "member")
    query = "# " + "x" * MAX_STORED_BYTES + "\n" + ME
    response = await _post(server, {"query": query, "extensions": apq(query)}, client.key)
    assert response.json()["data"]["me"]["email"].endswith("@acme.io")
    assert await db[COLLECTION].count_documents({}) == 0
    missed = await _post(server, {"extensions": apq(query)}, client.key)
    assert missed.json()["errors"][0]["message"] == "PersistedQueryNotFound"


async def test_graphiql_is_not_served_for_a_get_naming_a_persisted_query(server):
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.get(
            "/graphql",
            params={"extensions": json.dumps(apq(ME))},
            headers={"Accept": "text/html,*/*;q=0.8"},
        )
    assert response.json()["errors"][0]["message"] == "PersistedQueryNotFound"


async def test_an_answer_over_get_is_private_to_its_caller_and_varies_by_media_type(server, member):
    client, _ = await member("acme", "member")
    await _post(server, {"query": ME, "extensions": apq(ME)}, client.key)
    got = await _get(server, {"extensions": apq(ME)}, client.key)
    assert got.json()["data"]["me"]["email"].endswith("@acme.io")
    assert got.headers["cache-control"] == "private"
    assert got.headers["vary"] == "Accept, Authorization"


async def test_a_document_registered_on_one_gateway_process_runs_on_another_process(
    server, member, settings
):
    """Two OS processes, as two replicas behind a load balancer: what one stored, the other
    finds in MongoDB — nothing is shared but the database."""
    client, _ = await member("acme", "member")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "LOOM_MONGODB_URL": str(settings.mongodb_url),
        "LOOM_REDIS_URL": str(settings.redis_url),
        "LOOM_DB_NAME": settings.db_name,
        "LOOM_PORT": str(port),
    }
    other = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def ready() -> int:
            assert process.poll() is None, "loom serve exited"
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{other}/readyz")).status_code
            except httpx.TransportError:
                return 0

        await eventually(ready, lambda status: status == 200, within_s=60)
        missed = await _post(other, {"extensions": apq(ME)}, client.key)
        assert missed.json()["errors"][0]["message"] == "PersistedQueryNotFound"
        registered = await _post(server, {"query": ME, "extensions": apq(ME)}, client.key)
        posted = await _post(other, {"extensions": apq(ME)}, client.key)
        got = await _get(other, {"extensions": apq(ME)}, client.key)
        assert registered.json()["data"]["me"]["email"].endswith("@acme.io")
        assert posted.json() == got.json() == registered.json()
    finally:
        process.terminate()
        process.wait(timeout=30)
