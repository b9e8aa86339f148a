"""Cron triggers, their fire records, and one-off scheduled runs."""

from datetime import datetime
from typing import Any

import strawberry
from bson import ObjectId
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from resolvers import cron_triggers, scheduled_runs
from resolvers.access import Access
from resolvers.cron_triggers import FireStatus, MissedPolicy
from resolvers.inputs import object_id
from resolvers.pagination import Page
from resolvers.scheduled_runs import RunStatus
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, page_request
from schema.services import Execution
from schema.triggers import TriggerOperation, TriggerOperationInput

MissedPolicyEnum = strawberry.enum(
    MissedPolicy,
    name="CronMissedPolicy",
    description="After a downtime: skip every missed tick, or run the latest one once.",
)
RunStatusEnum = strawberry.enum(
    RunStatus, name="ScheduledRunStatus", description="Where a scheduled run stands."
)
FireStatusEnum = strawberry.enum(
    FireStatus,
    name="CronFireStatus",
    description="A tick fired, missed (later than its tolerance), or failed to start.",
)


def executions_by_id(access: Access) -> DataLoader[ObjectId, dict[str, Any] | None]:
    """The executions a page of fires or runs started, in one read, as the caller sees them."""

    async def load(ids: list[ObjectId]) -> list[dict[str, Any] | None]:
        scope = await access.scope()
        query = {"$and": [{"_id": {"$in": ids}}, scope]}
        found = {doc["_id"]: doc async for doc in access.db.executions.find(query)}
        return [found.get(execution_id) for execution_id in ids]

    return DataLoader(load_fn=load)


async def _execution(
    info: strawberry.Info,
    loader: DataLoader[ObjectId, dict[str, Any] | None] | None,
    execution_id: ObjectId | None,
) -> Execution | None:
    """The execution a fire or run started; read alone for a node fetched by itself."""
    if execution_id is None:
        return None
    if loader is None:
        access = await info.context.access()
        found = await access.find_visible("executions", execution_id)
    else:
        found = await loader.load(execution_id)
    return Execution.from_doc(found) if found else None


@strawberry.type(description="One tick of a cron trigger, and what came of it.")
class CronFire(Node):
    cron_trigger_id: strawberry.ID
    scheduled_at: datetime
    fired_at: datetime | None
    lateness_ms: int = strawberry.field(description="How long after its tick it was handled.")
    status: FireStatusEnum
    reason: str | None
    delivery_id: strawberry.ID | None
    execution_id: strawberry.Private[ObjectId | None]
    executions: strawberry.Private[DataLoader | None] = None

    @strawberry.field(description="The execution it started, unless retention removed it.")
    async def execution(self, info: strawberry.Info) -> Execution | None:
        return await _execution(info, self.executions, self.execution_id)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], executions: DataLoader | None = None) -> "CronFire":
        delivery = doc.get("deliveryId")
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            cron_trigger_id=strawberry.ID(str(doc["cronTriggerId"])),
            scheduled_at=doc["scheduledAt"],
            fired_at=doc["firedAt"],
            lateness_ms=doc["latenessMs"],
            status=FireStatus(doc["status"]),
            reason=doc["reason"],
            delivery_id=strawberry.ID(str(delivery)) if delivery else None,
            execution_id=doc.get("executionId"),
            executions=executions,
        )


@strawberry.type(description="Runs an operation of a project on a cron schedule.")
class CronTrigger(Node):
    project_id: strawberry.ID
    name: str
    active: bool
    cron: str = strawberry.field(description="5 fields, or 6 with seconds first.")
    timezone: str = strawberry.field(description="The IANA time zone the cron is read in.")
    start_at: datetime | None
    end_at: datetime | None
    next_run_at: datetime | None = strawberry.field(
        description="The next tick (UTC); null when inactive or past endAt."
    )
    tolerance_s: int = strawberry.field(
        description="A tick handled later than this many seconds is missed, not run."
    )
    missed_policy: MissedPolicyEnum
    operation: TriggerOperation
    input: JSON = strawberry.field(description="Laid over the operation's input at each tick.")
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="Its ticks, newest first: fired, missed or failed.")
    async def fires(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[CronFire]:
        access = await info.context.access()
        page = await cron_triggers.list_fires(
            access, object_id(self.id), page_request(info, first, after)
        )
        return _connection(access, page, CronFire.from_doc)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "CronTrigger":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            project_id=strawberry.ID(str(doc["projectId"])),
            name=doc["name"],
            active=doc["active"],
            cron=doc["cron"],
            timezone=doc["timezone"],
            start_at=doc["startAt"],
            end_at=doc["endAt"],
            next_run_at=doc["nextRunAt"],
            tolerance_s=doc["toleranceS"],
            missed_policy=MissedPolicy(doc["missedPolicy"]),
            operation=TriggerOperation.from_doc(doc["operation"]),
            input=doc["input"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.type(description="An operation run once, at a given time.")
class ScheduledRun(Node):
    project_id: strawberry.ID
    at: datetime
    operation: TriggerOperation
    input: JSON = strawberry.field(description="Laid over the operation's input.")
    tolerance_s: int = strawberry.field(
        description="Handled later than this many seconds after `at`, it is missed, not run."
    )
    status: RunStatusEnum
    fired_at: datetime | None
    lateness_ms: int | None
    reason: str | None
    delivery_id: strawberry.ID | None
    created_at: datetime
    updated_at: datetime
    execution_id: strawberry.Private[ObjectId | None]
    executions: strawberry.Private[DataLoader | None] = None

    @strawberry.field(description="The execution it started, unless retention removed it.")
    async def execution(self, info: strawberry.Info) -> Execution | None:
        return await _execution(info, self.executions, self.execution_id)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], executions: DataLoader | None = None) -> "ScheduledRun":
        delivery = doc.get("deliveryId")
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            project_id=strawberry.ID(str(doc["projectId"])),
            at=doc["at"],
            operation=TriggerOperation.from_doc(doc["operation"]),
            input=doc["input"],
            tolerance_s=doc["toleranceS"],
            status=RunStatus(doc["status"]),
            fired_at=doc["firedAt"],
            lateness_ms=doc["latenessMs"],
            reason=doc["reason"],
            delivery_id=strawberry.ID(str(delivery)) if delivery else None,
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
            execution_id=doc.get("executionId"),
            executions=executions,
        )


