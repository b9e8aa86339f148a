"""Loom's configuration, read from `LOOM_*` environment variables (and `.env`).

Unset database URLs are not an error: they mean "use the embedded stack" — a real mongod and a
real Valkey that Loom starts itself under `LOOM_HOME`.
"""

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.embedded.replica_set import replica_count


class Limits(BaseSettings):
    """Bounds on what one GraphQL request may ask for; each refusal names its limit."""

    model_config = SettingsConfigDict(env_prefix="LOOM_LIMIT_")

    max_depth: int = Field(12, ge=1)
    max_aliases: int = Field(30, ge=0)
    max_tokens: int = Field(5000, ge=10)
    max_page_size: int = Field(500, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOM_", env_file=".env", extra="ignore")

    mongodb_url: str | None = None
    redis_url: str | None = None
    db_name: str = "loom"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    home: Path = Path(".loom")
    log_level: str = "INFO"
    mongodb_timeout_ms: int = Field(5000, ge=100)
    unavailable_wait_s: float = Field(15.0, gt=0)
    unavailable_retry_after_s: int = Field(5, ge=1)
    embedded_replicas: Annotated[int, AfterValidator(replica_count)] = 1
    readiness_timeout_s: float = Field(2.0, gt=0)
    command_lease_s: float = Field(30.0, gt=0)
    command_sweep_s: float = Field(10.0, gt=0)
    clone_batch_size: int = Field(500, ge=1, le=5000)
    version_batch_size: int = Field(2000, ge=1, le=10_000)
    batch_page_size: int = Field(1000, ge=1, le=10_000)
    execution_lease_s: float = Field(30.0, gt=0)
    worker_max_jobs: int = Field(10, ge=1, le=1000)
    worker_poll_delay_s: float = Field(0.05, gt=0)
    reaper_interval_s: float = Field(5.0, gt=0)
    queue_check_s: float = Field(300.0, gt=0)
    transient_retry_s: float = Field(60.0, gt=0)
    file_sweep_s: float = Field(600.0, gt=0)
    file_sweep_grace_s: float = Field(3600.0, ge=60)
    relay: bool = True
    relay_lease_s: float = Field(5.0, gt=0)
    event_retention_days: float = Field(7.0, gt=0)
    event_retention_s: float = Field(600.0, gt=0)
    stats_rollup_s: float = Field(5.0, gt=0)
    webhook_secret_key: SecretStr | None = None
    """Base64 of 32 bytes: the key that encrypts webhooks' signing secrets at rest. `loom dev`
    makes one under LOOM_HOME when it is unset; a deployment must set it."""
    webhook_allow_private: bool = False
    webhook_max_in_flight: int = Field(100, ge=1, le=10_000)
    webhook_retry_after_cap_s: float = Field(3600.0, gt=0)
    webhook_poll_s: float = Field(0.05, gt=0)
    cron_poll_s: float = Field(0.2, gt=0)
    dev_inbox: bool = False
    """Serve /dev/inbox, a webhook receiver that shows what it got (`loom dev` turns it on)."""
    subscription_queue_size: int = Field(1000, ge=1)
    subscription_max_lag_s: float = Field(30.0, gt=0)
    ws_compression: bool = False
    auth_cache_size: int = Field(10_000, ge=0)
    auth_cache_max_age_s: float = Field(30.0, gt=0)
    limits: Limits = Field(default_factory=Limits)
    introspection: bool = True
    trusted_documents_only: bool = False

    @property
    def uses_embedded_stack(self) -> bool:
        return self.mongodb_url is None or self.redis_url is None
