"""Edge agent: talks to the devices of one building, keeps every event in a local outbox
and forwards it to the hub.

Layers, outermost first: ``transports/`` (bytes on a serial port or socket) →
``codecs/`` (frames) → ``drivers/`` (one bus: framing, link acks, device commands) →
``profiles/`` (frame → event through a declarative device profile) → ``outbox.py``
(durable SQLite queue) → ``uplink.py`` (MQTT to the hub). ``agent.py`` wires them.
"""
