"""Datasets in projects: ontology, directories, readonly mode, exact counters, deletion."""

from collections import Counter
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from resolvers import directories, files, idempotency, labels
from resolvers.access import Access, Action
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.inputs import Changes, Description, Input, Name, parse
from resolvers.labels import Label
from resolvers.pagination import Page, PageRequest, paginate_many
from resolvers.projects import get_project
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction
from resolvers.versions import removal

LABEL_UPDATE_ATTEMPTS = 5


class DatasetInput(Input):
    name: Name
    description: Description = ""
    labels: list[Label] = Field(default_factory=list)


class DatasetChanges(Changes):
    name: Name | None = None
    description: Description | None = None
    readonly: bool | None = None


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A dataset named {name!r} already exists in this project", field="name")


async def create_dataset(
    access: Access,
    project_id: ObjectId,
    data: dict[str, Any],
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Create a dataset; with an idempotency key used before, the dataset that key created."""
    key = idempotency.key(access, "createDataset", idempotency_key, [str(project_id), data])
    if (first := await idempotency.first_result(access.db, key)) is not None:
        return await get_dataset(access, first)
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_DATASETS)
    dataset_input = parse(DatasetInput, data)
    doc = new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project["_id"],
        name=dataset_input.name,
        description=dataset_input.description,
        readonly=False,
        labels=labels.add([], dataset_input.labels),
        labelsVersion=0,
        directories=["/"],
        itemsCount=0,
        annotationsCount=0,
        deleting=False,
    )

    async def create(session: Any) -> None:
        try:
            await access.db.datasets.insert_one(doc, session=session)
        except DuplicateKeyError as exc:
            raise _name_taken(dataset_input.name) from exc

    if (first := await idempotency.once(access.db, key, doc["_id"], create)) is not None:
        return await get_dataset(access, first)
    return doc


async def get_dataset(access: Access, dataset_id: ObjectId) -> dict[str, Any]:
    doc = await access.visible("datasets", dataset_id, project_field="projectId", entity="Dataset")
    if doc["deleting"]:
        raise NotFound("Dataset not found", id=str(dataset_id))
    return doc


async def _changeable(access: Access, dataset_id: ObjectId) -> dict[str, Any]:
    """The dataset a write names; CONFLICT when the id is one of a (visible) dataset version,
    which is immutable, so a write sent through a version says why it cannot be."""
    try:
        return await get_dataset(access, dataset_id)
    except NotFound:
        version = await access.find_visible("dataset_versions", dataset_id)
        if version is not None and not version["deleting"]:
            raise Conflict(
                f"{version['name']!r} is a dataset version: versions are immutable",
                id=str(dataset_id),
            ) from None
        raise


async def datasets_of_projects(
    access: Access, project_ids: list[ObjectId], page: PageRequest
) -> dict[ObjectId, Page]:
    """A page of datasets, by name, for each of several visible projects, in one round trip."""
    query = {"$and": [{"deleting": False}, await access.scope()]}
    return await paginate_many(
        access.db.datasets, "projectId", project_ids, query, page, sort=[("name", 1)]
    )


async def writable_dataset(access: Access, dataset_id: ObjectId, action: Action) -> dict[str, Any]:
    """A dataset the caller may change with `action`; CONFLICT while it is readonly, or when
    the id is a dataset version's."""
    dataset = await _changeable(access, dataset_id)
    await access.require_project(dataset, action)
    if dataset["readonly"]:
        raise Conflict(f"Dataset {dataset['name']!r} is readonly", id=str(dataset_id))
    return dataset


async def update_dataset(
    access: Access, dataset_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Rename, describe, or switch readonly on and off (allowed while readonly)."""
    dataset = await _changeable(access, dataset_id)
    await access.require_project(dataset, Action.MANAGE_DATASETS)
    changes = parse(DatasetChanges, data).model_dump(exclude_none=True, by_alias=True)
    if dataset["readonly"] and set(changes) - {"readonly"}:
        raise Conflict(f"Dataset {dataset['name']!r} is readonly", id=str(dataset_id))
    try:
        return await access.db.datasets.find_one_and_update(
            {"_id": dataset_id},
            {"$set": {**changes, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError as exc:
        raise _name_taken(changes["name"]) from exc


async def delete_dataset(access: Access, dataset_id: ObjectId, confirm_name: str) -> None:
    """Delete a dataset with its versions, items, annotations and the files nothing else
    references; CONFLICT while a model's subset names one of its versions.

    The dataset is first marked `deleting` (it disappears at once); the cascade then runs
    batch by batch, so a crash mid-way leaves a dataset that a retried delete finishes.
    """
    try:
        dataset = await access.visible(
            "datasets", dataset_id, project_field="projectId", entity="Dataset"
        )
    except NotFound:
        await _changeable(access, dataset_id)
        raise
    await access.require_project(dataset, Action.MANAGE_DATASETS)
    if confirm_name != dataset["name"]:
        raise BadUserInput("Type the dataset's exact name to confirm", field="confirmName")
    if dataset["readonly"]:
        raise Conflict(f"Dataset {dataset['name']!r} is readonly", id=str(dataset_id))
    db = access.db
    version_ids = await db.dataset_versions.distinct("_id", {"datasetId": dataset_id})
    taking = {"_id": {"$in": version_ids}, "status": "creating", "deleting": False}
    if await db.dataset_versions.find_one(taking, {"_id": 1}) is not None:
        raise Conflict(
            f"A version of dataset {dataset['name']!r} is being taken; delete it once done",
            id=str(dataset_id),
        )
    if users := await removal.users_of(db, version_ids):
        names = ", ".join(repr(model["name"]) for model in users)
        raise Conflict(
            f"Versions of dataset {dataset['name']!r} are used by the subsets of {names}",
            id=str(dataset_id),
        )
    await db.datasets.update_one({"_id": dataset_id}, {"$set": {"deleting": True}})
    await removal.remove_versions(db, version_ids)
    await db.annotations.delete_many({"datasetId": dataset_id})

    async def next_batch(session: AsyncClientSession) -> list[dict[str, Any]]:
        """Delete a batch of items and drop their references: only items this transaction
        sees and deletes, so two deletes of one dataset never drop a reference twice (the
        second conflicts, runs again and finds them gone)."""
        query = {"datasetId": dataset_id}
        batch = await db.items.find(query, {"sha256": 1}, session=session).to_list(1000)
        ids = [item["_id"] for item in batch]
        await db.items.delete_many({"_id": {"$in": ids}}, session=session)
        await files.unreference(db, Counter(item["sha256"] for item in batch), session)
        return batch

    while batch := await in_transaction(db, next_batch):
        await files.collect(db, list({item["sha256"] for item in batch}))
    await db.datasets.delete_one({"_id": dataset_id})


async def _change_labels(access: Access, dataset_id: ObjectId, change: Any) -> dict[str, Any]:
    """Apply `change(labels) -> labels` with optimistic concurrency on `labelsVersion`."""
    for _ in range(LABEL_UPDATE_ATTEMPTS):
        dataset = await writable_dataset(access, dataset_id, Action.MANAGE_DATASETS)
        updated = await access.db.datasets.find_one_and_update(
            {"_id": dataset_id, "labelsVersion": dataset["labelsVersion"]},
            {
                "$set": {"labels": change(dataset["labels"]), "updatedAt": now()},
                "$inc": {"labelsVersion": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            return updated
    raise Conflict("The ontology kept changing under this request; try again")


async def add_missing_labels(
    db: AsyncDatabase, dataset_id: ObjectId, names: list[str]
) -> dict[str, Any]:
    """Top-level labels for the names the dataset's ontology lacks (an import's
    createMissingLabels), with the ontology's optimistic concurrency."""
    for _ in range(LABEL_UPDATE_ATTEMPTS):
        dataset = await db.datasets.find_one({"_id": dataset_id})
        known = set(labels.paths(dataset["labels"]))
        missing = [Label(name=name) for name in dict.fromkeys(names) if name not in known]
        if not missing:
            return dataset
        updated = await db.datasets.find_one_and_update(
            {"_id": dataset_id, "labelsVersion": dataset["labelsVersion"]},
            {
                "$set": {"labels": labels.add(dataset["labels"], missing), "updatedAt": now()},
                "$inc": {"labelsVersion": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            return updated
    raise Conflict("The ontology kept changing under this import; try again")


async def add_labels(
    access: Access, dataset_id: ObjectId, data: list[dict[str, Any]]
) -> dict[str, Any]:
    new = [parse(Label, label) for label in data]
    return await _change_labels(access, dataset_id, lambda current: labels.add(current, new))


async def update_label(
    access: Access, dataset_id: ObjectId, path: str, data: dict[str, Any]
) -> dict[str, Any]:
    changes = parse(labels.LabelChanges, data)
    return await _change_labels(
        access, dataset_id, lambda current: labels.update(current, path, changes)
    )


async def delete_labels(
    access: Access, dataset_id: ObjectId, label_paths: list[str]
) -> dict[str, Any]:
    return await _change_labels(
        access, dataset_id, lambda current: labels.delete(current, label_paths)
    )


async def create_directory(access: Access, dataset_id: ObjectId, path: str) -> dict[str, Any]:
    directory = directories.normalise(path, "path")
    await writable_dataset(access, dataset_id, Action.WRITE_ITEMS)
    return await access.db.datasets.find_one_and_update(
        {"_id": dataset_id},
        {
            "$addToSet": {"directories": {"$each": directories.with_ancestors(directory)}},
            "$set": {"updatedAt": now()},
        },
        return_document=ReturnDocument.AFTER,
    )
