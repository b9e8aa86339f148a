"""Cron triggers: a project's operations run on a schedule (Hasura's cron triggers).

A cron trigger has a cron expression (5 fields, or 6 with seconds first) read in an IANA time
zone, an optional [startAt, endAt] window, and the operation it runs — checked by
`trigger_operations.checked`, as event triggers' are, so any kind of operation that module
knows works here unchanged. Its `input` is laid over the operation's own input each time it
fires (the function must accept the combination, checked when saved). It stores `nextRunAt`
(UTC): the scheduler of every worker (triggers/cron/scheduler.py) claims the tick there,
records each tick in `cron_fires` — fired, missed (later than `toleranceS`), or failed — and
moves `nextRunAt` on. An inactive trigger has no `nextRunAt`: the ticks it sleeps through are
not missed, and activating it schedules it from now.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from resolvers import trigger_operations
from resolvers.access import Access, Action
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.inputs import Input, Name, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.projects import get_project
from resolvers.timestamps import new_document, now
from triggers.cron.schedule import Schedule

MAX_TOLERANCE_S = 7 * 24 * 3600


class MissedPolicy(StrEnum):
    """What the scheduler does with ticks it comes to later than their tolerance (after a
    downtime): `skip` records them all as missed; `runOnce` runs the latest of them once and
    records the others as missed."""

    skip = "skip"
    runOnce = "runOnce"


class FireStatus(StrEnum):
    """What came of one tick: `fired` (its execution or delivery started), `missed` (handled
    later than its tolerance, so not run), `failed` (its operation could not start: `reason`)."""

    fired = "fired"
    missed = "missed"
    failed = "failed"


class CronTriggerInput(Input):
    name: Name
    cron: str
    operation: dict[str, Any]
    active: bool = True
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    tolerance_s: int = Field(60, ge=0, le=MAX_TOLERANCE_S)
    missed_policy: MissedPolicy = MissedPolicy.skip


class CronTriggerChanges(Input):
    """Fields left out stay as they are; `startAt` or `endAt` given as null are cleared."""

    name: Name | None = None
    cron: str | None = None
    operation: dict[str, Any] | None = None
    active: bool | None = None
    timezone: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    input: dict[str, Any] | None = None
    tolerance_s: int | None = Field(None, ge=0, le=MAX_TOLERANCE_S)
    missed_policy: MissedPolicy | None = None


SCHEDULE_FIELDS = ("cron", "timezone", "startAt", "endAt", "active")
"""Changing any of these schedules the trigger again from now."""


def with_payload(operation: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The operation as it fires: its own input with the trigger's (or run's) `input` laid
    over it. Operations without an input of their own fire as they are."""
    if not payload or "input" not in operation:
        return operation
    return {**operation, "input": {**operation["input"], **payload}}


async def checked_operation(
    access: Access, project: dict[str, Any], operation: dict[str, Any], payload: dict[str, Any]
) -> dict[str, Any]:
    """The operation as stored (`trigger_operations.checked`), once its target is known to
    accept the input it will fire with (BAD_USER_INPUT, field `input`, otherwise)."""
    stored = await trigger_operations.checked(access, project, operation)
    fired = with_payload(stored, payload)
    if fired is not stored:
        try:
            await trigger_operations.checked(
                access, project, {**operation, "input": fired["input"]}
            )
        except BadUserInput as exc:
            raise BadUserInput(
                f"input, laid over the operation's input: {exc.message}", field="input"
            ) from exc
    return stored


def next_run(schedule: Schedule, active: bool) -> datetime | None:
    return schedule.next_after(now()) if active else None


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A cron trigger named {name!r} already exists in this project", field="name")


async def create_cron_trigger(
    access: Access, project_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_TRIGGERS)
    trigger = parse(CronTriggerInput, data)
    schedule = Schedule.checked(trigger.cron, trigger.timezone, trigger.start_at, trigger.end_at)
    operation = await checked_operation(access, project, trigger.operation, trigger.input)
    doc = new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project["_id"],
        name=trigger.name,
        active=trigger.active,
        cron=schedule.cron,
        timezone=schedule.timezone,
        startAt=schedule.start_at,
        endAt=schedule.end_at,
        input=trigger.input,
        operation=operation,
        toleranceS=trigger.tolerance_s,
        missedPolicy=str(trigger.missed_policy),
        nextRunAt=next_run(schedule, trigger.active),
        pendingFires=[],
    )
    try:
        await access.db.cron_triggers.insert_one(doc)
    except DuplicateKeyError as exc:
        raise _name_taken(trigger.name) from exc
    return doc


async def get_cron_trigger(access: Access, trigger_id: ObjectId) -> dict[str, Any]:
    return await access.visible(
        "cron_triggers", trigger_id, project_field="projectId", entity="CronTrigger"
    )


async def list_cron_triggers(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    await get_project(access, project_id)
    return await paginate(access.db.cron_triggers, {"projectId": project_id}, page, [("name", 1)])


async def update_cron_trigger(
    access: Access, trigger_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    trigger = await get_cron_trigger(access, trigger_id)
    await access.require_project(trigger, Action.MANAGE_TRIGGERS)
    if not data:
        raise BadUserInput("Give at least one field to change")
    changes = parse(CronTriggerChanges, data)
    update: dict[str, Any] = {
        key: value
        for key, value in changes.model_dump(by_alias=True, exclude={"operation"}).items()
        if key in data and (value is not None or key in ("startAt", "endAt"))
    }
    if "missedPolicy" in update:
        update["missedPolicy"] = str(update["missedPolicy"])
    merged = {**trigger, **update}
    schedule = Schedule.checked(
        merged["cron"], merged["timezone"], merged["startAt"], merged["endAt"]
    )
    update.update(cron=schedule.cron, startAt=schedule.start_at, endAt=schedule.end_at)
    if changes.operation is not None or "input" in update:
        project = await get_project(access, trigger["projectId"])
        raw = changes.operation if changes.operation is not None else _as_given(trigger)
        update["operation"] = await checked_operation(access, project, raw, merged["input"])
    if any(field in update and update[field] != trigger[field] for field in SCHEDULE_FIELDS):
        update["nextRunAt"] = next_run(schedule, merged["active"])
    try:
        updated = await access.db.cron_triggers.find_one_and_update(
            {"_id": trigger_id},
            {"$set": {**update, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError as exc:
        raise _name_taken(update["name"]) from exc
    if updated is None:
        raise NotFound("CronTrigger not found", id=str(trigger_id))
    return updated


def _as_given(trigger: dict[str, Any]) -> dict[str, Any]:
    """A stored operation in the shape `checked` reads, to check it again with a new input."""
    return {
        key: str(value) if isinstance(value, ObjectId) else value
        for key, value in trigger["operation"].items()
    }


async def delete_cron_trigger(access: Access, trigger_id: ObjectId) -> None:
    """Delete a cron trigger; its fire records and executions stay until retention."""
    trigger = await get_cron_trigger(access, trigger_id)
    await access.require_project(trigger, Action.MANAGE_TRIGGERS)
    deleted = await access.db.cron_triggers.delete_one({"_id": trigger_id})
    if deleted.deleted_count == 0:
        raise NotFound("CronTrigger not found", id=str(trigger_id))


async def list_fires(access: Access, trigger_id: ObjectId, page: PageRequest) -> Page:
    """A cron trigger's fire records, newest tick first."""
    await get_cron_trigger(access, trigger_id)
    return await paginate(
        access.db.cron_fires, {"cronTriggerId": trigger_id}, page, [("scheduledAt", -1)]
    )
