"""Waiting for state owned by another process, which offers no event to await: poll it."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], within_s: float = 30.0
) -> T:
    """Call `probe` until `accept` holds for its result; fail with the last result otherwise."""
    deadline = time.monotonic() + within_s
    while True:
        result = await probe()
        if accept(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within_s} s; last result: {result!r}")
        await asyncio.sleep(0.05)
