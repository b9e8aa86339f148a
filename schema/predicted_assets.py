"""What deployments predict: predicted assets, their champion and shadow slots, and the
`predict` mutation that waits for the champion (resolvers/deployments/predictions.py)."""

import asyncio
import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from bson import ObjectId
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from gateway.change_feed import AccessChanged, Subscriber
from resolvers.deployments import batches as deployment_batches
from resolvers.deployments import predictions as deployment_predictions
from resolvers.deployments.predictions import SlotStatus
from resolvers.inputs import object_id
from schema.commands import Command
from schema.deployments import user_or_none, version_or_none
from schema.idempotency import IdempotencyKey
from schema.relay import Node
from schema.users import User

if TYPE_CHECKING:
    from schema.deployment_feedback import PredictionReview
    from schema.items import Item
    from schema.models import ModelVersion

SlotStatusEnum = strawberry.enum(
    SlotStatus, name="PredictionSlotStatus", description="pending | success | failed"
)


@strawberry.type(description="One prediction a deployed model version made on an asset.")
class AssetPrediction:
    type: str
    label: str
    coordinates: JSON | None
    confidence: float
    class_pdf: JSON | None = strawberry.field(description="{label: probability}, if given.")
    metadata: JSON

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "AssetPrediction":
        return cls(
            type=doc["type"],
            label=doc["label"],
            coordinates=doc["coordinates"],
            confidence=doc["confidence"],
            class_pdf=doc["classPdf"],
            metadata=doc["metadata"],
        )


@strawberry.type(description="What one model version (champion or shadow) made of an asset.")
class PredictionSlot:
    doc: strawberry.Private[dict[str, Any]]
    threshold: strawberry.Private[float]
    version_id: strawberry.ID
    execution_id: strawberry.ID | None = strawberry.field(
        description="The execution that ran the version's predict function (null: none ran)."
    )
    status: SlotStatusEnum
    error: str | None
    latency_ms: float | None = strawberry.field(
        description="From the prediction request to this slot's outcome being stored."
    )
    duration_ms: float | None = strawberry.field(description="The predict function's own time.")
    finished_at: datetime | None

    @strawberry.field(
        description="The predictions scoring at least the asset's minThreshold; allPredictions "
        "has the others too."
    )
    def predictions(self) -> list[AssetPrediction]:
        return [
            AssetPrediction.from_doc(p)
            for p in self.doc["predictions"]
            if p["confidence"] >= self.threshold
        ]

    @strawberry.field(description="Every prediction the function returned, kept for monitoring.")
    def all_predictions(self) -> list[AssetPrediction]:
        return [AssetPrediction.from_doc(p) for p in self.doc["predictions"]]

    @strawberry.field(description="The model version, while it exists.")
    async def version(
        self, info: strawberry.Info
    ) -> Annotated["ModelVersion", strawberry.lazy("schema.models")] | None:
        return await version_or_none(info, self.doc["versionId"])

    @classmethod
    def from_doc(cls, doc: dict[str, Any], threshold: float) -> "PredictionSlot":
        return cls(
            doc=doc,
            threshold=threshold,
            version_id=strawberry.ID(str(doc["versionId"])),
            execution_id=strawberry.ID(str(doc["executionId"])) if doc["executionId"] else None,
            status=SlotStatus(doc["status"]),
            error=doc["error"],
            latency_ms=doc["latencyMs"],
            duration_ms=doc["durationMs"],
            finished_at=doc["finishedAt"],
        )


