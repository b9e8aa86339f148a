"""The graphql-http audit suite (the GraphQL-over-HTTP spec's own conformance checks) against
a real uvicorn, with and without an API key: every MUST and SHOULD audit passes."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest

AUDIT = Path(__file__).resolve().parent / "http_audit"


async def _run_audits(url: str, authorization: str | None) -> dict:
    node = shutil.which("node")
    assert node, "node is not installed: run `make test`, which installs what the audit needs"
    assert (AUDIT / "node_modules" / "graphql-http").is_dir(), (
        "tests/http_audit/node_modules is missing: run `make test` "
        "(it runs `npm ci --prefix tests/http_audit`)"
    )
    arguments = [str(AUDIT / "run_audits.mjs"), url]
    if authorization:
        arguments += ["--authorization", authorization]
    process = await asyncio.create_subprocess_exec(
        node, *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    lines = stdout.decode().splitlines()
    assert lines, stderr.decode()
    summary = json.loads(lines[-1])
    print("\n".join(lines[:-1]))
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}))
    return summary


@pytest.mark.parametrize("with_key", [False, True], ids=["anonymous", "with-key"])
async def test_every_must_and_should_audit_of_graphql_http_passes(server, member, with_key):
    authorization = None
    if with_key:
        client, _ = await member("acme", "member")
        authorization = f"Bearer {client.key}"
    summary = await _run_audits(f"{server}/graphql", authorization)
    failed = [
        f"{r['id']} {r['name']}: {r['reason']}"
        for r in summary["results"]
        if not r["ok"] and r["requirement"] in ("MUST", "SHOULD")
    ]
    assert summary["total"] >= 60
    assert not failed, "\n".join(failed)
