"""One attempt at a delivery: the signed request, and what came back.

The message goes as Standard Webhooks says (standardwebhooks.com): `webhook-id` is the
delivery's, the same on every attempt and redelivery — the receiver's idempotency key —;
`webhook-timestamp` is when this attempt was sent; `webhook-signature` carries one `v1,`
signature per secret in use (two during a rotation's grace). The body is the stored message
with this attempt's `deliveryInfo`. The whole attempt — connecting, sending, reading the
first `EXCERPT_BYTES` of the answer — is bounded by the webhook's timeout; redirects are not
followed, and the connection only goes to addresses the guard passed.
"""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from resolvers.timestamps import now
from triggers.webhooks.address_guard import UnsafeAddress
from triggers.webhooks.signing import signature_header

EXCERPT_BYTES = 4096
USER_AGENT = "Loom-Webhooks/1"


@dataclass
class Answer:
    """What an attempt got: a status and headers, or the error that stopped it."""

    request_id: str
    started_at: datetime
    latency_ms: float
    status: int | None = None
    headers: dict[str, str] | None = None
    body: str = ""
    error: str | None = None


def message_id(delivery_id: Any) -> str:
    return f"msg_{delivery_id}"


def body_of(message: dict[str, Any], attempt: int, max_attempts: int) -> bytes:
    data = {**message["data"], "deliveryInfo": {"attempt": attempt, "maxAttempts": max_attempts}}
    return json.dumps({**message, "data": data}, separators=(",", ":")).encode()


def _refusal(exc: BaseException) -> UnsafeAddress | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, UnsafeAddress):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def attempt(
    session: aiohttp.ClientSession,
    webhook: dict[str, Any],
    secrets: list[str],
    delivery: dict[str, Any],
    number: int,
) -> Answer:
    """Send attempt `number` of a delivery to its webhook."""
    msg_id = message_id(delivery["_id"])
    body = body_of(delivery["message"], number, delivery["maxAttempts"])
    timestamp = int(time.time())
    request_id = uuid.uuid4().hex
    headers = {
        **webhook["headers"],
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "x-request-id": request_id,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }
    timeout_s = webhook["retryPolicy"]["timeoutS"]
    answer = Answer(request_id, now(), 0.0)
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(timeout_s),
            session.post(
                webhook["url"], data=body, headers=headers, allow_redirects=False
            ) as response,
        ):
            answer.status = response.status
            answer.headers = dict(response.headers)
            answer.body = await _excerpt(response)
    except TimeoutError:
        answer.error = f"no answer within the timeout of {timeout_s:g} s"
    except Exception as exc:
        refused = _refusal(exc)
        if refused is not None:
            answer.error = f"refused by the address guard: {refused}"
        elif isinstance(exc, aiohttp.ClientError):
            answer.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            raise
    answer.latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return answer


async def _excerpt(response: aiohttp.ClientResponse) -> str:
    taken = b""
    while len(taken) < EXCERPT_BYTES:
        chunk = await response.content.read(EXCERPT_BYTES - len(taken))
        if not chunk:
            break
        taken += chunk
    return taken.decode("utf-8", errors="replace")
