"""Prometheus metrics: requests, latency and GraphQL errors by code, served at `/metrics`."""

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("loom_http_requests_total", "HTTP requests served", ["method", "path", "status"])
LATENCY = Histogram(
    "loom_http_request_duration_seconds",
    "Time to serve an HTTP request",
    ["path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRAPHQL_ERRORS = Counter("loom_graphql_errors_total", "GraphQL errors returned", ["code"])

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


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
