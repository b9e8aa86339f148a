"""A dataset version's life after its snapshot: found, listed, renamed, deleted.

A version's data never changes; its name and description do. Deleting one is refused while a
model's subset names it (resolvers/models.py).
"""

from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from resolvers.access import Access, Action
from resolvers.errors import Conflict, NotFound
from resolvers.inputs import Changes, Description, Name, parse
from resolvers.pagination import Page, PageRequest, paginate_many
from resolvers.timestamps import now
from resolvers.versions.removal import remove_versions, users_of
from resolvers.versions.snapshots import VersionStatus, name_taken


class VersionChanges(Changes):
    name: Name | None = None
    description: Description | None = None


async def get_version(access: Access, version_id: ObjectId) -> dict[str, Any]:
    version = await access.visible(
        "dataset_versions", version_id, project_field="projectId", entity="DatasetVersion"
    )
    if version["deleting"]:
        raise NotFound("DatasetVersion not found", id=str(version_id))
    return version


async def ready_version(access: Access, version_id: ObjectId) -> dict[str, Any]:
    """A version whose snapshot is complete: CONFLICT while it is being taken or failed."""
    version = await get_version(access, version_id)
    if version["status"] != VersionStatus.READY:
        raise Conflict(
            f"Version {version['name']!r} is {version['status']}, not ready",
            id=str(version_id),
        )
    return version


async def versions_of_datasets(
    access: Access, dataset_ids: list[ObjectId], page: PageRequest
) -> dict[ObjectId, Page]:
    """A page of versions, newest first, for each of several visible datasets, in one query."""
    query = {"$and": [{"deleting": False}, await access.scope()]}
    return await paginate_many(
        access.db.dataset_versions,
        "datasetId",
        dataset_ids,
        query,
        page,
        sort=[("createdAt", -1), ("_id", -1)],
    )


async def update_version(
    access: Access, version_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Rename or describe a version: its data stays as it was."""
    version = await get_version(access, version_id)
    await access.require_project(version, Action.MANAGE_DATASETS)
    changes = parse(VersionChanges, data).model_dump(exclude_none=True, by_alias=True)
    try:
        return await access.db.dataset_versions.find_one_and_update(
            {"_id": version_id},
            {"$set": {**changes, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError as exc:
        raise name_taken(changes["name"]) from exc


async def delete_version(access: Access, version_id: ObjectId) -> None:
    version = await get_version(access, version_id)
    await access.require_project(version, Action.MANAGE_DATASETS)
    if version["status"] == VersionStatus.CREATING:
        raise Conflict(f"Version {version['name']!r} is still being taken", id=str(version_id))
    users = await users_of(access.db, [version_id])
    if users:
        names = ", ".join(repr(model["name"]) for model in users)
        raise Conflict(
            f"Version {version['name']!r} is used by the subsets of {names}", id=str(version_id)
        )
    await remove_versions(access.db, [version_id])
