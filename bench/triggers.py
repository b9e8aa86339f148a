"""Event triggers at change-stream speed: the relay and its matcher next to a bare PyMongo
reader of the same change stream, the latency from an insert to its execution, and the MongoDB
commands the relay sends per event.

    .venv/bin/python bench/triggers.py              # about 1 minute on 2 cores

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set, and on a fresh database (indexes and change-stream images as
`gateway/indexes.py` declares them): an organization with an owner, a project, a dataset, a
service with the built-in `echo`, and 50 active triggers in that project, created by Loom's
own resolvers (`resolvers.triggers.create_trigger`, so each filter is validated and stored as
a user's would be). The triggers mix resources, actions and filter shapes (globs, `$in`,
`$and`/`$or`/`$not`, dotted metadata paths, dates, ids, numbers): 36 watch item creations, and
of those exactly two fire on each item inserted (one per mimetype class, one per camera in
`metadata.user.camera`); the rest are evaluated and do not fire, or wait for other resources
and actions. None watches executions: the relay would then read every execution it creates
back as an event. Items are shaped as `resolvers.items` makes them and written straight into
`items` with PyMongo by a child process (`--insert`, its own client, so that this process is
the relay and nothing else); 2,000 are written first with nobody reading, to warm mongod up.

The relay is Loom's own (`triggers.relay.relay.Relay(db, redis, holder, lease_s,
patience).run()`), in this process, on a client of its own configured as Loom's plus a
PyMongo CommandListener that counts its commands and sees each `insert` into `events` and
`executions` return. No worker runs: executions only need to be created (and queued in Redis,
which the relay does).

a. Throughput. Baseline first: a bare loop on its own client that only reads the change stream
   (the relay's pipeline, `fullDocument` and `fullDocumentBeforeChange` "whenAvailable", the
   same await time) while a burst of --burst item inserts (one `insert_many`) is written:
   changes per second from the first insert to the last change read. Then the relay, reading
   from the moment it holds the lease, over a fresh burst of the same size and shape: events
   per second from the first insert until every event is in `events` and every expected
   execution in `executions` (the end is the moment the relay's last insert returned, as its
   listener saw it); then the counts are checked exactly in MongoDB, per trigger. CPU per
   event of this process (the relay alone) beside the bare reader's per change, and the
   matcher alone (`TriggerSet.matching` over stored events, timed in this process).
   Then a second baseline, with the relay stopped: a bare "reader + writer" loop on its own
   client that reads the stream as the bare reader does and, per round (what the cursor holds,
   up to the relay's 2,000 changes), writes with plain `insert_many(ordered=False)` the relay's
   documents, one event per change into `events` and its two executions into `executions`
   (copies of an event and of each firing trigger's execution the relay stored, with fresh
   ids and keys), then updates one token document: what mongod's side of the relay's work
   costs, without matching or Loom's code. Its documents are removed afterwards and the relay
   starts again from now, so the counts of (b) stay exact. `relay / bare reader+writer` is
   shown, with no goal.
b. Latency: single `insert_one`s at a steady --rate per second for --seconds, each started at
   its slot on the clock (start + k / rate, so pacing never drifts) as a task of its own in
   the child; latency to the moment the relay's `insert` of that item's last execution
   returned here, measured from the insert's return in the child (CLOCK_MONOTONIC, one
   machine; late when the child waits for a core) and from the change's commit (its oplog
   wall time, the event's `time`; never later than the return). The goal is held to the
   latter, the stricter.
c. MongoDB commands per event, from the relay client's listener, by command and collection,
   for (a) and (b), with the time spent waiting for their answers; the change stream's
   getMores are counted apart.

Everything shares this machine's cores (the relay, the inserter, mongod, valkey, and whatever
else runs), so the figures are relative; the ratio to the bare reader in the same run is what
counts, and CPU is shown per process. Each goal is printed on one line ending
`(goal <op> <target>: MET | NOT MET)`.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
from harness import CpuWindow, percentile
from pymongo import monitoring

EMAIL = "bench-owner@loom.dev"
WARM_UP = 2_000
EVENTS_GOAL_PER_S = 2_000
BARE_RATIO_GOAL = 0.5
P99_GOAL_MS = 200.0
WAIT_CAP_S = 120.0
"""The longest a phase waits for the relay before it gives up (and its goals are NOT MET)."""
HOLDER = "bench-relay"
MIMETYPES = (
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("txt", "text/plain"),
    ("bin", "application/octet-stream"),
)
CAMERAS = 10
FIRING = 2
"""Triggers each burst item fires: the one of its mimetype class and the one of its camera."""
CLOCK = time.monotonic
"""CLOCK_MONOTONIC: one clock for this process and the inserting child."""
MATCHED_SAMPLE = 2_000
"""Stored events the matcher alone is timed on."""


def goal(label: str, value: float, op: str, target: float, shown: str, target_shown: str) -> bool:
    met = value >= target if op == ">=" else value <= target
    print(f"  {label} = {shown} (goal {op} {target_shown}: {'MET' if met else 'NOT MET'})")
    return met


# --- the triggers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    resource: str
    actions: tuple[str, ...]
    filter: dict[str, Any] | None
    mode: str = "Always"
    ordered: bool = False
    fires_on: Callable[[int], bool] | None = None
    """For triggers on item creation: which burst items (by number) it fires on."""


def _camera(k: int) -> Callable[[int], bool]:
    return lambda n: n % CAMERAS == k


def _mimetype(k: int) -> Callable[[int], bool]:
    return lambda n: n % len(MIMETYPES) == k


def trigger_specs(other_dataset: str) -> list[Spec]:
    """50 triggers: 14 that fire on burst items (exactly two per item), 21 on item creation
    that never do, 15 on other actions and resources."""
    created = ("Created",)
    cam = [
        {"metadata.user.camera": "cam0"},
        {"metadata.user.camera": {"$in": ["cam1", "cam-spare"]}},
        {"$or": [{"metadata.user.camera": "cam2"}, {"name": "never-*"}]},
        {"$and": [{"metadata.user.camera": "cam3"}, {"hidden": False}]},
        {"metadata.user.camera": "cam4", "$not": {"annotated": True}},
        {"metadata.user.camera": {"$eq": "cam5"}, "size": {"$gte": 0}},
        {"metadata.user.camera": "cam6", "filename": "/burst/**"},
        {
            "$or": [
                {"$and": [{"metadata.user.camera": "cam7"}, {"metadata.user.score": {"$gte": 0}}]},
                {"tags": "never"},
            ]
        },
        {"metadata.user.camera": "cam8", "mimetype": {"$nin": ["video/mp4"]}},
        {"metadata.user.camera": "cam9", "metadata.user.score": {"$lt": 1}},
    ]
    kind = [
        {"mimetype": "image/png"},
        {"metadata.system.mimetype": "image/jpeg"},
        {"name": "*.txt"},
        {"$and": [{"mimetype": "application/*"}, {"size": {"$gte": 0}}]},
    ]
    never = [
        {"size": {"$gt": 100_000}},
        {"annotated": True},
        {"annotationsCount": {"$gte": 5}},
        {"filename": "/elsewhere/**"},
        {"dir": "/inbox"},
        {"mimetype": {"$in": ["video/mp4", "video/webm"]}},
        {"tags": "urgent"},
        {"$and": [{"mimetype": "image/*"}, {"size": {"$lt": 10}}]},
        {"$or": [{"hidden": True}, {"description": "*review*"}]},
        {"metadata.user.camera": {"$exists": False}},
        {"metadata.user.score": {"$gt": 2}},
        {"$not": {"metadata.user.camera": "cam*"}},
        {"name": {"$in": ["a.png", "b.png", "c.png", "d.png"]}},
        {"createdAt": {"$lt": "2000-01-01T00:00:00Z"}},
        {"metadata.system.originalname": "never*"},
        {"$and": [{"metadata.user.camera": "cam1"}, {"mimetype": "video/*"}]},
        {"width": {"$gte": 4096}},
        {"type": "dir"},
        {"datasetId": other_dataset},
        {"name": "*.mov"},
        {"$or": [{"size": {"$lt": 0}}, {"tags": {"$in": ["x", "y"]}}]},
    ]
    elsewhere: list[tuple[str, tuple[str, ...], dict[str, Any] | None]] = [
        ("Item", ("Updated",), {"annotated": True}),
        ("Item", ("Updated",), {"annotationsCount": {"$gte": 3}}),
        ("Item", ("Updated",), {"metadata.user.reviewed": True}),
        ("Item", ("Updated",), None),
        ("Item", ("Updated",), {"tags": "done"}),
        ("Item", ("Updated",), {"mimetype": "image/*"}),
        ("Item", ("Deleted",), None),
        ("Item", ("Deleted",), {"dir": "/burst/*"}),
        ("Item", ("Deleted",), {"mimetype": "image/png"}),
        ("Item", ("Created", "Updated"), {"hidden": True}),
        ("Annotation", ("Created",), {"label": "dog"}),
        ("Annotation", ("Created",), {"type": "box"}),
        ("Annotation", ("Created",), None),
        ("Annotation", ("Updated",), {"status": "approved"}),
        ("Dataset", ("Updated",), {"itemsCount": {"$gte": 1000}}),
    ]
    specs = [
        Spec(f"camera {k}", "Item", created, f, "Once", False, _camera(k))
        for k, f in enumerate(cam)
    ]
    specs += [
        Spec(f"kind {k}", "Item", created, f, "Always", k < 2, _mimetype(k))
        for k, f in enumerate(kind)
    ]
    specs += [
        Spec(f"never {k}", "Item", created, f, "Once" if k % 3 == 0 else "Always", k % 4 == 0)
        for k, f in enumerate(never)
    ]
    specs += [
        Spec(f"{resource.lower()} {'+'.join(actions).lower()} {k}", resource, actions, f)
        for k, (resource, actions, f) in enumerate(elsewhere)
    ]
    return specs


# --- the relay's client ---------------------------------------------------------------------------


class RelayCommands(monitoring.CommandListener):
    """The relay client's commands, by (command, collection), started and finished, and when
    each of its inserts into `events` and `executions` returned — with, while `tracking`, the
    items whose executions an insert created. `answered` is set whenever a command returns."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.finished: Counter[tuple[str, str]] = Counter()
        self.busy_us: Counter[tuple[str, str]] = Counter()
        """Time from each command's start to its answer, as PyMongo measured it."""
        self.inserted: Counter[str] = Counter()
        self.read: Counter[str] = Counter()
        """Changes the stream's getMores returned, by collection."""
        self.last_insert_at: dict[str, float] = {}
        self.tracking = False
        self.created_at: dict[Any, tuple[float, float]] = {}
        """Per item, (CLOCK, wall clock) when its executions' insert returned."""
        self.answered = asyncio.Event()
        self._pending: dict[int, tuple[tuple[str, str], list[Any]]] = {}

    def started(self, event: Any) -> None:
        name = event.command_name
        command = event.command
        target = command.get("collection") if name == "getMore" else command.get(name)
        key = (name, target if isinstance(target, str) else "")
        self.counts[key] += 1
        items = []
        if self.tracking and key == ("insert", "executions"):
            items = [doc["resource"]["id"] for doc in command.get("documents", ())]
        self._pending[event.request_id] = (key, items)

    def succeeded(self, event: Any) -> None:
        pending = self._pending.pop(event.request_id, None)
        if pending is None:
            return
        key, items = pending
        self.finished[key] += 1
        self.busy_us[key] += event.duration_micros
        if key[0] == "getMore":
            for change in event.reply.get("cursor", {}).get("nextBatch", ()):
                self.read[change.get("ns", {}).get("coll", "?")] += 1
        if key[0] == "insert":
            at = CLOCK()
            self.inserted[key[1]] += event.reply.get("n", 0)
            self.last_insert_at[key[1]] = at
            if items:
                moment = (at, time.time())
                for item in items:
                    self.created_at[item] = moment
        self.answered.set()

    def failed(self, event: Any) -> None:
        self._pending.pop(event.request_id, None)

    async def next_answer(self, within_s: float) -> None:
        """Wait until a command returns (TimeoutError after `within_s` seconds)."""
        self.answered.clear()
        await asyncio.wait_for(self.answered.wait(), within_s)


