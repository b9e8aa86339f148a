"""What a running function reports — progress and log lines — coalesced into few writes.

A function may report progress or log in a tight loop; a write per call would let one chatty
function flood MongoDB (and every subscriber). Instead the latest progress and the lines not
yet stored wait in memory, and are written together: log lines wait `GATHER_S` for what
follows them (progress does not: a dashboard shows each step), and there are at most
`WRITES_PER_WINDOW` writes in any `WINDOW_S` (one per 250 ms on average — a function
reporting a few steps a second still sees each one stored as it happens), one write at a time
so lines stay in order. What is still pending when the run ends goes into the write that ends
it: the last state is always written, and a short run (a no-op that logs a line) reports with
no write of its own.
"""

import asyncio
import collections
import logging
import time
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from resolvers import execution_runs
from resolvers.executions import MAX_LOG_LINES

log = logging.getLogger("loom.executions")

GATHER_S = 0.05
WINDOW_S = 1.0
WRITES_PER_WINDOW = 4
MAX_LINE = 2000
MAX_MESSAGE = 500


class Reports(logging.Handler):
    """One run's progress and log lines, and the FunctionContext's `progress` and `log`.

    Each run has a logger of its own (not in logging's registry, so concurrent runs of one
    function never share handlers).
    """

    def __init__(self, db: AsyncDatabase, execution: dict[str, Any]) -> None:
        super().__init__()
        self._db = db
        self._execution = execution
        self._progress: dict[str, Any] | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=MAX_LOG_LINES)
        self._written: collections.deque[float] = collections.deque(maxlen=WRITES_PER_WINDOW)
        self._writer: asyncio.Task | None = None
        self._waiting = False
        self._closed = False
        self.log = logging.Logger(f"loom.function.{execution['function']}")
        self.log.addHandler(self)

    async def progress(self, percent: int, message: str = "") -> None:
        self._progress = {
            "percent": max(0, min(100, int(percent))),
            "message": message[:MAX_MESSAGE],
        }
        self._due()

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.append(f"{record.levelname} {record.getMessage()}"[:MAX_LINE])
        self._due()

    def _due(self) -> None:
        """Make sure a write is on its way: now if the window allows, else when it does."""
        if self._writer is not None or self._closed:
            return  # the write under way, or the next one, takes what is pending now
        wait = 0.0 if self._progress is not None else GATHER_S
        if len(self._written) == WRITES_PER_WINDOW:
            wait = max(wait, self._written[0] + WINDOW_S - time.monotonic())
        self._writer = asyncio.get_running_loop().create_task(self._write(wait))

    async def _write(self, wait: float) -> None:
        self._waiting = True
        await asyncio.sleep(wait)
        self._waiting = False
        progress, lines = self._take()
        self._written.append(time.monotonic())
        try:
            await execution_runs.report(self._db, self._execution, progress, lines)
        except Exception:
            log.warning("storing the reports of execution %s failed", self._execution["_id"])
            self._put_back(progress, lines)
        finally:
            self._writer = None
        if self._progress is not None or self._lines:
            self._due()

    def _take(self) -> tuple[dict[str, Any] | None, list[str]]:
        progress, lines = self._progress, list(self._lines)
        self._progress = None
        self._lines.clear()
        return progress, lines

    def _put_back(self, progress: dict[str, Any] | None, lines: list[str]) -> None:
        if self._progress is None:
            self._progress = progress
        self._lines.extendleft(reversed(lines))

    async def settle(self) -> tuple[dict[str, Any] | None, list[str]]:
        """Stop writing; what is not stored yet, for the write that ends the run. A write
        already sent is awaited (its lines come before the rest), one only scheduled is not."""
        self._closed = True
        writer = self._writer
        if writer is not None:
            if self._waiting:
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        self._writer = None
        return self._take()
