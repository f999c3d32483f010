"""The hub's two MQTT links: the bulk link and the alarm link (issue #13).

Why two: over one connection an SOS queues behind telemetry batches of 36 KiB in the
broker's queue to the hub and in the TCP stream, and the hub can take alarms first only
once they have arrived (the 1 M drain showed SOS p99 0.5–0.8 s). The alarm link has its
own client id, its own broker account (``topics.alarm_account``), its own persistent
session and queue, and subscribes to the alarm lane only. Both links feed the same ingest
entry (:meth:`hub.ingest.Ingest.on_message`), which takes alarm messages first anyway.

What goes where:

* alarm acks (``…/acks/alarm``) and commands (button feedback first of all) go out on the
  alarm link — commands on the bulk link while the alarm link is down (an edge listens for
  commands on both of its links and runs each command id once);
* everything else (acks of the other lanes, configuration, the hub's status) on the bulk link;
* a message is PUBACKed (``manual_ack``, after ingest's commit) by the link it came in on:
  a message id means something only on its own connection. The alarm link subscribes to
  alarm events only and the bulk link never does, so the topic says which link.

The hub says it is online (retained, ``topics.HUB_STATUS``) only while both links are up:
edges send only while it says so, and a link whose subscription the broker has not yet
got would lose what they sent. Each link has the "offline" will; each publishes "online"
on connect if the other link is up then (:meth:`MqttConnection.link_up` is safe from
paho's threads), so the second link to come up announces the hub.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from contract import topics
from contract.mqtt import BrokerSettings, Message, MqttConnection

#: (topic, payload, qos, retain), as paho publishes it.
Publish = tuple[str, bytes, int, bool]


class HubBrokerLinks:
    """The bulk and alarm links as one broker for ingest, effects and remote configuration.

    A process that takes no edge traffic (``ingests=False``: an API-only replica, issue #14)
    has the bulk link only, with ``extra_subscriptions`` (news between hub processes) and no
    will: it must never say the hub is online or offline.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        bulk_client_id: str,
        alarm_client_id: str,
        on_message: Callable[[Message], None],
        on_connection_change: Callable[[bool], None],
        hub_status: Callable[[bool], bytes],
        online: Callable[[], list[Publish]] | None = None,
        ingests: bool = True,
        extra_subscriptions: Sequence[tuple[str, int]] = (),
        persistent_session: bool = True,
    ) -> None:
        #: Both links up (readiness, metrics); kept current by each link's callback.
        self.connected = False
        self._on_connection_change = on_connection_change
        will = (topics.HUB_STATUS, hub_status(False), 1, True) if ingests else None
        announcement = (topics.HUB_STATUS, hub_status(True), 1, True)
        online_now = online if online is not None else (lambda: [announcement])

        def announce_if(other: Callable[[], MqttConnection | None]) -> Callable[[], list[Publish]]:
            def publishes() -> list[Publish]:
                link = other()
                return online_now() if link is None or link.link_up() else []

            return publishes

        alarm_settings = settings
        if settings.username is not None:
            alarm_settings = settings.model_copy(
                update={"username": topics.alarm_account(settings.username)}
            )
        bulk_subscriptions = list(extra_subscriptions)
        if ingests:
            bulk_subscriptions += [
                *((t, 1) for t in topics.HUB_BULK_EVENTS_SUBSCRIPTIONS),
                (topics.HUB_STATUS_SUBSCRIPTION, 1),
                (topics.HUB_COMMAND_RESULTS_SUBSCRIPTION, 1),
            ]
        self.bulk = MqttConnection(
            settings,
            client_id=bulk_client_id,
            subscriptions=bulk_subscriptions,
            on_message=on_message,
            on_connection_change=self._bulk_changed,
            persistent_session=persistent_session,
            manual_ack=True,
            will=will,
            on_connect_publish=announce_if(lambda: self.alarm) if ingests else None,
        )
        self.alarm: MqttConnection | None = None
        if ingests:
            self.alarm = MqttConnection(
                alarm_settings,
                client_id=alarm_client_id,
                subscriptions=[(topics.HUB_ALARM_EVENTS_SUBSCRIPTION, 1)],
                on_message=on_message,
                on_connection_change=self._alarm_changed,
                persistent_session=persistent_session,
                manual_ack=True,
                will=will,
                on_connect_publish=announce_if(lambda: self.bulk),
            )

    def _bulk_changed(self, up: bool) -> None:
        self.connected = up and (self.alarm is None or self.alarm.connected)
        self._on_connection_change(up)  # remote configuration republishes on the bulk link

    def _alarm_changed(self, up: bool) -> None:
        self.connected = up and self.bulk.connected

    async def start(self) -> None:
        if self.alarm is not None:
            await self.alarm.start()
        await self.bulk.start()

    async def stop(self, *, final_publish: Publish | None = None) -> None:
        if self.alarm is not None:
            await self.alarm.stop()
        await self.bulk.stop(final_publish=final_publish)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        return self._link_for(topic).publish(topic, payload, qos, retain)

    def ack(self, message: Message) -> None:
        alarm = self.alarm is not None and message.topic.endswith("/events/alarm")
        (self.alarm if alarm and self.alarm is not None else self.bulk).ack(message)

    def _link_for(self, topic: str) -> MqttConnection:
        if self.alarm is not None:
            if topic.endswith("/acks/alarm"):
                return self.alarm
            if topic.endswith("/commands") and self.alarm.connected:
                return self.alarm
        return self.bulk
