"""Administration outside the graph: the first key of an organization.

This bypasses the access rules on purpose — it runs on the server with direct database access
(`loom keys create`, and the demo seed), the way one bootstraps any multi-tenant system.
"""

from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pydantic import EmailStr
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from gateway.indexes import ensure_indexes
from resolvers import memberships
from resolvers.access import OrgRole
from resolvers.api_keys import issue_key
from resolvers.inputs import Input, Name, parse
from resolvers.memberships import ORG_MEMBERS
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction
from resolvers.users import UserRef, ensure_user


class KeyRequest(Input):
    """What `loom keys create` is given, named as its flags are."""

    org: Name
    email: EmailStr
    name: Name


def check_key_request(org: str, email: str, key_name: str) -> KeyRequest:
    """The organization (its id, or its name: an id is a valid name too), the user's email and
    the key's name, validated: BAD_USER_INPUT before anything is written, or any server is even
    started."""
    return parse(KeyRequest, {"org": org, "email": email, "name": key_name})


async def _organization(db: AsyncDatabase, name_or_id: str) -> dict[str, Any]:
    """The organization with this id or name, created (named so) when there is none."""
    try:
        found = await db.organizations.find_one({"_id": ObjectId(name_or_id)})
    except InvalidId:
        found = None
    if found is not None:
        return found
    fresh = new_document(None, name=name_or_id, membersVersion=0)
    fresh.pop("_id")
    return await db.organizations.find_one_and_update(
        {"name": name_or_id}, {"$setOnInsert": fresh}, upsert=True, return_document=True
    )


async def create_key(
    db: AsyncDatabase, org: str, role: OrgRole, email: str, key_name: str
) -> tuple[str, dict[str, Any]]:
    """Give `email` the role `role` in `org` (both created if needed) and a key for that org."""
    request = check_key_request(org, email, key_name)
    await ensure_indexes(db)
    organization = await _organization(db, request.org)
    user = await ensure_user(db, UserRef(email=request.email), None)

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
    return await issue_key(db, user["_id"], request.name, organization["_id"])
