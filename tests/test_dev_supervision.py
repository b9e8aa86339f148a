"""`loom dev` supervises its worker: a worker that dies is restarted, with backoff, and says so."""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.embedded import children as child_processes
from gateway.supervisor import Supervisor, exit_status
from tests.servers import free_port
from tests.test_cli_dev import DevServer, _alive, _loom
from tests.waiting import eventually

ORGANIZATION = "{ organizations { nodes { id } } }"
CREATE_PROJECT = """mutation($org: ID!) {
  createProject(organizationId: $org, input: {name: "Supervised"}) { id } }"""
CREATE_SERVICE = """mutation($p: ID!) {
  createService(projectId: $p, input: {name: "tools", functions: ["echo"]}) { id } }"""
EXECUTE = """mutation($s: ID!) {
  execute(serviceId: $s, input: {function: "echo", input: {said: "again"}}) { id } }"""
EXECUTION = """query($id: ID!) { execution(id: $id) { status output } }"""


@pytest.fixture
def dev_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    return {**env, "LOOM_HOME": str(tmp_path / ".loom"), "LOOM_PORT": str(free_port())}


def _workers_of(parent: int) -> list[int]:
    """The `loom worker` processes `parent` started, from /proc: `loom dev` names none."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if (
            ppid == parent
            and b"gateway.cli" in argv
            and b"worker" in argv
            and _alive(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


async def test_loom_dev_restarts_a_killed_worker_with_backoff_and_the_new_one_runs_executions(
    dev_env,
):
    home = dev_env["LOOM_HOME"]
    async with httpx.AsyncClient(timeout=30) as http:
        dev = DevServer(dev_env, home)

        async def workers() -> list[int]:
            return _workers_of(dev.process.pid)

        try:
            await dev.ready(http)
            key = _loom(dev_env, "keys", "create", "--org", "acme", "--role", "owner").stdout
            headers = {"Authorization": f"Bearer {key.strip()}"}

            async def ask(query: str, **variables) -> dict:
                body = {"query": query, "variables": variables}
                answer = (await http.post(f"{dev.base}/graphql", json=body, headers=headers)).json()
                assert "errors" not in answer, answer
                return answer["data"]

            killed = []
            for _ in range(2):
                (worker,) = await eventually(workers, lambda pids: len(pids) == 1)
                os.kill(worker, signal.SIGKILL)
                killed.append(worker)
                await eventually(workers, lambda pids: len(pids) == 1 and pids[0] not in killed)
            (replacement,) = await workers()

            org = (await ask(ORGANIZATION))["organizations"]["nodes"][0]["id"]
            project = (await ask(CREATE_PROJECT, org=org))["createProject"]["id"]
            service = (await ask(CREATE_SERVICE, p=project))["createService"]["id"]
            execution = (await ask(EXECUTE, s=service))["execute"]["id"]
            done = await eventually(
                lambda: ask(EXECUTION, id=execution),
                lambda found: found["execution"]["status"] == "success",
            )
            assert done["execution"]["output"] == {"said": "again"}
            assert await workers() == [replacement]
            servers = [*dev.children(home), replacement]
        finally:
            status = dev.stop()
        output = dev.process.stdout.read()
    assert status == 0, output
    assert "the worker stopped (killed by SIGKILL); restarting it in 1 s (restart 1)" in output
    assert "the worker stopped (killed by SIGKILL); restarting it in 2 s (restart 2)" in output
    assert "restart 3" not in output
    assert not [pid for pid in servers if _alive(pid)]


class Lines:
    """What a supervisor says, with a way to wait for its n-th line (it says them from its
    own thread)."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, line: str) -> None:
        with self._changed:
            self.said.append(line)
            self._changed.notify_all()

    def wait_for(self, count: int) -> list[str]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.said) >= count, timeout=30)
            return self.said[:count]


def _child(log: Path, code: str) -> Callable[[], subprocess.Popen]:
    """A child as `loom dev` starts its worker: its own process group, bound to our life."""
    return lambda: child_processes.spawn([sys.executable, "-c", code], log=log)


def test_each_quick_death_doubles_the_delay_up_to_its_cap_and_is_said_with_its_exit_status(
    tmp_path,
):
    lines = Lines()
    supervisor = Supervisor(
        "child",
        _child(tmp_path / "child.log", "raise SystemExit(3)"),
        lines,
        first_delay_s=0.01,
        max_delay_s=0.04,
        settled_s=3600,
    )
    supervisor.start()
    try:
        said = lines.wait_for(4)
    finally:
        supervisor.stop()
    assert said == [
        f"loom: the child stopped (exit status 3); restarting it in {delay:g} s (restart {n})"
        for n, delay in enumerate((0.01, 0.02, 0.04, 0.04), start=1)
    ]


def test_a_child_that_ran_long_enough_is_restarted_after_the_first_delay_again(tmp_path):
    lines = Lines()
    supervisor = Supervisor(
        "child",
        _child(tmp_path / "child.log", "pass"),
        lines,
        first_delay_s=0.01,
        max_delay_s=1.0,
        settled_s=0,
    )
    supervisor.start()
    try:
        said = lines.wait_for(3)
    finally:
        supervisor.stop()
    assert all("restarting it in 0.01 s" in line for line in said)


def test_stopping_the_supervisor_stops_its_child_and_restarts_nothing(tmp_path):
    lines = Lines()
    started: list[subprocess.Popen] = []
    running = threading.Event()
    spawn = _child(tmp_path / "child.log", "import time; time.sleep(600)")

    def sleeper() -> subprocess.Popen:
        started.append(spawn())
        running.set()
        return started[-1]

    supervisor = Supervisor("child", sleeper, lines, first_delay_s=0.01)
    supervisor.start()
    assert running.wait(30)
    supervisor.stop()
    assert [process.poll() for process in started] == [-signal.SIGTERM]
    assert lines.said == []
    assert supervisor.restarts == 0


def test_an_exit_status_names_the_signal_that_killed_the_child():
    assert exit_status(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_status(1) == "exit status 1"
