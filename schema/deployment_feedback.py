"""The feedback loop, continuous training and continuous deployment in the graph: reviews of
predicted assets, feedback datasets, a deployment's continuous-training and -deployment
settings (resolvers/deployments/feedback.py, training.py and promotion.py)."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers.deployments import feedback, promotion, training
from resolvers.deployments import review_metrics as deployment_review_metrics
from resolvers.deployments.feedback import ReviewStatus
from resolvers.deployments.lifecycle import SwitchRole
from resolvers.deployments.promotion import Policy
from resolvers.inputs import object_id
from schema.deployments import Deployment, SwitchRoleEnum, user_or_none
from schema.inputs import as_input
from schema.predicted_assets import PredictedAsset
from schema.users import User

if TYPE_CHECKING:
    from schema.datasets import Dataset

ReviewStatusEnum = strawberry.enum(
    ReviewStatus, name="ReviewStatus", description="accepted | corrected | rejected"
)


@strawberry.type(description="Where a review's ground truth was copied to.")
class FeedbackCopy:
    dataset_id: strawberry.ID
    item_id: strawberry.ID


@strawberry.type(description="How a predicted asset was reviewed; final once made.")
class PredictionReview:
    doc: strawberry.Private[dict[str, Any]]
    status: ReviewStatusEnum
    at: datetime
    annotations: JSON = strawberry.field(
        description="The ground truth: [{type, label, coordinates, attributes}] (none when "
        "rejected)."
    )
    feedback: list[FeedbackCopy] = strawberry.field(
        description="The copies of the item, with the ground truth, in the feedback datasets."
    )
    training_due: bool = strawberry.field(
        description="This review crossed the continuous-training threshold."
    )

    @strawberry.field(description="Who reviewed.")
    async def by(self, info: strawberry.Info) -> User | None:
        return await user_or_none(info, self.doc["by"])

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "PredictionReview":
        return cls(
            doc=doc,
            status=ReviewStatus(doc["status"]),
            at=doc["at"],
            annotations=doc["annotations"],
            feedback=[
                FeedbackCopy(
                    dataset_id=strawberry.ID(str(copy["datasetId"])),
                    item_id=strawberry.ID(str(copy["itemId"])),
                )
                for copy in doc["feedback"]
            ],
            training_due=doc["trainingDue"],
        )


@strawberry.type(description="How many of a deployment's predicted assets were reviewed, how.")
class ReviewCounts:
    accepted: int
    corrected: int
    rejected: int


@strawberry.type(
    description="Train the model again each time `threshold` reviews with ground truth "
    "(accepted or corrected) have accumulated, through a trigger of the project."
)
class ContinuousTraining:
    active: bool
    threshold: int
    train_function: str
    parameters: JSON
    trigger_id: strawberry.ID
    pending: int = strawberry.field(description="Reviews counted since the last crossing.")
    crossings: int = strawberry.field(description="How many times the threshold was crossed.")
    last_crossing_at: datetime | None


PolicyEnum = strawberry.enum(
    Policy, name="DeploymentPolicy", description="manual | ifBetter(metric, margin)"
)


def _as_json(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Ids as strings, values as numbers (or null)."""
    return {k: v if isinstance(v, float | None) else str(v) for k, v in evaluation.items()}


@strawberry.type(description="What proposeModelVersion decided, and on which evidence.")
class DeploymentDecision:
    doc: strawberry.Private[dict[str, Any]]
    version_id: strawberry.ID
    policy: PolicyEnum
    metric: str
    promoted: bool
    reason: str
    evaluation: JSON | None = strawberry.field(
        description="{datasetId, championRunId, candidateRunId, championValue, "
        "candidateValue}: the runs compared (null: none to compare)."
    )
    at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "DeploymentDecision":
        evaluation = doc["evaluation"]
        return cls(
            doc=doc,
            version_id=strawberry.ID(str(doc["versionId"])),
            policy=Policy(doc["policy"]),
            metric=doc["metric"],
            promoted=doc["promoted"],
            reason=doc["reason"],
            evaluation=_as_json(evaluation) if evaluation else None,
            at=doc["at"],
        )


