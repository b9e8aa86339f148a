"""Importing COCO annotations into a dataset: a Command reading an uploaded JSON file or zip.

The mutation checks what it can without reading the annotations — an archive's members (no
absolute path, no `..`, no symlink, at most MAX_MEMBERS, at most MAX_BYTES uncompressed, no
member inflating more than MAX_RATIO times: zip bombs), and that there is one COCO file in it
— and stores the upload in GridFS (bucket `imports`); anything wrong is BAD_USER_INPUT and
nothing is stored. The worker then reads the whole COCO file before writing anything: a file
that is not JSON, or not COCO's shape, fails the command with the place it went wrong (line
and column, or the element), and nothing is written.

Images are matched to the dataset's items by path (`file_name` `train/a.png` is the item
`/train/a.png`); an image no item matches is reported, and its annotations are left out.
Each item is all or nothing: if any of its annotations cannot be imported (a category with
no label, coordinates outside the image, a malformed shape), none is, and each failure is
reported with its element (`annotations[17] (id 42)`). Per matched item, `mode` says what
happens to the annotations it already has: REPLACE deletes them, CONCATENATE keeps them,
SKIP leaves an item that has any untouched. `createMissingLabels` adds the categories the
ontology lacks as top-level labels (a dataset without an ontology takes any label).

Items are written a batch at a time, each batch in one transaction with its counters and the
command's cursor (how many images are done), so a resumed import continues after the last
committed batch and nothing is imported twice.
"""

import asyncio
import json
import stat
import tempfile
import zipfile
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum
from pathlib import PurePosixPath
from typing import IO, Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import commands
from resolvers.access import Access, Action
from resolvers.annotations import AnnotationInput, count, new_annotation
from resolvers.datasets import add_missing_labels, writable_dataset
from resolvers.errors import BadUserInput, LoomError
from resolvers.inputs import Input, parse
from resolvers.transactions import in_transaction

KIND = "import"
BUCKET = "imports"
MAX_MEMBERS = 200_000
MAX_BYTES = 4 << 30
MAX_RATIO = 200
MAX_ERRORS = 100
BATCH = 200
ZIP_MAGIC = b"PK\x03\x04"


class ImportMode(StrEnum):
    REPLACE = "replace"
    CONCATENATE = "concatenate"
    SKIP = "skip"


class ImportFormat(StrEnum):
    COCO = "coco"


class ImportInput(Input):
    format: ImportFormat = ImportFormat.COCO
    mode: ImportMode = ImportMode.REPLACE
    create_missing_labels: bool = False


class ImportRefused(LoomError):
    """The uploaded file cannot be imported at all; nothing was written."""

    code = "BAD_USER_INPUT"


# --- the upload ---------------------------------------------------------------------------


def _unsafe(info: zipfile.ZipInfo) -> str | None:
    """Why an archive member must not be read, if it must not."""
    path = PurePosixPath(info.filename.replace("\\", "/"))
    if path.is_absolute() or info.filename[1:3] == ":\\" or info.filename[1:3] == ":/":
        return "an absolute path"
    if ".." in path.parts:
        return "a path with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.file_size > MAX_BYTES:
        return f"over {MAX_BYTES} bytes"
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        return f"inflating {info.file_size // info.compress_size} times (a zip bomb?)"
    return None


