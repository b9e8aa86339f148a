"""Webhook delivery and cron firing, measured against their baselines in one run.

(a) Throughput: deliveries per second from one `loom worker` (no relay) to a local receiver
    (uvicorn in a child process, answering 200), over 50 webhooks, with `--deliveries`
    pending deliveries queued at once; next to bare loops in this process posting the same
    bodies, with the same headers, to the same receiver at the same concurrency (the worker's
    `LOOM_WEBHOOK_MAX_IN_FLIGHT`): one with httpx, as the issue names it, and one with
    aiohttp, the client Loom sends with — the stricter baseline. Loom's run pays for the
    claim and the answer in MongoDB, the signing, the address guard and the Redis queue; the
    bare loops for none of them. Goal: >= 0.5 x each bare loop.
(b) Latency with an idle queue: items inserted at `--rate` per second for `--seconds` into a
    project whose trigger delivers each new item to a webhook; per item, the receiver's
    arrival time minus the moment before its insert. One worker, relay on. Goal: p99 ≤ 250 ms.
(c) Cron lateness: three workers, an every-second cron trigger for `--cron-seconds`; per fire,
    when it was fired minus the tick it was for (the fire's `latenessMs`). Goal: p99 ≤ 500 ms.

Each goal is printed on one line ending `(goal <op> <target>: MET | NOT MET)`.
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

WEBHOOKS = 50
IN_FLIGHT = 100
THROUGHPUT_GOAL = 0.5
LATENCY_P99_GOAL_MS = 250.0
CRON_P99_GOAL_MS = 500.0
CRON_WORKERS = 3
EMAIL = "bench@example.com"
DONE_S = 300.0


async def _post_with_httpx(requests: list[tuple[str, bytes, dict[str, str]]]) -> float:
    limits = harness.httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with harness.httpx.AsyncClient(limits=limits, timeout=30) as client:
        queue = iter(requests)

        async def post_all() -> None:
            for url, body, headers in queue:
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(post_all() for _ in range(IN_FLIGHT)))
        return len(requests) / (time.perf_counter() - began)


async def _post_with_aiohttp(requests: list[tuple[str, bytes, dict[str, str]]]) -> float:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=IN_FLIGHT, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(requests)

        async def post_all() -> None:
            for url, body, headers in queue:
                async with session.post(url, data=body, headers=headers) as response:
                    response.raise_for_status()
                    await response.read()

        began = time.perf_counter()
        await asyncio.gather(*(post_all() for _ in range(IN_FLIGHT)))
        return len(requests) / (time.perf_counter() - began)


async def until(done: Any, within_s: float = 30.0) -> None:
    """Poll `done()` (state of another task or process) until it holds or time is up."""
    deadline = time.monotonic() + within_s
    while True:
        if done() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.01)


def goal(label: str, shown: str, met: bool, op: str, target: str) -> bool:
    print(f"  {label} = {shown} (goal {op} {target}: {'MET' if met else 'NOT MET'})", flush=True)
    return met


# --- the receiver: a child process answering 200 to every POST ------------------------------


async def _body(receive: Any) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _ok(send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await _body(receive)
        await _ok(send)


@contextlib.asynccontextmanager
async def receiver_here(app: Any) -> Any:
    """A receiver in this process (so arrivals are timed on this clock): its URL."""
    import uvicorn

    port = harness.free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


# --- the world --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, mongodb_url: str, redis_url: str) -> None:
        self.args = args
        self.mongodb_url, self.redis_url = mongodb_url, redis_url
        self.db_name = f"bench_{uuid.uuid4().hex[:12]}"
        self.home = Path(tempfile.mkdtemp(prefix="loom-bench-webhooks-"))
        self.env = {
            **harness.server_env(mongodb_url, redis_url, self.db_name),
            "LOOM_HOME": str(self.home),
            "LOOM_WEBHOOK_ALLOW_PRIVATE": "true",
            "LOOM_WEBHOOK_MAX_IN_FLIGHT": str(IN_FLIGHT),
            "LOOM_RELAY_LEASE_S": "1",
        }
        self.workers: list[harness.LoomWorker] = []

    async def open(self) -> None:
        from arq.connections import ArqRedis

        from gateway import logs
        from gateway.connections import mongo_client
        from gateway.settings import Settings

        logs.configure("WARNING")
        self.mongo = mongo_client(self.mongodb_url, Settings(mongodb_url=self.mongodb_url))
        self.db = self.mongo[self.db_name]
        self.redis = ArqRedis.from_url(self.redis_url)
        self.receiver = harness.Server(__file__, "receiver", self.env)
        self.receiver.wait_ready(harness.httpx.Request("POST", f"{self.receiver.url}/ready"))

    async def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.receiver.stop()
        with contextlib.suppress(Exception):
            await self.mongo.drop_database(self.db_name)
        await self.mongo.close()
        await self.redis.flushdb()
        await self.redis.aclose()
        shutil.rmtree(self.home, ignore_errors=True)

    async def setup(self) -> None:
        from gateway.bootstrap import create_key
        from gateway.indexes import ensure_indexes
        from gateway.settings import Settings
        from resolvers.access import OrgRole
        from resolvers.api_keys import authenticate
        from resolvers.datasets import create_dataset
        from resolvers.projects import create_project
        from resolvers.webhooks import create_webhook
        from triggers.webhooks.address_guard import AddressGuard
        from triggers.webhooks.secret_key import secret_box

        await ensure_indexes(self.db)
        key, key_doc = await create_key(self.db, "Bench", OrgRole.OWNER, EMAIL, "bench")
        self.access = (await authenticate(self.db, key)).access
        self.project = await create_project(self.access, key_doc["orgId"], {"name": "Hooks"})
        self.dataset = await create_dataset(self.access, self.project["_id"], {"name": "frames"})
        settings = Settings(home=self.home, webhook_allow_private=True)
        guard, self.box = AddressGuard(allow_private=True), secret_box(settings)
        self.webhooks = []
        for n in range(WEBHOOKS):
            data = {
                "name": f"hook-{n}",
                "url": f"{self.receiver.url}/hook/{n}",
                "concurrency": 10,
                "retryPolicy": {"maxAttempts": 3, "timeoutS": 10},
            }
            doc, _ = await create_webhook(self.access, guard, self.box, self.project["_id"], data)
            self.webhooks.append(doc)
        print(f"seeded 1 project, {WEBHOOKS} webhooks on {self.receiver.url}", flush=True)

    def start_worker(self, name: str, relay: bool) -> harness.LoomWorker:
        env = {**self.env, "LOOM_RELAY": "true" if relay else "false"}
        worker = harness.LoomWorker(env, self.home / f"{name}.log")
        self.workers.append(worker)
        return worker

    async def worker_ready(self, count: int) -> None:
        """Workers are up, and past the start-up requeue of pending deliveries."""
        from triggers.worker import REDIS_MARKER

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            up = await self.db.workers.count_documents({})
            if up >= count and await self.redis.exists(REDIS_MARKER):
                await asyncio.sleep(1.0)  # the first watch round requeues, then settles
                return
            for worker in self.workers:
                worker.check_alive()
            await asyncio.sleep(0.05)
        raise SystemExit("workers did not start within 60 s")

    # --- (a) -------------------------------------------------------------------------------

    def messages(self, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(webhook, delivery) pairs, round-robin over the webhooks."""
        from resolvers import deliveries
        from resolvers.timestamps import now

        made = []
        for n in range(count):
            webhook = self.webhooks[n % WEBHOOKS]
            event = {
                "_id": uuid.uuid4().hex,
                "resource": "Item",
                "action": "Created",
                "before": None,
                "after": {"name": f"{n}.png", "size": 1024, "tags": ["bench"], "n": n},
            }
            trigger = {"_id": "bench", "name": "bench"}
            type_, data = deliveries.event_message(trigger, event)
            made.append((webhook, deliveries.new_delivery(webhook, type_, data, now(), None)))
        return made

    async def bare(self, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, float]:
        """Posts per second of the same bodies and headers, by one bare client of each library
        at the same concurrency."""
        from resolvers.webhooks import signing_secrets
        from triggers.webhooks.sender import body_of, message_id
        from triggers.webhooks.signing import signature_header

        secrets = {w["_id"]: signing_secrets(self.box, w) for w in self.webhooks}
        requests = []
        for webhook, delivery in pairs:
            body = body_of(delivery["message"], 1, delivery["maxAttempts"])
            msg_id, stamp = message_id(delivery["_id"]), int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature_header(secrets[webhook["_id"]], msg_id, stamp, body),
            }
            requests.append((webhook["url"], body, headers))
        return {
            "httpx": await _post_with_httpx(requests),
            "aiohttp": await _post_with_aiohttp(requests),
        }

    async def loom(self, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> float:
        from triggers.webhooks import delivery_queue
        from triggers.webhooks.delivery_queue import Due

        docs = [delivery for _, delivery in pairs]
        due_ms = int(time.time() * 1000)
        queued = [Due(w["_id"], d["_id"], due_ms, w["concurrency"]) for w, d in pairs]
        began = time.perf_counter()
        for start in range(0, len(queued), 5000):
            await delivery_queue.push(self.redis, queued[start : start + 5000])
        deadline = time.monotonic() + DONE_S
        # Counted on the pending deliveries' own (partial) index: a scan of every delivery
        # 50 times a second would cost MongoDB more than the worker does.
        pending = {"state": "pending", "nextAttemptAt": {"$gte": datetime.min}}
        while True:
            left = await self.db.deliveries.count_documents(pending)
            if not left:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{left} of {len(docs)} deliveries pending after {DONE_S:.0f} s")
            self.workers[-1].check_alive()
            await asyncio.sleep(0.02)
        rate = len(docs) / (time.perf_counter() - began)
        failed = await self.db.deliveries.count_documents({"state": {"$ne": "delivered"}})
        if failed:
            raise SystemExit(f"{failed} deliveries did not succeed")
        return rate

    async def phase_throughput(self) -> bool:
        count = self.args.deliveries
        print(f"\n[a] {count:,} deliveries over {WEBHOOKS} webhooks, {IN_FLIGHT} in flight:")
        worker = self.start_worker("throughput", relay=False)
        await self.worker_ready(1)
        await self.bare(self.messages(min(1000, count)))  # warm the receiver and this client
        pids = {"worker": worker.pid, "receiver": self.receiver.process.pid}
        bare = await self.bare(self.messages(count))
        for library, rate in bare.items():
            print(f"  bare {library} loop: {rate:,.0f} posts/s")
        pairs = self.messages(count)
        await self.db.deliveries.insert_many([delivery for _, delivery in pairs])
        with harness.CpuWindow(pids) as loom_cpu:
            loom = await self.loom(pairs)
        print(f"  loom worker: {loom:,.0f} deliveries/s; cpu (cores): {loom_cpu.summary()}")
        worker.stop()
        self.workers.remove(worker)
        met = True
        for library, rate in bare.items():
            ratio = loom / rate
            shown, target = f"{ratio:.2f}x", f"{THROUGHPUT_GOAL}x"
            met &= goal(
                f"ratio loom / bare {library}", shown, ratio >= THROUGHPUT_GOAL, ">=", target
            )
        return met

    # --- (b) -------------------------------------------------------------------------------

    async def phase_latency(self) -> bool:
        from resolvers.timestamps import new_document
        from resolvers.triggers import create_trigger
        from resolvers.webhooks import create_webhook
        from triggers.webhooks.address_guard import AddressGuard

        rate, seconds = self.args.rate, self.args.seconds
        count = int(rate * seconds)
        print(f"\n[b] event → delivery, {rate:g} item inserts/s for {seconds:g} s, idle queue:")
        arrived: dict[str, float] = {}

        async def timing(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            message = json.loads(await _body(receive))
            arrived[message["data"]["event"]["new"]["name"]] = time.time()
            await _ok(send)

        async with receiver_here(timing) as url:
            data = {"name": "timed", "url": f"{url}/timed", "concurrency": 50}
            webhook, _ = await create_webhook(
                self.access, AddressGuard(allow_private=True), self.box, self.project["_id"], data
            )
            trigger = {
                "name": "deliver new items",
                "resource": "Item",
                "actions": ["Created"],
                "operation": {"type": "webhook", "webhookId": str(webhook["_id"])},
            }
            await create_trigger(self.access, self.project["_id"], trigger)
            self.start_worker("latency", relay=True)
            await self.worker_ready(1)
            while True:
                relay = await self.db.relay.find_one({"_id": "relay"})
                if relay and relay.get("token"):
                    break
                await asyncio.sleep(0.05)
            inserted: dict[str, float] = {}
            began = time.perf_counter()
            for n in range(count):
                name = f"timed-{n}.png"
                await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
                inserted[name] = time.time()
                await self.db.items.insert_one(
                    new_document(
                        None,
                        orgId=self.project["orgId"],
                        projectId=self.project["_id"],
                        datasetId=self.dataset["_id"],
                        name=name,
                        dir="/",
                        filename=f"/{name}",
                        type="file",
                        metadata={},
                        tags=[],
                        annotated=False,
                        annotationsCount=0,
                    )
                )
            await until(lambda: len(arrived) >= count, within_s=60)
        if len(arrived) < count:
            print(f"  only {len(arrived)} of {count} deliveries arrived")
            return goal("p99", "n/a", False, "<=", f"{LATENCY_P99_GOAL_MS:g} ms")
        latencies = [(arrived[name] - at) * 1000 for name, at in inserted.items()]
        p50, p99 = harness.percentile(latencies, 50), harness.percentile(latencies, 99)
        print(f"  {count} deliveries: p50 {p50:.0f} ms, max {max(latencies):.0f} ms")
        return goal(
            "p99", f"{p99:.0f} ms", p99 <= LATENCY_P99_GOAL_MS, "<=", f"{LATENCY_P99_GOAL_MS:g} ms"
        )

    # --- (c) -------------------------------------------------------------------------------

    async def phase_cron(self) -> bool:
        from resolvers.cron_triggers import create_cron_trigger
        from resolvers.services import create_service

        seconds = self.args.cron_seconds
        print(f"\n[c] an every-second cron trigger, {CRON_WORKERS} workers, {seconds:g} s:")
        service = await create_service(
            self.access, self.project["_id"], {"name": "ticks", "functions": ["echo"]}
        )
        for worker in list(self.workers):
            worker.stop()
            self.workers.remove(worker)
        await self.db.workers.delete_many({})
        for n in range(CRON_WORKERS):
            self.start_worker(f"cron-{n}", relay=False)
        await self.worker_ready(CRON_WORKERS)
        trigger = await create_cron_trigger(
            self.access,
            self.project["_id"],
            {
                "name": "every second",
                "cron": "* * * * * *",
                "operation": {
                    "serviceId": str(service["_id"]),
                    "functionName": "echo",
                    "input": {},
                },
            },
        )
        await asyncio.sleep(seconds)
        fires = await self.db.cron_fires.find(
            {"cronTriggerId": trigger["_id"], "status": "fired"},
            {"latenessMs": 1, "scheduledAt": 1},
        ).to_list()
        ticks = {fire["scheduledAt"] for fire in fires}
        print(f"  {len(fires)} fires for {len(ticks)} ticks in {seconds:g} s")
        if not fires:
            return goal("p99", "n/a", False, "<=", f"{CRON_P99_GOAL_MS:g} ms")
        lateness = [fire["latenessMs"] for fire in fires]
        p50, p99 = harness.percentile(lateness, 50), harness.percentile(lateness, 99)
        print(f"  lateness p50 {p50:.0f} ms, max {max(lateness):.0f} ms")
        return goal(
            "p99", f"{p99:.0f} ms", p99 <= CRON_P99_GOAL_MS, "<=", f"{CRON_P99_GOAL_MS:g} ms"
        )


async def run(args: argparse.Namespace, mongodb_url: str, redis_url: str, origin: str) -> int:
    bench = Bench(args, mongodb_url, redis_url)
    print(f"databases: {origin}; db={bench.db_name}", flush=True)
    await bench.open()
    goals: dict[str, bool] = {}
    try:
        await bench.setup()
        goals["throughput"] = await bench.phase_throughput()
        goals["latency"] = await bench.phase_latency()
        goals["cron lateness"] = await bench.phase_cron()
    finally:
        await bench.close()
    print(
        "\nsummary: "
        + ", ".join(f"{name} goal {'MET' if met else 'NOT MET'}" for name, met in goals.items())
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=10_000, help="deliveries in (a)")
    parser.add_argument("--rate", type=float, default=20.0, help="inserts per second in (b)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of (b)")
    parser.add_argument("--cron-seconds", type=float, default=20.0, help="length of (c)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "receiver":
        harness.run_uvicorn(receiver_app, args.port, args.parent)
        return 0
    print(f"machine: {harness.machine_info(1).rpartition('; concurrency')[0]}")
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        return harness.run_async(run(args, mongodb_url, redis_url, origin))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
