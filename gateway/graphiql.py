"""GraphiQL, served by the gateway itself: the page at GET /graphql and its assets under
/graphiql/assets, built from console/ into gateway/static/graphiql/ (see built_pages.py)."""

from pathlib import Path

from starlette.responses import Response

from gateway import built_pages

BUILD = built_pages.STATIC / "graphiql"
ASSETS_PATH = "/graphiql/assets"
CONTENT_SECURITY_POLICY = built_pages.CONTENT_SECURITY_POLICY

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
    """The page for a browser's GET /graphql, or, if the build is missing, how to build it."""
    return built_pages.page(build, NOT_BUILT)


def assets(build: Path = BUILD) -> built_pages.HashedAssets:
    return built_pages.assets(build)
