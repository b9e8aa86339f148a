"""What every resolver receives: the caller, the connections and per-request DataLoaders."""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from functools import cached_property
from typing import Any

import redis.exceptions
from bson import ObjectId, json_util
from pymongo.asynchronous.database import AsyncDatabase
from strawberry.dataloader import DataLoader

from gateway.change_feed import ChangeFeed
from gateway.connections import Connections
from gateway.settings import Settings
from resolvers import annotations, datasets, items, projects
from resolvers.access import Access
from resolvers.errors import NotFound, Unauthenticated
from resolvers.pagination import Page
from resolvers.versions import lifecycle
from triggers import commands
from triggers import executions as execution_jobs
from triggers.webhooks import delivery_queue
from triggers.webhooks.address_guard import AddressGuard
from triggers.webhooks.delivery_queue import Due
from triggers.webhooks.secret_key import secret_box
from triggers.webhooks.signing import SecretBox

log = logging.getLogger("loom.gateway")


def by_id(db: AsyncDatabase, collection: str) -> DataLoader[ObjectId, dict[str, Any]]:
    """Batch every `load(id)` of one tick into a single `$in` query."""

    async def load(ids: list[ObjectId]) -> list[dict[str, Any] | BaseException]:
        found = {d["_id"]: d async for d in db[collection].find({"_id": {"$in": ids}})}
        return [found.get(i) or NotFound(f"{collection} {i} not found") for i in ids]

    return DataLoader(load_fn=load)


AnnotationsKey = tuple[ObjectId, str, tuple[str, ...] | None]
"""(item id, the canonical JSON of the MongoDB query the annotations must match, the document
fields to read — None for all)."""


def annotations_of_items(db: AsyncDatabase) -> DataLoader[AnnotationsKey, list[dict[str, Any]]]:
    """Batch `item.annotations(filter)` fields: one query per distinct filter and selection
    per tick."""

    async def load(keys: list[AnnotationsKey]) -> list[list[dict[str, Any]]]:
        by_read: dict[tuple[str, tuple[str, ...] | None], list[ObjectId]] = {}
        for item_id, query, fields in keys:
            by_read.setdefault((query, fields), []).append(item_id)
        found: dict[AnnotationsKey, list[dict[str, Any]]] = {}
        for (query, fields), item_ids in by_read.items():
            grouped = await annotations.of_items(db, item_ids, json_util.loads(query), fields)
            found.update({(item_id, query, fields): docs for item_id, docs in grouped.items()})
        return [found.get(key, []) for key in keys]

    return DataLoader(load_fn=load)


ConnectionKey = tuple[ObjectId, Hashable]
"""(parent id, the connection's arguments): parents asking with equal arguments share a query."""


def connections_of(
    fetch: Callable[[list[ObjectId], Any], Awaitable[dict[ObjectId, Page]]],
) -> DataLoader[ConnectionKey, Page]:
    """Batch a nested connection (`dataset.items`, `project.datasets`…) over its parents."""

    async def load(keys: list[ConnectionKey]) -> list[Page]:
        by_arguments: dict[Hashable, list[ObjectId]] = {}
        for parent, arguments in keys:
            by_arguments.setdefault(arguments, []).append(parent)
        pages: dict[ConnectionKey, Page] = {}
        for arguments, parents in by_arguments.items():
            found = await fetch(parents, arguments)
            pages.update({(parent, arguments): page for parent, page in found.items()})
        return [pages[key] for key in keys]

    return DataLoader(load_fn=load)