def coco_member(archive: zipfile.ZipFile) -> str:
    """The one COCO file of a safe archive; ImportRefused for an unsafe or unusable one."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ImportRefused(f"The archive holds {len(members)} files (at most {MAX_MEMBERS})")
    for info in members:
        if (reason := _unsafe(info)) is not None:
            raise ImportRefused(f"The archive's member {info.filename!r} is {reason}")
    total = sum(info.file_size for info in members)
    if total > MAX_BYTES:
        raise ImportRefused(f"The archive inflates to {total} bytes (at most {MAX_BYTES})")
    found = [i.filename for i in members if i.filename.lower().endswith(".json")]
    if len(found) != 1:
        raise ImportRefused(
            f"The archive must hold one COCO .json file; it holds {len(found)}", files=found[:10]
        )
    return found[0]


def check_upload(upload: IO[bytes]) -> None:
    """BAD_USER_INPUT for an upload that is neither a safe archive nor a JSON file."""
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(upload) as archive:
                coco_member(archive)
        except zipfile.BadZipFile as exc:
            raise ImportRefused(f"The upload is not a readable zip archive: {exc}") from exc
        finally:
            upload.seek(0)
        return
    if not head.lstrip().startswith(b"{"):
        raise ImportRefused("Upload a COCO .json file, or a .zip holding one")


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
    await asyncio.to_thread(check_upload, upload)
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
        },
    )
    await access.db.commands.insert_one(command)
    await enqueue(command)
    return command


# --- reading the COCO file ----------------------------------------------------------------


def _read_coco(spool: IO[bytes]) -> tuple[str, dict[str, Any]]:
    """(the COCO file's name, its content), from the upload kept in `spool`."""
    spool.seek(0)
    if spool.read(4) == ZIP_MAGIC:
        with zipfile.ZipFile(spool) as archive:
            name = coco_member(archive)
            raw = archive.read(name)
    else:
        spool.seek(0)
        name, raw = "the uploaded file", spool.read()
    try:
        return name, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{name} is not JSON: {exc}") from exc


def _require(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise ImportRefused(f"{where} {what}")


def _checked(name: str, doc: Any) -> dict[str, Any]:
    """The COCO document's shape: ImportRefused naming the first element that is wrong."""
    _require(isinstance(doc, dict), name, "must be a JSON object")
    for key in ("images", "annotations", "categories"):
        _require(isinstance(doc.get(key), list), name, f"must have a list {key!r}")
    for index, image in enumerate(doc["images"]):
        where = f"{name}: images[{index}]"
        _require(isinstance(image, dict), where, "must be an object")
        _require(isinstance(image.get("id"), int), where, "needs an integer id")
        _require(isinstance(image.get("file_name"), str), where, "needs a file_name")
    for index, category in enumerate(doc["categories"]):
        where = f"{name}: categories[{index}]"
        _require(isinstance(category, dict), where, "must be an object")
        _require(isinstance(category.get("id"), int), where, "needs an integer id")
        _require(isinstance(category.get("name"), str), where, "needs a name")
    for index, annotation in enumerate(doc["annotations"]):
        where = f"{name}: annotations[{index}]"
        _require(isinstance(annotation, dict), where, "must be an object")
        for key in ("image_id", "category_id"):
            _require(isinstance(annotation.get(key), int), where, f"needs an integer {key}")
    return doc


# --- COCO annotations as Loom's --------------------------------------------------------------


def _shapes(annotation: dict[str, Any]) -> list[tuple[str, Any]]:
    """The Loom shapes of one COCO annotation: its polygons, its mask, or its box."""
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        return [("polygon", _points(ring)) for ring in segmentation]
    if isinstance(segmentation, dict):
        return [("segmentation", segmentation)]
    box = annotation.get("bbox")
    numbers = isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))
    if not numbers:
        return [("box", box)]  # refused by the box's validation, which says why
    x, y, width, height = box
    return [("box", {"left": x, "top": y, "right": x + width, "bottom": y + height})]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _points(ring: Any) -> Any:
    """A COCO polygon `[x1, y1, x2, y2, …]` as points; anything else as it came, for the
    polygon's validation to refuse."""
    if not isinstance(ring, list) or len(ring) % 2:
        return ring
    return [[ring[i], ring[i + 1]] for i in range(0, len(ring), 2)]


