"""The enums of resolvers/, exposed as GraphQL enums."""

import strawberry

from resolvers.access import Action, OrgRole, ProjectRole
from resolvers.annotation_shapes import AnnotationType
from resolvers.annotations import AnnotationStatus

OrgRoleEnum = strawberry.enum(OrgRole, name="OrgRole", description="A role in an organization.")
ProjectRoleEnum = strawberry.enum(
    ProjectRole, name="ProjectRole", description="A role in a project."
)
PermissionEnum = strawberry.enum(
    Action,
    name="Permission",
    description="Something a role may do (the tables of resolvers/access.py).",
)
AnnotationTypeEnum = strawberry.enum(AnnotationType, name="AnnotationType")
AnnotationStatusEnum = strawberry.enum(AnnotationStatus, name="AnnotationStatus")
