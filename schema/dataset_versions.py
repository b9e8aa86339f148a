"""Dataset versions: immutable snapshots of a dataset, read with the same item types."""

import json
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers.inputs import object_id
from resolvers.items import IN_VERSION
from resolvers.versions import comparison, forks, lifecycle, snapshots, splits
from schema.commands import Command
from schema.dataset_stats import DatasetStats, stats_of
from schema.datasets import Dataset, Label
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, page_request

if TYPE_CHECKING:
    from schema.items import Item, ItemOrder


@strawberry.enum
class DatasetVersionStatus(Enum):
    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"


@strawberry.type(description="Picsellia's label repartition: labels and their counts.")
class LabelRepartition:
    x: list[str] = strawberry.field(description="The labels, by name.")
    y: list[int] = strawberry.field(description="Annotations of each label, in x's order.")


@strawberry.type(description="One named subset of a version's split.")
class SplitSubset:
    version_id: strawberry.Private[Any]
    name: str
    ratio: float
    items_count: int
    repartition: LabelRepartition

    @strawberry.field(description="The DQL that selects this subset among the version's items.")
    def filter(self) -> JSON:
        return {"split": self.name}

    @strawberry.field(description="The subset's items, in keyset pages.")
    async def items(
        self,
        info: strawberry.Info,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Annotated["Item", strawberry.lazy("schema.items")]]:
        from schema.items import list_items

        subset = {"split": self.name}
        return await list_items(
            info, self.version_id, subset, first, after, None, source=IN_VERSION
        )


@strawberry.enum
class StratifyBy(Enum):
    LABEL = "label"
    NONE = "none"


@strawberry.type(description="How a version was split: the same seed gives the same subsets.")
class VersionSplit:
    seed: str = strawberry.field(description="The seed (a 64-bit integer, as a string).")
    stratify_by: StratifyBy
    subsets: list[SplitSubset]
    created_at: datetime

    @classmethod
    def from_doc(cls, version_id: Any, doc: dict[str, Any]) -> "VersionSplit":
        return cls(
            seed=str(doc["seed"]),
            stratify_by=StratifyBy(doc["stratifyBy"]),
            subsets=[
                SplitSubset(
                    version_id=version_id,
                    name=subset["name"],
                    ratio=subset["ratio"],
                    items_count=subset["itemsCount"],
                    repartition=LabelRepartition(**subset["repartition"]),
                )
                for subset in doc["subsets"]
            ],
            created_at=doc["at"],
        )


@strawberry.type(
    description="A dataset's items and annotations as they were at one moment: immutable."
)
class DatasetVersion(Node):
    dataset_id: strawberry.Private[Any]
    command_id: strawberry.Private[Any]
    name: str
    description: str
    status: DatasetVersionStatus
    error: str | None
    filter: JSON | None = strawberry.field(description="The DQL that chose its items, if any.")
    items_count: int
    annotations_count: int
    labels: list[Label] = strawberry.field(description="The dataset's ontology at that moment.")
    snapshot_at: datetime | None = strawberry.field(
        description="The moment the version holds the dataset as of (its request's commit)."
    )
    split: VersionSplit | None = strawberry.field(
        description="Its named subsets, once splitDatasetVersion has made them."
    )
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def dataset(self, info: strawberry.Info) -> Dataset:
        return Dataset.from_doc(await info.context.loaders.datasets.load(self.dataset_id))

    @strawberry.field(description="The Command that took (or is taking) the snapshot.")
    async def command(self, info: strawberry.Info) -> Command:
        return Command.from_doc(await info.context.loaders.commands.load(self.command_id))

    @strawberry.field(
        description="The version's items as they were, filtered by DQL (`split` names a "
        "split's subset), in keyset pages; their annotations are the version's."
    )
    async def items(
        self,
        info: strawberry.Info,
        filter: JSON | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        order_by: Annotated["ItemOrder", strawberry.lazy("schema.items")] | None = None,
    ) -> Connection[Annotated["Item", strawberry.lazy("schema.items")]]:
        from schema.items import list_items

        return await list_items(
            info, object_id(self.id), filter, first, after, order_by, source=IN_VERSION
        )

    @strawberry.field(description="Counts and histograms of what the version holds.")
    async def stats(self, info: strawberry.Info) -> DatasetStats:
        return await stats_of(info, IN_VERSION, object_id(self.id))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "DatasetVersion":
        moment = doc["snapshotTime"]
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            dataset_id=doc["datasetId"],
            command_id=doc["commandId"],
            name=doc["name"],
            description=doc["description"],
            status=DatasetVersionStatus(doc["status"]),
            error=doc["error"],
            filter=json.loads(doc["filter"]) if doc["filter"] else None,
            items_count=doc["itemsCount"],
            annotations_count=doc["annotationsCount"],
            labels=[Label.from_doc(label) for label in doc["labels"]],
            split=VersionSplit.from_doc(doc["_id"], doc["split"]) if doc["split"] else None,
            snapshot_at=datetime.fromtimestamp(moment.time, UTC) if moment else None,
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


async def dataset_versions(
    info: strawberry.Info, dataset_id: Any, first: int, after: str | None
) -> Connection[DatasetVersion]:
    key = (dataset_id, page_request(info, first, after))
    page = await info.context.loaders.versions_of_dataset.load(key)
    return Connection.of(page, DatasetVersion.from_doc)


@strawberry.input
class DatasetVersionInput:
    name: str
    description: str | None = strawberry.UNSET
    filter: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="DQL over the dataset's items (a filter or a whole query, joins too): "
        "the version holds only these. Without it, every item.",
    )


@strawberry.input
class DatasetVersionChangesInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input
class SubsetRatioInput:
    name: str
    ratio: float


@strawberry.input
class SplitInput:
    ratios: list[SubsetRatioInput] = strawberry.field(
        description="Named shares adding up to 1, e.g. train 0.7, val 0.2, test 0.1."
    )
    seed: str = strawberry.field(description="A whole number from 0 to 2^63 - 1 (a string).")
    stratify_by: StratifyBy | None = strawberry.UNSET


ForkTarget = strawberry.enum(forks.ForkTarget, name="ForkTarget")


@strawberry.input
class ForkInput:
    name: str = strawberry.field(description="The new dataset's (or version's) name.")
    description: str | None = strawberry.UNSET
    with_annotations: bool | None = strawberry.UNSET
    with_tags: bool | None = strawberry.UNSET
    with_metadata: bool | None = strawberry.UNSET
    with_labels: bool | None = strawberry.UNSET
    into: ForkTarget | None = strawberry.field(
        default=strawberry.UNSET,
        description="DATASET (the default): a new editable dataset; VERSION: a new version of "
        "the same dataset.",
    )


@strawberry.type(description="Items of one kind of change, and the first of their ids.")
class ItemChanges:
    count: int
    item_ids: list[strawberry.ID]


@strawberry.type(description="Items changed from one version to the other.")
class ItemComparison:
    added: ItemChanges
    removed: ItemChanges
    changed: ItemChanges = strawberry.field(
        description="Present in both, with a field or an annotation that differs."
    )


@strawberry.type(description="Annotations added, removed and changed (of one label, or all).")
class AnnotationChanges:
    label: str | None
    added: int
    removed: int
    changed: int


@strawberry.type(description="What changed from version `a` to version `b`.")
class VersionComparison:
    items: ItemComparison
    annotations: AnnotationChanges
    labels: list[AnnotationChanges] = strawberry.field(description="Per label, by name.")

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "VersionComparison":
        def changes(kind: str) -> ItemChanges:
            found = doc["items"][kind]
            ids = [strawberry.ID(str(i)) for i in found["itemIds"]]
            return ItemChanges(count=found["count"], item_ids=ids)

        return cls(
            items=ItemComparison(
                added=changes("added"), removed=changes("removed"), changed=changes("changed")
            ),
            annotations=AnnotationChanges(label=None, **doc["annotations"]),
            labels=[AnnotationChanges(**per_label) for per_label in doc["labels"]],
        )


@strawberry.type
class DatasetVersionQueries:
    @strawberry.field
    async def dataset_version(self, info: strawberry.Info, id: strawberry.ID) -> DatasetVersion:
        access = await info.context.access()
        return DatasetVersion.from_doc(await lifecycle.get_version(access, object_id(id)))

    @strawberry.field(
        description="Items and annotations added, removed and changed from version a to b "
        "(two versions of one dataset); `first` item ids are listed per kind."
    )
    async def compare_dataset_versions(
        self, info: strawberry.Info, a: strawberry.ID, b: strawberry.ID, first: int = 100
    ) -> VersionComparison:
        access = await info.context.access()
        page_request(info, first, None)
        found = await comparison.compare(access, object_id(a, "a"), object_id(b, "b"), first)
        return VersionComparison.from_doc(found)


@strawberry.type
class DatasetVersionMutations:
    @strawberry.mutation(
        description="Snapshot a dataset's items (those matching `filter`) and their "
        "annotations as they are now. A worker copies them: follow `command` (or "
        "`commandUpdated`); the version is `ready` when it succeeds."
    )
    async def create_dataset_version(
        self, info: strawberry.Info, dataset_id: strawberry.ID, input: DatasetVersionInput
    ) -> DatasetVersion:
        access = await info.context.access()
        doc = await snapshots.create_version(
            access,
            object_id(dataset_id, "datasetId"),
            as_input(input),
            info.context.enqueue_command,
        )
        return DatasetVersion.from_doc(doc)

    @strawberry.mutation(description="Rename or describe a version (its data never changes).")
    async def update_dataset_version(
        self, info: strawberry.Info, id: strawberry.ID, input: DatasetVersionChangesInput
    ) -> DatasetVersion:
        access = await info.context.access()
        doc = await lifecycle.update_version(access, object_id(id), as_input(input))
        return DatasetVersion.from_doc(doc)

    @strawberry.mutation(
        description="Split a version into named subsets: the same seed and version always "
        "give the same split; stratified by label, each label keeps its share within one item."
    )
    async def split_dataset_version(
        self, info: strawberry.Info, id: strawberry.ID, input: SplitInput
    ) -> DatasetVersion:
        access = await info.context.access()
        doc = await splits.split_version(access, object_id(id), as_input(input))
        return DatasetVersion.from_doc(doc)

    @strawberry.mutation(
        description="Fork a version into a new, editable dataset of the project (Picsellia's "
        "fork) or a new version of its dataset: with or without its annotations, tags, "
        "metadata and ontology. Returns the Command; the dataset is readonly (the version "
        "creating) until it succeeds."
    )
    async def fork_dataset_version(
        self, info: strawberry.Info, id: strawberry.ID, input: ForkInput
    ) -> Command:
        access = await info.context.access()
        doc = await forks.start_fork(
            access, object_id(id), as_input(input), info.context.enqueue_command
        )
        return Command.from_doc(doc)

    @strawberry.mutation(
        description="Delete a version and its copies; refused while a model's subset uses it."
    )
    async def delete_dataset_version(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await lifecycle.delete_version(access, object_id(id))
        return True
