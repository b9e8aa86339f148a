"""The role enums of resolvers/access.py, exposed as GraphQL enums."""

import strawberry

from resolvers.access import OrgRole, ProjectRole

OrgRoleEnum = strawberry.enum(OrgRole, name="OrgRole", description="A role in an organization.")
ProjectRoleEnum = strawberry.enum(
    ProjectRole, name="ProjectRole", description="A role in a project."
)
