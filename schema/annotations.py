"""Annotations: the graph's view of them, the per-item listing, and their mutations."""

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from bson import json_util
from strawberry.scalars import JSON

from resolvers import annotations
from resolvers.annotation_shapes import DTLPY_TYPES, AnnotationType
from resolvers.inputs import object_id
from schema.enums import AnnotationStatusEnum, AnnotationTypeEnum
from schema.inputs import as_input
from schema.relay import Node
from schema.selections import projection

if TYPE_CHECKING:
    from schema.items import Item


@strawberry.type(description="Who or what made an automated annotation, and how sure it was.")
class ModelInfo:
    name: str
    model_id: str | None
    confidence: float


@strawberry.type(description="A label on an item, with its shape.")
class Annotation(Node):
    item_id: strawberry.Private[Any]
    version_id: strawberry.Private[Any]
    dataset_id: strawberry.ID
    type: AnnotationTypeEnum
    label: str
    coordinates: JSON | None = strawberry.field(
        description="The shape, as documented per type (null for classifications)."
    )
    attributes: JSON
    status: AnnotationStatusEnum
    automated: bool
    parent_id: strawberry.ID | None
    object_id: str | None
    frames: JSON = strawberry.field(description="[{frame, coordinates, fixed, objectVisible}]")
    model_info: ModelInfo | None
    metadata: JSON
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def item(
        self, info: strawberry.Info
    ) -> Annotated["Item", strawberry.lazy("schema.items")]:
        from schema.items import Item

        if self.version_id is not None:
            key = (self.version_id, self.item_id)
            return Item.from_doc(await info.context.loaders.version_items.load(key))
        return Item.from_doc(await info.context.loaders.items.load(self.item_id))

    @classmethod
    def from_doc(cls, doc: dict[str, Any], version_id: Any = None) -> "Annotation":
        """From a whole document, or one read with only the fields a query selected
        (DOCUMENT_FIELDS): the others are left None, and nothing reads them. With
        `version_id`: an annotation as that dataset version holds it (its item too)."""
        model = doc.get("modelInfo")
        kind, status, parent = doc.get("type"), doc.get("status"), doc.get("parentId")
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            item_id=doc["itemId"],
            version_id=version_id,
            dataset_id=doc.get("datasetId") and strawberry.ID(str(doc["datasetId"])),
            type=kind and ANNOTATION_TYPES[kind],
            label=doc.get("label"),
            coordinates=doc.get("coordinates"),
            attributes=doc.get("attributes"),
            status=status and ANNOTATION_STATUSES[status],
            automated=doc.get("automated"),
            parent_id=strawberry.ID(str(parent)) if parent else None,
            object_id=doc.get("objectId"),
            frames=doc.get("frames"),
            model_info=ModelInfo(
                name=model["name"], model_id=model["modelId"], confidence=model["confidence"]
            )
            if model
            else None,
            metadata=doc.get("metadata"),
            created_at=doc.get("createdAt"),
            updated_at=doc.get("updatedAt"),
        )


ANNOTATION_TYPES = {member.value: member for member in AnnotationTypeEnum}
ANNOTATION_STATUSES = {member.value: member for member in AnnotationStatusEnum}
DOCUMENT_FIELDS: dict[str, tuple[str, ...]] = {
    "id": (),
    "item": (),
    "datasetId": ("datasetId",),
    "type": ("type",),
    "label": ("label",),
    "coordinates": ("coordinates",),
    "attributes": ("attributes",),
    "status": ("status",),
    "automated": ("automated",),
    "parentId": ("parentId",),
    "objectId": ("objectId",),
    "frames": ("frames",),
    "modelInfo": ("modelInfo",),
    "metadata": ("metadata",),
    "createdAt": ("createdAt",),
    "updatedAt": ("updatedAt",),
}
"""The document fields each GraphQL field of Annotation is built from (`_id` always comes)."""


