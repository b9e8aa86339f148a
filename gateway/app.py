"""The Starlette application: routes, middleware, and the connections' lifetime."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute

from gateway import console, graphiql
from gateway.auth_cache import AuthCache
from gateway.change_feed import ChangeFeed
from gateway.connections import Connections
from gateway.dev_inbox import Inbox
from gateway.downloads import export_archive, item_file, version_item_file
from gateway.graphql_endpoint import GraphQLEndpoint
from gateway.health import healthz, readyz
from gateway.indexes import ensure_indexes
from gateway.metrics import MetricsMiddleware, metrics
from gateway.request_ids import RequestIdMiddleware
from gateway.settings import Settings

log = logging.getLogger("loom.gateway")

INDEX_RETRY_SECONDS = 2.0


async def _ensure_indexes_eventually(connections: Connections) -> None:
    """Indexes are created as soon as MongoDB answers; the gateway does not wait to start."""
    while True:
        try:
            await ensure_indexes(connections.db)
        except PyMongoError as exc:
            log.warning("indexes not ensured yet, MongoDB unavailable: %s", exc)
            await asyncio.sleep(INDEX_RETRY_SECONDS)
        else:
            log.info("indexes ensured db=%s", connections.db.name)
            return


def create_app(settings: Settings, connections: Connections | None = None) -> Starlette:
    """The gateway. Given `connections`, it uses them and leaves closing them to the caller."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = connections is None
        app.state.connections = connections or await Connections.open(settings)
        app.state.settings = settings
        app.state.auth_cache = AuthCache(settings.auth_cache_size, settings.auth_cache_max_age_s)
        app.state.feed = ChangeFeed(
            app.state.connections.db, settings.subscription_queue_size, app.state.auth_cache
        )
        await app.state.feed.start()
        indexes = asyncio.create_task(_ensure_indexes_eventually(app.state.connections))
        try:
            yield
        finally:
            indexes.cancel()
            await app.state.feed.stop()
            if owned:
                await app.state.connections.close()

    graphql = GraphQLEndpoint(settings)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Mount(graphiql.ASSETS_PATH, app=graphiql.assets()),
            Mount(console.ASSETS_PATH, app=console.assets()),
            Route("/console", console.console_page),
            Route("/console/{page:path}", console.console_page),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/items/{item_id}/file", item_file),
            Route("/versions/{version_id}/items/{item_id}/file", version_item_file),
            Route("/commands/{command_id}/archive", export_archive),
            *(Inbox().routes() if settings.dev_inbox else []),
        ],
        middleware=[Middleware(RequestIdMiddleware), Middleware(MetricsMiddleware)],
        lifespan=lifespan,
    )
    app.state.subscription_groups = graphql.subscription_groups
    return app
