"""Statistics of a dataset or a dataset version (resolvers/versions/stats.py)."""

from typing import Any

import strawberry
from strawberry.scalars import JSON

from resolvers.items import ItemSource
from resolvers.versions.stats import stats


@strawberry.type(description="Annotations of one label and type.")
class LabelCount:
    label: str
    type: str
    count: int


@strawberry.type(description="Items holding exactly `objects` annotations.")
class ObjectsPerItem:
    objects: int
    items: int


@strawberry.type(description="A histogram bucket: low <= value < high (high null: no bound).")
class Bucket:
    low: float
    high: float | None
    count: int


@strawberry.type(description="Items of one image size (null: not an image, or unknown).")
class ImageSize:
    width: int | None
    height: int | None
    count: int


@strawberry.type(description="Annotations whose attribute `key` holds `value`.")
class AttributeCount:
    key: str
    value: JSON
    count: int


@strawberry.type(description="What a dataset (or version) holds, computed by MongoDB.")
class DatasetStats:
    items_count: int
    annotated_items_count: int
    annotations_count: int
    labels: list[LabelCount] = strawberry.field(description="Per label and type, by label.")
    objects_per_item: list[ObjectsPerItem]
    box_areas: list[Bucket] = strawberry.field(description="Box areas in square pixels.")
    box_aspect_ratios: list[Bucket] = strawberry.field(description="Box width / height.")
    image_sizes: list[ImageSize] = strawberry.field(description="The 100 most frequent.")
    attributes: list[AttributeCount] = strawberry.field(
        description="The 100 most frequent attribute values of annotations."
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "DatasetStats":
        return cls(
            items_count=doc["itemsCount"],
            annotated_items_count=doc["annotatedItemsCount"],
            annotations_count=doc["annotationsCount"],
            labels=[LabelCount(**g) for g in doc["labels"]],
            objects_per_item=[ObjectsPerItem(**g) for g in doc["objectsPerItem"]],
            box_areas=[Bucket(**b) for b in doc["boxAreas"]],
            box_aspect_ratios=[Bucket(**b) for b in doc["boxAspectRatios"]],
            image_sizes=[ImageSize(**g) for g in doc["imageSizes"]],
            attributes=[AttributeCount(**g) for g in doc["attributes"]],
        )


async def stats_of(info: strawberry.Info, source: ItemSource, parent_id: Any) -> DatasetStats:
    """The figures of a dataset or version the caller has already been shown."""
    access = await info.context.access()
    return DatasetStats.from_doc(await stats(access.db, source, parent_id))
