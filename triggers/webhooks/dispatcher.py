"""A worker's deliveries: taken from Redis a page at a time, claimed in MongoDB, sent side by
side, their answers written in bulk.

Each worker runs one dispatcher with room for `LOOM_WEBHOOK_MAX_IN_FLIGHT` attempts at once.
Its loop takes due deliveries from the queue (triggers/webhooks/delivery_queue.py), each with
one of its webhook's slots, claims them in MongoDB with one bulk write (a lease: the worker,
a claim token, until when), and sends each (triggers/webhooks/sender.py). Answers are judged
(triggers/webhooks/retry_policy.py) and written in bulk by a second task, each conditional on
the attempt's claim: delivered, failed, or pending again with its next attempt's time — which
then goes back to Redis, with the slot.

A worker killed mid-attempt loses nothing: the delivery is still `pending` in MongoDB with a
lease that lapses after the webhook's timeout and `LEASE_MARGIN_S`; the sweep
(`requeue_pending`) queues it again and another worker sends it — the same message under the
same `webhook-id`, the lost attempt logged as such. A receiver sees an id twice only when a
worker died after sending and before it wrote the answer.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from resolvers.deliveries import DeliveryState
from resolvers.timestamps import now
from resolvers.webhooks import signing_secrets
from triggers.patience import Patience
from triggers.webhooks import delivery_queue
from triggers.webhooks.address_guard import AddressGuard, guarded_session
from triggers.webhooks.delivery_queue import Due
from triggers.webhooks.retry_policy import RetryPolicy, Verdict, verdict
from triggers.webhooks.sender import Answer, attempt
from triggers.webhooks.signing import SecretBox

log = logging.getLogger("loom.webhooks")

LEASE_MARGIN_S = 10.0
"""How long past its timeout an attempt's lease lasts: the worker writes the answer within it."""
SLOT_LAPSE_S = 310.0
"""How long a slot is held before the worker knows the webhook's timeout (the longest one)."""
FILL_S = 0.005
CLAIMING = 4
"""Pages claimed at once, at most."""
PREFETCH = 2
"""Deliveries a worker holds (being claimed, claimed, in flight), as a multiple of how many it
sends at once: the next ones are claimed while the last ones are sent, so MongoDB's latency
does not leave the receiver idle. Slots count them all: a webhook's concurrency is never
exceeded."""
STOP_WAIT_S = 2.0
MAX_LOGGED_ATTEMPTS = 100
SWEEP_BATCH = 1000


@dataclass
class Flight:
    delivery: dict[str, Any]
    webhook: dict[str, Any]
    secrets: list[str]
    claim: ObjectId


