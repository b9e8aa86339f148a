"""The relay's loop: read the change stream, write events and executions, store the token.

Every worker runs a `Relay`; the one holding the lease (triggers/relay/lease.py) relays, the
others try to take the lease every third of its length. The holder reads the stream in one
task, matches in another and writes in a third: MongoDB prepares the next batch and the
relay matches the next round while the last one is written. Each round takes whatever has been
read, and writes, in this order:

1. its events, one `insert_many` (a token already stored is skipped: that change was relayed
   before, and the event it made is kept, with the triggers it fired);
2. the executions their matches make, one `insert_many` (keyed: see matching.py), queued in
   Redis (with those of a replayed event still waiting, in case a crash came before Redis);
3. the token of its last change, with the lease renewed, in one conditional write.

A crash anywhere replays from the token stored last: nothing is skipped, and what is written
again is refused by its key. MongoDB or Redis away holds up writing, never loses a change; if
MongoDB no longer has the history a token points at (the oplog rolled over while no relay
ran), the relay says so loudly, counts it in the lease document (`loom_relay_history_lost_total`
on the gateway's /metrics) and starts again from now.
"""

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure
from redis.asyncio import Redis

from gateway.change_feed import PLACE_LOST
from gateway.indexes import INDEXES
from resolvers import deliveries
from resolvers.execution_runs import DUPLICATE_KEY
from triggers import execution_queue
from triggers.patience import Patience
from triggers.relay import lease
from triggers.relay.capture import DATA, event_of
from triggers.relay.matching import Executions, TriggerSet, firing_key
from triggers.webhooks import delivery_queue
from triggers.webhooks.delivery_queue import Due

log = logging.getLogger("loom.relay")

MAX_BATCH = 2000
"""Changes written in one round at most."""
AWAIT_MS = 500
"""How long one read of the stream waits for changes: a read that finds none lets the relay
store the token of what it last wrote."""
STUCK_S = 30.0
"""How long the relay's loop may go without coming round before its lease is left to lapse."""
STORE_EVERY_S = 0.2
"""The token is stored (and the lease renewed) at most this often while changes come: a
crash replays at most that much, harmlessly, and a busy relay spends no write per round on it."""
YIELD_EVERY = 200
"""Changes matched between two yields to the event loop, which the worker's execution engine
shares."""
SERVICE_FIELDS = {
    "orgId": 1,
    "projectId": 1,
    "maxAttempts": 1,
    "onReset": 1,
    "executionTimeout": 1,
}
"""What an execution copies from its service."""
WEBHOOK_FIELDS = {"orgId": 1, "projectId": 1, "retryPolicy": 1, "concurrency": 1}
"""What a delivery copies from its webhook."""


