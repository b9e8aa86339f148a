"""Webhooks: a project's HTTP endpoints that triggers deliver events to.

A webhook's signing secret is shown once, when it is made (or rotated), and stored encrypted
with `LOOM_WEBHOOK_SECRET_KEY` (triggers/webhooks/signing.py `SecretBox`), bound to the webhook
so a ciphertext copied to another webhook does not decrypt. Rotation keeps the old secret
signing beside the new one for a grace period, so receivers can switch without dropping a
delivery. The URL is checked against the SSRF guard when it is saved, and again by the worker
before every attempt (DNS can change in between).
"""

import re
from datetime import timedelta
from typing import Any

from bson import Binary, ObjectId
from pydantic import Field, field_validator
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from resolvers.access import Access, Action
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.inputs import Changes, Description, Input, Name, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.projects import get_project
from resolvers.timestamps import new_document, now
from triggers.webhooks.address_guard import AddressGuard, UnsafeAddress
from triggers.webhooks.retry_policy import RetryPolicy
from triggers.webhooks.signing import SIGNATURE_HEADERS, SecretBox, new_secret

MAX_HEADERS = 20
DEFAULT_GRACE_S = 24 * 3600.0
RESERVED_HEADERS = SIGNATURE_HEADERS | {
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "x-request-id",
}
"""Headers Loom sets itself: custom headers cannot override them."""
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} custom headers")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"{name!r} is set by Loom and cannot be overridden")
        if len(value) > 4096 or any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            raise ValueError(f"header {name!r} has a value that is too long or not printable")
    return headers


class WebhookInput(Input):
    name: Name
    url: str = Field(max_length=2048)
    description: Description = ""
    headers: dict[str, str] = Field(default_factory=dict)
    active: bool = True
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    concurrency: int = Field(10, ge=1, le=1000)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return _headers(headers)


class WebhookChanges(Changes):
    name: Name | None = None
    url: str | None = Field(None, max_length=2048)
    description: Description | None = None
    headers: dict[str, str] | None = None
    active: bool | None = None
    retry_policy: dict[str, Any] | None = None
    """Only the settings given change; checked with the others as a whole RetryPolicy."""
    concurrency: int | None = Field(None, ge=1, le=1000)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        return None if headers is None else _headers(headers)


class Rotation(Input):
    grace_s: float = Field(DEFAULT_GRACE_S, ge=0, le=30 * 24 * 3600)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A webhook named {name!r} already exists in this project", field="name")


async def _safe_url(guard: AddressGuard, url: str) -> str:
    try:
        await guard.check(url)
    except UnsafeAddress as exc:
        raise BadUserInput(f"url refused: {exc}", field="url") from exc
    return url


def _secret_entry(box: SecretBox, webhook_id: ObjectId) -> tuple[str, dict[str, Any]]:
    secret = new_secret()
    entry = {
        "id": ObjectId(),
        "cipher": Binary(box.encrypt(secret, webhook_id.binary)),
        "createdAt": now(),
        "expiresAt": None,
    }
    return secret, entry


def signing_secrets(box: SecretBox, webhook: dict[str, Any]) -> list[str]:
    """The secrets that sign a delivery now: the current one and any still in their grace."""
    moment = now()
    return [
        box.decrypt(bytes(entry["cipher"]), webhook["_id"].binary)
        for entry in webhook["secrets"]
        if entry["expiresAt"] is None or entry["expiresAt"] > moment
    ]


async def create_webhook(
    access: Access,
    guard: AddressGuard,
    box: SecretBox,
    project_id: ObjectId,
    data: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """The new webhook and its signing secret, which is never shown again."""
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_WEBHOOKS)
    webhook = parse(WebhookInput, data)
    url = await _safe_url(guard, webhook.url)
    webhook_id = ObjectId()
    secret, entry = _secret_entry(box, webhook_id)
    doc = new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project["_id"],
        name=webhook.name,
        url=url,
        description=webhook.description,
        headers=webhook.headers,
        active=webhook.active,
        retryPolicy=webhook.retry_policy.model_dump(by_alias=True),
        concurrency=webhook.concurrency,
        secrets=[entry],
        disabledReason=None,
        disabledAt=None,
    )
    doc["_id"] = webhook_id
    try:
        await access.db.webhooks.insert_one(doc)
    except DuplicateKeyError as exc:
        raise _name_taken(webhook.name) from exc
    return doc, secret


