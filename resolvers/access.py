"""Who may see and do what: the one tenancy and role mechanism every field goes through.

A caller is a user, possibly narrowed to one organization by the API key it used. Visibility
follows membership:

- an organization is visible to its members;
- a project is visible to its organization's owners and admins, and to its own members;
- anything inside a project (datasets, items, …) is visible exactly when its project is.

What a visible thing may be used for is the role tables below. Resolvers never test roles
themselves: they call `require_org`, `require_project` or `require` (one document), and
`scope` (a MongoDB filter for lists). Something invisible is NOT_FOUND — its existence is not
revealed — while something visible but beyond the caller's role is FORBIDDEN.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.read_concern import ReadConcern

from resolvers.errors import Forbidden, NotFound


class OrgRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    WORKER = "worker"


class ProjectRole(StrEnum):
    OWNER = "owner"
    DEVELOPER = "developer"
    ANNOTATION_MANAGER = "annotationManager"
    ANNOTATOR = "annotator"


class Action(StrEnum):
    READ_ORG = "read organization"
    UPDATE_ORG = "update organization"
    READ_ORG_MEMBERS = "list organization members"
    MANAGE_ORG_MEMBERS = "manage organization members"
    CREATE_PROJECT = "create projects"
    READ_PROJECT = "read project"
    UPDATE_PROJECT = "update project"
    READ_PROJECT_MEMBERS = "list project members"
    MANAGE_PROJECT_MEMBERS = "manage project members"
    MANAGE_DATASETS = "create, change or delete datasets"
    WRITE_ITEMS = "upload, change or delete items"
    WRITE_ANNOTATIONS = "create, change or delete annotations"
    MANAGE_SERVICES = "create, change or delete services"
    RUN_EXECUTIONS = "execute, terminate or rerun functions"
    MANAGE_TRIGGERS = "create, change, delete or invoke triggers"
    MANAGE_WEBHOOKS = "create, change, delete, rotate or redeliver webhooks"
    MANAGE_MODELS = "create, change or delete models, model runs and predictions"


_ALL_ORG_ROLES = frozenset(OrgRole)
_ORG_MANAGERS = frozenset({OrgRole.OWNER, OrgRole.ADMIN})
_ALL_PROJECT_ROLES = frozenset(ProjectRole)

ORG_GRANTS: dict[Action, frozenset[OrgRole]] = {
    Action.READ_ORG: _ALL_ORG_ROLES,
    Action.UPDATE_ORG: _ORG_MANAGERS,
    Action.READ_ORG_MEMBERS: frozenset({OrgRole.OWNER, OrgRole.ADMIN, OrgRole.MEMBER}),
    Action.MANAGE_ORG_MEMBERS: _ORG_MANAGERS,
    Action.CREATE_PROJECT: frozenset({OrgRole.OWNER, OrgRole.ADMIN, OrgRole.MEMBER}),
    # Organization owners and admins act on every project of their organization.
    Action.READ_PROJECT: _ORG_MANAGERS,
    Action.UPDATE_PROJECT: _ORG_MANAGERS,
    Action.READ_PROJECT_MEMBERS: _ORG_MANAGERS,
    Action.MANAGE_PROJECT_MEMBERS: _ORG_MANAGERS,
    Action.MANAGE_DATASETS: _ORG_MANAGERS,
    Action.WRITE_ITEMS: _ORG_MANAGERS,
    Action.WRITE_ANNOTATIONS: _ORG_MANAGERS,
    Action.MANAGE_SERVICES: _ORG_MANAGERS,
    Action.RUN_EXECUTIONS: _ORG_MANAGERS,
    Action.MANAGE_TRIGGERS: _ORG_MANAGERS,
    Action.MANAGE_WEBHOOKS: _ORG_MANAGERS,
    Action.MANAGE_MODELS: _ORG_MANAGERS,
}
"""Actions granted by an organization role, on the organization and all its projects."""

PROJECT_GRANTS: dict[Action, frozenset[ProjectRole]] = {
    Action.READ_PROJECT: _ALL_PROJECT_ROLES,
    Action.UPDATE_PROJECT: frozenset({ProjectRole.OWNER}),
    Action.READ_PROJECT_MEMBERS: _ALL_PROJECT_ROLES,
    Action.MANAGE_PROJECT_MEMBERS: frozenset({ProjectRole.OWNER}),
    Action.MANAGE_DATASETS: frozenset({ProjectRole.OWNER, ProjectRole.DEVELOPER}),
    Action.WRITE_ITEMS: frozenset(
        {ProjectRole.OWNER, ProjectRole.DEVELOPER, ProjectRole.ANNOTATION_MANAGER}
    ),
    Action.WRITE_ANNOTATIONS: _ALL_PROJECT_ROLES,
    Action.MANAGE_SERVICES: frozenset({ProjectRole.OWNER, ProjectRole.DEVELOPER}),
    Action.RUN_EXECUTIONS: frozenset({ProjectRole.OWNER, ProjectRole.DEVELOPER}),
    Action.MANAGE_TRIGGERS: frozenset({ProjectRole.OWNER, ProjectRole.DEVELOPER}),
    Action.MANAGE_WEBHOOKS: frozenset({ProjectRole.OWNER, ProjectRole.DEVELOPER}),
    Action.MANAGE_MODELS: frozenset({ProjectRole.OWNER, ProjectRole.DEVELOPER}),
}
"""Actions granted by a project role, on that project only."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a user, and the organization its key is limited to, if any."""

    user_id: ObjectId
    key_id: ObjectId
    org_scope: ObjectId | None = None


