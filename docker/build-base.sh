#!/usr/bin/env bash
# Builds the base image every other image starts from, without any registry: Docker Hub is
# not reachable from where this project is built, so the root file system comes from
# Debian's own packages (debootstrap, minbase variant) and is imported as one layer.
# Python and the venv module are included here once, so the hub and edge images add only
# the project. Cached: does nothing when the tag exists (BASE_REBUILD=1 forces a rebuild).
# Usage: docker/build-base.sh [tag]
set -euo pipefail
TAG="${1:-${BASE_IMAGE:-community/base:bookworm}}"
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if [ "${BASE_REBUILD:-0}" != 1 ] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists (BASE_REBUILD=1 to rebuild)"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }
ROOT="$(mktemp -d /var/tmp/community-base.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
chmod 0755 "$ROOT"  # mktemp makes it 0700: the image's / would shut out every non-root user
echo "debootstrap bookworm (minbase + python3) into $ROOT ..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$ROOT" "$MIRROR" > "$ROOT.log" 2>&1 || { tail -20 "$ROOT.log" >&2; exit 1; }
rm -f "$ROOT.log"
# Smaller image: no package lists, caches, docs, man pages or locales (minbase keeps dpkg
# and apt so that images built on this one can still apt-get install).
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
  "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log
find "$ROOT"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
# Keep docs and man pages out of later apt-get installs too.
cat > "$ROOT"/etc/dpkg/dpkg.cfg.d/01-nodoc <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
cat > "$ROOT"/etc/apt/apt.conf.d/01-small <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG
tar -C "$ROOT" --numeric-owner -c . | "$DOCKER" import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$TAG"
"$DOCKER" image ls "$TAG"
