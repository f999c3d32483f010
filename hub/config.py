"""Hub configuration: one YAML file, overridable by ``HUB__...`` environment variables.

Secrets (the API token, the broker password) come from the environment:
``HUB__API__TOKEN``, ``HUB__BROKER__PASSWORD``. The hub refuses to start without an API
token: there is no anonymous access to the API.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr

from contract.config_file import ConfigError, load_config
from contract.mqtt import BrokerSettings

__all__ = ["ConfigError", "HubConfig", "load_hub_config"]


class ApiSettings(BaseModel):
    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    token: SecretStr = Field(min_length=16, description="bearer token for API clients")
    public_base_url: str = "http://127.0.0.1:8000"


class EscalationSettings(BaseModel):
    """Seconds each tier has to acknowledge before the case moves to the next tier."""

    model_config = {"extra": "forbid"}

    grid_worker_s: float = Field(default=60.0, gt=0)
    backup_worker_s: float = Field(default=60.0, gt=0)
    community_station_s: float = Field(default=60.0, gt=0)
    street_centre_s: float = Field(default=60.0, gt=0)
    hotline_desk_s: float = Field(default=60.0, gt=0)
    dedupe_window_s: float = Field(default=600.0, ge=0)


class WebhookSettings(BaseModel):
    model_config = {"extra": "forbid"}

    url: AnyHttpUrl
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    attempts: int = Field(default=3, ge=1, le=10)


class HubConfig(BaseModel):
    model_config = {"extra": "forbid"}

    hub_id: str = Field(default="hub", pattern=r"^[A-Za-z0-9_.-]+$")
    database_url: str = "sqlite+aiosqlite:///var/hub/hub.db"
    broker: BrokerSettings = BrokerSettings()
    api: ApiSettings
    escalation: EscalationSettings = EscalationSettings()
    webhooks: list[WebhookSettings] = []
    timezone: str = "Asia/Shanghai"
    command_retry_s: float = Field(default=15.0, gt=0)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    def sqlite_path(self) -> Path | None:
        prefix = "sqlite+aiosqlite:///"
        return (
            Path(self.database_url[len(prefix) :]) if self.database_url.startswith(prefix) else None
        )


def load_hub_config(path: str | Path | None) -> HubConfig:
    return load_config(path, HubConfig, env_prefix="HUB")
