"""Which failures mean MongoDB or Redis is briefly away — an election, a restart, a lost
connection — rather than a bug: the caller should wait and try again, and nothing is wrong
with what it asked.

MongoDB: every `ConnectionFailure` (no server selected in time, the connection reset or timed
out, the primary stepped down: `ServerSelectionTimeoutError`, `AutoReconnect`,
`NotPrimaryError`, `NetworkTimeout`, `WaitQueueTimeoutError`); any error the server labels
`RetryableWriteError` or `TransientTransactionError`; and a command error whose code the
retryable-writes specification lists as a node changing state or being unreachable (the driver
raises some of those without a label, e.g. from a write concern). Not a query that ran out of
its own `maxTimeMS`, nor a duplicate key, nor any other server error.

Redis: a connection that failed or timed out (`redis.ConnectionError`, which includes a server
still loading its data after a restart, and `redis.TimeoutError`).

Only the error itself and its explicit causes (`raise … from`) are looked at, never the error
being handled when it was raised: a bug in an `except` block is still a bug.
"""

import redis.exceptions
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

LABELS = ("RetryableWriteError", "TransientTransactionError")
CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        134,  # ReadConcernMajorityNotAvailableYet
        189,  # PrimarySteppedDown
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
    }
)


def dependency_of(error: BaseException | None) -> str | None:
    """ "MongoDB" or "Redis" when `error` (or an explicit cause of it) is that server being
    briefly unavailable; None otherwise."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ConnectionFailure):
            return "MongoDB"
        if isinstance(error, PyMongoError) and any(map(error.has_error_label, LABELS)):
            return "MongoDB"
        if isinstance(error, OperationFailure) and error.code in CODES:
            return "MongoDB"
        if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return "Redis"
        error = error.__cause__
    return None
