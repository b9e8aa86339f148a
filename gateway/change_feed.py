"""One change stream per gateway process, fanned out in memory to its subscribers.

However many clients subscribe, MongoDB serves this process a single change stream over the
collections subscriptions watch. Each subscriber has an inbox of its own (gateway/inboxes.py),
so it never slows the feed or the other subscribers: one that falls a whole inbox behind keeps
only the latest state of each entity from then on, and is dropped only if it stays behind too
long. The feed resumes after a lost connection with its last resume
token, so subscribers miss nothing while it reconnects. Each event carries the document as it
was right after its change (post-images, enabled in gateway/indexes.py), never a later state.

The same stream tells the authentication cache (gateway/auth_cache.py) when anything a caller's
access is built from changes, and when the stream itself is open or lost. It tells every
subscriber too, in order with the documents: a running subscription re-checks its caller's
access before it delivers anything that changed after a key was revoked or a member removed.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from gateway.auth_cache import AuthCache
from gateway.inboxes import Inbox

log = logging.getLogger("loom.feed")

WATCHED = ("executions", "commands", "events", "predicted_assets", "deliveries")
"""Collections whose changed documents subscriptions receive."""
ACCESS = ("api_keys", "users", "organizations", "org_members", "project_members")
"""Collections a caller's access is read from: any change to them clears the authentication
cache and makes every subscriber re-check its access."""
RETRY_S = 1.0
PLACE_LOST = {260, 280, 286}
"""InvalidResumeToken, ChangeStreamFatalError, ChangeStreamHistoryLost: resuming is impossible."""


@dataclass(frozen=True)
class AccessChanged:
    """Delivered among a subscriber's documents where access changed: the ones after it must
    be checked against the caller's access as it is now. `number` counts the changes."""

    number: int


@dataclass(eq=False)
class Subscriber:
    """`wants` is what the subscription asked for; `sees`, what its caller may see, or None
    while the caller's access is being re-checked (everything it wants is kept until then).
    `user_id` is the caller's: only changes to that user's access concern it (None: all do)."""

    collection: str
    wants: Callable[[dict[str, Any]], bool]
    sees: Callable[[dict[str, Any]], bool] | None
    user_id: ObjectId | None
    inbox: Inbox[dict[str, Any] | AccessChanged]
    access_changes: int = 0
    marker_waiting: bool = False

    async def next(self) -> dict[str, Any] | AccessChanged:
        """The next document or access change; raises Overflowed once the subscriber was
        dropped."""
        item = await self.inbox.get()
        if isinstance(item, AccessChanged):
            self.marker_waiting = False
        return item

    def keeps(self, document: dict[str, Any]) -> bool:
        return self.wants(document) and (self.sees is None or self.sees(document))

    def access_changed(self) -> None:
        """One marker stands for every change until the consumer reads it: a burst of changes
        takes one place in the inbox."""
        self.access_changes += 1
        self.sees = None
        if not self.marker_waiting:
            self.marker_waiting = True
            self.inbox.put(AccessChanged(self.access_changes))

    def rechecked(self, upto: int, sees: Callable[[dict[str, Any]], bool]) -> None:
        """The consumer re-checked its caller's access, reading it after the first `upto`
        changes had been delivered: documents are filtered by `sees` again, unless access
        changed once more since."""
        if upto == self.access_changes:
            self.sees = sees


