"""The process-wide MongoDB and Redis clients, opened once and shared by every request."""

from dataclasses import dataclass

from arq.connections import ArqRedis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from gateway.settings import Settings


def mongo_client(url: str, settings: Settings) -> AsyncMongoClient:
    """Writes are acknowledged once a majority has them, whatever the server's default (a
    replica set with an arbiter defaults to w:1): access is read at majority read concern, so
    a grant is visible to the very next request, and no acknowledged write can be rolled
    back."""
    return AsyncMongoClient(
        url,
        w="majority",
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        appname="loom",
    )


@dataclass
class Connections:
    mongo: AsyncMongoClient
    db: AsyncDatabase
    redis: ArqRedis

    @classmethod
    async def open(cls, settings: Settings) -> "Connections":
        """Connect lazily: neither server has to be up for the gateway to start."""
        if settings.mongodb_url is None or settings.redis_url is None:
            raise ValueError("resolve the embedded stack's URLs before opening connections")
        mongo = mongo_client(settings.mongodb_url, settings)
        redis = ArqRedis.from_url(settings.redis_url, socket_connect_timeout=2)
        return cls(mongo=mongo, db=mongo[settings.db_name], redis=redis)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.mongo.close()
