"""Drift from the training data: the window's champion predictions against a reference that
stands for what the model was trained on — a dataset of the project (its annotations' label
distribution) and, optionally, a model run on it (its predictions' score distribution: how
the model scored the data it knows).

The measures and thresholds are those of the window-to-window drift (resolvers/deployments/
stats.py): PSI over labels and over the 0.01 score bins, KS D at the bin edges. Both
references are aggregated in MongoDB (`$group` on the dataset's annotations by label, on the
run's predictions by score bin), never read row by row.
"""

from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from resolvers.access import Access
from resolvers.deployments.lifecycle import project_dataset
from resolvers.deployments.rollups import score_bin_of
from resolvers.deployments.stats import (
    SCORE_BINS,
    Ks,
    Psi,
    Stats,
    champion_total,
    ks,
    psi,
)
from resolvers.errors import BadUserInput
from resolvers.inputs import Input, object_id, parse


class TrainingReference(Input):
    dataset_id: str
    model_run_id: str | None = None


@dataclass(frozen=True)
class TrainingDrift:
    dataset_id: ObjectId
    model_run_id: ObjectId | None
    count: int
    reference_label_count: int
    reference_score_count: int
    label_psi: Psi | None
    score_psi: Psi | None
    score_ks: Ks | None


async def _label_counts(access: Access, dataset_id: ObjectId) -> dict[str, int]:
    pipeline = [
        {"$match": {"datasetId": dataset_id}},
        {"$group": {"_id": "$label", "n": {"$sum": 1}}},
    ]
    cursor = await access.db.annotations.aggregate(pipeline)
    return {doc["_id"]: doc["n"] async for doc in cursor}


async def _score_histogram(access: Access, run_id: ObjectId) -> list[int]:
    """The run's predictions per 0.01 score bin, binned as the rollups bin slots' scores."""
    pipeline = [
        {"$match": {"runId": run_id}},
        {"$group": {"_id": score_bin_of("$confidence"), "n": {"$sum": 1}}},
    ]
    found = {
        int(doc["_id"]): doc["n"] async for doc in await access.db.predictions.aggregate(pipeline)
    }
    return [found.get(i, 0) for i in range(SCORE_BINS)]


async def training_drift(
    access: Access, deployment: dict[str, Any], stats: Stats, data: dict[str, Any]
) -> TrainingDrift:
    reference = parse(TrainingReference, data)
    dataset = await project_dataset(
        access, deployment["projectId"], reference.dataset_id, "datasetId"
    )
    run_id = None
    if reference.model_run_id is not None:
        run_id = object_id(reference.model_run_id, "modelRunId")
        run = await access.db.model_runs.find_one(
            {"_id": run_id, "projectId": deployment["projectId"], "datasetId": dataset["_id"]},
            {"_id": 1},
        )
        if run is None:
            raise BadUserInput(
                "modelRunId names no model run of this project on that dataset",
                field="modelRunId",
            )
    current = await champion_total(access.db, stats.deployment_id, stats.span.whole())
    labels = await _label_counts(access, dataset["_id"])
    scores = await _score_histogram(access, run_id) if run_id is not None else None
    n = current.object_count
    label_psi = None
    if n and labels:
        names = sorted(current.label_counts().keys() | labels.keys())
        label_psi = Psi(
            psi(
                [current.label_counts().get(x, 0) for x in names], [labels.get(x, 0) for x in names]
            )
        )
    score_psi = score_ks = None
    if n and scores and sum(scores):
        score_psi = Psi(psi(current.score_histogram(), scores))
        score_ks = ks(current.score_histogram(), scores)
    return TrainingDrift(
        dataset["_id"],
        run_id,
        n,
        sum(labels.values()),
        sum(scores or []),
        label_psi,
        score_psi,
        score_ks,
    )
