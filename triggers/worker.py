"""The worker process.

Each worker registers itself in MongoDB's `workers` collection and renews a heartbeat, so
operators (and, later, the execution reaper) know which workers are alive; a worker that stops
cleanly removes its entry, one that is killed expires by TTL. The `ping` job answers with the
worker's id: the cheapest proof that the queue path gateway → Redis → worker works.
`run_command` carries out Commands (triggers/commands.py). Executions do not come as arq jobs:
each worker's execution engine (triggers/execution_engine.py) claims them from their services'
queues, up to `LOOM_WORKER_MAX_JOBS` at once (`loom worker --concurrency N`); run several
`loom worker` processes (one per core, on as many hosts as wanted) to run more. In the
background each worker also requeues stalled commands, reaps executions whose worker died,
queues again executions Redis lost, sweeps stored files a crash left behind and removes old
events (triggers/periodic.py), and fires due cron triggers and scheduled runs
(triggers/cron/). Each worker's dispatcher (triggers/webhooks/dispatcher.py) sends the
webhook deliveries that are due, and its sweep queues again those nobody holds. Every worker
is also a candidate relay (triggers/relay/): the one holding the relay's lease turns changes
into events, and matching triggers into executions and deliveries.

A worker outlives MongoDB and Redis being away, and exits only when told to (SIGTERM,
SIGINT). arq's own Worker, which still polls for commands and pings, returns with the first
Redis error of its poll: here its poll runs under a loop that starts it again, with backoff,
on the same connection pool (redis-py reconnects on the next command) — its running commands,
the execution engine and the background rounds are untouched meanwhile. Redis coming back
(or found empty: the key `loom:workers:redis` is gone) makes the worker queue every waiting
execution again at once, rather than after `LOOM_QUEUE_CHECK_S`.
"""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.worker import Worker, func

from gateway.connections import mongo_client
from gateway.indexes import INDEXES
from gateway.settings import Settings
from resolvers.deployments.rollups import roll_up
from resolvers.timestamps import now
from triggers.commands import requeue_stalled, run_command
from triggers.cron.retention import remove_old_fires
from triggers.cron.scheduler import fire_due
from triggers.event_retention import remove_old_events
from triggers.execution_engine import Engine
from triggers.executions import reap_lost, requeue_waiting
from triggers.file_sweeps import sweep_files
from triggers.patience import MAX_WAIT_S, Patience
from triggers.periodic import every
from triggers.relay.relay import Relay
from triggers.webhooks.address_guard import AddressGuard
from triggers.webhooks.delivery_retention import remove_old_deliveries
from triggers.webhooks.dispatcher import Dispatcher, requeue_pending
from triggers.webhooks.secret_key import secret_box

log = logging.getLogger("loom.worker")

