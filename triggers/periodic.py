"""Work every worker repeats in the background: its heartbeat, the sweeps, the reaper.

A round that fails is logged and the next round comes as usual: a loop that died with its
first error would leave its worker running without it, silently. A round that meets MongoDB
or Redis away (a failover, a restart) is tried again as soon as it is back (with `patience`),
for up to one interval, instead of waiting for the next round.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from triggers.patience import GaveUp, Patience

log = logging.getLogger("loom.worker")


async def every(
    interval_s: float,
    name: str,
    work: Callable[[], Awaitable[None]],
    first_in: float = 0,
    patience: Patience | None = None,
) -> None:
    """Run `work` every `interval_s`, the first time after `first_in`."""
    await asyncio.sleep(first_in)
    while True:
        try:
            if patience is None:
                await work()
            else:
                await patience.call(name, work, retry_s=interval_s)
        except GaveUp as exc:
            log.warning("%s: %s; next round in %.0f s", name, exc, interval_s)
        except Exception:
            log.exception("%s failed; next round in %.0f s", name, interval_s)
        await asyncio.sleep(interval_s)
