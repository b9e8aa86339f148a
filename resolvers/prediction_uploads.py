"""uploadPredictions: small uploads written in the request, large ones as a Command.

Up to `predictions.SYNC_LIMIT` predictions are checked and written in one transaction: all
of them, or — on any bad one, unless partial acceptance was asked for — none. Larger uploads
are stored as they came (one JSON file in GridFS) and a worker checks them all first, then
writes them a page at a time, each page in one transaction with the command's cursor (the
index of the next prediction and the counts so far): a worker killed mid-way leaves the next
one to go on from the last page written, nothing written twice.
"""

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import commands, predictions
from resolvers.access import Access
from resolvers.errors import LimitExceeded
from resolvers.model_runs import writable_model_run
from resolvers.transactions import in_transaction

KIND = "uploadPredictions"
PAGE = 1_000
BUCKET = "prediction_uploads"


def _bucket(db: AsyncDatabase) -> AsyncGridFSBucket:
    return AsyncGridFSBucket(db, bucket_name=BUCKET)


def _answer(stored: predictions.Stored, checked: predictions.Checked) -> dict[str, Any]:
    return {
        "processed": stored.processed,
        "ignored": stored.ignored,
        "invalid": checked.bad,
        "errors": checked.errors,
    }


async def upload_predictions(
    access: Access,
    run_id: ObjectId,
    data: list[Any],
    update: bool,
    partial: bool,
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """The counts of a written upload, or (over SYNC_LIMIT predictions) the Command writing it."""
    run = await writable_model_run(access, run_id)
    if len(data) > predictions.MAX_UPLOAD:
        raise LimitExceeded(
            "maxPredictionsPerUpload", predictions.MAX_UPLOAD, f"{len(data)} predictions"
        )
    if len(data) > predictions.SYNC_LIMIT:
        return {"command": await _start(access, run, data, update, partial, enqueue)}
    checked = await predictions.check(access.db, run, access.user_id, data)
    if checked.bad and not partial:
        raise checked.refusal()

    async def work(session: AsyncClientSession) -> predictions.Stored:
        return await predictions.store(access.db, run, checked.docs, update, session)

    return _answer(await in_transaction(access.db, work), checked)


async def _start(
    access: Access,
    run: dict[str, Any],
    data: list[Any],
    update: bool,
    partial: bool,
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    payload = json.dumps(data, separators=(",", ":"), default=str).encode()
    file_id = await _bucket(access.db).upload_from_stream(f"run-{run['_id']}.json", payload)
    command = commands.new_command(
        access,
        run,
        KIND,
        {
            "runId": run["_id"],
            "update": update,
            "partial": partial,
            "count": len(data),
            "fileId": file_id,
            "creator": access.user_id,
        },
    )
    await access.db.commands.insert_one(command)
    await enqueue(command)
    return command


async def run_upload(db: AsyncDatabase, command: dict[str, Any], lease: timedelta) -> None:
    """Check the whole upload, then write it page by page from the command's cursor."""
    spec = command["input"]
    run = await db.model_runs.find_one({"_id": spec["runId"]})
    if run is None:
        await _set_result(db, command, {"error": "the model run was deleted"})
        raise RuntimeError("the model run was deleted before its upload was written")
    try:
        stream = await _bucket(db).open_download_stream(spec["fileId"])
    except NoFile:
        return  # a previous attempt wrote everything and removed the file
    data = json.loads(await stream.read())
    checked = await predictions.check(db, run, spec["creator"], data)
    if checked.bad and not spec["partial"]:
        await _set_result(db, command, _answer(predictions.Stored(), checked))
        await _bucket(db).delete(spec["fileId"])
        raise RuntimeError(checked.refusal().message)
    cursor = command.get("cursor") or {"next": 0, "processed": 0, "ignored": 0}
    total = len(checked.docs)
    while cursor["next"] < total:
        cursor = await in_transaction(db, _page_writer(db, run, command, cursor, checked, lease))
    stored = predictions.Stored(processed=cursor["processed"], ignored=cursor["ignored"])
    await _set_result(db, command, _answer(stored, checked))
    await _bucket(db).delete(spec["fileId"])


def _page_writer(
    db: AsyncDatabase,
    run: dict[str, Any],
    command: dict[str, Any],
    cursor: dict[str, int],
    checked: predictions.Checked,
    lease: timedelta,
) -> Callable[[AsyncClientSession], Awaitable[dict[str, int]]]:
    """The transaction writing the page at `cursor` and moving the cursor past it."""
    page = checked.docs[cursor["next"] : cursor["next"] + PAGE]
    done = cursor["next"] + len(page)
    progress = 100 * done // len(checked.docs)

    async def work(session: AsyncClientSession) -> dict[str, int]:
        stored = await predictions.store(db, run, page, command["input"]["update"], session)
        after = {
            "next": done,
            "processed": cursor["processed"] + stored.processed,
            "ignored": cursor["ignored"] + stored.ignored,
        }
        await commands.advance(db, command, after, progress, lease, session)
        return after

    return work


async def _set_result(db: AsyncDatabase, command: dict[str, Any], result: dict[str, Any]) -> None:
    await db.commands.update_one(
        {"_id": command["_id"], "worker": command["worker"]}, {"$set": {"result": result}}
    )
