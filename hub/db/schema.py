"""The hub's tables, as SQLAlchemy Core metadata.

Written to be portable between SQLite (the default, one file next to the hub) and
PostgreSQL: integer surrogate keys, ``TEXT`` for JSON (the hub reads and writes it itself),
and times through :class:`UTCDateTime`, which always hands back timezone-aware UTC even on
SQLite, which has no time-zone type. The Alembic revisions under ``hub/migrations`` create
these tables; this module is what the code queries against and what autogenerate compares.

Map of the tables:

* administration: districts → streets → communities → grids → households → residents,
  emergency_contacts; workers (with a role and a community/street scope), worker_grids;
  duty: shifts (weekly, local time) and shift_overrides (UTC instants)
* devices: devices (text id such as "cb100-77626"), edge_status
* traffic: events (id = commit order, uid = "edge:incarnation:seq" for deduplication),
  quarantine (what could not be accepted), commands (durable outbox of hub → edge commands)
* help calls: cases, case_audit, case_notifications; tasks (service requests, maintenance)
* wellbeing watch (issue #15): wellbeing_watch (consent), wellbeing_away, wellbeing_activity
  (raw, kept for a limited time), wellbeing_sources, welfare_checks, wellbeing_prompts
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    CursorResult,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.ext.compiler import compiles


@compiles(String, "postgresql")
def _string_without_length(type_: String, compiler: Any, **kw: Any) -> str:
    """``String(n)`` is plain ``VARCHAR`` (no limit) on PostgreSQL, as it is on SQLite.

    SQLite never enforced a ``VARCHAR(n)``: the hub was written and tested against that, and
    some input reaches the database longer than its column says (the contract lets a device
    id be 200 characters; ``events.device_id`` says 64). PostgreSQL would refuse such a row,
    and with it the whole batch of events, help calls included, for good. Lengths here are
    documentation; they are enforced where input enters (the contract, the API's models).
    """
    return "VARCHAR"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given; the hub stores aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON stored as UTF-8 text (Chinese stays readable in a database shell)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


def inserted_id(result: CursorResult[Any]) -> int:
    """The integer primary key of the row a single-row INSERT just created."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise RuntimeError("the INSERT reported no primary key")
    return int(key[0])


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _fk(name: str, target: str, *, nullable: bool = False) -> Column[int]:
    return Column(name, Integer, ForeignKey(target), nullable=nullable)


def _when(name: str, *, nullable: bool = True) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=nullable)


def _flag(name: str, *, default: bool) -> Column[bool]:
    return Column(name, Boolean, nullable=False, server_default=true() if default else false())


def _text(name: str) -> Column[str]:
    return Column(name, Text, nullable=False, server_default=text("''"))


# retired_at on the three levels: issue #16 (migration 0016); a retired level keeps its row.
districts = Table(
    "districts",
    metadata,
    _id(),
    Column("name", String(100), nullable=False, unique=True),
    _when("retired_at"),
)

streets = Table(
    "streets",
    metadata,
    _id(),
    _fk("district_id", "districts.id"),
    Column("name", String(100), nullable=False),
    _when("retired_at"),
    UniqueConstraint("district_id", "name"),
)

communities = Table(
    "communities",
    metadata,
    _id(),
    _fk("street_id", "streets.id"),
    Column("name", String(100), nullable=False),
    _when("retired_at"),
    UniqueConstraint("street_id", "name"),
)

workers = Table(
    "workers",
    metadata,
    _id(),
    Column("name", String(100), nullable=False),
    Column("phone", String(32), nullable=False, unique=True),
    # grid_worker | community_station | street_centre | hotline_desk
    Column("role", String(32), nullable=False),
    _fk("community_id", "communities.id", nullable=True),
    _fk("street_id", "streets.id", nullable=True),
    _flag("active", default=True),
)

grids = Table(
    "grids",
    metadata,
    _id(),
    _fk("community_id", "communities.id"),
    Column("name", String(100), nullable=False),
    _fk("backup_worker_id", "workers.id", nullable=True),
    UniqueConstraint("community_id", "name"),
)