def stack_pids(mongodb_url: str, redis_url: str) -> dict[str, int]:
    """The mongod and valkey (redis) processes serving these URLs, where they run on this
    machine (found by the port in their command line), so their CPU can be told apart from
    everything else on a shared machine."""
    from urllib.parse import urlsplit

    wanted = {
        "mongod": (f"--port {urlsplit(mongodb_url.split(',')[0]).port or 27017}", "mongod"),
        "valkey": (f":{urlsplit(redis_url).port or 6379}", "-server"),
    }
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for name, (port, program) in wanted.items():
            command = argv.split(" ", 1)[0]
            if name not in found and program in command and port in argv:
                found[name] = int(proc.name)
    return found


# --- the items and the process that inserts them -------------------------------------------------


def loom_client(mongodb_url: str, listeners: list[Any] | None = None) -> Any:
    """A client configured as Loom's (gateway/connections.py), with `listeners`."""
    from pymongo import AsyncMongoClient

    from gateway.settings import Settings

    settings = Settings(mongodb_url=mongodb_url)
    return AsyncMongoClient(
        mongodb_url,
        w="majority",
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        appname="loom",
        event_listeners=listeners or [],
    )


def burst_items(dataset: dict[str, Any], prefix: str, count: int) -> list[dict[str, Any]]:
    """Items as `resolvers.items` writes them; item n is of mimetype class n % 4 and camera
    n % 10."""
    from resolvers.timestamps import new_document

    docs = []
    for n in range(count):
        ext, mimetype = MIMETYPES[n % len(MIMETYPES)]
        directory = f"/burst/{n % 20:02}"
        name = f"{prefix}-{n:06}.{ext}"
        docs.append(
            new_document(
                dataset["creator"],
                orgId=dataset["orgId"],
                projectId=dataset["projectId"],
                datasetId=dataset["_id"],
                name=name,
                dir=directory,
                filename=f"{directory}/{name}",
                type="file",
                mimetype=mimetype,
                size=100 + (n * 37) % 9000,
                width=None,
                height=None,
                sha256=f"{n % 97:064x}",
                metadata={
                    "user": {"camera": f"cam{n % CAMERAS}", "score": (n % 100) / 100},
                    "system": {"originalName": name},
                },
                tags=[f"t{n % 5}"],
                description="",
                hidden=False,
                annotated=False,
                annotationsCount=0,
            )
        )
    return docs


