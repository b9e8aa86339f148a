"""Importing COCO, YOLO or Pascal VOC annotations into a dataset: a Command reading an upload.

The mutation checks what it can without reading the annotations — that a zip is safe to
unpack (import_archives.py) and holds what the format needs — and stores the upload in GridFS
(bucket `imports`); anything wrong is BAD_USER_INPUT and nothing is stored. The worker then
reads every annotation file before writing anything: a file that is malformed (not JSON, not
well-formed XML, not COCO's shape) fails the command with the place it went wrong, and nothing
is written.

Images are matched to the dataset's items by path (coco.py, yolo.py and voc.py say how each
format names them). An image no item has is uploaded as a new item when the archive carries
its file and the caller may upload items; otherwise it is reported and its annotations are
left out. Each item is all or nothing: if any of its annotations cannot be imported (a label
the ontology lacks, coordinates outside the image, a malformed shape), none is, and each
failure is reported with its file and element (`annotations[17] (id 42)`, `line 3`,
`object[2]`). Per matched item, `mode` says what happens to the annotations it already has:
REPLACE deletes them, CONCATENATE keeps them, SKIP leaves an item that has any untouched.
`createMissingLabels` adds the labels the ontology lacks as top-level labels (a dataset without
an ontology takes any label).

Images are written a batch at a time, each batch in one transaction with its new items, its
counters and the command's cursor (how many images are done), so a resumed import continues
after the last committed batch and nothing is imported twice.
"""

import asyncio
import io
import re
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import PurePosixPath
from typing import IO, Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import commands, files, items
from resolvers.access import Access, Action
from resolvers.annotations import AnnotationInput, count, new_annotation
from resolvers.datasets import add_missing_labels, writable_dataset
from resolvers.errors import BadUserInput, Conflict, Forbidden, LoomError
from resolvers.inputs import Input, parse
from resolvers.interchange import coco, voc, yolo
from resolvers.interchange.import_archives import (
    Imported,
    ImportedImage,
    ImportRefused,
    UploadedFiles,
)
from resolvers.transactions import in_transaction

KIND = "import"
BUCKET = "imports"
MAX_ERRORS = 100
BATCH = 200


class ImportMode(StrEnum):
    REPLACE = "replace"
    CONCATENATE = "concatenate"
    SKIP = "skip"


class ImportFormat(StrEnum):
    COCO = "coco"
    YOLO = "yolo"
    VOC = "voc"


CHECKS: dict[ImportFormat, Callable[[UploadedFiles], object]] = {
    ImportFormat.COCO: coco.check,
    ImportFormat.YOLO: yolo.check,
    ImportFormat.VOC: voc.check,
}
READERS: dict[ImportFormat, Callable[[UploadedFiles], Imported]] = {
    ImportFormat.COCO: coco.read,
    ImportFormat.YOLO: yolo.read,
    ImportFormat.VOC: voc.read,
}


class ImportInput(Input):
    format: ImportFormat = ImportFormat.COCO
    mode: ImportMode = ImportMode.REPLACE
    create_missing_labels: bool = False


# --- the upload ---------------------------------------------------------------------------


def check_upload(upload: IO[bytes], filename: str, format: ImportFormat) -> None:
    """BAD_USER_INPUT for an upload the format cannot read, or a zip unsafe to unpack."""
    uploaded = UploadedFiles(upload, filename)
    try:
        CHECKS[format](uploaded)
    finally:
        uploaded.close()
        upload.seek(0)


async def _may_upload_items(access: Access, dataset: dict[str, Any]) -> bool:
    try:
        await access.require_project(dataset, Action.WRITE_ITEMS)
    except Forbidden:
        return False
    return True


