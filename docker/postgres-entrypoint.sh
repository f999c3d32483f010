#!/bin/bash
# PostgreSQL for the compose stack. First start: a cluster in $PGDATA whose superuser
# "postgres" may only log in over the local socket (peer), and a login role and database
# "hub" with the password from $POSTGRES_PASSWORD (TCP: scram-sha-256 only). Then the
# server, listening on 127.0.0.1:$PGPORT (the containers share the host's network).
set -euo pipefail
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the password of the role hub)}"
case "$POSTGRES_PASSWORD" in
  *[!A-Za-z0-9_.~-]*) echo "POSTGRES_PASSWORD: use letters, digits and _.~- only" >&2; exit 2 ;;
esac
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 > /dev/null
  postgres --single -D "$PGDATA" -c listen_addresses='' postgres > /dev/null <<SQL
CREATE ROLE hub LOGIN PASSWORD '$POSTGRES_PASSWORD';
CREATE DATABASE hub OWNER hub;
SQL
  echo "postgres: new cluster in $PGDATA, role and database 'hub'"
fi
exec postgres -D "$PGDATA" -c listen_addresses=127.0.0.1 -p "$PGPORT" \
  -c unix_socket_directories=/tmp -c jit=off "$@"
