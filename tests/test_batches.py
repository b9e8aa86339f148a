"""Batch executions over a DQL filter and batch reruns, carried out by a real worker."""

import asyncio

from bson import ObjectId

from tests.datasets_world import image_bytes, make_world
from tests.snapshots import snapshot
from tests.test_clone import _finished, _seed_items
from tests.test_executions import CREATE_SERVICE, FAST
from tests.workers import start_worker, stop

EXECUTE_BATCH = """mutation($s: ID!, $input: BatchInput!) {
  executeBatch(serviceId: $s, input: $input) { id status type } }"""
RERUN_BATCH = """mutation($p: ID!, $statuses: [String!]!) {
  rerunBatch(projectId: $p, statuses: $statuses) { id } }"""
COUNTS = """query($p: ID!) { project(id: $p) { executionCounts { status count }
  executions(first: 3) { totalCount nodes { status function } } } }"""


async def _service(world, functions=("echo", "fail")) -> str:
    service = {"name": "batch", "functions": list(functions)}
    created = await world.client.data(CREATE_SERVICE, p=world.project, input=service)
    return created["createService"]["id"]


async def _all_ended(db, count: int) -> None:
    async with await db.executions.watch() as changes:
        while await db.executions.count_documents({"status": {"$in": ["success", "failed"]}}) < (
            count
        ):
            await changes.next()


async def test_batch_runs_the_function_on_every_matching_item(member, db, settings):
    world = await make_world(member)
    for n in range(6):
        await world.upload(f"{n}.png", image_bytes("PNG", 4 + n, 4), dir="/a" if n % 2 else "/b")
    service = await _service(world)
    worker = start_worker(settings, **FAST, LOOM_BATCH_PAGE_SIZE="2")
    try:
        started = await world.client.data(
            EXECUTE_BATCH,
            s=service,
            input={"function": "echo", "filter": {"dir": "/a"}, "input": {"tag": "x"}},
        )
        command = await _finished(db, ObjectId(started["executeBatch"]["id"]))
        assert command["status"] == "success"
        await _all_ended(db, 3)
    finally:
        stop(worker)
    executions = await db.executions.find().to_list()
    items = {i["_id"] for i in await db.items.find({"dir": "/a"}).to_list()}
    assert {e["resource"]["id"] for e in executions} == items
    assert {e["status"] for e in executions} == {"success"}
    assert {e["output"]["tag"] for e in executions} == {"x"}
    counts = (await world.client.data(COUNTS, p=world.project))["project"]
    assert counts["executionCounts"] == [{"status": "success", "count": 3}]
    assert counts["executions"]["totalCount"] == 3


async def test_batch_with_a_bad_filter_or_input_starts_nothing(member, db):
    world = await make_world(member)
    service = await _service(world)
    before = await snapshot(db)
    for bad in (
        {"function": "echo", "filter": {"$where": "1"}},
        {"function": "fail", "input": {"message": 5}},
        {"function": "sleeper"},
    ):
        error = await world.client.error(EXECUTE_BATCH, s=service, input=bad)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_rerun_batch_reruns_the_failed_executions(member, db, settings):
    world = await make_world(member)
    await _seed_items(db, ObjectId(world.dataset), 20)
    service = await _service(world)
    worker = start_worker(settings, **FAST)
    try:
        started = await world.client.data(
            EXECUTE_BATCH, s=service, input={"function": "fail", "filter": {}}
        )
        await _finished(db, ObjectId(started["executeBatch"]["id"]))
        await _all_ended(db, 20)
        rerun = await world.client.data(RERUN_BATCH, p=world.project, statuses=["failed"])
        await _finished(db, ObjectId(rerun["rerunBatch"]["id"]))
        async with await db.executions.watch() as changes:
            while await db.executions.count_documents({"attempts": 2, "status": "failed"}) < 20:
                await asyncio.wait_for(changes.next(), 30)
    finally:
        stop(worker)
    assert await db.executions.count_documents({}) == 20


async def test_batches_on_another_orgs_service_are_not_found(member, db):
    world = await make_world(member)
    service = await _service(world)
    stranger = await make_world(member, org="beta")
    before = await snapshot(db)
    code = await stranger.client.code(EXECUTE_BATCH, s=service, input={"function": "echo"})
    assert code == "NOT_FOUND"
    code = await stranger.client.code(RERUN_BATCH, p=world.project, statuses=["failed"])
    assert code == "NOT_FOUND"
    assert await stranger.client.code(COUNTS, p=world.project) == "NOT_FOUND"
    assert await snapshot(db) == before


