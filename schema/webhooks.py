"""Webhooks and their deliveries: where triggers send events, and the log of every attempt."""

from datetime import datetime
from enum import StrEnum
from typing import Any

import strawberry
from bson import ObjectId
from strawberry.scalars import JSON

from resolvers import deliveries, projects, triggers, webhooks
from resolvers.access import Action
from resolvers.deliveries import DeliveryState
from resolvers.errors import Forbidden
from resolvers.inputs import object_id
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, optional_id, page_request
from triggers.webhooks.sender import message_id

HIDDEN = "HIDDEN"
"""What a custom header's value reads as for those who may not manage the webhook."""

DeliveryStateEnum = strawberry.enum(
    DeliveryState,
    name="DeliveryState",
    description="pending until an attempt lands (delivered) or it ends failed or cancelled.",
)


class AttemptOutcome(StrEnum):
    delivered = "delivered"
    retry = "retry"
    failed = "failed"
    gone = "gone"
    cancelled = "cancelled"
    lost = "lost"


AttemptOutcomeEnum = strawberry.enum(
    AttemptOutcome,
    name="DeliveryAttemptOutcome",
    description="What an attempt's answer meant; lost: its worker died before writing it.",
)


@strawberry.type(description="How a webhook's deliveries are retried.")
class RetryPolicy:
    max_attempts: int
    timeout_s: float = strawberry.field(description="The bound on each attempt, in seconds.")
    initial_delay_s: float
    max_delay_s: float
    multiplier: float
    retry_client_errors: bool = strawberry.field(
        description="Retry 4xx answers too (408, 409, 425 and 429 are always retried)."
    )


@strawberry.type(description="A signing secret, without its value (shown once, when made).")
class WebhookSecret:
    id: strawberry.ID
    created_at: datetime
    expires_at: datetime | None = strawberry.field(
        description="When its grace after a rotation ends; null for the current secret."
    )


