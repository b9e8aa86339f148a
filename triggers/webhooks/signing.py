"""Webhook secrets and signatures, after the Standard Webhooks specification.

Deliveries are signed the way standardwebhooks.com describes, so a receiver can verify them with
any of that project's libraries instead of code written for Loom: the secret is `whsec_` plus
base64 key bytes, the signature `v1,` plus base64 HMAC-SHA256 of `id.timestamp.body`. While a
secret is being rotated, every active secret signs and the signatures travel space-separated, so
a receiver holding either the old or the new secret accepts the delivery.

Secrets are stored encrypted (`SecretBox`), since they must be readable again to sign: a copy of
the database alone does not let anyone forge deliveries.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from secrets import token_bytes
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_PREFIX = "whsec_"

# The headers the signature consists of: a webhook's custom headers may not replace them.
SIGNATURE_HEADERS = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature"})

_SECRET_BYTES = 32
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_SETTING = "LOOM_WEBHOOK_SECRET_KEY"


def new_secret() -> str:
    """A fresh signing secret: 32 random bytes, in the `whsec_` form receivers paste as is."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(_SECRET_BYTES)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret; a malformed secret is a bug, so it fails loudly."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,` signature of a delivery; `msg_id` and `timestamp` are signed with the body so
    that neither can be swapped onto another payload or replayed later under a fresh timestamp."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per active secret, so a rotation can keep the
    old secret signing until every receiver has the new one."""
    if not secrets:
        raise ValueError("a delivery is signed with at least one secret")
    return " ".join(signature(secret, msg_id, timestamp, body) for secret in secrets)


def new_key() -> str:
    """A fresh LOOM_WEBHOOK_SECRET_KEY value (base64 of 32 random bytes), for `loom dev`."""
    return base64.b64encode(token_bytes(_KEY_BYTES)).decode("ascii")


class SecretUnreadable(ValueError):
    """A stored secret that does not decrypt: tampered with, copied from another webhook, or
    encrypted under another key."""


class SecretBox:
    """Encrypts webhook secrets at rest with AES-256-GCM.

    Each encryption draws a random 12-byte nonce, stored in front of the ciphertext. The caller's
    `context` (the webhook's id) is bound as associated data, so a ciphertext moved onto another
    webhook's document fails to decrypt instead of signing that webhook's deliveries.
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
            raise ValueError(f"a SecretBox key is {_KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_text(cls, key_b64: str) -> Self:
        """The box for a key as configured (base64), with an error that names the setting, since
        the operator who mistyped it has to find it."""
        try:
            key = base64.b64decode(key_b64.strip(), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{_KEY_SETTING} must be base64 of {_KEY_BYTES} bytes") from exc
        if len(key) != _KEY_BYTES:
            raise ValueError(
                f"{_KEY_SETTING} must be base64 of {_KEY_BYTES} bytes, it decodes to {len(key)}"
            )
        return cls(key)

    def encrypt(self, secret: str, context: bytes) -> bytes:
        """`nonce || ciphertext+tag` of the secret, bound to `context`."""
        nonce = token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), context)

    def decrypt(self, blob: bytes, context: bytes) -> str:
        """The secret in `blob`, or SecretUnreadable if it was not encrypted for `context` with
        this key or has been altered."""
        if len(blob) <= _NONCE_BYTES:
            raise SecretUnreadable("the stored webhook secret is truncated")
        try:
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise SecretUnreadable(
                f"the stored webhook secret does not decrypt with {_KEY_SETTING} for this webhook"
            ) from exc
        return plain.decode()
