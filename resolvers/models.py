"""Models of a project and their versions: immutable, numbered snapshots of a model.

A model names its labels (checked against its dataset's ontology when it names a dataset of
its project), a free JSON configuration, the kinds of input it reads and output it makes, its
subsets (named DQL filters over items, e.g. `train` and `validation`, as dtlpy's
`add_subset`), and optionally the functions of a service of its project that predict, train
and evaluate it. Subset filters are stored as JSON text, as saved filters are: their `$`-keys
would be awkward as MongoDB field names.

`createModelVersion` copies what a version depends on (configuration, labels, subsets,
functions, dataset, input and output types) at that moment; afterwards only a version's
description and status change. Versions are numbered 1, 2, … per model by a counter the
model document holds, incremented in the same transaction that inserts the version: two
concurrent calls conflict on the model document, one is retried, and neither number is
skipped or taken twice (the unique index (modelId, version) stands behind it). A deleted
version's number is not given again.

Models and versions that a model run (`model_runs`) refers to cannot be deleted.
"""

import json
from enum import StrEnum
from typing import Annotated, Any

from bson import ObjectId
from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from resolvers import dql, json_documents, labels
from resolvers.access import Access, Action
from resolvers.errors import BadUserInput, Conflict, LoomError, NotFound
from resolvers.inputs import Changes, Description, Input, Name, object_id, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.projects import get_project
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction

MAX_SUBSETS = 50
MAX_LABELS = labels.MAX_LABELS
MAX_CONFIGURATION_BYTES = 64 * 1024


class ModelStatus(StrEnum):
    """Where a model (or a version) is in its life: made, being trained, trained, serving, or
    failed."""

    CREATED = "created"
    TRAINING = "training"
    TRAINED = "trained"
    DEPLOYED = "deployed"
    FAILED = "failed"


Kind = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50, pattern=r"^[\w./+-]+$"),
]
"""An input or output type: a short word such as `image`, `video`, `text` or `box`."""

LabelPath = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=r"^\S")
]
"""A label of an ontology by its path (`car`, `vehicle.car`)."""


def _unique(values: list[str]) -> list[str]:
    """`values` without repeats, in their first order."""
    return list(dict.fromkeys(values))


Tags = Annotated[list[Name], Field(max_length=100), AfterValidator(_unique)]
Labels = Annotated[list[LabelPath], Field(max_length=MAX_LABELS), AfterValidator(_unique)]


class Subset(Input):
    name: Name
    filter: dict[str, Any] = Field(description="DQL over items: a whole query or a filter.")
    dataset_version_id: str | None = Field(
        None, description="A dataset version of the project whose items the filter selects."
    )


class Functions(Input):
    """The functions of a service of the model's project that predict, train, evaluate it."""

    service_id: str
    predict: Name | None = None
    train: Name | None = None
    evaluate: Name | None = None

    @model_validator(mode="after")
    def _names_a_function(self) -> "Functions":
        if not (self.predict or self.train or self.evaluate):
            raise ValueError("name at least one of predict, train, evaluate")
        return self


class ModelInput(Input):
    name: Name
    description: Description = ""
    tags: Tags = Field(default_factory=list)
    labels: Labels = Field(default_factory=list)
    dataset_id: str | None = None
    configuration: dict[str, Any] = Field(default_factory=dict)
    input_type: Kind | None = None
    output_type: Kind | None = None
    subsets: list[Subset] = Field(default_factory=list, max_length=MAX_SUBSETS)
    functions: Functions | None = None

    @field_validator("subsets")
    @classmethod
    def _distinct_subsets(cls, subsets: list[Subset]) -> list[Subset]:
        names = [s.name for s in subsets]
        if len(set(names)) != len(names):
            raise ValueError("subset names must be distinct")
        return subsets


CLEARABLE = ("datasetId", "functions", "inputType", "outputType")
"""Fields of ModelChanges that an explicit null clears (for the others null changes nothing)."""


