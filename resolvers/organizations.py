"""Organizations and their members."""

from typing import Any

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from resolvers import memberships
from resolvers.access import Access, Action, OrgRole
from resolvers.errors import Conflict, Forbidden
from resolvers.inputs import Input, Name, parse
from resolvers.memberships import ORG_MEMBERS
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction
from resolvers.users import UserRef, ensure_user


class OrganizationInput(Input):
    name: Name


class OrgMemberInput(Input):
    user: UserRef
    role: OrgRole


class OrgRoleInput(Input):
    role: OrgRole


def _name_taken(name: str) -> Conflict:
    return Conflict(f"An organization named {name!r} already exists", field="name")


async def create_organization(access: Access, data: dict[str, Any]) -> dict[str, Any]:
    """Create an organization with the caller as its owner (keys limited to one org may not)."""
    if access.principal.org_scope is not None:
        raise Forbidden("This API key is limited to one organization; it cannot create others")
    org_input = parse(OrganizationInput, data)
    org = new_document(access.user_id, name=org_input.name, membersVersion=0)

    async def work(session: AsyncClientSession) -> None:
        try:
            await access.db.organizations.insert_one(org, session=session)
        except DuplicateKeyError as exc:
            raise _name_taken(org_input.name) from exc
        await memberships.insert_member(
            access.db, ORG_MEMBERS, org, access.user_id, OrgRole.OWNER, access.user_id, session
        )

    await in_transaction(access.db, work)
    access.org_roles[org["_id"]] = OrgRole.OWNER
    return org


async def get_organization(access: Access, org_id: ObjectId) -> dict[str, Any]:
    access.require_org(org_id, Action.READ_ORG)
    return await access.visible(
        "organizations", org_id, project_field=None, org_field="_id", entity="Organization"
    )


async def list_organizations(access: Access, page: PageRequest) -> Page:
    query = {"_id": {"$in": list(access.org_roles)}}
    return await paginate(access.db.organizations, query, page, sort=[("name", 1)])


async def update_organization(
    access: Access, org_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    access.require_org(org_id, Action.UPDATE_ORG)
    changes = parse(OrganizationInput, data)
    try:
        return await access.db.organizations.find_one_and_update(
            {"_id": org_id},
            {"$set": {"name": changes.name, "updatedAt": now()}},
            return_document=True,
        )
    except DuplicateKeyError as exc:
        raise _name_taken(changes.name) from exc


def _require_owner_for(access: Access, org_id: ObjectId, *roles: str) -> None:
    """Only owners grant, change or remove the owner role."""
    caller = access.require_org(org_id, Action.MANAGE_ORG_MEMBERS)
    if OrgRole.OWNER in roles and caller != OrgRole.OWNER:
        raise Forbidden("Only an organization owner may grant, change or remove the owner role")


async def add_member(access: Access, org_id: ObjectId, data: dict[str, Any]) -> dict[str, Any]:
    member = parse(OrgMemberInput, data)
    _require_owner_for(access, org_id, member.role)
    org = await get_organization(access, org_id)
    user = await ensure_user(access.db, member.user, access.user_id)
    return await memberships.add_member(
        access.db, ORG_MEMBERS, org, user["_id"], member.role, access.user_id
    )


async def update_member(
    access: Access, org_id: ObjectId, user_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    change = parse(OrgRoleInput, data)
    access.require_org(org_id, Action.MANAGE_ORG_MEMBERS)
    current = await memberships.get_member(access.db, ORG_MEMBERS, org_id, user_id)
    _require_owner_for(access, org_id, change.role, current["role"])
    return await memberships.set_role(access.db, ORG_MEMBERS, org_id, user_id, change.role)


async def remove_member(access: Access, org_id: ObjectId, user_id: ObjectId) -> None:
    access.require_org(org_id, Action.MANAGE_ORG_MEMBERS)
    current = await memberships.get_member(access.db, ORG_MEMBERS, org_id, user_id)
    _require_owner_for(access, org_id, current["role"])
    await memberships.remove_member(access.db, ORG_MEMBERS, org_id, user_id)


async def list_members(access: Access, org_id: ObjectId, page: PageRequest) -> Page:
    access.require_org(org_id, Action.READ_ORG_MEMBERS)
    return await memberships.list_members(access.db, ORG_MEMBERS, org_id, page)
