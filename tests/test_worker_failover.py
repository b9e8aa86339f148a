"""Real `loom worker` processes running a batch of executions on a three-node replica set
whose primary is SIGKILLed, and on a Valkey that is SIGKILLed and restarted empty: every
execution ends `success`, once, and nobody restarts anything.

Run with `-s` to see the figures, one line per goal, each ending `(goal …: MET|NOT MET)`.
"""

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.errors import NotPrimaryError, PyMongoError

from resolvers.timestamps import new_document
from tests.test_failover import Gateway, gateway, project_of
from tests.waiting import eventually
from tests.workers import worker_processes

pytest_plugins = ["tests.replica_set"]

COUNT = 1000
CONCURRENCY = 50
QUEUE_CHECK_S = 3
WORKERS = {
    "LOOM_WORKER_MAX_JOBS": str(CONCURRENCY // 2),
    "LOOM_EXECUTION_LEASE_S": "6",
    "LOOM_REAPER_INTERVAL_S": "1",
    "LOOM_QUEUE_CHECK_S": str(QUEUE_CHECK_S),
}
"""Two of these: a lease short enough to lapse during an election, so the test shows leases
are re-checked rather than assumed lost."""
SLEEPER = {"function": "sleeper", "input": {"seconds": 0.3, "steps": 3}}
"""Each run reports progress three times: writes of the function's own, during the faults."""
FINAL = ["success", "failed", "aborted", "terminated"]

CREATE_SERVICE = """mutation($p: ID!, $input: ServiceInput!) { createService(projectId: $p,
  input: $input) { id } }"""
EXECUTE_BATCH = """mutation($s: ID!, $input: BatchInput!) {
  executeBatch(serviceId: $s, input: $input) { id } }"""
EXECUTE = """mutation($s: ID!, $input: ExecuteInput!) { execute(serviceId: $s, input: $input) {
  id } }"""


def goal(label: str, value: float, op: str, target: float, unit: str = "") -> str:
    met = value <= target if op == "<=" else value == target
    shown = f"{value:.2f}{unit}" if unit else f"{value:g}"
    aim = f"{target:.2f}{unit}" if unit else f"{target:g}"
    return f"{label}: {shown} (goal {op} {aim}: {'MET' if met else 'NOT MET'})"


class Watch:
    """Reads of the executions through a client of the test's own that waits out elections
    (a read during one answers None)."""

    def __init__(self, url: str, db_name: str) -> None:
        self.client = AsyncMongoClient(url, serverSelectionTimeoutMS=30_000, tz_aware=True)
        self.executions = self.client[db_name].executions

    async def counts(self) -> dict[str, int] | None:
        try:
            rows = await (
                await self.executions.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
            ).to_list()
        except PyMongoError:
            return None
        return {row["_id"]: row["n"] for row in rows}

    async def first_write_after(self, started: float) -> float:
        """Seconds from `started` until a write of ours is acknowledged by a majority."""
        probes = self.client["failover_probe"].writes
        while True:
            try:
                await probes.insert_one({"at": time.monotonic()})
                return time.monotonic() - started
            except PyMongoError:
                await asyncio.sleep(0.02)


@contextmanager
def workers(gw: Gateway) -> Iterator[list[Any]]:
    with worker_processes(gw.settings, **WORKERS) as start:
        yield [start(), start()]


async def _batch_of_sleepers(gw: Gateway) -> tuple[str, str]:
    """A project's service and COUNT items, then a batch running the sleeper on each."""
    project = ObjectId(await project_of(gw))
    await gw.db.items.insert_many(
        [
            new_document(
                gw.org["userId"],
                orgId=gw.org["orgId"],
                projectId=project,
                datasetId=project,
                name=f"{n}.png",
                filename=f"/{n}.png",
            )
            for n in range(COUNT)
        ]
    )
    service = {"name": "sleepers", "functions": ["sleeper", "echo"], "concurrency": CONCURRENCY}
    created = await gw.data(CREATE_SERVICE, p=str(project), input=service)
    service_id = created["createService"]["id"]
    await gw.data(EXECUTE_BATCH, s=service_id, input=SLEEPER)
    return str(project), service_id


def _done(counts: dict[str, int] | None) -> int:
    return sum((counts or {}).get(status, 0) for status in FINAL)


async def _all_final(watch: Watch, count: int, within_s: float) -> dict[str, int]:
    return await eventually(watch.counts, lambda c: _done(c) >= count, within_s)


async def test_killing_the_primary_under_a_batch_fails_nothing_strands_nothing_reruns_few(
    replica_set,
):
    async with gateway(replica_set) as gw:
        watch = Watch(replica_set.mongodb_url, gw.settings.db_name)
        with workers(gw) as processes:
            await _batch_of_sleepers(gw)
            await eventually(watch.counts, lambda c: _done(c) >= 1, 60)
            started = time.monotonic()
            before = await eventually(watch.counts, lambda c: _done(c) >= COUNT // 5, 60)
            rate = _done(before) / (time.monotonic() - started)
            kill = await replica_set.kill_primary()
            first_write = asyncio.create_task(watch.first_write_after(kill.monotonic))
            election = await replica_set.wait_for_new_primary(kill)
            counts = await _all_final(watch, COUNT, within_s=90)
            final_s = time.monotonic() - kill.monotonic
            written_s = await first_write
            assert all(p.poll() is None for p in processes), "no worker died"
        fields = {"status": 1, "attempts": 1, "statusLog": 1}
        ran = await gw.db.executions.find({}, fields).to_list()
        elected = election.after_kill_s(kill, "lastElectionDate") or election.seen_after_s
        reruns = sum(e["attempts"] for e in ran) - len(ran)
        left_s = (COUNT - _done(before)) / rate
        print(
            f"\n{election.report(kill)}",
            goal("first write after the kill, s", written_s, "<=", elected + 5, " s"),
            goal(
                "every execution final after the kill (work left at the kill "
                f"{left_s:.1f} s at the pace before it)",
                final_s,
                "<=",
                elected + left_s + 5,
                " s",
            ),
            goal("failed executions", counts.get("failed", 0), "==", 0),
            goal("executions not final", COUNT - _done(counts), "==", 0),
            goal("reruns", reruns, "<=", CONCURRENCY),
            sep="\n",
        )
        assert counts == {"success": COUNT}, counts
        assert len(ran) == COUNT
        assert reruns <= CONCURRENCY
        statuses = [entry["status"] for e in ran for entry in e["statusLog"]]
        assert "failed" not in statuses

        snapshot = {e["_id"]: (e["status"], e["attempts"]) for e in ran}
        await replica_set.restart(kill.node)
        host = replica_set.nodes.hosts[kill.node]
        rejoined = AsyncMongoClient(host, directConnection=True, readPreference="secondary")
        executions = rejoined[gw.settings.db_name].executions

        async def succeeded_there() -> int | None:
            try:
                return await executions.count_documents({"status": "success"})
            except NotPrimaryError:
                return None  # still recovering: not yet a secondary that can be read

        try:
            await eventually(succeeded_there, lambda n: n == COUNT)
        finally:
            await rejoined.close()
        after = await gw.db.executions.find({}, {"status": 1, "attempts": 1}).to_list()
        assert {e["_id"]: (e["status"], e["attempts"]) for e in after} == snapshot
        await watch.client.close()


async def test_killing_valkey_under_a_batch_keeps_workers_up_and_every_execution_runs_once(
    replica_set,
):
    async with gateway(replica_set) as gw:
        watch = Watch(replica_set.mongodb_url, gw.settings.db_name)
        with workers(gw) as processes:
            _, service = await _batch_of_sleepers(gw)
            await eventually(watch.counts, lambda c: _done(c) >= 1, 60)
            started = time.monotonic()
            before = await eventually(watch.counts, lambda c: _done(c) >= COUNT // 5, 60)
            rate = _done(before) / (time.monotonic() - started)
            await asyncio.to_thread(replica_set.stack.kill_valkey)
            during = (await gw.post(EXECUTE, s=service, input={"function": "echo"})).json()
            # The runs claimed before the kill end without Redis.
            await eventually(watch.counts, lambda c: c is not None and not c.get("inProgress"))
            assert all(p.poll() is None for p in processes), "no worker died with Redis"
            stranded = _done(await watch.counts())
            await asyncio.to_thread(replica_set.stack.restart_valkey)
            restarted = time.monotonic()
            await eventually(watch.counts, lambda c: _done(c) > stranded, QUEUE_CHECK_S + 30)
            resumed_s = time.monotonic() - restarted
            expected = COUNT + (0 if during.get("errors") else 1)
            counts = await _all_final(watch, expected, within_s=QUEUE_CHECK_S + 60)
            final_s = time.monotonic() - restarted
            assert all(p.poll() is None for p in processes), "no worker died with Redis"
        ran = await gw.db.executions.find({}, {"attempts": 1, "batchId": 1}).to_list()
        left_s = (expected - stranded) / rate
        print(
            f"\n{COUNT - stranded} executions waited for Redis",
            goal(
                "first execution ended after Valkey restarted empty, s",
                resumed_s,
                "<=",
                QUEUE_CHECK_S + 5,
                " s",
            ),
            goal(
                f"every execution final after it (work left {left_s:.1f} s at the pace before)",
                final_s,
                "<=",
                QUEUE_CHECK_S + left_s + 5,
                " s",
            ),
            goal("executions not final", expected - _done(counts), "==", 0),
            goal("reruns", sum(e["attempts"] for e in ran) - len(ran), "<=", CONCURRENCY),
            sep="\n",
        )
        assert counts == {"success": expected}, counts
        assert len(ran) == expected
        if during.get("errors"):
            assert {e["extensions"]["code"] for e in during["errors"]} == {"UNAVAILABLE"}
            assert not [e for e in ran if "batchId" not in e], "an error created nothing"
        else:
            alone = [e for e in ran if "batchId" not in e]
            assert [e["_id"] for e in alone] == [ObjectId(during["data"]["execute"]["id"])]
            assert alone[0]["attempts"] == 1, "ran once"
        assert resumed_s <= QUEUE_CHECK_S + 5
        await watch.client.close()
