"""A webhook receiver for local development: `loom dev` serves it at /dev/inbox, so a webhook
pointed at it shows what Loom sends without any other server.

It keeps the last `KEEP` messages in memory — headers, body, when they came — and lists them
newest first at `GET /dev/inbox`. It answers every POST with 204 and checks no signature: it
is a window onto deliveries, not an integration. It is mounted only when `LOOM_DEV_INBOX` is
set (as `loom dev` sets it), never in a deployment.
"""

import collections
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from resolvers.timestamps import now

KEEP = 100
SHOWN_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "x-request-id")


class Inbox:
    def __init__(self) -> None:
        self.messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEEP)

    async def receive(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        self.messages.appendleft(
            {
                "receivedAt": now().isoformat(),
                "path": request.url.path,
                "headers": {name: request.headers.get(name) for name in SHOWN_HEADERS},
                "body": body,
            }
        )
        return Response(status_code=204)

    async def show(self, _: Request) -> Response:
        return JSONResponse(list(self.messages))

    def routes(self) -> list[Route]:
        return [
            Route("/dev/inbox", self.show, methods=["GET"]),
            Route("/dev/inbox/{name}", self.receive, methods=["POST"]),
        ]