async def get_webhook(access: Access, webhook_id: ObjectId) -> dict[str, Any]:
    return await access.visible("webhooks", webhook_id, project_field="projectId", entity="Webhook")


async def managed_webhook(access: Access, webhook_id: ObjectId) -> dict[str, Any]:
    webhook = await get_webhook(access, webhook_id)
    await access.require_project(webhook, Action.MANAGE_WEBHOOKS)
    return webhook


async def list_webhooks(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    await get_project(access, project_id)
    return await paginate(access.db.webhooks, {"projectId": project_id}, page, [("name", 1)])


async def update_webhook(
    access: Access, guard: AddressGuard, webhook_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Change a webhook; turning it on again clears why it was turned off."""
    webhook = await managed_webhook(access, webhook_id)
    changes = parse(WebhookChanges, data)
    update: dict[str, Any] = changes.model_dump(
        exclude_none=True, exclude={"retry_policy"}, by_alias=True
    )
    if changes.url is not None:
        await _safe_url(guard, changes.url)
    if changes.retry_policy is not None:
        merged = {**webhook["retryPolicy"], **changes.retry_policy}
        policy = parse(RetryPolicy, merged, "retryPolicy")
        update["retryPolicy"] = policy.model_dump(by_alias=True)
    if changes.active:
        update |= {"disabledReason": None, "disabledAt": None}
    try:
        updated = await access.db.webhooks.find_one_and_update(
            {"_id": webhook_id},
            {"$set": {**update, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError as exc:
        raise _name_taken(update["name"]) from exc
    if updated is None:
        raise NotFound("Webhook not found", id=str(webhook_id))
    return updated


async def rotate_secret(
    access: Access, box: SecretBox, webhook_id: ObjectId, data: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A new signing secret; the ones in use go on signing for `graceS` seconds beside it.
    Secrets whose grace has ended are dropped."""
    webhook = await managed_webhook(access, webhook_id)
    rotation = parse(Rotation, data)
    moment = now()
    ends = moment + timedelta(seconds=rotation.grace_s)
    kept = [
        {**entry, "expiresAt": min(entry["expiresAt"] or ends, ends)}
        for entry in webhook["secrets"]
        if entry["expiresAt"] is None or entry["expiresAt"] > moment
    ]
    secret, entry = _secret_entry(box, webhook_id)
    updated = await access.db.webhooks.find_one_and_update(
        {"_id": webhook_id, "updatedAt": webhook["updatedAt"]},
        {"$set": {"secrets": [*kept, entry], "updatedAt": moment}},
        return_document=ReturnDocument.AFTER,
    )
    if updated is None:
        raise Conflict("The webhook changed meanwhile; rotate again")
    return updated, secret


async def delete_webhook(access: Access, webhook_id: ObjectId) -> int:
    """Delete a webhook that no trigger uses; its pending deliveries are cancelled (their log
    stays). How many were cancelled."""
    await managed_webhook(access, webhook_id)
    used_by = await access.db.triggers.find_one({"operation.webhookId": webhook_id}, {"name": 1})
    used_by = used_by or await access.db.cron_triggers.find_one(
        {"operation.webhookId": webhook_id}, {"name": 1}
    )
    if used_by is not None:
        raise Conflict(f"Trigger {used_by['name']!r} delivers to this webhook; change it first")
    deleted = await access.db.webhooks.delete_one({"_id": webhook_id})
    if deleted.deleted_count == 0:
        raise NotFound("Webhook not found", id=str(webhook_id))
    cancelled = await access.db.deliveries.update_many(
        {"webhookId": webhook_id, "state": "pending"},
        {"$set": {"state": "cancelled", "reason": "the webhook was deleted", "endedAt": now()}},
    )
    return cancelled.modified_count
