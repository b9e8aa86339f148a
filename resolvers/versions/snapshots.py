"""Taking a dataset version: the matching items and their annotations, as they were when it
was asked for, copied into the version's own collections by a Command.

Copies, not references by revision. A version is documents of `version_items`: each the
live item as it was (its id under `itemId`, the copy's own `_id`), holding its annotations as
they were — the live annotation documents, ids and all — in an `annotations` array, and the
version's id. Reading a version is then one indexed query per page, annotations included;
no write path of the live data touches these documents, so immutability holds by
construction; and deleting live items, or the version, costs one pass. One document per item
rather than one per annotation makes taking a version about twice as fast (bench/
interchange.py measured both): ten times fewer documents and index entries to write. Its
limit: an item's annotations must fit in one document (16 MB, some 40,000 boxes). Files are
not copied: each version item adds a reference to its blob, as clones do (resolvers/files.py).

One moment, even across chunks and a crashed worker: `createDatasetVersion` records the
cluster time of its own commit, and every read of the copy is a snapshot read at that time
(`readConcern: snapshot, atClusterTime`), so writes committed after the mutation returned
never reach the version, however long the copy takes or whoever resumes it. MongoDB keeps
that history for `minSnapshotHistoryWindowInSeconds` (300 s by default): a copy that cannot
start or finish within it fails with a message saying so.

The copy itself moves raw BSON: the server joins each item with its annotations and reshapes
it (`$lookup`, `$set`, `$unset` in the read's pipeline) and the worker inserts the bytes it
got, decoding only ids and hashes. A chunk's copies are inserted first, outside any
transaction (a chunk of large items would not fit in one), skipping those a cut-short attempt
inserted (one copy per version and item); then one transaction commits their file references
and the command's cursor, so each reference is added once and a resumed command continues
after the last committed chunk. Each chunk is read while the one before it is written.

A version forked from another (forks.py, `into: VERSION`) is copied the same way from the
source version's copies instead of the live items — with or without their annotations, tags
and user metadata, and without the source's split: no snapshot moment is needed, as the
source never changes.
"""

import asyncio
import functools
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from bson import ObjectId, Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from resolvers import commands, dql, files
from resolvers.access import Access, Action
from resolvers.datasets import get_dataset
from resolvers.errors import Conflict, LoomError
from resolvers.inputs import Description, Input, Name, parse
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction

KIND = files.SNAPSHOT_COMMAND
SNAPSHOT_TOO_OLD = 239
DUPLICATE_KEY = 11000
_RAW = CodecOptions(document_class=RawBSONDocument)


class VersionStatus(StrEnum):
    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"


class VersionInput(Input):
    name: Name
    description: Description = ""
    filter: dict[str, Any] | None = None


class SnapshotLost(LoomError):
    """The dataset as of the version's moment is no longer in MongoDB's snapshot history."""


def name_taken(name: str) -> Conflict:
    return Conflict(f"A version named {name!r} already exists for this dataset", field="name")


