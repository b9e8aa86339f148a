"""The console in real headless Chromium against a real uvicorn and a real worker: signing in
with a key, a worker's status changes on the executions page within a second and without a
reload, tenants and roles kept apart, screenshots of each page, and an accessibility check.

Screenshots (1280 x 800) are written to .artifacts/console/, which is never committed.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from bson import ObjectId
from playwright.async_api import Browser, BrowserContext, Page, expect

from gateway import console as console_build
from resolvers.access import OrgRole, ProjectRole
from tests.conftest import REPO
from tests.datasets_world import make_world
from tests.test_executions import CREATE_SERVICE, EXECUTE
from tests.test_roles import Case, project_caller
from tests.workers import start_worker, stop

ARTIFACTS = REPO / ".artifacts" / "console"
AXE = REPO / "console" / "node_modules" / "axe-core" / "axe.min.js"
TERMINATE = "mutation($id: ID!) { terminateExecution(id: $id) { id } }"
expect.set_options(timeout=20_000)

SEEN_AS = """([id, status]) => new Promise((resolve) => {
  const seen = () => {
    const cell = document.querySelector(`tr[data-execution="${id}"] td[data-status]`);
    if (cell && cell.textContent === status) { resolve(Date.now()); return true; }
    return false;
  };
  if (!seen()) {
    const watch = new MutationObserver(() => { if (seen()) watch.disconnect(); });
    watch.observe(document.body, { subtree: true, childList: true, characterData: true });
  }
})"""
"""When (the browser's clock, ms) an execution's row first shows a status."""

Opener = Callable[..., Awaitable[Page]]


@pytest.fixture
async def console(browser: Browser, server: str) -> AsyncIterator[Opener]:
    """`await console(key=None, path="/console/")` — a fresh 1280 x 800 tab on the console,
    signed in with `key` (typed into the sign-in form, as a user would) if one is given.
    Nothing may leave the machine: any request elsewhere is aborted."""
    assert (console_build.BUILD / "index.html").is_file(), "the console is not built: make frontend"
    contexts: list[BrowserContext] = []

    async def open_tab(key: str | None = None, path: str = "/console/", **options) -> Page:
        context = await browser.new_context(viewport={"width": 1280, "height": 800}, **options)
        contexts.append(context)
        host = urlsplit(server).netloc
        await context.route(lambda url: urlsplit(url).netloc != host, lambda route: route.abort())
        page = await context.new_page()
        await page.goto(f"{server}{path}")
        if key is not None:
            await page.get_by_label("API key").fill(key)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        return page

    yield open_tab
    for context in contexts:
        await context.close()


async def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


async def _service_with_executions(world, n: int = 1) -> tuple[str, list[str]]:
    created = await world.client.data(
        CREATE_SERVICE, p=world.project, input={"name": "tools", "functions": ["echo"]}
    )
    service = created["createService"]["id"]
    executions = [
        (
            await world.client.data(
                EXECUTE, s=service, input={"function": "echo", "input": {"n": k}}
            )
        )["execute"]["id"]
        for k in range(n)
    ]
    return service, executions


async def test_a_refused_key_is_said_and_a_good_one_opens_the_projects_executions(console, member):
    world = await make_world(member)
    await _service_with_executions(world, 2)
    page = await console()
    await page.get_by_label("API key").fill("loom_not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("UNAUTHENTICATED")
    await page.get_by_label("API key").fill(world.client.key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Executions · Vision")).to_be_visible()
    await expect(page.locator("tr[data-execution]")).to_have_count(2)
    counts = page.locator('tr[data-service="all"] td[data-status="created"]')
    await expect(counts).to_have_text("2")
    assert world.client.key not in page.url
    assert urlsplit(page.url).path == f"/console/projects/{world.project}/executions"
    kept = await page.evaluate("sessionStorage.getItem('loom.console.apiKey')")
    assert kept == world.client.key
    await page.reload()
    await expect(page.locator("tr[data-execution]")).to_have_count(2)
    await _screenshot(page, "executions")


async def test_a_status_change_a_worker_makes_shows_within_a_second_without_a_reload(
    console, member, db, app, settings
):
    world = await make_world(member)
    _, [execution] = await _service_with_executions(world)
    await app.state.feed.ready()
    page = await console(world.client.key)
    row = page.locator(f'tr[data-execution="{execution}"]')
    await expect(row.locator("td[data-status]")).to_have_text("created")
    await expect(page.get_by_role("status")).to_have_text("Live")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    seen = asyncio.create_task(page.evaluate(SEEN_AS, [execution, "success"]))
    worker = start_worker(settings)
    try:
        shown_at_ms = await asyncio.wait_for(seen, timeout=60)
    finally:
        stop(worker)
    done = await db.executions.find_one({"_id": ObjectId(execution)})
    assert done["status"] == "success"
    changed_at_ms = done["updatedAt"].timestamp() * 1000
    assert shown_at_ms - changed_at_ms <= 1000, (shown_at_ms, changed_at_ms)
    assert navigations == []
    success = page.locator('tr[data-service="all"] td[data-status="success"]')
    await expect(success).to_have_text("1")
    await row.get_by_role("button", name="echo").click()
    detail = page.get_by_role("complementary", name=f"Execution {execution}")
    await expect(detail.locator(".status-log li")).to_have_count(3)
    await expect(detail).to_contain_text('"n": 0')
    await _screenshot(page, "execution-detail")


async def test_another_organizations_user_sees_none_of_it(console, member):
    world = await make_world(member)
    await _service_with_executions(world)
    rival = await make_world(member, org="rival")
    page = await console(rival.client.key)
    await expect(page.get_by_role("heading", name="Executions · Vision")).to_be_visible()
    assert urlsplit(page.url).path == f"/console/projects/{rival.project}/executions"
    await expect(page.locator("tr[data-execution]")).to_have_count(0)
    options = await page.get_by_label("Project").locator("option").all_inner_texts()
    assert options == ["rival / Vision"] or all(world.project not in o for o in options)
    await page.goto(page.url.replace(rival.project, world.project))
    await expect(page.get_by_role("alert")).to_contain_text("NOT_FOUND")
    await expect(page.locator("tr[data-execution]")).to_have_count(0)


async def test_an_annotator_sees_no_terminate_or_rerun_and_the_graph_refuses_them_anyway(
    console, member
):
    world = await make_world(member)
    _, [execution] = await _service_with_executions(world)
    callers = {
        "annotator": await project_caller(
            member, world, Case(OrgRole.MEMBER, ProjectRole.ANNOTATOR)
        ),
        "developer": await project_caller(
            member, world, Case(OrgRole.MEMBER, ProjectRole.DEVELOPER)
        ),
    }
    for role, client in callers.items():
        page = await console(client.key, path=f"/console/projects/{world.project}/executions")
        await page.locator(f'tr[data-execution="{execution}"]').get_by_role("button").click()
        detail = page.get_by_role("complementary", name=f"Execution {execution}")
        await expect(detail.get_by_role("heading", name="Status log")).to_be_visible()
        buttons = detail.get_by_role("button", name="Terminate")
        await expect(buttons).to_have_count(1 if role == "developer" else 0)
        await expect(detail.get_by_role("button", name="Rerun")).to_have_count(
            1 if role == "developer" else 0
        )
    refused = await callers["annotator"].execute(TERMINATE, id=execution)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_executions_page_has_no_serious_accessibility_violations(console, member):
    world = await make_world(member)
    await _service_with_executions(world, 3)
    # axe-core is injected as an inline script, which the console's own CSP rightly forbids.
    page = await console(world.client.key, bypass_csp=True)
    await expect(page.locator("tr[data-execution]")).to_have_count(3)
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    serious = [
        (violation["id"], violation["help"], [node["target"] for node in violation["nodes"]])
        for violation in found["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert serious == []
    login = await console(bypass_csp=True)
    await login.add_script_tag(path=str(AXE))
    found = await login.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    assert [v["id"] for v in found["violations"] if v["impact"] in ("serious", "critical")] == []
    await _screenshot(login, "sign-in")
