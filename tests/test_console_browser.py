"""The console in real headless Chromium against a real uvicorn and a real worker: signing in
with a key, a worker's status changes on the executions page within a second and without a
reload, an upload's event in the live feed, a trigger checked with testTrigger and saved, a
webhook delivery's retries, a command's progress bar, a dataset's thumbnails with their boxes,
tenants and roles kept apart, screenshots of each page, and an accessibility check.

Screenshots (1280 x 800) are written to .artifacts/console/, which is never committed.
"""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from bson import ObjectId
from playwright.async_api import Browser, BrowserContext, Page, expect
from starlette.responses import Response

from gateway import console as console_build
from gateway import demo
from gateway.settings import Settings
from resolvers.access import OrgRole, ProjectRole
from tests.conftest import REPO
from tests.datasets_world import image_bytes, make_world
from tests.servers import free_port, running_uvicorn
from tests.test_dataset_versions import ADD_LABELS, CREATE_MANY
from tests.test_executions import CREATE_SERVICE, EXECUTE
from tests.test_roles import ADD_PROJECT_MEMBER, Case, project_caller
from tests.test_webhook_api import PING, _webhook
from tests.waiting import eventually
from tests.webhook_receiver import Received, receiving
from tests.workers import run_command_here, start_worker, stop

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

RECORD = """(selector) => {
  const seen = [];
  window.recorded = seen;
  const note = () => {
    const text = document.querySelector(selector)?.textContent ?? null;
    if (text !== null && seen[seen.length - 1] !== text) seen.push(text);
  };
  note();
  const options = { subtree: true, childList: true, characterData: true };
  new MutationObserver(note).observe(document.body, options);
}"""
"""Records every text `selector` shows, in order, in window.recorded: what a user saw."""
RELAYING = {"LOOM_RELAY_LEASE_S": "1", "LOOM_WEBHOOK_ALLOW_PRIVATE": "true"}
CLONE = """mutation($d: ID!) { cloneDataset(datasetId: $d, input: {name: "copy"}) { id } }"""

Opener = Callable[..., Awaitable[Page]]


@pytest.fixture
def settings(stack: dict[str, str]) -> Settings:
    """The test's settings, letting webhooks reach this machine's receivers."""
    return Settings(**stack, db_name=f"test_{uuid.uuid4().hex[:12]}", webhook_allow_private=True)


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


