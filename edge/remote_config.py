"""Remote configuration on the edge: take a document from the hub, check it, keep it, run it.

Today's gateways swap in whatever configuration they are pushed; a typo in a device list
then takes a building's call buttons offline until somebody drives there. Here a document
arriving on ``topics.config(edge_id)`` goes through four steps, in this order:

1. **decode** strictly (``contract.remote_config``) and check it is for this edge;
2. **ignore** it if its version is not above the running one (a retained copy of the
   running document arrives on every reconnect: that is silent; anything else older is
   reported as stale);
3. **check** it fully with ``profiles.config_check`` — the same check the hub ran;
4. **keep** it on disk atomically (:class:`ConfigStore`), and only then **swap** it in:
   the agent stops its serial drivers and starts the document's.

A document failing 1-3 is refused: the edge keeps running what it ran, reports
``config_refused: {version, reason}`` in its status at once and records a
``config.refused`` event in its outbox for the hub's history. On start-up the edge runs
the last known good document from ``data_dir/config/current.json`` (falling back to
``previous.json``, then to the YAML file's buses), so a restart never undoes an applied
configuration, and a corrupted file never stops the edge.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from contract import ContractError, Lane
from contract.remote_config import CONFIG_APPLIED, CONFIG_REFUSED, EdgeConfigDocument
from edge.errors import OutboxError
from edge.sink import EventSink
from profiles.config_check import CheckedConfig, ConfigDocumentError, check_config_document

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000  # a refusal reason in status and events; the log has all of it


def _write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ConfigStore:
    """``current.json`` (the document running) and ``previous.json`` (the one before) in
    ``directory``. Every write is temp file → fsync → rename → fsync of the directory, and
    ``current.json`` is replaced last, so at any crash point ``current.json`` is a whole
    document (old or new) and ``previous.json`` a whole earlier one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.current = directory / "current.json"
        self.previous = directory / "previous.json"

    def save(self, data: bytes) -> None:
        """Keep ``data`` as the current document; the current one becomes the previous."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.current.exists():
            _write_durably(self.previous, self.current.read_bytes())
        _write_durably(self.current, data)

    def candidates(self) -> list[tuple[Path, bytes]]:
        """Stored documents, newest first, that could be read (unreadable ones are logged)."""
        found = []
        for path in (self.current, self.previous):
            try:
                found.append((path, path.read_bytes()))
            except FileNotFoundError:
                continue
            except OSError as err:
                log.error("%s: cannot read stored configuration: %s", path, err)
        return found


class GatedSink:
    """The outbox as one serial driver sees it, closed before that driver is stopped.

    Swapping configurations stops the running drivers. Cancelling a driver while the
    outbox commits one of its events could cut that commit in half (an SOS is committed
    inside ``record``), so the agent first closes the driver's gate and waits for the
    records in flight to finish; only then is the driver cancelled. A frame that arrives
    once the gate is closed is refused like a full disk would refuse it: not link-acked,
    so the button resends it to the new driver. Costs a counter per record, no task.
    """

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._open = True
        self._in_flight = 0
        self._drained: asyncio.Future[None] | None = None

    async def record(
        self,
        device_id: str,
        kind: str,
        lane: Lane,
        data: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        frame_seq: int | None = None,
    ) -> bool:
        if not self._open:
            raise OutboxError("the bus is being reconfigured; the device resends this frame")
        self._in_flight += 1
        try:
            return await self._sink.record(
                device_id, kind, lane, data, dedupe_key=dedupe_key, frame_seq=frame_seq
            )
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    async def close(self, timeout_s: float) -> bool:
        """Refuse new records; wait for those in flight. False if they outlast ``timeout_s``."""
        self._open = False
        if self._in_flight == 0:
            return True
        self._drained = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), timeout_s)
        except TimeoutError:
            return False
        return True


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RemoteConfig:
    """What the edge runs, and what it does with a document from the hub.

    ``apply`` swaps a checked document in (the agent's ``swap_buses``), ``sink`` takes the
    ``config.*`` events, ``report`` publishes the status at once. Documents are handled one
    at a time, and not before :meth:`ready` (the drivers must be running to be swapped).
    """

    def __init__(
        self,
        edge_id: str,
        store: ConfigStore,
        *,
        apply: Callable[[CheckedConfig], Awaitable[None]],
        sink: EventSink,
        report: Callable[[], Awaitable[None]],
    ) -> None:
        self.edge_id = edge_id
        self.store = store
        self._apply = apply
        self._sink = sink
        self._report = report
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self.running: CheckedConfig | None = None  # None: the YAML file's buses
        self._running_digest = ""
        self.refused: dict[str, Any] | None = None
        self._refused_digests: set[str] = set()  # refused documents already recorded
        self.stats = {"applied": 0, "refused": 0, "stale": 0}

    # -- start-up -------------------------------------------------------------------------
    def load_last_known_good(self) -> CheckedConfig | None:
        """The newest stored document that still decodes and checks, or None.

        Called before anything runs; a bad stored file is logged and skipped, never fatal.
        """
        for path, data in self.store.candidates():
            try:
                checked = self._check(data)
            except (ContractError, ConfigDocumentError) as err:
                log.error("%s: stored configuration not usable, skipped: %s", path, err)
                continue
            self.running = checked
            self._running_digest = _digest(checked.document.encode())
            log.info(
                "running the last known good configuration version %d from %s",
                checked.version,
                path,
            )
            return checked
        return None

    def ready(self) -> None:
        """The drivers run: documents may be swapped in from now on."""
        self._ready.set()

    # -- status -----------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Version of the running document; 0 while the YAML file's buses run."""
        return self.running.version if self.running is not None else 0

    def status_info(self) -> dict[str, Any]:
        return {
            "config_version": self.version,
            "config_source": "hub" if self.running is not None else "file",
            "config_refused": self.refused,
        }

    # -- a document arrives -----------------------------------------------------------------
    async def on_message(self, payload: bytes) -> None:
        """Handle one message from the config topic. Never raises (it runs as a task)."""
        if not payload:
            return  # the retained document was cleared: keep running what runs
        await self._ready.wait()
        async with self._lock:
            try:
                await self._handle(payload)
            except Exception:  # a bug here must not take the edge down
                log.exception("configuration message not handled; the running one stays")

    def _check(self, data: bytes) -> CheckedConfig:
        document = EdgeConfigDocument.decode(data)
        if document.edge_id != self.edge_id:
            raise ContractError(
                f"config.edge_id: the document is for edge {document.edge_id!r}, "
                f"not {self.edge_id!r}"
            )
        return check_config_document(document)

    async def _handle(self, payload: bytes) -> None:
        try:
            document = EdgeConfigDocument.decode(payload)
        except ContractError as err:
            await self._refuse(payload, None, str(err))
            return
        if document.version <= self.version:
            if _digest(document.encode()) == self._running_digest:
                log.debug("configuration version %d already runs", document.version)
                return
            self.stats["stale"] += 1
            await self._refuse(
                payload,
                document.version,
                f"stale: version {document.version} is not above the running "
                f"version {self.version}",
            )
            return
        try:
            checked = self._check(payload)
        except (ContractError, ConfigDocumentError) as err:
            await self._refuse(payload, document.version, str(err))
            return
        data = checked.document.encode()
        try:
            await asyncio.to_thread(self.store.save, data)
        except OSError as err:
            await self._refuse(
                payload, document.version, f"cannot keep it on disk ({err}); not applied"
            )
            return
        await self._apply(checked)
        self.running = checked
        self._running_digest = _digest(data)
        self.stats["applied"] += 1
        log.info(
            "configuration version %d applied: %d bus(es), %d device(s)",
            checked.version,
            len(checked.document.serial_buses),
            len(checked.document.devices),
        )
        await self._record(
            CONFIG_APPLIED,
            {
                "version": checked.version,
                "buses": [b.port for b in checked.document.serial_buses],
                "devices": len(checked.document.devices),
            },
        )
        await self._report()

    async def _refuse(self, payload: bytes, version: int | None, reason: str) -> None:
        self.stats["refused"] += 1
        self.refused = {"version": version, "reason": reason[:MAX_REASON_CHARS]}
        log.warning(
            "configuration version %s refused; still running version %d: %s",
            version if version is not None else "?",
            self.version,
            reason,
        )
        digest = _digest(payload)
        if digest not in self._refused_digests:  # a retained bad document comes back often
            if len(self._refused_digests) >= 100:
                self._refused_digests.clear()
            self._refused_digests.add(digest)
            await self._record(CONFIG_REFUSED, dict(self.refused, running=self.version))
        await self._report()

    async def _record(self, kind: str, data: dict[str, Any]) -> None:
        try:
            await self._sink.record(self.edge_id, kind, Lane.NORMAL, data)
        except OutboxError as err:  # the status still says it, and the log
            log.error("%s event not recorded: %s", kind, err)
