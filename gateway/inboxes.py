"""A bounded inbox for one consumer of a stream that must never wait for that consumer.

The change feed hands each event to many subscribers, and a subscription group hands each
result to many WebSockets. If one of them reads slowly, blocking the producer would slow every
other consumer, and an unbounded queue would grow without limit. So the producer only ever
drops items into an inbox, and a consumer that falls `size` items behind is either dropped or,
when the inbox knows which entity an item shows (`entity_of`), coalesced. Items that show no
entity are never coalesced: a consumer with `size` of them waiting is dropped after reading
them.

A coalescing inbox lets a burst pass: a dashboard watching a service while thousands of its
executions change wants each execution's latest state, not every step on the way. Once behind,
a new state of an entity replaces the state of it still waiting (the new one takes the place at
the end, so the inbox delivers the stream with the superseded states left out, in order — a
state that arrived after an access-change marker never moves before it). A final state is
never replaced: a later state of the same entity (a rerun) waits behind it. Each item says how
many earlier states it stands for (`coalesced` after `get`), so the consumer can tell its
client. The consumer is behind until it has read everything waiting; one that stays behind
longer than `max_lag_s`, or would hold more than `ENTITIES_PER_SLOT * size` items, is dropped:
what it holds is bounded by the distinct entities that changed while it was behind.
"""

import asyncio
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

ENTITIES_PER_SLOT = 100
"""A coalescing inbox of `size` slots holds at most this many times `size` items (100,000 at the
default size): a hard bound on its memory whatever the rate of distinct entities changing."""


@dataclass(frozen=True, slots=True)
class Entity:
    """Which entity an item shows (`key`), whether in a final state, and how many earlier
    states of it the item already stands for (coalesced by an inbox before this one)."""

    key: Hashable
    final: bool
    coalesced: int = 0


_shown: ContextVar[Entity | None] = ContextVar("shown", default=None)


def show(entity: Entity) -> None:
    """Say which entity the subscription result being produced shows. A subscription's
    resolver calls it as it yields; whoever iterates the subscription in the same task reads
    it with `shown()` — the GraphQL result itself need not select anything that names it."""
    _shown.set(entity)


def shown() -> Entity | None:
    """The entity the result just produced shows (None if it shows none), once."""
    entity = _shown.get()
    _shown.set(None)
    return entity


class Overflowed(Exception):
    """The consumer was dropped; `limit` and `maximum` name the bound it went past."""

    def __init__(self, message: str, limit: str, maximum: float) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.maximum = maximum


@dataclass(frozen=True, slots=True)
class _Held:
    """An entity's newest waiting state, while the inbox is behind."""

    token: int
    final: bool
    coalesced: int