@strawberry.type(description="An HTTP endpoint of a project that triggers deliver events to.")
class Webhook(Node):
    project_id: strawberry.ID
    name: str
    url: str
    description: str
    active: bool
    retry_policy: RetryPolicy
    concurrency: int = strawberry.field(description="Deliveries in flight at once, at most.")
    secrets: list[WebhookSecret]
    disabled_reason: str | None = strawberry.field(
        description="Why Loom turned it off (a 410 Gone), until it is turned on again."
    )
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    org_id: strawberry.Private[ObjectId]
    header_values: strawberry.Private[dict[str, str]]

    @strawberry.field(
        description="Custom headers sent with every delivery. They often carry credentials: "
        "their values are shown only to those who may manage webhooks (HIDDEN otherwise)."
    )
    async def headers(self, info: strawberry.Info) -> JSON:
        access = await info.context.access()
        scope = {"orgId": self.org_id, "_id": object_id(self.project_id)}
        try:
            await access.require_project(scope, Action.MANAGE_WEBHOOKS)
        except Forbidden:
            return {name: HIDDEN for name in self.header_values}
        return self.header_values

    @strawberry.field(description="Its deliveries, newest first.")
    async def deliveries(
        self,
        info: strawberry.Info,
        state: DeliveryStateEnum | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection["WebhookDelivery"]:
        query = {"webhookId": object_id(self.id)}
        return await deliveries_page(info, query, state, since, until, first, after)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Webhook":
        policy = doc["retryPolicy"]
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            project_id=strawberry.ID(str(doc["projectId"])),
            name=doc["name"],
            url=doc["url"],
            description=doc["description"],
            header_values=doc["headers"],
            org_id=doc["orgId"],
            active=doc["active"],
            retry_policy=RetryPolicy(
                max_attempts=policy["maxAttempts"],
                timeout_s=policy["timeoutS"],
                initial_delay_s=policy["initialDelayS"],
                max_delay_s=policy["maxDelayS"],
                multiplier=policy["multiplier"],
                retry_client_errors=policy["retryClientErrors"],
            ),
            concurrency=doc["concurrency"],
            secrets=[
                WebhookSecret(
                    id=strawberry.ID(str(entry["id"])),
                    created_at=entry["createdAt"],
                    expires_at=entry["expiresAt"],
                )
                for entry in doc["secrets"]
            ],
            disabled_reason=doc.get("disabledReason"),
            disabled_at=doc.get("disabledAt"),
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.type(description="One attempt to deliver: what was sent and what came back.")
class DeliveryAttempt:
    attempt: int
    outcome: AttemptOutcomeEnum
    at: datetime = strawberry.field(description="When its answer was written.")
    request_id: str | None = strawberry.field(description="Sent as x-request-id.")
    started_at: datetime | None
    status_code: int | None
    latency_ms: float | None
    response_headers: JSON | None
    response_body: str | None = strawberry.field(description="The first 4 KiB of the answer.")
    error: str | None = strawberry.field(description="Why no answer came, or why it ended.")


@strawberry.type(description="One message to one webhook, with every attempt to send it.")
class WebhookDelivery(Node):
    project_id: strawberry.ID
    webhook_id: strawberry.ID
    message_id: str = strawberry.field(
        description="The webhook-id header: the same on every attempt and redelivery."
    )
    type: str = strawberry.field(description="item.created, execution.statusChanged, loom.ping…")
    message: JSON = strawberry.field(description="The body sent, without its deliveryInfo.")
    state: DeliveryStateEnum
    reason: str | None = strawberry.field(description="Why it failed or was cancelled.")
    attempt_count: int
    max_attempts: int
    next_attempt_at: datetime | None = strawberry.field(description="While pending.")
    attempts: list[DeliveryAttempt]
    trigger_id: strawberry.ID | None
    event_id: strawberry.ID | None
    created_at: datetime
    ended_at: datetime | None

    @strawberry.field
    async def webhook(self, info: strawberry.Info) -> Webhook | None:
        access = await info.context.access()
        found = await access.find_visible("webhooks", object_id(self.webhook_id))
        return Webhook.from_doc(found) if found else None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "WebhookDelivery":
        pending = doc["state"] == DeliveryState.pending
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            project_id=strawberry.ID(str(doc["projectId"])),
            webhook_id=strawberry.ID(str(doc["webhookId"])),
            message_id=message_id(doc["_id"]),
            type=doc["type"],
            message=doc["message"],
            state=DeliveryState(doc["state"]),
            reason=doc.get("reason"),
            attempt_count=doc["attemptCount"],
            max_attempts=doc["maxAttempts"],
            next_attempt_at=doc["nextAttemptAt"] if pending else None,
            attempts=[
                DeliveryAttempt(
                    attempt=entry["attempt"],
                    outcome=AttemptOutcome(entry["outcome"]),
                    at=entry["at"],
                    request_id=entry.get("requestId"),
                    started_at=entry.get("startedAt"),
                    status_code=entry.get("statusCode"),
                    latency_ms=entry.get("latencyMs"),
                    response_headers=entry.get("responseHeaders"),
                    response_body=entry.get("responseBody"),
                    error=entry.get("error"),
                )
                for entry in doc["attempts"]
            ],
            trigger_id=optional_id(doc.get("triggerId")),
            event_id=optional_id(doc.get("eventId")),
            created_at=doc["createdAt"],
            ended_at=doc.get("endedAt"),
        )


@strawberry.type(description="A webhook just made or rotated, with its new signing secret.")
class WebhookWithSecret:
    webhook: Webhook
    secret: str = strawberry.field(
        description="whsec_…: shown this once; Loom keeps it encrypted and never returns it."
    )


@strawberry.input
class RetryPolicyInput:
    max_attempts: int | None = strawberry.UNSET
    timeout_s: float | None = strawberry.UNSET
    initial_delay_s: float | None = strawberry.UNSET
    max_delay_s: float | None = strawberry.UNSET
    multiplier: float | None = strawberry.UNSET
    retry_client_errors: bool | None = strawberry.UNSET


@strawberry.input
class WebhookInput:
    name: str
    url: str
    description: str | None = strawberry.UNSET
    headers: JSON | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    retry_policy: RetryPolicyInput | None = strawberry.UNSET
    concurrency: int | None = strawberry.UNSET


@strawberry.input
class WebhookChangesInput:
    name: str | None = strawberry.UNSET
    url: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    headers: JSON | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    retry_policy: RetryPolicyInput | None = strawberry.UNSET
    concurrency: int | None = strawberry.UNSET


async def deliveries_page(
    info: strawberry.Info,
    query: dict[str, Any],
    state: DeliveryState | None,
    since: datetime | None,
    until: datetime | None,
    first: int,
    after: str | None,
) -> Connection[WebhookDelivery]:
    access = await info.context.access()
    page = await deliveries.list_deliveries(
        access,
        query,
        page_request(info, first, after),
        str(state) if state else None,
        since,
        until,
    )
    return Connection.of(page, WebhookDelivery.from_doc)


