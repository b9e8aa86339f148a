"""Executions at scale: a 20,000-item executeBatch, end-to-end completion by real workers, and
the fan-out latency of one execution's updates to 1,000 WebSocket subscribers.

    .venv/bin/python bench/executions.py            # about 3 minutes on 2 cores

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set (the workers then share Redis's default arq queue with whatever else
uses it), and on a fresh database: an organization with an owner key (as `loom keys create`),
a project, a dataset and a service running the built-in `echo` function (GraphQL mutations to
the gateway; the service keeps the application's default concurrency unless
--service-concurrency says otherwise), and 20,000 items written directly with PyMongo
(documents as `resolvers.items` writes them). One Loom gateway runs under uvicorn in a child
process; the workers are real `loom worker` processes (`python -m gateway.cli worker`),
everything with LOOM_LOG_LEVEL=WARNING and no other LOOM_* knob changed.

1. executeBatch over every item (GraphQL mutation, `filter: {}`):
   (a) creation + enqueue, one worker: from the mutation until the command is `success` (all
       20,000 executions inserted and queued, while the worker also starts running them); then
       MongoDB (20,000 executions with the batch's id, one per item) and Redis (each one queued
       with its job record, running, or finished with a result) must add up;
   (b) completion, two workers, a fresh batch: from the mutation until all 20,000 executions are
       `success` (counted every 0.2 s on the status index), at most --completion-cap-s seconds;
       a run cut short reports the rate it reached and the projected total. mongod's
       serverStatus counters (transactions committed / aborted, operations) are reported per
       completed execution;
   (c) what-if (--what-if-s, 0 skips it): (b) again with two workers that
       `triggers.worker.build_worker` builds with other arq settings (--what-if-max-jobs,
       --what-if-poll-delay; by default only the poll delay differs) — the same application
       code, started from this script — to measure what the worker's arq configuration costs.
2. Fan-out: 1,000 graphql-transport-ws clients (the `websockets` library, in this process) on
   the one gateway, all subscribed to `executionUpdated(executionId:)` of ONE shared execution
   (the worst case: every write reaches every subscriber); then 20 writes to that execution's
   progress straight into MongoDB, 100 ms apart. The k-th message a subscriber receives is the
   k-th write's change event: its latency is receipt (taken as the socket yields it) minus the
   moment just before that write's update_one. Prints p50/p99/max, checks that every
   subscriber got exactly one message per write, and whether each message carried its own
   write's state. Run twice:
   (a) every client sends the same operation under the same key: one subscription group, the
       selection executed once per write (the goal is measured here);
   (b) each client names its operation differently (`watch0`…`watch999`): 1,000 groups, each
       executing every write on its own — the cost when nothing can be shared.

The clients, the gateway, the workers and both databases share this machine's cores: the
figures are relative, not capacities. The machinery shared with the other benchmarks is in
`harness.py`.
"""

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import httpx
from harness import REPO, CpuWindow, LoomWorker, Server, percentile

EMAIL = "bench-owner@loom.dev"
ITEMS = 20_000
CREATE_GOAL_PER_S = 5_000
SUBSCRIBERS = 1_000
UPDATES = 20
UPDATE_SPACING_S = 0.1
P99_GOAL_MS = 250.0
POLL_S = 0.2
SCRIPT = str(Path(__file__).resolve())
CONNECT_PARALLEL = 50
SEED_BATCH = 5_000

CREATE_PROJECT = """mutation($org: ID!) {
  createProject(organizationId: $org, input: {name: "Batches"}) { id } }"""
CREATE_DATASET = """mutation($p: ID!) {
  createDataset(projectId: $p, input: {name: "frames"}) { id } }"""
CREATE_SERVICE = """mutation($p: ID!, $input: ServiceInput!) {
  createService(projectId: $p, input: $input) { id functions concurrency } }"""
EXECUTE_BATCH = """mutation($s: ID!) {
  executeBatch(serviceId: $s, input: {function: "echo", filter: {}}) { id status type } }"""
EXECUTION_UPDATED = """subscription watch%d($e: ID!) {
  executionUpdated(executionId: $e) { id status progress } }"""