class ChangeFeed:
    def __init__(self, db: AsyncDatabase, queue_size: int, auth_cache: AuthCache) -> None:
        self.db = db
        self.queue_size = queue_size
        self.auth_cache = auth_cache
        self.subscribers: set[Subscriber] = set()
        self.access_changes = 0
        """How many access changes this process has seen: a subscriber that read its caller's
        access before registering compares it, to learn whether it read a stale state."""
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ready(self) -> None:
        """Wait until the change stream is open (changes from then on are delivered)."""
        await self._ready.wait()

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        collection: str,
        wants: Callable[[dict[str, Any]], bool],
        sees: Callable[[dict[str, Any]], bool] | None = None,
        user_id: ObjectId | None = None,
    ) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(collection, wants, sees, user_id, Inbox(self.queue_size))
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    def publish(self, collection: str, document: dict[str, Any]) -> None:
        """Hand a changed document to the subscribers of its collection that want it. A
        subscriber whose filter fails on a document is dropped, never the feed."""
        for subscriber in list(self.subscribers):
            if subscriber.collection != collection:
                continue
            try:
                wanted = subscriber.keeps(document)
            except Exception:
                log.exception("a subscriber's filter failed on %s; dropping it", collection)
                subscriber.inbox.drop()
                continue
            if wanted:
                subscriber.inbox.put(document)

    def _drop_subscribers(self) -> None:
        """The feed cannot promise them every change any more: they must subscribe again."""
        for subscriber in list(self.subscribers):
            subscriber.inbox.drop()

    async def _run(self) -> None:
        pipeline = [
            {
                "$match": {
                    "$or": [
                        {
                            "ns.coll": {"$in": list(WATCHED)},
                            "operationType": {"$in": ["insert", "update", "replace"]},
                        },
                        {"ns.coll": {"$in": list(ACCESS)}},
                    ]
                }
            },
            # Pre-images only name whose access changed; data events go without them.
            {
                "$set": {
                    "fullDocumentBeforeChange": {
                        "$cond": [
                            {"$in": ["$ns.coll", list(ACCESS)]},
                            "$fullDocumentBeforeChange",
                            "$$REMOVE",
                        ]
                    }
                }
            },
        ]
        resume_after = None
        try:
            while True:
                try:
                    async with await self.db.watch(
                        pipeline,
                        full_document="whenAvailable",
                        full_document_before_change="whenAvailable",
                        resume_after=resume_after,
                    ) as stream:
                        self.auth_cache.open()
                        self._ready.set()
                        while stream.alive:
                            change = await stream.try_next()
                            # Advances on empty batches too: a quiet feed keeps a fresh place.
                            resume_after = stream.resume_token
                            if change is not None:
                                self._dispatch(change)
                except PyMongoError as exc:
                    self.auth_cache.close()
                    if isinstance(exc, OperationFailure) and exc.code in PLACE_LOST:
                        log.error("change stream lost its place, starting afresh: %s", exc)
                        resume_after = None
                        # New subscribers wait for the new stream: access they read before it
                        # opens could change unseen.
                        self._ready.clear()
                        self._drop_subscribers()
                    else:
                        log.warning("change stream interrupted, resuming: %s", exc)
                    await asyncio.sleep(RETRY_S)
        finally:
            self.auth_cache.close()

    def _dispatch(self, change: dict[str, Any]) -> None:
        collection = change["ns"]["coll"]
        if collection in ACCESS:
            if changes_access(change):
                self.auth_cache.invalidate()
                self.access_changes += 1
                users = users_affected(change)
                for subscriber in list(self.subscribers):
                    if users is None or subscriber.user_id is None or subscriber.user_id in users:
                        subscriber.access_changed()
            return
        document = change.get("fullDocument")
        if document is not None:
            self.publish(collection, document)


BOOKKEEPING = {"api_keys": {"lastUsedAt"}, "organizations": {"membersVersion", "updatedAt"}}
"""Fields whose updates change nobody's access: a key's last use (which authentication itself
writes) and the version an organization's membership changes bump (each of those changes is
an event of its own)."""


def changes_access(change: dict[str, Any]) -> bool:
    """Every change to the access collections does, but updates of bookkeeping fields only."""
    ignored = BOOKKEEPING.get(change["ns"]["coll"])
    if ignored is None or change["operationType"] != "update":
        return True
    return not touched_fields(change) <= ignored


def touched_fields(change: dict[str, Any]) -> set[str]:
    """The top-level fields an update changed: set, removed or truncated."""
    description = change.get("updateDescription") or {}
    fields = set(description.get("updatedFields") or {}) | set(
        description.get("removedFields") or []
    )
    fields |= {array["field"] for array in description.get("truncatedArrays") or []}
    return {field.split(".", 1)[0] for field in fields}


def users_affected(change: dict[str, Any]) -> set[ObjectId] | None:
    """The users whose access an access change may alter; None when that is not known (an
    organization changed, a document without images, a collection dropped or renamed: no
    document key), meaning everyone's."""
    if "documentKey" not in change:
        return None
    if change["ns"]["coll"] == "users":
        return {change["documentKey"]["_id"]}
    images = (change.get("fullDocument"), change.get("fullDocumentBeforeChange"))
    users = {image["userId"] for image in images if image and "userId" in image}
    return users or None
