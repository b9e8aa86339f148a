"""A graphql-transport-ws client for tests: one connection, authenticated, one operation."""

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets


class Subscription:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    async def next(self) -> dict[str, Any]:
        """The next message of the operation: `next` payloads, `error` or `complete`."""
        return json.loads(await self.ws.recv())


@contextlib.asynccontextmanager
async def subscribe(
    base_url: str, key: str, query: str, operation_id: str = "1", **variables: Any
) -> AsyncIterator[Subscription]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": query, "variables": variables}
        await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))
        yield Subscription(ws)