async def create_version(
    access: Access,
    dataset_id: ObjectId,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Record the version and its command in one transaction, note the cluster time of that
    commit as the version's moment, and queue the copy."""
    dataset = await get_dataset(access, dataset_id)
    await access.require_project(dataset, Action.MANAGE_DATASETS)
    version_input = parse(VersionInput, data)
    if version_input.filter is not None:
        dql.parse(dql.envelope("items", version_input.filter))
    version = new_version(access, dataset, version_input, dataset["labels"])
    return await record_version(access, dataset, version, {}, enqueue)


def new_version(
    access: Access,
    dataset: dict[str, Any],
    version_input: VersionInput,
    labels: list[dict[str, Any]],
    **fields: Any,
) -> dict[str, Any]:
    """The version as stored, not yet written: creating, empty, its moment not yet known."""
    return new_document(
        access.user_id,
        orgId=dataset["orgId"],
        projectId=dataset["projectId"],
        datasetId=dataset["_id"],
        name=version_input.name,
        description=version_input.description,
        filter=json.dumps(version_input.filter, sort_keys=True) if version_input.filter else None,
        labels=labels,
        status=str(VersionStatus.CREATING),
        error=None,
        itemsCount=0,
        annotationsCount=0,
        split=None,
        snapshotTime=None,
        deleting=False,
        **fields,
    )


async def record_version(
    access: Access,
    dataset: dict[str, Any],
    version: dict[str, Any],
    options: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Insert the version with its copy command in one transaction, note that commit's
    cluster time as the version's moment, and queue the copy."""
    spec = {"versionId": version["_id"], **options}
    command = commands.new_command(access, dataset, KIND, spec)
    version["commandId"] = command["_id"]
    async with access.db.client.start_session() as session:

        async def record(session: AsyncClientSession) -> None:
            try:
                await access.db.dataset_versions.insert_one(version, session=session)
            except DuplicateKeyError as exc:
                raise name_taken(version["name"]) from exc
            await access.db.commands.insert_one(command, session=session)

        await session.with_transaction(record)
        moment = session.operation_time
    version["snapshotTime"] = moment
    await access.db.dataset_versions.update_one(
        {"_id": version["_id"]}, {"$set": {"snapshotTime": moment}}
    )
    await enqueue(command)
    return version


async def _read_at(
    db: AsyncDatabase, collection: str, pipeline: list[dict[str, Any]], moment: Timestamp
) -> list[RawBSONDocument]:
    """Raw documents of `collection` as they were at `moment` (an aggregate given its own
    read concern: PyMongo's command cursors are several times slower at this)."""
    raw = db[collection].with_options(codec_options=_RAW)
    at = {"level": "snapshot", "atClusterTime": moment}
    try:
        return await (await raw.aggregate(pipeline, readConcern=at)).to_list()
    except OperationFailure as exc:
        if exc.code == SNAPSHOT_TOO_OLD:
            raise SnapshotLost(
                "The dataset as it was when this version was asked for is no longer in "
                "MongoDB's snapshot history (minSnapshotHistoryWindowInSeconds); create the "
                "version again"
            ) from exc
        raise


def _items_query(version: dict[str, Any]) -> tuple[dict[str, Any], dql.DqlJoin | None]:
    """The version's item filter as a MongoDB query over its dataset, and its join."""
    clauses: list[dict[str, Any]] = [{"datasetId": version["datasetId"]}]
    join = None
    if version["filter"] is not None:
        query = dql.parse(dql.envelope("items", json.loads(version["filter"])))
        clauses.append(query.filter)
        join = query.join
    return {"$and": clauses}, join


async def run_snapshot(
    db: AsyncDatabase, command: dict[str, Any], batch_size: int, lease: timedelta
) -> None:
    """Copy the version's items and annotations chunk by chunk, from the command's cursor."""
    version = await db.dataset_versions.find_one({"_id": command["input"]["versionId"]})
    if version is None or version["deleting"]:
        return
    await _copy(db, version, command, batch_size, lease)
    totals = [
        {"$match": {"versionId": version["_id"]}},
        {
            "$group": {
                "_id": None,
                "itemsCount": {"$sum": 1},
                "annotationsCount": {"$sum": {"$size": "$annotations"}},
            }
        },
        {"$unset": "_id"},
    ]
    found = await (await db.version_items.aggregate(totals)).to_list()
    counts = found[0] if found else {"itemsCount": 0, "annotationsCount": 0}
    await db.dataset_versions.update_one(
        {"_id": version["_id"]},
        {"$set": {**counts, "status": str(VersionStatus.READY), "updatedAt": now()}},
    )


async def mark_failed(db: AsyncDatabase, command: dict[str, Any], error: str) -> None:
    """The version of a command that failed failed with it (its copies stay until it is
    deleted, as a failed clone's do)."""
    await db.dataset_versions.update_one(
        {"_id": command["input"]["versionId"]},
        {"$set": {"status": str(VersionStatus.FAILED), "error": error, "updatedAt": now()}},
    )


async def _moment(db: AsyncDatabase, version: dict[str, Any]) -> Timestamp:
    """The version's moment; a version whose mutation died before noting it takes now's."""
    if version["snapshotTime"] is not None:
        return version["snapshotTime"]
    async with db.client.start_session() as session:
        await db.dataset_versions.find_one({"_id": version["_id"]}, session=session)
        moment = session.operation_time
    await db.dataset_versions.update_one(
        {"_id": version["_id"]}, {"$set": {"snapshotTime": moment}}
    )
    return moment


class _Chunk(NamedTuple):
    """The next items of a version (after the cursor), as copies holding their annotations."""

    items: list[RawBSONDocument]
    last: ObjectId | None
    """The last item read (the next chunk starts after it); None when none is left."""


async def _read_chunk(
    db: AsyncDatabase,
    version: dict[str, Any],
    cursor: ObjectId | None,
    batch_size: int,
    moment: Timestamp,
) -> _Chunk:
    query, join = _items_query(version)
    after = [{"_id": {"$gt": cursor}}] if cursor else []
    joined = []
    if join is not None:
        # The join may keep none of a chunk's items: where the next chunk starts is read
        # apart.
        last = await _last_read(db, query, cursor, batch_size, moment)
        if last is None:
            return _Chunk([], None)
        joined = [{"$match": {"annotations": {"$elemMatch": join.filter}}}]
    items = await _read_at(
        db,
        "items",
        [
            {"$match": {"$and": [query, *after]}},
            {"$sort": {"_id": 1}},
            {"$limit": batch_size},
            {"$set": {"itemId": "$_id"}},
            {
                "$lookup": {
                    "from": "annotations",
                    "localField": "_id",
                    "foreignField": "itemId",
                    "pipeline": [{"$sort": {"_id": 1}}],
                    "as": "annotations",
                }
            },
            *joined,
            {"$set": {"versionId": version["_id"], "split": None}},
            {"$unset": "_id"},
        ],
        moment,
    )
    if join is not None:
        return _Chunk(items, last)
    return _Chunk(items, items[-1]["itemId"] if items else None)


async def _last_read(
    db: AsyncDatabase,
    query: dict[str, Any],
    cursor: ObjectId | None,
    batch_size: int,
    moment: Timestamp,
) -> ObjectId | None:
    after = [{"_id": {"$gt": cursor}}] if cursor else []
    pipeline = [
        {"$match": {"$and": [query, *after]}},
        {"$sort": {"_id": 1}},
        {"$limit": batch_size},
        {"$group": {"_id": None, "last": {"$last": "$_id"}}},
    ]
    found = await _read_at(db, "items", pipeline, moment)
    return found[0]["last"] if found else None


async def _read_forked_chunk(
    db: AsyncDatabase,
    version: dict[str, Any],
    cursor: ObjectId | None,
    batch_size: int,
    moment: Timestamp,
    spec: dict[str, Any],
) -> _Chunk:
    """The next copies of the source version, as the forked version's, with what it keeps."""
    after = {"itemId": {"$gt": cursor}} if cursor else {}
    dropped = {
        field: {"$literal": empty}
        for field, empty, kept in (
            ("annotations", [], spec["withAnnotations"]),
            ("tags", [], spec["withTags"]),
            ("metadata.user", {}, spec["withMetadata"]),
        )
        if not kept
    }
    items = await _read_at(
        db,
        "version_items",
        [
            {"$match": {"versionId": spec["sourceVersionId"], **after}},
            {"$sort": {"itemId": 1}},
            {"$limit": batch_size},
            {"$set": {"versionId": version["_id"], "split": None, **dropped}},
            {"$unset": "_id"},
        ],
        moment,
    )
    return _Chunk(items, items[-1]["itemId"] if items else None)


async def _copy(
    db: AsyncDatabase,
    version: dict[str, Any],
    command: dict[str, Any],
    batch_size: int,
    lease: timedelta,
) -> None:
    """Copy chunk after chunk, reading the next one while the last one is written."""
    moment = await _moment(db, version)
    spec = command["input"]
    if "sourceVersionId" in spec:
        source = "version_items", {"versionId": spec["sourceVersionId"]}
        read = functools.partial(_read_forked_chunk, spec=spec)
    else:
        source = "items", _items_query(version)[0]
        read = _read_chunk
    counted = await _read_at(db, source[0], [{"$match": source[1]}, {"$count": "n"}], moment)
    total = max(counted[0]["n"] if counted else 0, 1)
    done = await db.version_items.count_documents({"versionId": version["_id"]})
    ahead = asyncio.create_task(read(db, version, command["cursor"], batch_size, moment))
    try:
        while (chunk := await ahead).last is not None:
            ahead = asyncio.create_task(read(db, version, chunk.last, batch_size, moment))
            done += len(chunk.items)
            await _write_chunk(db, command, chunk, min(99, done * 100 // total), lease)
    finally:
        ahead.cancel()
        await asyncio.gather(ahead, return_exceptions=True)


async def _write_chunk(
    db: AsyncDatabase, command: dict[str, Any], chunk: _Chunk, progress: int, lease: timedelta
) -> None:
    """The chunk's copies first, outside any transaction (they may be large), skipping those
    a cut-short attempt inserted; then, in one transaction, their file references and the
    command's cursor, so references are added exactly once."""
    if chunk.items:
        try:
            await db.version_items.insert_many(chunk.items, ordered=False)
        except BulkWriteError as exc:
            if {error["code"] for error in exc.details["writeErrors"]} != {DUPLICATE_KEY}:
                raise

    async def commit(session: AsyncClientSession) -> None:
        hashes = Counter(item["sha256"] for item in chunk.items)
        await files.add_references(db, hashes, session)
        await commands.advance(db, command, chunk.last, progress, lease, session)

    await in_transaction(db, commit)
