"""graphql-transport-ws as Strawberry speaks it, except that each operation authenticates
afresh (a socket whose key was revoked is closed with 4403 at its next operation) and that
subscriptions are grouped.

A subscription joins the group of subscriptions that would produce the same results (see
gateway/subscription_groups.py) and sends that group's pre-encoded results under its own
operation id. Queries and mutations sent over the socket run on their own, as do the
subscriptions a group cannot share: those refused before execution (syntax, validation, limits)
are re-run alone, so their errors are reported exactly as Strawberry reports them.

A subscription sends a result only when it differs from the last one it sent (see
gateway/subscription_groups.py): on graphql-transport-ws its group compares them; the legacy
graphql-ws protocol (subscriptions-transport-ws clients), which Strawberry's own handler serves
ungrouped, compares each operation's encoded payload with its last. (The graphql-transport-ws
subscriptions that run alone send one message: the error that refused them.) Errors and the end
of a subscription always go out.

A subscriber that falls behind (a slow network, a burst of changes) is sent only the latest
state of each execution or command, final states always (gateway/inboxes.py). A `next` (or
legacy `data`) payload that stands for earlier states not sent says how many in its
`extensions`: `{"coalesced": n}` — a response's `extensions` are the GraphQL spec's place for
what is not data, so every client passes them through or ignores them, while a field in the
selection would change the subscription's type and differ per subscriber where the group
shares one encoding. Only one that stays behind longer than `LOOM_SUBSCRIPTION_MAX_LAG_S` is
dropped with RATE_LIMITED.
"""

import contextlib
import functools
import json
from collections.abc import Hashable
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError, OperationType, get_operation_ast, parse
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from gateway.context import Context
from gateway.graphql_errors import classify
from gateway.inboxes import Inbox, Overflowed, shown
from gateway.subscription_groups import Shared
from gateway.transient import dependency_of
from resolvers.errors import RateLimited, Unauthenticated


@functools.lru_cache(maxsize=256)
def is_subscription(query: str, operation_name: str | None, max_tokens: int) -> bool:
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLSyntaxError:
        return False
    operation = get_operation_ast(document, operation_name)
    return operation is not None and operation.operation == OperationType.SUBSCRIPTION


