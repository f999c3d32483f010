"""Edges that are nothing but their uplink, for the hub's own ingest rate and city load.

``python -m bench.synthetic_edge PORT EDGE_ID EVENTS WINDOW FIRST_SERIAL GROUPS PER_GROUP
[--edges K] [--rate R] [--batch B] [--drain-s S]``

Each edge speaks the real contract (``EventBatch`` of ``B`` telemetry events, QoS 1, at
most ``WINDOW`` unacknowledged batches, a batch retired only when the hub's end-to-end
``Ack`` names all its seqs), but its batches are encoded before the clock starts and it has
no outbox, so what is measured is the hub: decode, insert, case service, commit, ack.

- One edge (the default): ``EDGE_ID``, devices ``cb100-<FIRST_SERIAL + 1000 g + i>`` for
  ``g < GROUPS``, ``i < PER_GROUP``; ``EVENTS`` published as fast as the window allows.
  Prints ``ready``, then ``done <events acked> <monotonic first publish> <monotonic last
  ack>``.
- ``--edges K`` (the city load, issue #13): K edges in this process, ``EDGE_ID-00`` …,
  each with its own MQTT connection, window and devices (edge j has the groups
  ``j·GROUPS`` … of the numbering above) and ``EVENTS`` events each. ``--rate R`` paces
  every edge at R events/s (0: as fast as the window allows); a paced run prints
  ``ready`` once every edge sees the hub online and starts on a ``go`` line on stdin, so
  several processes start together. At the end: ``done <acked> <t first publish> <t last
  ack> <published> <behind>`` where ``behind`` counts batches published later than their
  schedule by more than one batch interval (the hub's acks held the window shut).

Several processes of this module (say 5 × 10 edges) make a city's load at one hub while
one real edge measures SOS latency beside them (``bench.city``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from contract import Ack, Event, EventBatch, HubStatus, Lane, topics

BATCH = 250  # the edge's default uplink batch_size
ACK_WAIT_S = 900.0  # an unpaced run waits this long for its last ack


@dataclass
class SyntheticEdge:
    """One edge: its pre-encoded batches, its window and what the hub acknowledged."""

    port: int
    edge_id: str
    devices: list[str]
    total: int
    window: int
    batch: int
    incarnation: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    payloads: list[bytes] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    hub_online: threading.Event = field(default_factory=threading.Event)
    all_acked: threading.Event = field(default_factory=threading.Event)
    last_ack: float = 0.0
    first_publish: float = 0.0
    published: int = 0
    behind: int = 0
    client: paho.Client | None = None

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        data = {"battery_pct": 80}
        devices = self.devices
        for start in range(1, self.total + 1, self.batch):
            seqs = range(start, min(self.total, start + self.batch - 1) + 1)
            events = tuple(
                Event(s, devices[s % len(devices)], "heartbeat", Lane.TELEMETRY, now, data)
                for s in seqs
            )
            self.payloads.append(EventBatch(self.edge_id, self.incarnation, events).encode())
        self.remaining = [
            min(self.batch, self.total - b * self.batch) for b in range(len(self.payloads))
        ]
        self.slots = threading.Semaphore(self.window)

    def connect(self) -> None:
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-{self.edge_id}",
            protocol=paho.MQTTv311,
        )
        client.max_inflight_messages_set(100)  # as contract.mqtt sets it
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        self.client = client

    def _on_connect(self, client: paho.Client, *_args: Any) -> None:
        client.subscribe(topics.acks(self.edge_id), 1)
        client.subscribe(topics.HUB_STATUS, 1)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == topics.HUB_STATUS:
            if msg.payload and HubStatus.decode(bytes(msg.payload)).online:
                self.hub_online.set()
            return
        ack = Ack.decode(bytes(msg.payload))
        if ack.incarnation != self.incarnation:
            return
        for seq in ack.seqs:
            if seq in self.acked:
                continue
            self.acked.add(seq)
            batch = (seq - 1) // self.batch
            self.remaining[batch] -= 1
            if self.remaining[batch] == 0:
                self.slots.release()
        self.last_ack = time.monotonic()
        if len(self.acked) >= self.total:
            self.all_acked.set()

    def publish_all(self, t0: float, rate: float) -> None:
        """Publish every batch, each at its due time when paced (``rate`` > 0); a paced
        edge stops publishing 2 s after its schedule ends, so a slow hub cannot stretch the
        run beyond the measurement it belongs to."""
        assert self.client is not None
        topic = topics.events(self.edge_id, Lane.TELEMETRY)
        interval = self.batch / rate if rate > 0 else 0.0
        stop_at = t0 + (self.total / rate if rate > 0 else 0.0) + 2.0
        self.first_publish = time.monotonic()
        for b, payload in enumerate(self.payloads):
            if interval:
                due = t0 + b * interval
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the offered load, not synchronisation
            if not interval:
                self.slots.acquire()
            elif not self.slots.acquire(timeout=max(0.0, stop_at - time.monotonic())):
                return  # the paced run is over and the window is still shut
            elif time.monotonic() > stop_at:
                self.slots.release()
                return  # the paced run is over: what was not published is not offered
            elif time.monotonic() - (t0 + b * interval) > interval:
                self.behind += 1
            self.client.publish(topic, payload, qos=1)
            self.published += min(self.batch, self.total - b * self.batch)

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


def _devices(first: int, groups: range, per_group: int) -> list[str]:
    return [f"cb100-{first + 1000 * g + i}" for g in groups for i in range(per_group)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synthetic_edge")
    for name in ("port", "edge_id", "events", "window", "first", "groups", "per_group"):
        parser.add_argument(name)
    parser.add_argument("--edges", type=int, default=0, help="K edges EDGE_ID-00 … (city load)")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s per edge (0: flat out)")
    parser.add_argument("--batch", type=int, default=BATCH, help="events per batch")
    parser.add_argument("--drain-s", type=float, default=30.0, help="paced: wait for last acks")
    args = parser.parse_args(argv)
    port, total, window = int(args.port), int(args.events), int(args.window)
    first, groups, per_group = int(args.first), int(args.groups), int(args.per_group)
    if args.edges:
        edges = [
            SyntheticEdge(
                port,
                f"{args.edge_id}-{j:02d}",
                _devices(first, range(j * groups, (j + 1) * groups), per_group),
                total,
                window,
                args.batch,
            )
            for j in range(args.edges)
        ]
    else:
        edges = [
            SyntheticEdge(
                port, args.edge_id, _devices(first, range(groups), per_group), total, window,
                args.batch,
            )
        ]  # fmt: skip
    for edge in edges:
        edge.connect()
    deadline = time.monotonic() + 60
    for edge in edges:
        if not edge.hub_online.wait(max(0.0, deadline - time.monotonic())):
            print("error: the hub never said it is online", flush=True)
            return 1
    print("ready", flush=True)
    paced = bool(args.edges) or args.rate > 0
    if paced and sys.stdin.readline().strip() != "go":
        return 1
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=edge.publish_all, args=(t0, args.rate), daemon=True)
        for edge in edges
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_s = args.drain_s if paced else ACK_WAIT_S
    finish = time.monotonic() + wait_s
    finished = all(edge.all_acked.wait(max(0.0, finish - time.monotonic())) for edge in edges)
    acked = sum(len(edge.acked) for edge in edges)
    first_publish = min(edge.first_publish for edge in edges)
    last_ack = max(edge.last_ack for edge in edges)
    line = f"done {acked} {first_publish:.6f} {last_ack:.6f}"
    if paced:
        published = sum(edge.published for edge in edges)
        line += f" {published} {sum(edge.behind for edge in edges)}"
    print(line, flush=True)
    for edge in edges:
        edge.close()
    return 0 if finished or paced else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
