"""Multi-document writes that land whole or not at all."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

T = TypeVar("T")


async def in_transaction(
    db: AsyncDatabase, work: Callable[[AsyncClientSession], Awaitable[T]]
) -> T:
    """Run `work` in a transaction; an exception from it aborts everything it wrote.

    `with_transaction` retries transient conflicts, so `work` must be safe to run again.
    """
    async with db.client.start_session() as session:
        return await session.with_transaction(work)
