#!/usr/bin/env bash
# Stop the rig started by .ci/rig-up.sh: our pcscd (by its recorded pid) and, if rig-up applied it,
# the loopback quickack route. Idempotent; quiet on success.
set -euo pipefail

RIG_DIR="${PURSELAB_RIG_DIR:-/tmp/purselab-rig}"
PIDFILE="$RIG_DIR/pcscd.pid"

if [ -f "$PIDFILE" ]; then
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pcscd ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "rig-down: pcscd (pid $pid) ignored SIGTERM for 5 s; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDFILE"
fi

if [ -f "$RIG_DIR/quickack.applied" ]; then
  ip route replace local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 2>/dev/null ||
    echo "rig-down: could not remove the loopback quickack route" >&2
  rm -f "$RIG_DIR/quickack.applied"
fi
exit 0
