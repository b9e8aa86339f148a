"""Trusted documents only: an operator imports a manifest (Apollo's persisted-query manifest
or a `{hash: query}` map); with `LOOM_TRUSTED_DOCUMENTS_ONLY` only those documents run — by
text or by hash, over HTTP or WebSocket — and everything else, introspection included, is
FORBIDDEN."""

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from gateway.connections import Connections
from gateway.persisted_documents import COLLECTION, import_manifest
from tests.command_monitoring import gateway
from tests.servers import running_uvicorn
from tests.ws_client import subscribe

GR = "application/graphql-response+json"
GRAPHQL_JS_INTROSPECTION = (Path(__file__).parent / "introspection_graphql_js.graphql").read_text()
ME = "query Me { me { email } }"
TYPENAME = "{ __typename }"


def sha256(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def apq(query: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(query)}}


def apollo_manifest(*queries: str) -> dict:
    return {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": sha256(q), "body": q, "name": f"Op{i}", "type": "query"}
            for i, q in enumerate(queries)
        ],
    }


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "persisted-documents.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
async def trusted(settings, mongo, db, redis):
    """A gateway with `LOOM_TRUSTED_DOCUMENTS_ONLY=true`: its app and a client for it."""
    only_trusted = settings.model_copy(update={"trusted_documents_only": True})
    connections = Connections(mongo=mongo, db=db, redis=redis)
    async with gateway(only_trusted, connections) as served:
        yield served


async def _post(http: httpx.AsyncClient, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Accept": GR, **({"Authorization": f"Bearer {key}"} if key else {})}
    return await http.post("/graphql", json=body, headers=headers)


def _forbidden(response: httpx.Response) -> bool:
    body = response.json()
    return (
        response.status_code == 403
        and "data" not in body
        and [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
        and "loom documents import" in body["errors"][0]["message"]
    )


async def test_an_apollo_manifest_is_imported_as_trusted_documents(db, tmp_path):
    count = await import_manifest(db, write(tmp_path, apollo_manifest(ME, TYPENAME)))
    assert count == 2
    stored = {d["_id"]: d async for d in db[COLLECTION].find()}
    assert {h: (d["query"], d["trusted"]) for h, d in stored.items()} == {
        sha256(ME): (ME, True),
        sha256(TYPENAME): (TYPENAME, True),
    }


async def test_a_hash_to_query_map_is_imported_and_importing_again_changes_nothing(db, tmp_path):
    path = write(tmp_path, {sha256(ME): ME})
    assert await import_manifest(db, path) == 1
    assert await import_manifest(db, path) == 1
    assert await db[COLLECTION].count_documents({"trusted": True}) == 1


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{ not json", "not a JSON file"),
        ([ME], "a manifest is a {hash: query} map"),
        ({sha256(ME): ME, "other": 3}, "a manifest is a {hash: query} map"),
        (
            {"format": "apollo-persisted-query-manifest", "version": 2, "operations": []},
            "version 1",
        ),
        ({"format": "relay", "version": 1, "operations": []}, "format must be"),
        ({"format": "apollo-persisted-query-manifest", "version": 1, "operations": {}}, "a list"),
        (
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": "a"}],
            },
            "operation 0 needs",
        ),
        ({sha256(ME): ME, "a" * 40: TYPENAME}, "is not the sha256 of its document"),
        ({sha256("{ me {"): "{ me {"}, "does not parse"),
    ],
    ids=[
        "not-json",
        "a-list",
        "a-map-with-a-number",
        "apollo-version-2",
        "another-format",
        "operations-not-a-list",
        "operation-without-body",
        "sha1-id",
        "syntax-error",
    ],
)
async def test_a_bad_manifest_is_refused_with_one_line_and_nothing_is_written(
    db, tmp_path, content, complaint
):
    path = write(tmp_path, content)
    with pytest.raises(ValueError, match="^" + str(path)) as refused:
        await import_manifest(db, path)
    assert complaint in str(refused.value)
    assert "\n" not in str(refused.value)
    assert await db[COLLECTION].count_documents({}) == 0


