"""Each answer a receiver can give maps to the right verdict, and retries back off with full
jitter inside growing, capped bounds."""

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import ValidationError

from triggers.webhooks.retry_policy import (
    RetryPolicy,
    Verdict,
    backoff_s,
    retry_after_s,
    verdict,
)

NOW = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
CAP = 3600.0


def judge(
    status: int | None,
    headers: dict[str, str] | None = None,
    *,
    attempt: int = 1,
    error: str | None = None,
    policy: RetryPolicy | None = None,
) -> Verdict:
    return verdict(
        policy or RetryPolicy(),
        attempt,
        status,
        headers or {},
        error,
        NOW,
        CAP,
        random.Random(7),
    )


def test_defaults_and_camel_case() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.timeout_s, policy.initial_delay_s) == (8, 15, 5)
    assert (policy.max_delay_s, policy.multiplier, policy.retry_client_errors) == (36000, 6, False)
    parsed = RetryPolicy.model_validate(
        {"maxAttempts": 3, "initialDelayS": 1, "retryClientErrors": True}
    )
    assert (parsed.max_attempts, parsed.initial_delay_s, parsed.retry_client_errors) == (3, 1, True)
    assert RetryPolicy(max_attempts=2).max_attempts == 2
    assert RetryPolicy().model_dump(by_alias=True)["maxDelayS"] == 36000


@pytest.mark.parametrize(
    "fields",
    [
        {"maxAttempts": 0},
        {"maxAttempts": 51},
        {"timeoutS": 0.01},
        {"timeoutS": 301},
        {"initialDelayS": 0},
        {"multiplier": 0.5},
        {"multiplier": 101},
        {"initialDelayS": 60, "maxDelayS": 30},
        {"retries": 3},
    ],
)
def test_out_of_range_policies_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate(fields)


def test_backoff_has_full_jitter_under_growing_capped_bounds() -> None:
    policy = RetryPolicy()
    bounds = [5, 30, 180, 1080, 6480, 36000, 36000]
    for attempt, bound in enumerate(bounds, start=1):
        delays = [backoff_s(policy, attempt, random.Random(seed)) for seed in range(500)]
        assert all(0 <= delay <= bound for delay in delays)
        # Full jitter: the draws cover the whole range, not just its top.
        assert min(delays) < bound * 0.05
        assert max(delays) > bound * 0.95


def test_backoff_stops_growing_at_the_cap() -> None:
    policy = RetryPolicy(max_delay_s=100, multiplier=100)
    assert 0 <= backoff_s(policy, 10_000, random.Random(1)) <= 100
    assert 0 <= backoff_s(policy, 3) <= 100
    with pytest.raises(ValueError, match="from 1"):
        backoff_s(policy, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("-5", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Sat, 09 May 2026 12:02:00 -0000", 120.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert retry_after_s(value, NOW) == expected


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    result = judge(status, attempt=8)
    assert (result.outcome, result.delay_s) == ("delivered", None)
    assert result.reason.startswith(str(status))


def test_410_is_gone() -> None:
    assert judge(410) == Verdict("gone", "410 Gone: the receiver asked to stop", None)
    assert judge(410, policy=RetryPolicy(retry_client_errors=True)).outcome == "gone"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_fail_at_once(status: int) -> None:
    result = judge(status, {"Location": "http://169.254.169.254/"})
    assert result.outcome == "failed"
    assert result.reason.endswith("redirects are not followed: Location http://169.254.169.254/")
    assert result.delay_s is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_fail_at_once_unless_the_policy_retries_them(status: int) -> None:
    assert judge(status).outcome == "failed"
    assert "client errors are not retried" in judge(status).reason
    assert judge(status, policy=RetryPolicy(retry_client_errors=True)).outcome == "retry"


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 599])
def test_server_errors_and_not_now_answers_are_retried(status: int) -> None:
    result = judge(status, attempt=2)
    assert result.outcome == "retry"
    assert result.delay_s == backoff_s(RetryPolicy(), 2, random.Random(7))
    assert 0 <= result.delay_s <= 30


def test_network_errors_are_retried_with_their_text() -> None:
    result = judge(None, error="ConnectTimeout: timed out")
    assert (result.outcome, result.reason) == ("retry", "ConnectTimeout: timed out")
    assert judge(None).reason == "no response"


def test_retry_after_is_honoured_but_capped_and_never_shortens_the_backoff() -> None:
    assert judge(429, {"Retry-After": "120"}).delay_s == 120
    assert judge(503, httpx.Headers({"retry-after": "99999"})).delay_s == CAP
    date = format_datetime(NOW + timedelta(minutes=10), usegmt=True)
    assert judge(503, {"retry-after": date}).delay_s == 600
    late = judge(503, {"Retry-After": "0"}, attempt=7)
    assert late.delay_s == backoff_s(RetryPolicy(), 7, random.Random(7))
    assert judge(503, {"Retry-After": "garbage"}).delay_s == backoff_s(
        RetryPolicy(), 1, random.Random(7)
    )


def test_the_last_attempt_gives_up() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert judge(503, attempt=2, policy=policy).outcome == "retry"
    assert judge(503, attempt=3, policy=policy) == Verdict(
        "failed", "gave up after 3 attempts: 503 Service Unavailable", None
    )
    assert judge(None, attempt=3, error="ConnectError: refused", policy=policy).reason == (
        "gave up after 3 attempts: ConnectError: refused"
    )
    assert judge(200, attempt=3, policy=policy).outcome == "delivered"