async def insert_child(args: argparse.Namespace) -> None:
    """The child's side: build the items, say `ready`, wait for a line on stdin, insert them
    (one insert_many when --rate is 0, else one insert_one per slot of the clock), and print
    what happened as one JSON line."""
    from bson import ObjectId

    client = loom_client(os.environ["LOOM_MONGODB_URL"])
    db = client[os.environ["LOOM_DB_NAME"]]
    dataset = await db.datasets.find_one({"_id": ObjectId(args.dataset)})
    docs = burst_items(dataset, args.insert, args.count)
    await db.command("ping")
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    report: dict[str, Any] = {}
    cpu0 = time.process_time()
    if not args.rate:
        report["began"] = CLOCK()
        await db.items.insert_many(docs, ordered=False)
        report["returned"] = CLOCK()
    else:
        returned: dict[str, float] = {}
        lags: list[float] = []

        async def insert(doc: dict[str, Any]) -> None:
            await db.items.insert_one(doc)
            returned[str(doc["_id"])] = CLOCK()

        tasks = []
        report["began"] = start = CLOCK() + 0.05
        for k, doc in enumerate(docs):
            slot = start + k / args.rate
            if (wait := slot - CLOCK()) > 0:
                await asyncio.sleep(wait)
            lags.append((CLOCK() - slot) * 1000)
            tasks.append(asyncio.create_task(insert(doc)))
        await asyncio.gather(*tasks)
        report |= {"ended": CLOCK(), "returned": returned, "lags": lags}
    report["cpu_s"] = time.process_time() - cpu0
    await client.close()
    print(json.dumps(report), flush=True)


