"""Projects, their members, and the queries and mutations over them."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers import organizations, projects
from resolvers.inputs import object_id
from schema.enums import PermissionEnum, ProjectRoleEnum
from schema.inputs import as_input
from schema.organizations import Organization
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, page_request
from schema.saved_filters import SavedFilter, project_filter, project_filters
from schema.users import Membership

if TYPE_CHECKING:
    from schema.commands import Command
    from schema.cron_triggers import CronTrigger, ScheduledRun
    from schema.datasets import Dataset
    from schema.deployments import Deployment
    from schema.models import Model
    from schema.services import Execution, Service, StatusCount
    from schema.triggers import Event, Trigger
    from schema.webhooks import DeliveryStateEnum, Webhook, WebhookDelivery


@strawberry.type(description="A member of a project and its role there.")
class ProjectMember(Membership):
    role: ProjectRoleEnum

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ProjectMember":
        return cls(
            user_id=doc["userId"], role=ProjectRoleEnum(doc["role"]), created_at=doc["createdAt"]
        )


@strawberry.type(description="A workspace of an organization: datasets, models, services.")
class Project(Node):
    org_id: strawberry.Private[Any]
    name: str
    description: str
    archived: bool
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def organization(self, info: strawberry.Info) -> Organization:
        access = await info.context.access()
        return Organization.from_doc(await organizations.get_organization(access, self.org_id))

    @strawberry.field(
        description="What the caller may do in this project, by its roles: a frontend shows "
        "only the actions that will be allowed (the graph still checks each one)."
    )
    async def permissions(self, info: strawberry.Info) -> list[PermissionEnum]:
        access = await info.context.access()
        granted = await access.granted({"_id": object_id(self.id), "orgId": self.org_id})
        return [PermissionEnum(action) for action in granted]

    @strawberry.field(description="The project's datasets, by name.")
    async def datasets(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["Dataset", strawberry.lazy("schema.datasets")]]:
        from schema.datasets import project_datasets

        return await project_datasets(info, object_id(self.id), first, after)

    @strawberry.field(description="The project's models, by name.")
    async def models(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["Model", strawberry.lazy("schema.models")]]:
        from schema.models import project_models

        return await project_models(info, object_id(self.id), first, after)

    @strawberry.field(description="The project's deployments, by name.")
    async def deployments(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["Deployment", strawberry.lazy("schema.deployments")]]:
        from schema.deployments import project_deployments

        return await project_deployments(info, object_id(self.id), first, after)

    @strawberry.field(description="The project's services, by name.")
    async def services(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["Service", strawberry.lazy("schema.services")]]:
        from schema.services import project_services

        return await project_services(info, object_id(self.id), first, after)

    @strawberry.field(description="The project's triggers, by name.")
    async def triggers(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["Trigger", strawberry.lazy("schema.triggers")]]:
        from schema.triggers import project_triggers

        return await project_triggers(info, object_id(self.id), first, after)

    @strawberry.field(
        description="The project's commands (clones, versions, batches, imports, exports, "
        "commits…), newest first: those of `types`, if given."
    )
    async def commands(
        self,
        info: strawberry.Info,
        types: list[str] | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Annotated["Command", strawberry.lazy("schema.commands")]]:
        from schema.commands import project_commands

        return await project_commands(info, object_id(self.id), types, first, after)

    @strawberry.field(description="The project's events, newest first: changes the relay captured.")
    async def events(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["Event", strawberry.lazy("schema.triggers")]]:
        from schema.triggers import project_events

        return await project_events(info, object_id(self.id), first, after)

    @strawberry.field(description="The project's webhooks, by name.")
    async def webhooks(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["Webhook", strawberry.lazy("schema.webhooks")]]:
        from schema.webhooks import project_webhooks

        return await project_webhooks(info, object_id(self.id), first, after)

    @strawberry.field(
        description="The project's webhook deliveries, newest first: those in `state`, if "
        "given, made since / until the times given."
    )
    async def webhook_deliveries(
        self,
        info: strawberry.Info,
        state: Annotated["DeliveryStateEnum", strawberry.lazy("schema.webhooks")] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Annotated["WebhookDelivery", strawberry.lazy("schema.webhooks")]]:
        from schema.webhooks import project_deliveries

        return await project_deliveries(info, object_id(self.id), state, since, until, first, after)

    @strawberry.field(description="The project's cron triggers, by name.")
    async def cron_triggers(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["CronTrigger", strawberry.lazy("schema.cron_triggers")]]:
        from schema.cron_triggers import project_cron_triggers

        return await project_cron_triggers(info, object_id(self.id), first, after)

    @strawberry.field(description="The project's one-off scheduled runs, latest `at` first.")
    async def scheduled_runs(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["ScheduledRun", strawberry.lazy("schema.cron_triggers")]]:
        from schema.cron_triggers import project_scheduled_runs

        return await project_scheduled_runs(info, object_id(self.id), first, after)

    @strawberry.field(
        description="The project's executions, newest first: those in `statuses`, if given, "
        "and matching the DQL `filter` over executions, if given."
    )
    async def executions(
        self,
        info: strawberry.Info,
        statuses: list[str] | None = None,
        filter: JSON | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Annotated["Execution", strawberry.lazy("schema.services")]]:
        from schema.services import project_executions

        return await project_executions(info, object_id(self.id), statuses, filter, first, after)

    @strawberry.field(description="How many executions are in each status (for dashboards).")
    async def execution_counts(
        self, info: strawberry.Info
    ) -> list[Annotated["StatusCount", strawberry.lazy("schema.services")]]:
        from schema.services import status_counts

        return await status_counts(info, {"projectId": object_id(self.id)})

    @strawberry.field(description="The project's saved DQL queries, by name.")
    async def saved_filters(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[SavedFilter]:
        return await project_filters(info, object_id(self.id), first, after)

    @strawberry.field(description="One saved DQL query, by name.")
    async def saved_filter(self, info: strawberry.Info, name: str) -> SavedFilter:
        return await project_filter(info, object_id(self.id), name)

    @strawberry.field
    async def members(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[ProjectMember]:
        access = await info.context.access()
        page = await projects.list_members(
            access, object_id(self.id), page_request(info, first, after)
        )
        return Connection.of(page, ProjectMember.from_doc)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Project":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            org_id=doc["orgId"],
            name=doc["name"],
            description=doc["description"],
            archived=doc["archived"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.input
class ProjectInput:
    name: str
    description: str | None = strawberry.UNSET


@strawberry.input
class ProjectChangesInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    archived: bool | None = strawberry.UNSET


@strawberry.type
class ProjectQueries:
    @strawberry.field(description="The projects the caller can see, across its organizations.")
    async def projects(
        self,
        info: strawberry.Info,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        organization_id: strawberry.ID | None = None,
        archived: bool | None = None,
    ) -> Connection[Project]:
        access = await info.context.access()
        request = page_request(info, first, after)
        if organization_id is None:
            page = await projects.list_projects(access, request, archived)
        else:
            org_id = object_id(organization_id, "organizationId")
            page = (await projects.projects_of_orgs(access, [org_id], request, archived))[org_id]
        return Connection.of(page, Project.from_doc)

    @strawberry.field
    async def project(self, info: strawberry.Info, id: strawberry.ID) -> Project:
        access = await info.context.access()
        return Project.from_doc(await projects.get_project(access, object_id(id)))


@strawberry.type
class ProjectMutations:
    @strawberry.mutation(description="Create a project; the caller becomes its owner.")
    async def create_project(
        self, info: strawberry.Info, organization_id: strawberry.ID, input: ProjectInput
    ) -> Project:
        access = await info.context.access()
        doc = await projects.create_project(
            access, object_id(organization_id, "organizationId"), as_input(input)
        )
        return Project.from_doc(doc)

    @strawberry.mutation(description="Rename, describe, archive or unarchive a project.")
    async def update_project(
        self, info: strawberry.Info, id: strawberry.ID, input: ProjectChangesInput
    ) -> Project:
        access = await info.context.access()
        return Project.from_doc(
            await projects.update_project(access, object_id(id), as_input(input))
        )

    @strawberry.mutation(description="Add a member of the organization to a project.")
    async def add_project_member(
        self,
        info: strawberry.Info,
        project_id: strawberry.ID,
        user_id: strawberry.ID,
        role: ProjectRoleEnum,
    ) -> ProjectMember:
        access = await info.context.access()
        doc = await projects.add_member(
            access,
            object_id(project_id, "projectId"),
            object_id(user_id, "userId"),
            {"role": role.value},
        )
        return ProjectMember.from_doc(doc)

    @strawberry.mutation
    async def update_project_member(
        self,
        info: strawberry.Info,
        project_id: strawberry.ID,
        user_id: strawberry.ID,
        role: ProjectRoleEnum,
    ) -> ProjectMember:
        access = await info.context.access()
        doc = await projects.update_member(
            access,
            object_id(project_id, "projectId"),
            object_id(user_id, "userId"),
            {"role": role.value},
        )
        return ProjectMember.from_doc(doc)

    @strawberry.mutation
    async def remove_project_member(
        self, info: strawberry.Info, project_id: strawberry.ID, user_id: strawberry.ID
    ) -> bool:
        access = await info.context.access()
        await projects.remove_member(
            access, object_id(project_id, "projectId"), object_id(user_id, "userId")
        )
        return True
