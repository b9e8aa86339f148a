"""Batched claims through real worker processes: a killed worker's page of executions, a
service's concurrency across workers (watched on the change stream), and queues that are not
this database's."""

import asyncio
import signal
from collections.abc import Callable

import pytest
from bson import ObjectId

from tests.datasets_world import make_world
from tests.test_executions import FAST, _ended, _execute, _service, _until
from tests.workers import worker_processes
from triggers import execution_queue

PAGE = 6


async def _until_all(db, ids: list[str], accept: Callable[[dict], bool]) -> list[dict]:
    """Await a state of every execution in `ids`, through a change stream opened first."""
    wanted = [ObjectId(i) for i in ids]
    async with await db.executions.watch(full_document="updateLookup") as changes:
        current = {d["_id"]: d async for d in db.executions.find({"_id": {"$in": wanted}})}
        while not all(accept(current[i]) for i in wanted):
            change = await asyncio.wait_for(changes.next(), 60)
            key = change["documentKey"]["_id"]
            if key in current and change.get("fullDocument"):
                current[key] = change["fullDocument"]
        return [current[i] for i in wanted]


@pytest.mark.parametrize(
    ("on_reset", "final", "attempts"), [("rerun", "success", 2), ("failed", "failed", 1)]
)
async def test_a_killed_worker_holding_a_page_has_each_execution_rerun_once_or_failed(
    member, db, settings, on_reset, final, attempts
):
    world = await make_world(member)
    service = await _service(world, onReset=on_reset)
    ids = [await _execute(world, service, "sleeper", seconds=2, steps=2) for _ in range(PAGE)]
    with worker_processes(settings, **FAST) as start:
        first = start()
        held = await _until_all(db, ids, lambda d: d["status"] == "inProgress")
        first.send_signal(signal.SIGKILL)
        first.wait()
        start()
        done = await _until_all(db, ids, _ended)
    assert len({doc["worker"] for doc in held}) == 1
    assert len({doc["startedAt"] for doc in held}) == 1  # claimed together, in one write
    assert [doc["status"] for doc in done] == [final] * PAGE
    assert [doc["attempts"] for doc in done] == [attempts] * PAGE
    for doc in done:
        runs = [entry for entry in doc["statusLog"] if entry["status"] == "inProgress"]
        assert len(runs) == attempts
        assert runs[0]["message"] == f"on {held[0]['worker']}"
    assert await db.executions.count_documents({}) == PAGE
    assert await db.executions.count_documents({"status": "inProgress"}) == 0


async def test_a_service_with_concurrency_3_never_runs_more_than_3_across_two_workers(
    member, db, settings
):
    world = await make_world(member)
    service = await _service(world, concurrency=3)
    ids = [await _execute(world, service, "sleeper", seconds=0.3, steps=1) for _ in range(12)]
    running: set[ObjectId] = set()
    most, workers = 0, set()
    # Post-images are the documents as each change left them, in commit order: the set of
    # running executions after each event is exactly what ran at that moment.
    async with await db.executions.watch(full_document="required") as changes:
        with worker_processes(settings, **FAST, LOOM_WORKER_MAX_JOBS="2") as start:
            start(), start()
            finished = 0
            while finished < len(ids):
                change = await asyncio.wait_for(changes.next(), 60)
                doc = change["fullDocument"]
                if doc["status"] == "inProgress":
                    running.add(doc["_id"])
                    workers.add(doc["worker"])
                elif doc["_id"] in running:
                    running.discard(doc["_id"])
                most = max(most, len(running))
                finished += _ended(doc)
    assert most == 3
    assert len(workers) == 2
    statuses = {d["status"] async for d in db.executions.find({}, {"status": 1})}
    assert statuses == {"success"}


async def test_a_worker_leaves_the_queued_executions_of_another_deployment_alone(
    member, db, redis, settings
):
    theirs = {"_id": ObjectId(), "serviceId": ObjectId()}  # a service of another database
    await execution_queue.push(redis, [theirs])
    world = await make_world(member)
    service = await _service(world)
    first = await _execute(world, service, "echo")
    with worker_processes(settings, **FAST) as start:
        start()
        # the worker's first round looks at both services; the second execution is claimed in
        # a later round, once the first round is over
        await _until(db, first, _ended)
        second = await _execute(world, service, "echo")
        await _until(db, second, _ended)
    queue = execution_queue.service_key(theirs["serviceId"])
    assert await redis.zscore(queue, str(theirs["_id"])) is not None
    assert await redis.sismember(execution_queue.READY, str(theirs["serviceId"]))
    await execution_queue.drop_service(redis, theirs["serviceId"])
