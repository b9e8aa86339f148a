"""Webhook signatures verify with the reference Standard Webhooks library; secrets at rest
decrypt only with the right key and for the right webhook."""

import base64
import json
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from triggers.webhooks.signing import (
    SIGNATURE_HEADERS,
    SecretBox,
    SecretUnreadable,
    new_key,
    new_secret,
    signature,
    signature_header,
)

BODY = json.dumps({"type": "item.created", "data": {"id": "665f1c"}}).encode()


def headers(msg_id: str, timestamp: int, signatures: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def test_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_secret() != secret


def test_the_reference_verifier_accepts_a_signature() -> None:
    secret, now = new_secret(), int(time.time())
    header = signature_header([secret], "msg_1", now, BODY)
    assert header.startswith("v1,")
    assert Webhook(secret).verify(BODY, headers("msg_1", now, header)) == json.loads(BODY)
    assert set(headers("msg_1", now, header)) == SIGNATURE_HEADERS


def test_signature_matches_the_specification_by_hand() -> None:
    # The example of the Standard Webhooks specification's reference implementations.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature(
        secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    ) == (expected)


def test_during_rotation_either_secret_verifies() -> None:
    old, new, now = new_secret(), new_secret(), int(time.time())
    header = signature_header([old, new], "msg_2", now, BODY)
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers("msg_2", now, header))


def test_a_wrong_secret_or_an_altered_body_is_rejected() -> None:
    secret, now = new_secret(), int(time.time())
    header = signature_header([secret], "msg_3", now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers("msg_3", now, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"665f1c", b"665f1d"), headers("msg_3", now, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers("msg_4", now, header))


@pytest.mark.parametrize(
    "secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_"]
)
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        signature(secret, "msg", 1, BODY)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], "msg", 1, BODY)


def test_secret_box_round_trips_with_a_fresh_nonce() -> None:
    box, secret = SecretBox.from_text(new_key()), new_secret()
    first, second = box.encrypt(secret, b"webhook-1"), box.encrypt(secret, b"webhook-1")
    assert first != second
    assert secret.encode() not in first
    assert box.decrypt(first, b"webhook-1") == box.decrypt(second, b"webhook-1") == secret


def test_secret_box_rejects_tampering_and_truncation() -> None:
    box = SecretBox.from_text(new_key())
    blob = bytearray(box.encrypt(new_secret(), b"webhook-1"))
    blob[20] ^= 1
    with pytest.raises(SecretUnreadable):
        box.decrypt(bytes(blob), b"webhook-1")
    with pytest.raises(SecretUnreadable, match="truncated"):
        box.decrypt(bytes(blob[:12]), b"webhook-1")


def test_secret_box_rejects_another_webhook_or_another_key() -> None:
    box = SecretBox.from_text(new_key())
    blob = box.encrypt(new_secret(), b"webhook-1")
    with pytest.raises(SecretUnreadable):
        box.decrypt(blob, b"webhook-2")
    with pytest.raises(SecretUnreadable):
        SecretBox.from_text(new_key()).decrypt(blob, b"webhook-1")
    assert issubclass(SecretUnreadable, ValueError)


@pytest.mark.parametrize(
    "text",
    ["", "not base64!", base64.b64encode(bytes(16)).decode(), base64.b64encode(bytes(33)).decode()],
)
def test_secret_box_names_the_setting_for_a_bad_key(text: str) -> None:
    with pytest.raises(ValueError, match="LOOM_WEBHOOK_SECRET_KEY"):
        SecretBox.from_text(text)


@pytest.mark.parametrize("key", [bytes(16), bytes(31), "x" * 32])
def test_secret_box_needs_32_bytes(key: object) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(key)
