"""GraphiQL in real headless Chromium against a real uvicorn: offline, authenticated, live.

Every request the page makes (scripts, styles, fonts, editor workers, GraphQL, WebSockets) is
recorded; anything outside the gateway's origin, or anything the page's Content-Security-Policy
refused to load, fails the test.
"""

import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from bson import ObjectId
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    WebSocket,
    expect,
)

from gateway import graphiql as graphiql_build
from tests.datasets_world import make_world
from tests.test_executions import CREATE_SERVICE, EXECUTE
from tests.waiting import eventually

LOCAL_SCHEMES = ("data:", "blob:")
# Each tab parses ~5 MB of editor code; on two busy cores that can outlast the default 5 s.
expect.set_options(timeout=20_000)
PROGRESS = "subscription($e: ID) { executionUpdated(executionId: $e) { id progress } }"


@dataclass
class GraphiQLTab:
    """A browser tab on the gateway's GraphiQL that remembers everything it loaded."""

    page: Page
    origin: str
    urls: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def record_request(self, request: Request) -> None:
        self.urls.append(request.url)

    def record_websocket(self, websocket: WebSocket) -> None:
        self.urls.append(websocket.url)

    def record_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.refused.append(message.text)

    def outside_the_gateway(self) -> list[str]:
        host = urlsplit(self.origin).netloc
        return [
            url
            for url in self.urls
            if not url.startswith(LOCAL_SCHEMES) and urlsplit(url).netloc != host
        ] + self.refused

    def editor(self, name: str) -> Locator:
        """One of GraphiQL's Monaco editors: operation, variables, request-headers, response."""
        return self.page.locator(
            f'.monaco-editor[data-uri$="-{name}.json"], .monaco-editor[data-uri$="-{name}.graphql"]'
        )

    async def replace_text(self, name: str, text: str) -> None:
        """Types into an editor as a user would: focus it, select everything, type over it,
        then delete the closing brackets and quotes Monaco added after the cursor."""
        tools = {"variables": "Variables", "request-headers": "Headers"}
        if name in tools:
            await self.page.get_by_role("button", name=tools[name], exact=True).click()
        await self.editor(name).click()
        await self.page.keyboard.press("Control+A")
        await self.page.keyboard.insert_text(text)
        await self.page.keyboard.press("Shift+Control+End")
        await self.page.keyboard.press("Delete")

    async def run(self) -> None:
        await self.page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()

    @property
    def response(self) -> Locator:
        return self.page.locator(".graphiql-response")


@pytest.fixture
async def graphiql(browser: Browser, server: str):
    """`await graphiql(session_key=None)` — a fresh tab on GET /graphql, with `session_key`
    stored in sessionStorage as the console would store it."""
    assert (graphiql_build.BUILD / "index.html").is_file(), "GraphiQL is not built: make frontend"
    contexts = []

    async def open_tab(session_key: str | None = None) -> GraphiQLTab:
        context = await browser.new_context()
        contexts.append(context)
        # Nothing may leave the machine, even if the page tried: record it, then refuse it.
        host = urlsplit(server).netloc
        await context.route(lambda url: urlsplit(url).netloc != host, lambda route: route.abort())
        if session_key is not None:
            await context.add_init_script(
                f"window.sessionStorage.setItem('loom.apiKey', {session_key!r});"
            )
        page = await context.new_page()
        tab = GraphiQLTab(page, server)
        context.on("request", tab.record_request)
        page.on("websocket", tab.record_websocket)
        page.on("console", tab.record_console)
        await page.goto(f"{server}/graphql")
        await expect(tab.editor("operation")).to_be_visible()
        return tab

    yield open_tab
    for context in contexts:
        await context.close()


async def test_a_query_typed_in_graphiql_returns_the_users_email_using_the_headers_editors_key(
    graphiql, member
):
    client, _ = await member("acme", "member", email="ada@acme.io")
    tab = await graphiql()
    await tab.replace_text("request-headers", f'{{"Authorization": "Bearer {client.key}"}}')
    await tab.replace_text("operation", "{ me { email } }")
    await tab.run()
    await expect(tab.response).to_contain_text('"email": "ada@acme.io"')
    assert tab.outside_the_gateway() == []


async def test_without_a_key_graphiql_shows_the_unauthenticated_error(graphiql):
    tab = await graphiql()
    await tab.replace_text("operation", "{ me { email } }")
    await tab.run()
    await expect(tab.response).to_contain_text("UNAUTHENTICATED")


async def test_graphiql_fills_in_the_api_key_kept_in_session_storage(graphiql, member):
    client, _ = await member("acme", "member", email="grace@acme.io")
    tab = await graphiql(session_key=client.key)
    await expect(tab.editor("request-headers")).to_contain_text(client.key)
    await tab.replace_text("operation", "{ me { email } }")
    await tab.run()
    await expect(tab.response).to_contain_text('"email": "grace@acme.io"')


async def test_the_explorer_and_the_docs_list_the_schema_loaded_by_introspection(graphiql):
    tab = await graphiql()
    await tab.page.get_by_role("button", name="Show GraphiQL Explorer").click()
    explorer = tab.page.locator(".graphiql-explorer-root")
    await expect(explorer.get_by_text("me", exact=True)).to_be_visible()
    await expect(explorer.get_by_text("organizations", exact=True)).to_be_visible()
    await tab.page.get_by_role("button", name="Show Documentation Explorer").click()
    docs = tab.page.locator(".graphiql-doc-explorer")
    await docs.get_by_role("link", name="Subscription").click()
    await expect(docs.get_by_text("executionUpdated")).to_be_visible()
    assert tab.outside_the_gateway() == []


async def test_a_subscription_in_graphiql_streams_changes_over_the_websocket_it_authenticates(
    graphiql, member, db, app
):
    world = await make_world(member)
    service = {"name": "tools", "functions": ["echo"]}
    service_id = (await world.client.data(CREATE_SERVICE, p=world.project, input=service))[
        "createService"
    ]["id"]
    execution = (
        await world.client.data(EXECUTE, s=service_id, input={"function": "echo", "input": {}})
    )["execute"]["id"]
    await app.state.feed.ready()
    tab = await graphiql()
    await tab.replace_text("request-headers", f'{{"Authorization": "Bearer {world.client.key}"}}')
    await tab.replace_text("operation", PROGRESS)
    await tab.replace_text("variables", json.dumps({"e": execution}))
    await tab.run()

    async def subscribers() -> int:
        return len(app.state.feed.subscribers)

    await eventually(subscribers, lambda n: n >= 1)
    await db.executions.update_one({"_id": ObjectId(execution)}, {"$set": {"progress.percent": 42}})
    await expect(tab.response).to_contain_text('"percent": 42')
    assert any(url.startswith("ws://") and url.endswith("/graphql") for url in tab.urls)
    assert tab.outside_the_gateway() == []