@strawberry.type(description="When a proposed version replaces the champion.")
class ContinuousDeployment:
    policy: PolicyEnum
    metric: str
    margin: float
    last_decision: DeploymentDecision | None


def continuous_deployment(deployment: dict[str, Any]) -> ContinuousDeployment | None:
    stored = deployment.get("continuousDeployment")
    if not stored:
        return None
    last = stored.get("lastDecision")
    return ContinuousDeployment(
        policy=Policy(stored["policy"]),
        metric=stored["metric"],
        margin=stored["margin"],
        last_decision=DeploymentDecision.from_doc(last) if last else None,
    )


@strawberry.type
class Proposal:
    deployment: Deployment
    decision: DeploymentDecision


@strawberry.type(description="One label's supervised metrics on the reviewed assets.")
class ReviewLabelMetrics:
    label: str
    ap: float | None
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int


@strawberry.type(
    description="A role's model version evaluated on the deployment's reviewed assets (their "
    "ground truth), as a model run is: COCO AP, and precision/recall at minThreshold."
)
class ReviewMetrics:
    role: SwitchRoleEnum
    version_id: strawberry.ID
    assets: int = strawberry.field(description="Reviewed assets this version predicted on.")
    ap: float | None
    ap50: float | None
    ap75: float | None
    ar100: float | None
    precision: float
    recall: float
    stats: JSON = strawberry.field(description="Every COCO summary statistic, by name.")
    per_label: list[ReviewLabelMetrics]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ReviewMetrics":
        stats = doc["stats"]
        return cls(
            role=SwitchRole(doc["role"]),
            version_id=strawberry.ID(str(doc["versionId"])),
            assets=doc["assets"],
            ap=stats["AP"],
            ap50=stats["AP50"],
            ap75=stats["AP75"],
            ar100=stats["AR100"],
            precision=doc["precision"],
            recall=doc["recall"],
            stats=stats,
            per_label=[ReviewLabelMetrics(**entry) for entry in doc["perLabel"]],
        )


async def review_metrics(
    info: strawberry.Info,
    deployment: dict[str, Any],
    since: datetime | None,
    until: datetime | None,
) -> list[ReviewMetrics]:
    access = await info.context.access()
    found = await deployment_review_metrics.review_metrics(access.db, deployment, since, until)
    return [ReviewMetrics.from_doc(entry) for entry in found]


def review_of(asset: dict[str, Any]) -> PredictionReview | None:
    return PredictionReview.from_doc(asset["review"]) if asset.get("review") else None


def review_counts(deployment: dict[str, Any]) -> ReviewCounts:
    counts = deployment.get("reviews") or {}
    return ReviewCounts(**{status: counts.get(status, 0) for status in ReviewStatus})


def continuous_training(deployment: dict[str, Any]) -> ContinuousTraining | None:
    stored = deployment.get("continuousTraining")
    if not stored:
        return None
    return ContinuousTraining(
        active=stored["active"],
        threshold=stored["threshold"],
        train_function=stored["trainFunction"],
        parameters=stored["parameters"],
        trigger_id=strawberry.ID(str(stored["triggerId"])),
        pending=stored["pending"],
        crossings=stored["crossings"],
        last_crossing_at=stored["lastCrossingAt"],
    )


async def feedback_datasets(
    info: strawberry.Info, deployment: dict[str, Any]
) -> list[Annotated["Dataset", strawberry.lazy("schema.datasets")]]:
    from schema.datasets import Dataset

    access = await info.context.access()
    found = []
    for dataset_id in deployment.get("feedbackDatasetIds") or []:
        dataset = await access.find_visible("datasets", dataset_id)
        if dataset is not None and not dataset.get("deleting"):
            found.append(Dataset.from_doc(dataset))
    return found


@strawberry.input(description="An annotation of a correction; its item is the asset's.")
class ReviewAnnotationInput:
    type: str
    label: str
    coordinates: JSON | None = None
    attributes: JSON | None = strawberry.UNSET


