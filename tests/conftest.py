"""The test harness: one real embedded stack per session, one database per test.

Set LOOM_TEST_MONGODB_URL and LOOM_TEST_REDIS_URL to run against servers of your own (a
replica set is required).
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.bootstrap import create_key
from gateway.connections import Connections, mongo_client
from gateway.embedded import EmbeddedStack
from gateway.indexes import ensure_indexes
from gateway.settings import Settings
from resolvers.access import OrgRole
from resolvers.api_keys import issue_key
from tests.graphql_client import GraphQLClient
from tests.servers import running_uvicorn

pytest_plugins = ["tests.chromium"]
"""The browser fixture the browser tests share."""

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    mongodb_url, redis_url = (
        os.environ.get("LOOM_TEST_MONGODB_URL"),
        os.environ.get("LOOM_TEST_REDIS_URL"),
    )
    if mongodb_url and redis_url:
        yield {"mongodb_url": mongodb_url, "redis_url": redis_url}
        return
    root = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(root, persistent=False, lib_dir=REPO / ".loom" / "lib") as embedded:
        yield {"mongodb_url": embedded.mongodb_url, "redis_url": embedded.redis_url}


@pytest.fixture
def settings(stack: dict[str, str]) -> Settings:
    return Settings(**stack, db_name=f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
async def mongo(stack: dict[str, str]) -> AsyncIterator[AsyncMongoClient]:
    client = mongo_client(stack["mongodb_url"], Settings(**stack))
    yield client
    await client.close()


@pytest.fixture(scope="session")
async def redis(stack: dict[str, str]) -> AsyncIterator[ArqRedis]:
    client = ArqRedis.from_url(stack["redis_url"])
    yield client
    await client.aclose()


async def end_abandoned_transactions(mongo: AsyncMongoClient) -> None:
    """End the transactions a process the test killed left open. MongoDB would abort them
    only at their 60 s lifetime limit, holding their locks until then, so dropping the test's
    database would wait for them. Each test process has its own mongod, so every idle
    transaction left at a test's end is that test's."""
    pipeline = [
        {"$currentOp": {"idleSessions": True, "allUsers": True}},
        {"$match": {"transaction": {"$exists": True}, "active": False}},
    ]
    idle = await (await mongo.admin.aggregate(pipeline)).to_list()
    sessions = [op["lsid"] for op in idle if "lsid" in op]
    if sessions:
        await mongo.admin.command("killSessions", sessions)


@pytest.fixture
async def db(mongo: AsyncMongoClient, settings: Settings) -> AsyncIterator[AsyncDatabase]:
    database = mongo[settings.db_name]
    await ensure_indexes(database)
    yield database
    await end_abandoned_transactions(mongo)
    await mongo.drop_database(settings.db_name)


@pytest.fixture
async def app(
    settings: Settings, mongo: AsyncMongoClient, db: AsyncDatabase, redis: ArqRedis
) -> AsyncIterator[Starlette]:
    application = create_app(settings, Connections(mongo=mongo, db=db, redis=redis))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as client:
        yield client


@pytest.fixture
def gql(http: httpx.AsyncClient):
    """`gql(key)` — a GraphQL client through the real ASGI app, authenticated with `key`."""

    def client(key: str | None = None) -> GraphQLClient:
        return GraphQLClient(http, key)

    return client


@pytest.fixture
def member(db: AsyncDatabase, gql):
    """`await member("acme", "admin")` — a user with that org role and a client for it.

    The key is limited to that organization, unless `scoped=False`: then it acts in all of the
    user's organizations (and may create new ones).
    """

    async def make(
        org: str, role: str, email: str | None = None, scoped: bool = True
    ) -> tuple[GraphQLClient, Any]:
        address = email or f"{role}-{uuid.uuid4().hex[:8]}@{org.lower()}.io"
        key, doc = await create_key(db, org, OrgRole(role), address, "test")
        if not scoped:
            key, unscoped = await issue_key(db, doc["userId"], "unscoped", None)
            doc = {**unscoped, "orgId": doc["orgId"]}
        return gql(key), doc

    return make


@pytest.fixture
async def server(app: Starlette, settings: Settings) -> AsyncIterator[str]:
    """A real uvicorn serving the app on a free loopback port; yields its base URL."""
    async with running_uvicorn(app, settings) as base_url:
        yield base_url