class ModelChanges(Changes):
    name: Name | None = None
    description: Description | None = None
    tags: Tags | None = None
    labels: Labels | None = None
    dataset_id: str | None = None
    configuration: dict[str, Any] | None = None
    input_type: Kind | None = None
    output_type: Kind | None = None
    functions: Functions | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "ModelChanges":
        cleared = [
            field.alias
            for name, field in type(self).model_fields.items()
            if field.alias in CLEARABLE and name in self.model_fields_set
        ]
        if not self.model_dump(exclude_none=True) and not cleared:
            fields = ", ".join(
                field.alias or name for name, field in type(self).model_fields.items()
            )
            raise ValueError(f"give at least one of {fields}")
        return self


class CloneInput(Input):
    name: Name
    project_id: str | None = None
    description: Description | None = None
    tags: Tags | None = None
    labels: Labels | None = None
    configuration: dict[str, Any] | None = None
    dataset_id: str | None = None


class StatusInput(Input):
    status: ModelStatus


class VersionInput(Input):
    name: Name | None = None
    description: Description = ""


class VersionChanges(Changes):
    description: Description | None = None


# --- Checks of what a model refers to -------------------------------------------------------


async def _dataset(access: Access, project_id: ObjectId, dataset_id: ObjectId) -> dict[str, Any]:
    """A dataset of the project; any other id (missing, elsewhere) reads the same."""
    found = await access.db.datasets.find_one(
        {"_id": dataset_id, "projectId": project_id}, {"labels": 1}
    )
    if found is None:
        raise BadUserInput("datasetId names no dataset of this project", field="datasetId")
    return found


async def _check_labels(
    access: Access, project_id: ObjectId, dataset_id: ObjectId | None, names: list[str]
) -> None:
    """With a dataset, every label must be one of its ontology (by path)."""
    if dataset_id is None:
        return
    dataset = await _dataset(access, project_id, dataset_id)
    known = set(labels.paths(dataset["labels"]))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BadUserInput(
            f"Labels not in the dataset's ontology: {', '.join(map(repr, unknown))}",
            field="labels",
            labels=unknown,
        )


async def _checked_functions(
    access: Access, project_id: ObjectId, functions: Functions
) -> dict[str, Any]:
    """The functions as stored: their service is one of the project, and registers each."""
    service_id = object_id(functions.service_id, "functions.serviceId")
    service = await access.db.services.find_one(
        {"_id": service_id, "projectId": project_id}, {"name": 1, "functions": 1}
    )
    if service is None:
        raise BadUserInput(
            "functions.serviceId names no service of this project", field="functions.serviceId"
        )
    stored: dict[str, Any] = {"serviceId": service_id}
    for role in ("predict", "train", "evaluate"):
        name = getattr(functions, role)
        if name is not None and name not in service["functions"]:
            raise BadUserInput(
                f"Service {service['name']!r} has no function {name!r}", field=f"functions.{role}"
            )
        stored[role] = name
    return stored


async def _subset(
    access: Access, project_id: ObjectId, subset: Subset, field: str
) -> dict[str, Any]:
    """A subset as stored, its filter validated as batches validate theirs; one over a
    dataset version names a ready version of the project (its filter may pick a split)."""
    version_id = None
    if subset.dataset_version_id is not None:
        where = field.removesuffix("filter") + "datasetVersionId"
        version_id = object_id(subset.dataset_version_id, where)
        version = await access.db.dataset_versions.find_one(
            {"_id": version_id, "projectId": project_id, "deleting": False, "status": "ready"}
        )
        if version is None:
            raise BadUserInput(
                f"Subset {subset.name!r}: {where} names no ready dataset version of this project",
                field=where,
                subset=subset.name,
            )
    try:
        dql.parse(dql.envelope("items", subset.filter), in_version=version_id is not None)
    except LoomError as exc:
        raise BadUserInput(
            f"Subset {subset.name!r}: {exc.message}", field=field, subset=subset.name
        ) from exc
    return {
        "name": subset.name,
        "filter": json.dumps(subset.filter, sort_keys=True),
        "datasetVersionId": version_id,
    }


def _configuration(value: dict[str, Any]) -> dict[str, Any]:
    return json_documents.check(value, "configuration", MAX_CONFIGURATION_BYTES)


def _dataset_id(value: str | None) -> ObjectId | None:
    return None if value is None else object_id(value, "datasetId")


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A model named {name!r} already exists in this project", field="name")


