"""A worker's executions: claimed a page at a time, run side by side, ended in bulk.

One engine per worker process runs up to `capacity` executions at once (`LOOM_WORKER_MAX_JOBS`,
`loom worker --concurrency`). Its one loop goes round in cycles. Each cycle looks at the
services with queued executions (triggers/execution_queue.py) and, for each, takes from the
service's queue as many ids as the worker has room for (runs whose function has returned
leave room at once), reads those executions, the service's free slots and the executions'
resources, then writes in ONE ordered command the ends of the runs that ended since the last
cycle followed by the claims of the new page (resolvers/execution_runs.py `end_and_claim`):
the slots the ends free are the first the claims take, so a worker draining a service hands
its slots from one page to the next with one majority write per page, not a claim and an end,
and two workers draining one service rarely reach for the same slot. One heartbeat per worker
renews every lease it holds and picks up termination requests, whatever the number of runs.

So a busy worker costs MongoDB about four commands per page of executions and Redis one pop,
instead of a job, a claim, a slot, a heartbeat and an end per execution. Nothing is lost when
a worker dies: ids it had popped but not claimed are still `created` and queued again by the
queue check; claimed runs hold leases the reaper reruns or fails once they lapse; a worker
that is stopped hands its runs back at once.

MongoDB or Redis away (an election, a restart) stops nothing that runs (triggers/patience.py):
the page reads and the one ordered write are retried until MongoDB answers — the write is the
same ops each time, conditional on status and claim, so one that was applied before its answer
was lost changes nothing when sent again, and the runs it claimed are found by their claims —;
ends wait in memory meanwhile; a Redis error only pauses claiming (ends are still written),
and ids popped but not claimed are put back, or, if Redis is gone too, queued again from
MongoDB once it is back.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from resolvers import execution_results, execution_runs, files, functions
from resolvers.executions import Status
from resolvers.timestamps import now
from triggers import execution_queue
from triggers.execution_reports import Reports
from triggers.patience import GaveUp, Patience

log = logging.getLogger("loom.executions")

BUSY_RETRY_S = 0.5
"""How soon a worker looks again at a service whose slots were all taken by other workers (it
looks at once when one of its own runs of that service ends)."""
UNKNOWN_RETRY_S = 60.0
"""How soon a worker looks again at a queued service its database does not have (another
deployment sharing the Redis, or a deleted service whose executions have all ended)."""
READY_REFRESH_S = 1.0
"""How long a worker that keeps finding work goes on with the services it knew of before
asking Redis again which have queued executions."""
STOP_CLAIMING_S = 5.0
FILL_S = 0.005
"""How long a cycle that would claim less than half a page waits for more of its runs to end
(quick functions end within a few loop turns of each other): pages stay full."""
REDIS_RETRY_S = 1.0
"""The longest pause in claiming after Redis was found away (ends are written meanwhile)."""


@dataclass
class RunContext:
    """The FunctionContext a running function gets."""

    resource: dict[str, Any] | None
    event: dict[str, Any] | None
    log: logging.Logger
    progress: Callable[[int, str], Awaitable[None]]
    read_file: Callable[[], Awaitable[bytes]]


def _file_reader(
    db: AsyncDatabase, resource: dict[str, Any] | None
) -> Callable[[], Awaitable[bytes]]:
    async def read_file() -> bytes:
        if not resource or "sha256" not in resource:
            raise ValueError("the execution is not about an item with a file")
        stream = await files.open_content(db, resource["sha256"])
        if stream is None:
            raise ValueError(f"the file of item {resource['_id']} is gone")
        return await stream.read()

    return read_file


@dataclass
class Run:
    execution: dict[str, Any]
    task: asyncio.Task | None = None
    stop: str | None = None
    """Why the engine cancelled it: terminated, lost or stopping."""


@dataclass
class Page:
    """Executions of one service taken from its queue, read, and ready to be claimed."""

    service_id: ObjectId
    popped: dict[ObjectId, int]
    waiting: list[dict[str, Any]]
    resources: dict[tuple[str, ObjectId], dict[str, Any]]
    events: dict[ObjectId, dict[str, Any]]
    state: dict[str, Any]


@dataclass
class Engine:
    db: AsyncDatabase
    redis: Redis
    worker: str
    capacity: int
    lease: timedelta
    poll_delay_s: float
    patience: Patience
    runs: dict[ObjectId, Run] = field(default_factory=dict)
    """By claim: the runs this worker holds (until their end is written)."""
    _active: int = 0
    """How many of those are still running their function."""
    _ending: list[tuple[UpdateOne, Run]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _not_before: dict[ObjectId, float] = field(default_factory=dict)
    _ready: list[ObjectId] = field(default_factory=list)
    _ready_at: float = 0.0
    _stopping: bool = False
    _draining: bool = False
    _claims_over: asyncio.Event = field(default_factory=asyncio.Event)
    _loops: list[asyncio.Task] = field(default_factory=list)
    _redis_not_before: float = 0.0
    _redis_wait: float = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._cycle_loop()),
            loop.create_task(self._heartbeat_loop()),
            loop.create_task(self._wake_loop()),
        ]

    # -- the cycle: claim a page, write it with the ends -------------------------------------

    async def _cycle_loop(self) -> None:
        while True:
            try:
                if await self._cycle():
                    return
            except Exception:
                # A bug in one cycle must not leave the worker running nothing.
                log.exception("an execution cycle failed; going on")
                await asyncio.sleep(REDIS_RETRY_S)

    async def _wake_loop(self) -> None:
        """Wake the cycle whenever executions are queued (execution_queue.WAKE): an idle
        worker claims within a Redis round trip of the push, not at its next poll."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(execution_queue.WAKE)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._wake.set()
            except Exception as exc:
                # Polling goes on meanwhile; the listener comes back with Redis.
                if self.patience.noticed(exc) is None:
                    log.exception("listening for queued executions failed")
                await asyncio.sleep(REDIS_RETRY_S)

    async def _cycle(self) -> bool:
        """One cycle; True once a stopping engine has nothing left to write."""
        if self._stopping:
            self._claims_over.set()
        await self._fill()
        pages = [] if self._stopping else await self._claimable()
        ending, self._ending = self._ending, []
        if not pages and not ending:
            if self._draining:
                return True
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_delay_s)
            return False
        await self._write(ending, pages)
        return False

    async def _claimable(self) -> list[Page]:
        """`_prepare`, unless Redis was just found away: then nothing for a while (backing
        off up to `REDIS_RETRY_S`), so the ends of runs are still written meanwhile."""
        if time.monotonic() < self._redis_not_before:
            return []
        try:
            pages = await self._prepare()
        except Exception as exc:
            if self.patience.noticed(exc) != "Redis":
                raise
            self._redis_wait = min(REDIS_RETRY_S, max(0.05, 2 * self._redis_wait))
            self._redis_not_before = time.monotonic() + self._redis_wait
            log.warning("Redis unavailable (%s); claiming again in %.2f s", exc, self._redis_wait)
            return []
        self._redis_wait = 0.0
        return pages

    async def _fill(self) -> None:
        deadline = time.monotonic() + FILL_S
        while self._active > 0 and 2 * (self.capacity - self._active) < self.capacity:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _prepare(self) -> list[Page]:
        """Pages of queued executions, from every service with some, while room lasts."""
        room = self.capacity - self._active
        if room <= 0:
            return []
        moment = time.monotonic()
        if not self._ready or moment - self._ready_at > READY_REFRESH_S:
            self._ready = await execution_queue.ready_services(self.redis)
            self._ready_at = moment
            random.shuffle(self._ready)
        pages, found = [], False
        for service in self._ready:
            if room <= 0:
                break
            if self._not_before.get(service, 0.0) <= moment:
                done, page = await self._page_of(service, room)
                found |= done
                if page is not None:
                    pages.append(page)
                    room -= len(page.waiting)
        if not found:
            self._ready = []
        return pages

    async def _page_of(self, service_id: ObjectId, room: int) -> tuple[bool, Page | None]:
        """Take up to `room` of the service's queued ids and read them, the service's free
        slots and the executions' resources; (whether anything was done, the page to claim)."""
        looked = now()
        popped = await execution_queue.pop(self.redis, service_id, room)
        if not popped:
            return False, None
        try:
            return True, await self.patience.call(
                "reading queued executions", lambda: self._read_page(service_id, popped, looked)
            )
        except Exception as exc:
            if not isinstance(exc, GaveUp):
                log.exception("reading %d queued executions failed", len(popped))
            await self._put_back(service_id, popped, [{"_id": i} for i in popped])
            return True, None

    async def _read_page(
        self, service_id: ObjectId, popped: dict[ObjectId, int], looked: datetime
    ) -> Page | None:
        """Read popped executions, their service and their resources; abort those that can
        no longer run. Safe to repeat (the aborts are conditional)."""
        state, waiting = await asyncio.gather(
            execution_runs.service_state(self.db, service_id),
            execution_runs.waiting_among(self.db, list(popped)),
        )
        if state is None:
            if await execution_runs.abort_orphans(self.db, service_id):
                await execution_queue.drop_service(self.redis, service_id)
                return None
            # Not this database's: its ids are another deployment's to claim.
            await self._put_back(service_id, popped, [{"_id": i} for i in popped])
            self._not_before[service_id] = time.monotonic() + UNKNOWN_RETRY_S
            return None
        if not state["active"]:
            reason = "its service was deactivated before it started"
            await execution_runs.abort(self.db, dict.fromkeys(popped, reason), looked)
            await self._queue_next(waiting)
            return None
        ordered = [execution for execution in waiting if execution.get("orderKey")]
        if ordered:
            # Not first in line: dropped from the queue; the run before it queues it as it
            # ends (`_queue_next`).
            first = await execution_runs.first_in_line(self.db, ordered)
            waiting = [e for e in waiting if not e.get("orderKey") or e["_id"] in first]
        resources, events = await asyncio.gather(
            execution_runs.resources_of(self.db, waiting),
            execution_runs.events_of(self.db, waiting),
        )
        gone: dict[ObjectId, str] = {}
        runnable = []
        for execution in waiting:
            reference = execution["resource"]
            if reference is not None and (reference["type"], reference["id"]) not in resources:
                kind, ident = reference["type"], reference["id"]
                gone[execution["_id"]] = f"its {kind} {ident} was deleted before it started"
            else:
                runnable.append(execution)
        await execution_runs.abort(self.db, gone, looked)
        await self._queue_next([execution for execution in waiting if execution["_id"] in gone])
        if not runnable:
            return None
        return Page(service_id, popped, runnable, resources, events, state)

    async def _write(self, ending: list[tuple[UpdateOne, Run]], pages: list[Page]) -> None:
        """One ordered write: the ends, then every page's claims, each page in the slots the
        ends free first; what is not claimed goes back to its place in its queue."""
        claims, runs, unclaimed = [], [], []
        for page in pages:
            slots = self._slot_order(page, [run for _, run in ending])
            if len(slots) < len(page.waiting):
                self._not_before[page.service_id] = time.monotonic() + BUSY_RETRY_S
            ops, made = execution_runs.claiming(page.waiting, slots, self.worker, self.lease)
            claims += ops
            runs += [(page, run) for run in made]
            unclaimed += [(page, execution) for execution in page.waiting[len(ops) :]]
        try:
            # As long as it takes: without MongoDB a worker has nothing else to do, and the
            # same ops sent again are harmless (see the module's docstring).
            held, tried = await self.patience.call(
                f"recording {len(ending)} ends and {len(claims)} claims",
                lambda: execution_runs.end_and_claim(
                    self.db, [op for op, _ in ending], claims, [run for _, run in runs]
                ),
                retry_s=float("inf"),
            )
        except Exception:
            log.exception("recording %d ends and %d claims failed", len(ending), len(claims))
            self._ending[:0] = ending
            await self._put_all_back(unclaimed + [(p, run) for p, run in runs])
            await asyncio.sleep(REDIS_RETRY_S)
            return
        for _, run in ending:
            self._forget(run)
        await self._queue_next([run.execution for _, run in ending])
        await self._put_all_back(unclaimed + runs[tried:])
        started = {run["_id"] for run in held}
        for page, run in runs[:tried]:
            if run["_id"] in started:
                reference = run["resource"]
                found = (
                    page.resources.get((reference["type"], reference["id"])) if reference else None
                )
                self._start(run, found, page.events.get(run.get("eventId")))

    async def _queue_next(self, ended: list[dict[str, Any]]) -> None:
        """Queue what is next in line after executions of ordered triggers ended (or were
        aborted). If that fails, the queue check queues it later."""
        keys = [execution["orderKey"] for execution in ended if execution.get("orderKey")]
        if not keys:
            return
        try:
            await execution_queue.push(self.redis, await execution_runs.next_in_line(self.db, keys))
        except Exception as exc:
            if self.patience.noticed(exc) is None:
                raise
            log.warning("the next executions of %d orders are left to the queue check", len(keys))

    async def _put_all_back(self, left: list[tuple[Page, dict[str, Any]]]) -> None:
        by_page: dict[int, tuple[Page, list[dict[str, Any]]]] = {}
        for page, execution in left:
            by_page.setdefault(id(page), (page, []))[1].append(execution)
        for page, executions in by_page.values():
            await self._put_back(page.service_id, page.popped, executions)

    async def _put_back(
        self, service_id: ObjectId, popped: dict[ObjectId, int], executions: list[dict[str, Any]]
    ) -> None:
        """Queue again, in their places, executions taken from the queue but not claimed.
        Redis being away loses them from the queue, not from MongoDB: the worker queues every
        waiting execution again once Redis is back (triggers/worker.py)."""
        if executions:
            back = {str(execution["_id"]): popped[execution["_id"]] for execution in executions}
            try:
                await execution_queue.push_scored(self.redis, {service_id: back})
            except Exception as exc:
                if self.patience.noticed(exc) is None:
                    raise
                log.warning("%d executions left to be queued again: %s", len(back), exc)

    def _slot_order(self, page: Page, ending: list[Run]) -> list[int]:
        """Slots for the page: first those the ends in the same write free, then the free
        ones no run of this worker holds, shuffled; no more than the concurrency leaves (a
        concurrency lowered below what runs leaves none until enough have ended)."""
        service_id, concurrency = page.service_id, page.state["concurrency"]
        mine = {
            run.execution["slot"]
            for run in self.runs.values()
            if run.execution["serviceId"] == service_id
        }
        freed = [
            run.execution["slot"]
            for run in ending
            if run.execution["serviceId"] == service_id and run.execution["slot"] < concurrency
        ]
        taken = page.state["running"] | mine
        others = list(set(range(concurrency)) - taken)
        random.shuffle(others)
        room = concurrency - len({slot for slot in taken if slot < concurrency}) + len(freed)
        return (freed + others)[: max(0, room)]

    # -- running -------------------------------------------------------------------------------

    def _start(
        self,
        execution: dict[str, Any],
        resource: dict[str, Any] | None,
        event: dict[str, Any] | None,
    ) -> None:
        run = Run(execution)
        self.runs[execution["claim"]] = run
        self._active += 1
        run.task = asyncio.get_running_loop().create_task(self._run(run, resource, event))

    async def _run(
        self, run: Run, resource: dict[str, Any] | None, event: dict[str, Any] | None
    ) -> None:
        try:
            await self._execute(run, resource, event)
        finally:
            self._active -= 1
            self._wake.set()

    async def _execute(
        self, run: Run, resource: dict[str, Any] | None, event: dict[str, Any] | None
    ) -> None:
        execution = run.execution
        reports = Reports(self.db, execution)
        output, error = None, None
        began = time.perf_counter()
        try:
            function = functions.lookup(execution["function"])
            data = function.input.model_validate(execution["input"])
            context = RunContext(
                resource, event, reports.log, reports.progress, _file_reader(self.db, resource)
            )
            result = await asyncio.wait_for(function.run(data, context), execution["timeout"])
            await execution_results.succeeded(
                self.db, execution, resource, result, time.perf_counter() - began
            )
            status, output = Status.SUCCESS, _json(result)
        except asyncio.CancelledError:
            if run.stop is None:
                raise
            if run.stop != "terminated":
                await reports.settle()
                if run.stop == "lost":
                    self._forget(run)
                return
            status, error = Status.TERMINATED, "terminated"
        except TimeoutError:
            status, error = Status.FAILED, f"timed out after {execution['timeout']} s"
        except Exception as exc:
            status, error = Status.FAILED, f"{type(exc).__name__}: {exc}"
        if error is not None:
            await self._record_failure(execution, error, began)
        progress, lines = await reports.settle()
        op = execution_runs.end(
            execution, status, output=output, error=error, progress=progress, lines=lines
        )
        self._ending.append((op, run))

    async def _record_failure(self, execution: dict[str, Any], error: str, began: float) -> None:
        """A failed run's outcome where it goes besides the execution; a failure to record
        it must not keep the execution from ending."""
        try:
            await execution_results.failed(self.db, execution, error, time.perf_counter() - began)
        except Exception:
            log.exception("recording the failure of execution %s failed", execution["_id"])

    def _forget(self, run: Run) -> None:
        """A run whose end is written (or that is no longer this worker's) frees its slot,
        and its service may be looked at again at once."""
        self.runs.pop(run.execution["claim"], None)
        self._not_before.pop(run.execution["serviceId"], None)

    async def _heartbeat_loop(self) -> None:
        interval = min(1.0, self.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            held = [run.execution for run in self.runs.values()]
            if not held:
                continue
            try:
                terminate, lost = await execution_runs.renew(self.db, held, self.lease)
            except Exception as exc:
                # Tried again next beat; a lease that lapsed meanwhile is not assumed lost,
                # nor kept: the renewal that gets through says which runs are still ours.
                if self.patience.noticed(exc) is None:
                    log.exception("renewing %d leases failed", len(held))
                continue
            for claim in terminate | lost:
                run = self.runs.get(claim)
                if run is not None and run.task is not None and not run.task.done():
                    run.stop = "terminated" if claim in terminate else "lost"
                    run.task.cancel()

    # -- stopping ------------------------------------------------------------------------------

    async def stop(self, reason: str) -> None:
        """Stop claiming, let ended runs be written, hand the others back and queue them."""
        self._stopping = True
        self._wake.set()
        cycling, beating, waking = self._loops
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._claims_over.wait(), STOP_CLAIMING_S)
        running = [run for run in self.runs.values() if run.task and not run.task.done()]
        for run in running:
            run.stop = "stopping"
            run.task.cancel()
        await asyncio.gather(*(run.task for run in running), return_exceptions=True)
        self._draining = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(cycling), STOP_CLAIMING_S)
        for loop in (cycling, beating, waking):
            loop.cancel()
        for loop in (cycling, beating, waking):
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        # A run whose function returned as it was cancelled ends as it would have (asyncio's
        # wait_for keeps a result that raced with its cancellation): it is no longer held.
        stopped = [run.execution for run in running if run.execution["claim"] in self.runs]
        try:
            back = await self.patience.call(
                "handing runs back", lambda: execution_runs.hand_back(self.db, stopped, reason)
            )
            await execution_queue.push(self.redis, [e for e in stopped if e["_id"] in back])
        except Exception as exc:
            # Their leases lapse and the reaper reruns them; the queue check queues them.
            if self.patience.noticed(exc) is None:
                raise
            log.warning("%d runs left to the reaper: %s", len(stopped), exc)


def _json(value: Any) -> Any:
    """Outputs are stored as JSON data: anything else is stored as its text."""
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)
