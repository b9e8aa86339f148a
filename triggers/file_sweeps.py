"""The workers' sweep of stored files a crash left behind (`resolvers.files.sweep`).

Every worker sweeps every `file_sweep_s`; duplicates are harmless, each deletion being atomic.
Where the last sweep of GridFS copies stopped is kept in `sweeps`, so each copy is looked at
about once, however long the workers were down.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from resolvers import files

MARK = "files"
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


async def sweep_files(ctx: dict[str, Any]) -> None:
    db, settings = ctx["db"], ctx["settings"]
    mark = await db.sweeps.find_one({"_id": MARK})
    after = mark["after"] if mark else BEGINNING
    until = await files.sweep(db, after, timedelta(seconds=settings.file_sweep_grace_s))
    await db.sweeps.update_one({"_id": MARK}, {"$max": {"after": until}}, upsert=True)
