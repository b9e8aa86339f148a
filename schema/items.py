"""Items: uploads (GraphQL multipart spec), metadata, moves, deletion, duplicates, listing."""

import json
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from resolvers import annotations, items
from resolvers.inputs import object_id
from schema.annotations import Annotation, item_annotations
from schema.datasets import Dataset
from schema.idempotency import IdempotencyKey
from schema.inputs import as_input
from schema.relay import Connection, Node, page_request

if TYPE_CHECKING:
    from schema.model_runs import Prediction


@strawberry.enum
class ItemOrderField(Enum):
    FILENAME = "filename"
    NAME = "name"
    CREATED_AT = "createdAt"
    UPDATED_AT = "updatedAt"
    SIZE = "size"


@strawberry.enum
class SortDirection(Enum):
    ASC = 1
    DESC = -1


@strawberry.input
class ItemOrder:
    field: ItemOrderField
    direction: SortDirection = SortDirection.ASC


@strawberry.type(description="A file in a dataset, with its metadata.")
class Item(Node):
    id_value: strawberry.Private[Any]
    dataset_id: strawberry.Private[Any]
    version_id: strawberry.Private[Any]
    held_annotations: strawberry.Private[list[dict[str, Any]] | None]
    name: str
    dir: str
    filename: str = strawberry.field(description="dir + name: the item's path in the dataset.")
    mimetype: str
    size: int
    width: int | None
    height: int | None
    sha256: str
    metadata: JSON = strawberry.field(description="{user: your JSON, system: Loom's}.")
    tags: list[str]
    description: str
    hidden: bool
    reference_id: str | None = strawberry.field(
        description="Your own key for the item, unique in its dataset."
    )
    annotated: bool
    annotations_count: int
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="Where to GET the file (with the same Bearer key).")
    def download_url(self) -> str:
        if self.version_id is not None:
            return f"/versions/{self.version_id}/items/{self.id}/file"
        return f"/items/{self.id}/file"

    @strawberry.field(
        description="The item's annotations, optionally filtered by DQL; an item read from a "
        "dataset version has the annotations that version holds."
    )
    async def annotations(
        self, info: strawberry.Info, filter: JSON | None = None
    ) -> list[Annotation]:
        if self.held_annotations is not None:
            held = annotations.held(self.held_annotations, filter)
            return [Annotation.from_doc(doc, self.version_id) for doc in held]
        return await item_annotations(info, self.id_value, filter)

    @strawberry.field(description="The item's predictions in a model run.")
    async def predictions(
        self, info: strawberry.Info, model_run_id: strawberry.ID
    ) -> list[Annotated["Prediction", strawberry.lazy("schema.model_runs")]]:
        from schema.model_runs import item_predictions

        return await item_predictions(info, object_id(model_run_id, "modelRunId"), self.id_value)

    @strawberry.field
    async def dataset(self, info: strawberry.Info) -> Dataset:
        return Dataset.from_doc(await info.context.loaders.datasets.load(self.dataset_id))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Item":
        """From a live item, or from a dataset version's copy of one (which holds the item's
        id under `itemId`)."""
        version_id = doc.get("versionId")
        item_id = doc["itemId"] if version_id is not None else doc["_id"]
        return cls(
            id=strawberry.ID(str(item_id)),
            id_value=item_id,
            dataset_id=doc["datasetId"],
            version_id=version_id,
            held_annotations=doc["annotations"] if version_id is not None else None,
            name=doc["name"],
            dir=doc["dir"],
            filename=doc["filename"],
            mimetype=doc["mimetype"],
            size=doc["size"],
            width=doc["width"],
            height=doc["height"],
            sha256=doc["sha256"],
            metadata=doc["metadata"],
            tags=doc["tags"],
            description=doc["description"],
            hidden=doc["hidden"],
            reference_id=doc.get("referenceId"),
            annotated=doc["annotated"],
            annotations_count=doc["annotationsCount"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.type(description="Items sharing one content hash.")
class DuplicateGroup:
    sha256: str
    count: int
    item_ids: list[strawberry.ID]


async def list_items(
    info: strawberry.Info,
    dataset_id: Any,
    dql: Any,
    first: int,
    after: str | None,
    order_by: ItemOrder | None,
    source: items.ItemSource = items.LIVE,
) -> Connection[Item]:
    """A page of a dataset's items, or (`source` IN_VERSION) of a dataset version's."""
    sort = ((order_by.field.value, order_by.direction.value),) if order_by else None
    dql_json = json.dumps(dql, sort_keys=True) if dql is not None else None
    arguments = (dql_json, page_request(info, first, after), sort, source)
    page = await info.context.loaders.items_of_dataset.load((dataset_id, arguments))
    return Connection.of(page, Item.from_doc)


async def duplicate_groups(
    info: strawberry.Info, dataset_id: Any, first: int
) -> list[DuplicateGroup]:
    access = await info.context.access()
    page_request(info, first, None)
    groups = await items.duplicates(access, dataset_id, first)
    return [
        DuplicateGroup(
            sha256=g["_id"],
            count=g["count"],
            item_ids=[strawberry.ID(str(i)) for i in g["itemIds"]],
        )
        for g in groups
    ]


@strawberry.input
class ItemInput:
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="Defaults to the uploaded file's name."
    )
    dir: str | None = strawberry.UNSET
    metadata: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="Stored as metadata.user."
    )
    tags: list[str] | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    hidden: bool | None = strawberry.UNSET
    reference_id: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Your own key for the item, unique in the dataset (Nucleus' reference id).",
    )


