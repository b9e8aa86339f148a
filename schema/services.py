"""Services, the function registry, executions and their mutations."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers import batches, execution_runs, executions, functions, projects, services
from resolvers.inputs import object_id
from schema.commands import Command
from schema.idempotency import IdempotencyKey
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, page_request

if TYPE_CHECKING:
    from schema.triggers import Event, Trigger


@strawberry.type(
    description="A function installed on the workers (entry point group loom.functions)."
)
class Function:
    name: str
    description: str
    input_schema: JSON


@strawberry.type(description="One change of an execution's status.")
class StatusChange:
    status: str
    time: datetime
    message: str


@strawberry.type(description="One run of a service's function.")
class Execution(Node):
    service_id: strawberry.ID
    function: str
    status: str = strawberry.field(
        description="created | inProgress | success | failed | aborted | terminated"
    )
    status_log: list[StatusChange]
    input: JSON
    output: JSON | None
    error: str | None
    progress: JSON = strawberry.field(description="{percent, message}")
    logs: list[str]
    attempts: int
    max_attempts: int
    duration: float | None = strawberry.field(description="Seconds, once finished.")
    resource: JSON | None
    trigger_id: strawberry.ID | None = strawberry.field(
        description="The trigger that created it, if one did."
    )
    event_id: strawberry.ID | None = strawberry.field(
        description="The event that fired its trigger (none when invoked by hand)."
    )
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The trigger that created it, if one did and still exists.")
    async def trigger(
        self, info: strawberry.Info
    ) -> Annotated["Trigger", strawberry.lazy("schema.triggers")] | None:
        from schema.triggers import execution_trigger

        return await execution_trigger(
            info, object_id(self.trigger_id) if self.trigger_id else None
        )

    @strawberry.field(description="The event that fired its trigger, while it is kept.")
    async def event(
        self, info: strawberry.Info
    ) -> Annotated["Event", strawberry.lazy("schema.triggers")] | None:
        from schema.triggers import execution_event

        return await execution_event(info, object_id(self.event_id) if self.event_id else None)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Execution":
        resource = doc["resource"]
        trigger_id, event_id = doc.get("triggerId"), doc.get("eventId")
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            service_id=strawberry.ID(str(doc["serviceId"])),
            function=doc["function"],
            status=doc["status"],
            status_log=[StatusChange(**entry) for entry in doc["statusLog"]],
            input=doc["input"],
            output=doc["output"],
            error=doc["error"],
            progress=doc["progress"],
            logs=doc["logs"],
            attempts=doc["attempts"],
            max_attempts=doc["maxAttempts"],
            duration=doc["duration"],
            resource={"type": resource["type"], "id": str(resource["id"])} if resource else None,
            trigger_id=strawberry.ID(str(trigger_id)) if trigger_id else None,
            event_id=strawberry.ID(str(event_id)) if event_id else None,
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


async def executions_page(
    info: strawberry.Info,
    query: dict[str, Any],
    statuses: list[str] | None,
    dql_filter: JSON | None,
    first: int,
    after: str | None,
) -> Connection[Execution]:
    """A page of the executions matching `query`, `statuses` and the DQL filter, newest first."""
    if statuses:
        query = {**query, "status": {"$in": statuses}}
    access = await info.context.access()
    page = await executions.list_executions(
        access, query, dql_filter, page_request(info, first, after)
    )
    return Connection.of(page, Execution.from_doc)


@strawberry.type(description="A named deployment of registered functions in a project.")
class Service(Node):
    name: str
    functions: list[str]
    concurrency: int
    execution_timeout: int = strawberry.field(description="Seconds.")
    max_attempts: int
    on_reset: str = strawberry.field(description="rerun | failed")
    active: bool
    created_at: datetime

    @strawberry.field(
        description="The service's executions, newest first: those in `statuses`, if given, "
        "and matching the DQL `filter` over executions, if given."
    )
    async def executions(
        self,
        info: strawberry.Info,
        statuses: list[str] | None = None,
        filter: JSON | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Execution]:
        query = {"serviceId": object_id(self.id)}
        return await executions_page(info, query, statuses, filter, first, after)

    @strawberry.field(description="How many of its executions are in each status.")
    async def execution_counts(self, info: strawberry.Info) -> list["StatusCount"]:
        return await status_counts(info, {"serviceId": object_id(self.id)})

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Service":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            name=doc["name"],
            functions=doc["functions"],
            concurrency=doc["concurrency"],
            execution_timeout=doc["executionTimeout"],
            max_attempts=doc["maxAttempts"],
            on_reset=doc["onReset"],
            active=doc["active"],
            created_at=doc["createdAt"],
        )


@strawberry.input
class ServiceInput:
    name: str
    functions: list[str]
    concurrency: int | None = strawberry.UNSET
    execution_timeout: int | None = strawberry.UNSET
    max_attempts: int | None = strawberry.UNSET
    on_reset: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


@strawberry.input
class ServiceChangesInput:
    name: str | None = strawberry.UNSET
    functions: list[str] | None = strawberry.UNSET
    concurrency: int | None = strawberry.UNSET
    execution_timeout: int | None = strawberry.UNSET
    max_attempts: int | None = strawberry.UNSET
    on_reset: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


@strawberry.input
class ExecuteInput:
    function: str
    input: JSON | None = strawberry.UNSET
    item_id: strawberry.ID | None = strawberry.UNSET
    dataset_id: strawberry.ID | None = strawberry.UNSET
    annotation_id: strawberry.ID | None = strawberry.UNSET


@strawberry.type
class ServiceQueries:
    @strawberry.field(description="The functions installed on the workers.")
    def functions(self) -> list[Function]:
        return [
            Function(name=name, description=f.description, input_schema=f.input.model_json_schema())
            for name, f in sorted(functions.registry().items())
        ]

    @strawberry.field
    async def service(self, info: strawberry.Info, id: strawberry.ID) -> Service:
        access = await info.context.access()
        return Service.from_doc(await services.get_service(access, object_id(id)))

    @strawberry.field
    async def execution(self, info: strawberry.Info, id: strawberry.ID) -> Execution:
        access = await info.context.access()
        return Execution.from_doc(await executions.get_execution(access, object_id(id)))


async def project_services(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[Service]:
    access = await info.context.access()
    page = await services.list_services(access, project_id, page_request(info, first, after))
    return Connection.of(page, Service.from_doc)


@strawberry.type
class ServiceMutations:
    @strawberry.mutation
    async def create_service(
        self, info: strawberry.Info, project_id: strawberry.ID, input: ServiceInput
    ) -> Service:
        access = await info.context.access()
        doc = await services.create_service(
            access, object_id(project_id, "projectId"), as_input(input)
        )
        return Service.from_doc(doc)

    @strawberry.mutation
    async def update_service(
        self, info: strawberry.Info, id: strawberry.ID, input: ServiceChangesInput
    ) -> Service:
        access = await info.context.access()
        return Service.from_doc(
            await services.update_service(access, object_id(id), as_input(input))
        )

    @strawberry.mutation(description="Delete a service with nothing queued or running.")
    async def delete_service(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await services.delete_service(access, object_id(id))
        return True

    @strawberry.mutation(description="Run a service's function; returns the queued execution.")
    async def execute(
        self,
        info: strawberry.Info,
        service_id: strawberry.ID,
        input: ExecuteInput,
        idempotency_key: IdempotencyKey = None,
    ) -> Execution:
        access = await info.context.access()
        doc = await executions.create_execution(
            access,
            object_id(service_id, "serviceId"),
            as_input(input),
            idempotency_key=idempotency_key,
        )
        await info.context.enqueue_execution(doc)
        return Execution.from_doc(doc)

    @strawberry.mutation(description="Stop an execution (queued: at once; running: within ~1 s).")
    async def terminate_execution(self, info: strawberry.Info, id: strawberry.ID) -> Execution:
        access = await info.context.access()
        doc = await executions.terminate(access, object_id(id))
        if doc.get("orderKey") and doc["status"] == executions.Status.TERMINATED:
            # Terminated before it started: the next of its order may run now.
            for waiting in await execution_runs.next_in_line(access.db, [doc["orderKey"]]):
                await info.context.enqueue_execution(waiting)
        return Execution.from_doc(doc)

    @strawberry.mutation(description="Run a finished execution again, as its next attempt.")
    async def rerun_execution(self, info: strawberry.Info, id: strawberry.ID) -> Execution:
        access = await info.context.access()
        doc = await executions.rerun(access, object_id(id))
        await info.context.enqueue_execution(doc)
        return Execution.from_doc(doc)


@strawberry.type(description="How many of a project's executions are in one status.")
class StatusCount:
    status: str
    count: int


async def project_executions(
    info: strawberry.Info,
    project_id: Any,
    statuses: list[str] | None,
    dql_filter: JSON | None,
    first: int,
    after: str | None,
) -> Connection[Execution]:
    await projects.get_project(await info.context.access(), project_id)
    query = {"projectId": project_id}
    return await executions_page(info, query, statuses, dql_filter, first, after)


async def status_counts(info: strawberry.Info, chosen: dict[str, Any]) -> list[StatusCount]:
    access = await info.context.access()
    counts = await executions.status_counts(access, chosen)
    return [StatusCount(status=status, count=count) for status, count in counts.items()]


@strawberry.input
class BatchInput:
    function: str
    filter: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="DQL over the project's items."
    )
    input: JSON | None = strawberry.UNSET


@strawberry.type
class BatchMutations:
    @strawberry.mutation(
        description="Run a function on every item a DQL filter matches, as a Command."
    )
    async def execute_batch(
        self,
        info: strawberry.Info,
        service_id: strawberry.ID,
        input: BatchInput,
        idempotency_key: IdempotencyKey = None,
    ) -> Command:
        access = await info.context.access()
        doc = await batches.start_batch(
            access,
            object_id(service_id, "serviceId"),
            as_input(input),
            info.context.enqueue_command,
            idempotency_key=idempotency_key,
        )
        return Command.from_doc(doc)

    @strawberry.mutation(
        description="Rerun a project's finished executions, as a Command: those in `statuses` "
        "(any finished status if not given) that match the DQL `filter` over executions."
    )
    async def rerun_batch(
        self,
        info: strawberry.Info,
        project_id: strawberry.ID,
        statuses: list[str] | None = None,
        filter: JSON | None = None,
    ) -> Command:
        access = await info.context.access()
        doc = await batches.start_rerun(
            access,
            object_id(project_id, "projectId"),
            statuses,
            filter,
            info.context.enqueue_command,
        )
        return Command.from_doc(doc)