async def _serious_violations(page: Page) -> list[tuple[str, str, list]]:
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    return [
        (violation["id"], violation["help"], [node["target"] for node in violation["nodes"]])
        for violation in found["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


async def test_no_page_of_the_console_has_serious_accessibility_violations(
    console, db, redis, settings
):
    key, _ = await demo.seed(db, redis)
    commit = await db.commands.find_one({"type": "commitModelRun"})
    await run_command_here(db, redis, settings, str(commit["_id"]))
    project = await db.projects.find_one({"name": demo.PROJECT})
    # axe-core is injected as an inline script, which the console's own CSP rightly forbids.
    login = await console(bypass_csp=True)
    assert await _serious_violations(login) == []
    await _screenshot(login, "sign-in")
    ready = {
        "executions": "tr[data-execution]",
        "events": "h2:has-text('Live events')",
        "hooks": "h2:has-text('Cron triggers')",
        "commands": "tr[data-command]",
        "datasets": "li[data-item] canvas[data-drawn]",
        "models": "table[aria-label='Confusion matrix']",
        "deployments": "[data-predictions]",
    }
    for name, shown in ready.items():
        path = f"/console/projects/{project['_id']}/{name}"
        page = await console(key, path=path, bypass_csp=True)
        await expect(page.locator(shown).first).to_be_visible()
        assert await _serious_violations(page) == [], name


async def _relaying(db) -> None:
    await eventually(
        lambda: db.relay.find_one({"_id": "relay"}), lambda doc: doc and doc.get("token")
    )


async def test_an_uploads_event_shows_in_the_live_feed_and_a_tested_trigger_is_saved(
    console, member, db, settings
):
    world = await make_world(member)
    await _service_with_executions(world)
    worker = start_worker(settings, **RELAYING)
    try:
        await _relaying(db)
        page = await console(world.client.key, path=f"/console/projects/{world.project}/events")
        await expect(page.get_by_role("heading", name="Live events")).to_be_visible()
        await expect(page.get_by_role("status")).to_have_text("Live")
        item = await world.upload("arrived.png", image_bytes("PNG", 8, 8))
        feed = page.get_by_role("region", name="Event feed")
        await expect(feed.locator(f'li[data-resource="{item["id"]}"]')).to_contain_text(
            "Item Created"
        )
    finally:
        stop(worker)
    await page.get_by_role("button", name="New trigger").click()
    editor = page.get_by_role("form", name="New trigger")
    await editor.get_by_label("Name").fill("big images")
    await editor.get_by_label("DQL filter (JSON)").fill('{"width": {"$gte": 100}}')
    await editor.get_by_label("Sample document (JSON)").fill('{"width": 50}')
    await editor.get_by_role("button", name="Test the filter").click()
    await expect(editor.locator("[data-tested]")).to_have_text(
        "The sample does not match: no fire."
    )
    await editor.get_by_label("Sample document (JSON)").fill('{"width": 640}')
    await editor.get_by_role("button", name="Test the filter").click()
    await expect(editor.locator("[data-tested]")).to_have_text(
        "The sample matches: this trigger would fire."
    )
    await editor.get_by_role("button", name="Save").click()
    triggers = page.get_by_role("region", name="Triggers")
    await expect(triggers.get_by_role("button", name="big images")).to_be_visible()
    [saved] = await db.triggers.find({"projectId": ObjectId(world.project)}).to_list()
    assert (saved["name"], saved["resource"]) == ("big images", "Item")
    await triggers.get_by_role("button", name="big images").click()
    edited = page.get_by_role("form", name="Edit trigger big images")
    await edited.get_by_label("DQL filter (JSON)").fill('{"width": {"$gte": 200}}')
    await edited.get_by_role("button", name="Save").click()
    await expect(edited).to_have_count(0)
    changed = await db.triggers.find_one({"_id": saved["_id"]})
    assert "200" in json.dumps(changed["filter"], default=str)
    assert "100" not in json.dumps(changed["filter"], default=str)
    await _screenshot(page, "events-and-triggers")
    annotator = await project_caller(member, world, Case(OrgRole.MEMBER, ProjectRole.ANNOTATOR))
    theirs = await console(annotator.key, path=f"/console/projects/{world.project}/events")
    await expect(theirs.get_by_role("region", name="Triggers")).to_contain_text("big images")
    await expect(theirs.get_by_role("button", name="New trigger")).to_have_count(0)


async def test_a_webhook_deliverys_retries_appear_as_the_worker_makes_them(
    console, member, db, settings
):
    async def fails_twice(_: Received, seen: int) -> Response:
        return Response("not yet", status_code=500) if seen < 2 else Response("thanks")

    world = await make_world(member)
    async with receiving(settings, fails_twice) as receiver:
        webhook, _ = await _webhook(
            world.client, world.project, url=receiver.url, retryPolicy={"initialDelayS": 0.3}
        )
        page = await console(world.client.key, path=f"/console/projects/{world.project}/hooks")
        await expect(page.get_by_role("status")).to_have_text("Live")
        pinged = (await world.client.data(PING, id=webhook["id"]))["pingWebhook"]
        row = page.locator(f'tr[data-delivery="{pinged["id"]}"]')
        await expect(row.locator("[data-state]")).to_have_text("pending")
        await page.evaluate(RECORD, f'tr[data-delivery="{pinged["id"]}"] [data-attempts]')
        worker = start_worker(settings, **RELAYING)
        try:
            await expect(row.locator("[data-state]")).to_have_text("delivered")
        finally:
            stop(worker)
    await expect(row.locator("[data-attempts]")).to_have_text("3/8")
    shown = [int(text.split("/")[0]) for text in await page.evaluate("window.recorded")]
    assert shown == sorted(shown), shown
    assert shown[-1] == 3
    assert any(0 < attempts < 3 for attempts in shown), shown  # a retry, shown while pending
    await row.get_by_role("button", name="hook").click()
    attempts = page.get_by_role("complementary", name=f"Delivery {pinged['id']}")
    held = await db.deliveries.find_one({"_id": ObjectId(pinged["id"])})
    await expect(attempts.locator(".attempts li")).to_have_count(len(held["attempts"]))
    await expect(attempts.locator(".attempts li").last).to_contain_text("delivered 200")
    await expect(attempts.locator(".attempts li").last).to_contain_text("thanks")
    assert [a.get("statusCode") for a in held["attempts"] if "statusCode" in a] == [500, 500, 200]
    await _screenshot(page, "webhooks-and-cron")


async def test_a_commands_progress_bar_advances_as_its_worker_writes_it(
    console, member, db, redis, settings
):
    world = await make_world(member)
    for n in range(12):
        await world.upload(f"{n}.png", image_bytes("PNG", 4, 4, (n, n, n)))
    page = await console(world.client.key, path=f"/console/projects/{world.project}/commands")
    await expect(page.get_by_role("status")).to_have_text("Live")
    clone = (await world.client.data(CLONE, d=world.dataset))["cloneDataset"]
    row = page.locator(f'tr[data-command="{clone["id"]}"]')
    await expect(row.locator("[data-status]")).to_have_text("created")
    await page.evaluate(RECORD, f'tr[data-command="{clone["id"]}"] [data-progress]')
    one_at_a_time = settings.model_copy(update={"clone_batch_size": 1})
    await run_command_here(db, redis, one_at_a_time, clone["id"])
    await expect(row.locator("[data-status]")).to_have_text("success")
    seen = [int(text.rstrip("%")) for text in await page.evaluate("window.recorded")]
    assert seen == sorted(seen), seen
    assert seen[-1] == 100
    assert any(0 < value < 100 for value in seen), seen
    await _screenshot(page, "commands")


async def test_a_datasets_thumbnails_draw_their_boxes_and_a_dql_filter_narrows_them(
    console, member
):
    world = await make_world(member)
    await world.client.data(ADD_LABELS, id=world.dataset, l=[{"name": "car"}])
    items = [await world.upload(f"{name}.png", image_bytes("PNG", 64, 48, colour))
             for name, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200)))]  # fmt: skip
    box = {"left": 4, "top": 4, "right": 40, "bottom": 30}
    await world.client.data(CREATE_MANY, inputs=[
        {"itemId": items[0]["id"], "type": "BOX", "label": "car", "coordinates": box}])  # fmt: skip
    page = await console(world.client.key, path=f"/console/projects/{world.project}/datasets")
    grid = page.get_by_role("list", name="Items")
    await expect(grid.locator("li")).to_have_count(2)
    red = grid.locator(f'li[data-item="{items[0]["id"]}"] canvas')
    await expect(red).to_have_attribute("data-drawn", "1")
    await expect(grid.locator(f'li[data-item="{items[1]["id"]}"] canvas')).to_have_attribute(
        "data-drawn", "0"
    )
    pixel = await red.evaluate(
        "(canvas) => Array.from(canvas.getContext('2d').getImageData(90, 90, 1, 1).data)"
    )
    assert pixel[:3] == [200, 0, 0]
    await page.get_by_label("DQL filter").fill('{"name": "blue.png"}')
    await page.get_by_role("button", name="Apply").click()
    await expect(grid.locator("li")).to_have_count(1)
    await expect(grid.locator("li")).to_contain_text("blue.png")
    await _screenshot(page, "datasets")


