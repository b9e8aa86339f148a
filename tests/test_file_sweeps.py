"""The workers' sweep of what a crash left in file storage, and the loops that run it."""

import asyncio
import io
from datetime import timedelta

from bson import ObjectId
from pymongo import monitoring

from resolvers import files
from resolvers.timestamps import now
from tests.command_monitoring import StartedCommands, listening_client
from tests.datasets_world import image_bytes, make_world
from triggers.file_sweeps import BEGINNING, sweep_files
from triggers.periodic import every


def _ctx(db, settings, grace_s: float) -> dict:
    return {"db": db, "settings": settings.model_copy(update={"file_sweep_grace_s": grace_s})}


async def test_a_sweep_deletes_unreferenced_blobs_and_their_content_and_keeps_the_rest(
    member, db, settings, http
):
    world = await make_world(member)
    lost = await world.upload("lost.png", image_bytes("PNG", 8, 8, (1, 2, 3)))
    kept = await world.upload("kept.png", image_bytes("PNG", 8, 8, (4, 5, 6)))
    lost_blob = await db.blobs.find_one({"_id": lost["sha256"]})
    # A crash right after the commit that deleted the item, before its content was collected:
    await db.items.delete_one({"_id": ObjectId(lost["id"])})
    await db.blobs.update_one({"_id": lost["sha256"]}, {"$inc": {"refs": -1}})

    await sweep_files(_ctx(db, settings, grace_s=3600))

    assert await db.blobs.find_one({"_id": lost["sha256"]}) is None
    assert await db["files.files"].find_one({"_id": lost_blob["gridfsId"]}) is None
    assert await db["files.chunks"].count_documents({"files_id": lost_blob["gridfsId"]}) == 0
    assert (await db.blobs.find_one({"_id": kept["sha256"]}))["refs"] == 1
    download = await http.get(
        f"/items/{kept['id']}/file", headers={"Authorization": f"Bearer {world.client.key}"}
    )
    assert download.content == image_bytes("PNG", 8, 8, (4, 5, 6))


async def test_a_sweep_deletes_copies_no_blob_points_to_once_they_are_older_than_the_grace(
    member, db, settings
):
    world = await make_world(member)
    kept = await world.upload("kept.png", image_bytes("PNG", 8, 8))
    kept_copy = (await db.blobs.find_one({"_id": kept["sha256"]}))["gridfsId"]
    # A crash between writing an upload and the transaction that references or discards it:
    orphan = await files.write(db, io.BytesIO(b"half an upload"), "orphan.bin")

    await sweep_files(_ctx(db, settings, grace_s=3600))
    assert await db["files.files"].find_one({"_id": orphan.gridfs_id}) is not None

    await sweep_files(_ctx(db, settings, grace_s=0))
    assert await db["files.files"].find_one({"_id": orphan.gridfs_id}) is None
    assert await db["files.chunks"].count_documents({"files_id": orphan.gridfs_id}) == 0
    assert await db["files.files"].find_one({"_id": kept_copy}) is not None


async def test_a_background_round_that_fails_does_not_end_its_loop():
    rounds: list[int] = []
    third = asyncio.Event()

    async def flaky() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 3:
            third.set()
        if len(rounds) < 3:
            raise ConnectionError("MongoDB is failing over")

    loop = asyncio.create_task(every(0, "flaky", flaky))
    try:
        await asyncio.wait_for(third.wait(), 10)
    finally:
        loop.cancel()
    assert rounds[:3] == [0, 1, 2]


async def test_once_a_day_a_sweep_looks_at_every_copy_again(member, db, settings):
    world = await make_world(member)
    item = await world.upload("gone.png", image_bytes("PNG", 8, 8))
    blob = await db.blobs.find_one({"_id": item["sha256"]})
    await sweep_files(_ctx(db, settings, grace_s=0))  # the watermark passes the copy
    # A crash while collecting the content: its blob went, its copy stayed.
    await db.items.delete_one({"_id": ObjectId(item["id"])})
    await db.blobs.delete_one({"_id": item["sha256"]})

    await sweep_files(_ctx(db, settings, grace_s=0))
    assert await db["files.files"].find_one({"_id": blob["gridfsId"]}) is not None

    await db.sweeps.update_one(
        {"_id": "files"}, {"$set": {"wholeAt": now() - timedelta(days=1, minutes=1)}}
    )
    await sweep_files(_ctx(db, settings, grace_s=0))
    assert await db["files.files"].find_one({"_id": blob["gridfsId"]}) is None


class FileScans(StartedCommands):
    """Where each sweep's scan of GridFS copies starts."""

    def __init__(self) -> None:
        self.starts: list = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "aggregate" and event.command["aggregate"] == "files.files":
            self.starts.append(event.command["pipeline"][0]["$match"]["uploadDate"]["$gte"])


async def test_of_workers_sweeping_at_once_one_looks_at_every_copy(db, settings, stack):
    await db.sweeps.insert_one({"_id": "files", "after": now(), "wholeAt": BEGINNING})
    scans = FileScans()
    async with listening_client(stack, scans) as mongo:
        ctx = _ctx(mongo[settings.db_name], settings, grace_s=0)
        await asyncio.gather(*(sweep_files(ctx) for _ in range(3)))
    assert sorted(start == BEGINNING for start in scans.starts) == [False, False, True]
