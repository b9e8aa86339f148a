"""Members of an organization or a project: the same rules over two collections.

Every change runs in a transaction that also bumps the parent's `membersVersion`, so two
concurrent changes to one member list conflict and one is retried: the check "at least one
owner remains" can never be raced past.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from resolvers.access import OrgRole, ProjectRole
from resolvers.errors import Conflict, NotFound
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction


@dataclass(frozen=True)
class MemberList:
    collection: str
    parent_collection: str
    parent_field: str
    owner: StrEnum
    kind: str


ORG_MEMBERS = MemberList("org_members", "organizations", "orgId", OrgRole.OWNER, "organization")
PROJECT_MEMBERS = MemberList(
    "project_members", "projects", "projectId", ProjectRole.OWNER, "project"
)


def _parent_ids(members: MemberList, parent: dict[str, Any]) -> dict[str, ObjectId]:
    """The ids a member row carries: the org, and the project for project members."""
    if members is ORG_MEMBERS:
        return {"orgId": parent["_id"]}
    return {"orgId": parent["orgId"], "projectId": parent["_id"]}


async def insert_member(
    db: AsyncDatabase,
    members: MemberList,
    parent: dict[str, Any],
    user_id: ObjectId,
    role: StrEnum,
    creator: ObjectId | None,
    session: AsyncClientSession,
) -> dict[str, Any]:
    doc = new_document(creator, **_parent_ids(members, parent), userId=user_id, role=str(role))
    try:
        await db[members.collection].insert_one(doc, session=session)
    except DuplicateKeyError as exc:
        raise Conflict(f"That user is already a member of this {members.kind}") from exc
    return doc


async def _lock_parent(
    db: AsyncDatabase, members: MemberList, parent_id: ObjectId, session: AsyncClientSession
) -> None:
    await db[members.parent_collection].update_one(
        {"_id": parent_id}, {"$inc": {"membersVersion": 1}}, session=session
    )


async def _ensure_an_owner_remains(
    db: AsyncDatabase, members: MemberList, parent_id: ObjectId, session: AsyncClientSession
) -> None:
    owners = await db[members.collection].count_documents(
        {members.parent_field: parent_id, "role": str(members.owner)}, session=session
    )
    if owners == 0:
        raise Conflict(f"A {members.kind} must keep at least one owner")


async def _leave_projects(
    db: AsyncDatabase, query: dict[str, ObjectId], session: AsyncClientSession
) -> None:
    owned = await db[PROJECT_MEMBERS.collection].distinct(
        "projectId", {**query, "role": str(PROJECT_MEMBERS.owner)}, session=session
    )
    await db[PROJECT_MEMBERS.collection].delete_many(query, session=session)
    for project_id in owned:
        await _lock_parent(db, PROJECT_MEMBERS, project_id, session)
        await _ensure_an_owner_remains(db, PROJECT_MEMBERS, project_id, session)


async def get_member(
    db: AsyncDatabase, members: MemberList, parent_id: ObjectId, user_id: ObjectId
) -> dict[str, Any]:
    doc = await db[members.collection].find_one(
        {members.parent_field: parent_id, "userId": user_id}
    )
    if doc is None:
        raise NotFound(f"No such member of this {members.kind}", userId=str(user_id))
    return doc


async def add_member(
    db: AsyncDatabase,
    members: MemberList,
    parent: dict[str, Any],
    user_id: ObjectId,
    role: StrEnum,
    creator: ObjectId,
) -> dict[str, Any]:
    async def work(session: AsyncClientSession) -> dict[str, Any]:
        await _lock_parent(db, members, parent["_id"], session)
        return await insert_member(db, members, parent, user_id, role, creator, session)

    return await in_transaction(db, work)


async def set_role(
    db: AsyncDatabase, members: MemberList, parent_id: ObjectId, user_id: ObjectId, role: StrEnum
) -> dict[str, Any]:
    async def work(session: AsyncClientSession) -> dict[str, Any]:
        await _lock_parent(db, members, parent_id, session)
        doc = await db[members.collection].find_one_and_update(
            {members.parent_field: parent_id, "userId": user_id},
            {"$set": {"role": str(role), "updatedAt": now()}},
            return_document=True,
            session=session,
        )
        if doc is None:
            raise NotFound(f"No such member of this {members.kind}", userId=str(user_id))
        await _ensure_an_owner_remains(db, members, parent_id, session)
        return doc

    return await in_transaction(db, work)


async def remove_member(
    db: AsyncDatabase, members: MemberList, parent_id: ObjectId, user_id: ObjectId
) -> None:
    """Remove a member; leaving an organization also ends its project memberships there —
    refused while the user is the last owner of one of those projects."""

    async def work(session: AsyncClientSession) -> None:
        await _lock_parent(db, members, parent_id, session)
        query = {members.parent_field: parent_id, "userId": user_id}
        removed = await db[members.collection].delete_one(query, session=session)
        if removed.deleted_count == 0:
            raise NotFound(f"No such member of this {members.kind}", userId=str(user_id))
        if members is ORG_MEMBERS:
            await _leave_projects(db, query, session)
        await _ensure_an_owner_remains(db, members, parent_id, session)

    await in_transaction(db, work)


async def list_members(
    db: AsyncDatabase, members: MemberList, parent_id: ObjectId, page: PageRequest
) -> Page:
    return await paginate(db[members.collection], {members.parent_field: parent_id}, page)