class Loaders:
    """One set per request: caches must never outlive it, or tenancy could leak through them.
    Each loader is made on first use — most requests need one or two of them.

    The by-id loaders skip access checks: use them only for relations of documents that
    already passed one (an item's dataset, a member's user), never for ids a client sent. The
    connection loaders apply the caller's access scope to every page they read.
    """

    def __init__(self, db: AsyncDatabase, access: Callable[[], Awaitable[Access]]) -> None:
        self._db = db
        self._access = access

    @cached_property
    def users(self) -> DataLoader[ObjectId, dict[str, Any]]:
        return by_id(self._db, "users")

    @cached_property
    def datasets(self) -> DataLoader[ObjectId, dict[str, Any]]:
        return by_id(self._db, "datasets")

    @cached_property
    def items(self) -> DataLoader[ObjectId, dict[str, Any]]:
        return by_id(self._db, "items")

    @cached_property
    def version_items(self) -> DataLoader[tuple[ObjectId, ObjectId], dict[str, Any]]:
        """(version id, item id) → that item as the version holds it. The version must have
        passed the caller's access check."""

        async def load(keys: list[tuple[ObjectId, ObjectId]]) -> list[Any]:
            query = {
                "versionId": {"$in": list({version for version, _ in keys})},
                "itemId": {"$in": list({item for _, item in keys})},
            }
            docs = self._db.version_items.find(query)
            found = {(d["versionId"], d["itemId"]): d async for d in docs}
            return [found.get(key) or NotFound(f"item {key[1]} not in version") for key in keys]

        return DataLoader(load_fn=load)

    @cached_property
    def commands(self) -> DataLoader[ObjectId, dict[str, Any]]:
        return by_id(self._db, "commands")

    @cached_property
    def model_runs(self) -> DataLoader[ObjectId, dict[str, Any]]:
        return by_id(self._db, "model_runs")

    @cached_property
    def predictions_of_item(self) -> DataLoader[tuple[ObjectId, ObjectId], list[dict[str, Any]]]:
        """(run id, item id) → the item's predictions in that run, for every item of a tick in
        one query. The run must have passed the caller's access check."""

        async def load(keys: list[tuple[ObjectId, ObjectId]]) -> list[list[dict[str, Any]]]:
            found: dict[tuple[ObjectId, ObjectId], list[dict[str, Any]]] = {k: [] for k in keys}
            query = {
                "runId": {"$in": list({run for run, _ in keys})},
                "itemId": {"$in": list({item for _, item in keys})},
            }
            async for doc in self._db.predictions.find(query).sort("_id", 1):
                found.get((doc["runId"], doc["itemId"]), []).append(doc)
            return [found[k] for k in keys]

        return DataLoader(load_fn=load)

    @cached_property
    def annotations_of_item(self) -> DataLoader[AnnotationsKey, list[dict[str, Any]]]:
        return annotations_of_items(self._db)

    @cached_property
    def projects_of_org(self) -> DataLoader[ConnectionKey, Page]:
        async def fetch(org_ids: list[ObjectId], arguments: Any) -> dict:
            page, archived = arguments
            return await projects.projects_of_orgs(await self._access(), org_ids, page, archived)

        return connections_of(fetch)

    @cached_property
    def datasets_of_project(self) -> DataLoader[ConnectionKey, Page]:
        async def fetch(project_ids: list[ObjectId], page: Any) -> dict:
            return await datasets.datasets_of_projects(await self._access(), project_ids, page)

        return connections_of(fetch)

    @cached_property
    def items_of_dataset(self) -> DataLoader[ConnectionKey, Page]:
        async def fetch(dataset_ids: list[ObjectId], arguments: Any) -> dict:
            dql_json, page, sort, source = arguments
            dql_input = json.loads(dql_json) if dql_json is not None else None
            found = await items.items_of_datasets(
                await self._access(),
                dataset_ids,
                dql_input,
                page,
                list(sort) if sort else None,
                source,
            )
            if source is items.LIVE:
                for item_page in found.values():
                    for doc in item_page.docs:
                        self.items.prime(doc["_id"], doc)
            return found

        return connections_of(fetch)

    @cached_property
    def versions_of_dataset(self) -> DataLoader[ConnectionKey, Page]:
        async def fetch(dataset_ids: list[ObjectId], page: Any) -> dict:
            return await lifecycle.versions_of_datasets(await self._access(), dataset_ids, page)

        return connections_of(fetch)


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
        feed: ChangeFeed,
    ) -> None:
        self.connections = connections
        self.feed = feed
        self.auth_cache = feed.auth_cache
        self.settings = settings
        self.request_id = request_id
        self.api_key = api_key
        self.loaders = Loaders(connections.db, self.access)
        self.connection_params: dict[str, Any] | None = None
        self._access: asyncio.Future[Access] | None = None

    def renew(self) -> None:
        """Start a new operation on a long-lived connection: authenticate afresh (through the
        cache) and with fresh DataLoaders, as each HTTP request does, so a WebSocket never
        carries out an operation with access its key has lost."""
        self._access = None
        self.loaders = Loaders(self.connections.db, self.access)

    async def access(self) -> Access:
        """The authenticated caller; UNAUTHENTICATED when the request carries no valid key.

        Resolved once per request, however many fields ask for it concurrently.
        """
        if self._access is None:
            self._access = asyncio.ensure_future(self._authenticate())
        return await self._access

    async def reauthenticate(self) -> Access:
        """The caller as it is now, for a running subscription whose caller's access changed.
        Resolvers from here on see the new access, including those of other operations on the
        same WebSocket: it is the same key, in a newer state."""
        self._access = None
        return await self.access()

    @cached_property
    def webhook_box(self) -> SecretBox:
        """What encrypts and decrypts webhooks' signing secrets (a webhook mutation's need)."""
        return secret_box(self.settings)

    @cached_property
    def webhook_guard(self) -> AddressGuard:
        return AddressGuard(allow_private=self.settings.webhook_allow_private)

    async def enqueue_delivery(self, delivery: dict[str, Any], webhook: dict[str, Any]) -> None:
        """Queue a delivery MongoDB already holds; the workers' sweep queues it otherwise."""
        due = Due.pending(delivery, webhook["concurrency"])
        await _after_commit(
            delivery_queue.push(self.connections.redis, [due]),
            f"delivery {delivery['_id']} left to the sweep",
        )

    async def set_webhook_concurrency(self, webhook: dict[str, Any]) -> None:
        """The webhook's concurrency, for its deliveries already queued (the next push of one
        sets it anyway)."""
        await _after_commit(
            delivery_queue.set_concurrency(
                self.connections.redis, webhook["_id"], webhook["concurrency"]
            ),
            f"webhook {webhook['_id']}'s concurrency left to its next delivery",
        )

    async def enqueue_command(self, command: dict[str, Any]) -> None:
        """Queue a command MongoDB already holds; the workers' sweep (`LOOM_COMMAND_SWEEP_S`)
        queues every command nobody runs."""
        await _after_commit(
            commands.enqueue(self.connections.redis, command),
            f"command {command['_id']} left to the sweep",
        )

    async def enqueue_execution(self, execution: dict[str, Any], behind_ms: int = 0) -> None:
        """Queue an execution MongoDB already holds (`behind_ms` behind the others); the
        workers queue every waiting execution again once Redis is back, and their queue check
        (`LOOM_QUEUE_CHECK_S`) any left waiting."""
        await _after_commit(
            execution_jobs.enqueue(self.connections.redis, execution, behind_ms),
            f"execution {execution['_id']} left to the queue check",
        )

    async def _authenticate(self) -> Access:
        if self.api_key is None:
            raise Unauthenticated("Send an API key: 'Authorization: Bearer <key>'")
        access, user = await self.auth_cache.authenticate(self.connections.db, self.api_key)
        self.loaders.users.prime(user["_id"], user)
        return access


async def _after_commit(enqueue: Awaitable[None], fallback: str) -> None:
    """Run the enqueue that follows a committed write. Redis being away fails nothing — what
    MongoDB holds is queued again by the workers — so the mutation still answers success."""
    try:
        await enqueue
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("%s, Redis unavailable: %s", fallback, exc)