async def start_import(
    access: Access,
    dataset_id: ObjectId,
    upload: IO[bytes],
    filename: str,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    dataset = await writable_dataset(access, dataset_id, Action.WRITE_ANNOTATIONS)
    options = parse(ImportInput, data)
    await asyncio.to_thread(check_upload, upload, filename, options.format)
    stored = await AsyncGridFSBucket(access.db, bucket_name=BUCKET).upload_from_stream(
        filename or "import", upload, metadata={"projectId": dataset["projectId"]}
    )
    command = commands.new_command(
        access,
        dataset,
        KIND,
        {
            "datasetId": dataset_id,
            "uploadId": stored,
            "filename": filename,
            "format": str(options.format),
            "mode": str(options.mode),
            "createMissingLabels": options.create_missing_labels,
            "uploadImages": await _may_upload_items(access, dataset),
        },
    )
    await access.db.commands.insert_one(command)
    await enqueue(command)
    return command


# --- shapes as Loom's annotations ------------------------------------------------------------


def _error(file: str, element: str, message: str) -> dict[str, Any]:
    return {"file": file, "element": element, "message": message}


def _annotations(
    creator: ObjectId | None, image: ImportedImage, item: dict[str, Any], dataset: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An image's annotations as Loom stores them on its item, or none and the errors (all
    or nothing)."""
    made, errors = [], []
    for shape in image.shapes:
        if shape.problem is not None:
            errors.append(_error(image.file, shape.element, shape.problem))
            continue
        coordinates = shape.coordinates
        if image.fractions:
            if item["width"] is None or item["height"] is None:
                message = "the item's size is unknown, so YOLO's fractions of it cannot be placed"
                errors.append(_error(image.file, shape.element, message))
                continue
            coordinates = yolo.to_pixels(shape.type, coordinates, item["width"], item["height"])
        try:
            given = {"itemId": str(item["_id"]), "type": shape.type, "label": shape.label}
            given |= {"coordinates": coordinates, "attributes": shape.attributes}
            checked = AnnotationInput.model_validate(given)
            made.append(new_annotation(creator, checked, item, dataset))
        except ValidationError as exc:
            message = BadUserInput.from_validation(exc).message
            errors.append(_error(image.file, shape.element, message))
        except LoomError as exc:
            errors.append(_error(image.file, shape.element, exc.message))
    return ([], errors) if errors else (made, [])


# --- the command ---------------------------------------------------------------------------


async def run_import(db: AsyncDatabase, command: dict[str, Any], lease: timedelta) -> None:
    spec = command["input"]
    with tempfile.TemporaryFile() as spool:
        await AsyncGridFSBucket(db, bucket_name=BUCKET).download_to_stream(spec["uploadId"], spool)
        uploaded = await asyncio.to_thread(UploadedFiles, spool, spec["filename"])
        try:
            read = READERS[ImportFormat(spec.get("format", "coco"))]
            imported = await asyncio.to_thread(read, uploaded)
            await _import(db, command, imported, uploaded, lease)
        finally:
            uploaded.close()


async def _import(
    db: AsyncDatabase,
    command: dict[str, Any],
    imported: Imported,
    uploaded: UploadedFiles,
    lease: timedelta,
) -> None:
    spec = command["input"]
    dataset = await db.datasets.find_one({"_id": spec["datasetId"]})
    if dataset is None or dataset["deleting"]:
        raise ImportRefused("The dataset is gone")
    if spec["createMissingLabels"] and dataset["labels"]:
        plain = [name for name in imported.labels if "." not in name]
        dataset = await add_missing_labels(db, dataset["_id"], plain)
    images = imported.images
    progress = command["cursor"] or {"done": 0, "report": {}, "errors": [], "errorsCount": 0}
    batch = Batch(db, command, dataset, uploaded, len(images), lease)
    for start in range(progress["done"], len(images), BATCH):
        chosen = list(enumerate(images[start : start + BATCH], start))
        try:
            progress = await batch.write(chosen, progress)
        except Conflict:  # an item was uploaded at a path this batch was creating: again
            progress = await batch.write(chosen, progress)
    result = {"images": len(images), **progress["report"]}
    result |= {"errors": progress["errors"], "errorsCount": progress["errorsCount"]}
    await db.commands.update_one({"_id": command["_id"]}, {"$set": {"result": result}})


def _stem_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(path) + r"\.[^./]+$")


@dataclass
class _Found:
    """A batch's items by path, and by path without extension (for images named so)."""

    by_path: dict[str, dict[str, Any]]
    by_stem: dict[str, dict[ObjectId, dict[str, Any]]]


@dataclass
class _Plan:
    """What one batch writes: new items with their uploads, annotations per item, the report
    and the errors."""

    created: dict[str, tuple[dict[str, Any], files.Upload]] = field(default_factory=dict)
    annotations: dict[ObjectId, list[dict[str, Any]]] = field(default_factory=dict)
    targets: dict[ObjectId, dict[str, Any]] = field(default_factory=dict)
    report: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)


