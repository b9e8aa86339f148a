"""Administration outside the graph: the first key of an organization, and the demo data.

These bypass the access rules on purpose — they run on the server with direct database access
(`loom keys create`, `loom dev --seed-demo`), the way one bootstraps any multi-tenant system.
"""

from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from gateway.indexes import ensure_indexes
from resolvers import memberships, projects
from resolvers.access import OrgRole
from resolvers.api_keys import authenticate, find_key, issue_key
from resolvers.errors import Unauthenticated
from resolvers.inputs import parse
from resolvers.memberships import ORG_MEMBERS
from resolvers.organizations import OrganizationInput
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction
from resolvers.users import UserRef, ensure_user

DEMO_ORG = "Demo"
DEMO_PROJECT = "Street scenes"
DEMO_EMAIL = "demo@loom.dev"


async def _organization(db: AsyncDatabase, name_or_id: str) -> dict[str, Any]:
    """The organization with this id or name, created (named so) when there is none."""
    try:
        found = await db.organizations.find_one({"_id": ObjectId(name_or_id)})
    except InvalidId:
        found = None
    if found is not None:
        return found
    name = parse(OrganizationInput, {"name": name_or_id}).name
    fresh = new_document(None, name=name, membersVersion=0)
    fresh.pop("_id")
    return await db.organizations.find_one_and_update(
        {"name": name}, {"$setOnInsert": fresh}, upsert=True, return_document=True
    )


async def create_key(
    db: AsyncDatabase, org: str, role: OrgRole, email: str, key_name: str
) -> tuple[str, dict[str, Any]]:
    """Give `email` the role `role` in `org` (both created if needed) and a key for that org."""
    await ensure_indexes(db)
    organization = await _organization(db, org)
    user = await ensure_user(db, parse(UserRef, {"email": email}), None)

    async def work(session: AsyncClientSession) -> None:
        updated = await db.org_members.update_one(
            {"orgId": organization["_id"], "userId": user["_id"]},
            {"$set": {"role": str(role), "updatedAt": now()}},
            session=session,
        )
        if updated.matched_count == 0:
            await memberships.insert_member(
                db, ORG_MEMBERS, organization, user["_id"], role, None, session
            )

    await in_transaction(db, work)
    return await issue_key(db, user["_id"], key_name, organization["_id"])


async def seed_demo(db: AsyncDatabase, saved_key: str | None = None) -> tuple[str, dict[str, Any]]:
    """A small demo organization with one project, and an owner key for it: `saved_key` again
    while it is a live owner key of the demo organization (so `loom dev` shows the same key on
    every start), a fresh one otherwise."""
    key, doc = await _demo_key(db, saved_key) or await create_key(
        db, DEMO_ORG, OrgRole.OWNER, DEMO_EMAIL, "demo"
    )
    if await db.projects.find_one({"orgId": doc["orgId"], "name": DEMO_PROJECT}) is None:
        access, _ = await authenticate(db, key)
        await projects.create_project(
            access, doc["orgId"], {"name": DEMO_PROJECT, "description": "Demo data"}
        )
    return key, doc


async def _demo_key(db: AsyncDatabase, key: str | None) -> tuple[str, dict[str, Any]] | None:
    if key is None:
        return None
    try:
        found = await find_key(db, key)
    except Unauthenticated:
        return None
    organization = await db.organizations.find_one({"_id": found["orgId"]})
    owns = any(
        m["orgId"] == found["orgId"] and m["role"] == str(OrgRole.OWNER)
        for m in found["memberships"]
    )
    return (key, found) if owns and organization and organization["name"] == DEMO_ORG else None
