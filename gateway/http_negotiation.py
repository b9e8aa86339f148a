"""What `/graphql` answers over HTTP, as the GraphQL-over-HTTP spec asks: which media type, which
status code, and how a request that is no GraphQL request at all is refused.

- Media type: `application/graphql-response+json` when the `Accept` header prefers it (q-values,
  `type/*` and `*/*` as RFC 9110 weighs them); `application/json` for clients that ask for that,
  send only wildcards, or send no `Accept` at all — the legacy clients the spec still serves;
  406 when the header admits neither.
- Status: under `application/graphql-response+json` a response without `data` (a request error:
  the document did not parse or validate, its variables did not coerce, or it was refused
  before execution) is a 4xx — 400, or 403 for FORBIDDEN, or 404 for an unknown persisted
  query (not 400, which makes Apollo Client 3 turn persisted queries off for good). A response
  with no data (`data` absent or null) because MongoDB or Redis is unavailable (UNAVAILABLE,
  during an election or a restart) is a 503 with `Retry-After`, so proxies and HTTP clients
  retry it too. Under `application/json` every GraphQL response is a 200, as legacy clients
  expect (the error's `extensions.retryAfter` says the same).
- Refusals of the HTTP request itself (bad JSON, wrong content type, mutation over GET, …) keep
  their status and carry a GraphQL-shaped error with `extensions.code` and the request id, as
  `application/json` — the spec forbids `application/graphql-response+json` for them.
"""

import functools
from collections.abc import Mapping
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from starlette.responses import Response

from gateway.graphql_errors import classify

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"

_OFFERS = (JSON, GRAPHQL_RESPONSE_JSON)
"""In the order that wins a tie on quality and specificity: a client that only sends wildcards
is most likely a legacy one."""

_REQUEST_ERROR_STATUS = {"FORBIDDEN": 403, "PERSISTED_QUERY_NOT_FOUND": 404}


class Refused(HTTPException):
    """An HTTP request refused before any GraphQL runs, with the headers its status needs
    (`Allow` for a 405)."""

    def __init__(
        self, status_code: int, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code, reason)
        self.headers = dict(headers or {})


def _quality(parameters: list[str]) -> float | None:
    """The range's q-value; None when a parameter rules it out (a charset other than UTF-8,
    a malformed q)."""
    quality = 1.0
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        name, value = name.strip().lower(), value.strip().strip('"').lower()
        if name == "q":
            try:
                quality = float(value)
            except ValueError:
                return None
            if not 0 <= quality <= 1:
                return None
        elif name == "charset" and value not in ("utf-8", "utf8"):
            return None
    return quality


def _specificity(media_range: str, offer: str) -> int | None:
    if media_range == offer:
        return 2
    if media_range == offer.split("/")[0] + "/*":
        return 1
    if media_range == "*/*":
        return 0
    return None


@functools.lru_cache(maxsize=256)
def negotiate(accept: str | None) -> str | None:
    """The media type to answer an `Accept` header with; None when neither of Loom's fits.

    Each offer takes the quality of the most specific range that matches it; the best quality
    wins, then the more specific match. Of two named equally, the spec's own media type wins;
    of two matched by wildcards alone, `application/json`. Cached: clients send the same few
    headers again and again.
    """
    if accept is None or not accept.strip():
        return JSON
    best: dict[str, tuple[float, int]] = {}
    for element in accept.split(","):
        media_range, *parameters = element.split(";")
        media_range = media_range.strip().lower()
        quality = _quality(parameters)
        if quality is None:
            continue
        for offer in _OFFERS:
            specificity = _specificity(media_range, offer)
            if specificity is not None and specificity > best.get(offer, (0.0, -1))[1]:
                best[offer] = (quality, specificity)
    ranked = [
        ((quality, specificity, offer == GRAPHQL_RESPONSE_JSON and specificity == 2), offer)
        for offer in _OFFERS
        if offer in best
        for quality, specificity in [best[offer]]
        if quality > 0
    ]
    return max(ranked, key=lambda entry: entry[0])[1] if ranked else None


def is_request_error(result: Any) -> bool:
    """Whether a result failed before execution began — no field ran, so it has no `data`
    entry at all (field errors always carry a path)."""
    errors = result.errors or ()
    return result.data is None and bool(errors) and all(e.path is None for e in errors)


def not_acceptable() -> Refused:
    return Refused(
        406,
        f"Accept admits no media type Loom answers with: ask for {GRAPHQL_RESPONSE_JSON} or {JSON}",
    )


def _retry_after(body: Mapping[str, Any]) -> int | None:
    """The longest `retryAfter` of the response's UNAVAILABLE errors; None without any."""
    waits = [
        extensions.get("retryAfter", 1)
        for error in body.get("errors") or ()
        for extensions in [error.get("extensions") or {}]
        if extensions.get("code") == "UNAVAILABLE"
    ]
    return max(waits, default=None)


def status_of(body: Mapping[str, Any], media_type: str) -> int:
    """The status of a GraphQL response: a request error (no `data`) is a 4xx, and a response
    left without data by an unavailable dependency a 503, only where the client understands
    `application/graphql-response+json`."""
    if media_type == JSON:
        return 200
    if body.get("data") is None and _retry_after(body) is not None:
        return 503
    if "data" in body:
        return 200
    codes = {(error.get("extensions") or {}).get("code") for error in body.get("errors") or ()}
    return next((s for code, s in _REQUEST_ERROR_STATUS.items() if code in codes), 400)


def headers_of(body: Mapping[str, Any], status: int) -> dict[str, str]:
    """The headers a status needs: `Retry-After` (seconds) for a 503."""
    if status != 503:
        return {}
    return {"Retry-After": str(_retry_after(body) or 1)}


def refusal(refused: HTTPException, request_id: str, encode: Any) -> Response:
    """The HTTP response to a refused request (Strawberry's refusals and Loom's): its status,
    its headers, and the reason as a GraphQL error, counted in the error metrics like any
    other."""
    error = classify(GraphQLError(refused.reason), request_id)
    return Response(
        encode({"errors": [error.formatted]}),
        status_code=refused.status_code,
        headers=refused.headers if isinstance(refused, Refused) else None,
        media_type=f"{JSON}; charset=utf-8",
    )
