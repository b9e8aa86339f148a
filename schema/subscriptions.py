"""Live subscriptions (graphql-transport-ws on /graphql): executions and commands as they change,
a project's events as the relay captures them, its webhook deliveries attempt by attempt, and a
deployment's predicted assets.

Every subscription checks each document against its caller's access as it is when the document
is delivered, on top of the filter it asked for. When access changes while it runs (a key
revoked, a member removed from or added to an organization or project, in any process), it
re-checks before delivering anything that changed afterwards: it goes on with the new access,
or ends with the error the same subscription would now get (UNAUTHENTICATED, NOT_FOUND).

A subscription that falls behind the change feed (a burst: an executeBatch moving thousands of
executions at once) is not dropped: its inbox keeps the latest state of each document, every
final one (gateway/inboxes.py), and each result says which document it shows and how many of
its states it stands for, so the gateway can coalesce further per WebSocket and tell the
client. Only one that stays behind longer than `LOOM_SUBSCRIPTION_MAX_LAG_S` ends, with
RATE_LIMITED.
"""

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import strawberry

from gateway.change_feed import AccessChanged
from gateway.inboxes import Entity, Overflowed, show
from resolvers import commands, executions, projects, services, webhooks
from resolvers.access import Access
from resolvers.deployments import lifecycle as deployments
from resolvers.errors import BadUserInput, RateLimited
from resolvers.inputs import object_id
from schema.commands import Command
from schema.predicted_assets import PredictedAsset
from schema.services import Execution
from schema.triggers import ActionEnum, Event, ResourceEnum
from schema.webhooks import WebhookDelivery

Document = dict[str, Any]
Check = Callable[[Access], Awaitable[Callable[[Document], bool]]]
"""Verifies, for a caller's access, what a subscription names (NOT_FOUND when it may not see
it), and returns the subscription's filter."""
UNFINISHED = frozenset(
    {executions.Status.CREATED, executions.Status.IN_PROGRESS, *commands.UNFINISHED}
)
"""An execution's or a command's states that are not final: any other status is, and is never
coalesced away (a status added later counts as final until listed here — the safe side)."""


def _shows(doc: Document, coalesced: int = 0) -> Entity:
    """Documents without a status (events) are final: none is coalesced away."""
    return Entity(doc["_id"], doc.get("status") not in UNFINISHED, coalesced)


def _entity(item: Document | AccessChanged) -> Entity | None:
    """Which document a feed item shows; access-change markers show none."""
    return None if isinstance(item, AccessChanged) else _shows(item)


