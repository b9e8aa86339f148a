"""Triggers and events: what fires on a project's changes, and the log of those changes."""

import asyncio
import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from bson import ObjectId
from strawberry.scalars import JSON

from resolvers import events, projects, triggers
from resolvers.inputs import object_id
from resolvers.json_documents import as_json
from resolvers.triggers import ExecutionMode, Resource, TriggerAction
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, optional_id, page_request
from schema.services import Execution, Service, executions_page

if TYPE_CHECKING:
    from schema.webhooks import Webhook

ResourceEnum = strawberry.enum(
    Resource, name="TriggerResource", description="What a trigger watches."
)
ActionEnum = strawberry.enum(
    TriggerAction,
    name="TriggerAction",
    description="How a resource changed (StatusChanged: an execution's status).",
)
ExecutionModeEnum = strawberry.enum(
    ExecutionMode,
    name="ExecutionMode",
    description="Always: one execution per matching event. Once: at most one per resource.",
)


@strawberry.type(
    description="What a trigger runs: a function of a service of its project (type function), "
    "or a delivery to a webhook of its project (type webhook)."
)
class TriggerOperation:
    type: str
    service_id: strawberry.ID | None
    function_name: str | None
    input: JSON | None
    webhook_id: strawberry.ID | None

    @strawberry.field
    async def service(self, info: strawberry.Info) -> Service | None:
        if self.service_id is None:
            return None
        access = await info.context.access()
        found = await access.find_visible("services", object_id(self.service_id))
        return Service.from_doc(found) if found else None

    @strawberry.field
    async def webhook(
        self, info: strawberry.Info
    ) -> Annotated["Webhook", strawberry.lazy("schema.webhooks")] | None:
        from schema.webhooks import Webhook

        if self.webhook_id is None:
            return None
        access = await info.context.access()
        found = await access.find_visible("webhooks", object_id(self.webhook_id))
        return Webhook.from_doc(found) if found else None

    @classmethod
    def from_doc(cls, operation: dict[str, Any]) -> "TriggerOperation":
        return cls(
            type=operation["type"],
            service_id=optional_id(operation.get("serviceId")),
            function_name=operation.get("functionName"),
            input=operation.get("input"),
            webhook_id=optional_id(operation.get("webhookId")),
        )


