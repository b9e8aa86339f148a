"""The process-wide MongoDB and Redis clients, opened once and shared by every request."""

from dataclasses import dataclass

from arq.connections import ArqRedis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from gateway.settings import Settings


def mongo_client(url: str, settings: Settings, *, wait_s: float | None = None) -> AsyncMongoClient:
    """Writes are acknowledged once a majority has them, whatever the server's default (a
    replica set with an arbiter defaults to w:1): access is read at majority read concern, so
    a grant is visible to the very next request, and no acknowledged write can be rolled
    back.

    Every read goes to the primary (PyMongo's default read preference, kept on purpose; no
    `primaryPreferred` anywhere): access is read there at majority read concern so a revoked
    key is refused at once, and every other read must see the caller's own last write (a
    page after a mutation, a subscription's re-check). A secondary would keep some reads
    answering during an election, with data that may lag behind the caller's writes.

    An operation waits for a suitable server (a primary, after an election) up to `wait_s`,
    or `LOOM_MONGODB_TIMEOUT_MS` for processes that retry on their own (workers, the CLI).
    PyMongo retries a read or a write once after a network error or a stepped-down primary
    (retryReads / retryWrites), and that retry waits again for the new primary.
    """
    timeout_ms = settings.mongodb_timeout_ms if wait_s is None else int(wait_s * 1000)
    return AsyncMongoClient(
        url,
        w="majority",
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        appname="loom",
    )


@dataclass
class Connections:
    mongo: AsyncMongoClient
    db: AsyncDatabase
    redis: ArqRedis

    @classmethod
    async def open(cls, settings: Settings) -> "Connections":
        """Connect lazily: neither server has to be up for the gateway to start. A request
        waits out an election (MongoDB's takes 10 to 12 s with its default settings) for up to
        `LOOM_UNAVAILABLE_WAIT_S` before it answers UNAVAILABLE."""
        if settings.mongodb_url is None or settings.redis_url is None:
            raise ValueError("resolve the embedded stack's URLs before opening connections")
        mongo = mongo_client(settings.mongodb_url, settings, wait_s=settings.unavailable_wait_s)
        redis = ArqRedis.from_url(settings.redis_url, socket_connect_timeout=2)
        return cls(mongo=mongo, db=mongo[settings.db_name], redis=redis)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.mongo.close()
