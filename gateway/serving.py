"""How uvicorn serves Loom: the one set of options `loom serve`, the tests' servers and the
benchmarks all use, so each of them runs the transport production runs.

WebSockets use uvicorn's sans-I/O `websockets` implementation. Per-message compression is off
unless `LOOM_WS_COMPRESSION` turns it on (Node's `ws`, under most graphql-ws servers, makes the
same choice): subscription messages are small JSON documents, compressing each one costs more
gateway CPU than sending it — a group's members would compress the same text once each — and
every compressing connection holds its own zlib state.
"""

import gc
from typing import Any

import uvicorn

from gateway.settings import Settings


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "lifespan": "on",
        "ws": "websockets-sansio",
        "ws_per_message_deflate": settings.ws_compression,
    }
    return uvicorn.Config(app, **{**options, **overrides})


def run(config: uvicorn.Config) -> None:
    """Serve until stopped, with the start-up heap frozen.

    Everything imported and built before serving (modules, the schema, the app) lives as long
    as the process. `gc.freeze()` moves it out of the collector's generations, so a full
    collection walks only what requests allocate instead of pausing every request in flight
    for tens of milliseconds (bench/http_baseline.py: Loom's p99 went from 42 ms to 9 ms).
    """
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run()
