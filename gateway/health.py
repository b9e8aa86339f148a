"""Liveness and readiness.

`/healthz` says the process serves requests. `/readyz` asks MongoDB and Redis themselves, each
within a short timeout, and answers 503 naming whichever failed; the drivers reconnect on their
own, so readiness returns when the dependency does, without a restart.

MongoDB's probe is bounded by PyMongo's own timeout (`pymongo.timeout`), never by cancelling
it: on Python before 3.12, cancelling an operation while it waits for a primary (an election)
can leave PyMongo's topology lock released under another task, whose next wait then fails
with `RuntimeError: cannot wait on un-acquired lock` (asyncio.wait_for, interrupted while it
cancels PyMongo's inner wait for a topology change, returns before that wait has re-acquired
the lock). Redis' client is safe to cancel.
"""

import asyncio
from collections.abc import Awaitable
from typing import Any

import pymongo
from pymongo.asynchronous.database import AsyncDatabase
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.connections import Connections


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


async def _check_mongodb(db: AsyncDatabase, limit_s: float) -> tuple[str, str | None]:
    try:
        with pymongo.timeout(limit_s):
            await db.command("ping")
    except Exception as exc:
        return "mongodb", _reason(exc)
    return "mongodb", None


async def _check(name: str, probe: Awaitable[Any], limit_s: float) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(probe, limit_s)
    except Exception as exc:
        return name, _reason(exc)
    return name, None


async def readyz(request: Request) -> JSONResponse:
    connections: Connections = request.app.state.connections
    timeout = request.app.state.settings.readiness_timeout_s
    results = await asyncio.gather(
        _check_mongodb(connections.db, timeout),
        _check("redis", connections.redis.ping(), timeout),
    )
    failing = {name: reason for name, reason in results if reason is not None}
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
    return JSONResponse({"status": "ready"})