async def _insert(access: Access, doc: dict[str, Any]) -> dict[str, Any]:
    try:
        await access.db.models.insert_one(doc)
    except DuplicateKeyError as exc:
        raise _name_taken(doc["name"]) from exc
    return doc


def _new_model(access: Access, project: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project["_id"],
        **fields,
        status=str(ModelStatus.CREATED),
        versionCount=0,
    )


# --- Models ---------------------------------------------------------------------------------


async def create_model(
    access: Access, project_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_MODELS)
    model = parse(ModelInput, data)
    dataset_id = _dataset_id(model.dataset_id)
    await _check_labels(access, project_id, dataset_id, model.labels)
    functions = (
        await _checked_functions(access, project_id, model.functions) if model.functions else None
    )
    doc = _new_model(
        access,
        project,
        name=model.name,
        description=model.description,
        tags=model.tags,
        labels=model.labels,
        datasetId=dataset_id,
        configuration=_configuration(model.configuration),
        inputType=model.input_type,
        outputType=model.output_type,
        subsets=[
            await _subset(access, project["_id"], s, f"subsets.{i}.filter")
            for i, s in enumerate(model.subsets)
        ],
        functions=functions,
        clonedFrom=None,
    )
    return await _insert(access, doc)


async def get_model(access: Access, model_id: ObjectId) -> dict[str, Any]:
    return await access.visible("models", model_id, project_field="projectId", entity="Model")


async def _writable(access: Access, model_id: ObjectId) -> dict[str, Any]:
    model = await get_model(access, model_id)
    await access.require_project(model, Action.MANAGE_MODELS)
    return model


