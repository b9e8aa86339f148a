"""The `/graphql` endpoint: Loom's schema behind Strawberry's ASGI view.

HTTP requests authenticate with `Authorization: Bearer <key>`; WebSockets
(graphql-transport-ws) with the same value, or `apiKey`, in the `connection_init` payload —
a connection with a missing or bad key is closed with 4403 before any operation runs.
Subscriptions that ask the same thing share their results (gateway/graphql_ws.py).

Over HTTP the view speaks GraphQL over HTTP as the spec asks (gateway/http_negotiation.py):
Strawberry parses and runs the request; Loom chooses the media type and status of the answer,
refuses what is no GraphQL request with a coded error, and resolves persisted documents
(gateway/persisted_documents.py) before Strawberry runs them.
"""

from typing import Any

import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import ValidationCache
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from gateway import graphiql, query_limits
from gateway.auth_cache import MutationsClearAuthCache
from gateway.context import Context, bearer_key
from gateway.document_cache import DocumentCache, ParsedDocuments
from gateway.graphql_errors import ErrorCodes
from gateway.graphql_ws import ChangesOnlyWSHandler, GroupingTransportWSHandler
from gateway.http_negotiation import (
    JSON,
    Refused,
    headers_of,
    is_request_error,
    negotiate,
    not_acceptable,
    refusal,
    status_of,
)
from gateway.persisted_documents import DocumentRefused, PersistedDocuments, TrustedDocumentsOnly
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


def build_schema(settings: Settings, persisted: PersistedDocuments) -> strawberry.Schema:
    """The schema with its limits, caches of parsed and of validated documents (clients send
    the same few queries again and again, and parsing and validation are the largest
    per-request costs after authentication), error classification and, when only trusted
    documents may run, their check."""
    documents = ParsedDocuments(maxsize=256)
    trusted = [lambda: TrustedDocumentsOnly(persisted)] if persisted.trusted_only else []
    return LoomSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            *query_limits.extensions(settings.limits, settings.introspection),
            lambda: DocumentCache(documents),
            lambda: ValidationCache(maxsize=256),
            *trusted,
            ErrorCodes,
            MutationsClearAuthCache,
        ],
    )


class NegotiatedResponse(Response):
    """The headers and status resolvers may set, and the media type the answer will use."""

    def __init__(self, answer_media_type: str) -> None:
        super().__init__()
        self.status_code = None  # type: ignore[assignment]
        del self.headers["content-length"]
        self.answer_media_type = answer_media_type


class GraphQLEndpoint(GraphQL):
    graphql_transport_ws_handler_class = GroupingTransportWSHandler
    graphql_ws_handler_class = ChangesOnlyWSHandler

    def __init__(self, settings: Settings) -> None:
        self.persisted = PersistedDocuments(settings.trusted_documents_only)
        # Multipart uploads are safe to accept: requests authenticate with a bearer key, never
        # with a cookie, so a cross-site form cannot act as the user.
        super().__init__(
            build_schema(settings, self.persisted),
            graphql_ide="graphiql",
            multipart_uploads_enabled=True,
        )
        self.settings = settings
        self.subscription_groups = SubscriptionGroups(settings.subscription_queue_size)

    async def render_graphql_ide(self, request: Request) -> Response:
        """Loom's own GraphiQL build (gateway/graphiql.py), not Strawberry's CDN-loaded page."""
        return graphiql.page()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry's ASGI entry, except that refused HTTP requests answer with a coded
        error and the headers their status needs instead of a plain-text reason."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as refused:
            request_id = scope.get("state", {}).get("request_id") or new_request_id()
            response = refusal(refused, request_id, self.encode_json)
        await response(scope, receive, send)

    async def get_sub_response(self, request: Request | WebSocket) -> NegotiatedResponse:
        # A request nothing fits is refused once it is known to be no request for the IDE.
        return NegotiatedResponse(negotiate(request.headers.get("accept")) or JSON)

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """As Strawberry decides, except for a GET naming a persisted query by its hash."""
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if negotiate(request.headers.get("accept")) is None:
            raise not_acceptable()
        if request.method == "POST":
            content_type, _ = parse_content_type(request.content_type or "")
            if content_type not in ("application/json", "multipart/form-data"):
                raise Refused(
                    415,
                    "Send the request as application/json (or multipart/form-data to upload files)",
                )
        return await super().parse_http_body(request)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, after resolving a persisted query; a mutation sent over GET is
        refused with 405, as the spec recommends."""
        try:
            request_data.query, registration = await self.persisted.resolve(
                request_data.query, request_data.extensions, context
            )
        except DocumentRefused as refused:
            # Never cached on the way back: the next request may well register the document.
            sub_response.headers["cache-control"] = "private, no-cache, must-revalidate"
            return refused.result(context.request_id)
        try:
            result = await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as exc:
            cause = exc.__cause__
            if (
                isinstance(cause, InvalidOperationTypeError)
                and cause.operation_type == OperationType.MUTATION
            ):
                raise Refused(
                    405, "Mutations cannot be sent over GET: use POST", {"Allow": "POST"}
                ) from exc
            raise
        if registration is not None:
            await self.persisted.register(registration, result, context)
        if request.method == "GET":
            # The answer depends on the caller's key and on the media type it accepts: a cache
            # may keep it for that caller only, and must tell media types apart.
            sub_response.headers.setdefault("cache-control", "private")
            sub_response.headers["vary"] = "Accept, Authorization"
        return result

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """Strawberry's, without the `data` entry of a request that failed before execution
        began — the GraphQL spec's shape for request errors."""
        body = process_result(result)
        if is_request_error(result):
            body.pop("data", None)
        return body

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: NegotiatedResponse,
    ) -> Response:
        """Strawberry's, with the negotiated media type and the status it implies."""
        media_type = sub_response.answer_media_type
        status = sub_response.status_code or status_of(response_data, media_type)
        response = Response(
            self.encode_json(response_data),
            status_code=status,
            headers=headers_of(response_data, status),
            media_type=f"{media_type}; charset=utf-8",
        )
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response

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
