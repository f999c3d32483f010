#!/bin/bash
# The edge container of the compose stack: simulated CB-100 call buttons on a pty made
# inside this container, and the edge agent reading them, as on a gateway with an RS-485
# adapter. The buttons are driven by lines written to the FIFO $SIM_DIR/control (e.g.
# `docker exec <edge> sh -c 'echo sos 77626 > /tmp/sim/control'`, commands as in
# `python -m simulators button --help`); what each button's LED shows goes to
# $SIM_DIR/buttons.log. The container ends when either process ends (restart policy).
# Arguments go to `python -m edge`.
set -euo pipefail
SIM_DIR="${SIM_DIR:-/tmp/sim}"
mkdir -p "$SIM_DIR"
rm -f "$SIM_DIR/control" "$SIM_DIR/bus0"
mkfifo -m 0600 "$SIM_DIR/control"
exec 3<>"$SIM_DIR/control"  # held open here, so the simulator never reads end of input
serials=()
for serial in ${BUTTON_SERIALS:-77626 77627 77628}; do serials+=(--serial "$serial"); done
# simulators.button_cli directly: `python -m simulators` imports the hub-side simulators too.
python -c 'import argparse, sys
from simulators import button_cli
parser = argparse.ArgumentParser(prog="buttons")
button_cli.add_arguments(parser)
sys.exit(button_cli.main(parser.parse_args()))' \
  "${serials[@]}" --link "$SIM_DIR/bus0" --heartbeat-s "${BUTTON_HEARTBEAT_S:-30}" \
  <&3 >> "$SIM_DIR/buttons.log" 2>&1 &
sim=$!
for _ in $(seq 300); do  # the pty link, within 30 s
  [ -e "$SIM_DIR/bus0" ] && break
  kill -0 "$sim" 2>/dev/null || { cat "$SIM_DIR/buttons.log" >&2; exit 1; }
  sleep 0.1
done
[ -e "$SIM_DIR/bus0" ] || { echo "buttons: no pty link after 30 s" >&2; exit 1; }
echo "buttons ${BUTTON_SERIALS:-77626 77627 77628} on $SIM_DIR/bus0"
python -m edge "$@" &
edge=$!
trap 'kill -TERM "$edge" "$sim" 2>/dev/null || true' TERM INT
status=0
wait -n "$sim" "$edge" || status=$?
kill -TERM "$edge" "$sim" 2>/dev/null || true
wait || true
exit "$status"
