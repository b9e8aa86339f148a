"""Predictions: a model run's boxes, polygons, cuboids, masks and classes, uploaded with
Nucleus' update-or-skip semantics.

A prediction names its item by id or by the item's `referenceId`, and may carry an
`annotationId` of the caller's own: with `update: true` a prediction with the same (item,
annotationId) replaces the stored one, with `update: false` it is skipped. Predictions without
an annotationId are always added. The answer counts what was processed and what was ignored.

Every prediction is checked before anything is written — its shape with the annotation shapes
of resolvers/annotation_shapes.py, its label against the run's labels, its item — and the bad
ones are reported by index; nothing is written unless the caller asked for partial acceptance,
which writes the good ones and reports the rest. Uploads of more than `SYNC_LIMIT` predictions
run as a Command: the request stores them as they came, and the worker checks them all, then
writes them page by page with the command's cursor (resolvers/prediction_uploads.py).

Each write also marks its items changed for the run (collection `model_run_changes`), so the
next commit recomputes only those items.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from bson import ObjectId
from bson.errors import InvalidId
from pydantic import Field, StringConstraints, ValidationError, field_validator, model_validator
from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import json_documents
from resolvers.annotation_shapes import AnnotationType, annotation_type, validate_coordinates
from resolvers.errors import BadUserInput, LoomError
from resolvers.inputs import Input
from resolvers.timestamps import new_document, now

SYNC_LIMIT = 5_000
MAX_UPLOAD = 1_000_000
MAX_REPORTED = 100
"""Bad predictions listed in an error or a command's result; the count is always given."""

LabelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
CallerKey = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class PredictionType(StrEnum):
    BOX = "box"
    POLYGON = "polygon"
    CUBOID = "cuboid"
    SEGMENTATION = "segmentation"
    CLASSIFICATION = "classification"


class PredictionInput(Input):
    item_id: str | None = None
    reference_id: CallerKey | None = None
    annotation_id: CallerKey | None = None
    type: PredictionType
    label: LabelName
    coordinates: Any = None
    confidence: Probability = 1.0
    class_pdf: dict[LabelName, Probability] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type", mode="before")
    @classmethod
    def _dtlpy_names_too(cls, value: Any) -> Any:
        """dtlpy's names (`segment`, `binary`, `cube`, `class`) name the same shapes."""
        if not isinstance(value, str):
            return value
        try:
            return str(annotation_type(value))
        except ValueError:
            return value

    @model_validator(mode="after")
    def _one_item(self) -> "PredictionInput":
        if (self.item_id is None) == (self.reference_id is None):
            raise ValueError("give exactly one of itemId and referenceId")
        return self


@dataclass
class Checked:
    """The outcome of checking an upload: documents ready to write, bad ones by index (the
    first MAX_REPORTED of them listed, the count of all kept)."""

    docs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0

    def reject(self, index: int, message: str, field_name: str | None = None) -> None:
        self.bad += 1
        self.errors.append({"index": index, "field": field_name, "message": message})

    def settle(self) -> "Checked":
        self.errors = sorted(self.errors, key=lambda e: e["index"])[:MAX_REPORTED]
        return self

    def refusal(self) -> BadUserInput:
        shown = "; ".join(f"predictions[{e['index']}]: {e['message']}" for e in self.errors[:5])
        more = f" (and {self.bad - 5} more)" if self.bad > 5 else ""
        return BadUserInput(
            f"{self.bad} predictions are invalid, nothing was written: {shown}{more}",
            field="predictions",
            invalid=self.bad,
            errors=self.errors,
        )


@dataclass
class Stored:
    processed: int = 0
    ignored: int = 0


def _object_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


async def _items(
    db: AsyncDatabase, run: dict[str, Any], inputs: list[tuple[int, PredictionInput]]
) -> tuple[dict[ObjectId, dict], dict[str, dict]]:
    """The run's dataset's items the inputs name, by id and by reference id (one read each)."""
    ids = {oid for _, p in inputs if p.item_id and (oid := _object_id(p.item_id))}
    refs = {p.reference_id for _, p in inputs if p.reference_id}
    projection = {"width": 1, "height": 1, "referenceId": 1}
    by_id: dict[ObjectId, dict] = {}
    by_ref: dict[str, dict] = {}
    if ids:
        found = db.items.find(
            {"_id": {"$in": list(ids)}, "datasetId": run["datasetId"]}, projection
        )
        by_id = {item["_id"]: item async for item in found}
    if refs:
        found = db.items.find(
            {"referenceId": {"$in": list(refs)}, "datasetId": run["datasetId"]}, projection
        )
        by_ref = {item["referenceId"]: item async for item in found}
    return by_id, by_ref


def coordinates_of(p: PredictionInput, item: dict[str, Any]) -> Any:
    """The prediction's coordinates as stored, checked against the item's size (None for a
    classification)."""
    if p.type == PredictionType.CLASSIFICATION:
        return None
    return validate_coordinates(
        AnnotationType(p.type), p.coordinates, width=item.get("width"), height=item.get("height")
    )


def returned(result: Any) -> list[Any]:
    """The predictions a predict function returned (`{"predictions": [...]}` or the list)."""
    found = result.get("predictions") if isinstance(result, dict) else result
    if not isinstance(found, list):
        raise ValueError("a predict function returns {'predictions': [...]}")
    return found