HEARTBEAT_INTERVAL_S = 10.0
MAX_COMMAND_S = 7 * 24 * 3600
REDIS_MARKER = "loom:workers:redis"
"""Set by the workers, never expiring: a Redis without it has lost its data."""
REDIS_WATCH_S = 0.5
STOP_POLL_S = 5.0
DELIVERY_SWEEP_AFTER_S = 10.0
REDIS_TIMEOUT_S = 10.0
"""A Redis command unanswered this long fails (and is retried): a host that vanished without
closing its connections must not hang a worker."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def ping(ctx: dict[str, Any]) -> str:
    return ctx["worker_id"]


async def _heartbeat(ctx: dict[str, Any]) -> None:
    await ctx["db"].workers.update_one(
        {"_id": ctx["worker_id"]},
        {"$set": {"lastSeenAt": now(), "pid": os.getpid(), "startedAt": ctx["started_at"]}},
        upsert=True,
    )


async def _remove_old_events(ctx: dict[str, Any]) -> None:
    await remove_old_events(ctx["db"], ctx["settings"].event_retention_days)


async def _remove_old_fires(ctx: dict[str, Any]) -> None:
    await remove_old_fires(ctx["db"], ctx["settings"].event_retention_days)


async def _requeue_quiet(ctx: dict[str, Any]) -> None:
    await requeue_waiting(ctx, timedelta(seconds=ctx["settings"].queue_check_s / 2))


async def _remove_old_deliveries(ctx: dict[str, Any]) -> None:
    await remove_old_deliveries(ctx["db"], ctx["settings"].event_retention_days)


async def _requeue_deliveries(ctx: dict[str, Any]) -> None:
    """Deliveries due for a while that nobody holds: their worker died, or Redis lost them."""
    await requeue_pending(ctx["db"], ctx["redis"], DELIVERY_SWEEP_AFTER_S)


async def watch_redis(ctx: dict[str, Any]) -> None:
    """Queue every waiting execution again whenever Redis may have lost some: at start-up,
    after any call of this worker found Redis away, and when Redis is found empty (restarted
    without its data, or flushed) — the marker key is set by whichever worker sees it missing
    first."""
    patience: Patience = ctx["patience"]
    checked_at: float | None = None
    while True:
        started = time.monotonic()
        try:
            fresh = await ctx["redis"].set(REDIS_MARKER, ctx["worker_id"], nx=True)
            away = patience.last_away.get("Redis")
            if fresh or checked_at is None or (away is not None and away >= checked_at):
                if checked_at is not None:
                    log.warning("Redis is back: queueing every waiting execution again")
                await requeue_waiting(ctx)
                await requeue_pending(ctx["db"], ctx["redis"])
            checked_at = started
        except Exception as exc:
            if patience.noticed(exc) is None:
                log.exception("checking Redis failed")
        await asyncio.sleep(REDIS_WATCH_S)


class WorkerProcess:
    """One worker: the execution engine, arq's poll for commands, the background rounds."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        if settings.mongodb_url is None or settings.redis_url is None:
            raise ValueError("resolve the embedded stack's URLs before building a worker")
        self.settings = settings
        self.mongodb_url: str = settings.mongodb_url
        self.redis_url: str = settings.redis_url
        self.overrides = overrides

    def run(self) -> None:
        asyncio.run(self.main())

    async def main(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        # Start-up waits for MongoDB as long as it takes, but a worker told to stop meanwhile
        # stops at once: it holds nothing yet.
        starting = asyncio.create_task(self._start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.info("stopped before it started")
            return
        stopped.cancel()
        ctx = starting.result()
        arq_worker = self._arq_worker(ctx)
        polling = asyncio.create_task(self._poll(arq_worker))
        try:
            await stop.wait()
        finally:
            log.info("stopping %s", ctx["worker_id"])
            polling.cancel()
            # Something under arq's poll has been seen to swallow the cancellation (once,
            # right after Redis came back): stopping must not wait on it for ever.
            done, _ = await asyncio.wait({polling}, timeout=STOP_POLL_S)
            if not done:
                log.warning("arq's poll did not stop within %.0f s; stopping anyway", STOP_POLL_S)
            for task in arq_worker.tasks.values():
                task.cancel()
            await asyncio.gather(*arq_worker.tasks.values(), return_exceptions=True)
            await self._stop(ctx)

    async def _start(self) -> dict[str, Any]:
        settings = self.settings
        mongo = mongo_client(self.mongodb_url, settings)
        patience = Patience(settings.transient_retry_s)
        ctx: dict[str, Any] = {
            "mongo": mongo,
            "db": mongo[settings.db_name],
            "redis": ArqRedis.from_url(
                self.redis_url,
                socket_connect_timeout=2,
                socket_timeout=REDIS_TIMEOUT_S,
            ),
            "settings": settings,
            "patience": patience,
            "worker_id": worker_id(),
            "started_at": now(),
        }
        # The slot index is what bounds a service's concurrency: never run without it.
        await patience.call(
            "creating the executions' indexes",
            lambda: ctx["db"].executions.create_indexes(INDEXES["executions"]),
            retry_s=float("inf"),
        )
        # (interval, name, work, first round after): the queue check's first round would
        # repeat the start-up one `watch_redis` makes.
        check_s = settings.queue_check_s / 2
        rounds = [
            (HEARTBEAT_INTERVAL_S, "heartbeat", _heartbeat, 0),
            (settings.command_sweep_s, "command sweep", requeue_stalled, 0),
            (settings.reaper_interval_s, "execution reaper", reap_lost, 0),
            (settings.file_sweep_s, "file sweep", sweep_files, 0),
            (settings.event_retention_s, "event retention", _remove_old_events, 0),
            (settings.cron_poll_s, "cron scheduler", fire_due, 0),
            (settings.event_retention_s, "cron fire retention", _remove_old_fires, 0),
            (check_s, "queue check", _requeue_quiet, check_s),
            (settings.reaper_interval_s, "delivery sweep", _requeue_deliveries, 0),
            (settings.event_retention_s, "delivery retention", _remove_old_deliveries, 0),
            (settings.stats_rollup_s, "stats rollup", lambda ctx: roll_up(ctx["db"]), 0),
        ]
        ctx["loops"] = [
            asyncio.create_task(
                every(interval, name, lambda work=work: work(ctx), first_in, patience)
            )
            for interval, name, work, first_in in rounds
        ]
        ctx["loops"].append(asyncio.create_task(watch_redis(ctx)))
        if settings.relay:
            ctx["relay"] = Relay(
                ctx["db"], ctx["redis"], ctx["worker_id"], settings.relay_lease_s, patience
            )
            ctx["loops"].append(asyncio.create_task(ctx["relay"].run()))
        ctx["engine"] = Engine(
            ctx["db"],
            ctx["redis"],
            ctx["worker_id"],
            settings.worker_max_jobs,
            timedelta(seconds=settings.execution_lease_s),
            settings.worker_poll_delay_s,
            patience,
        )
        ctx["engine"].start()
        ctx["dispatcher"] = Dispatcher(
            ctx["db"],
            ctx["redis"],
            ctx["worker_id"],
            settings.webhook_max_in_flight,
            settings.webhook_poll_s,
            settings.webhook_retry_after_cap_s,
            secret_box(settings),
            AddressGuard(allow_private=settings.webhook_allow_private),
            patience,
        )
        ctx["dispatcher"].start()
        return ctx

    def _arq_worker(self, ctx: dict[str, Any]) -> Worker:
        settings = self.settings
        return Worker(
            # A command's job keeps no result: the sweep must be able to queue it again under
            # the same job id if its run was cut short (arq keeps a result for an hour).
            functions=[ping, func(run_command, keep_result=0)],
            redis_pool=ctx["redis"],
            ctx=ctx,
            handle_signals=False,
            # Commands renew their own leases; arq's timeout must never cut them short.
            job_timeout=MAX_COMMAND_S,
            **{
                "max_jobs": settings.worker_max_jobs,
                "poll_delay": settings.worker_poll_delay_s,
                **self.overrides,
            },
        )

    async def _poll(self, arq_worker: Worker) -> None:
        """arq's poll, started again whenever it ends with an error (Redis away): its jobs
        in flight go on, and it backs off up to `MAX_WAIT_S` between starts."""
        wait = 0.05
        while True:
            started = time.monotonic()
            try:
                await arq_worker.main()
            except Exception as exc:
                if arq_worker.ctx["patience"].noticed(exc) is None:
                    log.exception("arq's poll failed; starting it again")
                else:
                    log.warning("Redis unavailable (%s); polling again", exc)
            if time.monotonic() - started > 10 * MAX_WAIT_S:
                wait = 0.05
            await asyncio.sleep(wait)
            wait = min(MAX_WAIT_S, wait * 2)

    async def _stop(self, ctx: dict[str, Any]) -> None:
        await ctx["engine"].stop(f"{ctx['worker_id']} stopped")
        await ctx["dispatcher"].stop()
        for loop in ctx["loops"]:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        if "relay" in ctx:
            await ctx["relay"].release()
        with contextlib.suppress(Exception):
            await ctx["db"].workers.delete_one({"_id": ctx["worker_id"]})
        await ctx["redis"].aclose()
        await ctx["mongo"].close()


def build_worker(settings: Settings, **overrides: Any) -> WorkerProcess:
    return WorkerProcess(settings, **overrides)
