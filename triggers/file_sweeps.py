"""The workers' sweep of stored files a crash left behind (`resolvers.files.sweep`).

Every worker sweeps every `file_sweep_s`; duplicates are harmless, each deletion being atomic.
Where the last sweep of GridFS copies stopped is kept in `sweeps`, so each copy is looked at
about once, however long the workers were down; once a day one worker looks at every copy
again, for those a crash left behind after they were looked at (a content collected up to its
blob, not its copy).
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from resolvers import files
from resolvers.timestamps import now

MARK = "files"
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
EVERYTHING_EVERY = timedelta(days=1)


async def sweep_files(ctx: dict[str, Any]) -> None:
    db, settings = ctx["db"], ctx["settings"]
    started = now()
    await db.sweeps.update_one(
        {"_id": MARK}, {"$setOnInsert": {"after": BEGINNING, "wholeAt": BEGINNING}}, upsert=True
    )
    # One worker claims the day's look at every copy; the others sweep what is new.
    claimed = await db.sweeps.find_one_and_update(
        {"_id": MARK, "wholeAt": {"$lte": started - EVERYTHING_EVERY}},
        {"$set": {"wholeAt": started}},
    )
    after = BEGINNING if claimed else (await db.sweeps.find_one({"_id": MARK}))["after"]
    until = await files.sweep(db, after, timedelta(seconds=settings.file_sweep_grace_s))
    await db.sweeps.update_one({"_id": MARK}, {"$max": {"after": until}})