async def test_a_missing_manifest_is_refused_with_one_line(db, tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        await import_manifest(db, tmp_path / "absent.json")


async def test_a_trusted_document_runs_by_text_and_by_hash(trusted, member, db, tmp_path):
    _, http = trusted
    client, _ = await member("acme", "member")
    await import_manifest(db, write(tmp_path, apollo_manifest(ME)))
    by_text = await _post(http, {"query": ME}, client.key)
    by_hash = await _post(http, {"extensions": apq(ME)}, client.key)
    with_both = await _post(http, {"query": ME, "extensions": apq(ME)}, client.key)
    assert by_text.json()["data"]["me"]["email"].endswith("@acme.io")
    assert by_hash.json() == with_both.json() == by_text.json()


@pytest.mark.parametrize(
    "query",
    ["{ me { id } }", TYPENAME, GRAPHQL_JS_INTROSPECTION, "{ me { password } }"],
    ids=["data", "typename", "introspection", "invalid"],
)
async def test_any_other_document_is_forbidden(trusted, member, db, tmp_path, query):
    _, http = trusted
    client, _ = await member("acme", "member")
    await import_manifest(db, write(tmp_path, apollo_manifest(ME)))
    assert _forbidden(await _post(http, {"query": query}, client.key))


async def test_introspection_runs_once_registered(trusted, db, tmp_path):
    _, http = trusted
    await import_manifest(
        db, write(tmp_path, {sha256(GRAPHQL_JS_INTROSPECTION): GRAPHQL_JS_INTROSPECTION})
    )
    response = await _post(http, {"query": GRAPHQL_JS_INTROSPECTION})
    assert response.json()["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_apq_registers_nothing(trusted, member, db):
    _, http = trusted
    client, _ = await member("acme", "member")
    missed = await _post(http, {"extensions": apq(ME)}, client.key)
    assert missed.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert _forbidden(await _post(http, {"query": ME, "extensions": apq(ME)}, client.key))
    assert await db[COLLECTION].count_documents({}) == 0


async def test_documents_apq_stored_before_are_not_trusted(trusted, http, member, db):
    _, only_trusted = trusted
    client, _ = await member("acme", "member")
    # Registered through an ordinary gateway (the `http` fixture's), as APQ does.
    ordinary = await _post(http, {"query": ME, "extensions": apq(ME)}, client.key)
    assert ordinary.json()["data"]["me"]
    assert await db[COLLECTION].count_documents({"trusted": False}) == 1
    by_hash = await _post(only_trusted, {"extensions": apq(ME)}, client.key)
    assert by_hash.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert _forbidden(await _post(only_trusted, {"query": ME}, client.key))


async def test_a_document_imported_while_the_gateway_runs_is_trusted_at_once(
    trusted, member, db, tmp_path
):
    _, http = trusted
    client, _ = await member("acme", "member")
    assert _forbidden(await _post(http, {"query": ME}, client.key))
    await import_manifest(db, write(tmp_path, {sha256(ME): ME}))
    assert (await _post(http, {"query": ME}, client.key)).json()["data"]["me"]


async def test_over_websocket_only_trusted_documents_run(trusted, settings, member, db, tmp_path):
    app, _ = trusted
    client, _ = await member("acme", "member")
    await import_manifest(db, write(tmp_path, {sha256(ME): ME}))
    async with running_uvicorn(app, settings) as url:
        async with subscribe(url, client.key, "{ me { id } }") as refused:
            message = await refused.next()
        async with subscribe(url, client.key, ME) as allowed:
            result = await allowed.next()
    assert message["type"] == "error"
    assert [e["extensions"]["code"] for e in message["payload"]] == ["FORBIDDEN"]
    assert result["type"] == "next"
    assert result["payload"]["data"]["me"]["email"].endswith("@acme.io")
