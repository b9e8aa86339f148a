"""Prometheus metrics: requests, latency and GraphQL errors by code, served at `/metrics`, and
the relay's state as MongoDB holds it (the relay runs in a worker, not here)."""

import logging
import time

import pymongo
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pymongo.errors import PyMongoError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resolvers.timestamps import now
from triggers.relay import lease

REQUESTS = Counter("loom_http_requests_total", "HTTP requests served", ["method", "path", "status"])
LATENCY = Histogram(
    "loom_http_request_duration_seconds",
    "Time to serve an HTTP request",
    ["path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRAPHQL_ERRORS = Counter("loom_graphql_errors_total", "GraphQL errors returned", ["code"])
RELAY_HISTORY_LOST = Gauge(
    "loom_relay_history_lost_total",
    "Times the relay found its resume token gone from MongoDB's history and started afresh",
)
RELAY_HELD = Gauge("loom_relay_lease_held", "1 while a worker holds an unexpired relay lease")
RELAY_READ_S = 1.0
log = logging.getLogger("loom.metrics")

_KNOWN_PATHS = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})
"""Paths counted under their own label; everything else (item downloads…) is "other", so
ids in paths never multiply the metric's series."""


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no per-request task or buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in _KNOWN_PATHS else "other"
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            LATENCY.labels(path).observe(time.perf_counter() - started)
            REQUESTS.labels(scope["method"], path, str(status)).inc()


async def metrics(request: Request) -> Response:
    await _read_relay(request)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _read_relay(request: Request) -> None:
    """The relay's gauges from its lease document; left as they were if MongoDB is away."""
    try:
        with pymongo.timeout(RELAY_READ_S):
            state = await lease.state(request.app.state.connections.db)
    except PyMongoError as exc:
        log.warning("could not read the relay's state: %s", exc)
        return
    state = state or {}
    RELAY_HISTORY_LOST.set(state.get("historyLost", 0))
    until = state.get("until")
    RELAY_HELD.set(1 if state.get("holder") and until and until > now() else 0)
