"""An edge that is nothing but its uplink, for the hub's own ingest rate.

``python -m bench.synthetic_edge PORT EDGE_ID EVENTS WINDOW FIRST_SERIAL GROUPS PER_GROUP``

It speaks the real contract (``EventBatch`` of 250 telemetry events, QoS 1, at most
``WINDOW`` unacknowledged batches, a batch retired only when the hub's end-to-end ``Ack``
names all its seqs), but its batches are encoded before the clock starts and it has no
outbox, so what is measured is the hub: decode, insert, case service, commit, ack. Device
ids are registered load buttons (``cb100-<FIRST_SERIAL + 1000 g + i>``). Prints ``ready``,
then ``done <events> <monotonic first publish> <monotonic last ack>``.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from contract import Ack, Event, EventBatch, HubStatus, Lane, topics

BATCH = 250


def main(argv: list[str]) -> int:
    port, edge_id, total, window = int(argv[0]), argv[1], int(argv[2]), int(argv[3])
    first, groups, per_group = int(argv[4]), int(argv[5]), int(argv[6])
    devices = [f"cb100-{first + 1000 * g + i}" for g in range(groups) for i in range(per_group)]
    incarnation = uuid.uuid4().hex[:16]
    now = datetime.now(UTC)
    data = {"battery_pct": 80}
    payloads = []
    for start in range(1, total + 1, BATCH):
        seqs = range(start, min(total, start + BATCH - 1) + 1)
        events = tuple(
            Event(s, devices[s % len(devices)], "heartbeat", Lane.TELEMETRY, now, data)
            for s in seqs
        )
        payloads.append(EventBatch(edge_id, incarnation, events).encode())
    remaining = [min(BATCH, total - b * BATCH) for b in range(len(payloads))]
    acked: set[int] = set()
    slots = threading.Semaphore(window)
    hub_online, all_acked = threading.Event(), threading.Event()
    last_ack = [0.0]

    def on_connect(client: paho.Client, *_args: Any) -> None:
        client.subscribe(topics.acks(edge_id), 1)
        client.subscribe(topics.HUB_STATUS, 1)

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == topics.HUB_STATUS:
            if msg.payload and HubStatus.decode(bytes(msg.payload)).online:
                hub_online.set()
            return
        ack = Ack.decode(bytes(msg.payload))
        if ack.incarnation != incarnation:
            return
        for seq in ack.seqs:
            if seq in acked:
                continue
            acked.add(seq)
            batch = (seq - 1) // BATCH
            remaining[batch] -= 1
            if remaining[batch] == 0:
                slots.release()
        last_ack[0] = time.monotonic()
        if len(acked) >= total:
            all_acked.set()

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-{edge_id}",
        protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(100)
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not hub_online.wait(60):
        print("error: the hub never said it is online", flush=True)
        return 1
    print("ready", flush=True)
    topic = topics.events(edge_id, Lane.TELEMETRY)
    t0 = time.monotonic()
    for payload in payloads:
        slots.acquire()
        client.publish(topic, payload, qos=1)
    finished = all_acked.wait(900)
    print(f"done {len(acked)} {t0:.6f} {last_ack[0]:.6f}", flush=True)
    client.disconnect()
    client.loop_stop()
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
