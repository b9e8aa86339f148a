"""Model runs, their predictions, commits, metrics and match records."""

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers import (
    match_records,
    model_predictions,
    model_run_commit,
    model_run_reads,
    model_runs,
    prediction_uploads,
)
from resolvers.errors import NotFound
from resolvers.inputs import object_id
from resolvers.predictions import PredictionType
from schema.commands import Command
from schema.inputs import as_input
from schema.relay import Connection, Node, page_request

if TYPE_CHECKING:
    from schema.items import Item

ModelRunStatus = strawberry.enum(model_runs.RunStatus, name="ModelRunStatus")
PredictionTypeEnum = strawberry.enum(
    Enum("PredictionType", {member.name: member.value for member in PredictionType}),
    description="box, polygon, cuboid, segmentation (COCO RLE) or classification.",
)


@strawberry.type(description="One prediction of a model run on an item.")
class Prediction(Node):
    item_id: strawberry.ID
    annotation_id: str | None = strawberry.field(
        description="Your own id for it, unique per item: uploads with update=true replace it."
    )
    type: str
    label: str
    coordinates: JSON | None
    confidence: float
    class_pdf: JSON | None = strawberry.field(description="{label: probability}, if given.")
    metadata: JSON
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def item(
        self, info: strawberry.Info
    ) -> Annotated["Item", strawberry.lazy("schema.items")]:
        from schema.items import Item

        return Item.from_doc(await info.context.loaders.items.load(object_id(self.item_id)))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Prediction":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            item_id=strawberry.ID(str(doc["itemId"])),
            annotation_id=doc["annotationId"],
            type=doc["type"],
            label=doc["label"],
            coordinates=doc["coordinates"],
            confidence=doc["confidence"],
            class_pdf=doc["classPdf"],
            metadata=doc["metadata"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


def _score(value: float | None) -> float | None:
    """COCO's -1 (nothing to measure, e.g. no ground truth of a label) as null."""
    return None if value is None or value < 0 else value


@strawberry.type(description="How well the predictions of one label did.")
class LabelMetrics:
    label: str
    ap: float | None = strawberry.field(description="COCO AP@[.5:.95] of the label's pool.")
    tp: int = strawberry.field(description="At the extras' IoU and confidence thresholds.")
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    best_confidence: float | None = strawberry.field(
        description="The confidence threshold with the best F1."
    )
    best_f1: float


@strawberry.type(description="How well the classification predictions of one label did.")
class ClassLabelMetrics:
    label: str
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    support: int = strawberry.field(description="Items that truly have the label.")


@strawberry.type(
    description="Classification predictions against classification annotations: an item's "
    "predicted class is its most confident classification prediction."
)
class ClassificationMetrics:
    items: int
    accuracy: float | None = strawberry.field(description="Top-1, over items with a class.")
    per_label: list[ClassLabelMetrics]
    confusion_matrix: JSON = strawberry.field(
        description="{labels, matrix}: rows true class, columns predicted; `none` for neither."
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ClassificationMetrics":
        return cls(
            items=doc["items"],
            accuracy=doc["accuracy"],
            per_label=[ClassLabelMetrics(**entry) for entry in doc["perLabel"]],
            confusion_matrix=doc["confusion"],
        )


@strawberry.type(description="A committed run's metrics: COCO's stats and Loom's extras.")
class ModelRunMetrics:
    ap: float | None = strawberry.field(description="mAP, AP@[.5:.95], area all, 100 dets.")
    ap50: float | None
    ap75: float | None
    ap_small: float | None
    ap_medium: float | None
    ap_large: float | None
    ar1: float | None
    ar10: float | None
    ar100: float | None
    ar_small: float | None
    ar_medium: float | None
    ar_large: float | None
    mode: str = strawberry.field(description="agnostic | aware | pairs: how labels matched.")
    iou_thresholds: list[float]
    extras_iou_threshold: float = strawberry.field(
        description="The IoU threshold of the per-label counts, curves and confusion matrix."
    )
    confidence_threshold: float
    precision: float = strawberry.field(description="Over all labels, at the thresholds.")
    recall: float
    f1: float
    per_label: list[LabelMetrics]
    curves: JSON = strawberry.field(
        description="{overall, perLabel: {label: curve}}; a curve is {thresholds, precision, "
        "recall, f1, bestThreshold, bestF1, …} by descending confidence (≤ 101 points)."
    )
    confusion_matrix: JSON = strawberry.field(
        description="{labels, matrix}: rows are ground-truth labels then background, columns "
        "predicted labels then background (class-agnostic matching)."
    )
    classification: ClassificationMetrics | None = strawberry.field(
        description="Of the run's classification predictions, if it has any."
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ModelRunMetrics":
        names = doc["labels"]
        stats = doc["stats"]
        # A commit with no label at all evaluates one unnamed, empty label: nothing to show.
        entries = [e for e in doc["per_label"] if e["label"] < len(names)]
        per_label = [
            LabelMetrics(
                label=names[entry["label"]],
                ap=_score(entry["ap"]),
                tp=entry["tp"],
                fp=entry["fp"],
                fn=entry["fn"],
                precision=entry["precision"],
                recall=entry["recall"],
                f1=entry["f1"],
                best_confidence=entry["curve"]["best_threshold"],
                best_f1=entry["curve"]["best_f1"],
            )
            for entry in entries
        ]
        overall = doc["overall"]
        confusion = doc["confusion"]
        return cls(
            ap=_score(stats["AP"]),
            ap50=_score(stats["AP50"]),
            ap75=_score(stats["AP75"]),
            ap_small=_score(stats["AP_small"]),
            ap_medium=_score(stats["AP_medium"]),
            ap_large=_score(stats["AP_large"]),
            ar1=_score(stats["AR1"]),
            ar10=_score(stats["AR10"]),
            ar100=_score(stats["AR100"]),
            ar_small=_score(stats["AR_small"]),
            ar_medium=_score(stats["AR_medium"]),
            ar_large=_score(stats["AR_large"]),
            mode=doc["mode"],
            iou_thresholds=doc["iouThresholds"],
            extras_iou_threshold=doc["extras_iou_threshold"],
            confidence_threshold=doc["confidence_threshold"],
            precision=overall["precision"],
            recall=overall["recall"],
            f1=overall["f1"],
            per_label=per_label,
            curves={
                "overall": overall["curve"],
                "perLabel": {names[e["label"]]: e["curve"] for e in entries},
            },
            confusion_matrix=_named(confusion, names),
            classification=ClassificationMetrics.from_doc(doc["classification"])
            if doc.get("classification")
            else None,
        )


def _named(confusion: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The confusion matrix with label names, without the rows and columns of an unnamed label
    (the one a commit without labels evaluates)."""
    keep = [
        i for i, v in enumerate(confusion["labels"]) if not isinstance(v, int) or v < len(names)
    ]
    return {
        "labels": [
            names[v] if isinstance(v, int) else v for v in (confusion["labels"][i] for i in keep)
        ],
        "matrix": [[confusion["matrix"][r][c] for c in keep] for r in keep],
    }


MatchKind = strawberry.enum(
    Enum("MatchKind", {"TP": "tp", "FP": "fp", "FN": "fn"}),
    description="TP: a prediction matched a ground truth; FP: a prediction matched none; "
    "FN: a ground truth no prediction matched.",
)


@strawberry.type(description="One match record of a committed run, at one IoU threshold.")
class MatchRecord:
    kind: MatchKind
    item_id: strawberry.ID
    prediction_id: strawberry.ID | None
    ground_truth_id: strawberry.ID | None = strawberry.field(
        description="The annotation matched (TP) or missed (FN)."
    )
    label: str = strawberry.field(
        description="The prediction's label (TP, FP) or the ground truth's (FN)."
    )
    ground_truth_label: str | None
    confidence: float | None
    iou: float | None

    @strawberry.field
    async def item(
        self, info: strawberry.Info
    ) -> Annotated["Item", strawberry.lazy("schema.items")]:
        from schema.items import Item

        return Item.from_doc(await info.context.loaders.items.load(object_id(self.item_id)))


@strawberry.type
class MatchEdge:
    node: MatchRecord
    cursor: str


@strawberry.type
class MatchPageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class MatchConnection:
    edges: list[MatchEdge]
    page_info: MatchPageInfo

    @strawberry.field
    def nodes(self) -> list[MatchRecord]:
        return [edge.node for edge in self.edges]


def _record(record: match_records.MatchRecord) -> MatchRecord:
    def gid(value: Any) -> strawberry.ID | None:
        return strawberry.ID(str(value)) if value is not None else None

    return MatchRecord(
        kind=MatchKind(record.kind),
        item_id=strawberry.ID(str(record.item_id)),
        prediction_id=gid(record.prediction_id),
        ground_truth_id=gid(record.ground_truth_id),
        label=record.label,
        ground_truth_label=record.ground_truth_label,
        confidence=record.confidence,
        iou=record.iou,
    )


ItemOrder = strawberry.enum(
    Enum(
        "ModelRunItemOrder",
        {
            "ITEM": "item",
            "ERRORS": "errors",
            "FALSE_POSITIVES": "falsePositives",
            "FALSE_NEGATIVES": "falseNegatives",
        },
    ),
    description="By item id, or the items with the most errors (FP + FN, FP, FN) first.",
)


@strawberry.type(description="One item's counts in the last commit, at IoU 0.5.")
class ItemCounts:
    item_id: strawberry.ID
    tp: int
    fp: int
    fn: int

    @strawberry.field
    async def item(
        self, info: strawberry.Info
    ) -> Annotated["Item", strawberry.lazy("schema.items")]:
        from schema.items import Item

        return Item.from_doc(await info.context.loaders.items.load(object_id(self.item_id)))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ItemCounts":
        counts = doc["counts"]
        return cls(
            item_id=strawberry.ID(str(doc["itemId"])),
            tp=counts["tp"],
            fp=counts["fp"],
            fn=counts["fn"],
        )


@strawberry.type(description="A model version's predictions on a dataset, and their metrics.")
class ModelRun(Node):
    model_id: strawberry.ID
    model_version_id: strawberry.ID
    dataset_id: strawberry.ID
    name: str
    description: str
    metadata: JSON
    labels: list[str]
    status: ModelRunStatus
    predictions_count: int
    changed: bool = strawberry.field(
        description="Predictions changed since the last commit (or there was none yet)."
    )
    committed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    command_id: strawberry.Private[Any]

    @strawberry.field(description="The last commit's Command, while it runs and after.")
    async def commit_command(self, info: strawberry.Info) -> Command | None:
        if self.command_id is None:
            return None
        return Command.from_doc(await info.context.loaders.commands.load(self.command_id))

    @strawberry.field(
        description="Predictions of one item, named by id, by reference id or by its position "
        "in the dataset (Nucleus' loc, refloc, iloc), optionally of one annotationId "
        "(prediction_loc)."
    )
    async def predictions(
        self,
        info: strawberry.Info,
        item_id: strawberry.ID | None = None,
        reference_id: str | None = None,
        index: int | None = None,
        annotation_id: str | None = None,
    ) -> list[Prediction]:
        access = await info.context.access()
        docs = await model_run_reads.predictions_of(
            access,
            object_id(self.id),
            item_id=object_id(item_id, "itemId") if item_id is not None else None,
            reference_id=reference_id,
            index=index,
            annotation_id=annotation_id,
        )
        return [Prediction.from_doc(doc) for doc in docs]

    @strawberry.field(description="The last commit's metrics; null before the first commit.")
    async def metrics(self, info: strawberry.Info) -> ModelRunMetrics | None:
        access = await info.context.access()
        doc = await model_run_reads.metrics_of(access, object_id(self.id))
        return ModelRunMetrics.from_doc(doc) if doc is not None else None

    @strawberry.field(description="The last commit's counts per item (all predictions, IoU 0.5).")
    async def items(
        self,
        info: strawberry.Info,
        order: ItemOrder = ItemOrder.ITEM,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[ItemCounts]:
        access = await info.context.access()
        page = await model_run_reads.item_counts(
            access, object_id(self.id), page_request(info, first, after), order.value
        )
        return Connection.of(page, ItemCounts.from_doc)

    @strawberry.field(
        description="The last commit's match records of one kind, item by item, for browsing "
        "the errors: filtered by label, confidence and IoU, at one of the commit's IoU "
        "thresholds (0.5 by default)."
    )
    async def matches(
        self,
        info: strawberry.Info,
        kind: MatchKind,
        label: str | None = None,
        min_confidence: float | None = None,
        min_iou: float | None = None,
        iou_threshold: float = 0.5,
        first: int = 50,
        after: str | None = None,
    ) -> MatchConnection:
        access = await info.context.access()
        page_request(info, first, after)
        page = await match_records.match_page(
            access,
            object_id(self.id),
            kind=kind.value,
            label=label,
            min_confidence=min_confidence,
            min_iou=min_iou,
            iou_threshold=iou_threshold,
            first=first,
            after=after,
        )
        edges = [MatchEdge(node=_record(r), cursor=r.cursor) for r in page.records]
        return MatchConnection(
            edges=edges,
            page_info=MatchPageInfo(
                has_next_page=page.has_next_page,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ModelRun":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            model_id=strawberry.ID(str(doc["modelId"])),
            model_version_id=strawberry.ID(str(doc["modelVersionId"])),
            dataset_id=strawberry.ID(str(doc["datasetId"])),
            name=doc["name"],
            description=doc["description"],
            metadata=doc["metadata"],
            labels=doc["labels"],
            status=model_runs.RunStatus(doc["status"]),
            predictions_count=doc["predictionsCount"],
            changed=doc["changed"],
            committed_at=doc["committedAt"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
            command_id=doc["commandId"],
        )


async def item_predictions(info: strawberry.Info, run_id: Any, item_id: Any) -> list[Prediction]:
    access = await info.context.access()
    run = await info.context.loaders.model_runs.load(run_id)
    if not (await access.sees())(run):
        raise NotFound("ModelRun not found", id=str(run_id))
    docs = await info.context.loaders.predictions_of_item.load((run_id, item_id))
    return [Prediction.from_doc(doc) for doc in docs]


async def version_runs(
    info: strawberry.Info, version_id: Any, first: int, after: str | None
) -> Connection[ModelRun]:
    access = await info.context.access()
    page = await model_runs.list_model_runs(access, version_id, page_request(info, first, after))
    return Connection.of(page, ModelRun.from_doc)


@strawberry.input
class ModelRunInput:
    model_version_id: strawberry.ID
    dataset_id: strawberry.ID
    name: str
    description: str | None = strawberry.UNSET
    metadata: JSON | None = strawberry.UNSET


@strawberry.input(description="A prediction; name its item by itemId or by referenceId.")
class PredictionInput:
    type: PredictionTypeEnum
    label: str
    item_id: strawberry.ID | None = strawberry.UNSET
    reference_id: str | None = strawberry.UNSET
    annotation_id: str | None = strawberry.UNSET
    coordinates: JSON | None = strawberry.UNSET
    confidence: float | None = strawberry.field(
        default=strawberry.UNSET, description="0 to 1; 1 when not given."
    )
    class_pdf: JSON | None = strawberry.UNSET
    metadata: JSON | None = strawberry.UNSET


@strawberry.input(description="A ground-truth label and a predicted label allowed to match.")
class LabelMatchInput:
    ground_truth_label: str
    model_prediction_label: str


@strawberry.input(description="A named range of object areas in pixels (COCO: all, small, …).")
class AreaRangeInput:
    name: str
    min: float
    max: float


@strawberry.input(description="How to match and measure; COCO's defaults when left out.")
class CommitInput:
    class_agnostic: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Match predictions with ground truth of any label (default true).",
    )
    allowed_label_matches: list[LabelMatchInput] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Match by label, plus these pairs (implies classAgnostic false).",
    )
    iou_type: str | None = strawberry.field(
        default=strawberry.UNSET, description="bbox (default) or segm (masks)."
    )
    iou_thresholds: list[float] | None = strawberry.field(
        default=strawberry.UNSET, description="Default 0.50:0.05:0.95."
    )
    area_ranges: list[AreaRangeInput] | None = strawberry.UNSET
    max_detections: list[int] | None = strawberry.field(
        default=strawberry.UNSET, description="Per item; default [1, 10, 100]."
    )
    confidence_threshold: float | None = strawberry.field(
        default=strawberry.UNSET, description="For per-label precision/recall/F1 (0.5)."
    )
    full: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Recompute every item, changed or not."
    )


@strawberry.type(description="A prediction that was not written, by its index in the upload.")
class PredictionError:
    index: int
    field: str | None
    message: str


@strawberry.type(
    description="What an upload wrote, or — over 5,000 predictions — the Command writing it "
    "(its result holds the same counts when it ends)."
)
class PredictionUpload:
    processed: int | None = None
    ignored: int | None = None
    invalid: int | None = strawberry.field(
        default=None, description="Predictions refused (only with partial: true)."
    )
    errors: list[PredictionError] | None = strawberry.field(
        default=None, description="The first 100 refused predictions."
    )
    command: Command | None = None

    @classmethod
    def of(cls, answer: dict[str, Any]) -> "PredictionUpload":
        if "command" in answer:
            return cls(command=Command.from_doc(answer["command"]))
        return cls(
            processed=answer["processed"],
            ignored=answer["ignored"],
            invalid=answer["invalid"],
            errors=[PredictionError(**error) for error in answer["errors"]],
        )


@strawberry.input(description="What to predict on: a dataset of the version's project.")
class PredictModelInput:
    dataset_id: strawberry.ID
    filter: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="DQL over the dataset's items (all by default)."
    )
    run_name: str | None = strawberry.UNSET
    input: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="The predict function's input, over the version's configuration.",
    )


@strawberry.type(description="A prediction run: the model run, and the batch filling it.")
class ModelPrediction:
    model_run: ModelRun
    command: Command


@strawberry.type
class ModelRunQueries:
    @strawberry.field
    async def model_run(self, info: strawberry.Info, id: strawberry.ID) -> ModelRun:
        access = await info.context.access()
        return ModelRun.from_doc(await model_runs.get_model_run(access, object_id(id)))


@strawberry.type
class ModelRunMutations:
    @strawberry.mutation(description="Open a run of a model version on a dataset of its project.")
    async def create_model_run(self, info: strawberry.Info, input: ModelRunInput) -> ModelRun:
        access = await info.context.access()
        return ModelRun.from_doc(await model_runs.create_model_run(access, as_input(input)))

    @strawberry.mutation(
        description="Match the run's predictions with the dataset's ground truth and compute "
        "its metrics, as a Command (recomputing only the items changed since the last commit)."
    )
    async def commit_model_run(
        self,
        info: strawberry.Info,
        model_run_id: strawberry.ID,
        input: CommitInput | None = None,
    ) -> Command:
        access = await info.context.access()
        doc = await model_run_commit.start_commit(
            access,
            object_id(model_run_id, "modelRunId"),
            as_input(input) if input is not None else {},
            info.context.enqueue_command,
        )
        return Command.from_doc(doc)

    @strawberry.mutation(
        description="Run the version's predict function over a dataset's items as a batch of "
        "executions; each item's predictions land in a new model run."
    )
    async def predict_model(
        self, info: strawberry.Info, model_version_id: strawberry.ID, input: PredictModelInput
    ) -> ModelPrediction:
        access = await info.context.access()
        run, command = await model_predictions.predict_model(
            access,
            object_id(model_version_id, "modelVersionId"),
            as_input(input),
            info.context.enqueue_command,
        )
        return ModelPrediction(model_run=ModelRun.from_doc(run), command=Command.from_doc(command))

    @strawberry.mutation(description="Delete a run with its predictions and metrics.")
    async def delete_model_run(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await model_runs.delete_model_run(access, object_id(id))
        return True

    @strawberry.mutation(
        description="Add predictions to a run. update=true replaces a stored prediction with "
        "the same (item, annotationId), false skips it. Any invalid prediction refuses the "
        "whole upload (reported by index) unless partial=true. Over 5,000 predictions run as "
        "a Command."
    )
    async def upload_predictions(
        self,
        info: strawberry.Info,
        model_run_id: strawberry.ID,
        predictions: list[PredictionInput],
        update: bool = False,
        partial: bool = False,
    ) -> PredictionUpload:
        access = await info.context.access()
        answer = await prediction_uploads.upload_predictions(
            access,
            object_id(model_run_id, "modelRunId"),
            [as_input(p) for p in predictions],
            update,
            partial,
            info.context.enqueue_command,
        )
        return PredictionUpload.of(answer)
