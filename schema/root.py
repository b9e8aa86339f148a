"""The root Query and Mutation types: every entity module contributes its fields here."""

from collections.abc import Callable
from typing import Any

import strawberry
from bson import ObjectId

from resolvers import triggers
from resolvers.access import Access
from resolvers.inputs import object_id
from schema.annotations import Annotation, AnnotationMutations, AnnotationQueries
from schema.api_keys import ApiKeyMutations, MeQueries
from schema.commands import CommandMutations, CommandQueries
from schema.cron_triggers import (
    CronFire,
    CronTrigger,
    CronTriggerMutations,
    CronTriggerQueries,
    ScheduledRun,
)
from schema.dataset_versions import (
    DatasetVersion,
    DatasetVersionMutations,
    DatasetVersionQueries,
)
from schema.datasets import Dataset, DatasetMutations, DatasetQueries
from schema.deployment_feedback import DeploymentFeedbackMutations
from schema.deployments import Deployment, DeploymentMutations, DeploymentQueries
from schema.exports import ExportMutations
from schema.items import Item, ItemMutations, ItemQueries
from schema.model_runs import ModelRun, ModelRunMutations, ModelRunQueries, Prediction
from schema.models import Model, ModelMutations, ModelQueries, ModelVersion
from schema.organizations import Organization, OrganizationMutations, OrganizationQueries
from schema.predicted_assets import PredictedAsset, PredictedAssetMutations, PredictedAssetQueries
from schema.projects import Project, ProjectMutations, ProjectQueries
from schema.relay import Node
from schema.saved_filters import SavedFilterMutations
from schema.services import (
    BatchMutations,
    Execution,
    Service,
    ServiceMutations,
    ServiceQueries,
)
from schema.triggers import Event, Trigger, TriggerMutations, TriggerQueries
from schema.webhooks import Webhook, WebhookDelivery, WebhookMutations, WebhookQueries

NODE_COLLECTIONS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], Node]]] = {
    "organizations": ({"project_field": None, "org_field": "_id"}, Organization.from_doc),
    "projects": ({"project_field": "_id"}, Project.from_doc),
    "datasets": ({}, Dataset.from_doc),
    "dataset_versions": ({}, DatasetVersion.from_doc),
    "items": ({}, Item.from_doc),
    "annotations": ({}, Annotation.from_doc),
    "services": ({}, Service.from_doc),
    "executions": ({}, Execution.from_doc),
    "triggers": ({}, lambda doc: Trigger.from_doc(triggers.stored(doc))),
    "events": ({}, Event.from_doc),
    "webhooks": ({}, Webhook.from_doc),
    "deliveries": ({}, WebhookDelivery.from_doc),
    "cron_triggers": ({}, CronTrigger.from_doc),
    "cron_fires": ({}, CronFire.from_doc),
    "scheduled_runs": ({}, ScheduledRun.from_doc),
    "model_runs": ({}, ModelRun.from_doc),
    "predictions": ({}, Prediction.from_doc),
    "models": ({}, Model.from_doc),
    "model_versions": ({}, ModelVersion.from_doc),
    "deployments": ({}, Deployment.from_doc),
    "predicted_assets": ({}, PredictedAsset.from_doc),
}
"""Collection → (where its access scope finds org and project ids, its GraphQL type)."""


async def find_node(access: Access, node_id: ObjectId) -> Node | None:
    """The visible node with this id, searched in every node collection in one round trip."""
    branches = []
    for collection, (fields, _) in NODE_COLLECTIONS.items():
        scope = {"$and": [{"_id": node_id}, await access.scope(**fields)]}
        branches.append((collection, [{"$match": scope}, {"$set": {"_collection": collection}}]))
    (first_collection, first_pipeline), *others = branches
    pipeline = [
        *first_pipeline,
        *({"$unionWith": {"coll": coll, "pipeline": stages}} for coll, stages in others),
        {"$limit": 1},
    ]
    found = await (await access.db[first_collection].aggregate(pipeline)).to_list()
    if not found:
        return None
    _, to_node = NODE_COLLECTIONS[found[0]["_collection"]]
    return to_node(found[0])


@strawberry.type
class Query(
    MeQueries,
    OrganizationQueries,
    ProjectQueries,
    DatasetQueries,
    DatasetVersionQueries,
    ItemQueries,
    AnnotationQueries,
    CommandQueries,
    ServiceQueries,
    TriggerQueries,
    CronTriggerQueries,
    WebhookQueries,
    ModelQueries,
    ModelRunQueries,
    DeploymentQueries,
    PredictedAssetQueries,
):
    @strawberry.field(description="Any object by its id, if the caller may see it.")
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        access = await info.context.access()
        return await find_node(access, object_id(id))


@strawberry.type
class Mutation(
    ApiKeyMutations,
    OrganizationMutations,
    ProjectMutations,
    DatasetMutations,
    DatasetVersionMutations,
    ExportMutations,
    ItemMutations,
    AnnotationMutations,
    CommandMutations,
    SavedFilterMutations,
    ServiceMutations,
    BatchMutations,
    TriggerMutations,
    CronTriggerMutations,
    WebhookMutations,
    ModelMutations,
    ModelRunMutations,
    DeploymentMutations,
    PredictedAssetMutations,
    DeploymentFeedbackMutations,
):
    pass