@strawberry.type(
    description="An asset a deployment predicted on: the item, the champion's and the "
    "shadow's predictions, tags and metadata."
)
class PredictedAsset(Node):
    doc: strawberry.Private[dict[str, Any]]
    deployment_id: strawberry.ID
    item_id: strawberry.ID
    min_threshold: float = strawberry.field(
        description="The deployment's minThreshold when the asset was predicted."
    )
    tags: list[str]
    metadata: JSON
    champion: PredictionSlot
    shadow: PredictionSlot | None = strawberry.field(
        description="The shadow version's outcome, when the deployment had a shadow."
    )
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The item predicted on, while it exists.")
    async def item(
        self, info: strawberry.Info
    ) -> Annotated["Item", strawberry.lazy("schema.items")] | None:
        from schema.items import Item

        access = await info.context.access()
        found = await access.find_visible("items", self.doc["itemId"])
        return Item.from_doc(found) if found else None

    @strawberry.field
    async def creator(self, info: strawberry.Info) -> User | None:
        return await user_or_none(info, self.doc["creator"])

    @strawberry.field(description="The asset's review, once reviewed (final).")
    def review(
        self,
    ) -> Annotated["PredictionReview", strawberry.lazy("schema.deployment_feedback")] | None:
        from schema.deployment_feedback import review_of

        return review_of(self.doc)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "PredictedAsset":
        threshold = doc["minThreshold"]
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            doc=doc,
            deployment_id=strawberry.ID(str(doc["deploymentId"])),
            item_id=strawberry.ID(str(doc["itemId"])),
            min_threshold=threshold,
            tags=doc["tags"],
            metadata=doc["metadata"],
            champion=PredictionSlot.from_doc(doc["champion"], threshold),
            shadow=PredictionSlot.from_doc(doc["shadow"], threshold) if doc["shadow"] else None,
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


async def _settled(subscriber: Subscriber, asset: dict[str, Any]) -> dict[str, Any]:
    """The asset once the feed shows its champion's outcome."""
    while not deployment_predictions.is_settled(asset):
        item = await subscriber.next()
        if not isinstance(item, AccessChanged):
            asset = item
    return asset


@strawberry.type
class PredictedAssetQueries:
    @strawberry.field
    async def predicted_asset(self, info: strawberry.Info, id: strawberry.ID) -> PredictedAsset:
        access = await info.context.access()
        return PredictedAsset.from_doc(
            await deployment_predictions.get_predicted_asset(access, object_id(id))
        )


@strawberry.type
class PredictedAssetMutations:
    @strawberry.mutation(
        description="Run the deployment's champion (and its shadow, which never delays the "
        "answer) on an item of the project or an uploaded file (stored into the target "
        "dataset); returns the predicted asset once the champion's predictions are in, or as "
        "it is when `timeout` seconds have passed (its champion slot still pending)."
    )
    async def predict(
        self,
        info: strawberry.Info,
        deployment_id: strawberry.ID,
        item_id: strawberry.ID | None = None,
        file: Upload | None = None,
        tags: list[str] | None = None,
        metadata: JSON | None = None,
        wait_s: Annotated[
            float,
            strawberry.argument(
                name="timeout", description="Seconds to wait for the champion (at most 300)."
            ),
        ] = 30.0,
    ) -> PredictedAsset:
        context = info.context
        access = await context.access()
        data: dict[str, Any] = {"itemId": item_id, "timeout": wait_s}
        if tags is not None:
            data["tags"] = tags
        if metadata is not None:
            data["metadata"] = metadata
        upload = (file.file, file.content_type, file.filename or "") if file else None
        feed = context.feed
        await feed.ready()
        asset_id = ObjectId()
        async with feed.subscribe(
            "predicted_assets", lambda doc: doc["_id"] == asset_id
        ) as subscriber:
            asset, request = await deployment_predictions.start_predict(
                access,
                object_id(deployment_id, "deploymentId"),
                data,
                upload,
                context.enqueue_execution,
                asset_id,
            )
            with contextlib.suppress(TimeoutError):
                asset = await asyncio.wait_for(_settled(subscriber, asset), request.timeout)
        if not deployment_predictions.is_settled(asset):
            asset = await deployment_predictions.get_predicted_asset(access, asset_id)
        return PredictedAsset.from_doc(asset)

    @strawberry.mutation(
        description="Run the deployment's champion (and shadow) on every item of its project "
        "that a DQL `filter` matches, as a Command: one predicted asset per item, each with "
        "`tags` and `metadata`."
    )
    async def predict_batch(
        self,
        info: strawberry.Info,
        deployment_id: strawberry.ID,
        filter: JSON | None = None,
        tags: list[str] | None = None,
        metadata: JSON | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Command:
        access = await info.context.access()
        data = {
            name: value
            for name, value in (("filter", filter), ("tags", tags), ("metadata", metadata))
            if value is not None
        }
        command = await deployment_batches.start_predict_batch(
            access,
            object_id(deployment_id, "deploymentId"),
            data,
            info.context.enqueue_command,
            idempotency_key,
        )
        return Command.from_doc(command)
