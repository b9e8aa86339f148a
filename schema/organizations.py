"""Organizations, their members, and the queries and mutations over them."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from resolvers import organizations
from resolvers.inputs import object_id
from schema.enums import OrgRoleEnum
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, page_request
from schema.users import Membership, UserRefInput

if TYPE_CHECKING:
    from schema.projects import Project


@strawberry.type(description="A member of an organization and its role there.")
class OrgMember(Membership):
    role: OrgRoleEnum

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "OrgMember":
        return cls(
            user_id=doc["userId"], role=OrgRoleEnum(doc["role"]), created_at=doc["createdAt"]
        )


@strawberry.type(description="A tenant: owns projects, members and everything below them.")
class Organization(Node):
    name: str
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The caller's role in this organization.")
    async def role(self, info: strawberry.Info) -> OrgRoleEnum:
        access = await info.context.access()
        return access.org_role(object_id(self.id))

    @strawberry.field
    async def members(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[OrgMember]:
        access = await info.context.access()
        page = await organizations.list_members(
            access, object_id(self.id), page_request(info, first, after)
        )
        return Connection.of(page, OrgMember.from_doc)

    @strawberry.field(description="The projects of this organization the caller can see.")
    async def projects(
        self,
        info: strawberry.Info,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        archived: bool | None = None,
    ) -> Connection[Annotated["Project", strawberry.lazy("schema.projects")]]:
        from schema.projects import Project

        arguments = (page_request(info, first, after), archived)
        page = await info.context.loaders.projects_of_org.load((object_id(self.id), arguments))
        return Connection.of(page, Project.from_doc)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Organization":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            name=doc["name"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.input
class OrganizationInput:
    name: str


@strawberry.input
class OrgMemberInput:
    user: UserRefInput
    role: OrgRoleEnum


@strawberry.type
class OrganizationQueries:
    @strawberry.field(description="The organizations the caller belongs to.")
    async def organizations(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Organization]:
        access = await info.context.access()
        page = await organizations.list_organizations(access, page_request(info, first, after))
        return Connection.of(page, Organization.from_doc)

    @strawberry.field
    async def organization(self, info: strawberry.Info, id: strawberry.ID) -> Organization:
        access = await info.context.access()
        return Organization.from_doc(await organizations.get_organization(access, object_id(id)))


@strawberry.type
class OrganizationMutations:
    @strawberry.mutation(description="Create an organization; the caller becomes its owner.")
    async def create_organization(
        self, info: strawberry.Info, input: OrganizationInput
    ) -> Organization:
        access = await info.context.access()
        return Organization.from_doc(
            await organizations.create_organization(access, as_input(input))
        )

    @strawberry.mutation
    async def update_organization(
        self, info: strawberry.Info, id: strawberry.ID, input: OrganizationInput
    ) -> Organization:
        access = await info.context.access()
        doc = await organizations.update_organization(access, object_id(id), as_input(input))
        return Organization.from_doc(doc)

    @strawberry.mutation(description="Add a user (created on first mention) to an organization.")
    async def add_organization_member(
        self, info: strawberry.Info, organization_id: strawberry.ID, input: OrgMemberInput
    ) -> OrgMember:
        access = await info.context.access()
        doc = await organizations.add_member(
            access, object_id(organization_id, "organizationId"), as_input(input)
        )
        return OrgMember.from_doc(doc)

    @strawberry.mutation
    async def update_organization_member(
        self,
        info: strawberry.Info,
        organization_id: strawberry.ID,
        user_id: strawberry.ID,
        role: OrgRoleEnum,
    ) -> OrgMember:
        access = await info.context.access()
        doc = await organizations.update_member(
            access,
            object_id(organization_id, "organizationId"),
            object_id(user_id, "userId"),
            {"role": role.value},
        )
        return OrgMember.from_doc(doc)

    @strawberry.mutation(description="Remove a member; its project memberships there end too.")
    async def remove_organization_member(
        self, info: strawberry.Info, organization_id: strawberry.ID, user_id: strawberry.ID
    ) -> bool:
        access = await info.context.access()
        await organizations.remove_member(
            access, object_id(organization_id, "organizationId"), object_id(user_id, "userId")
        )
        return True
