"""Model runs, their predictions, commits, metrics and match records."""

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers import model_run_reads, model_runs, prediction_uploads
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
