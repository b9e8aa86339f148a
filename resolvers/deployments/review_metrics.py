"""Supervised metrics of a deployment: its reviewed predicted assets evaluated as a model run
is (resolvers/evaluation/: COCO's AP, and precision, recall per label), for each role and
model version side by side — the champion against the shadow on the very same assets.

The ground truth is each review's (accepted or corrected; rejected assets have none), the
predictions are everything the slot's version returned, scores included (COCO ranks them; the
deployment's `minThreshold` is the confidence threshold of precision and recall). Shapes are
matched by their boxes (bbox IoU), class-aware, over the labels either side names. Only
reviewed assets are read, with the fields evaluated, and the evaluation runs in a thread.
"""

import asyncio
from datetime import datetime
from typing import Any

import numpy as np
from bson import ObjectId

from resolvers.evaluation import GroundTruths, Options, Predictions, accumulate, evaluate_items
from resolvers.model_run_columns import SHAPES, geometry

REVIEWED = ("accepted", "corrected")
ROLES = ("champion", "shadow")


def _rows(shapes: list[tuple[int, dict[str, Any]]], labels: dict[str, int], ground: bool):
    boxes, areas = [], []
    for _, shape in shapes:
        box, area = geometry(shape, ground)
        boxes.append(box)
        areas.append(area)
    return {
        "item": np.array([item for item, _ in shapes], dtype=np.int64),
        "label": np.array([labels[shape["label"]] for _, shape in shapes], dtype=np.int64),
        "area": np.array(areas, dtype=np.float64),
        "ids": np.arange(len(shapes), dtype=np.int64),
        "bbox": np.array(boxes, dtype=np.float64).reshape(-1, 4),
    }


def _evaluate(assets: list[dict[str, Any]], role: str, threshold: float) -> dict[str, Any]:
    """COCO metrics of one role's predictions on the assets' ground truth."""
    truths = [
        (n, shape)
        for n, asset in enumerate(assets)
        for shape in asset["review"]["annotations"]
        if shape["type"] in SHAPES["bbox"]
    ]
    guesses = [
        (n, shape)
        for n, asset in enumerate(assets)
        for shape in asset[role]["predictions"]
        if shape["type"] in SHAPES["bbox"]
    ]
    names = sorted({shape["label"] for _, shape in truths + guesses})
    labels = {name: index for index, name in enumerate(names)}
    options = Options(n_labels=max(len(names), 1), class_agnostic=False,
                      confidence_threshold=threshold)  # fmt: skip
    ground_rows = _rows(truths, labels, True)
    ground = GroundTruths(crowd=np.zeros(len(truths), dtype=bool), **ground_rows)
    scores = np.array([shape["confidence"] for _, shape in guesses], dtype=np.float64)
    predictions = Predictions(score=scores, **_rows(guesses, labels, False))
    metrics = accumulate(evaluate_items(ground, predictions, options, len(assets)), options)
    document = metrics.to_document()
    return {
        "assets": len(assets),
        "stats": document["stats"],
        "precision": document["overall"]["precision"],
        "recall": document["overall"]["recall"],
        "perLabel": [
            {
                "label": names[entry["label"]],
                "ap": entry["ap"],
                "precision": entry["precision"],
                "recall": entry["recall"],
                "tp": entry["tp"],
                "fp": entry["fp"],
                "fn": entry["fn"],
            }
            for entry in document["per_label"]
            if entry["label"] < len(names)
        ],
    }


async def review_metrics(
    db: Any, deployment: dict[str, Any], since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """Per (role, model version), the metrics on the assets reviewed in [since, until)."""
    window: dict[str, Any] = {}
    if since is not None:
        window["$gte"] = since
    if until is not None:
        window["$lt"] = until
    query: dict[str, Any] = {
        "deploymentId": deployment["_id"],
        "review.status": {"$in": list(REVIEWED)},
        **({"review.at": window} if window else {}),
    }
    fields = {"review.annotations": 1, **{f"{role}.{f}": 1 for role in ROLES
              for f in ("versionId", "status", "predictions")}}  # fmt: skip
    assets = await db.predicted_assets.find(query, fields).sort("_id", 1).to_list()
    groups: dict[tuple[str, ObjectId], list[dict[str, Any]]] = {}
    for asset in assets:
        for role in ROLES:
            slot = asset.get(role)
            if slot and slot["status"] == "success":
                groups.setdefault((role, slot["versionId"]), []).append(asset)
    threshold = deployment["minThreshold"]
    found = []
    for (role, version_id), members in groups.items():
        evaluated = await asyncio.to_thread(_evaluate, members, role, threshold)
        found.append({"role": role, "versionId": version_id, **evaluated})
    return sorted(found, key=lambda entry: (ROLES.index(entry["role"]), str(entry["versionId"])))
