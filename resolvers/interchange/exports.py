"""Exporting a dataset or a dataset version: a Command writing a zip archive into file storage.

The archive is COCO, YOLO or Pascal VOC (resolvers/interchange/archives.py) and, when asked,
holds the files under `images/` at their paths in the dataset. It is written while the items
are read, page by page, into a temporary file on disk, so a 100,000-item export never holds
the archive in memory; then it is uploaded to GridFS (bucket `exports`), named by the
command's `result`, and downloaded from `GET /commands/{id}/archive` by whoever may read the
command's project.

A worker that dies mid-export leaves nothing behind but its temporary file; the command is
queued again and the next worker writes the archive afresh, from the same data when the
source is a version.
"""

import asyncio
import contextlib
import json
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pydantic import Field

from resolvers import commands, dql, files
from resolvers.access import Access, Action
from resolvers.annotations import AnnotationStatus
from resolvers.datasets import get_dataset
from resolvers.errors import BadUserInput, NotFound
from resolvers.inputs import Input, Name, parse
from resolvers.interchange import archives
from resolvers.items import IN_VERSION, LIVE, ItemSource, joined
from resolvers.labels import paths
from resolvers.versions.lifecycle import ready_version

KIND = "export"
BUCKET = "exports"
PAGE = 500


class ExportFormat(StrEnum):
    COCO = "coco"
    YOLO = "yolo"
    VOC = "voc"


class ExportInput(Input):
    format: ExportFormat = ExportFormat.COCO
    filter: dict[str, Any] | None = None
    split: Name | None = Field(None, description="a subset of the version's split")
    statuses: list[AnnotationStatus] | None = Field(None, min_length=1)
    include_files: bool = False


async def start_export(
    access: Access,
    source_id: ObjectId,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
    *,
    of_version: bool,
) -> dict[str, Any]:
    """Check the export's options against its source and queue it."""
    if of_version:
        source = await ready_version(access, source_id)
    else:
        source = await get_dataset(access, source_id)
    await access.require_project(source, Action.READ_PROJECT)
    export = parse(ExportInput, data)
    if export.filter is not None:
        dql.parse(dql.envelope("items", export.filter), in_version=of_version)
    if export.split is not None:
        names = [s["name"] for s in (source.get("split") or {}).get("subsets", [])]
        if not of_version or export.split not in names:
            raise BadUserInput(
                f"No split subset {export.split!r} here; subsets: {', '.join(names) or 'none'}",
                field="split",
            )
    command = commands.new_command(
        access,
        source,
        KIND,
        {
            "datasetId": source["datasetId"] if of_version else source_id,
            "versionId": source_id if of_version else None,
            "format": str(export.format),
            "filter": json.dumps(export.filter, sort_keys=True) if export.filter else None,
            "split": export.split,
            "statuses": [str(s) for s in export.statuses] if export.statuses else None,
            "includeFiles": export.include_files,
        },
    )
    await access.db.commands.insert_one(command)
    await enqueue(command)
    return command


def _source(spec: dict[str, Any]) -> tuple[ItemSource, ObjectId]:
    if spec["versionId"] is not None:
        return IN_VERSION, spec["versionId"]
    return LIVE, spec["datasetId"]


def _items_query(spec: dict[str, Any]) -> tuple[dict[str, Any], dql.DqlJoin | None]:
    source, parent = _source(spec)
    clauses: list[dict[str, Any]] = [{source.parent_field: parent}]
    join = None
    if spec["filter"] is not None:
        query = dql.parse(
            dql.envelope("items", json.loads(spec["filter"])), in_version=source.in_version
        )
        clauses.append(query.filter)
        join = query.join
    if spec["split"] is not None:
        clauses.append({"split": spec["split"]})
    return {"$and": clauses}, join


