"""Liveness and readiness.

`/healthz` says the process serves requests. `/readyz` asks MongoDB and Redis themselves, each
within a short timeout, and answers 503 naming whichever failed; the drivers reconnect on their
own, so readiness returns when the dependency does, without a restart.
"""

import asyncio
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.connections import Connections


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _check(name: str, probe: Awaitable[Any], limit_s: float) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(probe, limit_s)
    except Exception as exc:
        return name, f"{type(exc).__name__}: {exc}"[:300]
    return name, None


async def readyz(request: Request) -> JSONResponse:
    connections: Connections = request.app.state.connections
    timeout = request.app.state.settings.readiness_timeout_s
    results = await asyncio.gather(
        _check("mongodb", connections.db.command("ping"), timeout),
        _check("redis", connections.redis.ping(), timeout),
    )
    failing = {name: reason for name, reason in results if reason is not None}
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
    return JSONResponse({"status": "ready"})
