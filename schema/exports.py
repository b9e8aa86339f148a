"""Exports: a dataset or a version as a COCO, YOLO or Pascal VOC archive, written by a
Command."""

from enum import Enum

import strawberry
from strawberry.scalars import JSON

from resolvers.inputs import object_id
from resolvers.interchange import exports
from schema.commands import Command
from schema.enums import AnnotationStatusEnum
from schema.inputs import as_input


@strawberry.enum
class ExportFormat(Enum):
    COCO = "coco"
    YOLO = "yolo"
    VOC = "voc"


@strawberry.input
class ExportInput:
    format: ExportFormat | None = strawberry.UNSET
    filter: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="DQL over the items: only these are exported."
    )
    split: str | None = strawberry.field(
        default=strawberry.UNSET, description="A version's split subset (versions only)."
    )
    statuses: list[AnnotationStatusEnum] | None = strawberry.field(
        default=strawberry.UNSET, description="Only annotations of these statuses."
    )
    include_files: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Put the files in the archive, under images/."
    )


@strawberry.type
class ExportMutations:
    @strawberry.mutation(
        description="Export a dataset's items and annotations as it is now; returns the "
        "Command. Its archive downloads from `Command.archiveUrl` once it succeeded."
    )
    async def export_dataset(
        self, info: strawberry.Info, dataset_id: strawberry.ID, input: ExportInput
    ) -> Command:
        access = await info.context.access()
        doc = await exports.start_export(
            access,
            object_id(dataset_id, "datasetId"),
            as_input(input),
            info.context.enqueue_command,
            of_version=False,
        )
        return Command.from_doc(doc)

    @strawberry.mutation(
        description="Export a dataset version (or one subset of its split); returns the "
        "Command, whose archive is the same whenever it is written."
    )
    async def export_dataset_version(
        self, info: strawberry.Info, id: strawberry.ID, input: ExportInput
    ) -> Command:
        access = await info.context.access()
        doc = await exports.start_export(
            access, object_id(id), as_input(input), info.context.enqueue_command, of_version=True
        )
        return Command.from_doc(doc)
