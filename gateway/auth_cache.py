"""API keys already looked up, remembered for as long as the change feed can say they changed.

Looking a bearer key up (the key, its user and its organization memberships: one aggregation)
is a third of a simple request's CPU. This cache keeps what the lookup found, by the key's
hash, and a request builds its caller from it afresh (project roles are still read per
request). It is trusted only while this process's change feed (gateway/change_feed.py) is
open:

- any change to API keys (except their last-used time), users, organizations or organization
  memberships, in any process, clears it as soon as the feed delivers the change — a revoked
  key or a removed member is refused within milliseconds on every gateway, not after a TTL;
- any mutation this process runs clears it before its response leaves, so a caller that
  revokes a key or removes a member never sees the old state afterwards — all but the
  execution mutations (`KEEPS_ACCESS`), which write no collection an entry is built from and
  come by the thousand a second from triggers and clients;
- when the feed is lost the cache is cleared and nothing is kept until it is open again;
- a lookup that was under way while the cache was cleared is not kept: it may have read the
  state from before the change (`generation`); requests for one key share a lookup under way
  only if it started after the last clearing;
- whatever happens to the feed unnoticed (a stalled connection, majority commits held up, a
  rolled-back write after a failover), no entry is used longer than `max_age_s`.
"""

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode, FieldNode, OperationDefinitionNode, OperationType
from pymongo.asynchronous.database import AsyncDatabase
from strawberry.extensions import SchemaExtension

from gateway.recently_used import RecentlyUsed
from resolvers import api_keys


class AuthCache:
    def __init__(self, maxsize: int, max_age_s: float = 30.0) -> None:
        self.max_age_s = max_age_s
        self.generation = 0
        self.live = False
        self._found: RecentlyUsed[str, tuple[float, dict[str, Any]]] = RecentlyUsed(maxsize)
        self._lookups: dict[tuple[str, int], asyncio.Future[dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._found)

    async def authenticate(self, db: AsyncDatabase, key: str) -> api_keys.Authenticated:
        """The caller behind a bearer key, its key found through the cache."""
        return await api_keys.admit(db, await self.find_key(db, key))

    async def find_key(self, db: AsyncDatabase, key: str) -> dict[str, Any]:
        """What `api_keys.find_key` finds for `key`, from the cache when it can be trusted.
        Concurrent requests with a key not in the cache (a burst of a new client's first
        requests, subscriptions re-checking together) share one lookup."""
        digest = api_keys.digest(key)
        entry = self._found.get(digest)
        if entry is not None and time.monotonic() - entry[0] < self.max_age_s:
            return entry[1]
        flight = (digest, self.generation)
        lookup = self._lookups.get(flight)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(db, key, digest, self.generation))
            self._lookups[flight] = lookup
            lookup.add_done_callback(lambda done: self._landed(flight, done))
        return await asyncio.shield(lookup)

    async def _look_up(
        self, db: AsyncDatabase, key: str, digest: str, generation: int
    ) -> dict[str, Any]:
        looked_up = time.monotonic()
        found = await api_keys.find_key(db, key)
        if self.live and generation == self.generation:
            self._found.put(digest, (looked_up, found))
        return found

    def _landed(self, flight: tuple[str, int], lookup: asyncio.Future[dict[str, Any]]) -> None:
        self._lookups.pop(flight, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved here: every waiter may have gone

    def invalidate(self) -> None:
        self.generation += 1
        self._found.clear()

    def open(self) -> None:
        """The change feed is open: changes from now on will reach `invalidate`."""
        self.invalidate()
        self.live = True

    def close(self) -> None:
        """The change feed is lost: changes may go unseen, so nothing is trusted or kept."""
        self.live = False
        self.invalidate()


KEEPS_ACCESS = frozenset(
    {"execute", "executeBatch", "rerunBatch", "rerunExecution", "terminateExecution"}
)
"""Mutations that cannot change what a cache entry holds: they write executions and commands
(and Redis), never API keys, users, organizations or memberships (tests/test_auth_cache.py
runs each one and watches what it writes). A mutation left out of this list costs the next
requests a lookup each, never a stale answer: every other mutation clears."""
_ROOT_FIELDS_KEEPING_ACCESS = KEEPS_ACCESS | {"__typename"}


def keeps_access(document: DocumentNode) -> bool:
    """Whether every mutation in the document selects at its root only fields of
    `KEEPS_ACCESS` (or `__typename`), spelled out: a fragment at the root, whatever it holds,
    counts as a mutation that may change access."""
    for definition in document.definitions:
        if not (
            isinstance(definition, OperationDefinitionNode)
            and definition.operation == OperationType.MUTATION
        ):
            continue
        for selection in definition.selection_set.selections:
            if not isinstance(selection, FieldNode):
                return False
            if selection.name.value not in _ROOT_FIELDS_KEEPING_ACCESS:
                return False
    return True


class MutationsClearAuthCache(SchemaExtension):
    """Clears the process's cache once a document holding a mutation that may change access
    has executed — however execution ended, and before the result is handed over on any
    transport. Which mutations may not is an allow-list (`KEEPS_ACCESS`): a new mutation
    clears until it is shown not to touch access."""

    def on_execute(self) -> Iterator[None]:
        try:
            yield
        finally:
            document = self.execution_context.graphql_document
            if document is not None and not keeps_access(document):
                self.execution_context.context.auth_cache.invalidate()
