"""What every resolver receives: the caller, the connections and per-request DataLoaders."""

import asyncio
from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from strawberry.dataloader import DataLoader

from gateway.connections import Connections
from gateway.settings import Settings
from resolvers.access import Access
from resolvers.api_keys import authenticate
from resolvers.errors import NotFound, Unauthenticated


def by_id(db: AsyncDatabase, collection: str) -> DataLoader[ObjectId, dict[str, Any]]:
    """Batch every `load(id)` of one tick into a single `$in` query."""

    async def load(ids: list[ObjectId]) -> list[dict[str, Any] | BaseException]:
        found = {d["_id"]: d async for d in db[collection].find({"_id": {"$in": ids}})}
        return [found.get(i) or NotFound(f"{collection} {i} not found") for i in ids]

    return DataLoader(load_fn=load)


class Loaders:
    """One set per request: caches must never outlive it, or tenancy could leak through them."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.users = by_id(db, "users")


def bearer_key(headers: Mapping[str, Any]) -> str | None:
    value = headers.get("authorization") or headers.get("Authorization")
    if not isinstance(value, str):
        return None
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


class Context:
    def __init__(
        self,
        connections: Connections,
        settings: Settings,
        request_id: str,
        api_key: str | None,
    ) -> None:
        self.connections = connections
        self.settings = settings
        self.request_id = request_id
        self.api_key = api_key
        self.loaders = Loaders(connections.db)
        self.connection_params: dict[str, Any] | None = None
        self._access: asyncio.Future[Access] | None = None

    async def access(self) -> Access:
        """The authenticated caller; UNAUTHENTICATED when the request carries no valid key.

        Resolved once per request, however many fields ask for it concurrently.
        """
        if self._access is None:
            self._access = asyncio.ensure_future(self._authenticate())
        return await self._access

    async def _authenticate(self) -> Access:
        if self.api_key is None:
            raise Unauthenticated("Send an API key: 'Authorization: Bearer <key>'")
        access, user = await authenticate(self.connections.db, self.api_key)
        self.loaders.users.prime(user["_id"], user)
        return access
