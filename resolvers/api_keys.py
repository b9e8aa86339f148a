"""API keys: how callers authenticate.

A key is shown once, when created; only its SHA-256 is stored (keys are 256-bit random
strings, so a fast hash is enough — there is nothing to brute-force). A key acts as its user,
limited to one organization when it was created for one. The gateway may keep what `find_key`
found between requests, but only while its change feed tells it of every change that could
make it stale (gateway/auth_cache.py).
"""

import hashlib
import secrets
from datetime import timedelta
from typing import Any, NamedTuple

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.read_concern import ReadConcern

from resolvers.access import Access, Principal
from resolvers.errors import NotFound, Unauthenticated
from resolvers.inputs import Input, Name, object_id, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.timestamps import new_document, now

PREFIX = "loom_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`lastUsedAt` is rewritten at most this often per key, so reads do not become writes."""


class ApiKeyInput(Input):
    name: Name
    organization_id: str | None = None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def issue_key(
    db: AsyncDatabase, user_id: ObjectId, name: str, org_scope: ObjectId | None
) -> tuple[str, dict[str, Any]]:
    """Create a key for a user; returns the clear key (never stored) and its document."""
    key = PREFIX + secrets.token_urlsafe(32)
    doc = new_document(
        user_id,
        userId=user_id,
        orgId=org_scope,
        name=name,
        hint=key[: len(PREFIX) + 6],
        hash=digest(key),
        lastUsedAt=None,
        revokedAt=None,
    )
    await db.api_keys.insert_one(doc)
    return key, doc


async def create_key(access: Access, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A new key for the caller, optionally limited to one of its organizations."""
    key_input = parse(ApiKeyInput, data)
    org_scope = access.principal.org_scope
    if key_input.organization_id is not None:
        org_scope = object_id(key_input.organization_id, "organizationId")
        access.org_role(org_scope)
    return await issue_key(access.db, access.user_id, key_input.name, org_scope)


def _own_keys(access: Access) -> dict[str, Any]:
    """The caller's keys; a key limited to one organization sees only the keys limited to it."""
    query: dict[str, Any] = {"userId": access.user_id}
    if access.principal.org_scope is not None:
        query["orgId"] = access.principal.org_scope
    return query


async def revoke_key(access: Access, key_id: ObjectId) -> dict[str, Any]:
    """Revoke one of the caller's own keys (revoking twice is harmless)."""
    doc = await access.db.api_keys.find_one_and_update(
        {"_id": key_id, **_own_keys(access)},
        [{"$set": {"revokedAt": {"$ifNull": ["$revokedAt", now()]}}}],
        return_document=True,
    )
    if doc is None:
        raise NotFound("API key not found", id=str(key_id))
    return doc


async def list_keys(access: Access, page: PageRequest) -> Page:
    return await paginate(access.db.api_keys, _own_keys(access), page)


class Authenticated(NamedTuple):
    access: Access
    user: dict[str, Any]


async def find_key(db: AsyncDatabase, key: str) -> dict[str, Any]:
    """A live key's record with its user and organization memberships, in one MongoDB round
    trip; UNAUTHENTICATED for an unknown or revoked key."""
    if not key.startswith(PREFIX):
        raise Unauthenticated("Invalid API key")
    pipeline = [
        {"$match": {"hash": digest(key), "revokedAt": None}},
        {"$limit": 1},
        {
            "$lookup": {
                "from": "org_members",
                "localField": "userId",
                "foreignField": "userId",
                "as": "memberships",
                "pipeline": [{"$project": {"orgId": 1, "role": 1}}],
            }
        },
        {"$lookup": {"from": "users", "localField": "userId", "foreignField": "_id", "as": "user"}},
    ]
    # Majority-committed state only, as the change feed that clears the cache sees it: a
    # write a failover rolls back is never taken for a grant.
    keys = db.api_keys.with_options(read_concern=ReadConcern("majority"))
    found = await (await keys.aggregate(pipeline)).to_list()
    if not found or not found[0]["user"]:
        raise Unauthenticated("Invalid or revoked API key")
    return found[0]


async def admit(db: AsyncDatabase, found: dict[str, Any]) -> Authenticated:
    """The caller a found key stands for, with fresh access state; records the key's use (at
    most once per LAST_USED_RESOLUTION)."""
    moment = now()
    if found["lastUsedAt"] is None or moment - found["lastUsedAt"] > LAST_USED_RESOLUTION:
        await db.api_keys.update_one({"_id": found["_id"]}, {"$set": {"lastUsedAt": moment}})
        found["lastUsedAt"] = moment
    principal = Principal(user_id=found["userId"], key_id=found["_id"], org_scope=found["orgId"])
    access = Access.from_memberships(db, principal, found["memberships"])
    return Authenticated(access, found["user"][0])


async def authenticate(db: AsyncDatabase, key: str) -> Authenticated:
    """The caller behind a bearer key, looked up now."""
    return await admit(db, await find_key(db, key))
