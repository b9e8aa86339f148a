"""MongoDB clients of a test's own whose commands a listener sees, and a gateway on one: for
tests that count or inspect what Loom sends to MongoDB, through a real client, nothing
patched."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pymongo import AsyncMongoClient, monitoring
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.connections import Connections


class StartedCommands(monitoring.CommandListener):
    """Looks at commands as they start; subclasses say how in `started`."""

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Only starts are looked at."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Only starts are looked at."""


@contextlib.asynccontextmanager
async def listening_client(
    stack: dict[str, str], listener: monitoring.CommandListener
) -> AsyncIterator[AsyncMongoClient]:
    client = AsyncMongoClient(stack["mongodb_url"], tz_aware=True, event_listeners=[listener])
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def gateway(
    settings: Any, connections: Connections
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """Another gateway process's app, over the given connections, with its own feed and cache."""
    app = create_app(settings, connections)
    async with app.router.lifespan_context(app):
        await app.state.feed.ready()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as http:
            yield app, http


@contextlib.asynccontextmanager
async def listening_gateway(
    settings: Any, stack: dict[str, str], redis: Any, listener: monitoring.CommandListener
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """`gateway` over a client whose commands `listener` sees."""
    async with listening_client(stack, listener) as mongo:
        connections = Connections(mongo=mongo, db=mongo[settings.db_name], redis=redis)
        async with gateway(settings, connections) as served:
            yield served