class Relay:
    def __init__(
        self,
        db: AsyncDatabase,
        redis: Redis,
        holder: str,
        lease_s: float,
        patience: Patience,
    ) -> None:
        self.db = db
        self.redis = redis
        self.holder = holder
        self.lease = timedelta(seconds=lease_s)
        self.patience = patience
        self.relaying = asyncio.Event()
        """Set while this worker holds the lease and reads the stream."""

    async def run(self) -> None:
        """Relay whenever this worker holds the lease; try to take it otherwise. Forever."""
        await self.patience.call(
            "creating the events' indexes",
            lambda: self.db.events.create_indexes(INDEXES["events"]),
            retry_s=float("inf"),
        )
        while True:
            try:
                held = await lease.acquire(self.db, self.holder, self.lease)
                if held is not None:
                    log.info("%s relays from %s", self.holder, held.get("token") or "now")
                    await self._relay(held.get("token"))
            except lease.LeaseLost as exc:
                log.warning("%s; another worker relays", exc)
            except Exception as exc:
                if self.patience.noticed(exc) is None:
                    log.exception("the relay failed; starting it again")
            finally:
                self.relaying.clear()
            await asyncio.sleep(self.lease.total_seconds() / 3)

    async def release(self) -> None:
        """Hand the lease over at once (a worker stopping cleanly)."""
        with contextlib.suppress(Exception):
            await lease.release(self.db, self.holder)

    async def _relay(self, token: dict[str, Any] | None) -> None:
        """Read from `token` (from now if None) until the lease is lost."""
        while True:
            try:
                token = await self._stream(token)
            except OperationFailure as exc:
                if exc.code not in PLACE_LOST:
                    raise
                log.error(
                    "THE RELAY LOST ITS PLACE: MongoDB no longer has the changes after its "
                    "resume token (%s). Changes since are NOT relayed; starting from now.",
                    exc,
                )
                await lease.start_afresh(self.db, self.holder)
                token = None

    async def _stream(self, token: dict[str, Any] | None) -> dict[str, Any] | None:
        """One change stream from `token`, until it fails or a trigger change makes it watch
        other projects' executions; returns the token stored last."""
        triggers = TriggerSet()
        triggers.load(await self.db.triggers.find().to_list())
        watched = triggers.execution_projects()
        queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue(
            maxsize=2 * MAX_BATCH
        )
        async with await self.db.watch(
            _pipeline(watched),
            full_document="whenAvailable",
            full_document_before_change="whenAvailable",
            resume_after=token,
            max_await_time_ms=AWAIT_MS,
        ) as stream:
            # Where the stream starts, stored at once: a relay that dies before its first
            # change resumes from here, and anyone can see that the relay is reading.
            token = stream.resume_token or token
            await lease.advance(self.db, self.holder, self.lease, token)
            self.relaying.set()
            reader = asyncio.create_task(_read(stream, queue))
            progress = [time.monotonic()]
            beating = asyncio.create_task(self._heartbeat(queue, progress))
            stored = time.monotonic()
            committing: asyncio.Task | None = None
            """The write of the last round, in flight while the next round is matched."""
            try:
                while True:
                    changes = await _take(queue)
                    progress[0] = time.monotonic()
                    written = len(changes)
                    if changes:
                        written, events, fired = await self._match(changes, triggers, watched)
                        if committing is not None:
                            await committing
                        committing = asyncio.create_task(
                            self.patience.call(
                                f"relaying {len(events)} events",
                                lambda events=events, fired=fired: self._commit(
                                    events, fired, triggers
                                ),
                                retry_s=float("inf"),
                            )
                        )
                        token = changes[written - 1]["_id"]
                    reopen = written < len(changes) or triggers.execution_projects() != watched
                    due = time.monotonic() - stored >= STORE_EVERY_S
                    # The heartbeat keeps the lease; the token is stored once its round is
                    # written: when due, when the stream goes quiet, before reopening.
                    if committing is not None and (reopen or due or not changes):
                        await committing
                        committing = None
                        await self.patience.call(
                            "storing the relay's token",
                            lambda token=token: lease.advance(
                                self.db, self.holder, self.lease, token
                            ),
                            retry_s=self.lease.total_seconds(),
                        )
                        stored = time.monotonic()
                    if reopen:
                        return token
            finally:
                if committing is not None:
                    committing.cancel()
                for task in (reader, beating):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _heartbeat(
        self,
        queue: asyncio.Queue[dict[str, Any] | BaseException | None],
        progress: list[float],
    ) -> None:
        """Renew the lease every third of it while the relay goes on: a long round (a burst,
        a loaded machine) must not hand the lease over, which would replay the round and make
        the next one as long. A relay whose loop has not come round for `STUCK_S` (a read or
        a write hanging) stops renewing, and another worker takes over; one that lost its lease
        learns it here too, and stops."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            if time.monotonic() - progress[0] > STUCK_S:
                log.error("the relay has made no progress for %.0f s; letting it go", STUCK_S)
                continue
            try:
                await lease.advance(self.db, self.holder, self.lease, None)
            except lease.LeaseLost as exc:
                await queue.put(exc)
                return
            except Exception as exc:
                if self.patience.noticed(exc) is None:
                    log.exception("renewing the relay's lease failed")

    async def _match(
        self, changes: list[dict[str, Any]], triggers: TriggerSet, watched: frozenset[ObjectId]
    ) -> tuple[int, list[dict[str, Any]], list[dict[ObjectId, dict[str, Any]]]]:
        """A round's changes as events with the triggers each fires, in stream order. Stops
        after a trigger change that makes the stream watch other projects' executions (the
        stream is opened again from there); returns how many changes it took."""
        events: list[dict[str, Any]] = []
        fired: list[dict[ObjectId, dict[str, Any]]] = []
        taken = 0
        for change in changes:
            taken += 1
            if taken % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if change["ns"]["coll"] == "triggers":
                _follow(triggers, change)
                if triggers.execution_projects() != watched:
                    break
                continue
            event = event_of(change)
            if event is None:
                continue
            if event["resource"] == "Execution" and event["projectId"] not in watched:
                continue  # executions make events only in projects with triggers on them
            matched = {armed.doc["_id"]: armed.doc for armed in triggers.matching(event)}
            event["triggers"] = list(matched)
            events.append(event)
            fired.append(matched)
        return taken, events, fired

    async def _commit(
        self,
        events: list[dict[str, Any]],
        fired: list[dict[ObjectId, dict[str, Any]]],
        triggers: TriggerSet,
    ) -> None:
        """Events, then executions and deliveries, then Redis, for a round (safe to repeat)."""
        if not events:
            return
        service_ids, webhook_ids = set(), set()
        for matched in fired:
            for doc in matched.values():
                if doc["operation"]["type"] == "webhook":
                    webhook_ids.add(doc["operation"]["webhookId"])
                else:
                    service_ids.add(doc["operation"]["serviceId"])
        earlier, services, webhooks = await asyncio.gather(
            self._store_events(events), self._services(service_ids), self._webhooks(webhook_ids)
        )
        wanted, to_webhooks = [], []
        for event, matched in zip(events, fired, strict=True):
            first = earlier.get(event["token"])
            if first is not None:
                # Relayed before: the event kept is the one whose triggers run.
                event["_id"] = first["_id"]
                matched = {
                    trigger_id: doc
                    for trigger_id in first["triggers"]
                    if (doc := matched.get(trigger_id) or triggers.get(trigger_id))
                }
            for trigger in matched.values():
                is_webhook = trigger["operation"]["type"] == "webhook"
                (to_webhooks if is_webhook else wanted).append((trigger, event))
        await asyncio.gather(
            self._create_executions(wanted, services),
            self._create_deliveries(to_webhooks, webhooks),
        )

    async def _store_events(self, events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Insert the events; those stored before (by token) as they were stored."""
        try:
            await self.db.events.insert_many(events, ordered=False)
            return {}
        except BulkWriteError as exc:
            _only_duplicates(exc)
        tokens = [event["token"] for event in events]
        earlier = self.db.events.find({"token": {"$in": tokens}}, {"token": 1, "triggers": 1})
        mine = {event["_id"] for event in events}
        return {doc["token"]: doc async for doc in earlier if doc["_id"] not in mine}

    async def _services(self, ids: set[ObjectId]) -> dict[ObjectId, dict[str, Any]]:
        """The services the round's matches run, read while its events are written."""
        if not ids:
            return {}
        found = self.db.services.find({"_id": {"$in": list(ids)}}, SERVICE_FIELDS)
        return {doc["_id"]: doc async for doc in found}

    async def _webhooks(self, ids: set[ObjectId]) -> dict[ObjectId, dict[str, Any]]:
        if not ids:
            return {}
        found = self.db.webhooks.find({"_id": {"$in": list(ids)}}, WEBHOOK_FIELDS)
        return {doc["_id"]: doc async for doc in found}

    async def _create_deliveries(
        self,
        wanted: list[tuple[dict[str, Any], dict[str, Any]]],
        webhooks: dict[ObjectId, dict[str, Any]],
    ) -> None:
        """The deliveries of the round's webhook matches, keyed as executions are, queued."""
        if not wanted:
            return
        needed = {trigger["operation"]["webhookId"] for trigger, _ in wanted}
        if missing := needed - webhooks.keys():
            webhooks = {**webhooks, **await self._webhooks(missing)}
        made = []
        for trigger, event in wanted:
            webhook = webhooks.get(trigger["operation"]["webhookId"])
            if webhook is None or webhook["projectId"] != trigger["projectId"]:
                log.warning("trigger %s names no webhook of its project", trigger["_id"])
                continue
            type_, data = deliveries.event_message(trigger, event)
            made.append(
                deliveries.new_delivery(
                    webhook,
                    type_,
                    data,
                    event["time"],
                    trigger.get("creator"),
                    triggerId=trigger["_id"],
                    eventId=event["_id"],
                    deliveryKey=firing_key(trigger, event),
                )
            )
        if not made:
            return
        queued = made
        try:
            await self.db.deliveries.insert_many(made, ordered=False)
        except BulkWriteError as exc:
            _only_duplicates(exc)
            refused = {error["index"] for error in exc.details["writeErrors"]}
            keys = [made[index]["deliveryKey"] for index in refused]
            waiting = self.db.deliveries.find(
                {"deliveryKey": {"$in": keys}, "state": "pending"},
                {"webhookId": 1, "nextAttemptAt": 1},
            )
            queued = [d for n, d in enumerate(made) if n not in refused]
            queued += await waiting.to_list()
        due = [
            Due.pending(delivery, webhooks[delivery["webhookId"]]["concurrency"])
            for delivery in queued
        ]
        try:
            await delivery_queue.push(self.redis, due)
        except Exception as exc:
            if self.patience.noticed(exc) is None:
                raise
            log.warning("%d deliveries left to be queued again: %s", len(due), exc)

    async def _create_executions(
        self,
        wanted: list[tuple[dict[str, Any], dict[str, Any]]],
        services: dict[ObjectId, dict[str, Any]],
    ) -> None:
        if not wanted:
            return
        # A replayed event runs the triggers it fired the first time, maybe others than now.
        needed = {trigger["operation"]["serviceId"] for trigger, _ in wanted}
        if missing := needed - services.keys():
            services = {**services, **await self._services(missing)}
        executions, made = [], Executions()
        for trigger, event in wanted:
            service = services.get(trigger["operation"]["serviceId"])
            if service is None:
                log.warning("trigger %s names a deleted service; not run", trigger["_id"])
                continue
            executions.append(made.of(trigger, event, service))
        if not executions:
            return
        queued = executions
        try:
            await self.db.executions.insert_many(executions, ordered=False)
        except BulkWriteError as exc:
            _only_duplicates(exc)
            refused = {error["index"] for error in exc.details["writeErrors"]}
            keys = [executions[index]["triggerKey"] for index in refused]
            waiting = self.db.executions.find(
                {"triggerKey": {"$in": keys}, "status": "created"}, {"serviceId": 1}
            )
            queued = [e for n, e in enumerate(executions) if n not in refused]
            queued += await waiting.to_list()
        try:
            await execution_queue.push(self.redis, queued)
        except Exception as exc:
            if self.patience.noticed(exc) is None:
                raise
            # Still `created` in MongoDB: the workers queue them again once Redis is back.
            log.warning("%d executions left to be queued again: %s", len(queued), exc)


