"""Browser pages built from console/ and served by the gateway itself: GraphiQL at GET /graphql
(gateway/graphiql.py) and the console at /console (gateway/console.py).

Each build is shipped in the Python package, so a page needs no CDN and works on a machine
without internet. Asset file names carry a content hash: they are cached for a year and never
revalidated. The page itself names the current hashes, so browsers revalidate it on every load;
it is read on every request (a human opening a tab, not a hot path), so a rebuild is served
without restarting the gateway.

The Content-Security-Policy keeps a page to its own origin: a dependency that tried to load a
font, a script or telemetry from elsewhere would be blocked by the browser.
"""

import os
from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "worker-src 'self'",
        # Monaco (GraphiQL's editor) positions its widgets with inline styles.
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


def page(build: Path, not_built: str) -> Response:
    """The build's index.html, or, if it is missing, `not_built` (how to build it)."""
    try:
        html = (build / "index.html").read_text(encoding="utf-8")
    except FileNotFoundError:
        return HTMLResponse(not_built, status_code=503, headers={"Cache-Control": "no-store"})
    return HTMLResponse(
        html,
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


class HashedAssets(StaticFiles):
    """A build's assets: content-hashed names, so each one can be cached forever."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    async def check_config(self) -> None:
        """A missing build answers 404 per asset (the page explains how to build it); it must
        not turn every asset request into a 500."""


def assets(build: Path) -> HashedAssets:
    return HashedAssets(directory=build / "assets", check_dir=False)