worker_grids = Table(
    "worker_grids",
    metadata,
    Column("worker_id", Integer, ForeignKey("workers.id"), primary_key=True),
    Column("grid_id", Integer, ForeignKey("grids.id"), primary_key=True),
)

households = Table(
    "households",
    metadata,
    _id(),
    _fk("grid_id", "grids.id"),
    Column("address", String(200), nullable=False),
    _flag("lives_alone", default=False),
    _text("medical_notes"),
    _text("notes"),
    UniqueConstraint("grid_id", "address"),
)

residents = Table(
    "residents",
    metadata,
    _id(),
    _fk("household_id", "households.id"),
    Column("name", String(100), nullable=False),
    Column("phone", String(32), nullable=True),
    Column("birth_year", Integer, nullable=True),  # registry (issue #4)
)

emergency_contacts = Table(
    "emergency_contacts",
    metadata,
    _id(),
    _fk("household_id", "households.id"),
    Column("name", String(100), nullable=False),
    Column("relation", String(50), nullable=False, server_default=text("''")),
    Column("phone", String(32), nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(64), primary_key=True),
    _fk("household_id", "households.id", nullable=True),
    Column("place", String(100), nullable=False, server_default=text("''")),
    Column("edge_id", String(64), nullable=True),
    Column("profile", String(64), nullable=False),
    _when("last_seen"),
    Column("battery_pct", Integer, nullable=True),
    _flag("online", default=False),
    # device registry (issue #4), see the section at the end of this file
    _fk("grid_id", "grids.id", nullable=True),
    Column("bus", String(100), nullable=True),
    Column("address", String(64), nullable=True),
    _when("retired_at"),
    _when("updated_at"),
    Index(None, "grid_id"),
    Index(None, "edge_id"),
)

shifts = Table(
    "shifts",
    metadata,
    _id(),
    _fk("worker_id", "workers.id"),
    _fk("grid_id", "grids.id", nullable=True),  # NULL: a desk shift not tied to a grid
    Column("weekday", Integer, nullable=False),  # 0 = Monday
    Column("start_local", Time, nullable=False),
    Column("end_local", Time, nullable=False),  # <= start: crosses midnight
    Column("role", String(16), nullable=False, server_default=text("'primary'")),
    Index(None, "grid_id", "role"),
)

shift_overrides = Table(
    "shift_overrides",
    metadata,
    _id(),
    _fk("worker_id", "workers.id"),
    _fk("grid_id", "grids.id", nullable=True),
    _when("starts_at", nullable=False),
    _when("ends_at", nullable=False),
    Column("role", String(16), nullable=False, server_default=text("'primary'")),
    _text("note"),
    Index(None, "ends_at"),
)