async def item_annotations(info: strawberry.Info, item_id: Any, dql: Any) -> list[Annotation]:
    """An item's annotations through the per-request loader: the items of one page cost one
    query together, whatever their number."""
    read = annotations.read_of(dql)
    query = json_util.dumps(read.query, sort_keys=True)
    fields = projection(info, DOCUMENT_FIELDS, "itemId")
    if fields is not None:
        fields = tuple(sorted({*fields, *(field for field, _ in read.sort)}))
    docs = await info.context.loaders.annotations_of_item.load((item_id, query, fields))
    return [Annotation.from_doc(doc) for doc in annotations.arrange(docs, read)]


@strawberry.input
class ModelInfoInput:
    name: str
    model_id: str | None = strawberry.UNSET
    confidence: float


@strawberry.input
class FrameInput:
    frame: int
    coordinates: JSON | None = strawberry.UNSET
    fixed: bool | None = strawberry.UNSET
    object_visible: bool | None = strawberry.UNSET


AnnotationTypeInput = strawberry.enum(
    Enum(
        "AnnotationTypeInput",
        {
            **{member.name: member.value for member in AnnotationType},
            **{
                name.upper(): strawberry.enum_value(
                    name, description=f"dtlpy's name for {loom.name}"
                )
                for name, loom in DTLPY_TYPES.items()
                if loom is not None and name != loom
            },
        },
    ),
    description="An annotation type to create: Loom's, or dtlpy's name for one of them "
    "(CLASS, SEGMENT, BINARY, CUBE). dtlpy's shapes that Loom lacks (cube_3d, subtitle, "
    "text_mark, gis, …) have no value here.",
)


@strawberry.input
class AnnotationInput:
    item_id: strawberry.ID
    type: AnnotationTypeInput
    label: str
    coordinates: JSON | None = strawberry.UNSET
    attributes: JSON | None = strawberry.UNSET
    status: AnnotationStatusEnum | None = strawberry.UNSET
    automated: bool | None = strawberry.UNSET
    parent_id: strawberry.ID | None = strawberry.UNSET
    object_id: str | None = strawberry.UNSET
    frames: list[FrameInput] | None = strawberry.UNSET
    model_info: ModelInfoInput | None = strawberry.UNSET
    metadata: JSON | None = strawberry.UNSET


@strawberry.input
class AnnotationChangesInput:
    label: str | None = strawberry.UNSET
    coordinates: JSON | None = strawberry.UNSET
    attributes: JSON | None = strawberry.UNSET
    status: AnnotationStatusEnum | None = strawberry.UNSET
    frames: list[FrameInput] | None = strawberry.UNSET
    metadata: JSON | None = strawberry.UNSET


@strawberry.type
class AnnotationQueries:
    @strawberry.field
    async def annotation(self, info: strawberry.Info, id: strawberry.ID) -> Annotation:
        access = await info.context.access()
        return Annotation.from_doc(await annotations.get_annotation(access, object_id(id)))


@strawberry.type
class AnnotationMutations:
    @strawberry.mutation
    async def create_annotation(self, info: strawberry.Info, input: AnnotationInput) -> Annotation:
        access = await info.context.access()
        (doc,) = await annotations.create_annotations(access, [as_input(input)])
        return Annotation.from_doc(doc)

    @strawberry.mutation(
        description="Create up to 10,000 annotations in one request: all of them or none."
    )
    async def create_annotations(
        self, info: strawberry.Info, inputs: list[AnnotationInput]
    ) -> list[Annotation]:
        access = await info.context.access()
        docs = await annotations.create_annotations(access, [as_input(i) for i in inputs])
        return [Annotation.from_doc(doc) for doc in docs]

    @strawberry.mutation
    async def update_annotation(
        self, info: strawberry.Info, id: strawberry.ID, input: AnnotationChangesInput
    ) -> Annotation:
        access = await info.context.access()
        doc = await annotations.update_annotation(access, object_id(id), as_input(input))
        return Annotation.from_doc(doc)

    @strawberry.mutation(description="Delete annotations (and their children): all or none.")
    async def delete_annotations(self, info: strawberry.Info, ids: list[strawberry.ID]) -> int:
        access = await info.context.access()
        return await annotations.delete_annotations(access, [object_id(i) for i in ids])
