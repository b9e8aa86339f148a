"""Waiting out MongoDB and Redis being briefly away, on the worker side.

An election takes seconds (10 to 12 with MongoDB's default settings) and a Redis restart a
few more; PyMongo waits `LOOM_MONGODB_TIMEOUT_MS` for a primary, then raises. A worker that
took that for a failure would fail executions that did nothing wrong, lose work it had taken
from a queue, or die. So every MongoDB and Redis call a worker makes goes through `Patience`:
an error gateway/transient.py classifies as transient means "wait and try again", with a
capped, jittered backoff, for up to `LOOM_TRANSIENT_RETRY_S` (60 s by default, longer than
any election); after that the caller gets `GaveUp`, naming the dependency, and decides what a
deliberate give-up means for its work. Any other error is raised at once: it is a bug or a
refusal, not an outage.

Patience also remembers when each dependency was last seen away: the reaper does not take a
lapsed lease for a dead worker right after an outage (the lease lapsed because nobody could
renew it, and its worker renews it as soon as it can), and a worker queues every waiting
execution again once Redis is back (what it popped, or the gateway queued, meanwhile may be
lost).
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.transient import dependency_of

T = TypeVar("T")

log = logging.getLogger("loom.worker")

FIRST_WAIT_S = 0.05
MAX_WAIT_S = 1.0
"""The longest wait between two tries: a worker resumes within a second of MongoDB's new
primary (or Redis) being back."""


class GaveUp(RuntimeError):
    """A call kept failing because `dependency` stayed away longer than the retry time."""

    def __init__(self, what: str, dependency: str, waited_s: float) -> None:
        super().__init__(f"{dependency} was unavailable for {waited_s:.0f} s while {what}")
        self.dependency = dependency


@dataclass
class Patience:
    retry_s: float
    last_away: dict[str, float] = field(default_factory=dict)
    """Per dependency ("MongoDB", "Redis"): when (monotonic) a call last found it away."""

    def away_within(self, dependency: str, seconds: float) -> bool:
        """Whether a call found `dependency` away in the last `seconds`."""
        seen = self.last_away.get(dependency)
        return seen is not None and time.monotonic() - seen < seconds

    def noticed(self, error: BaseException) -> str | None:
        """Record a transient error (returns its dependency); None for any other error."""
        dependency = dependency_of(error)
        if dependency is not None:
            self.last_away[dependency] = time.monotonic()
        return dependency

    async def call(
        self, what: str, attempt: Callable[[], Awaitable[T]], retry_s: float | None = None
    ) -> T:
        """`await attempt()` until it succeeds, waiting out transient errors for up to
        `retry_s` (the configured time by default; `float("inf")` waits for as long as it
        takes). `attempt` must be safe to repeat: a write that failed may have been applied."""
        limit = self.retry_s if retry_s is None else retry_s
        started = time.monotonic()
        wait = FIRST_WAIT_S
        while True:
            try:
                return await attempt()
            except Exception as exc:
                dependency = self.noticed(exc)
                if dependency is None:
                    raise
                waited = time.monotonic() - started
                if waited >= limit:
                    raise GaveUp(what, dependency, waited) from exc
                if wait == FIRST_WAIT_S:
                    log.warning("%s unavailable while %s (%s); retrying", dependency, what, exc)
                await asyncio.sleep(min(wait * random.uniform(0.5, 1.0), limit - waited))
                wait = min(MAX_WAIT_S, wait * 2)
