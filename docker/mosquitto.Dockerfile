# Debian's Mosquitto, run as uid 10001 (the hub's user): the hub writes the password and
# ACL files with mode 0600 into the shared /srv/broker/auth, and signals this broker (SIGHUP,
# through /srv/broker/run/mosquitto.pid) to re-read them; both need the same user.
ARG BASE_IMAGE=community/base:bookworm
FROM ${BASE_IMAGE}
RUN set -eu; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends mosquitto > /dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/*; \
    groupadd --system --gid 10001 hub; \
    useradd --system --uid 10001 --gid hub --no-create-home --shell /usr/sbin/nologin hub; \
    install -d -o hub -g hub -m 0750 /srv/broker/auth /srv/broker/run /srv/broker/data
USER hub
ENV MQTT_PORT=1883
# Port open: the listener is up. (No anonymous client may subscribe to test more.)
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${MQTT_PORT}"]
ENTRYPOINT ["/usr/sbin/mosquitto"]
CMD ["-c", "/etc/mosquitto/mosquitto.conf"]
