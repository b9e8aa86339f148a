"""Forking a dataset version: a new, editable dataset made of what the version holds.

Picsellia's fork, on Loom's clone: the same Command copies the version's items (sharing their
files) into a new dataset of the project, with or without annotations, tags, user metadata
and the version's ontology. The new dataset is readonly until the copy is done.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from bson import ObjectId
from pydantic import Field

from resolvers import clone
from resolvers.access import Access, Action
from resolvers.inputs import Description, Input, Name, parse
from resolvers.versions.lifecycle import ready_version


class ForkInput(Input):
    name: Name
    description: Description | None = None
    with_annotations: bool = True
    with_tags: bool = True
    with_metadata: bool = True
    with_labels: bool = Field(default=True, description="copy the version's ontology")


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
    return await clone.start_copy(access, version, fork.name, described, labels, spec, enqueue)
