"""Models and their versions: the types, queries and mutations over resolvers/models.py."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from resolvers import models
from resolvers.errors import NotFound
from resolvers.inputs import object_id
from resolvers.models import ModelStatus
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, Node, optional_id, page_request
from schema.users import User, load_user

if TYPE_CHECKING:
    from schema.dataset_versions import DatasetVersion
    from schema.datasets import Dataset
    from schema.model_runs import ModelRun
    from schema.projects import Project
    from schema.services import Service

ModelStatusEnum = strawberry.enum(
    ModelStatus,
    name="ModelStatus",
    description="created | training | trained | deployed | failed",
)


@strawberry.type(
    description="A named DQL filter over items (e.g. train, validation), of a dataset version "
    "when it names one."
)
class ModelSubset:
    name: str
    filter: JSON
    dataset_version_id: strawberry.ID | None

    @strawberry.field(description="The dataset version the filter selects from, while it exists.")
    async def dataset_version(
        self, info: strawberry.Info
    ) -> Annotated["DatasetVersion", strawberry.lazy("schema.dataset_versions")] | None:
        from schema.dataset_versions import DatasetVersion

        if self.dataset_version_id is None:
            return None
        access = await info.context.access()
        found = await access.find_visible("dataset_versions", object_id(self.dataset_version_id))
        return DatasetVersion.from_doc(found) if found and not found["deleting"] else None


@strawberry.type(description="The functions of a service of the project that serve a model.")
class ModelFunctions:
    service_id: strawberry.ID
    predict: str | None
    train: str | None
    evaluate: str | None

    @strawberry.field(description="The service, while it exists.")
    async def service(
        self, info: strawberry.Info
    ) -> Annotated["Service", strawberry.lazy("schema.services")] | None:
        from schema.services import Service

        access = await info.context.access()
        found = await access.find_visible("services", object_id(self.service_id))
        return Service.from_doc(found) if found else None

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> "ModelFunctions | None":
        if doc is None:
            return None
        return cls(
            service_id=strawberry.ID(str(doc["serviceId"])),
            predict=doc["predict"],
            train=doc["train"],
            evaluate=doc["evaluate"],
        )


def _subsets(doc: dict[str, Any]) -> list[ModelSubset]:
    return [
        ModelSubset(
            name=name,
            filter=value,
            dataset_version_id=strawberry.ID(str(version)) if version else None,
        )
        for name, value, version in models.subsets_of(doc)
    ]


async def _creator(info: strawberry.Info, user_id: Any) -> User | None:
    if user_id is None:
        return None
    try:
        return await load_user(info, user_id)
    except NotFound:
        return None


async def _project(info: strawberry.Info, project_id: Any) -> "Project":
    from resolvers.projects import get_project
    from schema.projects import Project

    access = await info.context.access()
    return Project.from_doc(await get_project(access, project_id))


async def _dataset(info: strawberry.Info, dataset_id: Any) -> "Dataset | None":
    from schema.datasets import Dataset

    if dataset_id is None:
        return None
    access = await info.context.access()
    found = await access.find_visible("datasets", dataset_id)
    return Dataset.from_doc(found) if found else None


@strawberry.type(
    description="An immutable snapshot of a model: its configuration, labels, subsets and "
    "functions when the version was made. Only its description and status change."
)
class ModelVersion(Node):
    creator_id: strawberry.Private[Any]
    org_id: strawberry.ID
    project_id: strawberry.ID
    model_id: strawberry.ID
    version: int = strawberry.field(description="1, 2, … per model, in order of creation.")
    name: str
    description: str
    status: ModelStatusEnum
    configuration: JSON
    labels: list[str]
    subsets: list[ModelSubset]
    functions: ModelFunctions | None
    dataset_id: strawberry.ID | None
    input_type: str | None
    output_type: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The model this is a version of.")
    async def model(self, info: strawberry.Info) -> "Model":
        access = await info.context.access()
        return Model.from_doc(await models.get_model(access, object_id(self.model_id)))

    @strawberry.field
    async def creator(self, info: strawberry.Info) -> User | None:
        return await _creator(info, self.creator_id)

    @strawberry.field(description="The dataset the model named then, while it exists.")
    async def dataset(
        self, info: strawberry.Info
    ) -> Annotated["Dataset", strawberry.lazy("schema.datasets")] | None:
        return await _dataset(info, object_id(self.dataset_id) if self.dataset_id else None)

    @strawberry.field(description="The version's runs on datasets, newest first.")
    async def runs(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[Annotated["ModelRun", strawberry.lazy("schema.model_runs")]]:
        from schema.model_runs import version_runs

        return await version_runs(info, object_id(self.id), first, after)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ModelVersion":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            creator_id=doc["creator"],
            org_id=strawberry.ID(str(doc["orgId"])),
            project_id=strawberry.ID(str(doc["projectId"])),
            model_id=strawberry.ID(str(doc["modelId"])),
            version=doc["version"],
            name=doc["name"],
            description=doc["description"],
            status=ModelStatus(doc["status"]),
            configuration=doc["configuration"],
            labels=doc["labels"],
            subsets=_subsets(doc),
            functions=ModelFunctions.from_doc(doc["functions"]),
            dataset_id=optional_id(doc["datasetId"]),
            input_type=doc["inputType"],
            output_type=doc["outputType"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.type(description="A model of a project, with its numbered versions.")
class Model(Node):
    doc: strawberry.Private[dict[str, Any]]
    name: str
    description: str
    tags: list[str]
    labels: list[str]
    dataset_id: strawberry.ID | None = strawberry.field(
        description="The dataset whose ontology the labels come from, if any."
    )
    configuration: JSON
    input_type: str | None = strawberry.field(description="e.g. image, video, text.")
    output_type: str | None = strawberry.field(description="e.g. box, classification.")
    status: ModelStatusEnum
    subsets: list[ModelSubset]
    functions: ModelFunctions | None
    cloned_from: strawberry.ID | None = strawberry.field(
        description="The model this one was cloned from, if it was."
    )
    version_count: int = strawberry.field(
        description="How many versions were made (the number of the latest one)."
    )
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def project(
        self, info: strawberry.Info
    ) -> Annotated["Project", strawberry.lazy("schema.projects")]:
        return await _project(info, self.doc["projectId"])

    @strawberry.field(description="The dataset, while it exists.")
    async def dataset(
        self, info: strawberry.Info
    ) -> Annotated["Dataset", strawberry.lazy("schema.datasets")] | None:
        return await _dataset(info, self.doc["datasetId"])

    @strawberry.field
    async def creator(self, info: strawberry.Info) -> User | None:
        return await _creator(info, self.doc["creator"])

    @strawberry.field(description="The model's versions, newest (highest number) first.")
    async def versions(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[ModelVersion]:
        access = await info.context.access()
        page = await models.list_versions(access, self.doc["_id"], page_request(info, first, after))
        return Connection.of(page, ModelVersion.from_doc)

    @strawberry.field(description="The version of that number, if there is one.")
    async def version(self, info: strawberry.Info, number: int) -> ModelVersion | None:
        access = await info.context.access()
        found = await models.version_by_number(access, self.doc, number)
        return ModelVersion.from_doc(found) if found else None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Model":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            doc=doc,
            name=doc["name"],
            description=doc["description"],
            tags=doc["tags"],
            labels=doc["labels"],
            dataset_id=optional_id(doc["datasetId"]),
            configuration=doc["configuration"],
            input_type=doc["inputType"],
            output_type=doc["outputType"],
            status=ModelStatus(doc["status"]),
            subsets=_subsets(doc),
            functions=ModelFunctions.from_doc(doc["functions"]),
            cloned_from=optional_id(doc["clonedFrom"]),
            version_count=doc["versionCount"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


@strawberry.input
class ModelSubsetInput:
    name: str
    filter: JSON = strawberry.field(description="DQL over items: a whole query or a filter.")
    dataset_version_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="A ready dataset version of the project: the filter selects its items "
        '(`{"split": "train"}` picks a split\'s subset).',
    )


@strawberry.input
class ModelFunctionsInput:
    service_id: strawberry.ID
    predict: str | None = strawberry.UNSET
    train: str | None = strawberry.UNSET
    evaluate: str | None = strawberry.UNSET


@strawberry.input
class ModelInput:
    name: str
    description: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    labels: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Label names (paths); with a dataset, each must be in its ontology.",
    )
    dataset_id: strawberry.ID | None = strawberry.UNSET
    configuration: JSON | None = strawberry.UNSET
    input_type: str | None = strawberry.UNSET
    output_type: str | None = strawberry.UNSET
    subsets: list[ModelSubsetInput] | None = strawberry.UNSET
    functions: ModelFunctionsInput | None = strawberry.UNSET


@strawberry.input(description="The fields to change; null clears datasetId, functions and types.")
class ModelChangesInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    labels: list[str] | None = strawberry.UNSET
    dataset_id: strawberry.ID | None = strawberry.UNSET
    configuration: JSON | None = strawberry.UNSET
    input_type: str | None = strawberry.UNSET
    output_type: str | None = strawberry.UNSET
    functions: ModelFunctionsInput | None = strawberry.UNSET


@strawberry.input(description="What the clone changes from its source; the rest is copied.")
class CloneModelInput:
    name: str
    project_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="A project of the same organization (the source's if not given).",
    )
    description: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    labels: list[str] | None = strawberry.UNSET
    configuration: JSON | None = strawberry.UNSET
    dataset_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class ModelVersionChangesInput:
    description: str | None = strawberry.UNSET


@strawberry.type
class ModelQueries:
    @strawberry.field
    async def model(self, info: strawberry.Info, id: strawberry.ID) -> Model:
        access = await info.context.access()
        return Model.from_doc(await models.get_model(access, object_id(id)))

    @strawberry.field
    async def model_version(self, info: strawberry.Info, id: strawberry.ID) -> ModelVersion:
        access = await info.context.access()
        return ModelVersion.from_doc(await models.get_model_version(access, object_id(id)))


async def project_models(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[Model]:
    access = await info.context.access()
    page = await models.list_models(access, project_id, page_request(info, first, after))
    return Connection.of(page, Model.from_doc)


@strawberry.type
class ModelMutations:
    @strawberry.mutation
    async def create_model(
        self, info: strawberry.Info, project_id: strawberry.ID, input: ModelInput
    ) -> Model:
        access = await info.context.access()
        doc = await models.create_model(access, object_id(project_id, "projectId"), as_input(input))
        return Model.from_doc(doc)

    @strawberry.mutation(description="Change the fields given.")
    async def update_model(
        self, info: strawberry.Info, id: strawberry.ID, input: ModelChangesInput
    ) -> Model:
        access = await info.context.access()
        return Model.from_doc(await models.update_model(access, object_id(id), as_input(input)))

    @strawberry.mutation(description="Delete a model and its versions, if no model run uses them.")
    async def delete_model(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await models.delete_model(access, object_id(id))
        return True

    @strawberry.mutation
    async def set_model_status(
        self, info: strawberry.Info, id: strawberry.ID, status: ModelStatusEnum
    ) -> Model:
        access = await info.context.access()
        doc = await models.set_model_status(access, object_id(id), as_input(status))
        return Model.from_doc(doc)

    @strawberry.mutation(description="Add a subset, or replace the one of that name.")
    async def add_model_subset(
        self,
        info: strawberry.Info,
        model_id: strawberry.ID,
        name: str,
        filter: JSON,
        dataset_version_id: strawberry.ID | None = None,
    ) -> Model:
        access = await info.context.access()
        subset = {"name": name, "filter": filter, "datasetVersionId": dataset_version_id}
        doc = await models.add_subset(access, object_id(model_id, "modelId"), subset)
        return Model.from_doc(doc)

    @strawberry.mutation
    async def delete_model_subset(
        self, info: strawberry.Info, model_id: strawberry.ID, name: str
    ) -> Model:
        access = await info.context.access()
        return Model.from_doc(
            await models.delete_subset(access, object_id(model_id, "modelId"), name)
        )

    @strawberry.mutation(description="A new model copying this one, with what is given changed.")
    async def clone_model(
        self, info: strawberry.Info, model_id: strawberry.ID, input: CloneModelInput
    ) -> Model:
        access = await info.context.access()
        doc = await models.clone_model(access, object_id(model_id, "modelId"), as_input(input))
        return Model.from_doc(doc)

    @strawberry.mutation(description="Snapshot the model as its next version.")
    async def create_model_version(
        self,
        info: strawberry.Info,
        model_id: strawberry.ID,
        name: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
    ) -> ModelVersion:
        access = await info.context.access()
        data = {
            key: value
            for key, value in (("name", name), ("description", description))
            if value is not strawberry.UNSET
        }
        doc = await models.create_version(access, object_id(model_id, "modelId"), data)
        return ModelVersion.from_doc(doc)

    @strawberry.mutation(description="Change a version's description (nothing else changes).")
    async def update_model_version(
        self, info: strawberry.Info, id: strawberry.ID, input: ModelVersionChangesInput
    ) -> ModelVersion:
        access = await info.context.access()
        doc = await models.update_version(access, object_id(id), as_input(input))
        return ModelVersion.from_doc(doc)

    @strawberry.mutation
    async def set_model_version_status(
        self, info: strawberry.Info, id: strawberry.ID, status: ModelStatusEnum
    ) -> ModelVersion:
        access = await info.context.access()
        doc = await models.set_version_status(access, object_id(id), as_input(status))
        return ModelVersion.from_doc(doc)

    @strawberry.mutation(description="Delete a version no model run uses.")
    async def delete_model_version(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        access = await info.context.access()
        await models.delete_version(access, object_id(id))
        return True
