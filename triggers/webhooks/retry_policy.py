"""What a webhook receiver's answer means, and when to try again.

A delivery is retried only when trying again can help: the receiver failed (5xx), was not
reachable, or asked for time (408, 409, 425, 429). A client error means the request itself is
refused and would be refused again, so it fails at once unless the webhook says otherwise;
`410 Gone` is the receiver asking to stop, and the endpoint is disabled. Redirects are not
followed (see `address_guard`), and retrying one would only get the same redirect.
"""

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# Statuses that mean "not now" rather than "no": timeout, conflict, too early, rate limited.
_RETRYABLE_CLIENT_ERRORS = frozenset({408, 409, 425, 429})

_RNG = random.Random()

Outcome = Literal["delivered", "retry", "failed", "gone", "cancelled"]
"""`cancelled` is never a verdict on an answer: the dispatcher gives it to a delivery whose
webhook was deleted or turned off before its attempt."""


class RetryPolicy(BaseModel):
    """How often and how patiently a webhook's deliveries are attempted.

    The defaults track the Standard Webhooks / Svix schedule (retries after 5 s, 5 min, 30 min,
    2 h, 5 h, 10 h, 10 h: eight attempts over about 28 hours): delays grow sixfold from
    5 s and stop growing at 10 h, so the upper bounds of the jittered delays are 5 s, 30 s,
    3 min, 18 min, 1.8 h, 10 h and 10 h.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    max_attempts: int = Field(8, ge=1, le=50)
    timeout_s: float = Field(15, ge=0.1, le=300)
    initial_delay_s: float = Field(5, ge=0.01, le=86400)
    max_delay_s: float = 36000
    multiplier: float = Field(6, ge=1, le=100)
    retry_client_errors: bool = False

    @model_validator(mode="after")
    def _delays_in_order(self) -> Self:
        """A cap below the first delay would silently replace it; say so instead."""
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError("maxDelayS must be at least initialDelayS")
        return self


def backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """The delay before attempt `attempt + 1`, after attempt `attempt` (from 1) failed.

    Full jitter (a uniform draw below the exponential ceiling) spreads the retries of many
    deliveries that failed together, so a receiver coming back up is not hit by all at once.
    """
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    try:
        ceiling = min(
            policy.max_delay_s, policy.initial_delay_s * policy.multiplier ** (attempt - 1)
        )
    except OverflowError:
        ceiling = policy.max_delay_s
    return (rng or _RNG).uniform(0, ceiling)


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """The seconds a Retry-After header asks to wait (delta-seconds or an HTTP-date), from `now`
    (an aware datetime); a time already past is 0, and an unreadable header None."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, origin unknown (RFC 5322)
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Verdict:
    """What to do after one attempt; `delay_s` is set only when the outcome is "retry"."""

    outcome: Outcome
    reason: str
    delay_s: float | None


def _status_text(status: int) -> str:
    """`503 Service Unavailable`, or the bare number for a status HTTP does not name."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name, whether `headers` is httpx's or a plain dict."""
    return next((value for key, value in headers.items() if key.lower() == name), None)


def verdict(
    policy: RetryPolicy,
    attempt: int,
    status: int | None,
    headers: Mapping[str, str],
    error: str | None,
    now: datetime,
    retry_after_cap_s: float,
    rng: random.Random | None = None,
) -> Verdict:
    """The verdict on attempt `attempt` (from 1), which got `status` and `headers`, or no answer
    (`status` None) because of `error`.

    Retry-After is honoured but capped at `retry_after_cap_s`, so a receiver cannot park a
    delivery for a week, and never shortens the backoff.
    """
    if status is None:
        reason = error or "no response"
    elif 200 <= status < 300:
        return Verdict("delivered", _status_text(status), None)
    elif status == 410:
        return Verdict("gone", "410 Gone: the receiver asked to stop", None)
    elif 300 <= status < 400:
        location = _header(headers, "location") or "(none)"
        return Verdict(
            "failed",
            f"{_status_text(status)}: redirects are not followed: Location {location}",
            None,
        )
    elif (
        400 <= status < 500
        and status not in _RETRYABLE_CLIENT_ERRORS
        and not policy.retry_client_errors
    ):
        return Verdict("failed", f"{_status_text(status)}: client errors are not retried", None)
    else:
        reason = _status_text(status)
    if attempt >= policy.max_attempts:
        return Verdict("failed", f"gave up after {attempt} attempts: {reason}", None)
    delay = backoff_s(policy, attempt, rng)
    asked = retry_after_s(_header(headers, "retry-after"), now)
    if asked is not None:
        delay = max(delay, min(asked, retry_after_cap_s))
    return Verdict("retry", reason, delay)