RERUN_MATCHING = """mutation($p: ID!, $statuses: [String!], $filter: JSON) {
  rerunBatch(projectId: $p, statuses: $statuses, filter: $filter) { id } }"""


async def test_rerun_batch_reruns_only_the_executions_its_dql_filter_matches(member, db, settings):
    world = await make_world(member)
    await _seed_items(db, ObjectId(world.dataset), 12)
    service = await _service(world)
    worker = start_worker(settings, **FAST, LOOM_BATCH_PAGE_SIZE="2")
    try:
        started = await world.client.data(
            EXECUTE_BATCH, s=service, input={"function": "fail", "filter": {}}
        )
        await _finished(db, ObjectId(started["executeBatch"]["id"]))
        await _all_ended(db, 12)
        chosen = [str(i["_id"]) for i in await db.items.find().sort("_id", 1).to_list()][:5]
        rerun = await world.client.data(
            RERUN_MATCHING, p=world.project, filter={"resource.id": {"$in": chosen}}
        )
        command = await _finished(db, ObjectId(rerun["rerunBatch"]["id"]))
        async with await db.executions.watch() as changes:
            while await db.executions.count_documents({"attempts": 2, "status": "failed"}) < 5:
                await asyncio.wait_for(changes.next(), 30)
    finally:
        stop(worker)
    assert command["status"] == "success"
    again = await db.executions.find({"attempts": 2}).to_list()
    assert sorted(str(e["resource"]["id"]) for e in again) == chosen
    assert await db.executions.count_documents({"attempts": 1, "status": "failed"}) == 7


async def test_rerun_batch_refuses_unfinished_statuses_and_bad_filters_and_starts_nothing(
    member, db
):
    world = await make_world(member)
    before = await snapshot(db)
    for variables in (
        {"statuses": ["failed", "inProgress"]},
        {"filter": {"$where": "1"}},
        {"filter": {"metadata.x": 1}},
    ):
        error = await world.client.error(RERUN_MATCHING, p=world.project, **variables)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert await snapshot(db) == before


async def test_a_rerun_filter_naming_another_orgs_executions_reruns_none_of_them(
    member, db, settings
):
    world = await make_world(member)
    await _seed_items(db, ObjectId(world.dataset), 3)
    stranger = await make_world(member, org="beta")
    worker = start_worker(settings, **FAST)
    try:
        started = await world.client.data(
            EXECUTE_BATCH, s=await _service(world), input={"function": "fail", "filter": {}}
        )
        await _finished(db, ObjectId(started["executeBatch"]["id"]))
        await _all_ended(db, 3)
        theirs = [str(e["_id"]) for e in await db.executions.find().to_list()]
        before = await snapshot(db)
        for filter_ in ({"id": {"$in": theirs}}, {"projectId": world.project}):
            rerun = await stranger.client.data(RERUN_MATCHING, p=stranger.project, filter=filter_)
            command = await _finished(db, ObjectId(rerun["rerunBatch"]["id"]))
            assert command["status"] == "success"
    finally:
        stop(worker)
    assert await db.executions.find().sort("_id").to_list() == before["executions"]


async def test_batch_with_a_dql_join_runs_only_on_items_with_a_matching_annotation(
    member, db, settings
):
    world = await make_world(member)
    uploaded = [await world.upload(f"{n}.png", image_bytes("PNG", 4 + n, 4)) for n in range(4)]
    ids = [ObjectId(item["id"]) for item in uploaded]
    await db.annotations.insert_many(
        [
            {"itemId": ids[0], "label": "car", "projectId": ObjectId(world.project)},
            {"itemId": ids[1], "label": "bus", "projectId": ObjectId(world.project)},
            {"itemId": ids[2], "label": "car", "projectId": ObjectId(world.project)},
        ]
    )
    dtlpy_query = {
        "resource": "items",
        "filter": {"$and": [{"hidden": False}]},
        "join": {
            "on": {"resource": "annotations", "local": "itemId", "forigen": "id"},
            "filter": {"label": "car"},
        },
        "page": 0,
        "pageSize": 1,
    }
    service = await _service(world)
    worker = start_worker(settings, **FAST, LOOM_BATCH_PAGE_SIZE="3")
    try:
        started = await world.client.data(
            EXECUTE_BATCH, s=service, input={"function": "echo", "filter": dtlpy_query}
        )
        command = await _finished(db, ObjectId(started["executeBatch"]["id"]))
        assert command["status"] == "success", command
        await _all_ended(db, 2)
    finally:
        stop(worker)
    executions = await db.executions.find().to_list()
    assert sorted(e["resource"]["id"] for e in executions) == [ids[0], ids[2]], (
        "the join is honoured; page and pageSize are not (a batch runs on every match)"
    )
