"""A worker's executions: claimed a page at a time, run side by side, ended in bulk.

One engine per worker process runs up to `capacity` executions at once (`LOOM_WORKER_MAX_JOBS`,
`loom worker --concurrency`). Its claim loop looks at the services with queued executions
(triggers/execution_queue.py) and, for each, reads in one command how many of the service's
slots are free, takes that many ids from the service's queue (never more than it can run
now), reads those executions and their resources, and claims them all with one bulk write
(resolvers/execution_runs.py). Runs that end are written together by the end loop — whatever
ended while the previous write was under way goes in the next one — and their slots are the
first this worker tries when it claims from that service again, so two workers draining one
service rarely reach for the same slot. One heartbeat per worker renews every lease it holds
and picks up termination requests, whatever the number of runs.

So a busy worker costs MongoDB about four commands per page of executions and Redis one pop,
instead of a job, a claim, a slot, a heartbeat and an end per execution. Nothing is lost when
a worker dies: ids it had popped but not claimed are still `created` and queued again by the
queue check; claimed runs hold leases the reaper rerun or fails once they lapse; a worker
that is stopped hands its runs back at once.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from resolvers import execution_runs, functions
from resolvers.executions import Status
from resolvers.timestamps import now
from triggers import execution_queue
from triggers.execution_reports import Reports

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
END_RETRY_S = 1.0


@dataclass
class RunContext:
    """The FunctionContext a running function gets."""

    resource: dict[str, Any] | None
    log: logging.Logger
    progress: Callable[[int, str], Awaitable[None]]


@dataclass
class Run:
    execution: dict[str, Any]
    task: asyncio.Task | None = None
    stop: str | None = None
    """Why the engine cancelled it: terminated, lost or stopping."""


@dataclass
class Engine:
    db: AsyncDatabase
    redis: Redis
    worker: str
    capacity: int
    lease: timedelta
    poll_delay_s: float
    runs: dict[ObjectId, Run] = field(default_factory=dict)
    """By claim: the runs this worker holds (until their end is written)."""
    _ending: list[tuple[UpdateOne, Run]] = field(default_factory=list)
    _to_write: asyncio.Event = field(default_factory=asyncio.Event)
    _freed: asyncio.Event = field(default_factory=asyncio.Event)
    _freed_slots: dict[ObjectId, list[int]] = field(default_factory=dict)
    _not_before: dict[ObjectId, float] = field(default_factory=dict)
    _ready: list[ObjectId] = field(default_factory=list)
    _ready_at: float = 0.0
    _stopping: bool = False
    _draining: bool = False
    _loops: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._claim_loop()),
            loop.create_task(self._end_loop()),
            loop.create_task(self._heartbeat_loop()),
        ]

    # -- claiming ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                found = await self._claim_round()
            except Exception:
                log.exception("claiming executions failed; trying again")
                found = False
            if not found:
                self._freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), self.poll_delay_s)

    async def _claim_round(self) -> bool:
        """Claim from every service with queued executions while capacity lasts; whether
        anything was done."""
        if len(self.runs) >= self.capacity:
            return False
        moment = time.monotonic()
        if not self._ready or moment - self._ready_at > READY_REFRESH_S:
            self._ready = await execution_queue.ready_services(self.redis)
            self._ready_at = moment
            random.shuffle(self._ready)
        done = False
        for service in self._ready:
            if self._stopping or len(self.runs) >= self.capacity:
                break
            if self._not_before.get(service, 0.0) <= moment:
                done |= await self._claim_from(service, self.capacity - len(self.runs))
        if not done:
            self._ready = []
        return done

    async def _claim_from(self, service_id: ObjectId, room: int) -> bool:
        """Take up to `room` of the service's queued ids, then read the service's free slots
        and those executions together, and claim as many as there are slots; the others go
        back to their places in the queue."""
        looked = now()
        popped = await execution_queue.pop(self.redis, service_id, room)
        if not popped:
            return False
        state, waiting = await asyncio.gather(
            execution_runs.service_state(self.db, service_id),
            execution_runs.waiting_among(self.db, list(popped)),
        )
        if state is None:
            if await execution_runs.abort_orphans(self.db, service_id):
                await execution_queue.drop_service(self.redis, service_id)
                return True
            # Not this database's: its ids are another deployment's to claim.
            await self._put_back(service_id, popped, [{"_id": i} for i in popped])
            self._not_before[service_id] = time.monotonic() + UNKNOWN_RETRY_S
            return False
        if not state["active"]:
            reason = "its service was deactivated before it started"
            await execution_runs.abort(self.db, dict.fromkeys(popped, reason), looked)
            return True
        slots = self._slot_order(service_id, state)
        if len(slots) < len(waiting):
            await self._put_back(service_id, popped, waiting[len(slots) :])
            waiting = waiting[: len(slots)]
            self._not_before[service_id] = time.monotonic() + BUSY_RETRY_S
        if not waiting:
            return False
        resources = await execution_runs.resources_of(self.db, waiting)
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
        runs, refused = await execution_runs.claim(
            self.db, runnable, slots, self.worker, self.lease
        )
        await self._put_back(service_id, popped, refused)
        for run in runs:
            reference = run["resource"]
            resource = resources.get((reference["type"], reference["id"])) if reference else None
            self._start(run, resource)
        return True

    async def _put_back(
        self, service_id: ObjectId, popped: dict[ObjectId, int], executions: list[dict[str, Any]]
    ) -> None:
        """Queue again, in their places, executions taken from the queue but not claimed."""
        if executions:
            back = {str(execution["_id"]): popped[execution["_id"]] for execution in executions}
            await execution_queue.push_scored(self.redis, {service_id: back})

    def _slot_order(self, service_id: ObjectId, state: dict[str, Any]) -> list[int]:
        """The service's free slots, those this worker freed last first, the rest shuffled (a
        concurrency lowered below what runs leaves none until enough have ended)."""
        free = set(range(state["concurrency"])) - state["running"]
        mine = [slot for slot in self._freed_slots.pop(service_id, []) if slot in free]
        others = list(free - set(mine))
        random.shuffle(others)
        return (mine + others)[: max(0, state["concurrency"] - len(state["running"]))]

    # -- running -------------------------------------------------------------------------------

    def _start(self, execution: dict[str, Any], resource: dict[str, Any] | None) -> None:
        run = Run(execution)
        self.runs[execution["claim"]] = run
        run.task = asyncio.get_running_loop().create_task(self._run(run, resource))

    async def _run(self, run: Run, resource: dict[str, Any] | None) -> None:
        execution = run.execution
        reports = Reports(self.db, execution)
        output, error = None, None
        try:
            function = functions.lookup(execution["function"])
            data = function.input.model_validate(execution["input"])
            context = RunContext(resource, reports.log, reports.progress)
            result = await asyncio.wait_for(function.run(data, context), execution["timeout"])
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
        progress, lines = await reports.settle()
        op = execution_runs.end(
            execution, status, output=output, error=error, progress=progress, lines=lines
        )
        self._ending.append((op, run))
        self._to_write.set()

    async def _end_loop(self) -> None:
        """Write the ends of runs, as many as are waiting, in one command each time."""
        while True:
            await self._to_write.wait()
            self._to_write.clear()
            batch, self._ending = self._ending, []
            try:
                await execution_runs.write(self.db, [op for op, _ in batch])
            except Exception:
                log.exception("recording the end of %d executions failed; retrying", len(batch))
                self._ending[:0] = batch
                await asyncio.sleep(END_RETRY_S)
                self._to_write.set()
                continue
            for _, run in batch:
                self._release(run)
            if self._draining and not self._ending:
                return

    def _release(self, run: Run) -> None:
        """An ended run frees its capacity and its slot, which this worker tries first."""
        service_id = run.execution["serviceId"]
        self._forget(run)
        self._freed_slots.setdefault(service_id, []).append(run.execution["slot"])
        self._not_before.pop(service_id, None)

    def _forget(self, run: Run) -> None:
        self.runs.pop(run.execution["claim"], None)
        self._freed.set()

    async def _heartbeat_loop(self) -> None:
        interval = min(1.0, self.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            held = [run.execution for run in self.runs.values()]
            if not held:
                continue
            try:
                terminate, lost = await execution_runs.renew(self.db, held, self.lease)
            except Exception:
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
        self._freed.set()
        claiming, ending, beating = self._loops
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(claiming), STOP_CLAIMING_S)
        claiming.cancel()
        running = [run for run in self.runs.values() if run.task and not run.task.done()]
        for run in running:
            run.stop = "stopping"
            run.task.cancel()
        await asyncio.gather(*(run.task for run in running), return_exceptions=True)
        self._draining = True
        self._to_write.set()
        with contextlib.suppress(asyncio.CancelledError):
            await ending
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        stopped = [run.execution for run in running]
        back = await execution_runs.hand_back(self.db, stopped, reason)
        await execution_queue.push(self.redis, [e for e in stopped if e["_id"] in back])


def _json(value: Any) -> Any:
    """Outputs are stored as JSON data: anything else is stored as its text."""
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)
