"""Cloning a dataset: a Command that copies items (sharing their files) and, if asked,
annotations, tags and user metadata, batch by batch — from the dataset's live items, or from a
dataset version's copies of them (forking a version, resolvers/versions/forks.py).

Each batch commits in one transaction — new items, their annotations, file references,
counters and the command's cursor together — so a worker killed mid-way leaves a clone that
the next worker continues from the last batch: nothing is copied twice, nothing is lost.
"""

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import commands, files
from resolvers.access import Access, Action
from resolvers.datasets import create_dataset, get_dataset
from resolvers.directories import with_ancestors
from resolvers.inputs import Input, Name, parse
from resolvers.timestamps import now
from resolvers.transactions import in_transaction

KIND = "datasetClone"


class CloneInput(Input):
    name: Name
    with_annotations: bool = True
    with_metadata: bool = True
    with_labels: bool = Field(default=True, description="copy the ontology")


async def start_clone(
    access: Access,
    dataset_id: ObjectId,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Create the (readonly, empty) target dataset and the command, and queue the work."""
    source = await get_dataset(access, dataset_id)
    await access.require_project(source, Action.MANAGE_DATASETS)
    clone = parse(CloneInput, data)
    spec = {
        "sourceId": dataset_id,
        "withAnnotations": clone.with_annotations,
        "withMetadata": clone.with_metadata,
    }
    labels = source["labels"] if clone.with_labels else []
    return await start_copy(
        access, source, clone.name, f"Clone of {source['name']}", labels, spec, enqueue
    )


async def start_copy(
    access: Access,
    origin: dict[str, Any],
    name: str,
    description: str,
    labels: list[dict[str, Any]],
    spec: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Create the target dataset of `origin`'s project — readonly and empty until the copy is
    done — and the command copying into it, and queue the work."""
    target = await create_dataset(
        access, origin["projectId"], {"name": name, "description": description}
    )
    await access.db.datasets.update_one(
        {"_id": target["_id"]}, {"$set": {"readonly": True, "labels": labels}}
    )
    command = commands.new_command(access, origin, KIND, {**spec, "targetId": target["_id"]})
    await access.db.commands.insert_one(command)
    await enqueue(command)
    return command


VERSION_FIELDS = ("versionId", "itemId", "split", "annotations")
"""What a version's copy of an item holds beyond the live item (resolvers/versions/
snapshots.py): its annotations, among others."""


def _source(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Where a clone reads: its items' collection and their scope."""
    if spec.get("versionId") is not None:
        return "version_items", {"versionId": spec["versionId"]}
    return "items", {"datasetId": spec["sourceId"]}


def _live(doc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key not in VERSION_FIELDS}


def _copy_item(item: dict[str, Any], target: ObjectId, spec: dict[str, Any]) -> dict[str, Any]:
    moment = now()
    return {
        **_live(item),
        "_id": ObjectId(),
        "datasetId": target,
        "clonedFrom": item.get("itemId", item["_id"]),
        "metadata": item["metadata"] if spec["withMetadata"] else {"user": {}, "system": {}},
        "tags": item["tags"] if spec.get("withTags", True) else [],
        "annotated": False,
        "annotationsCount": 0,
        "createdAt": moment,
        "updatedAt": moment,
    }


async def run_clone(
    db: AsyncDatabase, command: dict[str, Any], batch_size: int, lease: timedelta
) -> None:
    """Copy the rest of the source, from the command's cursor on, batch by batch."""
    spec = command["input"]
    target_id = spec["targetId"]
    items, scope = _source(spec)
    total = max(await db[items].count_documents(scope), 1)
    cursor: ObjectId | None = command["cursor"]
    done = await db.items.count_documents({"datasetId": target_id})
    while True:

        async def step(
            session: AsyncClientSession, cursor: ObjectId | None = cursor, done: int = done
        ) -> tuple[ObjectId, int] | None:
            """Copy the next batch. It is read in the transaction that copies it: a source item
            deleted meanwhile is either not seen or makes this transaction conflict and run
            again, so no copy ever references a file its deletion let go."""
            after = {"_id": {"$gt": cursor}} if cursor else {}
            batch = (
                await db[items]
                .find({**scope, **after}, session=session)
                .sort("_id", 1)
                .limit(batch_size)
                .to_list()
            )
            if not batch:
                return None
            copies = [_copy_item(item, target_id, spec) for item in batch]
            new_ids = {copy["clonedFrom"]: copy["_id"] for copy in copies}
            annotations = []
            if spec["withAnnotations"] and "versionId" in scope:
                annotations = [a for item in batch for a in item["annotations"]]
            elif spec["withAnnotations"]:
                annotations = await db.annotations.find(
                    {"itemId": {"$in": list(new_ids)}}, session=session
                ).to_list()
            last, copied = batch[-1]["_id"], done + len(batch)
            await _insert_batch(db, target_id, copies, annotations, new_ids, session)
            progress = min(99, copied * 100 // total)
            await commands.advance(db, command, last, progress, lease, session)
            return last, copied

        stepped = await in_transaction(db, step)
        if stepped is None:
            break
        cursor, done = stepped
    await db.datasets.update_one(
        {"_id": target_id}, {"$set": {"readonly": False, "updatedAt": now()}}
    )


async def _insert_batch(
    db: AsyncDatabase,
    target_id: ObjectId,
    copies: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    new_ids: dict[ObjectId, ObjectId],
    session: AsyncClientSession,
) -> None:
    """One batch of the clone, written inside its transaction."""
    await db.items.insert_many(copies, session=session)
    await files.add_references(db, Counter(copy["sha256"] for copy in copies), session)
    new_annotation_ids = {a["_id"]: ObjectId() for a in annotations}
    moment = now()
    copied = [
        {
            **a,
            "_id": new_annotation_ids[a["_id"]],
            "datasetId": target_id,
            "itemId": new_ids[a["itemId"]],
            "parentId": new_annotation_ids.get(a["parentId"]) if a["parentId"] else None,
            "createdAt": moment,
            "updatedAt": moment,
        }
        for a in annotations
    ]
    if copied:
        await db.annotations.insert_many(copied, session=session)
    per_item = Counter(a["itemId"] for a in copied)
    for item_id, count in per_item.items():
        await db.items.update_one(
            {"_id": item_id},
            {"$set": {"annotationsCount": count, "annotated": True}},
            session=session,
        )
    await db.datasets.update_one(
        {"_id": target_id},
        {
            "$inc": {"itemsCount": len(copies), "annotationsCount": len(copied)},
            "$addToSet": {
                "directories": {
                    "$each": sorted({d for c in copies for d in with_ancestors(c["dir"])})
                }
            },
        },
        session=session,
    )
