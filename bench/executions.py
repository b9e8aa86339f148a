"""Executions at queue speed: Loom's execution path next to a bare arq worker pair on the same
Redis, and the fan-out of one execution's updates to 1,000 WebSocket subscribers.

    .venv/bin/python bench/executions.py            # about 4 minutes on 2 cores

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set, and on a fresh database: an organization with an owner key (as `loom
keys create`), a project, a dataset and a service running the built-in `echo` function
(GraphQL mutations to the gateway; the service's concurrency is twice --worker-concurrency,
what two workers run at once, unless --service-concurrency says otherwise), and 20,000 items
written directly with PyMongo (documents as `resolvers.items` writes them). One Loom gateway
runs under uvicorn in a child process; the workers are real `loom worker` processes (`python
-m gateway.cli worker`), everything with LOOM_LOG_LEVEL=WARNING and LOOM_WORKER_MAX_JOBS set
to --worker-concurrency (50 unless given; the bare arq workers get it as max_jobs), no other
LOOM_* knob changed.

0. The baseline: two bare arq workers (`arq.Worker` with one no-op coroutine, arq's defaults but
   for poll_delay, --bare-poll-delay, 0.05 s as Loom's worker uses, and max_jobs,
   --worker-concurrency; each in its own process) drain 20,000 no-op jobs queued in one
   pipelined round trip on a queue of their own in the same Redis: jobs per second from the
   queueing to the empty queue.
1. executeBatch over every item (GraphQL mutation, `filter: {}`):
   (a) creation + queueing, one worker: from the mutation until the command is `success` (all
       20,000 executions inserted and queued, while the worker also starts running them); then
       MongoDB (20,000 executions with the batch's id, one per item) and Redis (each one
       queued, or already claimed) must add up;
   (b) completion, two workers, a fresh batch: from the mutation until all 20,000 executions are
       `success` (counted every 0.2 s on the status index), at most --completion-cap-s seconds.
       MongoDB commands per completed execution: mongod's own per-command counters
       (serverStatus `metrics.commands`) over the window, less the commands this script sent
       (a PyMongo CommandListener on its client) — every gateway, worker and change-stream
       command counts; write conflicts: serverStatus `metrics.operation.writeConflicts`.
2. Single executions: --single `execute` mutations sent by 16 keep-alive HTTP connections
   (a lean HTTP/1.1 client), two workers running them: from the first mutation until every one
   is `success`, with the same counters.
3. A chatty function: one execution whose function logs 10,000 lines and reports progress
   10,000 times (yielding to the event loop after each), run in this process through the
   worker's own reporting path (triggers/execution_reports.py) and ended by its end write; the
   MongoDB writes its client sent are counted by a CommandListener.
4. Fan-out: 1,000 graphql-transport-ws clients (the `websockets` library, in this process) on
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
figures are relative, not capacities; the ratios to the bare arq pair in the same run are what
count. Each goal is printed on one line ending `(goal <op> <target>: MET | NOT MET)`. The
machinery shared with the other benchmarks is in `harness.py`.
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
from pymongo import monitoring

EMAIL = "bench-owner@loom.dev"
ITEMS = 20_000
CREATE_GOAL_PER_S = 10_000
BATCH_GOAL = 1.5
SINGLE_GOAL = 0.5
COMMANDS_GOAL = 4.0
CONFLICTS_GOAL = 0.05
CHATTY_LINES = 10_000
CHATTY_WRITES_GOAL = 50
SINGLE_CONNECTIONS = 16
SUBSCRIBERS = 1_000
UPDATES = 20
UPDATE_SPACING_S = 0.1
P99_GOAL_MS = 250.0
POLL_S = 0.2
SCRIPT = str(Path(__file__).resolve())
CONNECT_PARALLEL = 50
SEED_BATCH = 5_000
BARE_QUEUE = "bench:bare-arq"
WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify", "bulkWrite"}

CREATE_PROJECT = """mutation($org: ID!) {
  createProject(organizationId: $org, input: {name: "Batches"}) { id } }"""
CREATE_DATASET = """mutation($p: ID!) {
  createDataset(projectId: $p, input: {name: "frames"}) { id } }"""
CREATE_SERVICE = """mutation($p: ID!, $input: ServiceInput!) {
  createService(projectId: $p, input: $input) { id functions concurrency } }"""
EXECUTE_BATCH = """mutation($s: ID!) {
  executeBatch(serviceId: $s, input: {function: "echo", filter: {}}) { id status type } }"""
EXECUTE = """mutation($s: ID!) {
  execute(serviceId: $s, input: {function: "echo", input: {}}) { id status } }"""
EXECUTION_UPDATED = """subscription watch%d($e: ID!) {
  executionUpdated(executionId: $e) { id status progress } }"""


def goal(label: str, value: float, op: str, target: float, shown: str, target_shown: str) -> bool:
    met = value >= target if op == ">=" else value <= target
    print(f"  {label} = {shown} (goal {op} {target_shown}: {'MET' if met else 'NOT MET'})")
    return met


# --- child modes ----------------------------------------------------------------------------------


def serve(port: int, parent: int) -> None:
    harness.raise_open_files_limit()
    harness.run_uvicorn(harness.loom_app(), port, parent, websockets=True)


async def _noop(ctx: dict[str, Any]) -> None:
    """The bare arq worker's job: nothing."""