async def project_webhooks(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[Webhook]:
    access = await info.context.access()
    page = await webhooks.list_webhooks(access, project_id, page_request(info, first, after))
    return Connection.of(page, Webhook.from_doc)


async def project_deliveries(
    info: strawberry.Info,
    project_id: Any,
    state: DeliveryState | None,
    since: datetime | None,
    until: datetime | None,
    first: int,
    after: str | None,
) -> Connection[WebhookDelivery]:
    access = await info.context.access()
    await projects.get_project(access, project_id)
    query = {"projectId": project_id}
    return await deliveries_page(info, query, state, since, until, first, after)


@strawberry.type
class WebhookQueries:
    @strawberry.field
    async def webhook(self, info: strawberry.Info, id: strawberry.ID) -> Webhook:
        access = await info.context.access()
        return Webhook.from_doc(await webhooks.get_webhook(access, object_id(id)))

    @strawberry.field
    async def webhook_delivery(self, info: strawberry.Info, id: strawberry.ID) -> WebhookDelivery:
        access = await info.context.access()
        return WebhookDelivery.from_doc(await deliveries.get_delivery(access, object_id(id)))


async def _queued(info: strawberry.Info, delivery: dict[str, Any]) -> WebhookDelivery:
    webhook = await info.context.connections.db.webhooks.find_one({"_id": delivery["webhookId"]})
    if webhook is not None:
        await info.context.enqueue_delivery(delivery, webhook)
    return WebhookDelivery.from_doc(delivery)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(description="Make a webhook; its signing secret is shown this once.")
    async def create_webhook(
        self, info: strawberry.Info, project_id: strawberry.ID, input: WebhookInput
    ) -> WebhookWithSecret:
        access = await info.context.access()
        doc, secret = await webhooks.create_webhook(
            access,
            info.context.webhook_guard,
            info.context.webhook_box,
            object_id(project_id, "projectId"),
            as_input(input),
        )
        return WebhookWithSecret(webhook=Webhook.from_doc(doc), secret=secret)

    @strawberry.mutation(description="Change a webhook; active: true turns a disabled one on.")
    async def update_webhook(
        self, info: strawberry.Info, id: strawberry.ID, input: WebhookChangesInput
    ) -> Webhook:
        access = await info.context.access()
        doc = await webhooks.update_webhook(
            access, info.context.webhook_guard, object_id(id), as_input(input)
        )
        await info.context.set_webhook_concurrency(doc)
        return Webhook.from_doc(doc)

    @strawberry.mutation(
        description="Delete a webhook no trigger uses; its pending deliveries are cancelled."
    )
    async def delete_webhook(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await webhooks.delete_webhook(access, object_id(id))
        return True

    @strawberry.mutation(
        description="A new signing secret; the old ones keep signing for graceSeconds (1 day)."
    )
    async def rotate_webhook_secret(
        self,
        info: strawberry.Info,
        id: strawberry.ID,
        grace_seconds: float | None = strawberry.UNSET,
    ) -> WebhookWithSecret:
        access = await info.context.access()
        data = {} if grace_seconds in (None, strawberry.UNSET) else {"graceS": grace_seconds}
        doc, secret = await webhooks.rotate_secret(
            access, info.context.webhook_box, object_id(id), data
        )
        return WebhookWithSecret(webhook=Webhook.from_doc(doc), secret=secret)

    @strawberry.mutation(description="Send a loom.ping message to a webhook.")
    async def ping_webhook(self, info: strawberry.Info, id: strawberry.ID) -> WebhookDelivery:
        access = await info.context.access()
        webhook = await webhooks.get_webhook(access, object_id(id))
        return await _queued(info, await deliveries.ping(access, webhook))

    @strawberry.mutation(
        description="Send an ended delivery again: the same message and webhook-id, new attempts."
    )
    async def redeliver(self, info: strawberry.Info, delivery_id: strawberry.ID) -> WebhookDelivery:
        access = await info.context.access()
        delivery = await deliveries.redeliver(access, object_id(delivery_id, "deliveryId"))
        return await _queued(info, delivery)

    @strawberry.mutation(
        description="Deliver a webhook trigger's message for one resource now, whatever its filter."
    )
    async def invoke_webhook_trigger(
        self, info: strawberry.Info, trigger_id: strawberry.ID, resource_id: strawberry.ID
    ) -> WebhookDelivery:
        access = await info.context.access()
        delivery = await triggers.invoke_webhook_trigger(
            access, object_id(trigger_id, "triggerId"), object_id(resource_id, "resourceId")
        )
        return await _queued(info, delivery)
