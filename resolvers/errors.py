"""The expected failures of Loom, each with the `extensions.code` clients branch on.

Anything raised that is not a `LoomError` is a bug: the gateway masks it and logs it with the
request id.
"""

from typing import Any, ClassVar

from pydantic import ValidationError


class LoomError(Exception):
    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class NotFound(LoomError):
    code = "NOT_FOUND"


class Forbidden(LoomError):
    code = "FORBIDDEN"


class Unauthenticated(LoomError):
    code = "UNAUTHENTICATED"


class BadUserInput(LoomError):
    code = "BAD_USER_INPUT"

    @classmethod
    def from_validation(cls, error: ValidationError, within: str | None = None) -> "BadUserInput":
        """One readable message plus the per-field details pydantic found (their paths under
        `within`, when the model was one field of the input)."""
        prefix = [within] if within else []
        fields = [
            {
                "field": ".".join([*prefix, *(str(p) for p in e["loc"])]) or "input",
                "message": e["msg"],
            }
            for e in error.errors(include_url=False, include_context=False, include_input=False)
        ]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return cls(f"Invalid input: {summary}", fields=fields)


class Conflict(LoomError):
    code = "CONFLICT"


class RateLimited(LoomError):
    """The caller asked for more, or faster, than Loom serves it (e.g. a lagging subscriber)."""

    code = "RATE_LIMITED"


class LimitExceeded(BadUserInput):
    """A request asked for more than a configured bound; the bound is named."""

    def __init__(self, limit: str, maximum: int, message: str) -> None:
        super().__init__(f"{message} (limit {limit} = {maximum})", limit=limit, max=maximum)
