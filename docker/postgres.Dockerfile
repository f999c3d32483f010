# Debian's PostgreSQL 15, as the "postgres" user; docker/postgres-entrypoint.sh makes the
# cluster on first start (password authentication only) in /var/lib/postgresql/data.
ARG BASE_IMAGE=community/base:bookworm
FROM ${BASE_IMAGE}
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
RUN set -eu; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends postgresql-15 > /dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/*; \
    # JIT is off (jit=off below): its LLVM (about 120 MB) is never loaded; drop it.
    rm -rf /usr/lib/postgresql/15/lib/llvmjit* /usr/lib/postgresql/15/lib/bitcode \
        /usr/lib/x86_64-linux-gnu/libLLVM-*.so* /usr/lib/x86_64-linux-gnu/libz3.so*; \
    install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    PGPORT=5432
USER postgres
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "pg_isready -q -h 127.0.0.1 -p \"$PGPORT\""]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
