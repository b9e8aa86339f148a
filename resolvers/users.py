"""Users: people (or service accounts) identified by email, members of organizations."""

from typing import Any

from bson import ObjectId
from pydantic import EmailStr
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.inputs import Input, Name
from resolvers.timestamps import new_document


class UserRef(Input):
    email: EmailStr
    name: Name | None = None


async def ensure_user(
    db: AsyncDatabase,
    user: UserRef,
    creator: ObjectId | None,
    session: AsyncClientSession | None = None,
) -> dict[str, Any]:
    """The user with this email, created on first mention (emails are unique, lowercased)."""
    email = user.email.lower()
    fresh = new_document(creator, email=email, name=user.name or email.split("@")[0])
    fresh.pop("_id")
    return await db.users.find_one_and_update(
        {"email": email},
        {"$setOnInsert": fresh},
        upsert=True,
        return_document=ReturnDocument.AFTER,
        session=session,
    )
