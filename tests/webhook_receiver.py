"""A real HTTP receiver on loopback for webhook tests: it records every request it gets and
answers as the test says."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.settings import Settings
from tests.servers import running_uvicorn


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    """time.time() when it arrived."""


Answer = Callable[[Received, int], Awaitable[Response]]
"""(the request, how many this receiver got before it) → the response."""


async def accept(_: Received, __: int) -> Response:
    return Response("ok")


@dataclass
class Receiver:
    answer: Answer = accept
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        got = Received(dict(request.headers), await request.body(), time.time())
        seen = len(self.received)
        self.received.append(got)
        async with self._arrived:
            self._arrived.notify_all()
        response = await self.answer(got, seen)
        await response(scope, receive, send)

    async def wait_for(self, count: int, within_s: float = 30.0) -> list[Received]:
        """The first `count` requests, once they have arrived."""
        async with asyncio.timeout(within_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]


@contextlib.asynccontextmanager
async def receiving(settings: Settings, answer: Answer = accept) -> AsyncIterator[Receiver]:
    receiver = Receiver(answer)
    async with running_uvicorn(receiver, settings) as url:
        receiver.url = f"{url}/hook"
        yield receiver