def _loom_annotations(
    creator: ObjectId | None,
    coco: list[tuple[int, dict[str, Any]]],
    item: dict[str, Any],
    dataset: dict[str, Any],
    label_of: dict[int, str],
    name: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An item's annotations as Loom stores them, or none and the errors (all or nothing)."""
    made, errors = [], []
    for index, annotation in coco:
        where = f"annotations[{index}]" + (
            f" (id {annotation['id']})" if "id" in annotation else ""
        )
        label = label_of.get(annotation["category_id"])
        if label is None:
            errors.append(_error(name, where, f"no category {annotation['category_id']}"))
            continue
        attributes = dict(annotation.get("attributes") or {})
        if annotation.get("iscrowd") in (1, True):
            attributes["iscrowd"] = True
        for kind, coordinates in _shapes(annotation):
            try:
                given = {"itemId": str(item["_id"]), "type": kind, "label": label}
                given |= {"coordinates": coordinates, "attributes": attributes}
                checked = AnnotationInput.model_validate(given)
                made.append(new_annotation(creator, checked, item, dataset))
            except ValidationError as exc:
                errors.append(_error(name, where, BadUserInput.from_validation(exc).message))
            except LoomError as exc:
                errors.append(_error(name, where, exc.message))
    return ([], errors) if errors else (made, [])


def _error(file: str, element: str, message: str) -> dict[str, Any]:
    return {"file": file, "element": element, "message": message}


# --- the command ---------------------------------------------------------------------------


async def run_import(db: AsyncDatabase, command: dict[str, Any], lease: timedelta) -> None:
    spec = command["input"]
    with tempfile.TemporaryFile() as spool:
        await AsyncGridFSBucket(db, bucket_name=BUCKET).download_to_stream(spec["uploadId"], spool)
        name, doc = await asyncio.to_thread(_read_coco, spool)
    coco = await asyncio.to_thread(_checked, name, doc)
    dataset = await db.datasets.find_one({"_id": spec["datasetId"]})
    if dataset is None or dataset["deleting"]:
        raise ImportRefused("The dataset is gone")
    names = {category["id"]: category["name"] for category in coco["categories"]}
    if spec["createMissingLabels"] and dataset["labels"]:
        plain = [n for n in names.values() if "." not in n]
        dataset = await add_missing_labels(db, dataset["_id"], plain)
    per_image: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for index, annotation in enumerate(coco["annotations"]):
        per_image.setdefault(annotation["image_id"], []).append((index, annotation))
    images = coco["images"]
    progress = command["cursor"] or {"done": 0, "report": {}, "errors": [], "errorsCount": 0}
    for start in range(progress["done"], len(images), BATCH):
        progress = await _import_batch(
            db, command, dataset, names, images, start, per_image, name, progress, lease
        )
    result = {"images": len(images), **progress["report"]}
    result |= {"errors": progress["errors"], "errorsCount": progress["errorsCount"]}
    await db.commands.update_one({"_id": command["_id"]}, {"$set": {"result": result}})


async def _import_batch(
    db: AsyncDatabase,
    command: dict[str, Any],
    dataset: dict[str, Any],
    names: dict[int, str],
    images: list[dict[str, Any]],
    start: int,
    per_image: dict[int, list[tuple[int, dict[str, Any]]]],
    name: str,
    progress: dict[str, Any],
    lease: timedelta,
) -> dict[str, Any]:
    """Match a batch of images with items, convert their annotations and write them, with
    the import's progress (its cursor: images done, counts, the first errors) in the same
    transaction; the progress after it."""
    mode = ImportMode(command["input"]["mode"])
    batch = images[start : start + BATCH]
    report: Counter[str] = Counter(progress["report"])
    errors: list[dict[str, Any]] = []
    query = {
        "datasetId": dataset["_id"],
        "filename": {"$in": ["/" + image["file_name"].lstrip("/") for image in batch]},
    }
    items = {item["filename"]: item async for item in db.items.find(query)}
    made: dict[ObjectId, list[dict[str, Any]]] = {}
    for offset, image in enumerate(batch):
        path = "/" + image["file_name"].lstrip("/")
        item = items.get(path)
        if item is None:
            errors.append(_error(name, f"images[{start + offset}]", f"no item at {path}"))
            report["unmatchedImages"] += 1
            continue
        docs, failed = _loom_annotations(
            command["creator"], per_image.get(image["id"], []), item, dataset, names, name
        )
        if failed:
            errors.extend(failed)
            report["refusedItems"] += 1
        elif mode == ImportMode.SKIP and item["annotationsCount"] > 0:
            report["skippedItems"] += 1
        else:
            made[item["_id"]] = docs
    targets = {item["_id"]: item for item in items.values()}
    docs = [doc for item_docs in made.values() for doc in item_docs]
    report["updatedItems"] += len(made)
    report["importedAnnotations"] += len(docs)

    async def write(session: AsyncClientSession) -> dict[str, Any]:
        replaced = Counter(report)
        if mode == ImportMode.REPLACE and made:
            chosen = {"itemId": {"$in": list(made)}}
            gone = await db.annotations.find(chosen, {"itemId": 1}, session=session).to_list()
            await db.annotations.delete_many(chosen, session=session)
            replaced["replacedAnnotations"] += len(gone)
            dropped = Counter(annotation["itemId"] for annotation in gone)
            await count(db, Counter({k: -n for k, n in dropped.items()}), session, targets)
        if docs:
            await db.annotations.insert_many(docs, session=session)
            await count(db, Counter(doc["itemId"] for doc in docs), session, targets)
        after = {
            "done": start + len(batch),
            "report": dict(replaced),
            "errors": (progress["errors"] + errors)[:MAX_ERRORS],
            "errorsCount": progress["errorsCount"] + len(errors),
        }
        percent = min(99, after["done"] * 100 // max(1, len(images)))
        await commands.advance(db, command, after, percent, lease, session)
        return after

    return await in_transaction(db, write)