def bare_arq_worker(redis_url: str, poll_delay: float, max_jobs: int) -> None:
    """An arq worker with arq's defaults (results kept an hour) but poll_delay and max_jobs."""
    from arq.connections import RedisSettings
    from arq.worker import Worker

    async def ready(ctx: dict[str, Any]) -> None:
        await ctx["redis"].sadd(f"{BARE_QUEUE}:ready", os.getpid())

    Worker(
        functions=[_noop],
        queue_name=BARE_QUEUE,
        redis_settings=RedisSettings.from_dsn(redis_url),
        poll_delay=poll_delay,
        max_jobs=max_jobs,
        on_startup=ready,
        log_results=False,
    ).run()


class CommandCounter(monitoring.CommandListener):
    """Counts the commands this process's MongoDB client sends (a PyMongo CommandListener), so
    they can be taken out of mongod's own counters."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: Any) -> None:
        self.counts[event.command_name] += 1

    def succeeded(self, event: Any) -> None:
        """Only starts are counted."""

    def failed(self, event: Any) -> None:
        """Only starts are counted."""


# --- the benchmark's world ------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, mongodb_url: str, redis_url: str) -> None:
        self.args = args
        self.mongodb_url, self.redis_url = mongodb_url, redis_url
        self.db_name = f"bench_{uuid.uuid4().hex[:12]}"
        self.env = harness.server_env(mongodb_url, redis_url, self.db_name)
        self.env["LOOM_WORKER_MAX_JOBS"] = str(args.worker_concurrency)
        self.logs = Path(tempfile.mkdtemp(prefix="loom-bench-logs-"))
        self.workers: list[LoomWorker] = []
        self.server: Server | None = None
        self.own = CommandCounter()

    async def open(self) -> None:
        from arq.connections import ArqRedis
        from pymongo import AsyncMongoClient

        self.mongo = AsyncMongoClient(
            self.mongodb_url, w="majority", tz_aware=True, event_listeners=[self.own]
        )
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
        service_input["concurrency"] = (
            self.args.service_concurrency or 2 * self.args.worker_concurrency
        )
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

    async def start_workers(self, count: int) -> list[LoomWorker]:
        """`count` workers, returned once each has registered in `workers` (its start-up ran)."""
        started = [
            LoomWorker(self.env, self.logs / f"worker-{len(self.workers) + n}.log")
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

    # --- the baseline -------------------------------------------------------------------------

    async def phase_bare(self) -> float:
        """0: two bare arq workers drain ITEMS no-op jobs; jobs per second."""
        from arq.jobs import serialize_job
        from arq.utils import timestamp_ms

        poll, jobs = self.args.bare_poll_delay, self.args.worker_concurrency
        print(
            f"\n[0] baseline: two bare arq workers (max_jobs {jobs}, poll_delay {poll:g}s), "
            f"{ITEMS:,} no-op jobs ...",
            flush=True,
        )
        await self.redis.delete(BARE_QUEUE, f"{BARE_QUEUE}:ready")
        argv = [sys.executable, SCRIPT, "--bare-arq-worker", "--bare-poll-delay", str(poll)]
        argv += ["--worker-concurrency", str(jobs)]
        workers = [LoomWorker(self.env, self.logs / f"bare-{n}.log", argv) for n in range(2)]
        try:
            deadline = time.monotonic() + harness.READY_TIMEOUT_S
            while await self.redis.scard(f"{BARE_QUEUE}:ready") < 2:
                for worker in workers:
                    worker.check_alive()
                if time.monotonic() > deadline:
                    raise SystemExit("bare arq workers not ready")
                await asyncio.sleep(0.05)
            pids = {f"arq{n + 1}": w.pid for n, w in enumerate(workers)}
            with CpuWindow(pids) as cpu:
                begun = time.perf_counter()
                enqueued_ms = timestamp_ms()
                ids = [f"bare-{uuid.uuid4().hex}" for _ in range(ITEMS)]
                async with self.redis.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        job = serialize_job("_noop", (), {}, None, enqueued_ms)
                        pipe.psetex(f"arq:job:{job_id}", 86_400_000, job)
                    pipe.zadd(BARE_QUEUE, dict.fromkeys(ids, enqueued_ms))
                    await pipe.execute()
                while True:  # arq removes a job from its queue when it has finished
                    if await self.redis.zcard(BARE_QUEUE) == 0:
                        break
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - begun
        finally:
            for worker in workers:
                worker.stop()
        rate = ITEMS / elapsed
        per = (cpu.cores["machine"] or 0) * cpu.seconds / ITEMS * 1000
        print(f"  cpu (cores): {cpu.summary()}; {per:.2f} ms machine CPU per job")
        print(f"  => bare arq: {ITEMS:,} no-op jobs in {elapsed:.2f}s = {rate:,.0f} jobs/s")
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in range(0, ITEMS, 5_000):
                pipe.delete(*(f"arq:result:{i}" for i in ids[start : start + 5_000]))
            await pipe.execute()
        return rate

    # --- batches ------------------------------------------------------------------------------

    async def execute_batch(self) -> tuple[Any, float, datetime]:
        """(command id, perf_counter just before the mutation, wall clock then)."""
        from bson import ObjectId

        wall, begun = datetime.now(UTC), time.perf_counter()
        command = (await self.graphql(EXECUTE_BATCH, s=self.service_id))["executeBatch"]
        return ObjectId(command["id"]), begun, wall

    async def forget_executions(self) -> None:
        """Remove every execution and its queue (workers stopped), so the next phase starts
        from an empty queue."""
        from triggers import execution_queue

        await execution_queue.drop_service(self.redis, self._service_oid())
        await self.db.executions.delete_many({})

    def _service_oid(self) -> Any:
        from bson import ObjectId

        return ObjectId(self.service_id)

    async def redis_accounting(self, command_id: Any) -> dict[str, int]:
        """Where each of the batch's executions is: queued in Redis, or claimed already."""
        from triggers import execution_queue

        docs = [d async for d in self.db.executions.find({"batchId": command_id}, {"status": 1})]
        key = execution_queue.service_key(self.service_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for doc in docs:
                pipe.zscore(key, str(doc["_id"]))
            scores = await pipe.execute()
        counts: Counter[str] = Counter()
        for doc, score in zip(docs, scores, strict=True):
            if score is not None:
                counts["queued in Redis"] += 1
            elif doc["status"] != "created":
                counts[f"claimed ({doc['status']})"] += 1
            else:
                counts["MISSING (created, not queued)"] += 1
        return dict(counts)

    async def mongod_counters(self) -> Counter[str]:
        """mongod's own counters (serverStatus), less the commands this script sent."""
        status = await self.mongo.admin.command("serverStatus")
        commands = status["metrics"]["commands"]
        total = sum(
            entry.get("total", 0)
            for name, entry in commands.items()
            if isinstance(entry, dict) and "total" in entry
        )
        return Counter(
            {
                "commands": total - sum(self.own.counts.values()),
                "write conflicts": status["metrics"]["operation"].get("writeConflicts", 0),
                "transactions aborted": status.get("transactions", {}).get("totalAborted", 0),
            }
        )

    async def status_counts(self, query: dict[str, Any]) -> dict[str, int]:
        pipeline = [{"$match": query}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        return {row["_id"]: row["n"] async for row in await self.db.executions.aggregate(pipeline)}

    async def phase_create(self) -> bool:
        """(1a): one worker; mutation → command `success`, then the accounting."""
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
        await self.stop_workers()
        redis_counts = await self.redis_accounting(command_id)
        executions = await self.db.executions.count_documents({"batchId": command_id})
        items = len(await self.db.executions.distinct("resource.id", {"batchId": command_id}))
        statuses = await self.status_counts({"batchId": command_id})
        claimed = next(t for t, status, _ in events if status == "inProgress")
        server_s = (command["updatedAt"] - wall).total_seconds()
        rate = ITEMS / elapsed
        print(f"  mutation answered in {answered * 1000:.0f} ms; command {command['status']}")
        print(
            f"  queued -> claimed by the worker {claimed:.2f}s after the mutation (arq poll "
            f"delay), then {len(events) - 2} committed pages"
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
        print(f"  Redis (worker stopped): {redis_counts}")
        consistent = (
            command["status"] == "success"
            and executions == ITEMS
            and items == ITEMS
            and sum(redis_counts.values()) == ITEMS
            and not any(k.startswith("MISSING") for k in redis_counts)
        )
        print(f"  accounting {'adds up' if consistent else 'DOES NOT add up'}")
        met = goal(
            "executeBatch creation (executions created + queued per second)",
            rate if consistent else 0,
            ">=",
            CREATE_GOAL_PER_S,
            f"{rate:,.0f}/s",
            f"{CREATE_GOAL_PER_S:,}/s",
        )
        await self.forget_executions()
        return met

    async def completion(
        self, label: str, total: int, start: Any, cap_s: float
    ) -> tuple[float, Counter[str], float] | None:
        """Two workers; `start()` sends the work; until `total` executions are `success`.
        (rate, mongod counters over the window, machine ms CPU per execution)."""
        workers = await self.start_workers(2)
        assert self.server is not None
        pids = {"gateway": self.server.process.pid}
        pids |= {f"worker{n + 1}": w.pid for n, w in enumerate(workers)}
        samples: list[tuple[float, int]] = []
        counters = await self.mongod_counters()
        with CpuWindow(pids) as cpu:
            begun = time.perf_counter()
            sender = asyncio.create_task(start())
            while True:
                await asyncio.sleep(POLL_S)
                done = await self.db.executions.count_documents({"status": "success"})
                now = time.perf_counter() - begun
                samples.append((now, done))
                for worker in workers:
                    worker.check_alive()
                if done >= total or now >= cap_s:
                    break
            await sender
        counters = await self.mongod_counters() - counters
        statuses = await self.status_counts({})
        await self.stop_workers()
        elapsed, done = samples[-1]
        first = next((t for t, n in samples if n > 0), elapsed)
        print(f"  first execution success seen after {first:.2f}s")
        progress = ", ".join(f"{t:.0f}s:{n:,}" for t, n in samples[4::25])
        print(f"  successes over time: {progress}")
        print(f"  statuses at the end: {statuses}")
        per = max(done, 1)
        machine_ms = (cpu.cores["machine"] or 0) * cpu.seconds / per * 1000
        print(f"  cpu (cores): {cpu.summary()}; {machine_ms:.2f} ms machine CPU per completion")
        await self.forget_executions()
        if done < total:
            print(f"  => cut at the {cap_s:g}s cap: {done:,} of {total:,} success")
            return None
        rate = total / elapsed
        print(f"  => {label}: all {total:,} success in {elapsed:.2f}s = {rate:,.0f}/s", flush=True)
        return rate, counters, machine_ms

    async def phase_batch(self, bare: float) -> dict[str, bool]:
        print(
            f"\n[1b] a fresh executeBatch of {ITEMS:,}, two `loom worker`s, until every execution "
            f"is success (cap {self.args.completion_cap_s:g}s) ...",
            flush=True,
        )

        async def start() -> None:
            await self.execute_batch()

        measured = await self.completion("executeBatch", ITEMS, start, self.args.completion_cap_s)
        if measured is None:
            return {"executeBatch completion": False}
        rate, counters, _ = measured
        return {
            "executeBatch completion": goal(
                "executeBatch completion, loom / bare arq",
                rate / bare,
                ">=",
                BATCH_GOAL,
                f"{rate:,.0f}/s / {bare:,.0f}/s = {rate / bare:.2f}x",
                f"{BATCH_GOAL}x",
            ),
            **self.per_execution(counters, ITEMS),
        }

    def per_execution(self, counters: Counter[str], total: int) -> dict[str, bool]:
        commands, conflicts = counters["commands"] / total, counters["write conflicts"] / total
        return {
            "commands": goal(
                "MongoDB commands per completed execution",
                commands,
                "<=",
                COMMANDS_GOAL,
                f"{commands:.2f}",
                f"{COMMANDS_GOAL:g}",
            ),
            "write conflicts": goal(
                "write conflicts per execution",
                conflicts,
                "<=",
                CONFLICTS_GOAL,
                f"{conflicts:.4f}",
                f"{CONFLICTS_GOAL:g}",
            ),
        }

    async def phase_single(self, bare: float) -> dict[str, bool]:
        count = self.args.single
        print(
            f"\n[2] {count:,} single `execute` mutations over {SINGLE_CONNECTIONS} keep-alive "
            "connections, two `loom worker`s, until every execution is success ...",
            flush=True,
        )
        assert self.server is not None
        body = json.dumps({"query": EXECUTE, "variables": {"s": self.service_id}}).encode()
        request = harness.post_request("/graphql", body, self.key)
        left = [count]

        async def connection() -> None:
            async with harness.KeepAliveConnection(self.server.port, request) as http:
                while left[0] > 0:
                    left[0] -= 1
                    status, answer = await http.send()
                    if status != 200 or b'"created"' not in answer:
                        raise SystemExit(f"execute failed: {status} {answer[:300]!r}")

        async def start() -> None:
            began = time.perf_counter()
            await asyncio.gather(*(connection() for _ in range(SINGLE_CONNECTIONS)))
            sent = time.perf_counter() - began
            print(f"  {count:,} mutations answered in {sent:.2f}s = {count / sent:,.0f}/s")

        measured = await self.completion("single executes", count, start, 600)
        if measured is None:
            return {"single execute completion": False}
        rate, counters, _ = measured
        commands = counters["commands"] / count
        print(
            f"  MongoDB commands per execution, the mutation's included: {commands:.2f}; "
            f"write conflicts per execution {counters['write conflicts'] / count:.4f}"
        )
        return {
            "single execute completion": goal(
                "single execute completion, loom / bare arq",
                rate / bare,
                ">=",
                SINGLE_GOAL,
                f"{rate:,.0f}/s / {bare:,.0f}/s = {rate / bare:.2f}x",
                f"{SINGLE_GOAL}x",
            )
        }

    async def phase_chatty(self) -> bool:
        """3: a function logging and reporting CHATTY_LINES times, through the run's reports."""
        from bson import ObjectId

        from resolvers import execution_runs
        from resolvers.executions import Status, new_execution
        from triggers.execution_reports import Reports

        print(
            f"\n[3] a function that logs {CHATTY_LINES:,} lines and reports progress "
            f"{CHATTY_LINES:,} times ...",
            flush=True,
        )
        service = await self.db.services.find_one({"_id": ObjectId(self.service_id)})
        execution = new_execution(service["creator"], service, "echo", {}, None)
        await self.db.executions.insert_one(execution)
        waiting = await execution_runs.waiting_among(self.db, [execution["_id"]])
        runs, _ = await execution_runs.claim(self.db, waiting, [0], "bench", _lease())
        (run,) = runs
        before = Counter(self.own.counts)
        began = time.perf_counter()
        reports = Reports(self.db, run)
        for n in range(CHATTY_LINES):
            reports.log.info("line %d", n)
            await reports.progress(n * 100 // CHATTY_LINES, f"step {n}")
            await asyncio.sleep(0)
        progress, lines = await reports.settle()
        end = execution_runs.end(run, Status.SUCCESS, output={}, progress=progress, lines=lines)
        await execution_runs.write(self.db, [end])
        elapsed = time.perf_counter() - began
        sent = Counter(self.own.counts) - before
        writes = sum(n for name, n in sent.items() if name in WRITE_COMMANDS)
        done = await self.db.executions.find_one({"_id": run["_id"]})
        kept = len(done["logs"])
        print(
            f"  ran {elapsed:.2f}s; commands sent {dict(sent)}; stored: the last {kept:,} lines "
            f"(the kept maximum), last one {done['logs'][-1]!r}, status {done['status']}"
        )
        await self.db.executions.delete_one({"_id": run["_id"]})
        return goal(
            "MongoDB writes of a function logging and reporting 10,000 times",
            writes,
            "<=",
            CHATTY_WRITES_GOAL,
            f"{writes}",
            f"{CHATTY_WRITES_GOAL}",
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


def _lease() -> Any:
    from datetime import timedelta

    return timedelta(seconds=30)


def worker_configuration(concurrency: int) -> str:
    """What the worker `loom worker` builds runs executions with."""
    from gateway.settings import Settings

    settings = Settings()
    return (
        f"executions claimed from Redis service queues, up to {concurrency} at once "
        f"per worker (LOOM_WORKER_MAX_JOBS), poll {settings.worker_poll_delay_s:g}s when idle; "
        f"LOOM_BATCH_PAGE_SIZE={settings.batch_page_size} "
        f"LOOM_EXECUTION_LEASE_S={settings.execution_lease_s:g}"
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
    print(f"loom worker: {worker_configuration(args.worker_concurrency)}", flush=True)
    await bench.open()
    goals: dict[str, bool] = {}
    try:
        await bench.setup()
        if not args.skip_batches:
            bare = await bench.phase_bare()
            goals["creation"] = await bench.phase_create()
            goals |= await bench.phase_batch(bare)
            goals |= await bench.phase_single(bare)
            goals["chatty function"] = await bench.phase_chatty()
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
        "--completion-cap-s", type=float, default=120.0, help="longest wait in phase (1b)"
    )
    parser.add_argument("--single", type=int, default=5_000, help="execute mutations in (2)")
    parser.add_argument(
        "--bare-poll-delay", type=float, default=0.05, help="the bare arq workers' poll_delay"
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=50,
        help="each loom worker's concurrency (LOOM_WORKER_MAX_JOBS) and each bare arq "
        "worker's max_jobs: the same parallelism on both sides (both default to 10; no-op "
        "arq jobs do not run faster with more, Loom claims and ends a page of up to this "
        "many executions per MongoDB write)",
    )
    parser.add_argument(
        "--service-concurrency",
        type=int,
        default=0,
        help="the echo service's concurrency (0: twice --worker-concurrency, what two "
        "workers can run at once)",
    )
    parser.add_argument("--skip-batches", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--serve", choices=["loom"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-arq-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.parent)
        return 0
    if args.bare_arq_worker:
        bare_arq_worker(os.environ["LOOM_REDIS_URL"], args.bare_poll_delay, args.worker_concurrency)
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
