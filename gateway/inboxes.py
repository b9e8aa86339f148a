"""A bounded inbox for one consumer of a stream that must never wait for that consumer.

The change feed hands each event to many subscribers, and a subscription group hands each
result to many WebSockets. If one of them reads slowly, blocking the producer would slow every
other consumer, and an unbounded queue would grow without limit. So the producer only ever
drops items into an inbox; a consumer a whole inbox behind is marked overflowed, and on its next
read learns that it was dropped.
"""

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Overflowed(Exception):
    """The consumer fell a whole inbox behind and was dropped."""


class _Signal:
    """What an inbox can hold besides items: the end of the stream, or the drop."""


_CLOSED = _Signal()
_DROPPED = _Signal()


class Inbox(Generic[T]):
    def __init__(self, size: int) -> None:
        self.size = size
        self.overflowed = False
        self._queue: asyncio.Queue[T | _Signal] = asyncio.Queue()

    def put(self, item: T) -> None:
        """Deliver `item`, or drop the consumer if it already has `size` items waiting."""
        if self.overflowed:
            return
        if self._queue.qsize() >= self.size:
            self.overflowed = True
            self._queue.put_nowait(_DROPPED)
            return
        self._queue.put_nowait(item)

    def drop(self) -> None:
        """Drop the consumer now, whatever it has waiting: its next read says so."""
        if not self.overflowed:
            self.overflowed = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_DROPPED)

    def close(self) -> None:
        """The stream ended: the consumer gets what is waiting, then the end."""
        self._queue.put_nowait(_CLOSED)

    async def get(self) -> T:
        """The next item; StopAsyncIteration at the end, Overflowed once dropped."""
        item = await self._queue.get()
        if item is _DROPPED:
            raise Overflowed
        if isinstance(item, _Signal):
            raise StopAsyncIteration
        return item

    def __aiter__(self) -> "Inbox[T]":
        return self

    async def __anext__(self) -> T:
        return await self.get()
