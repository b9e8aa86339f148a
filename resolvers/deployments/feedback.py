"""The feedback loop: reviewed predictions become ground truth in the deployment's feedback
datasets (Picsellia's setup_feedback_loop / attach_dataset_version_to_feedback_loop).

A deployment has up to `MAX_FEEDBACK_DATASETS` feedback datasets of its own project.
`reviewPrediction` settles a predicted asset once, for good (a second review is CONFLICT):

- `accepted`: the champion's predictions at or above the asset's `minThreshold` are the truth;
- `corrected`: the annotations the reviewer gives are (none at all: nothing is there);
- `rejected`: the predictions are wrong and the truth unknown, so nothing becomes ground truth.

An accepted or corrected asset's item is copied into every feedback dataset — sharing its
file, under `/deployments/<deploymentId>/`, with referenceId `predicted-asset:<assetId>` —
with the truth as its annotations, their labels checked against each dataset's ontology. The
review itself (status, who, when, the truth, where it went) is stored on the asset beside the
champion's and the shadow's predictions, for supervised metrics. Everything — the review, the
copies and their annotations, the datasets' and the deployment's counters, and the
continuous-training count (resolvers/deployments/training.py) — is written in one transaction.
"""

from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field, model_validator
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from resolvers import files
from resolvers.access import Access, Action
from resolvers.annotation_shapes import validate_coordinates
from resolvers.annotations import AnnotationInput, new_annotation
from resolvers.deployments import training
from resolvers.deployments.lifecycle import get_deployment, project_dataset, writable
from resolvers.deployments.predictions import SlotStatus, get_predicted_asset
from resolvers.directories import join, with_ancestors
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.inputs import Input, object_id, parse
from resolvers.timestamps import now
from resolvers.transactions import in_transaction

MAX_FEEDBACK_DATASETS = 10
MAX_REVIEW_ANNOTATIONS = 1_000


class ReviewStatus(StrEnum):
    ACCEPTED = "accepted"
    CORRECTED = "corrected"
    REJECTED = "rejected"


class ReviewAnnotation(Input):
    """One annotation of a correction: an annotation without its item (the asset's)."""

    type: str
    label: str
    coordinates: Any = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class ReviewInput(Input):
    status: ReviewStatus
    annotations: list[ReviewAnnotation] | None = Field(None, max_length=MAX_REVIEW_ANNOTATIONS)

    @model_validator(mode="after")
    def _annotations_only_for_corrections(self) -> "ReviewInput":
        corrected = self.status == ReviewStatus.CORRECTED
        if corrected != (self.annotations is not None):
            raise ValueError("annotations are given with status corrected, and only with it")
        return self