def _document(
    run: dict[str, Any], creator: ObjectId | None, p: PredictionInput, item: dict[str, Any]
) -> dict[str, Any]:
    labels = set(run.get("labels") or [])
    if labels and p.label not in labels:
        raise BadUserInput(f"label {p.label!r} is not one of the model's labels", field="label")
    if p.class_pdf is not None and labels and (unknown := set(p.class_pdf) - labels):
        raise BadUserInput(
            f"classPdf names labels the model does not have: {sorted(unknown)}", field="classPdf"
        )
    coordinates = coordinates_of(p, item)
    return new_document(
        creator,
        orgId=run["orgId"],
        projectId=run["projectId"],
        runId=run["_id"],
        datasetId=run["datasetId"],
        itemId=item["_id"],
        annotationId=p.annotation_id,
        type=str(p.type),
        label=p.label,
        coordinates=coordinates,
        confidence=p.confidence,
        classPdf=p.class_pdf,
        metadata=json_documents.check(p.metadata, "metadata"),
    )


async def check(
    db: AsyncDatabase, run: dict[str, Any], creator: ObjectId | None, raw: Iterable[Any]
) -> Checked:
    """Every prediction checked; the good ones as documents, the bad ones by index."""
    checked = Checked()
    parsed: list[tuple[int, PredictionInput]] = []
    for index, data in enumerate(raw):
        try:
            parsed.append((index, PredictionInput.model_validate(data)))
        except ValidationError as exc:
            error = BadUserInput.from_validation(exc)
            checked.reject(index, error.message, error.extensions["fields"][0]["field"])
    by_id, by_ref = await _items(db, run, parsed)
    for index, p in parsed:
        if p.item_id is not None:
            item = by_id.get(_object_id(p.item_id))  # type: ignore[arg-type]
            missing = f"itemId {p.item_id!r} is not an item of the run's dataset"
        else:
            item = by_ref.get(p.reference_id)  # type: ignore[arg-type]
            missing = f"referenceId {p.reference_id!r} names no item of the run's dataset"
        if item is None:
            checked.reject(index, missing, "itemId" if p.item_id else "referenceId")
            continue
        try:
            checked.docs.append(_document(run, creator, p, item))
        except LoomError as exc:
            checked.reject(index, exc.message, exc.extensions.get("field"))
    return checked.settle()


def _key(doc: dict[str, Any]) -> tuple[ObjectId, str]:
    return doc["itemId"], doc["annotationId"]


async def store(
    db: AsyncDatabase,
    run: dict[str, Any],
    docs: list[dict[str, Any]],
    update: bool,
    session: AsyncClientSession,
) -> Stored:
    """Write checked predictions in the caller's transaction: keyed ones replace (update) or
    yield to (skip) the stored prediction with the same (item, annotationId); within one upload
    the last of a key wins when updating, the first when skipping."""
    stored = Stored()
    keyed: dict[tuple[ObjectId, str], dict[str, Any]] = {}
    plain = []
    for doc in docs:
        if doc["annotationId"] is None:
            plain.append(doc)
        elif update or _key(doc) not in keyed:
            if _key(doc) in keyed:
                stored.ignored += 1
            keyed[_key(doc)] = doc
        else:
            stored.ignored += 1
    existing: dict[tuple[ObjectId, str], dict[str, Any]] = {}
    if keyed:
        found = db.predictions.find(
            {
                "runId": run["_id"],
                "itemId": {"$in": list({item for item, _ in keyed})},
                "annotationId": {"$in": list({key for _, key in keyed})},
            },
            {"itemId": 1, "annotationId": 1, "createdAt": 1, "creator": 1},
            session=session,
        )
        existing = {_key(doc): doc async for doc in found if _key(doc) in keyed}
    written = list(plain)
    writes: list[Any] = [InsertOne(d) for d in plain]
    added = len(plain)
    for key, doc in keyed.items():
        if key not in existing:
            writes.append(InsertOne(doc))
            added += 1
        elif update:
            old = existing[key]
            doc = {**doc, "_id": old["_id"], "createdAt": old["createdAt"]}
            writes.append(ReplaceOne({"_id": old["_id"]}, doc))
        else:
            stored.ignored += 1
            continue
        written.append(doc)
    if written:
        await db.predictions.bulk_write(writes, ordered=False, session=session)
        await mark_changed(db, run, {doc["itemId"] for doc in written}, added, session)
    stored.processed = len(written)
    return stored


async def mark_changed(
    db: AsyncDatabase,
    run: dict[str, Any],
    items: set[ObjectId],
    added: int,
    session: AsyncClientSession,
) -> None:
    """Record, in the caller's transaction, that these items' predictions changed (the next
    commit recomputes them) and that the run holds `added` more predictions."""
    moment = now()
    await db.model_run_changes.bulk_write(
        [
            UpdateOne(
                {"_id": {"runId": run["_id"], "itemId": item}},
                {"$set": {"runId": run["_id"], "at": moment}},
                upsert=True,
            )
            for item in items
        ],
        ordered=False,
        session=session,
    )
    await db.model_runs.update_one(
        {"_id": run["_id"]},
        {"$inc": {"predictionsCount": added}, "$set": {"changed": True, "updatedAt": moment}},
        session=session,
    )


async def forget_items(
    db: AsyncDatabase, item_ids: list[ObjectId], session: AsyncClientSession
) -> None:
    """In the deleting transaction: the deleted items' predictions leave every run, and each
    run marks those items changed, so its next commit drops them."""
    pipeline = [
        {"$match": {"itemId": {"$in": item_ids}}},
        {"$group": {"_id": "$runId", "count": {"$sum": 1}, "items": {"$addToSet": "$itemId"}}},
    ]
    runs = await (await db.predictions.aggregate(pipeline, session=session)).to_list()
    if not runs:
        return
    await db.predictions.delete_many({"itemId": {"$in": item_ids}}, session=session)
    for run in runs:
        await mark_changed(db, run, set(run["items"]), -run["count"], session)