@strawberry.input
class ItemChangesInput:
    name: str | None = strawberry.UNSET
    dir: str | None = strawberry.UNSET
    metadata: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="Replaces metadata.user."
    )
    tags: list[str] | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    hidden: bool | None = strawberry.UNSET
    reference_id: str | None = strawberry.UNSET


@strawberry.type
class ItemQueries:
    @strawberry.field
    async def item(self, info: strawberry.Info, id: strawberry.ID) -> Item:
        access = await info.context.access()
        return Item.from_doc(await items.get_item(access, object_id(id)))


@strawberry.type
class ItemMutations:
    @strawberry.mutation(description="Upload a file as a new item (GraphQL multipart request).")
    async def upload_item(
        self,
        info: strawberry.Info,
        dataset_id: strawberry.ID,
        file: Upload,
        input: ItemInput | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Item:
        access = await info.context.access()
        data = as_input(input) if input else {}
        data.setdefault("name", file.filename or "")
        doc = await items.upload_item(
            access,
            object_id(dataset_id, "datasetId"),
            file.file,
            file.content_type,
            data,
            idempotency_key=idempotency_key,
        )
        return Item.from_doc(doc)

    @strawberry.mutation
    async def update_item(
        self, info: strawberry.Info, id: strawberry.ID, input: ItemChangesInput
    ) -> Item:
        access = await info.context.access()
        return Item.from_doc(await items.update_item(access, object_id(id), as_input(input)))

    @strawberry.mutation(description="Move items of a dataset into a directory (all or none).")
    async def move_items(
        self,
        info: strawberry.Info,
        dataset_id: strawberry.ID,
        item_ids: list[strawberry.ID],
        dir: str,
    ) -> int:
        access = await info.context.access()
        ids = [object_id(i, "itemIds") for i in item_ids]
        return await items.move_items(access, object_id(dataset_id, "datasetId"), ids, dir)

    @strawberry.mutation(description="Delete items with their annotations (all or none).")
    async def delete_items(
        self, info: strawberry.Info, dataset_id: strawberry.ID, item_ids: list[strawberry.ID]
    ) -> int:
        access = await info.context.access()
        ids = [object_id(i, "itemIds") for i in item_ids]
        return await items.delete_items(access, object_id(dataset_id, "datasetId"), ids)