@dataclass
class Access:
    """One caller's memberships, loaded once per request, and the checks built on them."""

    db: AsyncDatabase
    principal: Principal
    org_roles: dict[ObjectId, OrgRole]
    _project_roles: dict[ObjectId, ProjectRole] | None = field(default=None, repr=False)

    @classmethod
    def from_memberships(
        cls, db: AsyncDatabase, principal: Principal, memberships: list[dict[str, Any]]
    ) -> "Access":
        roles = {
            m["orgId"]: OrgRole(m["role"])
            for m in memberships
            if principal.org_scope is None or m["orgId"] == principal.org_scope
        }
        return cls(db=db, principal=principal, org_roles=roles)

    @property
    def user_id(self) -> ObjectId:
        return self.principal.user_id

    async def project_roles(self) -> dict[ObjectId, ProjectRole]:
        """The caller's project memberships, inside organizations it still belongs to."""
        if self._project_roles is None:
            members = self.db.project_members.with_options(read_concern=ReadConcern("majority"))
            cursor = members.find(
                {"userId": self.user_id, "orgId": {"$in": list(self.org_roles)}},
                {"projectId": 1, "role": 1},
            )
            self._project_roles = {m["projectId"]: ProjectRole(m["role"]) async for m in cursor}
        return self._project_roles

    def org_role(self, org_id: ObjectId) -> OrgRole:
        """The caller's role in a visible organization; NOT_FOUND for any other."""
        role = self.org_roles.get(org_id)
        if role is None:
            raise NotFound("Organization not found", id=str(org_id))
        return role

    def require_org(self, org_id: ObjectId, action: Action) -> OrgRole:
        role = self.org_role(org_id)
        if role not in ORG_GRANTS[action]:
            raise Forbidden(f"Your organization role '{role}' may not {action}")
        return role

    async def require_project(self, project: dict[str, Any], action: Action) -> None:
        """Check `action` on a project document (or anything carrying orgId + projectId)."""
        org_role = self.org_roles.get(project["orgId"])
        project_id = project.get("projectId", project["_id"])
        if org_role is None:
            raise NotFound("Project not found", id=str(project_id))
        if org_role in _ORG_MANAGERS and org_role in ORG_GRANTS.get(action, ()):
            return  # granted by the organization role: no project membership to read
        project_role = (await self.project_roles()).get(project_id)
        if org_role not in _ORG_MANAGERS and project_role is None:
            raise NotFound("Project not found", id=str(project_id))
        if org_role in ORG_GRANTS.get(action, ()):
            return
        if project_role is not None and project_role in PROJECT_GRANTS.get(action, ()):
            return
        held = (
            f"project role '{project_role}'" if project_role else f"organization role '{org_role}'"
        )
        raise Forbidden(f"Your {held} may not {action}")

    async def granted(self, project: dict[str, Any]) -> list[Action]:
        """The project actions the caller may take on a visible project: what a frontend shows
        buttons for (the graph checks each action again when it is taken)."""
        allowed = []
        for action in PROJECT_GRANTS:
            try:
                await self.require_project(project, action)
            except Forbidden:
                continue
            allowed.append(action)
        return allowed

    async def scope(
        self, *, project_field: str | None = "projectId", org_field: str = "orgId"
    ) -> dict[str, Any]:
        """A MongoDB filter matching exactly the documents of a collection the caller may see.

        `project_field` names the field holding the project id (`_id` for projects themselves);
        None means the collection is organization-wide. `org_field` likewise for the org id.
        """
        if project_field is None:
            return {org_field: {"$in": list(self.org_roles)}}
        managed = [org for org, role in self.org_roles.items() if role in _ORG_MANAGERS]
        if len(managed) == len(self.org_roles):
            # Project memberships lie inside the caller's organizations, all managed: they
            # would add nothing, so they are not read.
            return {org_field: {"$in": managed}}
        projects = list(await self.project_roles())
        return {"$or": [{org_field: {"$in": managed}}, {project_field: {"$in": projects}}]}

    async def sees(self) -> Callable[[dict[str, Any]], bool]:
        """A predicate telling whether the caller may see a document (orgId + projectId), for
        streams that check each document as it passes. Memberships are taken as they are now."""
        managed = {org for org, role in self.org_roles.items() if role in _ORG_MANAGERS}
        projects = set() if len(managed) == len(self.org_roles) else set(await self.project_roles())

        def check(doc: dict[str, Any]) -> bool:
            return doc.get("orgId") in managed or doc.get("projectId") in projects

        return check

    async def find_visible(
        self,
        collection: str,
        doc_id: ObjectId,
        *,
        project_field: str | None = "projectId",
        org_field: str = "orgId",
    ) -> dict[str, Any] | None:
        """One document by id if the caller may see it, else None (for fields that point at
        something that may be gone or out of sight)."""
        scope = await self.scope(project_field=project_field, org_field=org_field)
        return await self.db[collection].find_one({"$and": [{"_id": doc_id}, scope]})

    async def visible(
        self,
        collection: str,
        doc_id: ObjectId,
        *,
        project_field: str | None,
        entity: str,
        org_field: str = "orgId",
    ) -> dict[str, Any]:
        """Fetch one document by id if the caller may see it; NOT_FOUND otherwise."""
        doc = await self.find_visible(
            collection, doc_id, project_field=project_field, org_field=org_field
        )
        if doc is None:
            raise NotFound(f"{entity} not found", id=str(doc_id))
        return doc