# --- child modes ----------------------------------------------------------------------------------


def serve(port: int, parent: int) -> None:
    harness.raise_open_files_limit()
    harness.run_uvicorn(harness.loom_app(), port, parent, websockets=True)


def what_if_worker(max_jobs: int, poll_delay: float) -> None:
    """Loom's worker exactly as `loom worker` builds it, but for arq's max_jobs / poll_delay."""
    from gateway import logs
    from gateway.settings import Settings
    from triggers.worker import build_worker

    settings = Settings()
    logs.configure(settings.log_level)
    build_worker(settings, max_jobs=max_jobs, poll_delay=poll_delay).run()


# --- the benchmark's world ------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, mongodb_url: str, redis_url: str) -> None:
        self.args = args
        self.mongodb_url, self.redis_url = mongodb_url, redis_url
        self.db_name = f"bench_{uuid.uuid4().hex[:12]}"
        self.env = harness.server_env(mongodb_url, redis_url, self.db_name)
        self.logs = Path(tempfile.mkdtemp(prefix="loom-bench-logs-"))
        self.workers: list[LoomWorker] = []
        self.server: Server | None = None

    async def open(self) -> None:
        from arq.connections import ArqRedis

        from gateway.connections import mongo_client
        from gateway.settings import Settings

        self.mongo = mongo_client(self.mongodb_url, Settings(mongodb_url=self.mongodb_url))
        self.db = self.mongo[self.db_name]
        self.redis = ArqRedis.from_url(self.redis_url)

    async def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.server is not None:
            self.server.stop()
        with contextlib.suppress(Exception):
            await self.mongo.drop_database(self.db_name)
        await self.mongo.close()
        await self.redis.aclose()

    async def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        assert self.server is not None
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(
                f"{self.server.url}/graphql",
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {self.key}"},
            )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise SystemExit(f"GraphQL failed ({response.status_code}): {str(body)[:500]}")
        return body["data"]

    async def setup(self) -> None:
        from gateway.bootstrap import create_key
        from gateway.indexes import ensure_indexes
        from resolvers.access import OrgRole

        await ensure_indexes(self.db)
        self.key, key_doc = await create_key(self.db, "Bench", OrgRole.OWNER, EMAIL, "bench")
        self.server = Server(__file__, "loom", self.env)
        probe = httpx.Request("GET", f"{self.server.url}/readyz")
        await asyncio.to_thread(self.server.wait_ready, probe)
        print(f"gateway ready: {harness.describe([self.server])}", flush=True)
        project = (await self.graphql(CREATE_PROJECT, org=str(key_doc["orgId"])))["createProject"]
        dataset = (await self.graphql(CREATE_DATASET, p=project["id"]))["createDataset"]
        service_input: dict[str, Any] = {"name": "bench", "functions": ["echo"]}
        if self.args.service_concurrency:
            service_input["concurrency"] = self.args.service_concurrency
        service = (await self.graphql(CREATE_SERVICE, p=project["id"], input=service_input))[
            "createService"
        ]
        self.service_id = service["id"]
        started = time.perf_counter()
        await self.seed_items(dataset["id"])
        print(
            f"seeded 1 organization, 1 project, 1 dataset with {ITEMS:,} items in "
            f"{time.perf_counter() - started:.1f}s; service {service['functions']} "
            f"concurrency={service['concurrency']}",
            flush=True,
        )

    async def seed_items(self, dataset_id: str) -> None:
        """Items as `resolvers.items` writes them (see tests/test_clone.py `_seed_items`)."""
        import hashlib

        from bson import ObjectId

        from resolvers.timestamps import new_document

        dataset = await self.db.datasets.find_one({"_id": ObjectId(dataset_id)})
        shas = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(10)]
        await self.db.blobs.insert_many(
            [{"_id": sha, "gridfsId": ObjectId(), "size": 1, "refs": ITEMS // 10} for sha in shas]
        )
        items = [
            new_document(
                dataset["creator"],
                orgId=dataset["orgId"],
                projectId=dataset["projectId"],
                datasetId=dataset["_id"],
                name=f"{n:05}.bin",
                dir="/",
                filename=f"/{n:05}.bin",
                type="file",
                mimetype="application/octet-stream",
                size=1,
                width=None,
                height=None,
                sha256=shas[n % 10],
                metadata={"user": {}, "system": {}},
                tags=[],
                description="",
                hidden=False,
                annotated=False,
                annotationsCount=0,
            )
            for n in range(ITEMS)
        ]
        for start in range(0, ITEMS, SEED_BATCH):
            await self.db.items.insert_many(items[start : start + SEED_BATCH], ordered=False)
        await self.db.datasets.update_one({"_id": dataset["_id"]}, {"$set": {"itemsCount": ITEMS}})

    # --- workers ------------------------------------------------------------------------------

    async def start_workers(self, count: int, argv: list[str] | None = None) -> list[LoomWorker]:
        """`count` workers, returned once each has registered in `workers` (its start-up ran)."""
        started = [
            LoomWorker(self.env, self.logs / f"worker-{len(self.workers) + n}.log", argv)
            for n in range(count)
        ]
        self.workers += started
        deadline = time.monotonic() + harness.READY_TIMEOUT_S
        while True:
            for worker in started:
                worker.check_alive()
            pids = {doc["pid"] async for doc in self.db.workers.find({}, {"pid": 1})}
            if all(worker.pid in pids for worker in started):
                return started
            if time.monotonic() > deadline:
                raise SystemExit(f"workers not registered after {harness.READY_TIMEOUT_S}s")
            await asyncio.sleep(0.05)

    async def stop_workers(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in self.workers))
        await self.db.workers.delete_many({})
        self.workers = []

    # --- batches ------------------------------------------------------------------------------

    async def execute_batch(self) -> tuple[Any, float, datetime]:
        """(command id, perf_counter just before the mutation, wall clock then)."""
        from bson import ObjectId

        wall, begun = datetime.now(UTC), time.perf_counter()
        command = (await self.graphql(EXECUTE_BATCH, s=self.service_id))["executeBatch"]
        return ObjectId(command["id"]), begun, wall

    async def forget_batch(self, command_id: Any) -> None:
        """Remove a batch's executions and everything arq holds for them (workers stopped), so
        the next phase starts from an empty queue."""
        from arq.constants import (
            default_queue_name,
            in_progress_key_prefix,
            job_key_prefix,
            result_key_prefix,
            retry_key_prefix,
        )

        ids = [str(doc["_id"]) async for doc in self.db.executions.find({"batchId": command_id})]
        prefixes = (job_key_prefix, result_key_prefix, in_progress_key_prefix, retry_key_prefix)
        for start in range(0, len(ids), 5_000):
            chunk = ids[start : start + 5_000]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(default_queue_name, *chunk)
                pipe.delete(*(prefix + i for i in chunk for prefix in prefixes))
                await pipe.execute()
        await self.db.executions.delete_many({"batchId": command_id})
        await self.db.services.update_many({}, {"$set": {"slots": []}})

    async def redis_accounting(self, command_id: Any) -> dict[str, int]:
        """Where each of the batch's executions is in arq, in one atomic Redis snapshot."""
        from arq.constants import (
            default_queue_name,
            in_progress_key_prefix,
            job_key_prefix,
            result_key_prefix,
        )

        ids = [str(doc["_id"]) async for doc in self.db.executions.find({"batchId": command_id})]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zcard(default_queue_name)
            for i in ids:
                pipe.zscore(default_queue_name, i)
                pipe.exists(job_key_prefix + i)
                pipe.exists(in_progress_key_prefix + i)
                pipe.exists(result_key_prefix + i)
            replies = await pipe.execute()
        counts: Counter[str] = Counter(queue_length=replies[0])
        for n in range(len(ids)):
            score, job, running, result = replies[1 + 4 * n : 5 + 4 * n]
            if result:
                counts["finished (result kept)"] += 1
            elif score is not None and job and running:
                counts["running (job + in-progress key)"] += 1
            elif score is not None and job:
                counts["queued (queue entry + job key)"] += 1
            else:
                counts["MISSING from Redis"] += 1
        return dict(counts)

    async def mongod_counters(self) -> Counter[str]:
        """mongod's own counters (serverStatus): transactions and write conflicts."""
        status = await self.mongo.admin.command("serverStatus")
        transactions = status.get("transactions", {})
        return Counter(
            {
                "transactions committed": transactions.get("totalCommitted", 0),
                "transactions aborted": transactions.get("totalAborted", 0),
                "write conflicts": status["metrics"]["operation"].get("writeConflicts", 0),
                "updates": status["opcounters"]["update"],
                "queries": status["opcounters"]["query"],
                "commands": status["opcounters"]["command"],
            }
        )

    async def status_counts(self, query: dict[str, Any]) -> dict[str, int]:
        pipeline = [{"$match": query}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        return {row["_id"]: row["n"] async for row in await self.db.executions.aggregate(pipeline)}

    async def phase_create(self) -> bool:
        """(a): one worker; mutation → command `success`, then the accounting."""
        print(f"\n[1a] executeBatch over {ITEMS:,} items, one `loom worker` ...", flush=True)
        (worker,) = await self.start_workers(1)
        assert self.server is not None
        events: list[tuple[float, str, int]] = []
        match = [{"$match": {"operationType": "update"}}]
        with CpuWindow({"gateway": self.server.process.pid, "worker": worker.pid}) as cpu:
            async with await self.db.commands.watch(match, full_document="updateLookup") as stream:
                command_id, begun, wall = await self.execute_batch()
                answered = time.perf_counter() - begun
                while True:
                    change = await asyncio.wait_for(stream.next(), 120)
                    doc = change.get("fullDocument") or {}
                    if doc.get("_id") != command_id:
                        continue
                    events.append((time.perf_counter() - begun, doc["status"], doc["progress"]))
                    if doc["status"] in ("success", "failed"):
                        break
        elapsed = events[-1][0]
        command = await self.db.commands.find_one({"_id": command_id})
        redis_counts = await self.redis_accounting(command_id)
        executions = await self.db.executions.count_documents({"batchId": command_id})
        items = len(await self.db.executions.distinct("resource.id", {"batchId": command_id}))
        statuses = await self.status_counts({"batchId": command_id})
        await self.stop_workers()
        claimed = next(t for t, status, _ in events if status == "inProgress")
        server_s = (command["updatedAt"] - wall).total_seconds()
        rate = ITEMS / elapsed
        print(f"  mutation answered in {answered * 1000:.0f} ms; command {command['status']}")
        print(
            f"  queued -> claimed by the worker {claimed:.2f}s after the mutation (arq poll "
            f"delay), then {len(events) - 2} committed pages (progress "
            f"{', '.join(str(p) for _, _, p in events[1:-1][:3])}, ...)"
        )
        print(
            f"  mutation -> command success: {elapsed:.2f}s seen by a change stream "
            f"({server_s:.2f}s by the command's own updatedAt); in-worker part "
            f"(claim -> success) {elapsed - claimed:.2f}s = {ITEMS / (elapsed - claimed):,.0f}/s"
        )
        print(f"  cpu (cores): {cpu.summary()}")
        print(
            f"  MongoDB: {executions:,} executions with batchId, {items:,} distinct items; "
            f"statuses {statuses}"
        )
        print(f"  Redis: {redis_counts}")
        in_redis = sum(v for k, v in redis_counts.items() if k != "queue_length")
        missing = redis_counts.get("MISSING from Redis", 0)
        consistent = (
            command["status"] == "success"
            and executions == ITEMS
            and items == ITEMS
            and in_redis == ITEMS
            and missing == 0
        )
        print(f"  accounting {'adds up' if consistent else 'DOES NOT add up'}")
        met = rate >= CREATE_GOAL_PER_S and consistent
        print(
            f"  => executions created+enqueued per second = {rate:,.0f}/s "
            f"(goal >= {CREATE_GOAL_PER_S:,}/s: {'MET' if met else 'NOT MET'})",
            flush=True,
        )
        await self.forget_batch(command_id)
        return met

    async def phase_complete(
        self, count: int, cap_s: float, argv: list[str] | None = None
    ) -> float:
        """(b)/(c): `count` workers; mutation → every execution `success` (or the cap)."""
        workers = await self.start_workers(count, argv)
        assert self.server is not None
        pids = {"gateway": self.server.process.pid}
        pids |= {f"worker{n + 1}": w.pid for n, w in enumerate(workers)}
        samples: list[tuple[float, int]] = []
        created_at = None
        counters = await self.mongod_counters()
        with CpuWindow(pids) as cpu:
            command_id, begun, _ = await self.execute_batch()
            while True:
                await asyncio.sleep(POLL_S)
                done = await self.db.executions.count_documents({"status": "success"})
                now = time.perf_counter() - begun
                samples.append((now, done))
                if created_at is None:
                    command = await self.db.commands.find_one({"_id": command_id}, {"status": 1})
                    if command["status"] == "success":
                        created_at = now
                for worker in workers:
                    worker.check_alive()
                if done >= ITEMS or now >= cap_s:
                    break
        counters = await self.mongod_counters() - counters
        statuses = await self.status_counts({"batchId": command_id})
        retries = await self._retried(command_id)
        await self.stop_workers()
        elapsed, done = samples[-1]
        first = next((t for t, n in samples if n > 0), elapsed)
        rate = done / elapsed
        print(
            f"  command success after {created_at:.2f}s" if created_at else "  command unfinished"
        )
        print(f"  first execution success seen after {first:.2f}s")
        progress = ", ".join(f"{t:.0f}s:{n:,}" for t, n in samples[4::25])
        print(f"  successes over time: {progress}")
        print(f"  statuses at the end: {statuses}; {retries}")
        per = max(done, 1)
        machine_ms = (cpu.cores["machine"] or 0) * cpu.seconds / per * 1000
        print(f"  cpu (cores): {cpu.summary()}; {machine_ms:.1f} ms machine CPU per completion")
        print(
            "  mongod per completed execution: "
            + ", ".join(f"{name} {n / per:.2f}" for name, n in counters.items())
        )
        if done >= ITEMS:
            print(
                f"  => all {ITEMS:,} success in {elapsed:.1f}s: {rate:,.1f} executions completed/s",
                flush=True,
            )
        else:
            steady = (done - samples[len(samples) // 2][1]) / (
                elapsed - samples[len(samples) // 2][0]
            )
            print(
                f"  => cut at the {cap_s:g}s cap: {done:,} of {ITEMS:,} success = {rate:,.1f} "
                f"completed/s since the mutation ({steady:,.1f}/s over the second half); all "
                f"{ITEMS:,} would take ~{ITEMS / max(steady, 1e-9):,.0f}s",
                flush=True,
            )
        await self.forget_batch(command_id)
        return rate

    async def _retried(self, command_id: Any) -> str:
        """arq's try counters of the batch's jobs: a job that finished has none any more; one
        left has been started (it runs, or a ServiceBusy Retry put it back in the queue)."""
        from arq.constants import retry_key_prefix

        ids = [str(d["_id"]) async for d in self.db.executions.find({"batchId": command_id})]
        tries = []
        for start in range(0, len(ids), 5_000):
            chunk = ids[start : start + 5_000]
            tries += [
                int(v) for v in await self.redis.mget([retry_key_prefix + i for i in chunk]) if v
            ]
        return (
            f"{len(tries):,} unfinished jobs already tried (running, or put back by a "
            f"ServiceBusy Retry), {sum(tries):,} tries"
        )

    # --- subscriptions ------------------------------------------------------------------------

    async def phase_fanout(self, groups: int) -> tuple[bool, float]:
        from bson import ObjectId

        from resolvers.executions import new_execution
        from resolvers.timestamps import now

        assert self.server is not None
        print(
            f"\n[2{'a' if groups == 1 else 'b'}] fan-out: {SUBSCRIBERS:,} WebSocket subscribers "
            f"of one execution in {groups:,} subscription group(s), {UPDATES} writes "
            f"{UPDATE_SPACING_S * 1000:.0f} ms apart ...",
            flush=True,
        )
        service = await self.db.services.find_one({"_id": ObjectId(self.service_id)})
        execution = new_execution(service["creator"], service, "echo", {}, None)
        await self.db.executions.insert_one(execution)
        execution_id = execution["_id"]
        url = self.server.url.replace("http://", "ws://") + "/graphql"
        received: list[list[tuple[float, str]]] = [[] for _ in range(SUBSCRIBERS)]
        errors: list[str] = []
        sockets: list[Any] = []
        limit = asyncio.Semaphore(CONNECT_PARALLEL)
        extensions: Counter[str] = Counter()

        async def subscriber(n: int) -> None:
            from websockets.asyncio.client import connect

            async with limit:
                ws = await connect(
                    url,
                    subprotocols=["graphql-transport-ws"],
                    ping_interval=None,
                    open_timeout=120,
                    close_timeout=2,
                )
                sockets.append(ws)
                extensions[ws.response.headers.get("sec-websocket-extensions", "none")] += 1
                init = {"type": "connection_init", "payload": {"apiKey": self.key}}
                await ws.send(json.dumps(init))
                ack = json.loads(await ws.recv())
                if ack.get("type") != "connection_ack":
                    raise RuntimeError(f"no ack: {ack}")
                payload = {
                    "query": EXECUTION_UPDATED % (n % groups),
                    "operationName": f"watch{n % groups}",
                    "variables": {"e": str(execution_id)},
                }
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            mine = received[n]
            clock = time.perf_counter
            async for raw in ws:
                at = clock()
                message = json.loads(raw)
                try:
                    mine.append(
                        (at, message["payload"]["data"]["executionUpdated"]["progress"]["message"])
                    )
                except (KeyError, TypeError):
                    errors.append(str(message)[:300])

        async def write(message: str, percent: int) -> float:
            at = time.perf_counter()
            await self.db.executions.update_one(
                {"_id": execution_id},
                {
                    "$set": {
                        "status": "inProgress",
                        "progress": {"percent": percent, "message": message},
                        "updatedAt": now(),
                    }
                },
            )
            return at

        began = time.perf_counter()
        tasks = [asyncio.create_task(subscriber(n)) for n in range(SUBSCRIBERS)]
        # Registration on the server has no acknowledgement: write warm-up updates until every
        # subscriber has received one, then wait until nothing more arrives.
        warm = 0
        deadline = time.monotonic() + 120
        while sum(1 for r in received if r) < SUBSCRIBERS:
            for task in tasks:
                if task.done() and task.exception():
                    raise SystemExit(f"subscriber failed: {task.exception()!r}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"only {sum(1 for r in received if r)} subscribers live after 120s"
                )
            if len(sockets) == SUBSCRIBERS:
                warm += 1
                await write(f"warm {warm}", 0)
            await asyncio.sleep(0.5)
        previous = -1
        while (total := sum(len(r) for r in received)) != previous:
            previous = total
            await asyncio.sleep(1.0)
        print(
            f"  {SUBSCRIBERS:,} subscribed and live in {time.perf_counter() - began:.1f}s "
            f"({warm} warm-up writes); websocket extensions {dict(extensions)}",
            flush=True,
        )
        offsets = [len(r) for r in received]
        written: list[float] = []
        expected = SUBSCRIBERS * UPDATES
        with CpuWindow({"gateway": self.server.process.pid}) as cpu:
            start = time.perf_counter()
            for n in range(UPDATES):
                await asyncio.sleep(max(0.0, start + n * UPDATE_SPACING_S - time.perf_counter()))
                written.append(await write(f"bench {n}", 5 + n))
            deadline = time.monotonic() + 60
            while total - sum(offsets) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                total = sum(len(r) for r in received)
            await asyncio.sleep(0.3)  # anything extra arrives too
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

        # The k-th message after the warm-up is the k-th write's change event (one event per
        # write, one message per event and subscriber); its content is the document as the
        # feed looked it up, which may already be a later write's.
        delays: list[float] = []
        by_update: list[list[float]] = [[] for _ in range(UPDATES)]
        short = extra = superseded = wrong = 0
        states: list[int] = []
        last_at = written[-1]
        for r, offset in zip(received, offsets, strict=True):
            mine = r[offset:]
            short += max(0, UPDATES - len(mine))
            extra += max(0, len(mine) - UPDATES)
            states.append(len({name for _, name in mine}))
            for k, (at, name) in enumerate(mine[:UPDATES]):
                shown = int(name.split()[1]) if name.startswith("bench ") else -1
                superseded += shown > k
                wrong += shown < k
                delay = (at - written[k]) * 1000
                last_at = max(last_at, at)
                delays.append(delay)
                by_update[k].append(delay)
        print(
            f"  messages: {len(delays):,} of {expected:,} expected (one per write and "
            f"subscriber); missing {short}, extra {extra}, errors {len(errors)}"
            + (f" (first: {errors[0]})" if errors else "")
        )
        print(
            f"  content: {superseded:,} of {len(delays):,} messages carried a LATER write's "
            f"state instead of their own (updateLookup), {wrong} an earlier one; distinct "
            f"states a subscriber saw: median {percentile(states, 50)} of {UPDATES}"
        )
        if not delays:
            print("  => nothing delivered (goal NOT MET)")
            return False, float("inf")
        print(
            "  latency by write (p50 / max ms): "
            + ", ".join(
                f"#{k}: {percentile(v, 50):.0f}/{max(v):.0f}"
                for k, v in enumerate(by_update)
                if v and k in (0, 1, 2, 5, 10, 15, UPDATES - 1)
            )
        )
        spread = [max(v) - min(v) for v in by_update if v]
        busy_s = last_at - written[0]
        print(
            f"  one write, first to last subscriber: {spread[0]:.0f} ms for write #0 (nothing "
            f"queued before it), p50 {percentile(spread, 50):.0f} ms over all writes; "
            f"{len(delays):,} messages delivered in {busy_s:.2f}s from the first write = "
            f"{len(delays) / busy_s:,.0f} messages/s"
        )
        gateway_us = (cpu.cores["gateway"] or 0) * cpu.seconds / len(delays) * 1e6
        print(
            f"  cpu (cores) from the first write to the last receipt ({cpu.seconds:.1f}s): "
            f"{cpu.summary()}; gateway {gateway_us:.0f} us CPU per message -> at most "
            f"~{1e6 / gateway_us:,.0f} messages/s per gateway process; offered "
            f"{SUBSCRIBERS / UPDATE_SPACING_S:,.0f}/s"
        )
        p50, p99, worst = percentile(delays, 50), percentile(delays, 99), max(delays)
        complete = short == 0 and extra == 0 and not errors
        latency_met = p99 <= P99_GOAL_MS
        verdict = (
            f"goal p99 <= {P99_GOAL_MS:g} ms: {'MET' if latency_met else 'NOT MET'}"
            if groups == 1
            else "reference, no goal: nothing shared"
        )
        print(
            f"  => write -> receipt latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms "
            f"({verdict}); "
            f"every subscriber got one message per write: {'yes' if complete else 'NO'}; "
            f"each with its own write's state: {'yes' if superseded + wrong == 0 else 'NO'}",
            flush=True,
        )
        return latency_met and complete, p99


async def worker_configuration(settings_env: dict[str, str]) -> str:
    """arq's settings in the worker `loom worker` builds (read from a Worker built the same way)."""
    from arq.worker import Worker

    from gateway.settings import Settings
    from triggers.worker import build_worker

    settings = Settings(
        mongodb_url=settings_env["LOOM_MONGODB_URL"], redis_url=settings_env["LOOM_REDIS_URL"]
    )
    worker: Worker = build_worker(settings, handle_signals=False)
    run = worker.functions["run_execution"]
    return (
        f"max_jobs={worker.max_jobs} poll_delay={worker.poll_delay_s:g}s "
        f"queue_read_limit={worker.queue_read_limit} keep_result={worker.keep_result_s:g}s "
        f"run_execution max_tries={run.max_tries}; LOOM_BATCH_PAGE_SIZE="
        f"{settings.batch_page_size} LOOM_EXECUTION_LEASE_S={settings.execution_lease_s:g}"
    )


def code_state() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", *argv], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.rstrip()

    status = git("status", "--porcelain", "--", ".", ":!bench").splitlines()
    dirty = [line[3:] for line in status if line[:2] != "??"]
    changes = f" + uncommitted changes to {', '.join(dirty)}" if dirty else ""
    return f"{git('rev-parse', '--short', 'HEAD')}{changes} (bench/ not counted)"


async def run(args: argparse.Namespace, mongodb_url: str, redis_url: str, origin: str) -> int:
    bench = Bench(args, mongodb_url, redis_url)
    print(f"databases: {origin}; db={bench.db_name}", flush=True)
    print(f"loom worker's arq: {await worker_configuration(bench.env)}", flush=True)
    await bench.open()
    goals: dict[str, bool] = {}
    try:
        await bench.setup()
        if not args.skip_batches:
            goals["creation"] = await bench.phase_create()
            print(
                "\n[1b] a fresh executeBatch, two `loom worker`s, until every execution is "
                f"success (cap {args.completion_cap_s:g}s) ...",
                flush=True,
            )
            rate = await bench.phase_complete(2, args.completion_cap_s)
            if args.what_if_s > 0:
                print(
                    f"\n[1c] what-if: (b) with two workers from build_worker(settings, "
                    f"max_jobs={args.what_if_max_jobs}, poll_delay={args.what_if_poll_delay:g}) "
                    f"(cap {args.what_if_s:g}s) ...",
                    flush=True,
                )
                argv = [
                    sys.executable,
                    SCRIPT,
                    "--what-if-worker",
                    "--what-if-max-jobs",
                    str(args.what_if_max_jobs),
                    "--what-if-poll-delay",
                    str(args.what_if_poll_delay),
                ]
                what_if = await bench.phase_complete(2, args.what_if_s, argv)
                print(f"  => what-if / loom worker completion rate = {what_if / rate:.1f}x")
        if not args.skip_fanout:
            goals["fan-out"], grouped = await bench.phase_fanout(1)
            _, alone = await bench.phase_fanout(SUBSCRIBERS)
            print(
                f"  => p99 with {SUBSCRIBERS:,} groups (nothing shared) / with one group = "
                f"{alone / grouped:.1f}x"
            )
    finally:
        await bench.close()
    print(
        "\nsummary: "
        + ", ".join(f"{name} goal {'MET' if met else 'NOT MET'}" for name, met in goals.items())
        + f"; worker logs in {bench.logs}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--completion-cap-s", type=float, default=60.0, help="longest wait in phase (b)"
    )
    parser.add_argument(
        "--what-if-s", type=float, default=30.0, help="longest wait in phase (c); 0 skips it"
    )
    parser.add_argument("--what-if-max-jobs", type=int, default=10, help="arq max_jobs in (c)")
    parser.add_argument(
        "--what-if-poll-delay", type=float, default=0.05, help="arq poll_delay in (c), seconds"
    )
    parser.add_argument(
        "--service-concurrency",
        type=int,
        default=0,
        help="the echo service's concurrency (0: the application's default)",
    )
    parser.add_argument("--skip-batches", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--serve", choices=["loom"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--what-if-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.parent)
        return 0
    if args.what_if_worker:
        what_if_worker(args.what_if_max_jobs, args.what_if_poll_delay)
        return 0
    limit = harness.raise_open_files_limit()
    print(f"machine: {harness.machine_info(SUBSCRIBERS).rpartition('; concurrency')[0]}")
    print(f"code: {code_state()}; open files limit {limit}", flush=True)
    if limit < 2 * SUBSCRIBERS + 200:
        raise SystemExit(f"RLIMIT_NOFILE {limit} is too low for {SUBSCRIBERS} WebSockets")
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        return harness.run_async(run(args, mongodb_url, redis_url, origin))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
