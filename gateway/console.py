"""The Loom console, served by the gateway itself: the page at /console (any path under it, so
a reload of a page's address works) and its assets under /console/assets, built from
console/src/console/ into gateway/static/console/ (see built_pages.py).

The console is an ordinary client of the public graph: it asks for an API key, keeps it in the
browser's session storage (never in a URL), and sends it as any client does.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from gateway import built_pages

BUILD = built_pages.STATIC / "console"
ASSETS_PATH = "/console/assets"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The console is not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>The console is not built</h1>
<p>This gateway serves its console from <code>gateway/static/console/</code>, which is built
from <code>console/</code>. Build it with <code>make frontend</code> (<code>make dev</code> and
<code>make test</code> build it too). It needs Node.js 20.19 or later.</p>
</body></html>
"""


def page(build: Path = BUILD) -> Response:
    return built_pages.page(build, NOT_BUILT)


async def console_page(request: Request) -> Response:
    return page()


def assets(build: Path = BUILD) -> built_pages.HashedAssets:
    return built_pages.assets(build)