def _connection(access: Access, page: Page, to_node: Any) -> Connection:
    """A page whose nodes share one loader for the executions they started."""
    loader = executions_by_id(access)
    return Connection.of(page, lambda doc: to_node(doc, loader))


@strawberry.input
class CronTriggerInput:
    name: str
    cron: str
    operation: TriggerOperationInput
    timezone: str | None = strawberry.UNSET
    start_at: datetime | None = strawberry.UNSET
    end_at: datetime | None = strawberry.UNSET
    input: JSON | None = strawberry.UNSET
    tolerance_s: int | None = strawberry.UNSET
    missed_policy: MissedPolicyEnum | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


@strawberry.input(description="Fields left out stay; startAt or endAt given as null are cleared.")
class CronTriggerChangesInput:
    name: str | None = strawberry.UNSET
    cron: str | None = strawberry.UNSET
    operation: TriggerOperationInput | None = strawberry.UNSET
    timezone: str | None = strawberry.UNSET
    start_at: datetime | None = strawberry.UNSET
    end_at: datetime | None = strawberry.UNSET
    input: JSON | None = strawberry.UNSET
    tolerance_s: int | None = strawberry.UNSET
    missed_policy: MissedPolicyEnum | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


@strawberry.type
class CronTriggerQueries:
    @strawberry.field
    async def cron_trigger(self, info: strawberry.Info, id: strawberry.ID) -> CronTrigger:
        access = await info.context.access()
        return CronTrigger.from_doc(await cron_triggers.get_cron_trigger(access, object_id(id)))

    @strawberry.field
    async def scheduled_run(self, info: strawberry.Info, id: strawberry.ID) -> ScheduledRun:
        access = await info.context.access()
        doc = await scheduled_runs.get_scheduled_run(access, object_id(id))
        return ScheduledRun.from_doc(doc, executions_by_id(access))


async def project_cron_triggers(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[CronTrigger]:
    access = await info.context.access()
    page = await cron_triggers.list_cron_triggers(
        access, project_id, page_request(info, first, after)
    )
    return Connection.of(page, CronTrigger.from_doc)


async def project_scheduled_runs(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[ScheduledRun]:
    access = await info.context.access()
    page = await scheduled_runs.list_scheduled_runs(
        access, project_id, page_request(info, first, after)
    )
    return _connection(access, page, ScheduledRun.from_doc)


@strawberry.type
class CronTriggerMutations:
    @strawberry.mutation
    async def create_cron_trigger(
        self, info: strawberry.Info, project_id: strawberry.ID, input: CronTriggerInput
    ) -> CronTrigger:
        access = await info.context.access()
        doc = await cron_triggers.create_cron_trigger(
            access, object_id(project_id, "projectId"), as_input(input)
        )
        return CronTrigger.from_doc(doc)

    @strawberry.mutation
    async def update_cron_trigger(
        self, info: strawberry.Info, id: strawberry.ID, input: CronTriggerChangesInput
    ) -> CronTrigger:
        access = await info.context.access()
        doc = await cron_triggers.update_cron_trigger(access, object_id(id), as_input(input))
        return CronTrigger.from_doc(doc)

    @strawberry.mutation(description="Delete a cron trigger; its fires and executions stay.")
    async def delete_cron_trigger(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await cron_triggers.delete_cron_trigger(access, object_id(id))
        return True

    @strawberry.mutation(description="Run an operation once at `at` (UTC if no offset is given).")
    async def schedule_run(
        self,
        info: strawberry.Info,
        project_id: strawberry.ID,
        at: datetime,
        operation: TriggerOperationInput,
        input: JSON | None = strawberry.UNSET,
        tolerance_s: int | None = strawberry.UNSET,
    ) -> ScheduledRun:
        access = await info.context.access()
        given = {"input": input, "toleranceS": tolerance_s}
        data = {
            "at": at,
            "operation": as_input(operation),
            **{key: value for key, value in given.items() if value not in (None, strawberry.UNSET)},
        }
        doc = await scheduled_runs.schedule_run(access, object_id(project_id, "projectId"), data)
        return ScheduledRun.from_doc(doc)

    @strawberry.mutation(description="Cancel a scheduled run that has not fired.")
    async def cancel_scheduled_run(self, info: strawberry.Info, id: strawberry.ID) -> ScheduledRun:
        access = await info.context.access()
        doc = await scheduled_runs.cancel_scheduled_run(access, object_id(id))
        return ScheduledRun.from_doc(doc)