async def test_a_lost_connection_is_said_and_the_page_goes_live_again_by_itself(
    browser, member, app, settings
):
    world = await make_world(member)
    _, [execution] = await _service_with_executions(world)
    port = free_port()
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        async with running_uvicorn(app, settings, port=port) as base:
            page = await context.new_page()
            await page.goto(f"{base}/console/")
            await page.get_by_label("API key").fill(world.client.key)
            await page.get_by_role("button", name="Sign in").click()
            status = page.get_by_role("status")
            await expect(status).to_have_text("Live")
        await expect(status).to_have_text("Connection lost: reconnecting…")
        await _screenshot(page, "reconnecting")
        async with running_uvicorn(app, settings, port=port):
            await expect(status).to_have_text("Live")
            await world.client.data(TERMINATE, id=execution)
            row = page.locator(f'tr[data-execution="{execution}"] td[data-status]')
            await expect(row).to_have_text("terminated")
    finally:
        await context.close()


UPDATE_MEMBER = """mutation($project: ID!, $user: ID!, $role: ProjectRole!) {
  updateProjectMember(projectId: $project, userId: $user, role: $role) { role } }"""


async def test_an_action_the_graph_refuses_after_a_role_change_is_said_not_swallowed(
    console, member
):
    world = await make_world(member)
    _, [execution] = await _service_with_executions(world)
    client, doc = await member("acme", "member")
    user = str(doc["userId"])
    await world.client.data(ADD_PROJECT_MEMBER, project=world.project, user=user, role="DEVELOPER")
    page = await console(client.key, path=f"/console/projects/{world.project}/executions")
    await page.locator(f'tr[data-execution="{execution}"]').get_by_role("button").click()
    detail = page.get_by_role("complementary", name=f"Execution {execution}")
    terminate = detail.get_by_role("button", name="Terminate")
    await expect(terminate).to_be_enabled()
    await world.client.data(UPDATE_MEMBER, project=world.project, user=user, role="ANNOTATOR")
    await terminate.click()
    await expect(detail.get_by_role("alert")).to_contain_text("FORBIDDEN")
    await expect(page.locator(f'tr[data-execution="{execution}"] td[data-status]')).to_have_text(
        "created"
    )


