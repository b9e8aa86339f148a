"""GraphiQL, served by the gateway itself: the page at GET /graphql and its assets.

The page is built from console/ (`make frontend`) into gateway/static/graphiql/ and shipped in
the Python package, so it needs no CDN and works on a machine without internet. Asset file
names carry a content hash: they are cached for a year and never revalidated. The page itself
names the current hashes, so browsers revalidate it on every load.

The Content-Security-Policy keeps the page to its own origin: a dependency that tried to
load a font, a script or telemetry from elsewhere would be blocked by the browser.
"""

import os
from pathlib import Path

from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

BUILD = Path(__file__).resolve().parent / "static" / "graphiql"
ASSETS_PATH = "/graphiql/assets"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "worker-src 'self'",
        # Monaco positions its widgets with inline styles.
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>GraphiQL is not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>GraphiQL is not built</h1>
<p>This gateway serves GraphiQL from <code>gateway/static/graphiql/</code>, which is built from
<code>console/</code>. Build it with <code>make frontend</code> (<code>make dev</code> and
<code>make test</code> build it too), or by hand: <code>cd console &amp;&amp; npm ci &amp;&amp;
npm run build</code>. It needs Node.js 20.19 or later.</p>
<p>GraphQL itself works meanwhile: POST queries to this URL.</p>
</body></html>
"""


def page(build: Path = BUILD) -> Response:
    """The page for a browser's GET /graphql, or, if the build is missing, how to build it.

    Read on every request (a human opening a tab, not a hot path) so that a rebuild is served
    without restarting the gateway.
    """
    try:
        html = (build / "index.html").read_text(encoding="utf-8")
    except FileNotFoundError:
        return HTMLResponse(NOT_BUILT, status_code=503, headers={"Cache-Control": "no-store"})
    return HTMLResponse(
        html,
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


class HashedAssets(StaticFiles):
    """The build's assets: content-hashed names, so each one can be cached forever."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    async def check_config(self) -> None:
        """A missing build answers 404 per asset (the page explains how to build it); it must
        not turn every asset request into a 500."""


def assets(build: Path = BUILD) -> HashedAssets:
    return HashedAssets(directory=build / "assets", check_dir=False)
