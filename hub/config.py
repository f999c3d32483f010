"""Hub configuration: one YAML file, overridable by ``HUB__...`` environment variables.

Secrets (the API token, the broker password) come from the environment:
``HUB__API__TOKEN``, ``HUB__BROKER__PASSWORD``. The hub refuses to start without an API
token: there is no anonymous access to the API.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator, model_validator

from contract.config_file import ConfigError, load_config
from contract.mqtt import BrokerSettings
from hub.domain.facility_rules import FacilitySettings
from hub.domain.notification import TEMPLATE_FIELDS
from hub.domain.wellbeing_settings import WellbeingSettings
from hub.handlers.supervision import SupervisionSettings
from hub.notify.sms import placeholders

__all__ = ["ConfigError", "HubConfig", "load_hub_config"]


MiB = 1024 * 1024


class BodyLimits(BaseModel):
    """Request-body sizes, enforced before a byte is read into memory (``hub.api.body_limit``).

    ``default_bytes`` holds for every route; a route that needs more names one of the larger
    classes with :func:`hub.api.body_limit.larger_body` (the CSV import uses ``import``).
    """

    model_config = {"extra": "forbid"}

    default_bytes: int = Field(default=1 * MiB, ge=1024, le=64 * MiB)
    import_bytes: int = Field(default=6 * MiB, ge=1024, le=256 * MiB)


class ApiSettings(BaseModel):
    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    token: SecretStr = Field(min_length=16, description="bearer token for API clients")
    public_base_url: str = "http://127.0.0.1:8000"
    # X-Forwarded-For is believed only from these peers (a reverse proxy in front of the
    # hub); from anyone else it is ignored. Default: nobody.
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default=[], max_length=64)
    body_limits: BodyLimits = BodyLimits()


class EscalationSettings(BaseModel):
    """Seconds each tier has to acknowledge before the case moves to the next tier."""

    model_config = {"extra": "forbid"}

    grid_worker_s: float = Field(default=60.0, gt=0)
    backup_worker_s: float = Field(default=60.0, gt=0)
    community_station_s: float = Field(default=60.0, gt=0)
    street_centre_s: float = Field(default=60.0, gt=0)
    hotline_desk_s: float = Field(default=60.0, gt=0)
    dedupe_window_s: float = Field(default=600.0, ge=0)
    # Repeat presses of a button re-notify the case's current workers at most this often.
    repeat_notify_interval_s: float = Field(default=60.0, ge=0)


class IngestSettings(BaseModel):
    """What the hub accepts from an edge, and how much of what it refuses it keeps.

    ``max_future_s`` / ``max_past_s``: an event time further than this from the hub's clock
    is replaced by the hub's receive time (the edge's time is kept in the event's data
    with the reason). 5 minutes ahead is far beyond the drift of an edge whose clock is
    kept by NTP, yet stops a year-9999 time; 30 days back lets an edge that was cut off for
    weeks replay its outbox with its own times, while an epoch-zero clock (a lost RTC) is
    caught. ``quarantine_*``: caps on refused events kept for inspection; what is over a
    cap is counted (``quarantine_dropped``), never silently lost. ``transaction_budget_s``:
    ingest commits at the next chunk boundary once a transaction has run this long, so a
    flood cannot hold SQLite's write lock for long. See ``docs/security.md``.
    """

    model_config = {"extra": "forbid"}

    max_future_s: float = Field(default=300.0, ge=0, le=86400)
    max_past_s: float = Field(default=30 * 86400.0, gt=0)
    quarantine_per_device: int = Field(default=50, ge=1)
    quarantine_per_edge: int = Field(default=1000, ge=1)
    quarantine_max_rows: int = Field(default=10000, ge=1)
    transaction_budget_s: float = Field(default=0.1, gt=0, le=5)


class AuthSettings(BaseModel):
    """Account logins: how long a token lives, when failed logins are refused, and how many
    password hashes may run or wait at once (see ``hub.auth.throttle``, ``hub.auth.hash_gate``).

    Within ``failure_window_s``: ``max_failures`` for one username from one client address,
    ``max_failures_per_client`` for one address over all names, ``max_failures_per_account``
    for one username over all addresses. Each attempt is counted before its hash runs.
    """

    model_config = {"extra": "forbid"}

    token_lifetime_s: float = Field(default=12 * 3600.0, gt=0, le=30 * 86400)
    max_failures: int = Field(default=5, ge=1)
    max_failures_per_client: int = Field(default=20, ge=1)
    max_failures_per_account: int = Field(default=50, ge=1)
    failure_window_s: float = Field(default=900.0, gt=0)
    max_parallel_hashes: int = Field(default=2, ge=1, le=64)
    max_waiting_hashes: int = Field(default=8, ge=0, le=1024)
    max_hashes_per_client: int = Field(default=2, ge=1, le=1024)


class HttpChannelSettings(BaseModel):
    """Timeout and retries of one HTTP notification channel (``hub.notify.http``)."""

    model_config = {"extra": "forbid"}

    timeout_s: float = Field(default=5.0, gt=0, le=60)
    attempts: int = Field(default=3, ge=1, le=10)
    backoff_s: float = Field(default=1.0, ge=0, le=60, description="first retry delay")


class WebhookSettings(HttpChannelSettings):
    url: AnyHttpUrl


# --- notification channels (issue #4) ---
# Keys, tokens and the DingTalk secret come from the environment, e.g.
# HUB__NOTIFY__WECOM__KEY, HUB__NOTIFY__DINGTALK__ACCESS_TOKEN, HUB__NOTIFY__DINGTALK__SECRET;
# setting one of them is enough to enable that channel with its official URL.
class WeComSettings(HttpChannelSettings):
    url: AnyHttpUrl = AnyHttpUrl("https://qyapi.weixin.qq.com/cgi-bin/webhook/send")
    key: SecretStr = Field(min_length=1, description="the robot's key (query parameter)")
    msgtype: Literal["markdown", "text"] = "markdown"


class DingTalkSettings(HttpChannelSettings):
    url: AnyHttpUrl = AnyHttpUrl("https://oapi.dingtalk.com/robot/send")
    access_token: SecretStr = Field(min_length=1)
    secret: SecretStr | None = Field(default=None, description="signing secret (加签), if set")


class SmsSettings(HttpChannelSettings):
    url: AnyHttpUrl
    template: dict[str, Any] = Field(description="JSON body with {placeholders}")
    headers: dict[str, SecretStr] = {}
    ok_field: str | None = None
    ok_value: str = "OK"

    @field_validator("template")
    @classmethod
    def _known_placeholders(cls, template: dict[str, Any]) -> dict[str, Any]:
        unknown = placeholders(template) - TEMPLATE_FIELDS
        if unknown:
            known = ", ".join(sorted(TEMPLATE_FIELDS))
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; known: {known}")
        return template


class NotifySettings(BaseModel):
    model_config = {"extra": "forbid"}

    language: Literal["zh", "en"] = "zh"
    wecom: WeComSettings | None = None
    dingtalk: DingTalkSettings | None = None
    sms: SmsSettings | None = None


# --- broker accounts and ACL (issue #4) ---
_BROKER_ACCOUNT = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # hub.provisioning's naming rule


class BrokerReloadSettings(BaseModel):
    """How the hub makes Mosquitto re-read its password and ACL files: SIGHUP to the pid in
    ``pid_file`` (Mosquitto's own ``pid_file`` option), or ``command`` run without a shell,
    e.g. ``[docker, kill, --signal=HUP, mosquitto]`` when the broker is in a container."""

    model_config = {"extra": "forbid"}

    pid_file: Path | None = None
    command: list[str] | None = Field(default=None, min_length=1)
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_way(self) -> BrokerReloadSettings:
        if (self.pid_file is None) == (self.command is None):
            raise ValueError("give exactly one of pid_file and command")
        return self


class EdgeBrokerAddress(BaseModel):
    """The broker address handed to a newly provisioned edge (the hub may use another one)."""

    model_config = {"extra": "forbid"}

    host: str
    port: int = Field(default=8883, ge=1, le=65535)
    tls: bool = True


class BrokerAuthSettings(BaseModel):
    """Edge provisioning: the hub writes Mosquitto's password and ACL files (see
    ``hub.provisioning``). The hub's own account in them is ``broker.username`` with the
    password from ``HUB__BROKER__PASSWORD``; for replicas, one account per replica in
    ``cluster.replicas`` (:meth:`HubConfig.broker_accounts`), each with that password."""

    model_config = {"extra": "forbid"}

    password_file: Path
    acl_file: Path
    reload: BrokerReloadSettings
    edge_broker: EdgeBrokerAddress | None = None  # default: the hub's own broker address


_REPLICA_ID = r"^[A-Za-z0-9_.-]{1,40}$"


def replica_account(hub_username: str, replica_id: str) -> str:
    """The broker account of one hub replica: the hub's username and the replica id."""
    return f"{hub_username}.{replica_id}"


