"""Idempotency keys: a mutation retried with the same key returns its first answer and creates
nothing new.

A client that lost an answer (a timeout, a dropped connection, an UNAVAILABLE during an
election) cannot know whether its mutation committed; sending it again with the same
`idempotencyKey` is safe. The key is stored in `idempotency_keys` with `_id` = (the caller's
user id, the mutation's name, the key) — so another user's equal key is another key — and the
id of what the mutation created, for 24 hours (a TTL index on `createdAt`; an older key found
before MongoDB's TTL monitor removed it counts as gone).

The key's insert is the lock: it is made in the same transaction as the creation, first, so
two concurrent requests with one key create one thing — the second's insert meets the first's
(a write conflict MongoDB makes it retry until the first commits, then a duplicate key) and it
answers with the first's result instead; a creation that fails leaves no key behind. The same
key sent with different arguments is refused with CONFLICT (as Stripe does), never answered
with a result that is not what was asked for.
"""

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from bson import ObjectId
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from resolvers.access import Access
from resolvers.errors import BadUserInput, Conflict
from resolvers.timestamps import now
from resolvers.transactions import in_transaction

T = TypeVar("T")

KEPT = timedelta(hours=24)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Key:
    id: dict[str, Any]
    fingerprint: str


class Taken(Exception):
    """The key was stored first by another request (or an earlier one)."""


def key(access: Access, mutation: str, value: str | None, arguments: Any) -> Key | None:
    """The caller's key for this mutation with these arguments; None when none was sent."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise BadUserInput(
            f"idempotencyKey must have 1 to {MAX_KEY_LENGTH} characters", field="idempotencyKey"
        )
    canonical = json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))
    return Key(
        {"userId": access.user_id, "mutation": mutation, "key": value},
        hashlib.sha256(canonical.encode()).hexdigest(),
    )


async def first_result(db: AsyncDatabase, key: Key | None) -> ObjectId | None:
    """The id the key's first request created, if the key was used within 24 hours; CONFLICT
    if it was used with other arguments."""
    if key is None:
        return None
    stored = await db.idempotency_keys.find_one({"_id": key.id})
    if stored is None or stored["createdAt"] < now() - KEPT:
        return None
    if stored["fingerprint"] != key.fingerprint:
        raise Conflict(
            f"idempotencyKey {key.id['key']!r} was used with other arguments for "
            f"{key.id['mutation']}; use a new key for a new request",
            field="idempotencyKey",
        )
    return stored["resultId"]


async def hold(
    db: AsyncDatabase, key: Key | None, result_id: ObjectId, session: AsyncClientSession
) -> None:
    """Store the key in the creation's transaction (call it first); Taken if it is stored."""
    if key is None:
        return
    await db.idempotency_keys.delete_one(
        {"_id": key.id, "createdAt": {"$lt": now() - KEPT}}, session=session
    )
    try:
        await db.idempotency_keys.insert_one(
            {
                "_id": key.id,
                "fingerprint": key.fingerprint,
                "resultId": result_id,
                "createdAt": now(),
            },
            session=session,
        )
    except DuplicateKeyError as exc:
        raise Taken from exc


async def once(
    db: AsyncDatabase,
    key: Key | None,
    result_id: ObjectId,
    create: Callable[[AsyncClientSession | None], Awaitable[None]],
) -> ObjectId | None:
    """Create (in a transaction with the key, when there is one); None when it was created
    now, the first request's result id when the key was taken."""
    if key is None:
        await create(None)
        return None

    async def work(session: AsyncClientSession) -> None:
        await hold(db, key, result_id, session)
        await create(session)

    try:
        await in_transaction(db, work)
    except Taken:
        first = await first_result(db, key)
        if first is None:
            raise
        return first
    return None