async def test_the_demos_model_run_and_deployment_show_their_metrics_curves_and_monitoring(
    console, db, redis, settings
):
    key, _ = await demo.seed(db, redis)
    commit = await db.commands.find_one({"type": "commitModelRun"})
    await run_command_here(db, redis, settings, str(commit["_id"]))
    project = await db.projects.find_one({"name": demo.PROJECT})
    page = await console(key, path=f"/console/projects/{project['_id']}/models")
    run = page.get_by_role("region", name="Run computed at seed")
    await expect(run.get_by_role("img", name="Precision by recall")).to_have_attribute(
        "data-points", re.compile(r"^[1-9]")
    )
    await expect(run.get_by_role("img", name="F1 by confidence")).to_be_visible()
    matrix = run.get_by_role("table", name="Confusion matrix")
    await expect(matrix.locator("tbody tr").first).to_be_visible()
    await expect(run.get_by_role("list", name="FP matches")).to_contain_text("No FP match")
    await run.get_by_role("button", name="FN").click()
    fn = run.get_by_role("list", name="FN matches")
    await expect(fn.locator("li:not(.empty)").first).to_contain_text(".png: ")
    await _screenshot(page, "model-runs")
    await page.get_by_role("link", name="Deployments").click()
    monitoring = page.get_by_role("region", name=f"Monitoring of {demo.DEPLOYMENT}")
    await expect(monitoring.get_by_role("img", name="Latency (ms)")).to_be_visible()
    await expect(monitoring.locator("[data-predictions]")).to_contain_text(
        "predictions in the last hour"
    )
    await _screenshot(page, "deployments")
