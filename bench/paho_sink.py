"""The subscribing half of the raw paho limit: ``python -m bench.paho_sink PORT TOPIC``.

A separate process (as the hub is) subscribes at QoS 1 and notes the arrival time of every
message (``time.monotonic``, one clock for all processes on Linux). Payloads start with
``<phase> <seq> <monotonic send time> ``; phase ``end`` makes it print one JSON line —
per phase: count, first and last arrival; for phase ``lat``: each message's latency.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main(argv: list[str]) -> int:
    port, topic = int(argv[0]), argv[1]
    phases: dict[str, list[float]] = {}
    latencies: list[float] = []
    subscribed, done = threading.Event(), threading.Event()

    def on_connect(client: paho.Client, *_args: Any) -> None:
        client.subscribe(topic, 1)

    def on_subscribe(*_args: Any) -> None:
        subscribed.set()

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        phase, _seq, sent, _rest = msg.payload[:80].split(b" ", 3)
        if phase == b"end":
            done.set()
            return
        entry = phases.setdefault(phase.decode(), [0, now, now])
        entry[0] += 1
        entry[2] = now
        if phase == b"lat":
            latencies.append(now - float(sent))

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="bench-sink",
        protocol=paho.MQTTv311,
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not subscribed.wait(30):
        return 1
    print("ready", flush=True)
    done.wait(600)
    print(json.dumps({"phases": phases, "latencies": latencies}), flush=True)
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
