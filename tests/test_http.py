"""The gateway over a real uvicorn: probes, metrics, GraphiQL, POST/GET and WebSocket auth."""

import json

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"


def _ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/graphql"


async def test_health_and_readiness_answer_through_uvicorn(server):
    async with httpx.AsyncClient(base_url=server) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}


async def test_graphiql_is_served_to_browsers(server):
    async with httpx.AsyncClient(base_url=server) as http:
        page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


async def test_queries_work_over_get_and_post(server, member):
    client, doc = await member("acme", "owner")
    headers = {"Authorization": f"Bearer {client.key}"}
    async with httpx.AsyncClient(base_url=server, headers=headers) as http:
        got = await http.get("/graphql", params={"query": "{ me { id } }"})
        posted = await http.post("/graphql", json={"query": "{ me { id } }"})
    assert got.json() == posted.json() == {"data": {"me": {"id": str(doc["userId"])}}}


async def test_metrics_count_requests_and_errors_by_code(server):
    async with httpx.AsyncClient(base_url=server) as http:
        await http.post("/graphql", json={"query": "{ me { id } }"})
        text = (await http.get("/metrics")).text
    assert 'loom_http_requests_total{method="POST",path="/graphql",status="200"}' in text
    assert 'loom_graphql_errors_total{code="UNAUTHENTICATED"}' in text
    assert "loom_http_request_duration_seconds_bucket" in text


async def test_websocket_with_a_valid_key_is_acknowledged_and_runs_operations(server, member):
    client, doc = await member("acme", "owner")
    async with websockets.connect(_ws_url(server), subprotocols=[PROTOCOL]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {client.key}"}}
        await ws.send(json.dumps(init))
        ack = json.loads(await ws.recv())
        assert ack == {"type": "connection_ack", "payload": {"userId": str(doc["userId"])}}
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { email } }"}})
        )
        result = json.loads(await ws.recv())
        assert result["type"] == "next"
        assert result["payload"]["data"]["me"]["email"].endswith("@acme.io")
        assert json.loads(await ws.recv()) == {"id": "1", "type": "complete"}


@pytest.mark.parametrize(
    "payload",
    [{}, {"Authorization": "Bearer loom_wrong"}, {"apiKey": 42}],
    ids=["no-key", "bad-key", "not-a-string"],
)
async def test_websocket_without_a_valid_key_is_closed_with_4403(server, payload):
    async with websockets.connect(_ws_url(server), subprotocols=[PROTOCOL]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4403


async def test_websocket_with_a_revoked_key_is_closed_with_4403(server, member):
    client, doc = await member("acme", "owner")
    await client.data("mutation($id: ID!) { revokeApiKey(id: $id) { id } }", id=str(doc["_id"]))
    async with websockets.connect(_ws_url(server), subprotocols=[PROTOCOL]) as ws:
        init = {"type": "connection_init", "payload": {"apiKey": client.key}}
        await ws.send(json.dumps(init))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4403