def _pipeline(execution_projects: frozenset[ObjectId]) -> list[dict[str, Any]]:
    """Changes of the data collections and of triggers, and executions only of the projects
    with triggers on executions: a busy queue elsewhere costs the relay nothing, since MongoDB
    filters those by collection before it reads their images."""
    match: dict[str, Any] = {"ns.coll": {"$in": [*DATA, "triggers"]}}
    if execution_projects:
        projects = list(execution_projects)
        match = {
            "$or": [
                match,
                {
                    "ns.coll": "executions",
                    "$or": [
                        {"fullDocument.projectId": {"$in": projects}},
                        {"fullDocumentBeforeChange.projectId": {"$in": projects}},
                    ],
                },
            ]
        }
    return [{"$match": match}]


async def _read(stream: Any, queue: asyncio.Queue[dict[str, Any] | BaseException | None]) -> None:
    """Put each change on the queue, None after a read that found nothing (the stream is
    quiet), and the error that ended the stream last."""
    try:
        while True:
            await queue.put(await stream.try_next())
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        await queue.put(exc)


async def _take(queue: asyncio.Queue[dict[str, Any] | BaseException | None]) -> list[dict]:
    """The changes read so far (waiting for the first), up to MAX_BATCH; [] for a quiet read."""
    changes: list[dict[str, Any]] = []
    item = await queue.get()
    while True:
        if isinstance(item, BaseException):
            raise item
        if item is not None:
            changes.append(item)
        if len(changes) >= MAX_BATCH or queue.empty():
            return changes
        item = queue.get_nowait()


def _follow(triggers: TriggerSet, change: dict[str, Any]) -> None:
    """A trigger changed: the set changes here, between the events before and after."""
    kind = change["operationType"]
    if kind == "delete":
        triggers.remove(change["documentKey"]["_id"])
    elif (doc := change.get("fullDocument")) is not None:
        triggers.put(doc)
    elif kind in ("insert", "update", "replace"):
        log.error("trigger %s changed without its image; reload", change["documentKey"]["_id"])


def _only_duplicates(exc: BulkWriteError) -> None:
    """Re-raise a bulk write failure that is more than keys already taken."""
    errors = exc.details.get("writeErrors") or []
    if exc.details.get("writeConcernErrors") or any(e["code"] != DUPLICATE_KEY for e in errors):
        raise exc
