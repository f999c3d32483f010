#!/usr/bin/env bash
# Installs the system packages the project needs on a fresh Debian machine:
# the Mosquitto broker (tests and the demo start their own private instance of it),
# PostgreSQL (likewise, for the tests of the second back end) and Python's venv module. As root it installs them; otherwise it says what to install.
set -euo pipefail
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# openssl: the broker TLS test makes a throw-away CA and server certificate with it.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# socat: pty pairs for the RS-485 tests; mbpoll: a Modbus master we did not write (libmodbus),
# for the interoperability tests of the Modbus simulators.
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v mbpoll >/dev/null 2>&1 || missing+=(mbpoll)
# chromium + chromium-driver: the browser tests and `make screenshots` drive Debian's
# chromium with Playwright (its own browser download is not used); fonts-noto-cjk: the
# pages' Chinese text in those screenshots and tests.
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# postgresql: the hub's second back end; the tests start a private cluster of their own
# (simulators/postgres.py) from its binaries in /usr/lib/postgresql/<ver>/bin.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -d /usr/share/fonts/opentype/noto ] || fc-list 2>/dev/null | grep -qi "noto sans cjk" || missing+=(fonts-noto-cjk)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts a system broker on 1883 after install, and a system PostgreSQL on 5432;
  # we never use either.
else
  echo "Missing system packages: ${missing[*]}" >&2
  echo "Install them, e.g.: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