@dataclass
class Dispatcher:
    db: AsyncDatabase
    redis: Redis
    worker: str
    capacity: int
    poll_s: float
    retry_after_cap_s: float
    box: SecretBox
    guard: AddressGuard
    patience: Patience
    session: aiohttp.ClientSession | None = None
    flights: dict[ObjectId, asyncio.Task] = field(default_factory=dict)
    _ends: list[tuple[Flight, Answer | None, Verdict]] = field(default_factory=list)
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _ended: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _pages: set[asyncio.Task] = field(default_factory=set)
    _reserved: int = 0
    """Deliveries taken from Redis whose page is still being claimed."""
    _sending: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._sending = asyncio.Semaphore(self.capacity)

    def start(self) -> None:
        self.session = guarded_session(self.guard, max_connections=self.capacity)
        self._tasks = [
            asyncio.create_task(self._take_loop()),
            asyncio.create_task(self._end_loop()),
        ]

    async def stop(self) -> None:
        """Stop taking; attempts in flight get `STOP_WAIT_S` to finish, the others are cut
        short and go back to the queue, due at once."""
        self._tasks[0].cancel()
        if self._pages:
            await asyncio.wait(list(self._pages), timeout=STOP_WAIT_S)
        if self.flights:
            await asyncio.wait(list(self.flights.values()), timeout=STOP_WAIT_S)
        for task in list(self.flights.values()):
            task.cancel()
        await asyncio.gather(*self.flights.values(), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._write_ends()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    async def _take_loop(self) -> None:
        """Take due deliveries from Redis while there is room, and claim each page in a task
        of its own: up to `CLAIMING` pages are claimed at once, so MongoDB's write latency is
        not paid in series by every page."""
        while True:
            free = PREFETCH * self.capacity - len(self.flights) - self._reserved
            taken: list[tuple[ObjectId, ObjectId]] = []
            if free > 0 and len(self._pages) < CLAIMING:
                moment_ms = int(time.time() * 1000)
                try:
                    taken = await delivery_queue.take(
                        self.redis, moment_ms, free, moment_ms + int(SLOT_LAPSE_S * 1000)
                    )
                except Exception as exc:
                    if self.patience.noticed(exc) is None:
                        log.exception("taking deliveries failed")
                    await asyncio.sleep(self.poll_s * 10)
                    continue
            if taken:
                self._reserved += len(taken)
                page = asyncio.create_task(self._start_page(taken))
                self._pages.add(page)
                page.add_done_callback(self._pages.discard)
                continue
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), self.poll_s)
            if self.flights:
                await asyncio.sleep(FILL_S)

    async def _start_page(self, taken: list[tuple[ObjectId, ObjectId]]) -> None:
        """Claim a page of taken deliveries and send those claimed; if the claim fails, their
        slots go back (the deliveries are still pending: they are queued again)."""
        try:
            await self._claim_and_send(taken)
        except Exception as exc:
            if self.patience.noticed(exc) is None:
                log.exception("claiming %d deliveries failed", len(taken))
            with contextlib.suppress(Exception):
                await delivery_queue.release(self.redis, taken)
        finally:
            self._reserved -= len(taken)
            self._room.set()

    async def _claim_and_send(self, taken: list[tuple[ObjectId, ObjectId]]) -> None:
        """Read the page and its webhooks (side by side), claim it in one bulk write, send
        what was claimed. Only a page some of which was not claimed is read again."""
        ids = [delivery_id for _, delivery_id in taken]
        webhooks, read = await asyncio.gather(
            self._read_webhooks({webhook_id for webhook_id, _ in taken}),
            self.db.deliveries.find({"_id": {"$in": ids}}).to_list(),
        )
        claim = ObjectId()
        moment = now()
        ops, held = [], []
        for webhook_id, delivery_id in taken:
            webhook, _ = webhooks.get(webhook_id, (None, []))
            timeout_s = webhook["retryPolicy"]["timeoutS"] if webhook else 0.0
            ops.append(
                UpdateOne(
                    {
                        "_id": delivery_id,
                        "state": DeliveryState.pending,
                        "nextAttemptAt": {"$lte": moment + timedelta(seconds=1)},
                        "$or": [{"lease": None}, {"lease.until": {"$lt": moment}}],
                    },
                    {
                        "$set": {
                            "lease": {
                                "worker": self.worker,
                                "claim": claim,
                                "until": moment + timedelta(seconds=timeout_s + LEASE_MARGIN_S),
                            }
                        },
                        "$inc": {"attemptCount": 1},
                    },
                )
            )
            held.append((webhook_id, delivery_id, timeout_s))
        result = await self.db.deliveries.bulk_write(ops, ordered=False)
        if result.modified_count == len(ops) == len(read):
            claimed = {doc["_id"]: {**doc, "attemptCount": doc["attemptCount"] + 1} for doc in read}
        else:
            mine = {"_id": {"$in": ids}, "lease.claim": claim}
            claimed = {doc["_id"]: doc async for doc in self.db.deliveries.find(mine)}
        for delivery in claimed.values():
            webhook, secrets = webhooks.get(delivery["webhookId"], (None, []))
            flight = Flight(delivery, webhook or {}, secrets, claim)
            self.flights[delivery["_id"]] = asyncio.create_task(self._fly(flight))
        # Their slots last as long as their leases; those not claimed — sent, ended or held
        # by another worker: queued twice — are freed.
        async with self.redis.pipeline(transaction=False) as pipe:
            for webhook_id, delivery_id, timeout_s in held:
                if delivery_id in claimed:
                    lapse_ms = int((time.time() + timeout_s + LEASE_MARGIN_S) * 1000)
                    slots = delivery_queue.slots_key(webhook_id)
                    pipe.zadd(slots, {str(delivery_id): lapse_ms}, xx=True)
            await pipe.execute()
        unclaimed = [(w, d) for w, d, _ in held if d not in claimed]
        if unclaimed:
            await delivery_queue.release(self.redis, unclaimed)

    async def _read_webhooks(
        self, ids: set[ObjectId]
    ) -> dict[ObjectId, tuple[dict[str, Any], list[str]]]:
        """The page's webhooks as they are now, with their signing secrets decrypted: a
        change (a rotation, turning one off) applies from the next page on."""
        found = self.db.webhooks.find({"_id": {"$in": list(ids)}})
        return {doc["_id"]: (doc, signing_secrets(self.box, doc)) async for doc in found}

    async def _fly(self, flight: Flight) -> None:
        delivery, webhook = flight.delivery, flight.webhook
        number = delivery["attemptCount"]
        answer: Answer | None = None
        try:
            if not webhook:
                judged = Verdict("cancelled", "the webhook was deleted", None)
            elif webhook["projectId"] != delivery["projectId"]:
                judged = Verdict("cancelled", "the webhook is not of the delivery's project", None)
            elif not webhook["active"]:
                reason = webhook.get("disabledReason") or "the webhook is turned off"
                judged = Verdict("cancelled", reason, None)
            else:
                async with self._sending:
                    answer = await attempt(self.session, webhook, flight.secrets, delivery, number)
                judged = verdict(
                    RetryPolicy.model_validate(webhook["retryPolicy"]),
                    number,
                    answer.status,
                    answer.headers or {},
                    answer.error,
                    now(),
                    self.retry_after_cap_s,
                )
        except asyncio.CancelledError:
            judged = Verdict("retry", "the worker stopped during the attempt", 0.0)
        except Exception as exc:
            log.exception("delivery %s failed unexpectedly", delivery["_id"])
            judged = Verdict("retry", f"the worker failed during the attempt: {exc}", 1.0)
        self._ends.append((flight, answer, judged))
        self._ended.set()
        self.flights.pop(delivery["_id"], None)
        self._room.set()

    async def _end_loop(self) -> None:
        while True:
            await self._ended.wait()
            self._ended.clear()
            try:
                await self.patience.call("writing delivery answers", self._write_ends)
            except Exception:
                log.exception("writing delivery answers failed; trying again")
                await asyncio.sleep(self.poll_s)
                self._ended.set()

    async def _write_ends(self) -> None:
        """The answers so far: their slots back first (the receiver is done with them), then
        one bulk write to MongoDB, then their retries queued."""
        ends, self._ends = self._ends, []
        if not ends:
            return
        held = [(flight.delivery["webhookId"], flight.delivery["_id"]) for flight, _, _ in ends]
        await self._redis_or_sweep(delivery_queue.release(self.redis, held), "slots to lapse")
        # Slots are free: the take loop may find due deliveries of these webhooks now.
        self._room.set()
        try:
            ops = [_end_op(flight, answer, judged) for flight, answer, judged in ends]
            await self.db.deliveries.bulk_write(ops, ordered=False)
            gone = {
                flight.webhook["_id"]: judged.reason
                for flight, _, judged in ends
                if judged.outcome == "gone"
            }
            for webhook_id, reason in gone.items():
                await _turn_off(self.db, webhook_id, reason)
        except BaseException:
            self._ends = ends + self._ends
            raise
        retries = [
            Due(
                flight.delivery["webhookId"],
                flight.delivery["_id"],
                int((time.time() + (judged.delay_s or 0.0)) * 1000),
                flight.webhook.get("concurrency", 1),
            )
            for flight, _, judged in ends
            if judged.outcome == "retry"
        ]
        await self._redis_or_sweep(delivery_queue.push(self.redis, retries), "retries to the sweep")

    async def _redis_or_sweep(self, call: Awaitable[None], left: str) -> None:
        """A Redis call after what MongoDB holds: Redis away loses nothing (slots lapse by
        themselves, the sweep queues pending deliveries again)."""
        try:
            await call
        except Exception as exc:
            if self.patience.noticed(exc) is None:
                raise
            log.warning("Redis unavailable (%s): left %s", exc, left)


