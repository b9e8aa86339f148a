"""Items: files in a dataset with their metadata, tags and place in the directory tree.

Every item has `type: "file"`, as in Dataloop, whose default item filter (`{"type": "file",
"hidden": false}`) users bring along with their DQL.
"""

import mimetypes
from collections import Counter
from dataclasses import dataclass, replace
from typing import IO, Annotated, Any

from bson import ObjectId
from pydantic import Field, StringConstraints
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from resolvers import directories, dql, files, idempotency, json_documents, predictions
from resolvers.access import Access, Action
from resolvers.datasets import get_dataset, writable_dataset
from resolvers.errors import BadUserInput, Conflict, LimitExceeded, NotFound
from resolvers.inputs import Changes, Description, Input, parse
from resolvers.pagination import Page, PageRequest, Sort, Window, paginate_many
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction

MAX_BATCH = 1000

FileName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=255, pattern=r"^[^/\x00-\x1f\x7f]+$"
    ),
]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
MimeType = Annotated[str, StringConstraints(max_length=127, pattern=r"^[\w.+-]+/[\w.+-]+$")]
ReferenceId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
"""The caller's own key for an item (Nucleus' reference id), unique in its dataset."""


class ItemInput(Input):
    name: FileName
    dir: str = "/"
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    description: Description = ""
    hidden: bool = False
    reference_id: ReferenceId | None = None


class ItemChanges(Changes):
    name: FileName | None = None
    dir: str | None = None
    metadata: dict[str, Any] | None = None
    tags: list[Tag] | None = Field(default=None, max_length=100)
    description: Description | None = None
    hidden: bool | None = None
    reference_id: ReferenceId | None = None


def mimetype_of(declared: str | None, name: str) -> str:
    guessed = mimetypes.guess_type(name)[0]
    usable = declared if declared and declared != "application/octet-stream" else guessed
    return parse(_MimeTypeInput, {"mimetype": usable or "application/octet-stream"}).mimetype


class _MimeTypeInput(Input):
    mimetype: MimeType


def _name_taken(filename: str) -> Conflict:
    return Conflict(f"An item {filename!r} already exists in this dataset", field="name")


def _taken(exc: DuplicateKeyError, filename: str, reference_id: str | None) -> Conflict:
    """Which of the dataset's unique keys the item's name or reference id ran into."""
    if "referenceId" in (exc.details or {}).get("keyPattern", {}):
        return Conflict(
            f"An item with referenceId {reference_id!r} already exists in this dataset",
            field="referenceId",
        )
    return _name_taken(filename)


