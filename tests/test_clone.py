"""Dataset clone: a Command run by a real worker, resumable after the worker is killed."""

import asyncio
import hashlib
import signal
from collections import Counter
from datetime import timedelta

import pytest
from bson import ObjectId

from resolvers import files
from resolvers.clone import run_clone
from resolvers.timestamps import new_document
from resolvers.transactions import in_transaction
from tests.datasets_world import image_bytes, make_world
from tests.workers import start_worker, stop, worker_processes

CLONE = """mutation($id: ID!, $input: CloneDatasetInput!) {
  cloneDataset(datasetId: $id, input: $input) { id status progress input } }"""
COMMAND = "query($id: ID!) { command(id: $id) { status progress attempts error } }"
DATASET = """query($id: ID!) { dataset(id: $id) { name readonly itemsCount annotationsCount
  directories labels { name }
  items(first: 50) { nodes { name metadata annotations { label } } } } }"""
ADD_LABELS = "mutation($id: ID!, $l: JSON!) { addLabels(datasetId: $id, labels: $l) { id } }"
DELETE_ITEMS = "mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"
CREATE_MANY = "mutation($inputs: [AnnotationInput!]!) { createAnnotations(inputs: $inputs) { id } }"


async def _finished(db, command_id: ObjectId) -> dict:
    """Await the command's end through a change stream (opened before checking, so no race)."""
    async with await db.commands.watch(full_document="updateLookup") as changes:
        current = await db.commands.find_one({"_id": command_id})
        while current["status"] not in ("success", "failed"):
            current = (await changes.next())["fullDocument"]
        return current


async def test_clone_copies_items_annotations_metadata_and_shares_files(member, db, settings):
    world = await make_world(member)
    await world.client.data(ADD_LABELS, id=world.dataset, l=[{"name": "car"}])
    a = await world.upload("a.png", image_bytes("PNG", 4, 4), dir="/x/y", metadata={"k": 1})
    await world.upload("b.png", image_bytes("PNG", 5, 5))
    await world.client.data(
        CREATE_MANY, inputs=[{"itemId": a["id"], "type": "CLASSIFICATION", "label": "car"}] * 2
    )
    worker = start_worker(settings)
    try:
        started = await world.client.data(CLONE, id=world.dataset, input={"name": "copy"})
        command = started["cloneDataset"]
        assert command["status"] == "created"
        done = await _finished(db, ObjectId(command["id"]))
    finally:
        stop(worker)
    assert done["status"] == "success", done
    target = command["input"]["targetId"]
    data = (await world.client.data(DATASET, id=target))["dataset"]
    assert data["readonly"] is False
    assert (data["itemsCount"], data["annotationsCount"]) == (2, 2)
    assert data["directories"] == ["/", "/x", "/x/y"]
    assert data["labels"] == [{"name": "car"}]
    copied_a = next(i for i in data["items"]["nodes"] if i["name"] == "a.png")
    assert copied_a["metadata"]["user"] == {"k": 1}
    assert copied_a["annotations"] == [{"label": "car"}, {"label": "car"}]
    assert sorted(b["refs"] for b in await db.blobs.find().to_list()) == [2, 2]
    assert (await world.client.data(COMMAND, id=command["id"]))["command"] == {
        "status": "success",
        "progress": 100,
        "attempts": 1,
        "error": None,
    }


