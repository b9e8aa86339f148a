"""Every GraphQL error leaves with an `extensions.code` and the request id.

- Expected failures (`LoomError`) keep their message and carry their code and details.
- Errors in the request itself (syntax, validation, variable coercion) are BAD_USER_INPUT;
  refusals by a query limit also name the limit.
- Anything else is a bug: its message is replaced, and it is logged with the request id.
"""

import logging
from collections.abc import Iterator

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import SchemaExtension

from gateway.metrics import GRAPHQL_ERRORS
from gateway.query_limits import limit_error, token_limit_of
from resolvers.errors import LoomError

log = logging.getLogger("loom.graphql")


def _with(error: GraphQLError, message: str, extensions: dict[str, object]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


def classify(error: GraphQLError, request_id: str) -> GraphQLError:
    original = error.original_error
    if isinstance(original, LoomError):
        extensions = {**original.extensions, "code": original.code}
        formatted = _with(error, original.message, extensions)
    elif error.path is None:
        maximum = token_limit_of(error) if isinstance(error, GraphQLSyntaxError) else None
        if maximum is not None:
            formatted = limit_error("maxTokens", maximum, "The query has too many tokens")
        else:
            formatted = _with(
                error, error.message, {"code": "BAD_USER_INPUT", **(error.extensions or {})}
            )
    else:
        log.error(
            "unexpected error request_id=%s path=%s",
            request_id,
            ".".join(map(str, error.path)),
            exc_info=original or error,
        )
        formatted = _with(error, "Internal server error", {"code": "INTERNAL_SERVER_ERROR"})
    formatted.extensions = {**(formatted.extensions or {}), "requestId": request_id}
    GRAPHQL_ERRORS.labels(formatted.extensions["code"]).inc()
    return formatted


class ErrorCodes(SchemaExtension):
    """Classifies the errors of single results and of each result a subscription streams."""

    def on_operation(self) -> Iterator[None]:
        self._streamed = False
        yield
        if not self._streamed:
            self._classify(self.execution_context.result)

    def on_stream_result(self, result: object) -> Iterator[None]:
        self._streamed = True
        self._classify(result)
        yield

    def _classify(self, result: object) -> None:
        errors = getattr(result, "errors", None)
        if errors:
            request_id = self.execution_context.context.request_id
            result.errors = [classify(e, request_id) for e in errors]