def _logged(number: int, answer: Answer | None, judged: Verdict, moment: datetime) -> dict:
    entry: dict[str, Any] = {"attempt": number, "outcome": judged.outcome, "at": moment}
    if answer is not None:
        entry |= {
            "requestId": answer.request_id,
            "startedAt": answer.started_at,
            "statusCode": answer.status,
            "latencyMs": answer.latency_ms,
            "responseHeaders": answer.headers,
            "responseBody": answer.body,
            "error": answer.error,
        }
    else:
        entry["error"] = judged.reason
    return entry


def _end_op(flight: Flight, answer: Answer | None, judged: Verdict) -> UpdateOne:
    delivery = flight.delivery
    number = delivery["attemptCount"]
    moment = now()
    entries = []
    if number - 1 > delivery.get("lastLoggedAttempt", 0):
        # The attempt before this one was claimed by a worker that died before answering.
        entries.append(
            {
                "attempt": number - 1,
                "outcome": "lost",
                "at": moment,
                "error": "the worker sending this attempt stopped before it wrote the answer",
            }
        )
    entries.append(_logged(number, answer, judged, moment))
    update: dict[str, Any] = {"lease": None, "updatedAt": moment, "lastLoggedAttempt": number}
    if judged.outcome == "delivered":
        update |= {"state": DeliveryState.delivered, "endedAt": moment, "reason": None}
    elif judged.outcome == "retry":
        update |= {"nextAttemptAt": moment + timedelta(seconds=judged.delay_s or 0.0)}
    else:
        state = DeliveryState.cancelled if judged.outcome == "cancelled" else DeliveryState.failed
        update |= {"state": state, "endedAt": moment, "reason": judged.reason}
    changes: dict[str, Any] = {
        "$set": update,
        "$push": {"attempts": {"$each": entries, "$slice": -MAX_LOGGED_ATTEMPTS}},
    }
    return UpdateOne({"_id": delivery["_id"], "lease.claim": flight.claim}, changes)