async def _seed_items(db, dataset_id: ObjectId, count: int) -> None:
    """Many items written directly (uploading 2,000 files would only slow the test down)."""
    dataset = await db.datasets.find_one({"_id": dataset_id})
    shas = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(10)]
    await db.blobs.insert_many(
        [{"_id": sha, "gridfsId": ObjectId(), "size": 1, "refs": 0} for sha in shas]
    )
    items = [
        new_document(
            None,
            orgId=dataset["orgId"],
            projectId=dataset["projectId"],
            datasetId=dataset_id,
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
        for n in range(count)
    ]
    await db.items.insert_many(items)
    for sha in shas:
        await db.blobs.update_one({"_id": sha}, {"$inc": {"refs": count // 10}})
    await db.datasets.update_one({"_id": dataset_id}, {"$set": {"itemsCount": count}})


async def test_clone_resumes_after_its_worker_is_killed_without_duplicates(member, db, settings):
    world = await make_world(member)
    source = ObjectId(world.dataset)
    await _seed_items(db, source, 2000)
    fast_recovery = {
        "LOOM_CLONE_BATCH_SIZE": "50",
        "LOOM_COMMAND_LEASE_S": "1",
        "LOOM_COMMAND_SWEEP_S": "0.2",
    }
    with worker_processes(settings, **fast_recovery) as start:
        first = start()
        async with await db.commands.watch(full_document="updateLookup") as changes:
            started = await world.client.data(CLONE, id=world.dataset, input={"name": "copy"})
            command_id = ObjectId(started["cloneDataset"]["id"])
            async for change in changes:
                progress = (change.get("fullDocument") or {}).get("progress", 0)
                if 0 < progress < 100:
                    first.send_signal(signal.SIGKILL)
                    first.wait()
                    break
        killed_at = await db.commands.find_one({"_id": command_id})
        assert killed_at["status"] == "inProgress"
        start()
        done = await _finished(db, command_id)
    assert done["status"] == "success", done
    assert done["attempts"] == 2
    target = done["input"]["targetId"]
    copies = await db.items.find({"datasetId": target}, {"clonedFrom": 1}).to_list()
    assert len(copies) == 2000
    assert len({c["clonedFrom"] for c in copies}) == 2000
    dataset = await db.datasets.find_one({"_id": target})
    assert dataset["itemsCount"] == 2000
    assert dataset["readonly"] is False
    assert {b["refs"] for b in await db.blobs.find().to_list()} == {400}


async def test_clone_of_another_orgs_dataset_is_not_found_and_starts_nothing(member, db):
    world = await make_world(member)
    stranger = await make_world(member, org="beta")
    code = await stranger.client.code(CLONE, id=world.dataset, input={"name": "stolen"})
    assert code == "NOT_FOUND"
    assert await db.commands.count_documents({}) == 0
    assert await db.datasets.count_documents({"name": "stolen"}) == 0


async def test_another_orgs_command_is_not_found(member):
    world = await make_world(member)
    started = await world.client.data(CLONE, id=world.dataset, input={"name": "copy"})
    command_id = started["cloneDataset"]["id"]
    stranger = await make_world(member, org="beta")
    assert await stranger.client.code(COMMAND, id=command_id) == "NOT_FOUND"
    assert (await world.client.data(COMMAND, id=command_id))["command"]["status"] == "created"


async def test_a_clone_racing_deletions_of_its_source_keeps_every_reference_exact(member, db):
    world = await make_world(member)
    uploaded = [
        await world.upload(f"{n}.png", image_bytes("PNG", 8, 8, (n, n, n))) for n in range(20)
    ]
    started = await world.client.data(CLONE, id=world.dataset, input={"name": "copy"})
    command = await db.commands.find_one({"_id": ObjectId(started["cloneDataset"]["id"])})
    target = ObjectId(started["cloneDataset"]["input"]["targetId"])

    await asyncio.gather(
        run_clone(db, command, 2, timedelta(seconds=60)),
        *(world.client.data(DELETE_ITEMS, d=world.dataset, ids=[item["id"]]) for item in uploaded),
    )

    references = Counter(item["sha256"] for item in await db.items.find().to_list())
    blobs = {blob["_id"]: blob["refs"] async for blob in db.blobs.find()}
    assert {sha: blobs.get(sha) for sha in references} == dict(references)
    assert await db.items.count_documents({"datasetId": target}) == len(references)


async def test_a_reference_to_content_that_is_gone_aborts_its_transaction(db):
    async def work(session) -> None:
        await db.items.insert_one({"name": "copy"}, session=session)
        await files.add_references(db, {"0" * 64: 1}, session)

    with pytest.raises(RuntimeError, match="gone"):
        await in_transaction(db, work)
    assert await db.items.count_documents({}) == 0
