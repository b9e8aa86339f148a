"""Exports (a dataset or a version as a COCO, YOLO or Pascal VOC archive) and imports (COCO
annotations into a dataset), each carried out by a Command."""

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from resolvers.inputs import object_id
from resolvers.interchange import exports, imports
from schema.commands import Command
from schema.enums import AnnotationStatusEnum
from schema.inputs import as_input

ExportFormat = strawberry.enum(exports.ExportFormat, name="ExportFormat")
ImportFormat = strawberry.enum(imports.ImportFormat, name="ImportFormat")
ImportMode = strawberry.enum(imports.ImportMode, name="ImportMode")


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


@strawberry.input
class ImportInput:
    format: ImportFormat | None = strawberry.UNSET
    mode: ImportMode | None = strawberry.field(
        default=strawberry.UNSET,
        description="What happens to an item's annotations: REPLACE (the default) deletes "
        "them, CONCATENATE keeps them, SKIP leaves an item that has any untouched.",
    )
    create_missing_labels: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Add the categories the ontology lacks as top-level labels.",
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

    @strawberry.mutation(
        description="Import COCO, YOLO or Pascal VOC annotations (a zip, or a COCO .json or "
        "VOC .xml file) into a dataset's items, matched by path; images the archive carries "
        "that no item has are uploaded as items. Returns the Command, whose result reports "
        "what was imported and each refused element."
    )
    async def import_annotations(
        self,
        info: strawberry.Info,
        dataset_id: strawberry.ID,
        file: Upload,
        input: ImportInput | None = None,
    ) -> Command:
        access = await info.context.access()
        doc = await imports.start_import(
            access,
            object_id(dataset_id, "datasetId"),
            file.file,
            file.filename or "",
            as_input(input) if input else {},
            info.context.enqueue_command,
        )
        return Command.from_doc(doc)