async def _turn_off(db: AsyncDatabase, webhook_id: ObjectId, reason: str) -> None:
    moment = now()
    await db.webhooks.update_one(
        {"_id": webhook_id, "active": True},
        {"$set": {"active": False, "disabledReason": reason, "disabledAt": moment}},
    )


async def requeue_pending(db: AsyncDatabase, redis: Redis, older_than_s: float = 0.0) -> int:
    """Queue again the pending deliveries due more than `older_than_s` ago that no worker
    holds (Redis lost them, or their worker died); how many."""
    moment = now()
    query = {
        "state": DeliveryState.pending,
        "nextAttemptAt": {"$lte": moment - timedelta(seconds=older_than_s)},
        "$or": [{"lease": None}, {"lease.until": {"$lt": moment}}],
    }
    queued = 0
    last: tuple[datetime, ObjectId] | None = None
    while True:
        page_query = query
        if last is not None:
            page_query = {
                "$and": [
                    query,
                    {
                        "$or": [
                            {"nextAttemptAt": {"$gt": last[0]}},
                            {"nextAttemptAt": last[0], "_id": {"$gt": last[1]}},
                        ]
                    },
                ]
            }
        page = await (
            db.deliveries.find(page_query, {"webhookId": 1, "nextAttemptAt": 1})
            .sort([("nextAttemptAt", 1), ("_id", 1)])
            .limit(SWEEP_BATCH)
            .to_list()
        )
        if not page:
            return queued
        webhook_ids = list({doc["webhookId"] for doc in page})
        limits = {
            doc["_id"]: doc["concurrency"]
            async for doc in db.webhooks.find({"_id": {"$in": webhook_ids}}, {"concurrency": 1})
        }
        await delivery_queue.push(
            redis,
            [Due.pending(doc, limits.get(doc["webhookId"], 1)) for doc in page],
        )
        queued += len(page)
        last = (page[-1]["nextAttemptAt"], page[-1]["_id"])
        if len(page) < SWEEP_BATCH:
            return queued
