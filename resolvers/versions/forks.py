"""Forking a dataset version: a new, editable dataset made of what the version holds — or a
new version of the same dataset.

Picsellia's fork, on Loom's clone: the same Command copies the version's items (sharing their
files) into a new dataset of the project, with or without annotations, tags, user metadata
and the version's ontology. The new dataset is readonly until the copy is done. Forked `into:
VERSION`, the copy is a new version of the version's dataset (snapshots.py copies it from the
source's copies), with the same options; it has no split until it is split.
"""

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field

from resolvers import clone
from resolvers.access import Access, Action
from resolvers.datasets import get_dataset
from resolvers.inputs import Description, Input, Name, parse
from resolvers.versions import snapshots
from resolvers.versions.lifecycle import ready_version


class ForkTarget(StrEnum):
    DATASET = "dataset"
    VERSION = "version"


class ForkInput(Input):
    name: Name
    description: Description | None = None
    with_annotations: bool = True
    with_tags: bool = True
    with_metadata: bool = True
    with_labels: bool = Field(default=True, description="copy the version's ontology")
    into: ForkTarget = ForkTarget.DATASET


async def start_fork(
    access: Access,
    version_id: ObjectId,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Create the (readonly, empty) dataset and the clone command reading the version."""
    version = await ready_version(access, version_id)
    await access.require_project(version, Action.MANAGE_DATASETS)
    fork = parse(ForkInput, data)
    spec = {
        "sourceId": version["datasetId"],
        "versionId": version_id,
        "withAnnotations": fork.with_annotations,
        "withMetadata": fork.with_metadata,
        "withTags": fork.with_tags,
    }
    labels = version["labels"] if fork.with_labels else []
    described = fork.description or f"Fork of version {version['name']!r}"
    if fork.into == ForkTarget.DATASET:
        return await clone.start_copy(access, version, fork.name, described, labels, spec, enqueue)
    dataset = await get_dataset(access, version["datasetId"])
    named = snapshots.VersionInput(name=fork.name, description=described)
    forked = snapshots.new_version(access, dataset, named, labels, forkedFrom=version_id)
    options = {key: spec[key] for key in ("withAnnotations", "withMetadata", "withTags")}
    forked = await snapshots.record_version(
        access, dataset, forked, {"sourceVersionId": version_id, **options}, enqueue
    )
    return await access.db.commands.find_one({"_id": forked["commandId"]})
