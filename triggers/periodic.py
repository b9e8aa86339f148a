"""Work every worker repeats in the background: its heartbeat, the sweeps, the reaper.

A round that fails (MongoDB or Redis unreachable for a moment, a failover) is logged and the next
round comes as usual: a loop that died with its first error would leave its worker running
without it, silently.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("loom.worker")


async def every(
    interval_s: float, name: str, work: Callable[[], Awaitable[None]], first_in: float = 0
) -> None:
    """Run `work` every `interval_s`, the first time after `first_in`."""
    await asyncio.sleep(first_in)
    while True:
        try:
            await work()
        except Exception:
            log.exception("%s failed; next round in %.0f s", name, interval_s)
        await asyncio.sleep(interval_s)
