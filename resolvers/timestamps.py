"""The audit fields every Loom document carries."""

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId


def now() -> datetime:
    """Now, at MongoDB's millisecond precision, so what we return equals what we stored."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def new_document(creator: ObjectId | None, **fields: Any) -> dict[str, Any]:
    moment = now()
    return {
        "_id": ObjectId(),
        **fields,
        "createdAt": moment,
        "updatedAt": moment,
        "creator": creator,
    }
