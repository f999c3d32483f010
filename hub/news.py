"""News between hub processes: "cases changed", carried by the broker (issue #13, #14).

The database is where news *is*: a case, its deadline and its live-feed rows are committed
before anybody is told. What travels between processes is only a wake-up, so that a
process need not poll to notice: the escalation timer of another replica re-reads the
earliest deadline, and the live-feed watcher of the API process re-reads the feed's head
(``hub.notify.stream``). A lost wake-up costs latency, never data: the timer re-reads
every second and the watcher every 0.25 s anyway.

The broker carries it (QoS 0, not retained, on :data:`NEWS_TOPIC`) rather than
PostgreSQL's LISTEN/NOTIFY so that one mechanism serves both back ends: on SQLite the
ingest and API processes on one host share one file and one broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from contract import topics
from contract.mqtt import Message

log = logging.getLogger(__name__)

#: Hub processes only (``hub.provisioning``: the hub's account reads and writes it).
NEWS_TOPIC = topics.HUB_NEWS


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool: ...


class HubNews:
    """Tell the other hub processes that cases changed; hear them say so."""

    def __init__(self, origin: str) -> None:
        self._origin = origin.encode()
        self._publisher: Publisher | None = None
        self._listeners: list[Callable[[], None]] = []
        self.stats = {"sent": 0, "heard": 0}

    def attach(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def listen(self, callback: Callable[[], None]) -> None:
        """``callback`` runs in the event loop for every change, ours and the others'."""
        self._listeners.append(callback)

    def cases_changed(self) -> None:
        """A transaction that changed cases (or the live feed) has committed here."""
        self._wake()
        publisher = self._publisher
        if publisher is not None and publisher.publish(NEWS_TOPIC, self._origin, qos=0):
            self.stats["sent"] += 1

    def on_message(self, message: Message) -> None:
        if message.payload == self._origin:
            return  # our own: the listeners were woken when we sent it
        self.stats["heard"] += 1
        self._wake()

    def _wake(self) -> None:
        for callback in self._listeners:
            try:
                callback()
            except Exception:
                log.exception("a news listener failed")
