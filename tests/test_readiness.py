"""`/readyz` names the dependency that is down, and recovers by itself when it returns."""

import httpx
import pytest

from gateway.app import create_app
from gateway.embedded import EmbeddedStack
from gateway.settings import Settings
from tests.conftest import REPO
from tests.servers import running_uvicorn
from tests.waiting import eventually


@pytest.fixture
def own_stack(tmp_path):
    """A stack of this test's own, so stopping its MongoDB disturbs no other test."""
    with EmbeddedStack(tmp_path / "stack", persistent=False, lib_dir=REPO / ".loom" / "lib") as s:
        yield s


async def test_readyz_names_mongodb_while_it_is_down_and_recovers_without_restart(own_stack):
    settings = Settings(
        mongodb_url=own_stack.mongodb_url,
        redis_url=own_stack.redis_url,
        mongodb_timeout_ms=500,
        readiness_timeout_s=1.0,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        running_uvicorn(app, settings) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
    ):
        assert (await http.get("/readyz")).status_code == 200

        own_stack.kill_mongod()
        down = await http.get("/readyz")
        assert down.status_code == 503
        assert set(down.json()["failing"]) == {"mongodb"}
        assert (await http.get("/healthz")).status_code == 200

        own_stack.restart_mongod()
        back = await eventually(lambda: http.get("/readyz"), lambda r: r.status_code == 200)
        assert back.json() == {"status": "ready"}


async def test_readyz_names_redis_when_it_is_unreachable(stack):
    settings = Settings(mongodb_url=stack["mongodb_url"], redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as http:
            response = await http.get("/readyz")
    assert response.status_code == 503
    assert set(response.json()["failing"]) == {"redis"}
