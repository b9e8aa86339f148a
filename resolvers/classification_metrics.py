"""A model run's classification metrics: its classification predictions against the dataset's
classification annotations, item by item (Nucleus' CategorizationPrediction).

An item's predicted class is its most confident classification prediction (ties: the first
uploaded); its true classes are the labels of its classification annotations. An item counts
when it has either. Per label: a true positive is an item predicted as the label that has it,
a false positive one predicted as it without it, a false negative one that has it but was
predicted otherwise (or not at all). Top-1 accuracy is over the items with a true class. The
confusion matrix pairs an item's first true class (by annotation id) with its prediction,
`none` standing for a missing prediction or class. Classifications are few per item, so the
whole run is recounted at every commit (two grouped reads), with no per-item state.
"""

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

NONE = "none"


async def _per_item(
    db: AsyncDatabase, collection: str, query: dict[str, Any], sort: dict[str, int]
) -> dict[Any, list[str]]:
    pipeline = [
        {"$match": {**query, "type": "classification"}},
        {"$sort": {"itemId": 1, **sort, "_id": 1}},
        {"$group": {"_id": "$itemId", "labels": {"$push": "$label"}}},
    ]
    cursor = await db[collection].aggregate(pipeline, allowDiskUse=True)
    return {group["_id"]: group["labels"] async for group in cursor}


async def classification_metrics(db: AsyncDatabase, run: dict[str, Any]) -> dict[str, Any] | None:
    """The run's classification metrics, or None when neither side has a classification."""
    truth = await _per_item(db, "annotations", {"datasetId": run["datasetId"]}, {})
    predicted = await _per_item(db, "predictions", {"runId": run["_id"]}, {"confidence": -1})
    if not truth and not predicted:
        return None
    labels = sorted(
        {label for found in (truth, predicted) for ls in found.values() for label in ls}
    )
    counts = {label: {"tp": 0, "fp": 0, "fn": 0} for label in labels}
    rows = [*labels, NONE]
    matrix = [[0] * len(rows) for _ in rows]
    correct = judged = 0
    for item in truth.keys() | predicted.keys():
        classes = set(truth.get(item, []))
        guess = predicted[item][0] if item in predicted else None
        if guess is not None:
            counts[guess]["tp" if guess in classes else "fp"] += 1
        for label in classes - {guess}:
            counts[label]["fn"] += 1
        if classes:
            judged += 1
            correct += guess in classes
        first = truth[item][0] if item in truth else NONE
        matrix[rows.index(first)][rows.index(guess or NONE)] += 1
    per_label = []
    for label in labels:
        tp, fp, fn = counts[label]["tp"], counts[label]["fp"], counts[label]["fn"]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label.append(
            {
                "label": label,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "support": tp + fn,
            }
        )
    return {
        "items": len(truth.keys() | predicted.keys()),
        "accuracy": correct / judged if judged else None,
        "perLabel": per_label,
        "confusion": {"labels": rows, "matrix": matrix},
    }
