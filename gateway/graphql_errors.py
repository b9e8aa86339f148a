"""Every GraphQL error leaves with an `extensions.code` and the request id.

- Expected failures (`LoomError`) keep their message and carry their code and details.
- Errors in the request itself (syntax, validation, variable coercion) are BAD_USER_INPUT;
  refusals by a query limit also name the limit.
- MongoDB or Redis being briefly away (an election, a restart: gateway/transient.py) is
  UNAVAILABLE with `retryAfter` (seconds; for MongoDB only once the driver waited
  `LOOM_UNAVAILABLE_WAIT_S` for a primary): the client should send the same request again —
  never a masked INTERNAL_SERVER_ERROR, which says that retrying is pointless.
- Anything else is a bug: its message is replaced, and it is logged with the request id.
"""

import logging
from collections.abc import Iterator

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import SchemaExtension

from gateway.metrics import GRAPHQL_ERRORS
from gateway.query_limits import limit_error, token_limit_of
from gateway.transient import dependency_of
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


RETRY_AFTER_S = 5
"""The `retryAfter` of errors classified where no settings are at hand."""


def classify(
    error: GraphQLError, request_id: str, retry_after_s: int = RETRY_AFTER_S
) -> GraphQLError:
    original = error.original_error
    dependency = dependency_of(original)
    if isinstance(original, LoomError):
        extensions = {**original.extensions, "code": original.code}
        formatted = _with(error, original.message, extensions)
    elif dependency is not None:
        log.warning(
            "%s unavailable request_id=%s path=%s: %s: %s",
            dependency,
            request_id,
            ".".join(map(str, error.path or ())),
            type(original).__name__,
            str(original)[:300],
        )
        formatted = _with(
            error,
            f"{dependency} is unavailable for now (a failover or a restart); "
            f"retry in {retry_after_s} s",
            {"code": "UNAVAILABLE", "retryAfter": retry_after_s},
        )
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
            context = self.execution_context.context
            retry_after_s = context.settings.unavailable_retry_after_s
            result.errors = [classify(e, context.request_id, retry_after_s) for e in errors]
