"""Services: named deployments of registered functions in a project, with their run policy."""

from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field, field_validator
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from resolvers import functions
from resolvers.access import Access, Action
from resolvers.errors import Conflict, NotFound
from resolvers.inputs import Changes, Input, Name, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.projects import get_project
from resolvers.timestamps import new_document, now


class OnReset(StrEnum):
    """What happens to an execution whose worker died: run it again, or mark it failed."""

    RERUN = "rerun"
    FAILED = "failed"


class ServiceInput(Input):
    name: Name
    functions: list[str] = Field(min_length=1, max_length=100)
    concurrency: int = Field(10, ge=1, le=1000)
    execution_timeout: int = Field(3600, ge=1, le=7 * 24 * 3600, description="seconds")
    max_attempts: int = Field(3, ge=1, le=20)
    on_reset: OnReset = OnReset.RERUN
    active: bool = True

    @field_validator("functions")
    @classmethod
    def _registered(cls, names: list[str]) -> list[str]:
        for name in names:
            functions.lookup(name)
        return sorted(set(names))


class ServiceChanges(Changes):
    name: Name | None = None
    functions: list[str] | None = Field(None, min_length=1, max_length=100)
    concurrency: int | None = Field(None, ge=1, le=1000)
    execution_timeout: int | None = Field(None, ge=1, le=7 * 24 * 3600)
    max_attempts: int | None = Field(None, ge=1, le=20)
    on_reset: OnReset | None = None
    active: bool | None = None

    @field_validator("functions")
    @classmethod
    def _registered(cls, names: list[str] | None) -> list[str] | None:
        return None if names is None else ServiceInput._registered(names)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A service named {name!r} already exists in this project", field="name")


async def create_service(
    access: Access, project_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_SERVICES)
    service = parse(ServiceInput, data)
    doc = new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project_id,
        **service.model_dump(by_alias=True, mode="json"),
    )
    try:
        await access.db.services.insert_one(doc)
    except DuplicateKeyError as exc:
        raise _name_taken(service.name) from exc
    return doc


async def get_service(access: Access, service_id: ObjectId) -> dict[str, Any]:
    return await access.visible("services", service_id, project_field="projectId", entity="Service")


async def list_services(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    await get_project(access, project_id)
    return await paginate(access.db.services, {"projectId": project_id}, page, [("name", 1)])


async def update_service(
    access: Access, service_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    service = await get_service(access, service_id)
    await access.require_project(service, Action.MANAGE_SERVICES)
    changes = parse(ServiceChanges, data).model_dump(exclude_none=True, by_alias=True, mode="json")
    try:
        return await access.db.services.find_one_and_update(
            {"_id": service_id},
            {"$set": {**changes, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError as exc:
        raise _name_taken(changes["name"]) from exc


async def delete_service(access: Access, service_id: ObjectId) -> None:
    """Delete a service that has nothing queued or running and that no trigger runs (CONFLICT
    otherwise: a trigger left naming it would fire into nothing)."""
    service = await get_service(access, service_id)
    await access.require_project(service, Action.MANAGE_SERVICES)
    used = await access.db.triggers.find_one({"operation.serviceId": service_id}, {"name": 1})
    if used is not None:
        raise Conflict(
            f"Trigger {used['name']!r} runs this service; delete it or change its operation first"
        )
    busy = await access.db.executions.count_documents(
        {"serviceId": service_id, "status": {"$in": ["created", "inProgress"]}}, limit=1
    )
    if busy:
        raise Conflict("The service has queued or running executions; terminate them first")
    deleted = await access.db.services.delete_one({"_id": service_id})
    if deleted.deleted_count == 0:
        raise NotFound("Service not found", id=str(service_id))
