"""Deployments and their switch history: the types, queries and mutations over
resolvers/deployments/lifecycle.py."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers.deployments import lifecycle as deployments
from resolvers.deployments.lifecycle import SwitchRole
from resolvers.errors import NotFound
from resolvers.inputs import object_id
from schema.deployment_stats import DeploymentStats, StatsWindowInput, deployment_stats
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, optional_id, page_request
from schema.users import User, load_user

if TYPE_CHECKING:
    from schema.datasets import Dataset
    from schema.deployment_feedback import (
        ContinuousDeployment,
        ContinuousTraining,
        ReviewCounts,
        ReviewMetrics,
    )
    from schema.models import ModelVersion
    from schema.predicted_assets import PredictedAsset
    from schema.projects import Project

SwitchRoleEnum = strawberry.enum(SwitchRole, name="DeploymentRole", description="champion | shadow")


async def user_or_none(info: strawberry.Info, user_id: Any) -> User | None:
    if user_id is None:
        return None
    try:
        return await load_user(info, user_id)
    except NotFound:
        return None


async def version_or_none(info: strawberry.Info, version_id: Any) -> "ModelVersion | None":
    from schema.models import ModelVersion

    if version_id is None:
        return None
    access = await info.context.access()
    found = await access.find_visible("model_versions", version_id)
    return ModelVersion.from_doc(found) if found else None


@strawberry.type(
    description="One change of a deployment's champion or shadow: who made it, when, from "
    "which version to which."
)
class DeploymentSwitch:
    doc: strawberry.Private[dict[str, Any]]
    id: strawberry.ID
    role: SwitchRoleEnum
    from_version_id: strawberry.ID | None = strawberry.field(
        description="The version the slot held before (null: none)."
    )
    to_version_id: strawberry.ID | None = strawberry.field(
        description="The version the slot holds after (null: none)."
    )
    at: datetime
    rollback: bool = strawberry.field(description="This switch was made by rollbackDeployment.")
    rolled_back: bool = strawberry.field(description="A later rollback undid this switch.")

    @strawberry.field(description="The version before, while it exists.")
    async def from_version(
        self, info: strawberry.Info
    ) -> Annotated["ModelVersion", strawberry.lazy("schema.models")] | None:
        return await version_or_none(info, self.doc["from"])

    @strawberry.field(description="The version after, while it exists.")
    async def to_version(
        self, info: strawberry.Info
    ) -> Annotated["ModelVersion", strawberry.lazy("schema.models")] | None:
        return await version_or_none(info, self.doc["to"])

    @strawberry.field(description="Who made the switch.")
    async def by(self, info: strawberry.Info) -> User | None:
        return await user_or_none(info, self.doc["by"])

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "DeploymentSwitch":
        return cls(
            doc=doc,
            id=strawberry.ID(str(doc["_id"])),
            role=SwitchRole(doc["role"]),
            from_version_id=optional_id(doc["from"]),
            to_version_id=optional_id(doc["to"]),
            at=doc["at"],
            rollback=doc["rollback"],
            rolled_back=doc["rolledBack"],
        )


@strawberry.type(
    description="A model version serving a project (the champion), optionally shadowed by "
    "another, with a score threshold and a dataset for predicted assets."
)
class Deployment(Node):
    doc: strawberry.Private[dict[str, Any]]
    name: str
    description: str
    champion_version_id: strawberry.ID
    shadow_version_id: strawberry.ID | None
    min_threshold: float = strawberry.field(
        description="0..1: predictions scoring below it are dropped from what predict returns."
    )
    target_dataset_id: strawberry.ID | None = strawberry.field(
        description="The dataset predicted assets are stored in, if any."
    )
    active: bool
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The version serving, while it exists.")
    async def champion(
        self, info: strawberry.Info
    ) -> Annotated["ModelVersion", strawberry.lazy("schema.models")] | None:
        return await version_or_none(info, self.doc["championVersionId"])

    @strawberry.field(description="The version shadowing the champion, if any.")
    async def shadow(
        self, info: strawberry.Info
    ) -> Annotated["ModelVersion", strawberry.lazy("schema.models")] | None:
        return await version_or_none(info, self.doc["shadowVersionId"])

    @strawberry.field(description="The target dataset, while it exists.")
    async def target_dataset(
        self, info: strawberry.Info
    ) -> Annotated["Dataset", strawberry.lazy("schema.datasets")] | None:
        from schema.datasets import Dataset

        if self.doc["targetDatasetId"] is None:
            return None
        access = await info.context.access()
        found = await access.find_visible("datasets", self.doc["targetDatasetId"])
        return Dataset.from_doc(found) if found and not found.get("deleting") else None

    @strawberry.field
    async def project(
        self, info: strawberry.Info
    ) -> Annotated["Project", strawberry.lazy("schema.projects")]:
        from resolvers.projects import get_project
        from schema.projects import Project

        access = await info.context.access()
        return Project.from_doc(await get_project(access, self.doc["projectId"]))

    @strawberry.field
    async def creator(self, info: strawberry.Info) -> User | None:
        return await user_or_none(info, self.doc["creator"])

    @strawberry.field(description="Champion and shadow switches, newest first.")
    async def history(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[DeploymentSwitch]:
        access = await info.context.access()
        page = await deployments.list_switches(
            access, self.doc["_id"], page_request(info, first, after)
        )
        return Connection.of(page, DeploymentSwitch.from_doc)

    @strawberry.field(description="The assets it predicted on, newest first.")
    async def predicted_assets(
        self,
        info: strawberry.Info,
        filter: Annotated[
            JSON | None,
            strawberry.argument(
                description='A DQL filter over predicted assets (e.g. {"champion.status": '
                '"failed"}, {"tags": "night"}, {"review.status": "accepted"}).'
            ),
        ] = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Annotated["PredictedAsset", strawberry.lazy("schema.predicted_assets")]]:
        from resolvers.deployments.predictions import list_predicted_assets
        from schema.predicted_assets import PredictedAsset

        access = await info.context.access()
        page = await list_predicted_assets(
            access, self.doc["_id"], page_request(info, first, after), filter
        )
        return Connection.of(page, PredictedAsset.from_doc)

    @strawberry.field(
        description="Monitoring over a window, per role and model version, in buckets (e.g. "
        "5m, 1h, 1d; whole minutes): counts, latency, score, label and objects distributions."
    )
    async def stats(
        self,
        info: strawberry.Info,
        window: StatsWindowInput,
        bucket: str = "1h",
        model_version_id: strawberry.ID | None = None,
    ) -> DeploymentStats:
        return await deployment_stats(info, self.doc, window, bucket, model_version_id)

    @strawberry.field(description="The datasets reviewed assets become ground truth in.")
    def feedback_dataset_ids(self) -> list[strawberry.ID]:
        return [strawberry.ID(str(d)) for d in self.doc.get("feedbackDatasetIds") or []]

    @strawberry.field(description="The feedback datasets the caller can see.")
    async def feedback_datasets(
        self, info: strawberry.Info
    ) -> list[Annotated["Dataset", strawberry.lazy("schema.datasets")]]:
        from schema.deployment_feedback import feedback_datasets

        return await feedback_datasets(info, self.doc)

    @strawberry.field(description="How many predicted assets were reviewed, how.")
    def review_counts(
        self,
    ) -> Annotated["ReviewCounts", strawberry.lazy("schema.deployment_feedback")]:
        from schema.deployment_feedback import review_counts

        return review_counts(self.doc)

    @strawberry.field(description="Continuous-training settings and counts, if set.")
    def continuous_training(
        self,
    ) -> Annotated["ContinuousTraining", strawberry.lazy("schema.deployment_feedback")] | None:
        from schema.deployment_feedback import continuous_training

        return continuous_training(self.doc)

    @strawberry.field(
        description="Champion and shadow versions side by side on the reviewed assets (those "
        "reviewed in [since, until), any time if not given): COCO AP, precision, recall."
    )
    async def review_metrics(
        self,
        info: strawberry.Info,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Annotated["ReviewMetrics", strawberry.lazy("schema.deployment_feedback")]]:
        from schema.deployment_feedback import review_metrics

        return await review_metrics(info, self.doc, since, until)

    @strawberry.field(description="Continuous-deployment policy and last decision, if set.")
    def continuous_deployment(
        self,
    ) -> Annotated["ContinuousDeployment", strawberry.lazy("schema.deployment_feedback")] | None:
        from schema.deployment_feedback import continuous_deployment

        return continuous_deployment(self.doc)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Deployment":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            doc=doc,
            name=doc["name"],
            description=doc["description"],
            champion_version_id=strawberry.ID(str(doc["championVersionId"])),
            shadow_version_id=optional_id(doc["shadowVersionId"]),
            min_threshold=doc["minThreshold"],
            target_dataset_id=optional_id(doc["targetDatasetId"]),
            active=doc["active"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.input
class DeploymentInput:
    name: str
    description: str | None = strawberry.UNSET
    champion_version_id: strawberry.ID = strawberry.field(
        description="A model version of the project."
    )
    shadow_version_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="A model version of the project, other than the champion.",
    )
    min_threshold: float | None = strawberry.field(
        default=strawberry.UNSET, description="0..1, 0 if not given."
    )
    target_dataset_id: strawberry.ID | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


@strawberry.input(description="The fields to change; null clears targetDatasetId.")
class DeploymentChangesInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    min_threshold: float | None = strawberry.UNSET
    target_dataset_id: strawberry.ID | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET


def _given(data: dict[str, Any]) -> dict[str, Any]:
    """Nulls of fields that have a default mean "not given" (strawberry cannot tell them)."""
    return {k: v for k, v in data.items() if v is not None}


@strawberry.type
class DeploymentQueries:
    @strawberry.field
    async def deployment(self, info: strawberry.Info, id: strawberry.ID) -> Deployment:
        access = await info.context.access()
        return Deployment.from_doc(await deployments.get_deployment(access, object_id(id)))


async def project_deployments(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[Deployment]:
    access = await info.context.access()
    page = await deployments.list_deployments(access, project_id, page_request(info, first, after))
    return Connection.of(page, Deployment.from_doc)


@strawberry.type
class DeploymentMutations:
    @strawberry.mutation(description="Deploy a model version (the champion) in a project.")
    async def create_deployment(
        self, info: strawberry.Info, project_id: strawberry.ID, input: DeploymentInput
    ) -> Deployment:
        access = await info.context.access()
        doc = await deployments.create_deployment(
            access, object_id(project_id, "projectId"), _given(as_input(input))
        )
        return Deployment.from_doc(doc)

    @strawberry.mutation(description="Change the fields given.")
    async def update_deployment(
        self, info: strawberry.Info, id: strawberry.ID, input: DeploymentChangesInput
    ) -> Deployment:
        access = await info.context.access()
        doc = await deployments.update_deployment(access, object_id(id), as_input(input))
        return Deployment.from_doc(doc)

    @strawberry.mutation(description="Delete a deployment and its history.")
    async def delete_deployment(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await deployments.delete_deployment(access, object_id(id))
        return True

    @strawberry.mutation(description="Serve another model version; the switch is recorded.")
    async def set_champion(
        self, info: strawberry.Info, deployment_id: strawberry.ID, model_version_id: strawberry.ID
    ) -> Deployment:
        access = await info.context.access()
        doc = await deployments.set_champion(
            access, object_id(deployment_id, "deploymentId"), model_version_id
        )
        return Deployment.from_doc(doc)

    @strawberry.mutation(description="Shadow the champion with a version, or stop (null).")
    async def set_shadow(
        self,
        info: strawberry.Info,
        deployment_id: strawberry.ID,
        model_version_id: strawberry.ID | None,
    ) -> Deployment:
        access = await info.context.access()
        doc = await deployments.set_shadow(
            access, object_id(deployment_id, "deploymentId"), model_version_id
        )
        return Deployment.from_doc(doc)

    @strawberry.mutation(
        description="Restore the champion before the latest champion switch not yet undone."
    )
    async def rollback_deployment(
        self, info: strawberry.Info, deployment_id: strawberry.ID
    ) -> Deployment:
        access = await info.context.access()
        doc = await deployments.rollback_deployment(
            access, object_id(deployment_id, "deploymentId")
        )
        return Deployment.from_doc(doc)
