"""The whole content of a test database, to prove a refused request wrote nothing."""

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

IGNORED = {"workers"}
"""Collections that change on their own (heartbeats), not through requests."""

VOLATILE_FIELDS = {"lastUsedAt"}
"""Fields that every authenticated request may touch by design."""


async def snapshot(db: AsyncDatabase) -> dict[str, list[dict[str, Any]]]:
    content = {}
    for name in sorted(await db.list_collection_names()):
        if name in IGNORED:
            continue
        docs = await db[name].find().sort("_id").to_list()
        content[name] = [{k: v for k, v in d.items() if k not in VOLATILE_FIELDS} for d in docs]
    return content
