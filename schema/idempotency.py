"""The `idempotencyKey` argument of the mutations that create things (resolvers/idempotency)."""

from typing import Annotated

import strawberry

IdempotencyKey = Annotated[
    str | None,
    strawberry.argument(
        description="Send the same key again (within 24 h) to get this mutation's first answer "
        "instead of creating anything new; the same key with other arguments is refused "
        "(CONFLICT)."
    ),
]
