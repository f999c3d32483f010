# The hub: `python -m hub` as the unprivileged user "hub" (uid 10001), from the wheels in
# the build context (docker/build-images.sh makes them on the build machine, so the image
# needs no index at build time). Two layers on the base: the context, and one RUN that
# installs it and deletes what is not needed at run time (with the vfs storage driver
# every layer is a full copy, so fewer layers is less disk).
ARG BASE_IMAGE=community/base:bookworm
FROM ${BASE_IMAGE}
COPY . /tmp/ctx
RUN set -eu; \
    groupadd --system --gid 10001 hub; \
    useradd --system --uid 10001 --gid hub --home-dir /var/lib/hub --shell /usr/sbin/nologin hub; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --quiet --no-index --find-links /tmp/ctx/wheels \
        'smart-community-gateway[hub]'; \
    /opt/venv/bin/pip uninstall --quiet --yes pip setuptools; \
    mkdir -p /opt/community; \
    cp -r /tmp/ctx/device_profiles /opt/community/; \
    install -m 0755 /tmp/ctx/healthcheck.py /opt/community/healthcheck.py; \
    install -d -o hub -g hub -m 0750 /var/lib/hub /srv/broker/auth /srv/broker/run; \
    rm -rf /tmp/ctx /root/.cache
ENV PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_URL=http://127.0.0.1:8000/readyz
WORKDIR /opt/community
USER hub
# /readyz: the database and the broker are reachable (a load balancer skips it otherwise).
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/community/healthcheck.py"]
ENTRYPOINT ["/opt/venv/bin/python", "-m", "hub"]
CMD ["--config", "/etc/hub/hub.yaml"]
