"""Live subscriptions (graphql-transport-ws on /graphql): executions and commands as they change.

Every subscription checks each document against the caller's access before delivering it, on
top of the filter it asked for.
"""

from collections.abc import AsyncGenerator, Callable
from typing import Any

import strawberry

from gateway.inboxes import Overflowed
from resolvers import commands, executions, projects, services
from resolvers.errors import RateLimited
from resolvers.inputs import object_id
from schema.commands import Command
from schema.services import Execution


async def _stream(
    info: strawberry.Info, collection: str, wants: Callable[[dict[str, Any]], bool]
) -> AsyncGenerator[dict[str, Any], None]:
    access = await info.context.access()
    sees = await access.sees()
    feed = info.context.feed
    await feed.ready()
    async with feed.subscribe(collection, lambda doc: sees(doc) and wants(doc)) as subscriber:
        while True:
            try:
                yield await subscriber.next()
            except Overflowed as exc:
                raise RateLimited.subscription_dropped(feed.queue_size) from exc


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every change of the matching executions from now on: one execution, a "
        "service's or a project's (or all the caller can see), optionally only some statuses."
    )
    async def execution_updated(
        self,
        info: strawberry.Info,
        execution_id: strawberry.ID | None = None,
        service_id: strawberry.ID | None = None,
        project_id: strawberry.ID | None = None,
        statuses: list[str] | None = None,
    ) -> AsyncGenerator[Execution, None]:
        access = await info.context.access()
        wanted: dict[str, Any] = {}
        if execution_id is not None:
            wanted["_id"] = (await executions.get_execution(access, object_id(execution_id)))["_id"]
        if service_id is not None:
            service = await services.get_service(access, object_id(service_id, "serviceId"))
            wanted["serviceId"] = service["_id"]
        if project_id is not None:
            project = await projects.get_project(access, object_id(project_id, "projectId"))
            wanted["projectId"] = project["_id"]
        allowed = set(statuses) if statuses else None

        def wants(doc: dict[str, Any]) -> bool:
            if any(doc.get(key) != value for key, value in wanted.items()):
                return False
            return allowed is None or doc["status"] in allowed

        async for doc in _stream(info, "executions", wants):
            yield Execution.from_doc(doc)

    @strawberry.subscription(description="Every change of one command from now on.")
    async def command_updated(
        self, info: strawberry.Info, command_id: strawberry.ID
    ) -> AsyncGenerator[Command, None]:
        access = await info.context.access()
        command = await commands.get_command(access, object_id(command_id, "commandId"))
        async for doc in _stream(info, "commands", lambda d: d["_id"] == command["_id"]):
            yield Command.from_doc(doc)
