"""Directory paths inside a dataset: `/`, `/train`, `/train/city` — validated, normalised."""

from resolvers.errors import BadUserInput

MAX_DEPTH = 10
MAX_LENGTH = 500


def normalise(path: str, field: str = "dir") -> str:
    """`/a/b` for any of `/a/b`, `/a/b/`, refusing relative paths, `..`, control characters."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadUserInput(f"{field} must be an absolute path like /train", field=field)
    if len(path) > MAX_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise BadUserInput(f"{field} is too long or holds control characters", field=field)
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") or s != s.strip() for s in segments):
        raise BadUserInput(f"{field} may not hold '.', '..' or padded segments", field=field)
    if len(segments) > MAX_DEPTH:
        raise BadUserInput(f"{field} is deeper than {MAX_DEPTH} levels", field=field)
    return "/" + "/".join(segments)


def with_ancestors(path: str) -> list[str]:
    """`/a/b` → [`/`, `/a`, `/a/b`]: creating a directory creates its parents."""
    segments = [s for s in path.split("/") if s]
    return ["/"] + ["/" + "/".join(segments[: i + 1]) for i in range(len(segments))]


def join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"