class ClusterSettings(BaseModel):
    """One of several hub processes on one database and one broker (issue #14,
    ``docs/scaling.md`` "Hub replicas").

    ``replica_id`` names this process (its MQTT client id, its broker account and its row in
    ``hub_replicas``); it must be unique among the processes of one hub. ``role``:
    ``ingest`` takes MQTT ingest, escalation deadlines and command resends; ``api`` serves
    the API and the live streams and takes no edge traffic; ``all`` does both (a replica).
    A replica counts as dead when its heartbeat has not moved for ``dead_after_s``, or at
    once when the broker publishes its last will.

    Each replica logs in to the broker with an account of its own,
    ``<broker.username>.<replica_id>`` (:func:`replica_account`), with the hub's one
    password: a broker that runs ``use_username_as_clientid`` (ours) names a connection by
    its username, and two replicas on one account would throw each other out in a loop.
    ``replicas`` lists every replica of the hub (every role): with ``broker_auth`` whichever
    replica writes the broker's password and ACL files must write the accounts of all of
    them, or its rewrite would lock the others out at the broker's next reload. Keep the
    list the same in every replica's configuration (one shared file, the replica id from
    ``HUB__CLUSTER__REPLICA_ID``).
    """

    model_config = {"extra": "forbid"}

    replica_id: str = Field(pattern=_REPLICA_ID)
    role: Literal["all", "ingest", "api"] = "all"
    heartbeat_s: float = Field(default=0.5, gt=0, le=30)
    dead_after_s: float = Field(default=2.0, gt=0, le=300)
    replicas: list[Annotated[str, Field(pattern=_REPLICA_ID)]] = Field(
        default_factory=list, max_length=64
    )

    @model_validator(mode="after")
    def _dead_after_beats(self) -> ClusterSettings:
        if self.dead_after_s < 2 * self.heartbeat_s:
            raise ValueError("dead_after_s must be at least two heartbeats (heartbeat_s)")
        return self

    @model_validator(mode="after")
    def _replicas_listed(self) -> ClusterSettings:
        for name in (self.replica_id, *self.replicas):
            if name == "alarm" or name.endswith(".alarm"):
                raise ValueError(
                    f"replica id {name!r}: 'alarm' and names ending in '.alarm' are kept for "
                    "alarm links' broker accounts"
                )
        if len(set(self.replicas)) != len(self.replicas):
            raise ValueError("cluster.replicas names a replica twice")
        if self.replicas and self.replica_id not in self.replicas:
            raise ValueError(
                f"cluster.replica_id {self.replica_id!r} is not in cluster.replicas {self.replicas}"
            )
        return self

    @property
    def ingests(self) -> bool:
        return self.role in ("all", "ingest")


