"""Services and executions through real worker processes: outcomes, progress, termination,
timeouts, reruns, killed workers and a flushed Redis."""

import asyncio
import itertools
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from resolvers import execution_runs
from tests.datasets_world import image_bytes, make_world
from tests.logged_workers import LoggedWorkers
from tests.snapshots import snapshot
from tests.waiting import eventually
from tests.workers import start_worker, stop, worker_processes
from triggers import execution_queue
from triggers.executions import requeue_waiting

CREATE_SERVICE = """mutation($p: ID!, $input: ServiceInput!) {
  createService(projectId: $p, input: $input) { id name functions onReset } }"""
EXECUTE = """mutation($s: ID!, $input: ExecuteInput!) {
  execute(serviceId: $s, input: $input) { id status attempts } }"""
EXECUTION = """query($id: ID!) { execution(id: $id) { status output error attempts duration
  progress logs statusLog { status message } } }"""
TERMINATE = "mutation($id: ID!) { terminateExecution(id: $id) { status } }"
RERUN = "mutation($id: ID!) { rerunExecution(id: $id) { status } }"
FAST = {"LOOM_EXECUTION_LEASE_S": "1", "LOOM_REAPER_INTERVAL_S": "0.2"}


async def _service(world, **policy: Any) -> str:
    service = {"name": "tools", "functions": ["echo", "sleeper", "fail"], **policy}
    created = await world.client.data(CREATE_SERVICE, p=world.project, input=service)
    return created["createService"]["id"]


async def _execute(world, service: str, function: str, **execution_input: Any) -> str:
    started = await world.client.data(
        EXECUTE, s=service, input={"function": function, "input": execution_input}
    )
    assert started["execute"]["status"] == "created"
    return started["execute"]["id"]


async def _until(db, execution_id: str, accept: Callable[[dict], bool]) -> dict:
    """Await a state of the execution through a change stream opened before looking."""
    async with await db.executions.watch(full_document="updateLookup") as changes:
        current = await db.executions.find_one({"_id": ObjectId(execution_id)})
        while not accept(current):
            change = await changes.next()
            if change["documentKey"]["_id"] == ObjectId(execution_id):
                current = change["fullDocument"]
        return current


async def _slots_freed(db, service: str) -> None:
    """Wait, before the worker stops, until no slot of the service is held (a slot is held by
    its running execution, and freed by the write that ends it)."""

    async def held() -> list:
        running = {"serviceId": ObjectId(service), "status": "inProgress"}
        return await db.executions.distinct("slot", running)

    await eventually(held, lambda slots: slots == [], within_s=10)


def _ended(doc: dict) -> bool:
    return doc["status"] in ("success", "failed", "terminated", "aborted")


@pytest.fixture
def worker(settings):
    process = start_worker(settings, **FAST)
    yield process
    stop(process)


async def test_functions_lists_the_registered_builtins(member):
    world = await make_world(member)
    data = await world.client.data("{ functions { name inputSchema } }")
    names = [f["name"] for f in data["functions"]]
    assert names == ["detect-colour-regions", "echo", "fail", "sleeper"]
    sleeper = next(f for f in data["functions"] if f["name"] == "sleeper")
    assert set(sleeper["inputSchema"]["properties"]) == {"seconds", "steps"}