events = Table(
    "events",
    metadata,
    _id(),  # commit order; sqlite_autoincrement keeps ids from ever being reused
    # f"{edge}:{incarnation}:{seq:012d}": sorts in seq order (hub.ingest.event_uid, 0020)
    Column("uid", String(200), nullable=False, unique=True),
    Column("edge_id", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("lane", String(16), nullable=False),  # "alarm" | "normal" | "telemetry"
    _when("occurred_at", nullable=False),
    _when("received_at", nullable=False),
    Column("data", JSONText(), nullable=False),
    # Quarantined at ingest (its device is not behind the sending edge): the row is kept for
    # its uid (duplicates, the order gate) but is no history of the device (migration 0019).
    Column("refused", Boolean, nullable=False, server_default=false()),
    Index(None, "device_id", "occurred_at"),
    sqlite_autoincrement=True,
)

quarantine = Table(
    "quarantine",
    metadata,
    _id(),
    _when("received_at", nullable=False),
    Column("edge_id", String(64), nullable=True),
    Column("topic", String(300), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("device_id", String(64), nullable=True),  # (issue #11) NULL: a whole message
    Index(None, "edge_id", "device_id"),
    sqlite_autoincrement=True,
)

cases = Table(
    "cases",
    metadata,
    _id(),
    _fk("household_id", "households.id"),
    _fk("grid_id", "grids.id"),
    Column("kind", String(32), nullable=False),  # sos | fall | phone
    Column("channel", String(16), nullable=False),  # button | phone
    Column("state", String(16), nullable=False),
    Column("tier", Integer, nullable=False, server_default=text("0")),
    _flag("cancel_requested", default=False),
    Column("ref_seq", Integer, nullable=True),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=True),
    _when("opened_at", nullable=False),
    _when("occurred_at", nullable=False),
    _when("last_press_at", nullable=False),
    Column("press_count", Integer, nullable=False, server_default=text("1")),
    _when("deadline_at"),
    _fk("acknowledged_by", "workers.id", nullable=True),
    _when("acknowledged_at"),
    _when("arrived_at"),
    _when("resolved_at"),
    Column("outcome", String(32), nullable=True),
    _text("resolution_note"),
    _when("closed_at"),
    _text("note"),
    _when("updated_at", nullable=False),
    Column("version", Integer, nullable=False, server_default=text("1")),  # optimistic lock
    # the worker the hotline desk handed the case to (issue #12, migration 0015); a plain
    # integer because SQLite cannot add a foreign key to an existing table in place
    Column("assigned_worker_id", Integer, nullable=True),
    Index(None, "household_id", "state"),
    Index(None, "state", "deadline_at"),
    Index(None, "opened_at"),
    sqlite_autoincrement=True,
)

case_audit = Table(
    "case_audit",
    metadata,
    _id(),
    _fk("case_id", "cases.id"),
    _when("at", nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    _text("detail"),
    Index(None, "case_id"),
    sqlite_autoincrement=True,
)

case_notifications = Table(
    "case_notifications",
    metadata,
    _id(),
    _fk("case_id", "cases.id"),
    _fk("worker_id", "workers.id"),
    Column("tier", String(32), nullable=False),
    _when("notified_at", nullable=False),
    Index(None, "case_id"),
)

tasks = Table(
    "tasks",
    metadata,
    _id(),
    Column("kind", String(32), nullable=False),  # service_request | maintenance
    Column("category", Integer, nullable=True),  # 1..11 for service requests
    _fk("household_id", "households.id", nullable=True),
    _fk("grid_id", "grids.id", nullable=True),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=True),
    _fk("assigned_worker_id", "workers.id", nullable=True),
    Column("state", String(16), nullable=False),  # open | acknowledged | done
    _text("detail"),
    _when("created_at", nullable=False),
    _fk("acknowledged_by", "workers.id", nullable=True),
    _when("acknowledged_at"),
    _when("done_at"),
    Column("press_count", Integer, nullable=False, server_default=text("1")),  # issue #11
    Index(None, "state", "grid_id"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", String(64), primary_key=True),  # uuid4, also the contract's command_id
    Column("edge_id", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("args", JSONText(), nullable=False),
    # pending | sent | ok | device_error | timeout | rejected | expired
    Column("state", String(16), nullable=False),
    _fk("case_id", "cases.id", nullable=True),
    _when("created_at", nullable=False),
    _when("sent_at"),
    _when("result_at"),
    _text("detail"),
    # Not executed after this (issue #11); NULL until first published for button feedback
    # queued by the case service (then created_at + the profile's deadline_s).
    _when("deadline_at"),
    Index(None, "state", "created_at"),
)

edge_status = Table(
    "edge_status",
    metadata,
    Column("edge_id", String(64), primary_key=True),
    _flag("online", default=False),
    _when("at", nullable=False),
    Column("info", JSONText(), nullable=False),
)

# --- audit log (issue #4) ---
# Append-only: the migration installs triggers that abort any UPDATE or DELETE.
audit_log = Table(
    "audit_log",
    metadata,
    _id(),
    _when("at", nullable=False),
    Column("actor", String(100), nullable=False),  # "user:alice", "token:api", "edge:edge-1"
    Column("actor_role", String(16), nullable=False),
    Column("action", String(64), nullable=False),  # e.g. "device.update", "door.open"
    Column("target_type", String(32), nullable=False),
    Column("target_id", String(64), nullable=False),
    Column("before", JSONText(), nullable=True),
    Column("after", JSONText(), nullable=True),
    Index(None, "target_type", "target_id"),
    Index(None, "at"),
    sqlite_autoincrement=True,
)

# --- accounts (issue #4) ---
# People log in with a username and password (argon2id hash, never the password) and get
# an opaque bearer token; only its SHA-256 digest is stored, so a copy of the database
# does not let anyone log in. Edges are machine identities and never have a row here.
accounts = Table(
    "accounts",
    metadata,
    _id(),
    Column("username", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # admin | operator | hotline | worker
    _fk("worker_id", "workers.id", nullable=True),  # the workers row a worker account acts as
    Column("password_hash", String(255), nullable=False),
    _flag("active", default=True),
    _when("created_at", nullable=False),
    _when("disabled_at"),
)

auth_tokens = Table(
    "auth_tokens",
    metadata,
    _id(),
    Column("token_hash", String(64), nullable=False, unique=True),  # hex SHA-256 of the token
    _fk("account_id", "accounts.id"),
    _when("issued_at", nullable=False),
    _when("expires_at", nullable=False),
    _when("revoked_at"),
    Index(None, "account_id"),
)

# Failed logins, kept so throttling survives a restart; pruned as they age out.
login_failures = Table(
    "login_failures",
    metadata,
    _id(),
    Column("username", String(64), nullable=False),
    Column("client", String(64), nullable=False),  # remote address as the API saw it
    _when("at", nullable=False),
    Index(None, "username", "at"),
    Index(None, "client", "at"),
)

# --- device registry and residents (issue #4) ---
# No new tables: migration 0005 adds columns to two tables defined above.
# devices.grid_id     the grid of a device that is not in a household (a compound gate, a
#                     bin); a device in a household is in that household's grid, and its
#                     own grid_id stays NULL, so moving a household moves its devices
# devices.bus         the edge bus the device sits on, e.g. the serial port "/dev/ttyUSB0"
# devices.address     its address on that bus: serial number, Modbus unit id, meter address
# devices.retired_at  soft delete: a retired device keeps its history, and ingest
#                     quarantines its events as from an unknown device
# devices.updated_at  last change through the registry
# residents.birth_year

# --- registered edges (issue #4) ---
# Machine identities for the broker, never user accounts. password_hash is the edge's
# Mosquitto password-file entry (PBKDF2-SHA512, "$7$..."): what the broker needs, and
# never the password, which the operator sees once. A retired edge keeps its row (and its
# id) but leaves the broker's password and ACL files.
edges = Table(
    "edges",
    metadata,
    Column("edge_id", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    _when("registered_at", nullable=False),
    _when("rotated_at"),
    _when("retired_at"),
    _text("note"),
)

# --- notifications and metrics (issue #4) ---
# One row per notification handed to an HTTP channel (webhook, wecom, dingtalk, sms), written
# when its delivery ends: "sent", or "failed" with the last error. The live stream has no
# rows (a phone that is not connected reads open cases on reconnect).
notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    _id(),
    _when("at", nullable=False),
    Column("channel", String(16), nullable=False),
    Column("state", String(8), nullable=False),  # sent | failed
    Column("case_id", Integer, nullable=True),
    Column("task_id", Integer, nullable=True),
    Column("worker_id", Integer, nullable=False),
    Column("tier", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    _text("error"),
    Index(None, "state", "at"),
    Index(None, "case_id"),
    sqlite_autoincrement=True,
)

# --- remote configuration (issue #4) ---
# Every configuration document issued to an edge, kept whole: what was pushed, when and
# by whom. The newest version of an edge is the one published (retained) to it.
edge_configs = Table(
    "edge_configs",
    metadata,
    _id(),
    Column("edge_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("document", JSONText(), nullable=False),  # the EdgeConfigDocument as sent
    _when("issued_at", nullable=False),
    Column("issued_by", String(100), nullable=False),  # the actor, e.g. "token:api"
    UniqueConstraint("edge_id", "version"),
)

# --- issue #3: device state ---
# The latest of what each device said (one row per device, rewritten in bulk by ingest's
# DeviceStateHandler), and device supervision: devices seen going offline, waiting to be
# grouped into an outage or to get a maintenance task, and the outages filed.
device_state = Table(
    "device_state",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("last_event_kind", String(64), nullable=False),
    _when("last_event_at", nullable=False),  # the device's time (occurred_at)
    Column("readings", JSONText(), nullable=False),  # {field: latest value}
    Column("reading_times", JSONText(), nullable=False),  # {field: ISO time of that value}
    _when("readings_at"),  # the newest reading merged in (older ones arriving late are not)
    Column("online", Boolean, nullable=True),  # NULL: never reported either way
    _when("online_changed_at"),
    _text("offline_reason"),
    _when("updated_at", nullable=False),  # hub time of the last change
)

offline_devices = Table(
    "offline_devices",
    metadata,
    Column("device_id", String(64), primary_key=True),
    _when("offline_at", nullable=False),  # when the edge saw it go (occurred_at)
    _when("noticed_at", nullable=False),  # when the hub learnt it
    Column("edge_id", String(64), nullable=True),
    Column("building", String(200), nullable=True),  # e.g. "幸福里小区3号楼", if derivable
    Column("grid_id", Integer, nullable=True),
    Column("household_id", Integer, nullable=True),
    _text("reason"),
    Column("state", String(16), nullable=False),  # pending | maintenance | outage
    Column("task_id", Integer, nullable=True),
    Column("outage_id", Integer, nullable=True),
    Index(None, "state"),
)

outages = Table(
    "outages",
    metadata,
    _id(),
    Column("group_key", String(300), nullable=False),  # "edge:<id>" or "building:<name>"
    Column("label", String(300), nullable=False),
    Column("grid_id", Integer, nullable=True),
    Column("task_id", Integer, nullable=True),
    _when("started_at", nullable=False),
    Column("devices", Integer, nullable=False),
    Column("back_online", Integer, nullable=False, server_default=text("0")),
    _when("ended_at"),  # set when its task is done; a later offline starts a new outage
    Index(None, "group_key"),
    sqlite_autoincrement=True,
)

# --- issue #3: facilities ---
# Door access log: every pass, unknown face, forced or held-open door, written in bulk by
# hub.handlers.facilities.doors (one row per event; the event itself stays in "events").
door_access_log = Table(
    "door_access_log",
    metadata,
    _id(),
    Column("device_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # face_pass | face_unknown | card_pass | ...
    Column("person_id", String(64), nullable=True),
    Column("card_id", String(64), nullable=True),
    Column("similarity", Float, nullable=True),
    Column("seconds", Integer, nullable=True),  # door_held_open
    _when("at", nullable=False),  # the device's time (occurred_at)
    Index(None, "device_id", "at"),
    sqlite_autoincrement=True,
)

# Parcels in locker compartments. State: waiting (picked_up_at NULL), picked_up, overdue
# (overdue_at set, not picked up). notice_*: the household's webhook (none | pending | sent
# | failed), sent after commit by the parcel handler's tick.
parcels = Table(
    "parcels",
    metadata,
    _id(),
    Column("device_id", String(64), nullable=False),  # the locker
    Column("compartment", Integer, nullable=False),
    Column("parcel_id", String(64), nullable=False),
    _fk("household_id", "households.id", nullable=True),  # NULL: not a known household
    _when("deposited_at", nullable=False),
    _when("picked_up_at"),
    _when("overdue_at"),
    Column("delivery_task_id", Integer, nullable=True),  # lone resident: the task filed
    Column("notice_state", String(8), nullable=False, server_default=text("'none'")),
    Column("notice_attempts", Integer, nullable=False, server_default=text("0")),
    _text("notice_error"),
    _when("noticed_at"),
    Index(None, "device_id", "parcel_id"),
    Index(None, "household_id", "deposited_at"),
    Index(None, "picked_up_at", "overdue_at", "deposited_at"),
    Index(None, "notice_state"),
    sqlite_autoincrement=True,
)

# One row per water meter per night: readings inside the night window and how many showed
# no flow, kept up to date as readings arrive and judged once after the window ends.
water_nights = Table(
    "water_nights",
    metadata,
    _id(),
    Column("device_id", String(64), nullable=False),
    Column("night", Date, nullable=False),  # the local date the window starts
    _when("ends_at", nullable=False),  # when the window closes
    Column("readings", Integer, nullable=False),
    Column("zero_readings", Integer, nullable=False),
    Column("min_flow_m3h", Float, nullable=True),
    _when("evaluated_at"),
    Column("verdict", String(16), nullable=True),  # leak | no_leak | too_few
    Column("task_id", Integer, nullable=True),
    UniqueConstraint("device_id", "night"),
    Index(None, "evaluated_at", "ends_at"),
)

# --- quarantine caps (issue #11) ---
# What ingest refused but did not keep, counted so that a flood stays visible after a
# restart. cause: "device_cap" / "edge_cap" (a sending edge's rows for one device, or all
# its rows, over ``ingest.quarantine_per_device`` / ``quarantine_per_edge``: the oldest
# went) or "pruned" (the whole table over ``ingest.quarantine_max_rows``). edge_id "": a
# message whose topic names no edge.
quarantine_dropped = Table(
    "quarantine_dropped",
    metadata,
    Column("edge_id", String(64), primary_key=True),
    Column("cause", String(16), primary_key=True),
    Column("count", Integer, nullable=False),
    _when("first_at", nullable=False),
    _when("last_at", nullable=False),
)

# The wellbeing watch (issue #15). Per consenting household: the watch itself (consent, who
# recorded it, the resident's face id at the door, the daily check-in hour, the learnt
# baseline of the day), away periods with an end date, raw activity (kept
# ``wellbeing.activity_kept_days``), each source's last report and activity, and the
# welfare checks raised (a ``tasks`` row of kind welfare_check, its escalation and outcome).
wellbeing_watch = Table(
    "wellbeing_watch",
    metadata,
    Column("household_id", Integer, ForeignKey("households.id"), primary_key=True),
    _flag("consent", default=False),
    _when("consent_at", nullable=False),
    Column("consent_by", String(100), nullable=False),  # the audit actor who recorded it
    _text("consent_note"),
    Column("face_person_id", String(64), nullable=True, unique=True),
    Column("check_in_hour", Integer, nullable=True),  # local hour 0-23, or no check-in
    _when("started_at", nullable=False),  # the silence is never counted from before this
    Column("baseline", JSONText(), nullable=True),
    Column("baseline_day", Date, nullable=True),
    _when("alerted_silence_since"),  # one welfare check per silence
    Column("check_in_day", Date, nullable=True),  # the last day whose missed check-in was acted on
    Column("check_in_task_id", Integer, nullable=True),  # the desk's call, while pending
    _when("check_in_prompted_at"),
    _when("judged_at"),
)

wellbeing_away = Table(
    "wellbeing_away",
    metadata,
    _id(),
    _fk("household_id", "households.id"),
    Column("reason", String(16), nullable=False),  # hospital | travel | family_visit | other
    _when("starts_at", nullable=False),
    _when("ends_at", nullable=False),
    _text("note"),
    Column("created_by", String(100), nullable=False),
    _when("created_at", nullable=False),
    Index(None, "household_id", "ends_at"),
)

wellbeing_activity = Table(
    "wellbeing_activity",
    metadata,
    _id(),
    Column("household_id", Integer, nullable=False),
    # water | electricity | door | button | check_in | answer (to a prompt)
    Column("source", String(16), nullable=False),
    Column("device_id", String(64), nullable=False),
    _when("at", nullable=False),
    Index(None, "household_id", "at"),
    Index(None, "at"),
    sqlite_autoincrement=True,
)

wellbeing_sources = Table(
    "wellbeing_sources",
    metadata,
    Column("household_id", Integer, primary_key=True),
    Column("source", String(16), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    _when("last_report_at"),
    _when("last_activity_at"),
    Column("last_kwh", Float, nullable=True),  # electricity: the previous energy reading
    _when("last_kwh_at"),
)

# "Are you OK?" prompts (关爱询问, migration 0025): the soft first step before a welfare
# check. One row per prompt: the silence it asked about, the button it went to, whether and
# how it was answered (the source of the activity that ended the silence), or the welfare
# check it became when unanswered after ``wellbeing.prompt_wait_min``.
wellbeing_prompts = Table(
    "wellbeing_prompts",
    metadata,
    _id(),
    _fk("household_id", "households.id"),
    _when("silence_since", nullable=False),
    _when("asked_at", nullable=False),
    Column("device_id", String(64), nullable=True),  # the CB-100 asked (none: no button)
    Column("command_id", String(64), nullable=True),  # its button_feedback command
    _when("answered_at"),
    Column("answer", String(16), nullable=True),  # the activity source that answered it
    Column("welfare_task_id", Integer, nullable=True),  # unanswered: the welfare check
    Index(None, "household_id", "asked_at"),
)

welfare_checks = Table(
    "welfare_checks",
    metadata,
    _id(),
    Column("task_id", Integer, ForeignKey("tasks.id"), nullable=False, unique=True),
    _fk("household_id", "households.id"),
    Column("grid_id", Integer, nullable=True),
    Column("reason", String(16), nullable=False),  # silence | no_answer (to a prompt) | check_in
    _text("evidence"),
    _when("opened_at", nullable=False),
    Column("tier", Integer, nullable=False, server_default=text("0")),  # 0 grid … 2 station
    _when("next_escalation_at"),
    # all_well | helped | hospital | no_answer_door_opened
    Column("outcome", String(32), nullable=True),
    _text("outcome_note"),
    Column("outcome_by", String(100), nullable=True),
    _when("closed_at"),
    Index(None, "closed_at", "next_escalation_at"),
)


# The live feed (issue #12): what the pages' streams send, one row per event, so that a
# phone that reconnects with Last-Event-ID gets everything after it, across hub restarts.
# "case" and "task" rows are written by database triggers (migration 0014) in the same
# transaction as the change itself, whichever code path made it; "notification" rows by
# ``hub.notify.stream.WorkerStreams`` with the notification's JSON in ``data``.
# The hub also creates the triggers at start-up when missing (:func:`live_feed_triggers`):
# a migration that rebuilds ``cases`` or ``tasks`` (SQLite's batch mode copies the table)
# drops the triggers on it, and migrations of parallel branches run in no fixed order.
LIVE_FEED_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS live_feed_case_insert AFTER INSERT ON cases BEGIN
        INSERT INTO live_feed (event, case_id, grid_id) VALUES ('case', NEW.id, NEW.grid_id);
    END""",
    """CREATE TRIGGER IF NOT EXISTS live_feed_case_update AFTER UPDATE ON cases
    WHEN OLD.state IS NOT NEW.state OR OLD.tier IS NOT NEW.tier
        OR OLD.acknowledged_by IS NOT NEW.acknowledged_by
        OR OLD.cancel_requested IS NOT NEW.cancel_requested
        OR OLD.grid_id IS NOT NEW.grid_id OR OLD.press_count IS NOT NEW.press_count
    BEGIN
        INSERT INTO live_feed (event, case_id, grid_id) VALUES ('case', NEW.id, NEW.grid_id);
    END""",
    """CREATE TRIGGER IF NOT EXISTS live_feed_task_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO live_feed (event, task_id, grid_id) VALUES ('task', NEW.id, NEW.grid_id);
    END""",
    """CREATE TRIGGER IF NOT EXISTS live_feed_task_update AFTER UPDATE ON tasks
    WHEN OLD.state IS NOT NEW.state OR OLD.acknowledged_by IS NOT NEW.acknowledged_by
        OR OLD.grid_id IS NOT NEW.grid_id
        OR OLD.assigned_worker_id IS NOT NEW.assigned_worker_id
    BEGIN
        INSERT INTO live_feed (event, task_id, grid_id) VALUES ('task', NEW.id, NEW.grid_id);
    END""",
)

# PostgreSQL's twins (plpgsql functions; ``IS DISTINCT FROM`` is SQLite's ``IS NOT``), all
# idempotent. One more thing SQLite gave for free: a stream reads "rows after the client's
# Last-Event-ID", which is only right if ids are visible in commit order. SQLite has one
# writer at a time, so they are; on PostgreSQL a sequence hands out ids when rows are
# inserted, and a transaction holding id 10 may commit after one holding 11 — a reader that
# had seen 11 would skip 10 for ever. So each feed row gets its final id *at commit*: a
# deferred constraint trigger takes a transaction-level advisory lock (held until the
# commit is visible) and renumbers the row from the sequence. Feed writers therefore commit
# one after another; they are case and task changes and notification batches, not the
# event stream, and at commit time they wait for nothing else, so no deadlock is possible.
LIVE_FEED_LOCK_KEY = 0x4C495645  # "LIVE": the advisory lock of the feed's commit order
LIVE_FEED_TRIGGERS_POSTGRESQL = (
    """CREATE OR REPLACE FUNCTION live_feed_case() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO live_feed (event, case_id, grid_id) VALUES ('case', NEW.id, NEW.grid_id);
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION live_feed_task() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO live_feed (event, task_id, grid_id) VALUES ('task', NEW.id, NEW.grid_id);
        RETURN NULL;
    END $$""",
    f"""CREATE OR REPLACE FUNCTION live_feed_commit_order() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock({LIVE_FEED_LOCK_KEY});
        UPDATE live_feed SET id = nextval(pg_get_serial_sequence('live_feed', 'id'))
            WHERE id = NEW.id;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE TRIGGER live_feed_case_insert AFTER INSERT ON cases
    FOR EACH ROW EXECUTE FUNCTION live_feed_case()""",
    """CREATE OR REPLACE TRIGGER live_feed_case_update AFTER UPDATE ON cases FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.tier IS DISTINCT FROM NEW.tier
        OR OLD.acknowledged_by IS DISTINCT FROM NEW.acknowledged_by
        OR OLD.cancel_requested IS DISTINCT FROM NEW.cancel_requested
        OR OLD.grid_id IS DISTINCT FROM NEW.grid_id
        OR OLD.press_count IS DISTINCT FROM NEW.press_count)
    EXECUTE FUNCTION live_feed_case()""",
    """CREATE OR REPLACE TRIGGER live_feed_task_insert AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION live_feed_task()""",
    """CREATE OR REPLACE TRIGGER live_feed_task_update AFTER UPDATE ON tasks FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
        OR OLD.acknowledged_by IS DISTINCT FROM NEW.acknowledged_by
        OR OLD.grid_id IS DISTINCT FROM NEW.grid_id
        OR OLD.assigned_worker_id IS DISTINCT FROM NEW.assigned_worker_id)
    EXECUTE FUNCTION live_feed_task()""",
    # A constraint trigger cannot be CREATE OR REPLACE'd: create it when missing.
    """DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'live_feed_commit_order'
                       AND tgrelid = 'live_feed'::regclass) THEN
            CREATE CONSTRAINT TRIGGER live_feed_commit_order AFTER INSERT ON live_feed
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION live_feed_commit_order();
        END IF;
    END $$""",
)


def live_feed_triggers(dialect_name: str) -> tuple[str, ...]:
    """The statements that create the live feed's triggers when missing, per dialect."""
    if dialect_name == "postgresql":
        return LIVE_FEED_TRIGGERS_POSTGRESQL
    if dialect_name == "sqlite":
        return LIVE_FEED_TRIGGERS
    raise ValueError(f"no live feed triggers for {dialect_name!r} (SQLite or PostgreSQL)")


live_feed = Table(
    "live_feed",
    metadata,
    _id(),
    Column("event", String(16), nullable=False),  # case | task | notification
    Column("case_id", Integer, nullable=True),
    Column("task_id", Integer, nullable=True),
    Column("grid_id", Integer, nullable=True),
    Column("worker_id", Integer, nullable=True),  # notification rows: whose
    Column("data", JSONText(), nullable=True),  # notification rows: the notification
    Column("at", String(32), nullable=False, server_default=text("CURRENT_TIMESTAMP")),
    sqlite_autoincrement=True,  # ids are never reused: they are the clients' Last-Event-ID
)

# --- hub replicas (issue #14): who is alive, for sharing out the edges ---
# One row per replica; ``beat`` grows every heartbeat. Liveness is judged by each replica
# from whether a row's beat changed within its own monotonic window, so no two hosts'
# clocks are ever compared (``hub.replicas``).
hub_replicas = Table(
    "hub_replicas",
    metadata,
    Column("replica_id", String(64), primary_key=True),
    Column("beat", BigInteger, nullable=False, server_default=text("0")),
    Column("role", String(16), nullable=False),
    _flag("ready", default=False),  # warmed up: takes its share of the edges
    _when("started_at", nullable=False),
    _when("seen_at", nullable=False),
)