class Inserter:
    """The inserting child, started and ready before its inserts are let go."""

    def __init__(self, env: dict[str, str], dataset: Any, prefix: str, count: int, rate: float):
        self.env = env
        self.argv = [sys.executable, __file__, "--insert", prefix, "--dataset", str(dataset)]
        self.argv += ["--count", str(count), "--rate", str(rate)]

    async def __aenter__(self) -> "Inserter":
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=harness.REPO,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,  # the steady report is one line of a few hundred KB
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), harness.READY_TIMEOUT_S)
        if line.strip() != b"ready":
            raise SystemExit(f"the inserting child did not start: {line!r}")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")

    async def report(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        await self.process.wait()
        if self.process.returncode != 0 or not line:
            raise SystemExit(f"the inserting child failed ({self.process.returncode})")
        return json.loads(line)


def buffered(stream: Any) -> int:
    """The changes a change stream's last getMore brought that are not read yet: the end of a
    round, which PyMongo has no public word for (`try_next` past it sends the next getMore)."""
    return len(stream._cursor._data)


def cpu_line(cpu: CpuWindow, report: dict[str, Any], who: str) -> str:
    child = report["cpu_s"] / cpu.seconds
    return (
        f"  cpu (cores): {cpu.summary()} (benchmark = {who}; the inserting child's "
        f"{child:.2f} is part of 'other')"
    )


# --- the benchmark's world ------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, mongodb_url: str, redis_url: str) -> None:
        self.args = args
        self.mongodb_url, self.redis_url = mongodb_url, redis_url
        self.db_name = f"bench_{uuid.uuid4().hex[:12]}"
        self.env = harness.server_env(mongodb_url, redis_url, self.db_name)
        self.commands = RelayCommands()
        self.relay_task: asyncio.Task[None] | None = None
        self.relayed_items = 0
        self.bare_cpu_ms = 0.0
        self.relay_rate = 0.0
        self.per_event: dict[str, tuple[float, float]] = {}
        self.pids = stack_pids(mongodb_url, redis_url)

    async def open(self) -> None:
        from arq.connections import ArqRedis

        from gateway import logs

        logs.configure("WARNING")
        self.mongo = loom_client(self.mongodb_url)
        self.db = self.mongo[self.db_name]
        self.relay_mongo = loom_client(self.mongodb_url, [self.commands])
        self.redis = ArqRedis.from_url(self.redis_url)

    async def close(self) -> None:
        from triggers import execution_queue
        from triggers.relay import lease

        if self.relay_task is not None:
            self.relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.relay_task
            with contextlib.suppress(Exception):
                await lease.release(self.db, HOLDER)
        if hasattr(self, "service"):
            with contextlib.suppress(Exception):
                await execution_queue.drop_service(self.redis, self.service["_id"])
        with contextlib.suppress(Exception):
            await self.mongo.drop_database(self.db_name)
        await self.mongo.close()
        await self.relay_mongo.close()
        await self.redis.aclose()

    async def setup(self) -> None:
        from gateway.bootstrap import create_key
        from gateway.indexes import ensure_indexes
        from resolvers.access import OrgRole
        from resolvers.api_keys import authenticate
        from resolvers.datasets import create_dataset
        from resolvers.projects import create_project
        from resolvers.services import create_service
        from resolvers.triggers import create_trigger

        await ensure_indexes(self.db)
        key, key_doc = await create_key(self.db, "Bench", OrgRole.OWNER, EMAIL, "bench")
        access = (await authenticate(self.db, key)).access
        project = await create_project(access, key_doc["orgId"], {"name": "Triggers"})
        self.dataset = await create_dataset(access, project["_id"], {"name": "frames"})
        other = await create_dataset(access, project["_id"], {"name": "elsewhere"})
        self.service = await create_service(
            access, project["_id"], {"name": "hooks", "functions": ["echo"]}
        )
        self.specs = trigger_specs(str(other["_id"]))
        self.trigger_ids = []
        for n, spec in enumerate(self.specs):
            operation = {
                "serviceId": str(self.service["_id"]),
                "functionName": "echo",
                "input": {"trigger": n},
            }
            trigger = {
                "name": spec.name,
                "resource": spec.resource,
                "actions": list(spec.actions),
                "filter": spec.filter,
                "executionMode": spec.mode,
                "ordered": spec.ordered,
                "operation": operation,
            }
            self.trigger_ids.append((await create_trigger(access, project["_id"], trigger))["_id"])
        firing = sum(1 for spec in self.specs if spec.fires_on is not None)
        on_created = sum(1 for s in self.specs if s.resource == "Item" and "Created" in s.actions)
        print(
            f"seeded 1 organization, 1 project, 2 datasets, 1 service, {len(self.specs)} active "
            f"triggers ({on_created} on item creation, {firing} of them firing on burst items, "
            f"{FIRING} per item)",
            flush=True,
        )
        began = CLOCK()
        warm = burst_items(self.dataset, "warm", WARM_UP)
        await self.db.items.insert_many(warm, ordered=False)
        print(f"warm-up: {WARM_UP:,} items inserted in {CLOCK() - began:.2f}s, nobody reading")

    def inserter(self, prefix: str, count: int, rate: float = 0) -> Inserter:
        return Inserter(self.env, self.dataset["_id"], prefix, count, rate)

    # --- (a) throughput ---------------------------------------------------------------------------

    async def relays_stream(self, client: Any) -> Any:
        """The relay's change stream, from now, on `client`: its pipeline, images and await."""
        from triggers.relay.matching import TriggerSet
        from triggers.relay.relay import AWAIT_MS, _pipeline

        triggers = TriggerSet()
        triggers.load(await self.db.triggers.find().to_list())
        return await client[self.db_name].watch(
            _pipeline(triggers.execution_projects()),
            full_document="whenAvailable",
            full_document_before_change="whenAvailable",
            max_await_time_ms=AWAIT_MS,
        )

    async def phase_bare(self) -> float:
        """The bare reader over a burst: changes per second."""
        burst = self.args.burst
        print(
            f"\n[a0] baseline: a bare PyMongo loop reading the relay's change stream, "
            f"{burst:,} item inserts ...",
            flush=True,
        )
        counted = RelayCommands()
        reader_mongo = loom_client(self.mongodb_url, [counted])
        try:
            stream = await self.relays_stream(reader_mongo)
            async with stream, self.inserter("bare", burst) as inserter:
                seen = 0
                last_at = 0.0

                async def read() -> None:
                    nonlocal seen, last_at
                    while seen < burst:
                        change = await stream.try_next()
                        if change is not None and change["ns"]["coll"] == "items":
                            seen += 1
                            last_at = CLOCK()

                reader = asyncio.create_task(read())
                with CpuWindow(self.pids) as cpu:
                    inserter.go()
                    await asyncio.wait_for(reader, WAIT_CAP_S)
                report = await inserter.report()
        finally:
            await reader_mongo.close()
        elapsed = last_at - report["began"]
        rate = burst / elapsed
        getmores = sum(n for (name, _), n in counted.counts.items() if name == "getMore")
        print(
            f"  insert_many of {burst:,} items returned after "
            f"{report['returned'] - report['began']:.2f}s; the reader's getMores {getmores:,}"
        )
        print(cpu_line(cpu, report, "the bare reader"))
        self.bare_cpu_ms = (cpu.cores["benchmark"] or 0) * cpu.seconds / burst * 1000
        print(f"  => bare reader: {burst:,} changes in {elapsed:.2f}s = {rate:,.0f} changes/s")
        return rate

    async def start_relay(self) -> None:
        from gateway.settings import Settings
        from triggers.patience import Patience
        from triggers.relay.relay import Relay

        settings = Settings(mongodb_url=self.mongodb_url)
        self.relay = Relay(
            self.relay_mongo[self.db_name],
            self.redis,
            HOLDER,
            settings.relay_lease_s,
            Patience(settings.transient_retry_s),
        )
        self.relay_task = asyncio.create_task(self.relay.run())
        began = CLOCK()
        await asyncio.wait_for(self.relay.relaying.wait(), harness.READY_TIMEOUT_S)
        print(f"  relay {HOLDER!r} holds the lease and reads the stream ({CLOCK() - began:.2f}s)")

    async def stop_relay(self) -> None:
        """Stop the relay where it stands (it keeps the lease; started again, it takes it back)."""
        assert self.relay_task is not None
        self.relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.relay_task
        self.relay_task = None

    async def until_relayed(self, events: int, executions: int) -> float:
        """Wait until the relay's inserts reach these totals; the moment the last one returned
        (inf if they did not within WAIT_CAP_S)."""
        inserted = self.commands.inserted
        deadline = CLOCK() + WAIT_CAP_S
        while inserted["events"] < events or inserted["executions"] < executions:
            if self.relay_task is not None and self.relay_task.done():
                raise SystemExit(f"the relay stopped: {self.relay_task.exception()!r}")
            try:
                await self.commands.next_answer(max(0.0, deadline - CLOCK()))
            except TimeoutError:
                print(
                    f"  !! after {WAIT_CAP_S:g}s: {inserted['events']:,} of {events:,} events, "
                    f"{inserted['executions']:,} of {executions:,} executions"
                )
                return float("inf")
        return max(self.commands.last_insert_at.values())

    async def token_stored(self) -> None:
        """Wait for the relay's next write of its token: the last round's bookkeeping."""
        stored = self.commands.finished[("update", "relay")]
        while self.commands.finished[("update", "relay")] == stored:
            await self.commands.next_answer(WAIT_CAP_S)

    async def check_counts(self, items: int) -> bool:
        """Exactly one event per relayed item, and per trigger exactly the executions its
        filter calls for, in MongoDB itself."""
        events = await self.db.events.count_documents({})
        executions = await self.db.executions.count_documents({})
        by_trigger = {
            doc["_id"]: doc["n"]
            async for doc in await self.db.executions.aggregate(
                [{"$group": {"_id": "$triggerId", "n": {"$sum": 1}}}]
            )
        }
        steady = self.relayed_items - self.args.burst
        wrong = []
        for trigger_id, spec in zip(self.trigger_ids, self.specs, strict=True):
            expected = 0
            if spec.fires_on is not None:
                expected = sum(1 for n in range(self.args.burst) if spec.fires_on(n))
                expected += sum(1 for n in range(steady) if spec.fires_on(n))
            if by_trigger.get(trigger_id, 0) != expected:
                wrong.append(f"{spec.name}: {by_trigger.get(trigger_id, 0)} != {expected}")
        exact = events == items and executions == FIRING * items and not wrong
        print(
            f"  checked in MongoDB: {events:,} events (expected {items:,}), {executions:,} "
            f"executions (expected {FIRING * items:,}), per trigger "
            + ("as expected" if not wrong else f"WRONG: {'; '.join(wrong[:5])}")
        )
        return exact

    async def phase_relay(self, bare: float) -> dict[str, bool]:
        burst = self.args.burst
        print(
            f"\n[a] relay + matcher: {len(self.specs)} active triggers, {burst:,} item inserts "
            f"(expecting {burst:,} events, {FIRING * burst:,} executions) ...",
            flush=True,
        )
        await self.start_relay()
        before = self.snapshot()
        async with self.inserter("burst", burst) as inserter:
            with CpuWindow(self.pids) as cpu:
                inserter.go()
                done = await self.until_relayed(burst, FIRING * burst)
            report = await inserter.report()
        await self.token_stored()
        self.relayed_items += burst
        elapsed = done - report["began"]
        rate = self.relay_rate = burst / elapsed
        exact = await self.check_counts(self.relayed_items)
        print(
            f"  insert_many of {burst:,} items returned after "
            f"{report['returned'] - report['began']:.2f}s"
        )
        print(cpu_line(cpu, report, "the relay"))
        print(f"  => relay: {burst:,} events in {elapsed:.2f}s = {rate:,.0f} events/s")
        self.report_commands("a", before, burst)
        cpu_ms = (cpu.cores["benchmark"] or 0) * cpu.seconds / burst * 1000
        print(
            f"  the relay's CPU per event: {cpu_ms:.3f} ms, i.e. {1000 / cpu_ms:,.0f} events per "
            f"second of one core at most; the bare reader's per change: "
            f"{self.bare_cpu_ms:.3f} ms ({1000 / self.bare_cpu_ms:,.0f} per core-second)"
        )
        await self.time_matching()
        return {
            "throughput": goal(
                "relay + matcher throughput",
                rate,
                ">=",
                EVENTS_GOAL_PER_S,
                f"{rate:,.0f} events/s",
                f"{EVENTS_GOAL_PER_S:,} events/s",
            )
            and exact,
            "ratio": goal(
                "relay / bare reader",
                rate / bare,
                ">=",
                BARE_RATIO_GOAL,
                f"{rate / bare:.2f}x ({rate:,.0f} / {bare:,.0f} per s)",
                f"{BARE_RATIO_GOAL}x",
            )
            and exact,
        }

    async def time_matching(self) -> None:
        """The matcher alone, on stored events: where a share of the relay's CPU goes."""
        from triggers.relay.matching import TriggerSet

        triggers = TriggerSet()
        triggers.load(await self.db.triggers.find().to_list())
        events = await self.db.events.find().limit(MATCHED_SAMPLE).to_list()
        began = time.process_time()
        fired = sum(len(triggers.matching(event)) for event in events)
        spent = time.process_time() - began
        armed = sum(1 for s in self.specs if s.resource == "Item" and "Created" in s.actions)
        print(
            f"  the matcher alone (TriggerSet.matching, {len(events):,} stored events, "
            f"{armed} triggers on item creation each): {spent / len(events) * 1e6:.0f} us CPU "
            f"per event, {spent / len(events) / armed * 1e6:.1f} us per trigger evaluated; "
            f"{fired / len(events):.2f} fired per event"
        )

    async def templates(self) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
        """One event and, per burst item class (n % 20: its camera and mimetype class), the
        executions of its two triggers, as the relay stored them in (a), without their `_id`."""
        event = await self.db.events.find_one({"resource": "Item", "action": "Created"})
        by_trigger = {}
        for trigger_id, spec in zip(self.trigger_ids, self.specs, strict=True):
            if spec.fires_on is not None:
                by_trigger[trigger_id] = await self.db.executions.find_one(
                    {"triggerId": trigger_id}, {"_id": 0}
                )
        assert event is not None
        assert all(by_trigger.values())
        del event["_id"]
        classes = math.lcm(CAMERAS, len(MIMETYPES))
        executions = [
            [
                by_trigger[trigger_id]
                for trigger_id, spec in zip(self.trigger_ids, self.specs, strict=True)
                if spec.fires_on is not None and spec.fires_on(n)
            ]
            for n in range(classes)
        ]
        assert all(len(made) == FIRING for made in executions)
        return event, executions

    async def phase_reader_writer(self) -> None:
        """A bare loop that reads the stream as the bare reader does and writes, per round,
        what the relay writes (events, executions, a token) with plain PyMongo: what mongod's
        side of the relay's work costs, without matching or Loom's code. The relay stands
        still meanwhile and starts again from now afterwards, this loop's documents gone."""
        import bson
        from bson import ObjectId

        from triggers.relay.lease import LEASE_ID
        from triggers.relay.relay import MAX_BATCH

        burst = self.args.burst
        print(
            f"\n[a1] baseline: a bare PyMongo loop reading the same change stream and writing, "
            f"per round, one event and {FIRING} executions per change (the relay's documents, "
            f"plain insert_many) and a token, {burst:,} item inserts ...",
            flush=True,
        )
        await self.stop_relay()
        event_template, execution_templates = await self.templates()
        classes = len(execution_templates)
        token_id = "bench-reader-writer"
        first_id = ObjectId()
        counted = RelayCommands()
        client = loom_client(self.mongodb_url, [counted])
        db = client[self.db_name]
        rounds = 0
        sizes: list[int] = []
        try:
            stream = await self.relays_stream(client)
            async with stream, self.inserter("written", burst) as inserter:

                async def read_and_write() -> float:
                    nonlocal rounds
                    seen = 0
                    last_at = 0.0
                    while seen < burst:
                        changes = []
                        change = await stream.try_next()
                        while change is not None:
                            if change["ns"]["coll"] == "items":
                                changes.append(change)
                            if len(changes) >= MAX_BATCH or not buffered(stream):
                                break
                            change = await stream.try_next()
                        if not changes:
                            continue
                        events, executions = [], []
                        for change in changes:
                            item_id = change["documentKey"]["_id"]
                            event = dict(event_template)
                            event["_id"] = event_id = ObjectId()
                            event["token"] = change["_id"]["_data"]
                            event["clusterTime"] = change["clusterTime"]
                            event["time"] = change["wallTime"]
                            event["resourceId"] = item_id
                            event["after"] = change["fullDocument"]
                            made = execution_templates[seen % classes]
                            event["triggers"] = [template["triggerId"] for template in made]
                            events.append(event)
                            for template in made:
                                execution = dict(template)
                                execution["_id"] = ObjectId()
                                execution["eventId"] = event_id
                                execution["resource"] = {"type": "item", "id": item_id}
                                prefix, by, _ = template["triggerKey"].rsplit(":", 2)
                                keyed = item_id if by == "resource" else event_id
                                execution["triggerKey"] = f"{prefix}:{by}:{keyed}"
                                if "orderKey" in template:
                                    execution["orderKey"] = f"{template['triggerId']}:{item_id}"
                                    execution["orderSeq"] = event["token"]
                                executions.append(execution)
                            seen += 1
                        if not rounds:
                            sizes.extend(len(bson.encode(doc)) for doc in events[:1] + executions)
                        await db.events.insert_many(events, ordered=False)
                        await db.executions.insert_many(executions, ordered=False)
                        last_at = CLOCK()
                        await db.relay.update_one(
                            {"_id": token_id},
                            {"$set": {"until": datetime.now(UTC), "token": changes[-1]["_id"]}},
                            upsert=True,
                        )
                        rounds += 1
                    return last_at

                writer = asyncio.create_task(read_and_write())
                with CpuWindow(self.pids) as cpu:
                    inserter.go()
                    last_at = await asyncio.wait_for(writer, WAIT_CAP_S)
                report = await inserter.report()
        finally:
            await client.close()
        elapsed = last_at - report["began"]
        rate = burst / elapsed
        getmores = sum(n for (name, _), n in counted.counts.items() if name == "getMore")
        waited = ", ".join(
            f"{key[0]}({key[1]}) {counted.finished[key]} ({counted.busy_us[key] / 1e6:.1f}s)"
            for key in (("insert", "events"), ("insert", "executions"), ("update", "relay"))
        )
        print(
            f"  insert_many of {burst:,} items returned after "
            f"{report['returned'] - report['began']:.2f}s; the loop's getMores {getmores:,}, "
            f"rounds {rounds:,}; its writes (seconds waiting for their answers): {waited}"
        )
        stored = [len(bson.encode(doc)) for doc in (event_template, *execution_templates[0])]
        print(
            f"  its first documents: {' + '.join(map(str, sizes[:3]))} bytes (event + executions; "
            f"the relay's templates without _id: {' + '.join(map(str, stored))})"
        )
        print(cpu_line(cpu, report, "the bare reader+writer"))
        cpu_ms = (cpu.cores["benchmark"] or 0) * cpu.seconds / burst * 1000
        print(f"  the bare reader+writer's CPU per change: {cpu_ms:.3f} ms")
        print(
            f"  => bare reader+writer: {burst:,} changes written in {elapsed:.2f}s = "
            f"{rate:,.0f} changes/s"
        )
        print(
            f"  relay / bare reader+writer = {self.relay_rate / rate:.2f}x "
            f"({self.relay_rate:,.0f} / {rate:,.0f} per s; no goal)"
        )
        mine = {"_id": {"$gte": first_id}}
        events = (await self.db.events.delete_many(mine)).deleted_count
        executions = (await self.db.executions.delete_many(mine)).deleted_count
        await self.db.relay.delete_one({"_id": token_id})
        await self.db.relay.update_one({"_id": LEASE_ID}, {"$unset": {"token": ""}})
        print(
            f"  removed the loop's {events:,} events and {executions:,} executions "
            f"(expected {burst:,} and {FIRING * burst:,}); the relay starts again from now"
        )
        if events != burst or executions != FIRING * burst:
            raise SystemExit("the bare reader+writer did not write what the relay would")
        await self.start_relay()

    # --- (b) latency ------------------------------------------------------------------------------

    async def phase_latency(self) -> bool:
        from bson import ObjectId

        rate, seconds = self.args.rate, self.args.seconds
        count = round(rate * seconds)
        print(
            f"\n[b] latency: {count:,} single inserts at {rate:g}/s for {seconds:g}s, "
            f"from the insert's return to its executions' insert returning ...",
            flush=True,
        )
        self.commands.tracking = True
        before = self.snapshot()
        events0 = self.commands.inserted["events"]
        executions0 = self.commands.inserted["executions"]
        async with self.inserter("steady", count, rate) as inserter:
            with CpuWindow(self.pids) as cpu:
                inserter.go()
                report = await inserter.report()
                await self.until_relayed(events0 + count, executions0 + FIRING * count)
        await self.token_stored()
        self.commands.tracking = False
        self.relayed_items += count
        exact = await self.check_counts(self.relayed_items)
        created = self.commands.created_at
        returned = {ObjectId(raw): at for raw, at in report["returned"].items()}
        committed = {
            doc["resourceId"]: doc["time"].timestamp()
            async for doc in self.db.events.find(
                {"resourceId": {"$in": list(returned)}}, {"resourceId": 1, "time": 1}
            )
        }
        # From the insert's return, as the inserting process saw it (late when that process
        # waits for a core), and from the change's commit (its oplog wall time, the event's
        # `time`): never later than the return, so the stricter of the two.
        from_return = [(created[i][0] - at) * 1000 for i, at in returned.items() if i in created]
        from_commit = [(created[i][1] - at) * 1000 for i, at in committed.items() if i in created]
        lags = report["lags"]
        offered = count / (report["ended"] - report["began"])
        print(
            f"  inserts offered at {offered:,.0f}/s; start lag behind the clock p50 "
            f"{percentile(lags, 50):.2f} ms, max {max(lags):.1f} ms"
        )
        print(cpu_line(cpu, report, "the relay"))
        self.report_commands("b", before, count)
        if len(from_commit) < count or len(from_return) < count:
            print(f"  !! only {len(from_commit):,} of {count:,} items got their executions")
            print(f"  => no latency figure (goal p99 <= {P99_GOAL_MS:g} ms: NOT MET)")
            return False
        for name, values in (("insert's return", from_return), ("change's commit", from_commit)):
            print(
                f"  => from the {name} to the execution created: p50 "
                f"{percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms, "
                f"min {min(values):.1f} ms, max {max(values):.1f} ms"
            )
        p99 = percentile(from_commit, 99)
        return (
            goal(
                "commit -> execution created p99",
                p99,
                "<=",
                P99_GOAL_MS,
                f"{p99:.1f} ms",
                f"{P99_GOAL_MS:g} ms",
            )
            and exact
        )

    # --- (c) commands -----------------------------------------------------------------------------

    def report_commands(self, phase: str, before: RelayCommands, events: int) -> None:
        """The relay's commands since `before` (a copy of the listener's counters), per event."""
        sent = self.commands.counts - before.counts
        busy = self.commands.busy_us - before.busy_us
        read = self.commands.read - before.read
        stream = sum(n for (name, coll), n in sent.items() if name == "getMore" and "$cmd" in coll)
        others = sum(sent.values()) - stream
        shown = ", ".join(
            f"{name}({coll}) {n} ({busy[(name, coll)] / 1e6:.1f}s)"
            for (name, coll), n in sorted(sent.items(), key=lambda kv: -busy[kv[0]])
        )
        print(f"  relay's MongoDB commands (seconds waiting for their answers): {shown}")
        print(
            "  changes the relay's stream returned: "
            + ", ".join(f"{coll} {n:,}" for coll, n in read.most_common())
        )
        self.per_event[phase] = (others / events, stream / events)
        print(
            f"  => ({phase}) MongoDB commands per event: {others / events:.4f} (the change "
            f"stream's getMores apart: {stream / events:.4f} per event)"
        )

    def snapshot(self) -> RelayCommands:
        copy = RelayCommands()
        copy.counts = Counter(self.commands.counts)
        copy.busy_us = Counter(self.commands.busy_us)
        copy.read = Counter(self.commands.read)
        return copy


async def run(args: argparse.Namespace, mongodb_url: str, redis_url: str, origin: str) -> int:
    bench = Bench(args, mongodb_url, redis_url)
    print(f"databases: {origin}; db={bench.db_name}; processes {bench.pids}", flush=True)
    await bench.open()
    goals: dict[str, bool] = {}
    try:
        await bench.setup()
        bare = await bench.phase_bare()
        goals |= await bench.phase_relay(bare)
        await bench.phase_reader_writer()
        goals["latency"] = await bench.phase_latency()
    finally:
        await bench.close()
    print("\n[c] MongoDB commands the relay sends per event (no goal):")
    for phase, (per, stream) in bench.per_event.items():
        print(f"  ({phase}) {per:.4f} per event, + {stream:.4f} change-stream getMores per event")
    print(
        "\nsummary: "
        + ", ".join(f"{name} goal {'MET' if met else 'NOT MET'}" for name, met in goals.items())
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=20_000, help="item inserts per burst in (a)")
    parser.add_argument("--rate", type=float, default=500.0, help="inserts per second in (b)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of (b)")
    parser.add_argument("--insert", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.insert:
        harness.run_async(insert_child(args))
        return 0
    print(f"machine: {harness.machine_info(1).rpartition('; concurrency')[0]}")
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        return harness.run_async(run(args, mongodb_url, redis_url, origin))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