@strawberry.input
class ContinuousTrainingInput:
    threshold: int = strawberry.field(description="Reviews with ground truth per training.")
    active: bool | None = strawberry.UNSET
    train_function: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="A function of the champion's service; the version's functions.train if "
        "not given.",
    )
    parameters: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="The train function's input."
    )


@strawberry.input
class ContinuousDeploymentInput:
    policy: PolicyEnum
    metric: str | None = strawberry.field(
        default=strawberry.UNSET, description="AP (default), AP50, AP75, …, AR100."
    )
    margin: float | None = strawberry.field(
        default=strawberry.UNSET, description="0..1: how much better (ifBetter); 0 if not given."
    )


@strawberry.type
class DeploymentFeedbackMutations:
    @strawberry.mutation(
        description="Settle a predicted asset: accepted (the champion's predictions above the "
        "threshold are the truth), corrected (the annotations given are) or rejected (no "
        "truth); accepted and corrected assets become ground truth in the feedback datasets."
    )
    async def review_prediction(
        self,
        info: strawberry.Info,
        predicted_asset_id: strawberry.ID,
        status: ReviewStatusEnum,
        annotations: list[ReviewAnnotationInput] | None = None,
    ) -> PredictedAsset:
        access = await info.context.access()
        data: dict[str, Any] = {"status": status.value}
        if annotations is not None:
            data["annotations"] = [as_input(annotation) for annotation in annotations]
        asset = await feedback.review_prediction(
            access, object_id(predicted_asset_id, "predictedAssetId"), data
        )
        return PredictedAsset.from_doc(asset)

    @strawberry.mutation(description="Copy reviewed assets into this dataset of the project too.")
    async def attach_feedback_dataset(
        self, info: strawberry.Info, deployment_id: strawberry.ID, dataset_id: strawberry.ID
    ) -> Deployment:
        access = await info.context.access()
        doc = await feedback.attach_feedback_dataset(
            access, object_id(deployment_id, "deploymentId"), dataset_id
        )
        return Deployment.from_doc(doc)

    @strawberry.mutation(description="Stop copying reviewed assets into the dataset.")
    async def detach_feedback_dataset(
        self, info: strawberry.Info, deployment_id: strawberry.ID, dataset_id: strawberry.ID
    ) -> Deployment:
        access = await info.context.access()
        doc = await feedback.detach_feedback_dataset(
            access, object_id(deployment_id, "deploymentId"), dataset_id
        )
        return Deployment.from_doc(doc)

    @strawberry.mutation(
        description="Train the champion's model each time `threshold` new reviews with "
        "ground truth have accumulated (exactly once per crossing, through a trigger)."
    )
    async def set_continuous_training(
        self, info: strawberry.Info, deployment_id: strawberry.ID, input: ContinuousTrainingInput
    ) -> Deployment:
        access = await info.context.access()
        data = {k: v for k, v in as_input(input).items() if v is not None}
        doc = await training.set_continuous_training(
            access, object_id(deployment_id, "deploymentId"), data
        )
        return Deployment.from_doc(doc)

    @strawberry.mutation(description="Set when a proposed version replaces the champion.")
    async def set_continuous_deployment(
        self, info: strawberry.Info, deployment_id: strawberry.ID, input: ContinuousDeploymentInput
    ) -> Deployment:
        access = await info.context.access()
        data = {k: v for k, v in as_input(input).items() if v is not None}
        data["policy"] = input.policy.value
        doc = await promotion.set_continuous_deployment(
            access, object_id(deployment_id, "deploymentId"), data
        )
        return Deployment.from_doc(doc)

    @strawberry.mutation(
        description="Propose a newly trained version: evaluated against the champion on the "
        "feedback datasets' committed model runs, it replaces the champion only when the "
        "policy says so (a recorded switch)."
    )
    async def propose_model_version(
        self, info: strawberry.Info, deployment_id: strawberry.ID, model_version_id: strawberry.ID
    ) -> Proposal:
        access = await info.context.access()
        doc, decision = await promotion.propose_version(
            access, object_id(deployment_id, "deploymentId"), model_version_id
        )
        return Proposal(
            deployment=Deployment.from_doc(doc), decision=DeploymentDecision.from_doc(decision)
        )
