"""The `/graphql` endpoint: Loom's schema behind Strawberry's ASGI view.

HTTP requests authenticate with `Authorization: Bearer <key>`; WebSockets
(graphql-transport-ws) with the same value, or `apiKey`, in the `connection_init` payload —
a connection with a missing or bad key is closed with 4403 before any operation runs.
Subscriptions that ask the same thing share their results (gateway/graphql_ws.py).
"""

from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import ValidationCache
from strawberry.types import ExecutionContext

from gateway import query_limits
from gateway.auth_cache import MutationsClearAuthCache
from gateway.context import Context, bearer_key
from gateway.document_cache import DocumentCache, ParsedDocuments
from gateway.graphql_errors import ErrorCodes
from gateway.graphql_ws import GroupingTransportWSHandler
from gateway.request_ids import new_request_id
from gateway.settings import Settings
from gateway.subscription_groups import SubscriptionGroups
from resolvers.errors import Unauthenticated
from schema.root import Mutation, Query
from schema.subscriptions import Subscription


class LoomSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Errors are logged by ErrorCodes (only the unexpected ones), not all of them here."""


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with its limits, caches of parsed and of validated documents (clients send
    the same few queries again and again, and parsing and validation are the largest
    per-request costs after authentication), and error classification."""
    documents = ParsedDocuments(maxsize=256)
    return LoomSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            *query_limits.extensions(settings.limits),
            lambda: DocumentCache(documents),
            lambda: ValidationCache(maxsize=256),
            ErrorCodes,
            MutationsClearAuthCache,
        ],
    )


class GraphQLEndpoint(GraphQL):
    graphql_transport_ws_handler_class = GroupingTransportWSHandler

    def __init__(self, settings: Settings) -> None:
        # Multipart uploads are safe to accept: requests authenticate with a bearer key, never
        # with a cookie, so a cross-site form cannot act as the user.
        super().__init__(
            build_schema(settings), graphql_ide="graphiql", multipart_uploads_enabled=True
        )
        self.settings = settings
        self.subscription_groups = SubscriptionGroups(settings.subscription_queue_size)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        request_id = request.scope.get("state", {}).get("request_id") or new_request_id()
        api_key = bearer_key(request.headers) if isinstance(request, Request) else None
        return Context(
            request.app.state.connections,
            self.settings,
            request_id,
            api_key,
            request.app.state.feed,
        )

    async def on_ws_connect(self, context: Context) -> dict[str, Any] | None:
        params = context.connection_params or {}
        key = bearer_key(params) or params.get("apiKey")
        if not isinstance(key, str):
            raise ConnectionRejectionError({"message": "Send an API key in connection_init"})
        context.api_key = key
        try:
            access = await context.access()
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"message": exc.message}) from exc
        return {"userId": str(access.user_id)}
