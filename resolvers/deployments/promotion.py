"""Continuous deployment: whether a newly trained version replaces the champion.

`setContinuousDeployment` sets the policy: `manual` (a proposed version never replaces the
champion by itself; someone calls setChampion) or `ifBetter(metric, margin)`.
`proposeModelVersion(deploymentId, modelVersionId)` — called by a train function when its
version is ready, or by anyone managing models — evaluates the candidate against the champion
on the feedback data: on the first feedback dataset (in the deployment's order) where both
versions have a committed model run, it compares the latest run's `metric` (one of the COCO
summary statistics: AP, AP50, …, AR100) of each. Under `ifBetter` the candidate becomes
champion only when it beats the champion by more than `margin`; the promotion is an ordinary
champion switch (recorded, and undone by rollbackDeployment). Every decision is kept as the
deployment's `continuousDeployment.lastDecision`.
"""

from enum import StrEnum
from typing import Any, Literal

from bson import ObjectId
from pydantic import Field
from pymongo import DESCENDING, ReturnDocument

from resolvers.access import Access
from resolvers.deployments.lifecycle import project_version, set_champion, writable
from resolvers.errors import BadUserInput, NotFound
from resolvers.evaluation import STAT_NAMES
from resolvers.inputs import Input, parse
from resolvers.timestamps import now

Metric = Literal[STAT_NAMES]  # type: ignore[valid-type]


class Policy(StrEnum):
    MANUAL = "manual"
    IF_BETTER = "ifBetter"


class ContinuousDeploymentInput(Input):
    policy: Policy
    metric: Metric = "AP"
    margin: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)


async def set_continuous_deployment(
    access: Access, deployment_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    deployment = await writable(access, deployment_id)
    settings = parse(ContinuousDeploymentInput, data)
    current = deployment.get("continuousDeployment") or {}
    stored = {**settings.model_dump(), "lastDecision": current.get("lastDecision")}
    updated = await access.db.deployments.find_one_and_update(
        {"_id": deployment_id},
        {"$set": {"continuousDeployment": stored, "updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )
    if updated is None:
        raise NotFound("Deployment not found", id=str(deployment_id))
    return updated


async def _latest_run(
    access: Access, version_id: ObjectId, dataset_id: ObjectId
) -> dict[str, Any] | None:
    return await access.db.model_runs.find_one(
        {"modelVersionId": version_id, "datasetId": dataset_id, "status": "committed"},
        {"metrics": 1},
        sort=[("committedAt", DESCENDING)],
    )


async def _evaluation(
    access: Access, deployment: dict[str, Any], candidate: ObjectId, metric: str
) -> dict[str, Any] | None:
    """Both versions' metric on the first feedback dataset where both have a committed run."""
    for dataset_id in deployment.get("feedbackDatasetIds") or []:
        champion = await _latest_run(access, deployment["championVersionId"], dataset_id)
        challenger = await _latest_run(access, candidate, dataset_id)
        if champion and challenger:
            return {
                "datasetId": dataset_id,
                "championRunId": champion["_id"],
                "candidateRunId": challenger["_id"],
                "championValue": (champion.get("metrics") or {}).get(metric),
                "candidateValue": (challenger.get("metrics") or {}).get(metric),
            }
    return None


def _verdict(policy: Policy, margin: float, evaluation: dict[str, Any] | None) -> tuple[bool, str]:
    if evaluation is None:
        return False, "no feedback dataset has committed model runs of both versions"
    champion, candidate = evaluation["championValue"], evaluation["candidateValue"]
    if champion is None or candidate is None:
        return False, "the metric is undefined for one of the runs"
    if policy == Policy.MANUAL:
        return False, "the policy is manual: setChampion promotes"
    if candidate > champion + margin:
        return True, f"better by {candidate - champion:.4f} (margin {margin:g})"
    return False, f"not better by more than {margin:g} ({candidate:.4f} vs {champion:.4f})"


async def propose_version(
    access: Access, deployment_id: ObjectId, version_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decide on a candidate version under the deployment's policy; (deployment, decision)."""
    deployment = await writable(access, deployment_id)
    settings = deployment.get("continuousDeployment")
    if not settings:
        raise BadUserInput(
            "the deployment has no continuous-deployment policy; set one first",
            field="deploymentId",
        )
    candidate = await project_version(access, deployment["projectId"], version_id, "modelVersionId")
    if candidate == deployment["championVersionId"]:
        raise BadUserInput("the version is the champion already", field="modelVersionId")
    evaluation = await _evaluation(access, deployment, candidate, settings["metric"])
    promoted, reason = _verdict(Policy(settings["policy"]), settings["margin"], evaluation)
    if promoted:
        deployment = await set_champion(access, deployment_id, version_id)
    decision = {
        "versionId": candidate,
        "policy": settings["policy"],
        "metric": settings["metric"],
        "promoted": promoted,
        "reason": reason,
        "evaluation": evaluation,
        "by": access.user_id,
        "at": now(),
    }
    updated = await access.db.deployments.find_one_and_update(
        {"_id": deployment_id},
        {"$set": {"continuousDeployment.lastDecision": decision}},
        return_document=ReturnDocument.AFTER,
    )
    return updated or deployment, decision
