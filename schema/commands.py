"""Commands (long operations) and the mutations that start them."""

from datetime import datetime
from typing import Any

import strawberry
from bson import ObjectId
from strawberry.scalars import JSON

from resolvers import clone, commands, projects
from resolvers.inputs import object_id
from schema.inputs import as_input
from schema.relay import Connection, page_request


def _plain(value: Any) -> Any:
    """A command's input as JSON: ids as strings, at any depth."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@strawberry.type(description="A long operation run by a worker, with its progress.")
class Command:
    id: strawberry.ID
    type: str
    status: str = strawberry.field(description="created | inProgress | success | failed")
    progress: int = strawberry.field(description="Percent done, 0 to 100.")
    input: JSON
    error: str | None
    result: JSON | None = strawberry.field(
        description="What the command produced, when it says more than its status "
        "(e.g. an upload's counts and refused predictions)."
    )
    attempts: int
    created_at: datetime
    updated_at: datetime

    @strawberry.field(
        description="Where to GET an export's archive (with the same Bearer key), once done."
    )
    def archive_url(self) -> str | None:
        has_archive = isinstance(self.result, dict) and "archiveId" in self.result
        return f"/commands/{self.id}/archive" if has_archive else None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Command":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            type=doc["type"],
            status=doc["status"],
            progress=doc["progress"],
            input=_plain(doc["input"]),
            error=doc["error"],
            result=_plain(doc.get("result")),
            attempts=doc["attempts"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


async def project_commands(
    info: strawberry.Info,
    project_id: ObjectId,
    types: list[str] | None,
    first: int,
    after: str | None,
) -> Connection[Command]:
    access = await info.context.access()
    await projects.get_project(access, project_id)
    page = await commands.list_commands(access, project_id, types, page_request(info, first, after))
    return Connection.of(page, Command.from_doc)


@strawberry.input
class CloneDatasetInput:
    name: str
    with_annotations: bool | None = strawberry.UNSET
    with_metadata: bool | None = strawberry.UNSET
    with_labels: bool | None = strawberry.UNSET


@strawberry.type
class CommandQueries:
    @strawberry.field
    async def command(self, info: strawberry.Info, id: strawberry.ID) -> Command:
        access = await info.context.access()
        return Command.from_doc(await commands.get_command(access, object_id(id)))


@strawberry.type
class CommandMutations:
    @strawberry.mutation(
        description="Clone a dataset (files are shared, not copied). Returns the Command; "
        "the new dataset is readonly until the command succeeds."
    )
    async def clone_dataset(
        self, info: strawberry.Info, dataset_id: strawberry.ID, input: CloneDatasetInput
    ) -> Command:
        access = await info.context.access()
        doc = await clone.start_clone(
            access,
            object_id(dataset_id, "datasetId"),
            as_input(input),
            info.context.enqueue_command,
        )
        return Command.from_doc(doc)
