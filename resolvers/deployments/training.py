"""Continuous training: a deployment's model is trained again each time `threshold` new
reviews with ground truth (accepted or corrected) have accumulated — exactly once per
crossing, through the event triggers.

`setContinuousTraining` keeps, beside the deployment's settings, one trigger of its own in
the project (named `continuous training <deploymentId>`, visible and listed like any other):
on `PredictedAsset` `Updated`, filter `{deploymentId, review.trainingDue: true}`,
`executionMode: Once`, running the train function of the champion's service (the version's
`functions.train` unless another is named) with `parameters` as its input. Each review counts
itself in the transaction that records it (`count_review`); the review that makes the count
reach the threshold sets the count back to zero and marks its own asset `trainingDue`. Two
concurrent reviews both write the deployment's count, so one transaction conflicts and runs
again on the other's result: exactly one review crosses each threshold. The relay turns that
asset's change into an event and the trigger runs once for it (`Once`: at most one execution
per asset, however often the event is read or the asset changes later).
"""

from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import triggers
from resolvers.access import Access
from resolvers.deployments.lifecycle import writable
from resolvers.errors import BadUserInput, NotFound
from resolvers.inputs import Input, Name, parse
from resolvers.timestamps import now

COUNTED = ("accepted", "corrected")
"""Review statuses that give ground truth: the ones continuous training counts."""


class ContinuousTrainingInput(Input):
    active: bool = True
    threshold: int = Field(ge=1, le=1_000_000)
    train_function: Name | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


def trigger_name(deployment_id: ObjectId) -> str:
    return f"continuous training {deployment_id}"


async def _train_function(
    access: Access, deployment: dict[str, Any], given: str | None
) -> tuple[str, str]:
    """(serviceId, function) that trains the champion's model."""
    version = await access.db.model_versions.find_one(
        {"_id": deployment["championVersionId"]}, {"functions": 1}
    )
    named = (version or {}).get("functions") or {}
    function = given or named.get("train")
    if not named.get("serviceId") or not function:
        raise BadUserInput(
            "the champion version names no service with a train function; give trainFunction "
            "and set the version's functions.serviceId",
            field="trainFunction",
        )
    return named["serviceId"], function


async def set_continuous_training(
    access: Access, deployment_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Turn continuous training on (or change it, or pause it with active false); the count of
    reviews since the last crossing is kept."""
    deployment = await writable(access, deployment_id)
    settings = parse(ContinuousTrainingInput, data)
    service_id, function = await _train_function(access, deployment, settings.train_function)
    operation = {
        "type": "function",
        "serviceId": str(service_id),
        "functionName": function,
        "input": settings.parameters,
    }
    definition = {
        "active": settings.active,
        "actions": ["Updated"],
        "filter": {"deploymentId": str(deployment_id), "review.trainingDue": True},
        "executionMode": "Once",
        "operation": operation,
    }
    current = deployment.get("continuousTraining") or {}
    trigger = None
    if current.get("triggerId") is not None:
        try:
            trigger = await triggers.update_trigger(access, current["triggerId"], definition)
        except NotFound:
            trigger = None
    if trigger is None:
        trigger = await triggers.create_trigger(
            access,
            deployment["projectId"],
            {**definition, "name": trigger_name(deployment_id), "resource": "PredictedAsset"},
        )
    stored = {
        "active": settings.active,
        "threshold": settings.threshold,
        "trainFunction": function,
        "parameters": trigger["operation"]["input"],
        "triggerId": trigger["_id"],
        "pending": current.get("pending", 0),
        "crossings": current.get("crossings", 0),
        "lastCrossingAt": current.get("lastCrossingAt"),
    }
    updated = await access.db.deployments.find_one_and_update(
        {"_id": deployment_id},
        {"$set": {"continuousTraining": stored, "updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )
    if updated is None:
        raise NotFound("Deployment not found", id=str(deployment_id))
    return updated


async def count_review(
    db: AsyncDatabase, deployment_id: ObjectId, status: str, session: AsyncClientSession
) -> bool:
    """Count a review in its transaction; whether it is the one that crosses the threshold."""
    counted = await db.deployments.find_one_and_update(
        {"_id": deployment_id},
        {"$inc": {f"reviews.{status}": 1}},
        return_document=ReturnDocument.AFTER,
        session=session,
    )
    if counted is None:
        raise NotFound("Deployment not found", id=str(deployment_id))
    settings = counted.get("continuousTraining")
    if not settings or not settings["active"] or status not in COUNTED:
        return False
    if settings["pending"] + 1 < settings["threshold"]:
        await db.deployments.update_one(
            {"_id": deployment_id}, {"$inc": {"continuousTraining.pending": 1}}, session=session
        )
        return False
    await db.deployments.update_one(
        {"_id": deployment_id},
        {
            "$set": {"continuousTraining.pending": 0, "continuousTraining.lastCrossingAt": now()},
            "$inc": {"continuousTraining.crossings": 1},
        },
        session=session,
    )
    return True
