"""Projects inside organizations, and their members."""

from typing import Any

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from resolvers import memberships
from resolvers.access import Access, Action, ProjectRole
from resolvers.errors import BadUserInput, Conflict
from resolvers.inputs import Changes, Description, Input, Name, parse
from resolvers.memberships import ORG_MEMBERS, PROJECT_MEMBERS
from resolvers.pagination import Page, PageRequest, paginate, paginate_many
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction


class ProjectInput(Input):
    name: Name
    description: Description = ""


class ProjectChanges(Changes):
    name: Name | None = None
    description: Description | None = None
    archived: bool | None = None


class ProjectRoleInput(Input):
    role: ProjectRole


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A project named {name!r} already exists in this organization", field="name")


async def create_project(access: Access, org_id: ObjectId, data: dict[str, Any]) -> dict[str, Any]:
    """Create a project; its creator becomes its owner."""
    access.require_org(org_id, Action.CREATE_PROJECT)
    project_input = parse(ProjectInput, data)
    project = new_document(
        access.user_id,
        orgId=org_id,
        name=project_input.name,
        description=project_input.description,
        archived=False,
        membersVersion=0,
    )

    async def work(session: AsyncClientSession) -> None:
        try:
            await access.db.projects.insert_one(project, session=session)
        except DuplicateKeyError as exc:
            raise _name_taken(project_input.name) from exc
        await memberships.insert_member(
            access.db,
            PROJECT_MEMBERS,
            project,
            access.user_id,
            ProjectRole.OWNER,
            access.user_id,
            session,
        )

    await in_transaction(access.db, work)
    (await access.project_roles())[project["_id"]] = ProjectRole.OWNER
    return project


async def get_project(access: Access, project_id: ObjectId) -> dict[str, Any]:
    return await access.visible("projects", project_id, project_field="_id", entity="Project")


def _project_query(archived: bool | None) -> dict[str, Any]:
    return {} if archived is None else {"archived": archived}


async def list_projects(access: Access, page: PageRequest, archived: bool | None = None) -> Page:
    """The visible projects across the caller's organizations."""
    query = {"$and": [await access.scope(project_field="_id"), _project_query(archived)]}
    return await paginate(access.db.projects, query, page, sort=[("name", 1)])


async def projects_of_orgs(
    access: Access, org_ids: list[ObjectId], page: PageRequest, archived: bool | None = None
) -> dict[ObjectId, Page]:
    """A page of visible projects for each of several organizations, in one round trip."""
    for org_id in org_ids:
        access.require_org(org_id, Action.READ_ORG)
    query = {"$and": [await access.scope(project_field="_id"), _project_query(archived)]}
    return await paginate_many(
        access.db.projects, "orgId", org_ids, query, page, sort=[("name", 1)]
    )


async def update_project(
    access: Access, project_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    project = await get_project(access, project_id)
    await access.require_project(project, Action.UPDATE_PROJECT)
    changes = parse(ProjectChanges, data).model_dump(exclude_none=True, by_alias=True)
    try:
        return await access.db.projects.find_one_and_update(
            {"_id": project_id}, {"$set": {**changes, "updatedAt": now()}}, return_document=True
        )
    except DuplicateKeyError as exc:
        raise _name_taken(changes["name"]) from exc


async def _managed_project(access: Access, project_id: ObjectId) -> dict[str, Any]:
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_PROJECT_MEMBERS)
    return project


async def add_member(
    access: Access, project_id: ObjectId, user_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Add a member of the project's organization to the project."""
    member = parse(ProjectRoleInput, data)
    project = await _managed_project(access, project_id)
    in_org = await access.db[ORG_MEMBERS.collection].find_one(
        {"orgId": project["orgId"], "userId": user_id}, {"_id": 1}
    )
    if in_org is None:
        raise BadUserInput(
            "Only members of the project's organization can join the project", field="userId"
        )
    return await memberships.add_member(
        access.db, PROJECT_MEMBERS, project, user_id, member.role, access.user_id
    )


async def update_member(
    access: Access, project_id: ObjectId, user_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    change = parse(ProjectRoleInput, data)
    await _managed_project(access, project_id)
    return await memberships.set_role(access.db, PROJECT_MEMBERS, project_id, user_id, change.role)


async def remove_member(access: Access, project_id: ObjectId, user_id: ObjectId) -> None:
    await _managed_project(access, project_id)
    await memberships.remove_member(access.db, PROJECT_MEMBERS, project_id, user_id)


async def list_members(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    project = await get_project(access, project_id)
    await access.require_project(project, Action.READ_PROJECT_MEMBERS)
    return await memberships.list_members(access.db, PROJECT_MEMBERS, project_id, page)