class Batch:
    """Writes the import a batch of images at a time (see the module's docstring)."""

    def __init__(
        self,
        db: AsyncDatabase,
        command: dict[str, Any],
        dataset: dict[str, Any],
        uploaded: UploadedFiles,
        total: int,
        lease: timedelta,
    ) -> None:
        self.db, self.command, self.dataset = db, command, dataset
        self.uploaded, self.total, self.lease = uploaded, total, lease
        self.mode = ImportMode(command["input"]["mode"])
        self.upload_images = command["input"].get("uploadImages", False)

    async def _items(self, images: list[ImportedImage]) -> _Found:
        """The items the images name (one query for the batch)."""
        exact = [image.path for image in images if not image.stem]
        stems = [image.path for image in images if image.stem]
        wanted: list[Any] = [*exact, *map(_stem_pattern, stems)]
        found = _Found({}, {})
        query = {"datasetId": self.dataset["_id"], "filename": {"$in": wanted}}
        async for item in self.db.items.find(query):
            found.by_path[item["filename"]] = item
            without = str(PurePosixPath(item["filename"]).with_suffix(""))
            found.by_stem.setdefault(without, {})[item["_id"]] = item
        return found

    async def _new_item(self, image: ImportedImage, plan: _Plan) -> dict[str, Any] | None:
        """The item an image carried by the archive is uploaded as, or None (reported)."""
        if image.path in plan.created:
            return plan.created[image.path][0]
        path = PurePosixPath(image.path)
        try:
            item_input = parse(items.ItemInput, {"name": path.name, "dir": str(path.parent)})
        except BadUserInput as exc:
            plan.errors.append(_error(image.file, image.element, exc.message))
            plan.report["unmatchedImages"] += 1
            return None
        content = await asyncio.to_thread(self.uploaded.read, image.member)
        upload = await files.write(self.db, io.BytesIO(content), path.name)
        system = {"originalName": path.name, "importId": self.command["_id"]}
        item = items.new_item(
            self.command["creator"],
            self.dataset,
            item_input,
            items.mimetype_of(None, path.name),
            upload,
            metadata={"user": {}, "system": system},
        )
        plan.created[image.path] = (item, upload)
        return item

    async def _item(
        self, image: ImportedImage, found: _Found, plan: _Plan
    ) -> dict[str, Any] | None:
        """The item an image's annotations go to, or None (the reason reported)."""
        if image.stem:
            matches = list(found.by_stem.get(image.path, {}).values())
        else:
            matches = [found.by_path[image.path]] if image.path in found.by_path else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            message = f"{len(matches)} items match {image.path}.*: give the extension"
        elif image.member is not None and self.upload_images and not image.stem:
            return await self._new_item(image, plan)
        elif image.member is not None and not image.stem:
            message = f"no item at {image.path}, and your role may not upload items"
        else:
            message = f"no item at {image.path}" + (".*" if image.stem else "")
        plan.errors.append(_error(image.file, image.element, message))
        plan.report["unmatchedImages"] += 1
        return None

    async def _plan(self, chosen: list[tuple[int, ImportedImage]]) -> _Plan:
        plan = _Plan()
        found = await self._items([image for _, image in chosen])
        try:
            for _, image in chosen:
                item = await self._item(image, found, plan)
                if item is None:
                    continue
                docs, failed = _annotations(self.command["creator"], image, item, self.dataset)
                if failed:
                    plan.errors.extend(failed)
                    plan.report["refusedItems"] += 1
                elif self.mode == ImportMode.SKIP and item["annotationsCount"] > 0:
                    plan.report["skippedItems"] += 1
                else:
                    plan.annotations.setdefault(item["_id"], []).extend(docs)
                    plan.targets[item["_id"]] = item
        except BaseException:
            await self._discard(plan)
            raise
        return plan

    async def _discard(self, plan: _Plan, kept: set[str] | None = None) -> None:
        """Delete the GridFS copies of the batch's uploads that no blob points to."""
        for path, (_, upload) in plan.created.items():
            if kept is None or path not in kept:
                await files.discard(self.db, upload)

    async def write(
        self, chosen: list[tuple[int, ImportedImage]], progress: dict[str, Any]
    ) -> dict[str, Any]:
        """Match, upload and convert a batch of images, then write them with the import's
        progress (its cursor: images done, counts, the first errors) in one transaction; the
        progress after it."""
        plan = await self._plan(chosen)
        docs = [doc for item_docs in plan.annotations.values() for doc in item_docs]
        report = Counter(progress["report"]) + plan.report
        report["createdItems"] += len(plan.created)
        report["updatedItems"] += len(plan.annotations)
        report["importedAnnotations"] += len(docs)
        db, done = self.db, chosen[-1][0] + 1

        async def work(session: AsyncClientSession) -> tuple[dict[str, Any], set[str]]:
            written = Counter(report)
            kept = set()
            for path, (item, upload) in plan.created.items():
                if await items.store_new_item(db, item, upload, session):
                    kept.add(path)
            if self.mode == ImportMode.REPLACE and plan.annotations:
                chosen_items = {"itemId": {"$in": list(plan.annotations)}}
                gone = await db.annotations.find(
                    chosen_items, {"itemId": 1}, session=session
                ).to_list()
                await db.annotations.delete_many(chosen_items, session=session)
                written["replacedAnnotations"] += len(gone)
                dropped = Counter(annotation["itemId"] for annotation in gone)
                await count(db, Counter({k: -n for k, n in dropped.items()}), session, plan.targets)
            if docs:
                await db.annotations.insert_many(docs, session=session)
                await count(db, Counter(doc["itemId"] for doc in docs), session, plan.targets)
            after = {
                "done": done,
                "report": dict(written),
                "errors": (progress["errors"] + plan.errors)[:MAX_ERRORS],
                "errorsCount": progress["errorsCount"] + len(plan.errors),
            }
            percent = min(99, done * 100 // max(1, self.total))
            await commands.advance(db, self.command, after, percent, self.lease, session)
            return after, kept

        try:
            after, kept = await in_transaction(db, work)
        except BaseException:
            await self._discard(plan)
            raise
        await self._discard(plan, kept)
        return after
