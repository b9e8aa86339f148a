"""Subscribers who ask the same thing share one execution of each result.

A dashboard is open in many browsers at once, each subscribed to the same operation with the
same variables. Executing the selection and encoding the result once per subscriber and change
is most of a gateway's CPU at a thousand subscribers, so subscriptions that would produce
identical results — the same caller with the same memberships, document, operation name and
variables (the grouping key, made by the WebSocket handler) — join one group. The group runs the
subscription once, encodes each result once, and every member sends the same text.

A result is sent only when it differs from the one before: a change to a document that no
selected field shows (a worker renewing an execution's lease) would otherwise send the same
payload again. Comparing the encoded text costs one string comparison per change, not
per member; a member that joined since the last result still gets the next one, whatever it is
(it has not seen the one before). Results `must_send` picks (errors) always go out.

Each member reads from its own bounded inbox (gateway/inboxes.py). A result that shows an
entity (an execution, a command — its resolver says which with `inboxes.show`) can be coalesced:
a member that falls behind, on a slow network or during a burst, is sent only the latest state
of each entity, final states always; one that stays behind longer than the group's `max_lag_s`
is dropped, while the group and the other members go on. Results that show no entity are never
coalesced: a member a whole inbox of them behind is dropped. The group ends when its last member
leaves.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from gateway.inboxes import Entity, Inbox, shown

log = logging.getLogger("loom.subscriptions")


@dataclass(frozen=True, eq=False)
class Shared:
    """One result of a group's subscription, with its encoding (None where it has none) and
    the entity it shows (None where it shows none)."""

    result: Any
    encoded: str | None
    entity: Entity | None = None


def _entity(shared: Shared) -> Entity | None:
    return shared.entity


class Group:
    def __init__(
        self,
        start: Callable[[], Awaitable[AsyncIterator[Any]]],
        encode: Callable[[Any], str | None],
        must_send: Callable[[Any], bool],
        ended: Callable[["Group"], None],
    ) -> None:
        self.members: set[Inbox[Shared]] = set()
        self._joined: set[Inbox[Shared]] = set()  # members that have not had the last result
        self._last: str | None = None
        self._encode = encode
        self._must_send = must_send
        self._ended = ended
        self._task = asyncio.create_task(self._run(start))

    def add(self, inbox: Inbox[Shared]) -> None:
        self.members.add(inbox)
        self._joined.add(inbox)

    def discard(self, inbox: Inbox[Shared]) -> None:
        self.members.discard(inbox)
        self._joined.discard(inbox)

    def cancel(self) -> None:
        self._task.cancel()

    def _recipients(self, result: Any, encoded: str | None) -> set[Inbox[Shared]]:
        """Every member, or only those that joined since the last result when this one
        repeats it."""
        repeated = encoded is not None and encoded == self._last and not self._must_send(result)
        self._last = encoded
        recipients = self._joined if repeated else self.members
        self._joined = set()
        return recipients

    async def _run(self, start: Callable[[], Awaitable[AsyncIterator[Any]]]) -> None:
        try:
            results = await start()
            async with contextlib.aclosing(results):  # type: ignore[type-var]
                async for result in results:
                    shared = Shared(result, self._encode(result), shown())
                    for inbox in self._recipients(result, shared.encoded):
                        inbox.put(shared)
        except Exception:
            log.exception("subscription group failed; its members are completed")
        finally:
            self._ended(self)
            for inbox in self.members:
                inbox.close()


class SubscriptionGroups:
    """The groups of one gateway process, by grouping key."""

    def __init__(self, inbox_size: int) -> None:
        self.inbox_size = inbox_size
        self.groups: dict[Hashable, Group] = {}

    @contextlib.asynccontextmanager
    async def join(
        self,
        key: Hashable,
        start: Callable[[], Awaitable[AsyncIterator[Any]]],
        encode: Callable[[Any], str | None],
        must_send: Callable[[Any], bool] = lambda result: False,
        max_lag_s: float = math.inf,
    ) -> AsyncIterator[Inbox[Shared]]:
        """An inbox of the results of the group `key`; `start` opens its stream if the group is
        new. Results produced before joining are not in it; every one after is, except those
        that repeat the one before (unless `must_send` them) and, while this member is behind,
        states of an entity that a later one replaced (see gateway/inboxes.py)."""
        group = self.groups.get(key)
        if group is None:
            group = Group(start, encode, must_send, lambda ended: self._forget(key, ended))
            self.groups[key] = group
        inbox: Inbox[Shared] = Inbox(self.inbox_size, _entity, max_lag_s)
        group.add(inbox)
        try:
            yield inbox
        finally:
            group.discard(inbox)
            if not group.members:
                self._forget(key, group)
                group.cancel()

    def _forget(self, key: Hashable, group: Group) -> None:
        if self.groups.get(key) is group:
            del self.groups[key]

    @property
    def member_count(self) -> int:
        return sum(len(group.members) for group in self.groups.values())
