"""The GraphiQL page and its assets over HTTP: what a browser is told to load and to cache."""

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway import graphiql

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
IMMUTABLE = "public, max-age=31536000, immutable"


class References(HTMLParser):
    """Every URL an HTML document makes the browser load by itself (src= and href=)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def built() -> Path:
    assert (graphiql.BUILD / "index.html").is_file(), "GraphiQL is not built: run `make frontend`"
    return graphiql.BUILD


async def test_a_browser_opening_graphql_gets_loom_s_graphiql_revalidated_on_every_load(
    http: httpx.AsyncClient, built: Path
):
    response = await http.get("/graphql", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.text == (built / "index.html").read_text()
    assert "unpkg.com" not in response.text


async def test_every_asset_the_page_names_is_served_cached_for_a_year_as_immutable(
    http: httpx.AsyncClient, built: Path
):
    page = (await http.get("/graphql", headers={"Accept": BROWSER_ACCEPT})).text
    assets = [url for url in references(page) if url.startswith("/graphiql/assets/")]
    assert {Path(url).suffix for url in assets} == {".js", ".css"}
    for url in assets:
        response = await http.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == IMMUTABLE
        assert response.content == (built / "assets" / Path(url).name).read_bytes()
    kinds = {(await http.get(url)).headers["content-type"].split(";")[0] for url in assets}
    assert kinds == {"text/javascript", "text/css"}


async def test_an_unknown_asset_is_404_and_not_cached(http: httpx.AsyncClient, built: Path):
    response = await http.get("/graphiql/assets/index-00000000.js")
    assert response.status_code == 404
    assert "immutable" not in response.headers.get("cache-control", "")


async def test_an_asset_path_cannot_reach_outside_the_build(http: httpx.AsyncClient, built: Path):
    response = await http.get("/graphiql/assets/..%2F..%2F..%2Fgraphiql.py")
    assert response.status_code == 404


async def test_graphql_queries_over_get_still_run_rather_than_showing_the_page(
    http: httpx.AsyncClient,
):
    response = await http.get("/graphql", params={"query": "{ __typename }"})
    assert response.json() == {"data": {"__typename": "Query"}}


def test_the_build_loads_nothing_from_outside_the_gateway(built: Path):
    """What the HTML and the style sheets load by themselves; scripts are watched at run time
    by the browser tests (tests/test_graphiql_browser.py) and held by the page's CSP."""
    loaded = references((built / "index.html").read_text())
    for css in (built / "assets").glob("*.css"):
        loaded += re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text())
    outside = [url for url in loaded if not url.startswith(("/graphiql/assets/", "data:"))]
    assert outside == []
    assert loaded


async def test_without_a_build_the_page_says_how_to_build_it(tmp_path: Path):
    response = graphiql.page(tmp_path)
    assert response.status_code == 503
    assert b"make frontend" in response.body
    assert b"make dev" in response.body
    app = Starlette(routes=[Mount("/graphiql/assets", app=graphiql.assets(tmp_path))])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as client:
        assert (await client.get("/graphiql/assets/index-00000000.js")).status_code == 404