@strawberry.type(description="Runs an operation on the changes of a project's resource.")
class Trigger(Node):
    project_id: strawberry.ID
    name: str
    active: bool
    resource: ResourceEnum
    actions: list[ActionEnum]
    filter: JSON | None = strawberry.field(
        description="DQL over the resource, matched against the document after the change "
        "(before it, for deletes)."
    )
    execution_mode: ExecutionModeEnum
    ordered: bool = strawberry.field(
        description="One resource's executions of this trigger run one at a time, in event order."
    )
    operation: TriggerOperation
    created_at: datetime
    updated_at: datetime

    counted: strawberry.Private[list[asyncio.Future]] = dataclasses.field(default_factory=list)
    """`fired`'s answer, asked once for both counter fields."""

    @strawberry.field(description="Executions this trigger created (events and invocations).")
    async def fired_count(self, info: strawberry.Info) -> int:
        count, _ = await self._fired(info)
        return count

    @strawberry.field(description="When this trigger last created an execution.")
    async def last_fired_at(self, info: strawberry.Info) -> datetime | None:
        _, last = await self._fired(info)
        return last

    def _fired(self, info: strawberry.Info) -> asyncio.Future:
        if not self.counted:  # made before any await: both fields share the one read
            self.counted.append(asyncio.ensure_future(self._count(info)))
        return self.counted[0]

    async def _count(self, info: strawberry.Info) -> tuple[int, datetime | None]:
        return await events.fired(await info.context.access(), object_id(self.id))

    @strawberry.field(description="The events that fired this trigger, newest first.")
    async def events(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection["Event"]:
        access = await info.context.access()
        page = await events.list_events(
            access, {"triggers": object_id(self.id)}, page_request(info, first, after)
        )
        return Connection.of(page, Event.from_doc)

    @strawberry.field(description="The executions this trigger created, newest first.")
    async def executions(
        self,
        info: strawberry.Info,
        statuses: list[str] | None = None,
        filter: JSON | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Execution]:
        query = {"triggerId": object_id(self.id)}
        return await executions_page(info, query, statuses, filter, first, after)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Trigger":
        operation = doc["operation"]
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            project_id=strawberry.ID(str(doc["projectId"])),
            name=doc["name"],
            active=doc["active"],
            resource=Resource(doc["resource"]),
            actions=[TriggerAction(action) for action in doc["actions"]],
            filter=doc["filter"],
            execution_mode=ExecutionMode(doc["executionMode"]),
            ordered=doc["ordered"],
            operation=TriggerOperation.from_doc(operation),
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.type(description="One change of a watched resource, as the relay captured it.")
class Event(Node):
    project_id: strawberry.ID
    resource: ResourceEnum
    resource_id: strawberry.ID
    action: ActionEnum
    before: JSON | None = strawberry.field(description="The document before (updates, deletes).")
    after: JSON | None = strawberry.field(description="The document after (inserts, updates).")
    time: datetime
    trigger_ids: list[strawberry.ID] = strawberry.field(description="The triggers it fired.")

    @strawberry.field(description="The executions it made, one per trigger it fired.")
    async def executions(self, info: strawberry.Info) -> list[Execution]:
        access = await info.context.access()
        found = await events.executions_of(access, object_id(self.id))
        return [Execution.from_doc(doc) for doc in found]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Event":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            project_id=strawberry.ID(str(doc["projectId"])),
            resource=Resource(doc["resource"]),
            resource_id=strawberry.ID(str(doc["resourceId"])),
            action=TriggerAction(doc["action"]),
            before=as_json(doc["before"]),
            after=as_json(doc["after"]),
            time=doc["time"],
            trigger_ids=[strawberry.ID(str(trigger)) for trigger in doc["triggers"]],
        )


@strawberry.type(description="Whether a trigger would fire on a document; nothing is run.")
class TriggerTest:
    matches: bool
    document: JSON = strawberry.field(description="The document as it was tested.")


@strawberry.input(
    description="type function (the default) with serviceId and functionName, or type webhook "
    "with webhookId."
)
class TriggerOperationInput:
    service_id: strawberry.ID | None = strawberry.UNSET
    function_name: str | None = strawberry.UNSET
    type: str | None = strawberry.UNSET
    input: JSON | None = strawberry.UNSET
    webhook_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class TriggerInput:
    name: str
    resource: ResourceEnum
    actions: list[ActionEnum]
    operation: TriggerOperationInput
    filter: JSON | None = strawberry.UNSET
    execution_mode: ExecutionModeEnum | None = strawberry.UNSET
    ordered: bool | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


@strawberry.input
class TriggerChangesInput:
    name: str | None = strawberry.UNSET
    actions: list[ActionEnum] | None = strawberry.UNSET
    filter: JSON | None = strawberry.UNSET
    execution_mode: ExecutionModeEnum | None = strawberry.UNSET
    ordered: bool | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    operation: TriggerOperationInput | None = strawberry.UNSET


@strawberry.input(description="A trigger's resource, actions and filter, to test unsaved.")
class TriggerDefinitionInput:
    resource: ResourceEnum
    actions: list[ActionEnum]
    filter: JSON | None = strawberry.UNSET


def _optional_id(value: strawberry.ID | None, field: str) -> ObjectId | None:
    return None if value is None else object_id(value, field)


