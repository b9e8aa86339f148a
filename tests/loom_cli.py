"""`loom` run as users run it: a real process of the CLI, its output captured."""

import subprocess
import sys

from tests.conftest import REPO


def run_loom(env: dict[str, str], *args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )
