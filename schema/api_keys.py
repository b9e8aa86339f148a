"""API keys and `me`: who the caller is and the keys it holds."""

from datetime import datetime
from typing import Any

import strawberry

from resolvers import api_keys
from resolvers.inputs import object_id
from schema.inputs import as_input
from schema.relay import DEFAULT_PAGE_SIZE, Connection, page_request
from schema.users import User


@strawberry.type(description="An API key; its secret is shown only once, at creation.")
class ApiKey:
    id: strawberry.ID
    name: str
    hint: str = strawberry.field(description="The key's first characters, to recognise it.")
    organization_id: strawberry.ID | None = strawberry.field(
        description="The one organization this key is limited to, if any."
    )
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "ApiKey":
        return cls(
            id=strawberry.ID(str(doc["_id"])),
            name=doc["name"],
            hint=doc["hint"],
            organization_id=strawberry.ID(str(doc["orgId"])) if doc["orgId"] else None,
            created_at=doc["createdAt"],
            last_used_at=doc["lastUsedAt"],
            revoked_at=doc["revokedAt"],
        )


@strawberry.type
class CreatedApiKey:
    key: str = strawberry.field(description="The secret. Store it now: it is never shown again.")
    api_key: ApiKey


@strawberry.type(description="The authenticated caller.")
class Me(User):
    key_id: strawberry.Private[Any]

    @strawberry.field
    async def api_keys(
        self, info: strawberry.Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
    ) -> Connection[ApiKey]:
        access = await info.context.access()
        page = await api_keys.list_keys(access, page_request(info, first, after))
        return Connection.of(page, ApiKey.from_doc)

    @strawberry.field(description="The id of the key this request was made with.")
    def current_key_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.key_id))


@strawberry.input
class ApiKeyInput:
    name: str
    organization_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Limit the key to this organization."
    )


@strawberry.type
class MeQueries:
    @strawberry.field
    async def me(self, info: strawberry.Info) -> Me:
        access = await info.context.access()
        user = await info.context.loaders.users.load(access.user_id)
        base = User.from_doc(user)
        return Me(**vars(base), key_id=access.principal.key_id)


@strawberry.type
class ApiKeyMutations:
    @strawberry.mutation(description="Create an API key acting as the caller.")
    async def create_api_key(self, info: strawberry.Info, input: ApiKeyInput) -> CreatedApiKey:
        access = await info.context.access()
        key, doc = await api_keys.create_key(access, as_input(input))
        return CreatedApiKey(key=key, api_key=ApiKey.from_doc(doc))

    @strawberry.mutation(description="Revoke one of the caller's keys; it fails from now on.")
    async def revoke_api_key(self, info: strawberry.Info, id: strawberry.ID) -> ApiKey:
        access = await info.context.access()
        return ApiKey.from_doc(await api_keys.revoke_key(access, object_id(id)))