class Inbox(Generic[T]):
    """One consumer's waiting items; only one task reads an inbox."""

    def __init__(
        self,
        size: int,
        entity_of: Callable[[T], Entity | None] | None = None,
        max_lag_s: float = math.inf,
    ) -> None:
        self.size = size
        self.coalesced = 0
        """How many earlier states of its entity the item `get` returned last replaced here."""
        self.behind_since: float | None = None
        self._entity_of = entity_of
        self._max_lag_s = max_lag_s
        self._items: OrderedDict[int, T] = OrderedDict()
        self._tokens = itertools.count()
        self._replaced: dict[int, int] = {}
        self._latest: dict[Hashable, _Held] = {}
        self._keys: dict[int, Hashable] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._dropped: Overflowed | None = None

    def coalesce(self, entity_of: Callable[[T], Entity | None], max_lag_s: float) -> None:
        """From now on, coalesce once behind, and drop the consumer only once it has been
        behind for longer than `max_lag_s`: for an inbox made by a producer that knows no
        entities (the change feed), configured by the consumer that does."""
        self._entity_of = entity_of
        self._max_lag_s = max_lag_s

    @property
    def overflowed(self) -> bool:
        return self._dropped is not None

    def __len__(self) -> int:
        """How many items wait."""
        return len(self._items)

    def put(self, item: T) -> None:
        """Deliver `item`; once `size` items wait, coalesce it — or, without `entity_of`, drop
        the consumer after what it has waiting."""
        if self._dropped is not None:
            return
        if self.behind_since is None:
            if len(self._items) < self.size:
                self._items[next(self._tokens)] = item
                self._wake()
                return
            if self._entity_of is None:
                self._overflow()
                return
            self._fall_behind()
        self._coalesce(item)

    def drop(self) -> None:
        """Drop the consumer now, whatever it has waiting: its next read says so."""
        self._drop(
            Overflowed(
                "This subscription was dropped: the gateway could no longer promise it every "
                "change; subscribe again",
                "subscriptionQueue",
                self.size,
            )
        )

    def close(self) -> None:
        """The stream ended: the consumer gets what is waiting, then the end."""
        self._closed = True
        self._wake()

    async def get(self) -> T:
        """The next item; StopAsyncIteration at the end, Overflowed once dropped."""
        while not self._items:
            if self._dropped is not None:
                raise self._dropped
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.behind_since is not None and self._lagging():
            raise self._dropped  # type: ignore[misc]
        token, item = self._items.popitem(last=False)
        self.coalesced = self._replaced.pop(token, 0) if self._replaced else 0
        if self.behind_since is not None:
            key = self._keys.pop(token, None)
            held = self._latest.get(key) if key is not None else None
            if held is not None and held.token == token:
                del self._latest[key]
            if not self._items:
                self.behind_since = None
        return item

    def __aiter__(self) -> "Inbox[T]":
        return self

    async def __anext__(self) -> T:
        return await self.get()

    def _fall_behind(self) -> None:
        """Start coalescing: note the newest waiting state of each entity."""
        assert self._entity_of is not None
        self.behind_since = time.monotonic()
        for token, waiting in self._items.items():
            entity = self._entity_of(waiting)
            if entity is not None:
                self._latest[entity.key] = _Held(token, entity.final, entity.coalesced)
                self._keys[token] = entity.key

    def _coalesce(self, item: T) -> None:
        assert self._entity_of is not None
        if self._lagging():
            return
        entity = self._entity_of(item)
        token = next(self._tokens)
        if entity is None:
            if len(self._items) - len(self._keys) >= self.size:
                self._overflow()
                return
        else:
            held = self._latest.get(entity.key)
            if held is not None and not held.final:
                del self._items[held.token]
                del self._keys[held.token]
                self._replaced[token] = self._replaced.pop(held.token, 0) + 1 + held.coalesced
            self._latest[entity.key] = _Held(token, entity.final, entity.coalesced)
            self._keys[token] = entity.key
        if len(self._items) >= ENTITIES_PER_SLOT * self.size:
            self._drop(
                Overflowed(
                    f"This subscription was dropped: it fell behind by more than "
                    f"{ENTITIES_PER_SLOT * self.size} changed entities; subscribe again",
                    "subscriptionQueue",
                    ENTITIES_PER_SLOT * self.size,
                )
            )
            return
        self._items[token] = item
        self._wake()

    def _overflow(self) -> None:
        """A whole inbox of items that cannot be coalesced waits: the consumer gets them, then
        learns it was dropped."""
        self._dropped = Overflowed(
            f"This subscription was dropped: it fell {self.size} updates behind; subscribe again",
            "subscriptionQueue",
            self.size,
        )
        self._wake()

    def _lagging(self) -> bool:
        """Drop the consumer if it has been behind for longer than the inbox allows."""
        assert self.behind_since is not None
        if time.monotonic() - self.behind_since <= self._max_lag_s:
            return False
        self._drop(
            Overflowed(
                f"This subscription was dropped: it stayed behind for more than "
                f"{self._max_lag_s:g} s; subscribe again",
                "subscriptionMaxLag",
                self._max_lag_s,
            )
        )
        return True

    def _drop(self, reason: Overflowed) -> None:
        if self._dropped is None:
            self._dropped = reason
            self._items.clear()
            self._replaced.clear()
            self._latest.clear()
            self._keys.clear()
            self.behind_since = None
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