def encode_payload(view: Any, result: ExecutionResult) -> str:
    """A result's payload as Strawberry's handlers send it, encoded by the view."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    encoded = view.encode_json(payload)
    return encoded.decode() if isinstance(encoded, bytes) else encoded


def with_coalesced(view: Any, result: ExecutionResult, encoded: str, coalesced: int) -> str:
    """The encoded payload, telling the client how many earlier states of the entity it shows
    were not sent; spliced into the text (a subscriber behind is sent many of these)."""
    if not coalesced:
        return encoded
    if result.extensions:
        extensions = {**result.extensions, "coalesced": coalesced}
        return encode_payload(view, ExecutionResult(result.data, result.errors, extensions))
    return encoded[:-1] + ',"extensions":{"coalesced":' + str(coalesced) + "}}"


def has_errors(result: Any) -> bool:
    """Whether a result carries errors: those are sent even when they repeat the last one."""
    return bool(getattr(result, "errors", None))


class GroupingTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def run_operation(self, operation: Operation[Context, None]) -> None:
        self.context.renew()
        try:
            await self.context.access()
        except Unauthenticated as exc:
            await self.websocket.close(4403, exc.message)
            return
        except Exception as exc:
            # MongoDB away (an election): this operation fails UNAVAILABLE, the socket stays.
            if dependency_of(exc) is None:
                raise
            retry_after_s = self.context.settings.unavailable_retry_after_s
            error = GraphQLError(str(exc), original_error=exc)
            await operation.send_initial_errors(
                [classify(error, self.context.request_id, retry_after_s)]
            )
            self.operations.pop(operation.id, None)
            return
        if not self._groupable(operation):
            await super().run_operation(operation)
            return
        try:
            shared = await self._run_grouped(operation)
        except Exception as error:
            # As Strawberry's own handler does: log, complete, free the id, re-raise.
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise
        if not shared:
            await super().run_operation(operation)

    def _groupable(self, operation: Operation[Context, None]) -> bool:
        query, name = operation.query, operation.operation_name
        if not isinstance(query, str) or not (name is None or isinstance(name, str)):
            return False
        return is_subscription(query, name, self.context.settings.limits.max_tokens)

    async def _run_grouped(self, operation: Operation[Context, None]) -> bool:
        """Take part in the operation's group until it ends; False if its results could not
        be shared (the caller then runs the operation alone)."""
        groups = self.view.subscription_groups  # type: ignore[attr-defined]
        key = await self._grouping_key(operation)

        async def start() -> Any:
            return await self.schema.subscribe(
                operation.query,
                variable_values=operation.variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )

        max_lag_s = self.context.settings.subscription_max_lag_s
        async with groups.join(key, start, self._encode, has_errors, max_lag_s) as inbox:
            shared = await self._send_results(operation, inbox)
        if shared:
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        return shared

    async def _send_results(
        self, operation: Operation[Context, None], inbox: Inbox[Shared]
    ) -> bool:
        """Send each shared result until the group ends or this member is dropped; False when
        the first result cannot be shared (it is no plain result). A result identical to the
        last one sent is skipped here too: coalescing may have left out the states between."""
        websocket = self.websocket.ws  # type: ignore[attr-defined]
        head = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        last: str | None = None
        try:
            async for shared in inbox:
                if shared.encoded is None:
                    return False
                if operation.completed:
                    return True
                if shared.encoded == last and not has_errors(shared.result):
                    continue
                last = shared.encoded
                coalesced = inbox.coalesced + (shared.entity.coalesced if shared.entity else 0)
                payload = with_coalesced(self.view, shared.result, shared.encoded, coalesced)
                await websocket.send_text(head + payload + "}")
        except Overflowed as dropped:
            await operation.send_initial_errors([self._dropped(dropped)])
        except WebSocketDisconnect:
            pass
        return True

    async def _grouping_key(self, operation: Operation[Context, None]) -> Hashable:
        """Subscriptions share results only when nothing that shapes them differs: the caller
        and its memberships, and the operation with its variables."""
        access = await self.context.access()
        project_roles = await access.project_roles()
        return (
            access.principal,
            tuple(sorted(access.org_roles.items())),
            tuple(sorted(project_roles.items())),
            operation.query,
            operation.operation_name,
            json.dumps(operation.variables, sort_keys=True),
        )

    def _encode(self, result: Any) -> str | None:
        """The `next` payload, as Strawberry's handler would send it."""
        if isinstance(result, PreExecutionError) or not isinstance(result, ExecutionResult):
            return None
        return encode_payload(self.view, result)

    def _dropped(self, dropped: Overflowed) -> GraphQLError:
        error = RateLimited(dropped.message, limit=dropped.limit, max=dropped.maximum)
        return classify(GraphQLError(error.message, original_error=error), self.context.request_id)


class ChangesOnlyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws protocol as Strawberry speaks it, except that an operation's
    `data` message is sent only when its payload differs from the last one sent, and says when
    it stands for states left out (here only the change feed's inbox coalesces: the operation
    reads its subscription as fast as its socket takes the messages)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_sent: dict[str, str] = {}

    async def handle_async_results(self, operation_id: str, *args: Any) -> None:
        try:
            await super().handle_async_results(operation_id, *args)
        finally:
            # A new operation under this id waits for this one to end (cleanup_operation).
            self._last_sent.pop(operation_id, None)

    async def send_data_message(self, execution_result: ExecutionResult, operation_id: str) -> None:
        entity = shown()
        encoded = encode_payload(self.view, execution_result)
        if not execution_result.errors and self._last_sent.get(operation_id) == encoded:
            return
        self._last_sent[operation_id] = encoded
        coalesced = entity.coalesced if entity else 0
        payload = with_coalesced(self.view, execution_result, encoded, coalesced)
        websocket = self.websocket.ws  # type: ignore[attr-defined]
        head = '{"type":"data","id":' + json.dumps(operation_id) + ',"payload":'
        try:
            await websocket.send_text(head + payload + "}")
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc
