"""Datasets: ontology, directories, counters, and the mutations over them."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers import datasets
from resolvers.inputs import object_id
from schema.idempotency import IdempotencyKey
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, page_request

if TYPE_CHECKING:
    from schema.dataset_stats import DatasetStats
    from schema.dataset_versions import DatasetVersion
    from schema.items import DuplicateGroup, Item, ItemOrder
    from schema.projects import Project


@strawberry.type(description="A label of the dataset's ontology, with its children.")
class Label:
    name: str
    color: str
    display_label: str
    attributes: JSON
    children: list["Label"]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Label":
        return cls(
            name=doc["name"],
            color=doc["color"],
            display_label=doc["displayLabel"],
            attributes=doc["attributes"],
            children=[cls.from_doc(child) for child in doc["children"]],
        )


@strawberry.type(description="A collection of items and their annotations in a project.")
class Dataset(Node):
    project_id: strawberry.Private[Any]
    name: str
    description: str
    readonly: bool
    items_count: int
    annotations_count: int
    directories: list[str]
    labels: list[Label]
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def project(
        self, info: strawberry.Info
    ) -> Annotated["Project", strawberry.lazy("schema.projects")]:
        from resolvers.projects import get_project
        from schema.projects import Project

        access = await info.context.access()
        return Project.from_doc(await get_project(access, self.project_id))

    @strawberry.field(description="Items in this dataset, filtered by DQL, in keyset pages.")
    async def items(
        self,
        info: strawberry.Info,
        filter: JSON | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        order_by: Annotated["ItemOrder", strawberry.lazy("schema.items")] | None = None,
    ) -> Connection[Annotated["Item", strawberry.lazy("schema.items")]]:
        from schema.items import list_items

        return await list_items(info, object_id(self.id), filter, first, after, order_by)

    @strawberry.field(description="The dataset's versions (immutable snapshots), newest first.")
    async def versions(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["DatasetVersion", strawberry.lazy("schema.dataset_versions")]]:
        from schema.dataset_versions import dataset_versions

        return await dataset_versions(info, object_id(self.id), first, after)

    @strawberry.field(description="Counts and histograms of its items and annotations.")
    async def stats(
        self, info: strawberry.Info
    ) -> Annotated["DatasetStats", strawberry.lazy("schema.dataset_stats")]:
        from resolvers.items import LIVE
        from schema.dataset_stats import stats_of

        return await stats_of(info, LIVE, object_id(self.id))

    @strawberry.field(description="Groups of items with identical content, largest first.")
    async def duplicates(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE
    ) -> list[Annotated["DuplicateGroup", strawberry.lazy("schema.items")]]:
        from schema.items import duplicate_groups

        return await duplicate_groups(info, object_id(self.id), first)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Dataset":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            project_id=doc["projectId"],
            name=doc["name"],
            description=doc["description"],
            readonly=doc["readonly"],
            items_count=doc["itemsCount"],
            annotations_count=doc["annotationsCount"],
            directories=sorted(doc["directories"]),
            labels=[Label.from_doc(label) for label in doc["labels"]],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


async def project_datasets(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[Dataset]:
    key = (project_id, page_request(info, first, after))
    page = await info.context.loaders.datasets_of_project.load(key)
    return Connection.of(page, Dataset.from_doc)


@strawberry.input
class DatasetInput:
    name: str
    description: str | None = strawberry.UNSET
    labels: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="The ontology: [{name, color, displayLabel, children, attributes}].",
    )


@strawberry.input
class DatasetChangesInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    readonly: bool | None = strawberry.UNSET


@strawberry.input
class LabelChangesInput:
    color: str | None = strawberry.UNSET
    display_label: str | None = strawberry.UNSET
    attributes: JSON | None = strawberry.UNSET


@strawberry.type
class DatasetQueries:
    @strawberry.field
    async def dataset(self, info: strawberry.Info, id: strawberry.ID) -> Dataset:
        access = await info.context.access()
        return Dataset.from_doc(await datasets.get_dataset(access, object_id(id)))


@strawberry.type
class DatasetMutations:
    @strawberry.mutation
    async def create_dataset(
        self,
        info: strawberry.Info,
        project_id: strawberry.ID,
        input: DatasetInput,
        idempotency_key: IdempotencyKey = None,
    ) -> Dataset:
        access = await info.context.access()
        doc = await datasets.create_dataset(
            access,
            object_id(project_id, "projectId"),
            as_input(input),
            idempotency_key=idempotency_key,
        )
        return Dataset.from_doc(doc)

    @strawberry.mutation(description="Rename, describe, or make readonly (or writable again).")
    async def update_dataset(
        self, info: strawberry.Info, id: strawberry.ID, input: DatasetChangesInput
    ) -> Dataset:
        access = await info.context.access()
        doc = await datasets.update_dataset(access, object_id(id), as_input(input))
        return Dataset.from_doc(doc)

    @strawberry.mutation(
        description="Delete a dataset, its items, annotations and unshared files. "
        "`confirmName` must be the dataset's name."
    )
    async def delete_dataset(
        self, info: strawberry.Info, id: strawberry.ID, confirm_name: str
    ) -> bool:
        access = await info.context.access()
        await datasets.delete_dataset(access, object_id(id), confirm_name)
        return True

    @strawberry.mutation(description="Add top-level labels (with their children).")
    async def add_labels(
        self, info: strawberry.Info, dataset_id: strawberry.ID, labels: JSON
    ) -> Dataset:
        access = await info.context.access()
        if not isinstance(labels, list):
            labels = [labels]
        doc = await datasets.add_labels(access, object_id(dataset_id, "datasetId"), labels)
        return Dataset.from_doc(doc)

    @strawberry.mutation(description="Change a label, addressed by its path (`vehicle.car`).")
    async def update_label(
        self,
        info: strawberry.Info,
        dataset_id: strawberry.ID,
        path: str,
        input: LabelChangesInput,
    ) -> Dataset:
        access = await info.context.access()
        doc = await datasets.update_label(
            access, object_id(dataset_id, "datasetId"), path, as_input(input)
        )
        return Dataset.from_doc(doc)

    @strawberry.mutation(description="Delete labels (and their children) by path.")
    async def delete_labels(
        self, info: strawberry.Info, dataset_id: strawberry.ID, paths: list[str]
    ) -> Dataset:
        access = await info.context.access()
        doc = await datasets.delete_labels(access, object_id(dataset_id, "datasetId"), paths)
        return Dataset.from_doc(doc)

    @strawberry.mutation(description="Create a directory (and its parents).")
    async def create_directory(
        self, info: strawberry.Info, dataset_id: strawberry.ID, path: str
    ) -> Dataset:
        access = await info.context.access()
        doc = await datasets.create_directory(access, object_id(dataset_id, "datasetId"), path)
        return Dataset.from_doc(doc)