async def list_models(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    """A project's models, by name."""
    await get_project(access, project_id)
    return await paginate(access.db.models, {"projectId": project_id}, page, [("name", 1)])


async def _changed(access: Access, model_id: ObjectId, update: dict[str, Any]) -> dict[str, Any]:
    changed = await access.db.models.find_one_and_update(
        {"_id": model_id}, update, return_document=ReturnDocument.AFTER
    )
    if changed is None:
        raise NotFound("Model not found", id=str(model_id))
    return changed


async def update_model(access: Access, model_id: ObjectId, data: dict[str, Any]) -> dict[str, Any]:
    """Change the fields given; an explicit null clears the dataset, functions, input or
    output type. Labels are checked against the dataset the model names afterwards."""
    model = await _writable(access, model_id)
    changes = parse(ModelChanges, data)
    given = {type(changes).model_fields[name].alias for name in changes.model_fields_set}
    fields: dict[str, Any] = {}
    for name in ("name", "description", "tags", "labels"):
        if getattr(changes, name) is not None:
            fields[name] = getattr(changes, name)
    if changes.configuration is not None:
        fields["configuration"] = _configuration(changes.configuration)
    for alias, value in (("inputType", changes.input_type), ("outputType", changes.output_type)):
        if alias in given:
            fields[alias] = value
    if "datasetId" in given:
        fields["datasetId"] = _dataset_id(changes.dataset_id)
    if "datasetId" in fields or "labels" in fields:
        await _check_labels(
            access,
            model["projectId"],
            fields.get("datasetId", model["datasetId"]),
            fields.get("labels", model["labels"]),
        )
    if "functions" in given:
        fields["functions"] = (
            await _checked_functions(access, model["projectId"], changes.functions)
            if changes.functions
            else None
        )
    try:
        return await _changed(access, model_id, {"$set": {**fields, "updatedAt": now()}})
    except DuplicateKeyError as exc:
        raise _name_taken(fields["name"]) from exc


async def set_model_status(access: Access, model_id: ObjectId, status: Any) -> dict[str, Any]:
    await _writable(access, model_id)
    value = parse(StatusInput, {"status": status}).status
    return await _changed(access, model_id, {"$set": {"status": str(value), "updatedAt": now()}})


async def add_subset(access: Access, model_id: ObjectId, data: dict[str, Any]) -> dict[str, Any]:
    """Add a subset, or replace the model's subset of that name (as dtlpy's add_subset)."""
    model = await _writable(access, model_id)
    stored = await _subset(access, model["projectId"], parse(Subset, data), "filter")
    names = {s["name"] for s in model["subsets"]}
    if stored["name"] not in names and len(names) >= MAX_SUBSETS:
        raise BadUserInput(f"A model has at most {MAX_SUBSETS} subsets", field="name")
    # One atomic pipeline update: the others' subsets, then this one (concurrent additions of
    # different names all land).
    others = {
        "$filter": {
            "input": "$subsets",
            "cond": {"$ne": ["$$this.name", {"$literal": stored["name"]}]},
        }
    }
    subset = {key: {"$literal": value} for key, value in stored.items()}
    return await _changed(
        access,
        model_id,
        [{"$set": {"subsets": {"$concatArrays": [others, [subset]]}, "updatedAt": now()}}],
    )


async def delete_subset(access: Access, model_id: ObjectId, name: str) -> dict[str, Any]:
    await _writable(access, model_id)
    changed = await access.db.models.find_one_and_update(
        {"_id": model_id, "subsets.name": name},
        {"$pull": {"subsets": {"name": name}}, "$set": {"updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )
    if changed is None:
        raise NotFound(f"The model has no subset named {name!r}", name=name)
    return changed


async def clone_model(access: Access, model_id: ObjectId, data: dict[str, Any]) -> dict[str, Any]:
    """A new model copying every field of the source, overridden by what is given, with
    `clonedFrom` set and status `created`; no versions are copied. Into another project (of
    the same organization) the dataset and the functions, which belong to the source's
    project, are not carried over (a `datasetId` of the target project may be given)."""
    source = await get_model(access, model_id)
    clone = parse(CloneInput, data)
    target_id = (
        source["projectId"]
        if clone.project_id is None
        else object_id(clone.project_id, "projectId")
    )
    project = await get_project(access, target_id)
    if project["orgId"] != source["orgId"]:
        raise BadUserInput(
            "projectId must be a project of the model's organization", field="projectId"
        )
    await access.require_project(project, Action.MANAGE_MODELS)
    same_project = target_id == source["projectId"]
    if "dataset_id" in clone.model_fields_set:
        dataset_id = _dataset_id(clone.dataset_id)
    else:
        dataset_id = source["datasetId"] if same_project else None
    model_labels = source["labels"] if clone.labels is None else clone.labels
    await _check_labels(access, target_id, dataset_id, model_labels)
    doc = _new_model(
        access,
        project,
        name=clone.name,
        description=source["description"] if clone.description is None else clone.description,
        tags=source["tags"] if clone.tags is None else clone.tags,
        labels=model_labels,
        datasetId=dataset_id,
        configuration=(
            source["configuration"]
            if clone.configuration is None
            else _configuration(clone.configuration)
        ),
        inputType=source["inputType"],
        outputType=source["outputType"],
        subsets=source["subsets"],
        functions=source["functions"] if same_project else None,
        clonedFrom=source["_id"],
    )
    return await _insert(access, doc)


async def _run_using(
    access: Access, query: dict[str, Any], session: AsyncClientSession
) -> dict[str, Any] | None:
    return await access.db.model_runs.find_one(query, {"_id": 1}, session=session)


async def delete_model(access: Access, model_id: ObjectId) -> None:
    """Delete a model and its versions in one transaction; CONFLICT while a model run refers
    to the model or one of its versions."""
    await _writable(access, model_id)

    async def work(session: AsyncClientSession) -> None:
        versions = await access.db.model_versions.distinct(
            "_id", {"modelId": model_id}, session=session
        )
        used = await _run_using(
            access,
            {"$or": [{"modelId": model_id}, {"modelVersionId": {"$in": versions}}]},
            session,
        )
        if used is not None:
            raise Conflict("Model runs refer to this model; delete them first")
        if (serving := await _deployment_serving(access, versions, session)) is not None:
            raise Conflict(f"Deployment {serving['name']!r} serves a version of this model")
        await access.db.model_versions.delete_many({"modelId": model_id}, session=session)
        deleted = await access.db.models.delete_one({"_id": model_id}, session=session)
        if deleted.deleted_count == 0:
            raise NotFound("Model not found", id=str(model_id))

    await in_transaction(access.db, work)


# --- Versions -------------------------------------------------------------------------------

SNAPSHOT = (
    "configuration",
    "labels",
    "subsets",
    "functions",
    "datasetId",
    "inputType",
    "outputType",
)
"""What a version copies from its model, never to change."""


async def create_version(
    access: Access, model_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Snapshot the model as it is now, as its next version."""
    await _writable(access, model_id)
    version = parse(VersionInput, data)

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        model = await access.db.models.find_one_and_update(
            {"_id": model_id},
            {"$inc": {"versionCount": 1}},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if model is None:
            raise NotFound("Model not found", id=str(model_id))
        number = model["versionCount"]
        doc = new_document(
            access.user_id,
            orgId=model["orgId"],
            projectId=model["projectId"],
            modelId=model_id,
            version=number,
            name=version.name or f"v{number}",
            description=version.description,
            status=str(ModelStatus.CREATED),
            **{field: model[field] for field in SNAPSHOT},
        )
        await access.db.model_versions.insert_one(doc, session=session)
        return doc

    return await in_transaction(access.db, work)


async def get_model_version(access: Access, version_id: ObjectId) -> dict[str, Any]:
    """A model version the caller may read (NOT_FOUND otherwise): for model runs too."""
    version = await access.visible(
        "model_versions", version_id, project_field="projectId", entity="Model version"
    )
    await access.require_project(version, Action.READ_PROJECT)
    return version


async def version_by_number(
    access: Access, model: dict[str, Any], number: int
) -> dict[str, Any] | None:
    """Version `number` of a model the caller can see, or None."""
    return await access.db.model_versions.find_one(
        {"modelId": model["_id"], "projectId": model["projectId"], "version": number}
    )


async def list_versions(access: Access, model_id: ObjectId, page: PageRequest) -> Page:
    """A model's versions, newest (highest number) first."""
    scope = await access.scope()
    query = {"$and": [{"modelId": model_id}, scope]}
    return await paginate(access.db.model_versions, query, page, [("version", DESCENDING)])


async def _writable_version(access: Access, version_id: ObjectId) -> dict[str, Any]:
    version = await get_model_version(access, version_id)
    await access.require_project(version, Action.MANAGE_MODELS)
    return version


async def _version_changed(
    access: Access, version_id: ObjectId, fields: dict[str, Any]
) -> dict[str, Any]:
    changed = await access.db.model_versions.find_one_and_update(
        {"_id": version_id},
        {"$set": {**fields, "updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )
    if changed is None:
        raise NotFound("Model version not found", id=str(version_id))
    return changed


async def update_version(
    access: Access, version_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Change a version's description: the only field besides its status that changes."""
    await _writable_version(access, version_id)
    changes = parse(VersionChanges, data)
    return await _version_changed(access, version_id, {"description": changes.description})


async def set_version_status(access: Access, version_id: ObjectId, status: Any) -> dict[str, Any]:
    await _writable_version(access, version_id)
    value = parse(StatusInput, {"status": status}).status
    return await _version_changed(access, version_id, {"status": str(value)})


async def _deployment_serving(
    access: Access, versions: list[ObjectId], session: AsyncClientSession
) -> dict[str, Any] | None:
    query = {
        "$or": [{"championVersionId": {"$in": versions}}, {"shadowVersionId": {"$in": versions}}]
    }
    return await access.db.deployments.find_one(query, {"name": 1}, session=session)


async def delete_version(access: Access, version_id: ObjectId) -> None:
    """Delete a version no model run refers to and no deployment serves (CONFLICT otherwise)."""
    await _writable_version(access, version_id)

    async def work(session: AsyncClientSession) -> None:
        if await _run_using(access, {"modelVersionId": version_id}, session) is not None:
            raise Conflict("Model runs refer to this model version; delete them first")
        if (serving := await _deployment_serving(access, [version_id], session)) is not None:
            raise Conflict(f"Deployment {serving['name']!r} serves this model version")
        deleted = await access.db.model_versions.delete_one({"_id": version_id}, session=session)
        if deleted.deleted_count == 0:
            raise NotFound("Model version not found", id=str(version_id))

    await in_transaction(access.db, work)


def subsets_of(doc: dict[str, Any]) -> list[tuple[str, Any, ObjectId | None]]:
    """A model's or version's subsets as (name, DQL JSON, the dataset version it is over)."""
    return [(s["name"], json.loads(s["filter"]), s.get("datasetVersionId")) for s in doc["subsets"]]
