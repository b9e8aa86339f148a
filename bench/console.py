"""The console under load: its executions page in headless Chromium while 1,000 executions
change every second, next to the same page idle.

    .venv/bin/python bench/console.py            # about a minute on 2 cores

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set. On a fresh database: an owner key, a project, a service, and 1,000
executions in progress (made as `execute` makes them, written straight to MongoDB). One Loom
gateway runs under uvicorn in a child process (no worker: nothing runs the executions, this
process moves them); Debian's Chromium shows the project's executions page, signed in with the
key.

1. Idle: for --seconds, the page's frames (requestAnimationFrame callbacks) and its long tasks
   (PerformanceObserver `longtask`: main-thread work over 50 ms) with nothing changing.
2. Loaded: the same, while this process moves every one of the 1,000 executions' progress once
   a second (100 updates each 100 ms, in bulk writes): the gateway's change feed carries each
   change to the page's `executionUpdated(projectId)` subscription, and the page redraws its
   rows and reads its counts again. A row on screen must show a later progress at the end.

Goals, printed as `(goal <op> <target>: MET | NOT MET)`: frames while loaded at least 0.8x the
idle page's (the page keeps drawing), and at most 10% of the loaded time in long tasks.
"""

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from bson import ObjectId  # noqa: E402
from pymongo import UpdateOne  # noqa: E402

from bench import harness  # noqa: E402

EMAIL = "bench-console@loom.dev"
EXECUTIONS = 1000
TICK_S = 0.1
FRAMES_GOAL = 0.8
LONG_TASKS_GOAL = 0.10
PROJECT = """mutation($org: ID!) { createProject(organizationId: $org, input: {name: "Live"}) {
  id } }"""
SERVICE = """mutation($p: ID!) { createService(projectId: $p, input: {name: "busy",
  functions: ["sleeper"]}) { id } }"""
MEASURE = """(seconds) => new Promise((resolve) => {
  let frames = 0;
  let longMs = 0;
  let longest = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      longMs += entry.duration;
      longest = Math.max(longest, entry.duration);
    }
  });
  observer.observe({ type: "longtask" });
  const started = performance.now();
  const frame = () => {
    frames += 1;
    if (performance.now() - started < seconds * 1000) requestAnimationFrame(frame);
    else {
      observer.disconnect();
      resolve({ frames, longMs, longest, ms: performance.now() - started });
    }
  };
  requestAnimationFrame(frame);
})"""
"""Frames drawn and long tasks over `seconds`, measured by the page itself."""
FIRST_PROGRESS = """() => document.querySelector('tr[data-execution] progress')?.value ?? null"""


def serve(port: int, parent: int) -> None:
    harness.run_uvicorn(harness.loom_app(), port, parent, websockets=True)


async def _executions(db: Any, service_id: str, owner: ObjectId) -> list[ObjectId]:
    from resolvers.executions import Status, new_execution, status_entry

    service = await db.services.find_one({"_id": ObjectId(service_id)})
    docs = []
    for n in range(EXECUTIONS):
        doc = new_execution(owner, service, "sleeper", {"n": n}, None)
        doc |= {"status": str(Status.IN_PROGRESS)}
        doc["statusLog"].append(status_entry(Status.IN_PROGRESS, "moved by bench/console.py"))
        docs.append(doc)
    await db.executions.insert_many(docs)
    return [doc["_id"] for doc in docs]


async def _move(db: Any, ids: list[ObjectId], stop: asyncio.Event) -> int:
    """Move each execution's progress once a second until `stop`; how many updates."""
    per_tick = round(EXECUTIONS * TICK_S)
    written, tick = 0, 0
    started = time.perf_counter()
    while not stop.is_set():
        chosen = ids[(tick * per_tick) % EXECUTIONS :][:per_tick]
        percent = (tick // (EXECUTIONS // per_tick)) % 100 + 1
        updates = [
            UpdateOne({"_id": i}, {"$set": {"progress.percent": percent, "updatedAt": _now()}})
            for i in chosen
        ]
        await db.executions.bulk_write(updates, ordered=False)
        written += len(updates)
        tick += 1
        ahead = started + tick * TICK_S - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return written


def _now() -> Any:
    from resolvers.timestamps import now

    return now()


async def run(args: argparse.Namespace, mongodb_url: str, redis_url: str, origin: str) -> int:
    from playwright.async_api import async_playwright

    print(f"bench/console.py — {harness.machine_info(1)}", flush=True)
    print(f"databases: {origin}")
    async with harness.GatewayBench(mongodb_url, redis_url) as bench:
        key_doc = await bench.start(__file__, EMAIL, worker=False)
        async with httpx.AsyncClient(base_url=bench.server.url, timeout=60) as client:
            org = str(key_doc["orgId"])
            project = (await bench.graphql(client, PROJECT, org=org))["createProject"]["id"]
            service = (await bench.graphql(client, SERVICE, p=project))["createService"]["id"]
        ids = await _executions(bench.db, service, key_doc["userId"])
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
            )
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            key = bench.headers["authorization"].removeprefix("Bearer ")
            await context.add_init_script(
                f"sessionStorage.setItem('loom.console.apiKey', {key!r});"
            )
            page = await context.new_page()
            await page.goto(f"{bench.server.url}/console/projects/{project}/executions")
            await page.locator("tr[data-execution]").nth(99).wait_for()
            await page.get_by_role("status").filter(has_text="Live").wait_for()
            idle = await page.evaluate(MEASURE, args.seconds)
            before = await page.evaluate(FIRST_PROGRESS)
            stop = asyncio.Event()
            mover = asyncio.create_task(_move(bench.db, ids, stop))
            loaded = await page.evaluate(MEASURE, args.seconds)
            stop.set()
            written = await mover
            after = await page.evaluate(FIRST_PROGRESS)
            await browser.close()
    rate = written / args.seconds
    print(f"updates written: {written:,} in {args.seconds} s ({rate:,.0f}/s)")
    for name, measured in (("idle", idle), ("loaded", loaded)):
        fps = measured["frames"] * 1000 / measured["ms"]
        print(
            f"{name}: {fps:.1f} frames/s, long tasks {measured['longMs']:.0f} ms in total, "
            f"longest {measured['longest']:.0f} ms"
        )
    if before == after:
        raise SystemExit(f"the first row's progress did not change ({before} → {after})")
    print(f"first row's progress on screen: {before} → {after}")
    ratio = (loaded["frames"] / loaded["ms"]) / (idle["frames"] / idle["ms"])
    share = loaded["longMs"] / loaded["ms"]
    verdict = "MET" if ratio >= FRAMES_GOAL else "NOT MET"
    print(f"ratio frames loaded / idle = {ratio:.2f}x (goal >= {FRAMES_GOAL}x: {verdict})")
    verdict = "MET" if share <= LONG_TASKS_GOAL else "NOT MET"
    print(f"time in long tasks, loaded = {share:.1%} (goal <= {LONG_TASKS_GOAL:.0%}: {verdict})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--serve", choices=["loom"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.parent)
        return 0
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        return harness.run_async(run(args, mongodb_url, redis_url, origin))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