async def _annotations_of(
    db: Any, source: ItemSource, items: list[dict[str, Any]], statuses: list[str] | None
) -> dict[ObjectId, list[dict[str, Any]]]:
    """Each item's annotations of the statuses asked for, in id order (a version's copies
    hold theirs in that order)."""
    if source.in_version:
        found = {item["itemId"]: item["annotations"] for item in items}
    else:
        query = {"itemId": {"$in": [item["_id"] for item in items]}}
        found = {item["_id"]: [] for item in items}
        async for doc in db.annotations.find(query).sort([("itemId", 1), ("_id", 1)]):
            found[doc["itemId"]].append(doc)
    return {
        item_id: [doc for doc in docs if statuses is None or doc["status"] in statuses]
        for item_id, docs in found.items()
    }


async def run_export(db: Any, command: dict[str, Any], lease: timedelta) -> None:
    spec = command["input"]
    source, parent = _source(spec)
    query, join = _items_query(spec)
    if join is not None:
        query = {"$and": [query, await joined(db, source, [parent], join)]}
    owner = await db[source.parents].find_one({"_id": parent}, {"labels": 1})
    if owner is None:
        raise NotFound("The export's dataset or version is gone")
    if source.in_version:
        used = await db.version_items.distinct("annotations.label", {"versionId": parent})
    else:
        used = await db.annotations.distinct("label", {"datasetId": parent})
    names = sorted({*paths(owner["labels"]), *used})
    total = max(await db[source.items].count_documents(query), 1)
    with contextlib.ExitStack() as stack:
        file = stack.enter_context(tempfile.TemporaryFile())
        archive = archives.ARCHIVES[spec["format"]](file, names, stack)
        counts = await _write(db, command, source, query, archive, total, lease)
        await asyncio.to_thread(archive.finish)
        file.seek(0)
        stored = await AsyncGridFSBucket(db, bucket_name=BUCKET).upload_from_stream(
            f"export-{command['_id']}-{spec['format']}.zip",
            file,
            metadata={"commandId": command["_id"], "projectId": command["projectId"]},
        )
    result = {"archiveId": stored, "format": spec["format"], **counts}
    await db.commands.update_one({"_id": command["_id"]}, {"$set": {"result": result}})


async def _write(
    db: Any,
    command: dict[str, Any],
    source: ItemSource,
    query: dict[str, Any],
    archive: archives.Archive,
    total: int,
    lease: timedelta,
) -> dict[str, Any]:
    """Page through the items, writing their annotations and files into the archive."""
    spec = command["input"]
    images = annotations = 0
    page: list[dict[str, Any]] = []

    async def flush() -> None:
        nonlocal images, annotations
        held = await _annotations_of(db, source, page, spec["statuses"])
        entries = []
        for item in page:
            images += 1
            entries.append((images, item, held[item.get("itemId", item["_id"])]))
            if spec["includeFiles"]:
                await _add_file(db, archive, item)
        annotations += await asyncio.to_thread(archive.add_page, entries)
        page.clear()
        progress = min(99, images * 100 // total)
        async with db.client.start_session() as session:
            await commands.advance(db, command, None, progress, lease, session)

    async for item in db[source.items].find(query).sort("_id", 1).batch_size(PAGE):
        page.append(item)
        if len(page) == PAGE:
            await flush()
    if page:
        await flush()
    return {"images": images, "annotations": annotations, "skipped": dict(archive.skipped)}


async def _add_file(db: Any, archive: archives.Archive, item: dict[str, Any]) -> None:
    stream = await files.open_content(db, item["sha256"])
    if stream is None:
        return
    content = await stream.read()
    await asyncio.to_thread(archive.add_file, archives.file_name(item), content)


async def open_archive(db: Any, command: dict[str, Any]) -> Any:
    """The GridFS stream of an export's archive, None while it has none."""
    archive_id = (command.get("result") or {}).get("archiveId")
    if command["type"] != KIND or archive_id is None:
        return None
    try:
        return await AsyncGridFSBucket(db, bucket_name=BUCKET).open_download_stream(archive_id)
    except NoFile:
        return None