@pytest.mark.parametrize("function", ["os:system", "unknown", "triggers.builtins:echo"])
async def test_services_may_name_only_registered_functions(member, db, function):
    world = await make_world(member)
    before = await snapshot(db)
    error = await world.client.error(
        CREATE_SERVICE, p=world.project, input={"name": "evil", "functions": [function]}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_bad_execution_input_is_refused_before_anything_is_queued(member, db):
    world = await make_world(member)
    service = await _service(world)
    before = await snapshot(db)
    bad = {"function": "sleeper", "input": {"seconds": -1}}
    assert await world.client.code(EXECUTE, s=service, input=bad) == "BAD_USER_INPUT"
    missing = {"function": "nope", "input": {}}
    assert await world.client.code(EXECUTE, s=service, input=missing) == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_echo_succeeds_with_its_input_as_output(member, db, worker):
    world = await make_world(member)
    service = await _service(world)
    execution = await _execute(world, service, "echo", answer=42)
    done = await _until(db, execution, _ended)
    assert done["status"] == "success"
    data = (await world.client.data(EXECUTION, id=execution))["execution"]
    assert data["output"] == {"answer": 42}
    assert [s["status"] for s in data["statusLog"]] == ["created", "inProgress", "success"]
    assert data["attempts"] == 1
    assert data["duration"] >= 0
    assert data["logs"] == ["INFO echoing 1 keys"]


async def test_failure_is_recorded_with_the_error_message_and_logs(member, db, worker):
    world = await make_world(member)
    service = await _service(world)
    execution = await _execute(world, service, "fail", message="disk full")
    done = await _until(db, execution, _ended)
    assert done["status"] == "failed"
    assert done["error"] == "RuntimeError: disk full"
    assert done["logs"] == ["WARNING about to fail"]


async def test_progress_updates_are_stored_as_they_happen(member, db, worker):
    world = await make_world(member)
    service = await _service(world)
    seen: list[int] = []
    async with await db.executions.watch(full_document="updateLookup") as changes:
        execution = await _execute(world, service, "sleeper", seconds=0.4, steps=4)
        async for change in changes:
            doc = change.get("fullDocument") or {}
            percent = doc.get("progress", {}).get("percent")
            if percent is not None and (not seen or seen[-1] != percent):
                seen.append(percent)
            if doc.get("status") == "success":
                break
    assert [p for p in seen if p not in (0,)][:4] == [25, 50, 75, 100]
    assert (await world.client.data(EXECUTION, id=execution))["execution"]["progress"] == {
        "percent": 100,
        "message": "done",
    }


async def test_terminate_stops_a_running_execution(member, db, worker):
    world = await make_world(member)
    service = await _service(world)
    execution = await _execute(world, service, "sleeper", seconds=60, steps=60)
    await _until(db, execution, lambda d: d["status"] == "inProgress")
    assert (await world.client.data(TERMINATE, id=execution))["terminateExecution"]
    done = await _until(db, execution, _ended)
    assert done["status"] == "terminated"
    assert done["duration"] < 30


async def test_terminating_a_queued_execution_is_immediate_and_it_never_runs(member, db):
    world = await make_world(member)
    service = await _service(world)
    execution = await _execute(world, service, "echo")
    data = await world.client.data(TERMINATE, id=execution)
    assert data["terminateExecution"]["status"] == "terminated"
    assert await world.client.code(TERMINATE, id=execution) == "CONFLICT"


async def test_timeout_fails_the_execution_with_the_reason(member, db, worker):
    world = await make_world(member)
    service = await _service(world, executionTimeout=1)
    execution = await _execute(world, service, "sleeper", seconds=30, steps=30)
    done = await _until(db, execution, _ended)
    assert done["status"] == "failed"
    assert done["error"] == "timed out after 1 s"


async def test_rerun_runs_a_finished_execution_again_as_its_next_attempt(member, db, worker):
    world = await make_world(member)
    service = await _service(world)
    execution = await _execute(world, service, "echo", n=1)
    await _until(db, execution, _ended)
    assert (await world.client.data(RERUN, id=execution))["rerunExecution"]["status"] == "created"
    done = await _until(db, execution, lambda d: _ended(d) and d["attempts"] == 2)
    assert done["status"] == "success"
    assert [s["status"] for s in done["statusLog"]] == [
        "created",
        "inProgress",
        "success",
        "created",
        "inProgress",
        "success",
    ]


@pytest.mark.parametrize(("on_reset", "final"), [("rerun", "success"), ("failed", "failed")])
async def test_killed_worker_execution_is_rerun_or_failed_by_its_service_policy(
    member, db, settings, on_reset, final
):
    world = await make_world(member)
    service = await _service(world, onReset=on_reset)
    with worker_processes(settings, **FAST) as start:
        first = start()
        execution = await _execute(world, service, "sleeper", seconds=1.5, steps=3)
        await _until(db, execution, lambda d: d["status"] == "inProgress")
        first.send_signal(signal.SIGKILL)
        first.wait()
        start()
        done = await _until(db, execution, _ended)
    assert done["status"] == final
    assert done["attempts"] == (2 if on_reset == "rerun" else 1)
    assert await db.executions.count_documents({"status": "inProgress"}) == 0


async def test_a_stopping_worker_hands_its_running_execution_back_without_losing_an_attempt(
    member, db, settings, tmp_path
):
    world = await make_world(member)
    service = await _service(world, onReset="failed")
    with LoggedWorkers(settings, tmp_path, **FAST) as workers:
        first = workers.start()
        execution = await _execute(world, service, "sleeper", seconds=4, steps=4)
        await _until(db, execution, lambda d: d["status"] == "inProgress")
        stopping = asyncio.create_task(workers.stop(first, signal.SIGTERM))
        handed = await asyncio.wait_for(
            _until(db, execution, lambda d: d["status"] == "created"), 30
        )
        await stopping
        assert first.returncode == 0
        workers.start()
        done = await asyncio.wait_for(_until(db, execution, _ended), 30)
        await _slots_freed(db, service)
    assert handed["attempts"] == 0
    assert handed["statusLog"][-1]["message"].endswith(" stopped")
    assert done["status"] == "success"
    assert done["attempts"] == 1
    assert [s["status"] for s in done["statusLog"]] == [
        "created",
        "inProgress",
        "created",
        "inProgress",
        "success",
    ]


async def test_executions_queued_before_redis_was_flushed_all_complete(member, db, redis, settings):
    world = await make_world(member)
    service = await _service(world)
    queued = [await _execute(world, service, "echo", n=n) for n in range(5)]
    await redis.flushdb()
    process = start_worker(settings, **FAST)
    try:
        done = await asyncio.gather(*(_until(db, e, _ended) for e in queued))
    finally:
        stop(process)
    assert [d["status"] for d in done] == ["success"] * 5
    assert [d["output"] for d in done] == [{"n": n} for n in range(5)]


async def test_a_quiet_waiting_execution_whose_queue_entry_redis_lost_is_queued_once_again(
    member, db, redis, settings
):
    world = await make_world(member)
    service = await _service(world)
    lost, popped, kept = [await _execute(world, service, "echo", n=n) for n in range(3)]
    queue = execution_queue.service_key(service)
    await redis.zrem(queue, lost)  # Redis lost it
    await redis.zrem(queue, popped)  # a worker took it and died before claiming it
    kept_score = await redis.zscore(queue, kept)
    ctx = {"db": db, "redis": redis, "settings": settings}

    await requeue_waiting(ctx, unchanged_for=timedelta(minutes=5))
    assert await redis.zscore(queue, lost) is None
    assert await redis.zscore(queue, popped) is None

    await requeue_waiting(ctx, unchanged_for=timedelta(0))
    assert await redis.zscore(queue, lost) is not None
    assert await redis.zscore(queue, popped) is not None
    assert await redis.zscore(queue, kept) == kept_score
    assert await redis.zcard(queue) == 3
    assert await redis.sismember(execution_queue.READY, service)


async def test_another_orgs_services_and_executions_are_not_found(member, db):
    world = await make_world(member)
    service = await _service(world)
    execution = await _execute(world, service, "echo")
    stranger = await make_world(member, org="beta")
    before = await snapshot(db)
    assert await stranger.client.code(EXECUTION, id=execution) == "NOT_FOUND"
    assert await stranger.client.code(TERMINATE, id=execution) == "NOT_FOUND"
    assert await stranger.client.code(RERUN, id=execution) == "NOT_FOUND"
    assert await stranger.client.code(EXECUTE, s=service, input={"function": "echo"}) == (
        "NOT_FOUND"
    )
    query = '{ node(id: "%s") { id } }'
    assert (await stranger.client.data(query % execution))["node"] is None
    assert await snapshot(db) == before


async def test_service_concurrency_bounds_running_executions_across_workers(member, db, settings):
    world = await make_world(member)
    service = await _service(world, concurrency=1)
    workers = [start_worker(settings, **FAST) for _ in range(2)]
    try:
        started = [
            await _execute(world, service, "sleeper", seconds=0.3, steps=1) for _ in range(3)
        ]
        done = [await _until(db, e, _ended) for e in started]
        await _slots_freed(db, service)
    finally:
        for process in workers:
            stop(process)
    assert [d["status"] for d in done] == ["success"] * 3
    runs = sorted(
        (
            next(s["time"] for s in d["statusLog"] if s["status"] == "inProgress"),
            next(s["time"] for s in d["statusLog"] if s["status"] == "success"),
        )
        for d in done
    )
    for (_, first_end), (second_start, _) in itertools.pairwise(runs):
        assert second_start >= first_end


async def test_a_dead_workers_slot_is_held_until_its_run_is_reaped(member, db):
    world = await make_world(member)
    service = ObjectId(await _service(world, concurrency=1))
    first, second = [ObjectId(await _execute(world, str(service), "echo", n=n)) for n in range(2)]
    waiting = await execution_runs.waiting_among(db, [first, second])
    lapsed, lease = timedelta(seconds=-1), timedelta(seconds=30)
    runs, _ = await execution_runs.claim(db, waiting[:1], [0], "dead-worker", lapsed)
    assert [run["_id"] for run in runs] == [first]
    assert (await execution_runs.service_state(db, service))["running"] == {0}

    runs, refused = await execution_runs.claim(db, waiting[1:], [0], "live-worker", lease)
    assert (runs, [e["_id"] for e in refused]) == ([], [second])

    assert [e["_id"] for e in await execution_runs.reap(db)] == [first]
    assert (await execution_runs.service_state(db, service))["running"] == set()
    runs, refused = await execution_runs.claim(db, waiting[1:], [0], "live-worker", lease)
    assert ([run["_id"] for run in runs], refused) == ([second], [])


async def test_two_workers_claiming_one_execution_leave_only_the_winners_slot(member, db):
    world = await make_world(member)
    service = ObjectId(await _service(world, concurrency=5))
    execution = ObjectId(await _execute(world, str(service), "echo"))
    lease = timedelta(seconds=30)
    waiting = await execution_runs.waiting_among(db, [execution])
    claims = await asyncio.gather(
        *(execution_runs.claim(db, waiting, [n], f"worker-{n}", lease) for n in range(2))
    )
    winners = [run for runs, _ in claims for run in runs]
    assert len(winners) == 1
    running = await db.executions.find({"serviceId": service, "status": "inProgress"}).to_list()
    assert [(doc["_id"], doc["slot"], doc["claim"]) for doc in running] == [
        (execution, winners[0]["slot"], winners[0]["claim"])
    ]
    assert (await execution_runs.service_state(db, service))["running"] == {winners[0]["slot"]}


SERVICE_EXECUTIONS = """query($s: ID!, $filter: JSON, $statuses: [String!]) {
  service(id: $s) { executions(filter: $filter, statuses: $statuses, first: 10) {
    totalCount nodes { id } } } }"""
PROJECT_EXECUTIONS = """query($p: ID!, $filter: JSON) {
  project(id: $p) { executions(filter: $filter, first: 10) { totalCount nodes { id } } } }"""


async def test_service_and_project_executions_filter_with_dql_over_executions(member, db):
    world = await make_world(member)
    service = await _service(world)
    made = [await _execute(world, service, "echo", n=n) for n in range(5)]
    await db.executions.update_one({"_id": ObjectId(made[4])}, {"$set": {"status": "failed"}})

    async def ids(query: str, **variables: Any) -> set[str]:
        data = await world.client.data(query, **variables)
        connection = next(iter(data.values()))["executions"]
        assert connection["totalCount"] == len(connection["nodes"])
        return {node["id"] for node in connection["nodes"]}

    big = {"input.n": {"$gte": 2}}
    assert await ids(SERVICE_EXECUTIONS, s=service, filter=big) == set(made[2:])
    assert await ids(SERVICE_EXECUTIONS, s=service, filter=big, statuses=["created"]) == set(
        made[2:4]
    )
    either = {"$or": [{"id": made[0]}, {"status": "failed"}]}
    assert await ids(PROJECT_EXECUTIONS, p=world.project, filter=either) == {made[0], made[4]}
    error = await world.client.error(SERVICE_EXECUTIONS, s=service, filter={"metadata.x": 1})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Unknown field 'metadata.x' for executions" in error["message"]


async def test_filtering_executions_by_another_orgs_ids_finds_nothing(member, db):
    a = await make_world(member)
    a_service = await _service(a)
    a_execution = await _execute(a, a_service, "echo")
    b = await make_world(member, org="beta")
    await _execute(b, await _service(b), "echo")
    for filter_ in (
        {"projectId": a.project},
        {"serviceId": a_service},
        {"id": a_execution},
        {"$or": [{"projectId": a.project}, {"status": {"$exists": True}}]},
    ):
        data = await b.client.data(PROJECT_EXECUTIONS, p=b.project, filter=filter_)
        assert a_execution not in {n["id"] for n in data["project"]["executions"]["nodes"]}
    assert await b.client.code(SERVICE_EXECUTIONS, s=a_service, filter={}) == "NOT_FOUND"


DEACTIVATE = """mutation($id: ID!) { updateService(id: $id, input: {active: false}) { active } }"""
REACTIVATE = """mutation($id: ID!) { updateService(id: $id, input: {active: true}) { active } }"""
DELETE_ITEMS = "mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"


async def test_queued_executions_of_a_deactivated_service_are_aborted_and_can_be_rerun(
    member, db, settings
):
    world = await make_world(member)
    service = await _service(world)
    queued = [await _execute(world, service, "echo", n=n) for n in range(2)]
    await world.client.data(DEACTIVATE, id=service)
    process = start_worker(settings, **FAST)
    try:
        aborted = [await _until(db, execution, _ended) for execution in queued]
        assert await world.client.code(RERUN, id=queued[0]) == "CONFLICT"
        await world.client.data(REACTIVATE, id=service)
        await world.client.data(RERUN, id=queued[0])
        again = await _until(db, queued[0], lambda d: d["status"] == "success")
        await _slots_freed(db, service)
    finally:
        stop(process)
    for doc in aborted:
        assert doc["status"] == "aborted"
        assert doc["error"] == "its service was deactivated before it started"
        assert [s["status"] for s in doc["statusLog"]] == ["created", "aborted"]
        assert doc["attempts"] == 0
    assert again["output"] == {"n": 0}


async def test_an_execution_whose_item_was_deleted_before_it_ran_is_aborted(member, db, settings):
    world = await make_world(member)
    service = await _service(world)
    item = (await world.upload("gone.png", image_bytes("PNG", 4, 4)))["id"]
    started = await world.client.data(
        EXECUTE, s=service, input={"function": "echo", "input": {}, "itemId": item}
    )
    execution = started["execute"]["id"]
    await world.client.data(DELETE_ITEMS, d=world.dataset, ids=[item])
    process = start_worker(settings, **FAST)
    try:
        done = await _until(db, execution, _ended)
        await _slots_freed(db, service)
    finally:
        stop(process)
    assert done["status"] == "aborted"
    assert done["error"] == f"its item {item} was deleted before it started"
    assert done["output"] is None


async def test_an_execution_whose_service_vanished_while_it_waited_is_aborted(member, db, settings):
    world = await make_world(member)
    service = await _service(world)
    execution = await _execute(world, service, "echo")
    await db.services.delete_one({"_id": ObjectId(service)})  # as a delete racing the execute
    process = start_worker(settings, **FAST)
    try:
        done = await asyncio.wait_for(_until(db, execution, _ended), 60)
    finally:
        stop(process)
    assert done["status"] == "aborted"
    assert done["error"] == "its service was deleted before it started"


async def test_a_termination_requested_before_its_worker_stops_ends_terminated_not_rerun(
    member, db, settings, tmp_path
):
    world = await make_world(member)
    service = await _service(world)
    with LoggedWorkers(settings, tmp_path, **FAST) as workers:
        first = workers.start()
        execution = await _execute(world, service, "sleeper", seconds=30, steps=30)
        await _until(db, execution, lambda d: d["status"] == "inProgress")
        await world.client.data(TERMINATE, id=execution)
        await workers.stop(first, signal.SIGTERM)
        assert first.returncode == 0
        workers.start()
        done = await asyncio.wait_for(_until(db, execution, _ended), 30)
        await _slots_freed(db, service)
    assert done["status"] == "terminated"
    assert [s["status"] for s in done["statusLog"]].count("inProgress") == 1
