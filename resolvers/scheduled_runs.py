"""One-off scheduled runs: an operation run once, at a given time (Hasura's one-off scheduled
events).

The same scheduler loop as cron triggers' fires them, with the same tolerance: a run the
scheduler comes to more than `toleranceS` after `at` is `missed`, not run. A run is its own
fire record — `status` (scheduled | fired | missed | failed | cancelled), `firedAt`,
`latenessMs`, `reason`, `executionId` or `deliveryId` live on it — since it fires at most
once; a second collection would only repeat it.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo import ReturnDocument

from resolvers.access import Access, Action
from resolvers.cron_triggers import MAX_TOLERANCE_S, checked_operation
from resolvers.errors import Conflict
from resolvers.inputs import Input, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.projects import get_project
from resolvers.timestamps import new_document, now


class RunStatus(StrEnum):
    scheduled = "scheduled"
    fired = "fired"
    missed = "missed"
    failed = "failed"
    cancelled = "cancelled"


class ScheduleRunInput(Input):
    at: datetime
    operation: dict[str, Any]
    input: dict[str, Any] = Field(default_factory=dict)
    tolerance_s: int = Field(60, ge=0, le=MAX_TOLERANCE_S)


async def schedule_run(
    access: Access, project_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """A run of the operation at `at` (a time already past fires at once, within tolerance)."""
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_TRIGGERS)
    run = parse(ScheduleRunInput, data)
    operation = await checked_operation(access, project, run.operation, run.input)
    at = run.at.replace(tzinfo=UTC) if run.at.tzinfo is None else run.at.astimezone(UTC)
    doc = new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project["_id"],
        at=at.replace(microsecond=at.microsecond // 1000 * 1000),
        operation=operation,
        input=run.input,
        toleranceS=run.tolerance_s,
        status=str(RunStatus.scheduled),
        claimedAt=None,
        firedAt=None,
        latenessMs=None,
        reason=None,
        executionId=None,
        deliveryId=None,
    )
    await access.db.scheduled_runs.insert_one(doc)
    return doc


async def get_scheduled_run(access: Access, run_id: ObjectId) -> dict[str, Any]:
    return await access.visible(
        "scheduled_runs", run_id, project_field="projectId", entity="ScheduledRun"
    )


async def list_scheduled_runs(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    """A project's scheduled runs, latest `at` first."""
    await get_project(access, project_id)
    return await paginate(access.db.scheduled_runs, {"projectId": project_id}, page, [("at", -1)])


async def cancel_scheduled_run(access: Access, run_id: ObjectId) -> dict[str, Any]:
    """Cancel a run that has not fired; CONFLICT once a scheduler has taken it or it ended."""
    run = await get_scheduled_run(access, run_id)
    await access.require_project(run, Action.MANAGE_TRIGGERS)
    cancelled = await access.db.scheduled_runs.find_one_and_update(
        {"_id": run_id, "status": str(RunStatus.scheduled), "claimedAt": None},
        {"$set": {"status": str(RunStatus.cancelled), "updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )
    if cancelled is None:
        raise Conflict("Only a run still waiting for its time can be cancelled; this one is not")
    return cancelled
