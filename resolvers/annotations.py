"""Annotations on items: per-type validated coordinates, bulk all-or-nothing, exact counters.

A label must belong to the dataset's ontology when the dataset has one; a dataset without
labels accepts any label (ontologies are often built after the first annotations).
"""

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, NamedTuple

from bson import ObjectId
from pydantic import Field, StringConstraints, ValidationError, field_validator, model_validator
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import dql, json_documents, labels
from resolvers.access import Access, Action
from resolvers.annotation_shapes import AnnotationType, annotation_type, validate_coordinates
from resolvers.datasets import writable_dataset
from resolvers.errors import BadUserInput, LimitExceeded, LoomError, NotFound
from resolvers.inputs import Input, object_id
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction

MAX_BULK = 10_000
MAX_FRAMES = 10_000

LabelPath = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
ObjectKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class AnnotationStatus(StrEnum):
    ISSUE = "issue"
    APPROVED = "approved"
    REVIEW = "review"
    CLEAR = "clear"


class ModelInfo(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    model_id: str | None = None
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class Frame(Input):
    """One video frame of a tracked object; `fixed` marks a key frame set by a person."""

    frame: int = Field(ge=0)
    coordinates: Any = None
    fixed: bool = True
    object_visible: bool = True


class AnnotationInput(Input):
    item_id: str
    type: AnnotationType
    label: LabelPath
    coordinates: Any = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    status: AnnotationStatus = AnnotationStatus.CLEAR
    automated: bool = False
    parent_id: str | None = None
    object_id: ObjectKey | None = None
    frames: list[Frame] = Field(default_factory=list, max_length=MAX_FRAMES)
    model_info: ModelInfo | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type", mode="before")
    @classmethod
    def _dtlpy_names_too(cls, value: Any) -> Any:
        """dtlpy's type names (`class`, `segment`, `binary`, `cube`, …) name Loom's types."""
        return annotation_type(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _frames_are_unique(self) -> "AnnotationInput":
        numbers = [f.frame for f in self.frames]
        if len(numbers) != len(set(numbers)):
            raise ValueError("frames must not repeat a frame number")
        return self


class AnnotationChanges(Input):
    label: LabelPath | None = None
    coordinates: Any = None
    attributes: dict[str, Any] | None = None
    status: AnnotationStatus | None = None
    frames: list[Frame] | None = Field(default=None, max_length=MAX_FRAMES)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "AnnotationChanges":
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


def _prefixed(error: LoomError, index: int) -> LoomError:
    error.extensions = {**error.extensions, "index": index}
    error.message = f"annotations[{index}]: {error.message}"
    error.args = (error.message,)
    return error


def _parse_all(data: list[dict[str, Any]]) -> list[AnnotationInput]:
    """Validate every input before anything is written; the first bad one names its index."""
    if len(data) > MAX_BULK:
        raise LimitExceeded("maxAnnotationsPerRequest", MAX_BULK, f"{len(data)} annotations")
    parsed = []
    for index, raw in enumerate(data):
        try:
            parsed.append(AnnotationInput.model_validate(raw))
        except ValidationError as exc:
            raise _prefixed(BadUserInput.from_validation(exc), index) from exc
    return parsed


def _check_label(label: str, dataset: dict[str, Any]) -> None:
    if dataset["labels"] and label not in labels.paths(dataset["labels"]):
        raise BadUserInput(
            f"Label {label!r} is not in the ontology of dataset {dataset['name']!r}",
            field="label",
        )


def _shape(kind: AnnotationType, coordinates: Any, item: dict[str, Any]) -> Any:
    return validate_coordinates(kind, coordinates, width=item["width"], height=item["height"])


def _frames(kind: AnnotationType, frames: list[Frame], item: dict[str, Any]) -> list[dict]:
    return [
        {
            "frame": f.frame,
            "coordinates": _shape(kind, f.coordinates, item),
            "fixed": f.fixed,
            "objectVisible": f.object_visible,
        }
        for f in sorted(frames, key=lambda f: f.frame)
    ]


async def _targets(
    access: Access, item_ids: set[ObjectId]
) -> tuple[dict[ObjectId, dict], dict[ObjectId, dict]]:
    """The items annotated and their datasets, each checked writable for annotations."""
    scope = await access.scope()
    found = await access.db.items.find(
        {"$and": [{"_id": {"$in": list(item_ids)}}, scope]}
    ).to_list()
    items = {item["_id"]: item for item in found}
    missing = item_ids - set(items)
    if missing:
        raise NotFound("Item not found", id=str(next(iter(missing))))
    datasets = {}
    for dataset_id in {item["datasetId"] for item in found}:
        datasets[dataset_id] = await writable_dataset(access, dataset_id, Action.WRITE_ANNOTATIONS)
    return items, datasets


def new_annotation(
    creator: ObjectId | None,
    annotation: AnnotationInput,
    item: dict[str, Any],
    dataset: dict[str, Any],
) -> dict[str, Any]:
    """The annotation as stored, not yet written: its label in the dataset's ontology, its
    shape checked against the item's size."""
    _check_label(annotation.label, dataset)
    return new_document(
        creator,
        orgId=item["orgId"],
        projectId=item["projectId"],
        datasetId=item["datasetId"],
        itemId=item["_id"],
        type=str(annotation.type),
        label=annotation.label,
        coordinates=_shape(annotation.type, annotation.coordinates, item),
        attributes=json_documents.check(annotation.attributes, "attributes", 16 * 1024),
        status=str(annotation.status),
        automated=annotation.automated,
        parentId=object_id(annotation.parent_id, "parentId") if annotation.parent_id else None,
        objectId=annotation.object_id,
        frames=_frames(annotation.type, annotation.frames, item),
        modelInfo=annotation.model_info.model_dump(by_alias=True)
        if annotation.model_info
        else None,
        metadata={"user": json_documents.check(annotation.metadata, "metadata")},
    )


async def count(
    db: AsyncDatabase, per_item: Counter, session: AsyncClientSession, items: dict[ObjectId, dict]
) -> None:
    """Move the item and dataset counters by the annotations added (or removed, if negative):
    the items' in one round trip."""
    per_dataset: Counter = Counter()
    updates = []
    for item_id, n in per_item.items():
        per_dataset[items[item_id]["datasetId"]] += n
        moved = [
            {"$set": {"annotationsCount": {"$add": ["$annotationsCount", n]}}},
            {"$set": {"annotated": {"$gt": ["$annotationsCount", 0]}}},
        ]
        updates.append(UpdateOne({"_id": item_id}, moved))
    if updates:
        await db.items.bulk_write(updates, ordered=False, session=session)
    for dataset_id, n in per_dataset.items():
        await db.datasets.update_one(
            {"_id": dataset_id}, {"$inc": {"annotationsCount": n}}, session=session
        )


async def _check_parents(
    access: Access, docs: list[dict[str, Any]], session: AsyncClientSession
) -> None:
    """A parent must be an annotation of the same item (possibly created in this request)."""
    wanted = {(d["parentId"], d["itemId"]) for d in docs if d["parentId"] is not None}
    if not wanted:
        return
    created = {(d["_id"], d["itemId"]) for d in docs}
    stored = await access.db.annotations.find(
        {"_id": {"$in": [p for p, _ in wanted]}}, {"itemId": 1}, session=session
    ).to_list()
    known = created | {(d["_id"], d["itemId"]) for d in stored}
    for parent, item in wanted:
        if (parent, item) not in known:
            raise BadUserInput(
                f"parentId {parent} is not an annotation of the same item", field="parentId"
            )


async def create_annotations(access: Access, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create up to 10,000 annotations: all of them, or — on any invalid one — none."""
    inputs = _parse_all(data)
    if not inputs:
        return []
    item_ids = {object_id(a.item_id, "itemId") for a in inputs}
    items, datasets = await _targets(access, item_ids)
    docs = []
    for index, annotation in enumerate(inputs):
        item = items[ObjectId(annotation.item_id)]
        try:
            dataset = datasets[item["datasetId"]]
            docs.append(new_annotation(access.user_id, annotation, item, dataset))
        except LoomError as exc:
            raise _prefixed(exc, index) from exc

    async def work(session: AsyncClientSession) -> None:
        await _check_parents(access, docs, session)
        await access.db.annotations.insert_many(docs, ordered=False, session=session)
        await count(access.db, Counter(d["itemId"] for d in docs), session, items)

    await in_transaction(access.db, work)
    return docs


async def get_annotation(access: Access, annotation_id: ObjectId) -> dict[str, Any]:
    return await access.visible(
        "annotations", annotation_id, project_field="projectId", entity="Annotation"
    )


async def update_annotation(
    access: Access, annotation_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    annotation = await get_annotation(access, annotation_id)
    items, datasets = await _targets(access, {annotation["itemId"]})
    item = items[annotation["itemId"]]
    try:
        changes = AnnotationChanges.model_validate(data)
    except ValidationError as exc:
        raise BadUserInput.from_validation(exc) from exc
    kind = AnnotationType(annotation["type"])
    fields: dict[str, Any] = {}
    if changes.label is not None:
        _check_label(changes.label, datasets[item["datasetId"]])
        fields["label"] = changes.label
    if "coordinates" in changes.model_fields_set:
        fields["coordinates"] = _shape(kind, changes.coordinates, item)
    if changes.attributes is not None:
        fields["attributes"] = json_documents.check(changes.attributes, "attributes", 16 * 1024)
    if changes.status is not None:
        fields["status"] = str(changes.status)
    if changes.frames is not None:
        fields["frames"] = _frames(kind, changes.frames, item)
    if changes.metadata is not None:
        fields["metadata.user"] = json_documents.check(changes.metadata, "metadata")
    return await access.db.annotations.find_one_and_update(
        {"_id": annotation_id},
        {"$set": {**fields, "updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )


async def delete_annotations(access: Access, annotation_ids: list[ObjectId]) -> int:
    """Delete annotations (all or none) with their descendants: the annotations that name them
    as parent, those that name these, and so on."""
    if len(annotation_ids) > MAX_BULK:
        raise LimitExceeded("maxAnnotationsPerRequest", MAX_BULK, f"{len(annotation_ids)}")
    scope = await access.scope()
    query = {"$and": [{"_id": {"$in": annotation_ids}}, scope]}
    found = await access.db.annotations.find(query, {"itemId": 1}).to_list()
    if len(found) != len(set(annotation_ids)):
        raise NotFound("Some annotations were not found")
    items, _ = await _targets(access, {a["itemId"] for a in found})

    async def work(session: AsyncClientSession) -> int:
        # Read again in the transaction that deletes: a concurrent delete of the same
        # annotations makes this one conflict and run again, and then find them gone.
        roots = await access.db.annotations.find(query, {"itemId": 1}, session=session).to_list()
        if len(roots) != len(found):
            raise NotFound("Some annotations were not found")
        doomed = {a["_id"]: a for a in roots}
        parents = list(doomed)
        on_items = list({a["itemId"] for a in roots})  # a child is on its parent's item
        while parents:
            children = await access.db.annotations.find(
                {
                    "itemId": {"$in": on_items},
                    "parentId": {"$in": parents},
                    "_id": {"$nin": list(doomed)},
                },
                {"itemId": 1},
                session=session,
            ).to_list()
            doomed.update((a["_id"], a) for a in children)
            parents = [a["_id"] for a in children]
        await access.db.annotations.delete_many({"_id": {"$in": list(doomed)}}, session=session)
        per_item = Counter({})
        for annotation in doomed.values():
            per_item[annotation["itemId"]] -= 1
        await count(access.db, per_item, session, items)
        return len(doomed)

    return await in_transaction(access.db, work)


async def of_items(
    db: AsyncDatabase,
    item_ids: list[ObjectId],
    query: dict[str, Any],
    fields: Iterable[str] | None = None,
) -> dict[ObjectId, list[dict[str, Any]]]:
    """The annotations of already-visible items matching `query`, grouped by item, in one
    query — what the per-request loader batches every `item.annotations` field into. Only
    `fields` (with `_id` and `itemId`) are read, when given."""
    grouped: dict[ObjectId, list[dict[str, Any]]] = {}
    projection = None if fields is None else dict.fromkeys([*fields, "itemId"], 1)
    cursor = (
        db.annotations.find({"$and": [{"itemId": {"$in": item_ids}}, query]}, projection)
        .sort([("itemId", 1), ("_id", 1)])
        .batch_size(MAX_BULK)
    )
    async for doc in cursor:
        grouped.setdefault(doc["itemId"], []).append(doc)
    return grouped


SORTABLE = frozenset({"_id", "type", "label", "status", "automated", "createdAt", "updatedAt"})
"""Fields every annotation has, each of one kind, so an item's annotations sort in memory."""


class AnnotationRead(NamedTuple):
    """What an `annotations(filter:)` argument asks for: the MongoDB query, the order, and the
    dtlpy page (offset, size) of the item's annotations, if any."""

    query: dict[str, Any]
    sort: tuple[tuple[str, int], ...]
    window: tuple[int, int] | None


def read_of(dql_input: Any) -> AnnotationRead:
    """An `annotations(filter:)` argument, a bare DQL filter or a whole query, checked."""
    if dql_input is None:
        return AnnotationRead({}, (), None)
    query = dql.parse(dql.envelope("annotations", dql_input))
    if query.join is not None:
        raise BadUserInput("Annotation filters take no join", field="join")
    unsortable = [field for field, _ in query.sort if field not in SORTABLE]
    if unsortable:
        raise BadUserInput(
            f"An item's annotations can be ordered by {', '.join(sorted(SORTABLE - {'_id'}))}"
            f" or id, not {', '.join(unsortable)}",
            field="sort",
        )
    return AnnotationRead(query.filter, tuple(query.sort), query.window)


def held(docs: list[dict[str, Any]], dql_input: Any) -> list[dict[str, Any]]:
    """Annotations held in memory (an item's in a dataset version) through an
    `annotations(filter:)` argument: those MongoDB would select, in the order and page it
    asks for (the in-memory matcher agrees with MongoDB, resolvers/dql.py)."""
    read = read_of(dql_input)
    given = dql.envelope("annotations", dql_input).get("filter") if dql_input else None
    check = dql.matcher("annotations", given)
    return arrange([doc for doc in sorted(docs, key=lambda d: d["_id"]) if check(doc)], read)


def arrange(docs: list[dict[str, Any]], read: AnnotationRead) -> list[dict[str, Any]]:
    """An item's annotations (read in id order) in the order and page the read asks for."""
    ordered = list(docs)
    for field, direction in reversed(read.sort):  # stable sorts, the last key first
        ordered.sort(key=lambda doc: doc[field], reverse=direction < 0)
    if read.window is None:
        return ordered
    offset, size = read.window
    return ordered[offset : offset + size]
