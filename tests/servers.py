"""Real servers for tests that depend on the transport: uvicorn on a free loopback port."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from gateway.serving import uvicorn_config
from gateway.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def running_uvicorn(app: ASGIApp, settings: Settings, **overrides: Any) -> AsyncIterator[str]:
    """Served as `loom serve` serves it (but for `overrides` of uvicorn's options); the app's
    lifespan is the caller's."""
    port = free_port()
    options = {"host": "127.0.0.1", "port": port, "lifespan": "off", **overrides}
    config = uvicorn_config(app, settings, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{options['port']}"
    finally:
        server.should_exit = True
        await task