async def _stream(info: strawberry.Info, collection: str, check: Check) -> AsyncGenerator[Document]:
    """The changed documents of `collection` that pass `check`'s filter and the caller's
    access, from now on."""
    context = info.context
    feed = context.feed
    await feed.ready()
    changes = feed.access_changes
    access = await context.reauthenticate()
    wants = await check(access)
    sees = await access.sees()
    async with feed.subscribe(collection, wants, sees, access.user_id) as subscriber:
        # The feed knows no entities; this subscription does.
        subscriber.inbox.coalesce(_entity, context.settings.subscription_max_lag_s)
        if feed.access_changes != changes:
            subscriber.access_changed()
        rechecked = 0
        while True:
            try:
                item = await subscriber.next()
            except Overflowed as exc:
                raise RateLimited(exc.message, limit=exc.limit, max=exc.maximum) from exc
            if not isinstance(item, AccessChanged):
                if wants(item) and sees(item):
                    show(_shows(item, subscriber.inbox.coalesced))
                    yield item
            elif item.number > rechecked:
                # Read after every change delivered so far: a burst costs one or two re-checks.
                upto = subscriber.access_changes
                access = await context.reauthenticate()
                await check(access)
                sees = await access.sees()
                subscriber.rechecked(upto, sees)
                rechecked = upto


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
        allowed = set(statuses) if statuses else None

        async def check(access: Access) -> Callable[[Document], bool]:
            wanted: Document = {}
            if execution_id is not None:
                execution = await executions.get_execution(access, object_id(execution_id))
                wanted["_id"] = execution["_id"]
            if service_id is not None:
                service = await services.get_service(access, object_id(service_id, "serviceId"))
                wanted["serviceId"] = service["_id"]
            if project_id is not None:
                project = await projects.get_project(access, object_id(project_id, "projectId"))
                wanted["projectId"] = project["_id"]

            def wants(doc: Document) -> bool:
                if any(doc.get(key) != value for key, value in wanted.items()):
                    return False
                return allowed is None or doc["status"] in allowed

            return wants

        async for doc in _stream(info, "executions", check):
            yield Execution.from_doc(doc)

    @strawberry.subscription(
        description="Every change of one command, or of a project's commands, from now on."
    )
    async def command_updated(
        self,
        info: strawberry.Info,
        command_id: strawberry.ID | None = None,
        project_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[Command, None]:
        if (command_id is None) == (project_id is None):
            raise BadUserInput("Give one of commandId and projectId")

        async def check(access: Access) -> Callable[[Document], bool]:
            if command_id is not None:
                command = await commands.get_command(access, object_id(command_id, "commandId"))
                return lambda doc: doc["_id"] == command["_id"]
            project = await projects.get_project(access, object_id(project_id, "projectId"))
            return lambda doc: doc["projectId"] == project["_id"]

        async for doc in _stream(info, "commands", check):
            yield Command.from_doc(doc)

    @strawberry.subscription(
        description="Every change of a project's webhook deliveries (or one webhook's) from "
        "now on: each attempt, retry, success or failure as it is written."
    )
    async def webhook_delivery_updated(
        self,
        info: strawberry.Info,
        project_id: strawberry.ID,
        webhook_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[WebhookDelivery, None]:
        async def check(access: Access) -> Callable[[Document], bool]:
            project = await projects.get_project(access, object_id(project_id, "projectId"))
            wanted = {"projectId": project["_id"]}
            if webhook_id is not None:
                webhook = await webhooks.get_webhook(access, object_id(webhook_id, "webhookId"))
                wanted["webhookId"] = webhook["_id"]
            return lambda doc: all(doc.get(key) == value for key, value in wanted.items())

        async for doc in _stream(info, "deliveries", check):
            yield WebhookDelivery.from_doc(doc)

    @strawberry.subscription(
        description="A project's events from now on, as the relay captures them: optionally "
        "only some resources and actions."
    )
    async def events(
        self,
        info: strawberry.Info,
        project_id: strawberry.ID,
        resources: list[ResourceEnum] | None = None,
        actions: list[ActionEnum] | None = None,
    ) -> AsyncGenerator[Event, None]:
        kinds = {str(resource) for resource in resources} if resources else None
        changes = {str(action) for action in actions} if actions else None

        async def check(access: Access) -> Callable[[Document], bool]:
            project = await projects.get_project(access, object_id(project_id, "projectId"))

            def wants(doc: Document) -> bool:
                return (
                    doc["projectId"] == project["_id"]
                    and (kinds is None or doc["resource"] in kinds)
                    and (changes is None or doc["action"] in changes)
                )

            return wants

        async for doc in _stream(info, "events", check):
            yield Event.from_doc(doc)

    @strawberry.subscription(
        description="A deployment's predicted assets from now on, each time one changes: "
        "created by predict, then its champion's and its shadow's outcomes — a live monitor."
    )
    async def predictions(
        self, info: strawberry.Info, deployment_id: strawberry.ID
    ) -> AsyncGenerator[PredictedAsset, None]:
        async def check(access: Access) -> Callable[[Document], bool]:
            deployment = await deployments.get_deployment(
                access, object_id(deployment_id, "deploymentId")
            )
            return lambda doc: doc["deploymentId"] == deployment["_id"]

        async for doc in _stream(info, "predicted_assets", check):
            yield PredictedAsset.from_doc(doc)
