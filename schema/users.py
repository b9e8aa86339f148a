"""Users as the graph shows them."""

from datetime import datetime
from typing import Any

import strawberry


@strawberry.type(description="A person or service account, known by email.")
class User:
    id: strawberry.ID
    email: str
    name: str
    created_at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "User":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            email=doc["email"],
            name=doc["name"],
            created_at=doc["createdAt"],
        )


async def load_user(info: strawberry.Info, user_id: Any) -> User:
    return User.from_doc(await info.context.loaders.users.load(user_id))


@strawberry.type
class Membership:
    """What organization and project members share: the user, and since when."""

    user_id: strawberry.Private[Any]
    created_at: datetime

    @strawberry.field
    async def user(self, info: strawberry.Info) -> User:
        return await load_user(info, self.user_id)


@strawberry.input
class UserRefInput:
    email: str
    name: str | None = strawberry.UNSET
