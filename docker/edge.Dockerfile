# The edge agent: `python -m edge` as the unprivileged user "edge" (uid 10002) in the
# "dialout" group, which owns the serial ports (pass them with --device). The outbox lives
# in /var/lib/edge: mount a volume there. The same image runs the CB-100 button simulator
# beside the agent for the compose stack (docker/edge-with-buttons.sh).
ARG BASE_IMAGE=community/base:bookworm
FROM ${BASE_IMAGE}
COPY . /tmp/ctx
RUN set -eu; \
    groupadd --system --gid 10002 edge; \
    useradd --system --uid 10002 --gid edge --groups dialout --home-dir /var/lib/edge \
        --shell /usr/sbin/nologin edge; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --quiet --no-index --find-links /tmp/ctx/wheels \
        'smart-community-gateway[edge]'; \
    /opt/venv/bin/pip uninstall --quiet --yes pip setuptools; \
    mkdir -p /opt/community; \
    cp -r /tmp/ctx/device_profiles /opt/community/; \
    install -m 0755 /tmp/ctx/healthcheck.py /opt/community/healthcheck.py; \
    install -m 0755 /tmp/ctx/edge-with-buttons.sh /opt/community/edge-with-buttons.sh; \
    install -d -o edge -g edge -m 0750 /var/lib/edge; \
    rm -rf /tmp/ctx /root/.cache
ENV PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_URL=http://127.0.0.1:9101/metrics
WORKDIR /opt/community
USER edge
# The agent's metrics endpoint answers: its event loop runs. (A lost uplink is not a
# reason to restart it: the outbox keeps everything until the hub is back.)
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/community/healthcheck.py"]
ENTRYPOINT ["/opt/venv/bin/python", "-m", "edge"]
CMD ["--config", "/etc/edge/edge.yaml"]
