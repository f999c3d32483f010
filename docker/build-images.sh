#!/usr/bin/env bash
# `make images`: the base image (only when missing: docker/build-base.sh), then the images
# of the compose stack, all from this checkout and Debian's packages, with no registry:
#   community/hub, community/edge       the project from wheels built here (pip wheel)
#   community/mosquitto, community/postgres   Debian's packages on the same base
# IMAGE_TAG (default latest) tags them; IMAGES="hub edge" builds only those; DOCKER names
# the client (default Debian's /usr/bin/docker).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's client (/usr/bin/docker) matches Debian's engine; another docker on PATH may not.
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}"
TAG="${IMAGE_TAG:-latest}"
BASE="${BASE_IMAGE:-community/base:bookworm}"
PY="${PYTHON:-.venv/bin/python}"
CTX=var/images/ctx
if [ -z "$DOCKER" ] || ! "$DOCKER" info > /dev/null 2>&1; then
  echo "no Docker engine: apt-get install docker.io debootstrap docker-compose, then start" >&2
  echo "  dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs" >&2
  echo "(docs/scaling.md, \"Containers\")" >&2
  exit 1
fi
export DOCKER_BUILDKIT=0  # the classic builder: Debian's engine has no buildx plugin

DOCKER="$DOCKER" docker/build-base.sh "$BASE"

echo "wheels of the project and its dependencies -> $CTX/wheels"
mkdir -p "$CTX/wheels"
rm -f "$CTX"/wheels/smart_community_gateway-*.whl
"$PY" -m pip wheel --quiet --wheel-dir "$CTX/wheels" '.[hub,edge]' 2> >(grep -v 'is ignored: it is neither' >&2)
rm -rf "$CTX/device_profiles"
cp -r device_profiles "$CTX/device_profiles"
cp docker/healthcheck.py docker/edge-with-buttons.sh docker/postgres-entrypoint.sh "$CTX/"

for name in ${IMAGES:-mosquitto postgres hub edge}; do
  echo "image community/$name:$TAG"
  "$DOCKER" build --quiet --network host --build-arg "BASE_IMAGE=$BASE" \
    -f "docker/$name.Dockerfile" -t "community/$name:$TAG" "$CTX" > /dev/null
done
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^community/' | sort
