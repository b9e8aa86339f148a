"""Removing dataset versions — one, or all of a dataset being deleted — with their copies.

The copies go batch by batch, each batch dropping its files' references in the transaction that
deletes it, as a dataset's items do (resolvers/datasets.py).
"""

from collections import Counter
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import files
from resolvers.transactions import in_transaction

DELETE_BATCH = 1000


async def users_of(db: AsyncDatabase, version_ids: list[ObjectId]) -> list[dict[str, Any]]:
    """Models and model versions whose subsets name one of these versions."""
    query = {"subsets.datasetVersionId": {"$in": version_ids}}
    models = await db.models.find(query, {"name": 1}).to_list(10)
    versions = await db.model_versions.find(query, {"name": 1}).to_list(10)
    return models + versions


async def remove_versions(db: AsyncDatabase, version_ids: list[ObjectId]) -> None:
    """Delete versions with their copies and the file references they hold. Each version is
    first marked `deleting` (it disappears at once); a crash mid-way leaves it marked, and
    deleting it (or its dataset) again finishes the work."""
    await db.dataset_versions.update_many(
        {"_id": {"$in": version_ids}}, {"$set": {"deleting": True}}
    )

    async def next_batch(session: AsyncClientSession) -> list[dict[str, Any]]:
        """Delete a batch of copies and drop their references: only copies this transaction
        sees and deletes, so two deletions never drop a reference twice."""
        query = {"versionId": {"$in": version_ids}}
        batch = await db.version_items.find(query, {"sha256": 1}, session=session).to_list(
            DELETE_BATCH
        )
        ids = [item["_id"] for item in batch]
        await db.version_items.delete_many({"_id": {"$in": ids}}, session=session)
        await files.unreference(db, Counter(item["sha256"] for item in batch), session)
        return batch

    while batch := await in_transaction(db, next_batch):
        await files.collect(db, list({item["sha256"] for item in batch}))
    await db.dataset_versions.delete_many({"_id": {"$in": version_ids}})
