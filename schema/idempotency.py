"""The `idempotencyKey` argument of the mutations that create things (resolvers/idempotency)."""

IDEMPOTENCY_KEY = (
    "Send the same key again (within 24 h) to get this mutation's first answer instead of "
    "creating anything new; the same key with other arguments is refused (CONFLICT)."
)
