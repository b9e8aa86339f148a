"""Item files: stored once per content in GridFS, addressed by SHA-256, reference counted.

Uploading bytes that are already stored adds a reference to the existing blob and discards the
new copy; releasing the last reference deletes the blob. A blob is only ever deleted by the
atomic `find_one_and_delete(refs <= 0)`, and a reference is only ever added by `$inc` on an
existing blob inside the transaction that creates the item — so a file cannot vanish under an
item that was committed with a reference to it.

A dataset version copies its items from an earlier moment (resolvers/versions/snapshots.py): it
may add a reference to content whose last live reference went after that moment. So while a
version is being copied, nothing is deleted: unreferenced blobs wait at refs <= 0 for the
copy to end (referencing them again, or not) and for the next `sweep`.

A crash can still leave garbage behind, never a dangling reference: a blob at refs <= 0 (between
the commit that dropped its last reference and `collect`), or a GridFS copy no blob points to
(between `write` and the transaction that references or discards it). `sweep` deletes both.
"""

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from PIL import Image, UnidentifiedImageError
from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.commands import UNFINISHED
from resolvers.timestamps import now

BUCKET = "files"
CHUNK = 1 << 20
SNAPSHOT_COMMAND = "datasetVersion"
"""The command that copies a dataset version: while one is unfinished, no blob is deleted."""


@dataclass
class Upload:
    """Bytes written to GridFS, not yet referenced by any item."""

    sha256: str
    size: int
    gridfs_id: ObjectId
    width: int | None
    height: int | None


def _inspect(stream: IO[bytes]) -> tuple[str, int, int | None, int | None]:
    """SHA-256, size and, for images, pixel size read from the header (runs in a thread)."""
    digest, size = hashlib.sha256(), 0
    stream.seek(0)
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    try:
        with Image.open(stream) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError):
        width = height = None
    stream.seek(0)
    return digest.hexdigest(), size, width, height


def bucket(db: AsyncDatabase) -> AsyncGridFSBucket:
    return AsyncGridFSBucket(db, bucket_name=BUCKET)


async def write(db: AsyncDatabase, stream: IO[bytes], filename: str) -> Upload:
    sha256, size, width, height = await asyncio.to_thread(_inspect, stream)
    gridfs_id = await bucket(db).upload_from_stream(filename, stream, metadata={"sha256": sha256})
    return Upload(sha256, size, gridfs_id, width, height)


async def reference(
    db: AsyncDatabase, upload: Upload, mimetype: str, session: AsyncClientSession
) -> bool:
    """Add one reference to the upload's content; True when the upload's own copy is kept."""
    existing = await db.blobs.update_one(
        {"_id": upload.sha256}, {"$inc": {"refs": 1}}, session=session
    )
    if existing.matched_count:
        return False
    await db.blobs.insert_one(
        {
            "_id": upload.sha256,
            "gridfsId": upload.gridfs_id,
            "size": upload.size,
            "mimetype": mimetype,
            "refs": 1,
            "createdAt": now(),
        },
        session=session,
    )
    return True


async def add_references(
    db: AsyncDatabase, counts: dict[str, int], session: AsyncClientSession | None = None
) -> None:
    """More references to stored content (clones and versions share files, they never copy
    them), in one round trip. Content that is gone aborts the caller's transaction: a
    reference to it would be a dangling one."""
    if not counts:
        return
    updates = [UpdateOne({"_id": sha}, {"$inc": {"refs": n}}) for sha, n in counts.items()]
    added = await db.blobs.bulk_write(updates, ordered=False, session=session)
    if added.matched_count < len(counts):
        found = await db.blobs.distinct("_id", {"_id": {"$in": list(counts)}}, session=session)
        gone = sorted(set(counts) - set(found))
        raise RuntimeError(f"stored content {gone[0]} is gone; nothing may reference it")


async def discard(db: AsyncDatabase, upload: Upload) -> None:
    """Delete an upload's GridFS copy that no blob points to."""
    try:
        await bucket(db).delete(upload.gridfs_id)
    except NoFile:
        return


async def unreference(
    db: AsyncDatabase, counts: dict[str, int], session: AsyncClientSession
) -> None:
    """Drop references, in the transaction that deletes the items holding them."""
    for sha256, count in counts.items():
        await db.blobs.update_one({"_id": sha256}, {"$inc": {"refs": -count}}, session=session)


async def collect(db: AsyncDatabase, sha256s: list[str]) -> None:
    """Delete content nobody references any more (after the unreferencing commit), unless a
    version being copied may still reference it (the module's docstring)."""
    copying = {"type": SNAPSHOT_COMMAND, "status": {"$in": UNFINISHED}}
    if sha256s and await db.commands.find_one(copying, {"_id": 1}) is not None:
        return
    for sha256 in sha256s:
        gone = await db.blobs.find_one_and_delete({"_id": sha256, "refs": {"$lte": 0}})
        if gone is not None:
            try:
                await bucket(db).delete(gone["gridfsId"])
            except NoFile:
                continue


async def sweep(db: AsyncDatabase, after: datetime, grace: timedelta) -> datetime:
    """Delete unreferenced blobs, and the GridFS copies uploaded from `after` until `grace`
    ago that no blob points to (younger ones may belong to uploads still under way). Returns
    where the next sweep of copies starts."""
    await collect(db, [b["_id"] async for b in db.blobs.find({"refs": {"$lte": 0}}, {"_id": 1})])
    until = now() - grace
    orphans = await db[f"{BUCKET}.files"].aggregate(
        [
            {"$match": {"uploadDate": {"$gte": after, "$lt": until}}},
            {"$project": {"_id": 1}},
            {
                "$lookup": {
                    "from": "blobs",
                    "localField": "_id",
                    "foreignField": "gridfsId",
                    "pipeline": [{"$project": {"_id": 1}}],
                    "as": "blobs",
                }
            },
            {"$match": {"blobs": []}},
        ]
    )
    async for orphan in orphans:
        with contextlib.suppress(NoFile):
            await bucket(db).delete(orphan["_id"])
    return max(after, until)


async def open_content(db: AsyncDatabase, sha256: str) -> Any:
    """A GridFS stream of the content, for download."""
    blob = await db.blobs.find_one({"_id": sha256})
    if blob is None:
        return None
    return await bucket(db).open_download_stream(blob["gridfsId"])