def new_item(
    creator: ObjectId | None,
    dataset: dict[str, Any],
    item_input: ItemInput,
    mimetype: str,
    upload: files.Upload,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The item of an uploaded file as stored, not yet written (its directory normalised)."""
    directory = directories.normalise(item_input.dir)
    return new_document(
        creator,
        orgId=dataset["orgId"],
        projectId=dataset["projectId"],
        datasetId=dataset["_id"],
        name=item_input.name,
        dir=directory,
        filename=directories.join(directory, item_input.name),
        type="file",
        mimetype=mimetype,
        size=upload.size,
        width=upload.width,
        height=upload.height,
        sha256=upload.sha256,
        metadata=metadata,
        tags=item_input.tags,
        description=item_input.description,
        hidden=item_input.hidden,
        **({"referenceId": item_input.reference_id} if item_input.reference_id else {}),
        annotated=False,
        annotationsCount=0,
    )


async def store_new_item(
    db: AsyncDatabase, item: dict[str, Any], upload: files.Upload, session: AsyncClientSession
) -> bool:
    """Insert the item, reference its file and count it in its dataset, in the caller's
    transaction; True when the upload's own copy of the file is kept (see files.reference).
    CONFLICT when its path or reference id is taken."""
    try:
        await db.items.insert_one(item, session=session)
    except DuplicateKeyError as exc:
        raise _taken(exc, item["filename"], item.get("referenceId")) from exc
    kept = await files.reference(db, upload, item["mimetype"], session)
    await db.datasets.update_one(
        {"_id": item["datasetId"]},
        {
            "$inc": {"itemsCount": 1},
            "$addToSet": {"directories": {"$each": directories.with_ancestors(item["dir"])}},
        },
        session=session,
    )
    return kept


async def upload_item(
    access: Access,
    dataset_id: ObjectId,
    content: IO[bytes],
    declared_mimetype: str | None,
    data: dict[str, Any],
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Store the file (once per content), then create the item and count it, atomically.
    With an idempotency key used before (for the same content), the item that key created."""
    dataset = await writable_dataset(access, dataset_id, Action.WRITE_ITEMS)
    item_input = parse(ItemInput, data)
    directories.normalise(item_input.dir)  # a bad directory is refused before the file is stored
    metadata = json_documents.check(item_input.metadata, "metadata")
    mimetype = mimetype_of(declared_mimetype, item_input.name)
    upload = await files.write(access.db, content, item_input.name)
    arguments = [str(dataset_id), data, declared_mimetype, upload.sha256]
    key = idempotency.key(access, "uploadItem", idempotency_key, arguments)
    try:
        first = await idempotency.first_result(access.db, key)
    except BaseException:
        await files.discard(access.db, upload)
        raise
    if first is not None:
        await files.discard(access.db, upload)
        return await get_item(access, first)
    item = new_item(
        access.user_id,
        dataset,
        item_input,
        mimetype,
        upload,
        metadata={"user": metadata, "system": {"originalName": item_input.name}},
    )

    async def work(session: AsyncClientSession) -> bool:
        await idempotency.hold(access.db, key, item["_id"], session)
        return await store_new_item(access.db, item, upload, session)

    try:
        kept = await in_transaction(access.db, work)
    except idempotency.Taken:
        await files.discard(access.db, upload)
        if (first := await idempotency.first_result(access.db, key)) is None:
            raise
        return await get_item(access, first)
    except BaseException:
        await files.discard(access.db, upload)
        raise
    if not kept:
        await files.discard(access.db, upload)
    return item


async def get_item(access: Access, item_id: ObjectId) -> dict[str, Any]:
    return await access.visible("items", item_id, project_field="projectId", entity="Item")


async def _writable_item(access: Access, item_id: ObjectId) -> dict[str, Any]:
    item = await get_item(access, item_id)
    await writable_dataset(access, item["datasetId"], Action.WRITE_ITEMS)
    return item


async def update_item(access: Access, item_id: ObjectId, data: dict[str, Any]) -> dict[str, Any]:
    """Rename, move, retag, describe, hide, or replace the user metadata of an item."""
    item = await _writable_item(access, item_id)
    changes = parse(ItemChanges, data)
    fields: dict[str, Any] = {}
    if changes.metadata is not None:
        fields["metadata.user"] = json_documents.check(changes.metadata, "metadata")
    for name in ("tags", "description", "hidden"):
        if getattr(changes, name) is not None:
            fields[name] = getattr(changes, name)
    if changes.reference_id is not None:
        fields["referenceId"] = changes.reference_id
    name = changes.name or item["name"]
    directory = directories.normalise(changes.dir) if changes.dir else item["dir"]
    fields.update(name=name, dir=directory, filename=directories.join(directory, name))

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        try:
            updated = await access.db.items.find_one_and_update(
                {"_id": item_id},
                {"$set": {**fields, "updatedAt": now()}},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
        except DuplicateKeyError as exc:
            raise _taken(exc, fields["filename"], changes.reference_id) from exc
        await _add_directory(access, item["datasetId"], directory, session)
        return updated

    return await in_transaction(access.db, work)


async def _add_directory(
    access: Access, dataset_id: ObjectId, directory: str, session: AsyncClientSession
) -> None:
    await access.db.datasets.update_one(
        {"_id": dataset_id},
        {"$addToSet": {"directories": {"$each": directories.with_ancestors(directory)}}},
        session=session,
    )


async def move_items(
    access: Access, dataset_id: ObjectId, item_ids: list[ObjectId], directory: str
) -> int:
    """Move items of one dataset to a directory, all or none (a name clash refuses all)."""
    target = directories.normalise(directory)
    await writable_dataset(access, dataset_id, Action.WRITE_ITEMS)
    if len(item_ids) > MAX_BATCH:
        raise LimitExceeded("maxBatch", MAX_BATCH, f"{len(item_ids)} items is too many")

    async def work(session: AsyncClientSession) -> int:
        found = await access.db.items.find(
            {"_id": {"$in": item_ids}, "datasetId": dataset_id}, {"name": 1}, session=session
        ).to_list()
        if len(found) != len(set(item_ids)):
            raise NotFound("Some items are not in this dataset")
        for item in found:
            try:
                await access.db.items.update_one(
                    {"_id": item["_id"]},
                    {
                        "$set": {
                            "dir": target,
                            "filename": directories.join(target, item["name"]),
                            "updatedAt": now(),
                        }
                    },
                    session=session,
                )
            except DuplicateKeyError as exc:
                raise _name_taken(directories.join(target, item["name"])) from exc
        await _add_directory(access, dataset_id, target, session)
        return len(found)

    return await in_transaction(access.db, work)


async def delete_items(access: Access, dataset_id: ObjectId, item_ids: list[ObjectId]) -> int:
    """Delete items with their annotations and their predictions in every model run; their
    files go when nothing else references them."""
    await writable_dataset(access, dataset_id, Action.WRITE_ITEMS)
    if len(item_ids) > MAX_BATCH:
        raise LimitExceeded("maxBatch", MAX_BATCH, f"{len(item_ids)} items is too many")
    query = {"_id": {"$in": item_ids}, "datasetId": dataset_id}

    async def work(session: AsyncClientSession) -> list[dict[str, Any]]:
        found = await access.db.items.find(query, {"sha256": 1}, session=session).to_list()
        if len(found) != len(set(item_ids)):
            raise NotFound("Some items are not in this dataset")
        removed = await access.db.annotations.delete_many(
            {"itemId": {"$in": item_ids}}, session=session
        )
        await access.db.items.delete_many(query, session=session)
        await predictions.forget_items(access.db, item_ids, session)
        await access.db.datasets.update_one(
            {"_id": dataset_id},
            {"$inc": {"itemsCount": -len(found), "annotationsCount": -removed.deleted_count}},
            session=session,
        )
        await files.unreference(access.db, Counter(item["sha256"] for item in found), session)
        return found

    found = await in_transaction(access.db, work)
    await files.collect(access.db, list({item["sha256"] for item in found}))
    return len(found)


async def duplicates(access: Access, dataset_id: ObjectId, limit: int) -> list[dict[str, Any]]:
    """Groups of items sharing the same content (DataRobot's duplicate images), largest first."""
    await get_dataset(access, dataset_id)
    pipeline = [
        {"$match": {"datasetId": dataset_id}},
        {"$group": {"_id": "$sha256", "count": {"$sum": 1}, "itemIds": {"$push": "$_id"}}},
        {"$match": {"count": {"$gt": 1}}},
        {"$sort": {"count": -1, "_id": 1}},
        {"$limit": limit},
    ]
    return await (await access.db.items.aggregate(pipeline)).to_list()


SORTABLE = frozenset({"filename", "name", "createdAt", "updatedAt", "size", "_id"})
"""Fields every item has, each with a `{datasetId, field, _id}` index: a page is one index
range, however deep."""
SCANNED_SORTS = frozenset({"dir", "type", "mimetype", "hidden", "annotated", "width", "height"})
"""Also sortable, as is any `metadata.user.<path>`, without an index (MongoDB 6.0 has no
compound wildcard index, and `{datasetId, metadata.user.x, _id}` for every x is not possible):
each page reads every matching item of the dataset and keeps the best `first` (a top-k sort).
Their values may be missing or of mixed kinds: cursors over them are loose (pagination.py)."""
MAX_SCANNED_SORT_ITEMS = 100_000
"""Items a dataset may hold for a sort without an index: bounds what one page reads."""


@dataclass(frozen=True)
class ItemSource:
    """Where pages of items are read: datasets' live items, or dataset versions' copies of
    them (resolvers/versions/snapshots.py), which hold the original id under `id_field` and
    their annotations inside."""

    items: str
    parent_field: str
    parents: str
    id_field: str
    in_version: bool


LIVE = ItemSource("items", "datasetId", "datasets", "_id", False)
IN_VERSION = ItemSource("version_items", "versionId", "dataset_versions", "itemId", True)


def _sort_keys(sort: Sort, source: ItemSource) -> list[str]:
    """The keys of `sort` that have no index; BAD_USER_INPUT for keys that are not sortable."""
    sortable = SORTABLE | {source.id_field}
    scanned = [
        field
        for field, _ in sort
        if field not in sortable and (field in SCANNED_SORTS or field.startswith("metadata.user."))
    ]
    unsortable = [f for f, _ in sort if f not in sortable and f not in scanned]
    if unsortable:
        raise BadUserInput(
            f"Items can be ordered by {', '.join(sorted(SORTABLE - {'_id'}))} (indexed), "
            f"{', '.join(sorted(SCANNED_SORTS))} and metadata.user.<path>, "
            f"not {', '.join(unsortable)}",
            field="sort",
        )
    return scanned


async def _check_scan(
    access: Access, source: ItemSource, parent_ids: list[ObjectId], scanned: list[str]
) -> None:
    parents = access.db[source.parents].find({"_id": {"$in": parent_ids}}, {"itemsCount": 1})
    largest = max([d["itemsCount"] async for d in parents], default=0)
    if largest > MAX_SCANNED_SORT_ITEMS:
        raise LimitExceeded(
            "maxScannedSortItems",
            MAX_SCANNED_SORT_ITEMS,
            f"ordering by {', '.join(scanned)} reads every item of a dataset, and one holds "
            f"{largest}; order by an indexed field ({', '.join(sorted(SORTABLE - {'_id'}))})",
        )


async def joined(
    db: AsyncDatabase, source: ItemSource, parent_ids: list[ObjectId], join: dql.DqlJoin
) -> dict[str, Any]:
    """The clause keeping the items (of these datasets, or versions) that have an annotation
    matching a DQL join: a version's items hold theirs, a dataset's are looked up."""
    if source.in_version:
        return {"annotations": {"$elemMatch": join.filter}}
    item_ids = await db.annotations.distinct(
        "itemId", {"$and": [{"datasetId": {"$in": parent_ids}}, join.filter]}
    )
    return {"_id": {"$in": item_ids}}


async def items_of_datasets(
    access: Access,
    dataset_ids: list[ObjectId],
    dql_input: Any,
    page: PageRequest,
    sort: Sort | None = None,
    source: ItemSource = LIVE,
) -> dict[ObjectId, Page]:
    """A page of items for each of several visible datasets (or versions, from
    `IN_VERSION`), in one round trip (two with an annotations join): filtered by DQL (a bare
    filter or a whole DQL query), ordered by `sort`, else the query's own sort, else by
    filename.

    A query's `page`/`pageSize` pick dtlpy's page (page 0 first) of that order; `first`/`after`
    then walk that page with cursors. Without them the cursors walk every matching item."""
    clauses: list[dict[str, Any]] = [await access.scope()]
    if dql_input is not None:
        query = dql.parse(dql.envelope("items", dql_input), in_version=source.in_version)
        clauses.append(query.filter)
        if query.join is not None:
            clauses.append(await joined(access.db, source, dataset_ids, query.join))
        sort = sort or query.sort
        if query.window is not None:
            page = replace(page, window=Window(*query.window))
    sort = sort or [("filename", 1)]
    scanned = _sort_keys(sort, source)
    if scanned:
        await _check_scan(access, source, dataset_ids, scanned)
    return await paginate_many(
        access.db[source.items],
        source.parent_field,
        dataset_ids,
        {"$and": clauses},
        page,
        sort=sort,
        loose=scanned,
    )