class HubConfig(BaseModel):
    model_config = {"extra": "forbid"}

    hub_id: str = Field(default="hub", pattern=r"^[A-Za-z0-9_.-]+$")
    database_url: str = "sqlite+aiosqlite:///var/hub/hub.db"
    broker: BrokerSettings = BrokerSettings()
    broker_auth: BrokerAuthSettings | None = None  # edge provisioning (issue #4)
    api: ApiSettings
    auth: AuthSettings = AuthSettings()
    escalation: EscalationSettings = EscalationSettings()
    ingest: IngestSettings = IngestSettings()  # edge trust limits (issue #11)
    webhooks: list[WebhookSettings] = []
    notify: NotifySettings = NotifySettings()
    timezone: str = "Asia/Shanghai"
    profiles_dir: Path = Path("device_profiles")  # device registry: the known profiles
    command_retry_s: float = Field(default=15.0, gt=0)
    # Thresholds and windows of the door, parcel, water and bin rules (issue #3).
    facilities: FacilitySettings = FacilitySettings()
    # When simultaneous device.offline events are one outage (one task, not hundreds).
    supervision: SupervisionSettings = SupervisionSettings()
    # The wellbeing watch of residents who live alone and consented (issue #15).
    wellbeing: WellbeingSettings = WellbeingSettings()
    # How often time-driven device rules run (overdue parcels, leak windows, outages).
    device_tick_s: float = Field(default=30.0, gt=0, le=3600)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    # Several hub processes on one database and broker (issue #14); none: a single hub.
    cluster: ClusterSettings | None = None

    @model_validator(mode="after")
    def _hub_broker_account(self) -> HubConfig:
        """With broker_auth the hub writes its own account into the password file."""
        if self.broker_auth is not None and (
            self.broker.username is None or self.broker.password is None
        ):
            raise ValueError(
                "broker_auth needs broker.username and the password in HUB__BROKER__PASSWORD"
            )
        if self.broker_auth is not None and not _BROKER_ACCOUNT.fullmatch(
            self.broker.username or ""
        ):
            raise ValueError("broker.username: 1-64 letters, digits, '.', '_' or '-'")
        if self.broker_auth is not None and self.cluster is not None and not self.cluster.replicas:
            raise ValueError(
                "broker_auth with cluster: list every replica of the hub in cluster.replicas "
                "(each has a broker account of its own, and every replica writes them all)"
            )
        for account in self.broker_accounts():
            if not _BROKER_ACCOUNT.fullmatch(account):
                raise ValueError(
                    f"broker account {account!r} (broker.username '.' replica id): at most 64 "
                    "letters, digits, '.', '_' or '-'"
                )
        return self

    def broker_accounts(self) -> list[str]:
        """Every broker account the processes of this hub log in with (each also with its
        alarm link's, ``<name>.alarm``): ``broker.username`` for a single hub, one per
        replica (:func:`replica_account`) for replicas. Empty without a username."""
        username = self.broker.username
        if username is None:
            return []
        if self.cluster is None:
            return [username]
        replicas = self.cluster.replicas or [self.cluster.replica_id]
        return [replica_account(username, replica) for replica in replicas]

    def process_broker(self) -> BrokerSettings:
        """``broker`` as this process logs in: a replica with its own account."""
        username = self.broker.username
        if username is None or self.cluster is None:
            return self.broker
        account = replica_account(username, self.cluster.replica_id)
        return self.broker.model_copy(update={"username": account})

    @property
    def ingests(self) -> bool:
        """Whether this process takes edge traffic (a single hub always does)."""
        return self.cluster is None or self.cluster.ingests

    def mqtt_client_id(self, purpose: str) -> str:
        """The broker client id of this process's connection for ``purpose``; replicas of
        one hub must never share one (the broker would throw the older one out). A broker
        with ``use_username_as_clientid`` replaces it with the username, which is why each
        replica has an account of its own (:meth:`process_broker`)."""
        if self.cluster is None:
            return f"{self.hub_id}-{purpose}"
        return f"{self.hub_id}-{self.cluster.replica_id}-{purpose}"

    def sqlite_path(self) -> Path | None:
        prefix = "sqlite+aiosqlite:///"
        return (
            Path(self.database_url[len(prefix) :]) if self.database_url.startswith(prefix) else None
        )


def load_hub_config(path: str | Path | None) -> HubConfig:
    return load_config(path, HubConfig, env_prefix="HUB")
