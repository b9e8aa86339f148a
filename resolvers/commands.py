"""Commands: long operations (clone, export, batch runs) that a worker carries out.

MongoDB holds each command's truth — status, progress, a cursor of work done, and a lease.
A worker claims a command with one conditional update; while it works it renews the lease
with every step it commits. If the worker dies, the lease lapses and a sweep (in every worker)
queues the command again; the next worker resumes from the last committed step.
"""

from datetime import timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.access import Access, Action
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.timestamps import new_document, now


class LeaseLost(RuntimeError):
    """Another worker took the command over (our lease lapsed): stop, writing nothing more."""


class CommandStatus(StrEnum):
    CREATED = "created"
    IN_PROGRESS = "inProgress"
    SUCCESS = "success"
    FAILED = "failed"


UNFINISHED = [str(CommandStatus.CREATED), str(CommandStatus.IN_PROGRESS)]


def new_command(
    access: Access, project: dict[str, Any], kind: str, command_input: dict[str, Any]
) -> dict[str, Any]:
    return new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project.get("projectId", project["_id"]),
        type=kind,
        status=str(CommandStatus.CREATED),
        progress=0,
        input=command_input,
        cursor=None,
        attempts=0,
        leaseUntil=None,
        worker=None,
        error=None,
    )


async def list_commands(
    access: Access, project_id: ObjectId, types: list[str] | None, page: PageRequest
) -> Page:
    """A page of a project's commands (of `types`, if given), newest first."""
    query: dict[str, Any] = {"$and": [{"projectId": project_id}, await access.scope()]}
    if types:
        query["$and"].append({"type": {"$in": types}})
    return await paginate(access.db.commands, query, page, [("_id", -1)])


async def get_command(access: Access, command_id: ObjectId) -> dict[str, Any]:
    command = await access.visible(
        "commands", command_id, project_field="projectId", entity="Command"
    )
    await access.require_project(command, Action.READ_PROJECT)
    return command


async def claim(
    db: AsyncDatabase, command_id: ObjectId, worker: str, lease: timedelta
) -> dict[str, Any] | None:
    """Take the command if nobody holds a live lease on it; None when someone does (or done)."""
    moment = now()
    return await db.commands.find_one_and_update(
        {
            "_id": command_id,
            "status": {"$in": UNFINISHED},
            "$or": [{"leaseUntil": None}, {"leaseUntil": {"$lt": moment}}],
        },
        {
            "$set": {
                "status": str(CommandStatus.IN_PROGRESS),
                "leaseUntil": moment + lease,
                "worker": worker,
                "updatedAt": moment,
            },
            "$inc": {"attempts": 1},
        },
        return_document=ReturnDocument.AFTER,
    )


async def advance(
    db: AsyncDatabase,
    command: dict[str, Any],
    cursor: Any,
    progress: int,
    lease: timedelta,
    session: AsyncClientSession,
) -> None:
    """Record a step in the step's own transaction and renew the lease — or abort the step
    with LeaseLost if the command is no longer ours. Progress never goes back, not even when
    a resumed command counts what is left afresh."""
    moment = now()
    held = await db.commands.update_one(
        {"_id": command["_id"], "worker": command["worker"]},
        {
            "$set": {"cursor": cursor, "leaseUntil": moment + lease, "updatedAt": moment},
            "$max": {"progress": progress},
        },
        session=session,
    )
    if held.matched_count == 0:
        raise LeaseLost(f"command {command['_id']} is held by another worker now")


async def finish(db: AsyncDatabase, command: dict[str, Any], error: str | None = None) -> None:
    status = CommandStatus.FAILED if error else CommandStatus.SUCCESS
    fields: dict[str, Any] = {"status": str(status), "leaseUntil": None, "updatedAt": now()}
    if error:
        fields["error"] = error[:2000]
    else:
        fields["progress"] = 100
    await db.commands.update_one(
        {"_id": command["_id"], "worker": command["worker"]}, {"$set": fields}
    )


async def stalled(db: AsyncDatabase) -> list[ObjectId]:
    """Unfinished commands nobody holds a live lease on: to be queued again."""
    query = {
        "status": {"$in": UNFINISHED},
        "$or": [{"leaseUntil": None}, {"leaseUntil": {"$lt": now()}}],
    }
    return [doc["_id"] async for doc in db.commands.find(query, {"_id": 1})]
