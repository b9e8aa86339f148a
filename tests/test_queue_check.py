"""No waiting execution is stranded by what Redis lost: one Redis never had (a push that
failed, an id popped by a worker that died) is queued again within `LOOM_QUEUE_CHECK_S`, and
every waiting one at once when Redis comes back empty."""

import time

from bson import ObjectId

from resolvers.executions import new_execution
from tests.datasets_world import make_world
from tests.test_executions import CREATE_SERVICE, FAST
from tests.waiting import eventually
from tests.workers import worker_processes

QUEUE_CHECK_S = 2.0


async def _unqueued_execution(member, db) -> ObjectId:
    """An execution MongoDB holds as `created` that was never put in Redis."""
    world = await make_world(member)
    service = {"name": "tools", "functions": ["echo"]}
    created = await world.client.data(CREATE_SERVICE, p=world.project, input=service)
    service_doc = await db.services.find_one({"_id": ObjectId(created["createService"]["id"])})
    doc = new_execution(service_doc["creator"], service_doc, "echo", {}, None)
    await db.executions.insert_one(doc)
    return doc["_id"]


async def _registered(db) -> None:
    await eventually(lambda: db.workers.count_documents({}), lambda n: n >= 1)


async def _status(db, execution_id: ObjectId) -> str:
    return (await db.executions.find_one({"_id": execution_id}))["status"]


async def test_an_execution_redis_never_had_runs_within_the_queue_check(member, db, settings):
    with worker_processes(settings, **FAST, LOOM_QUEUE_CHECK_S=str(QUEUE_CHECK_S)) as start:
        start()
        await _registered(db)
        execution = await _unqueued_execution(member, db)
        inserted = time.monotonic()
        await eventually(lambda: _status(db, execution), lambda s: s == "success", 30)
        waited = time.monotonic() - inserted
    assert waited <= QUEUE_CHECK_S + 1.0, waited


async def test_redis_found_empty_gets_every_waiting_execution_queued_at_once(
    member, db, settings, redis
):
    with worker_processes(settings, **FAST, LOOM_QUEUE_CHECK_S="300") as start:
        start()
        await _registered(db)
        execution = await _unqueued_execution(member, db)
        await redis.flushall()
        await eventually(lambda: _status(db, execution), lambda s: s == "success", 10)