async def attach_feedback_dataset(
    access: Access, deployment_id: ObjectId, dataset_id: str
) -> dict[str, Any]:
    deployment = await writable(access, deployment_id)
    dataset = await project_dataset(access, deployment["projectId"], dataset_id, "datasetId")
    attached = await access.db.deployments.find_one_and_update(
        {
            "_id": deployment_id,
            f"feedbackDatasetIds.{MAX_FEEDBACK_DATASETS - 1}": {"$exists": False},
        },
        {"$addToSet": {"feedbackDatasetIds": dataset["_id"]}, "$set": {"updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )
    if attached is None:
        raise Conflict(f"A deployment has at most {MAX_FEEDBACK_DATASETS} feedback datasets")
    return attached


async def detach_feedback_dataset(
    access: Access, deployment_id: ObjectId, dataset_id: str
) -> dict[str, Any]:
    """Stop copying reviews into the dataset; what was copied stays."""
    await writable(access, deployment_id)
    detached = await access.db.deployments.find_one_and_update(
        {"_id": deployment_id},
        {
            "$pull": {"feedbackDatasetIds": object_id(dataset_id, "datasetId")},
            "$set": {"updatedAt": now()},
        },
        return_document=ReturnDocument.AFTER,
    )
    if detached is None:
        raise NotFound("Deployment not found", id=str(deployment_id))
    return detached


def _corrections(review: ReviewInput, item: dict[str, Any]) -> list[dict[str, Any]]:
    """The reviewer's annotations as annotation fields, each checked as an annotation of the
    item is (its type, label and shape against the item's size)."""
    checked = []
    for index, given in enumerate(review.annotations or []):
        fields = {**given.model_dump(by_alias=True), "itemId": str(item["_id"])}
        try:
            annotation = parse(AnnotationInput, fields)
            coordinates = validate_coordinates(
                annotation.type, annotation.coordinates, width=item["width"],
                height=item["height"],
            )  # fmt: skip
        except BadUserInput as exc:
            raise BadUserInput(f"annotations[{index}]: {exc.message}", field="annotations") from exc
        checked.append(
            {
                "type": str(annotation.type),
                "label": annotation.label,
                "coordinates": coordinates,
                "attributes": annotation.attributes,
            }
        )
    return checked


async def _truth(access: Access, asset: dict[str, Any], review: ReviewInput) -> list[dict]:
    """The review's ground truth as annotation fields (without the item)."""
    if review.status == ReviewStatus.REJECTED:
        return []
    if review.status == ReviewStatus.CORRECTED:
        item = await access.db.items.find_one({"_id": asset["itemId"]})
        if item is None:
            raise Conflict("The predicted asset's item is gone: it cannot be corrected")
        return _corrections(review, item)
    if asset["champion"]["status"] != str(SlotStatus.SUCCESS):
        raise Conflict("The champion has no predictions to accept (it has not succeeded)")
    return [
        {
            "type": p["type"],
            "label": p["label"],
            "coordinates": p["coordinates"],
            "attributes": {},
        }
        for p in asset["champion"]["predictions"]
        if p["confidence"] >= asset["minThreshold"]
    ]


def _copy(item: dict[str, Any], asset: dict[str, Any], dataset_id: ObjectId) -> dict[str, Any]:
    moment = now()
    directory = f"/deployments/{asset['deploymentId']}"
    name = f"{asset['_id']}-{item['name']}"
    return {
        **item,
        "_id": ObjectId(),
        "datasetId": dataset_id,
        "dir": directory,
        "name": name,
        "filename": join(directory, name),
        "referenceId": f"predicted-asset:{asset['_id']}",
        "reviewOf": asset["_id"],
        "annotated": False,
        "annotationsCount": 0,
        "createdAt": moment,
        "updatedAt": moment,
    }


async def _feedback(
    access: Access, deployment: dict[str, Any], asset: dict[str, Any], truth: list[dict]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The copies of the asset's item for the feedback datasets, and their annotations: all
    checked now, nothing written."""
    dataset_ids = deployment.get("feedbackDatasetIds") or []
    if not dataset_ids:
        return [], []
    item = await access.db.items.find_one({"_id": asset["itemId"]})
    if item is None:
        raise Conflict("The predicted asset's item is gone: it cannot become ground truth")
    datasets = await access.db.datasets.find({"_id": {"$in": dataset_ids}}).to_list()
    copies, annotations = [], []
    for dataset in sorted(datasets, key=lambda dataset: dataset["_id"]):
        if dataset.get("readonly"):
            raise Conflict(f"Feedback dataset {dataset['name']!r} is read-only")
        copy = _copy(item, asset, dataset["_id"])
        made = []
        for index, fields in enumerate(truth):
            annotation = parse(AnnotationInput, {**fields, "itemId": str(copy["_id"])})
            try:
                made.append(new_annotation(access.user_id, annotation, copy, dataset))
            except BadUserInput as exc:
                raise BadUserInput(
                    f"annotations[{index}]: {exc.message}", field="annotations"
                ) from exc
        copy["annotationsCount"], copy["annotated"] = len(made), bool(made)
        copies.append(copy)
        annotations.extend(made)
    return copies, annotations


def _reviewed() -> Conflict:
    return Conflict("The predicted asset was reviewed already; a review is final")


async def review_prediction(
    access: Access, asset_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Settle a predicted asset with its review (see the module's docstring)."""
    review = parse(ReviewInput, data)
    asset = await get_predicted_asset(access, asset_id)
    await access.require_project(asset, Action.WRITE_ANNOTATIONS)
    if asset["review"] is not None:
        raise _reviewed()
    deployment = await get_deployment(access, asset["deploymentId"])
    truth = await _truth(access, asset, review)
    copies, annotations = [], []
    if review.status != ReviewStatus.REJECTED:
        copies, annotations = await _feedback(access, deployment, asset, truth)
    moment = now()
    stored = {
        "status": str(review.status),
        "by": access.user_id,
        "at": moment,
        "annotations": truth,
        "feedback": [{"datasetId": c["datasetId"], "itemId": c["_id"]} for c in copies],
        "trainingDue": False,
    }

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        counted = await training.count_review(
            access.db, deployment["_id"], str(review.status), session
        )
        reviewed = await access.db.predicted_assets.find_one_and_update(
            {"_id": asset_id, "review": None},
            {"$set": {"review": {**stored, "trainingDue": counted}, "updatedAt": moment}},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if reviewed is None:
            raise _reviewed()
        if copies:
            await access.db.items.insert_many(copies, session=session)
            shared = {copies[0]["sha256"]: len(copies)}
            await files.add_references(access.db, shared, session)
        if annotations:
            await access.db.annotations.insert_many(annotations, session=session)
        for copy in copies:
            await access.db.datasets.update_one(
                {"_id": copy["datasetId"]},
                {
                    "$inc": {"itemsCount": 1, "annotationsCount": copy["annotationsCount"]},
                    "$addToSet": {"directories": {"$each": with_ancestors(copy["dir"])}},
                },
                session=session,
            )
        return reviewed

    return await in_transaction(access.db, work)
