"""The key that encrypts webhooks' signing secrets at rest, from settings or from LOOM_HOME.

Every gateway and worker of a deployment must hold the same key: set
`LOOM_WEBHOOK_SECRET_KEY` on each. Without it — `loom dev`, the tests — the key is made once
in `LOOM_HOME/webhook-secret.key` (readable by its owner only) and read from there by every
process started in the same home, which is what one machine needs and no more.
"""

import logging
import os
from pathlib import Path

from gateway.settings import Settings
from triggers.webhooks.signing import SecretBox, new_key

log = logging.getLogger("loom.webhooks")

KEY_FILE = "webhook-secret.key"


def secret_box(settings: Settings) -> SecretBox:
    if settings.webhook_secret_key is not None:
        return SecretBox.from_text(settings.webhook_secret_key.get_secret_value())
    path = settings.home / KEY_FILE
    log.info("LOOM_WEBHOOK_SECRET_KEY is unset: webhook secrets are encrypted with %s", path)
    return SecretBox.from_text(_home_key(path))


def _home_key(path: Path) -> str:
    """The key in `path`, made there first if there is none. It is written aside and linked
    into place, so two processes starting at once agree on one key and neither reads a file
    half written."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(new_key())
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    finally:
        aside.unlink()
    return path.read_text().strip()