@strawberry.type
class TriggerQueries:
    @strawberry.field
    async def trigger(self, info: strawberry.Info, id: strawberry.ID) -> Trigger:
        access = await info.context.access()
        return Trigger.from_doc(await triggers.get_trigger(access, object_id(id)))

    @strawberry.field
    async def event(self, info: strawberry.Info, id: strawberry.ID) -> Event:
        access = await info.context.access()
        return Event.from_doc(await events.get_event(access, object_id(id)))

    @strawberry.field(
        description="Whether a trigger (saved, or a definition) would fire on a document — "
        "given as JSON, or a resource's id — after the change. Runs nothing."
    )
    async def test_trigger(
        self,
        info: strawberry.Info,
        trigger_id: strawberry.ID | None = None,
        definition: TriggerDefinitionInput | None = None,
        document: JSON | None = None,
        resource_id: strawberry.ID | None = None,
        project_id: strawberry.ID | None = None,
    ) -> TriggerTest:
        access = await info.context.access()
        matched, doc = await triggers.test_trigger(
            access,
            _optional_id(trigger_id, "triggerId"),
            None if definition is None else as_input(definition),
            document,
            _optional_id(resource_id, "resourceId"),
            _optional_id(project_id, "projectId"),
        )
        return TriggerTest(matches=matched, document=as_json(doc))


async def project_triggers(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[Trigger]:
    access = await info.context.access()
    page = await triggers.list_triggers(access, project_id, page_request(info, first, after))
    return Connection.of(page, Trigger.from_doc)


async def project_events(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[Event]:
    access = await info.context.access()
    await projects.get_project(access, project_id)
    page = await events.list_events(
        access, {"projectId": project_id}, page_request(info, first, after)
    )
    return Connection.of(page, Event.from_doc)


async def execution_trigger(info: strawberry.Info, trigger_id: ObjectId | None) -> Trigger | None:
    """The trigger that created an execution, if it still exists."""
    if trigger_id is None:
        return None
    access = await info.context.access()
    found = await access.find_visible("triggers", trigger_id)
    return Trigger.from_doc(triggers.stored(found)) if found else None


async def execution_event(info: strawberry.Info, event_id: ObjectId | None) -> Event | None:
    """The event that fired an execution's trigger, unless retention removed it."""
    if event_id is None:
        return None
    access = await info.context.access()
    found = await access.find_visible("events", event_id)
    return Event.from_doc(found) if found else None


@strawberry.type
class TriggerMutations:
    @strawberry.mutation
    async def create_trigger(
        self, info: strawberry.Info, project_id: strawberry.ID, input: TriggerInput
    ) -> Trigger:
        access = await info.context.access()
        doc = await triggers.create_trigger(
            access, object_id(project_id, "projectId"), as_input(input)
        )
        return Trigger.from_doc(doc)

    @strawberry.mutation
    async def update_trigger(
        self, info: strawberry.Info, id: strawberry.ID, input: TriggerChangesInput
    ) -> Trigger:
        access = await info.context.access()
        return Trigger.from_doc(
            await triggers.update_trigger(access, object_id(id), as_input(input))
        )

    @strawberry.mutation(description="Turn a trigger on (or off, with active: false).")
    async def activate_trigger(
        self, info: strawberry.Info, id: strawberry.ID, active: bool = True
    ) -> Trigger:
        access = await info.context.access()
        return Trigger.from_doc(
            await triggers.update_trigger(access, object_id(id), {"active": active})
        )

    @strawberry.mutation(description="Delete a trigger; the executions it created stay.")
    async def delete_trigger(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await triggers.delete_trigger(access, object_id(id))
        return True

    @strawberry.mutation(
        description="Run a trigger's operation on one resource now, whatever its filter."
    )
    async def invoke_trigger(
        self, info: strawberry.Info, trigger_id: strawberry.ID, resource_id: strawberry.ID
    ) -> Execution:
        access = await info.context.access()
        doc = await triggers.invoke_trigger(
            access, object_id(trigger_id, "triggerId"), object_id(resource_id, "resourceId")
        )
        await info.context.enqueue_execution(doc)
        return Execution.from_doc(doc)
