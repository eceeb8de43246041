#!/usr/bin/env bash
# Start the real PC/SC rig: our own pcscd (foreground mode, in the background, logging to a file) with
# a reader.conf.d that gives vsmartcard's vpcd driver 8 slots (4 entries of 2 slots each):
#   CHANNELID 0x8C7B -> "Virtual PCD 00 00" (TCP 35963), "Virtual PCD 00 01" (35964)
#   CHANNELID 0x8C7D -> "Virtual PCD B 00 00" (TCP 35965), "Virtual PCD B 00 01" (35966)
#   CHANNELID 0x8C7F -> "Virtual PCD C 00 00" (TCP 35967), "Virtual PCD C 00 01" (35968)
#   CHANNELID 0x8C81 -> "Virtual PCD D 00 00" (TCP 35969), "Virtual PCD D 00 01" (35970)
# (distinct FRIENDLYNAMEs: with the same name twice, pcscd 1.9.9 gives both vpcd entries the same reader
# names "Virtual PCD 00 00/00 01", and clients cannot tell the slots apart). Payment tests use the
# extra slots for a pool of several PSAMs.
# As root it also applies the loopback quickack route (without it every APDU through vpcd stalls
# ~40 ms: docs/pcsc-and-vpcd.md). Idempotent; quiet on success (warnings go to stderr).
# Environment: PURSELAB_RIG_DIR (default /tmp/purselab-rig), PURSELAB_RIG_APDU_LOG=1 (pcscd -a).
set -euo pipefail

RIG_DIR="${PURSELAB_RIG_DIR:-/tmp/purselab-rig}"
CONF_DIR="$RIG_DIR/reader.conf.d"
LOG="$RIG_DIR/pcscd.log"
PIDFILE="$RIG_DIR/pcscd.pid"
DRIVER=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
SOCKET=/run/pcscd/pcscd.comm
PORTS=(35963 35964 35965 35966 35967 35968 35969 35970)

say() { echo "rig-up: $*" >&2; }
die() { say "$*"; exit 1; }

command -v pcscd >/dev/null 2>&1 || die "pcscd is not installed (apt-get install pcscd libpcsclite-dev vsmartcard-vpcd)"
[ -e "$DRIVER" ] || die "the vpcd driver $DRIVER is missing (apt-get install vsmartcard-vpcd)"
PCSCD=$(command -v pcscd)

is_root() { [ "$(id -u)" -eq 0 ]; }

# All vpcd ports listening (read /proc/net/tcp: no dependency on ss/netstat).
ports_listening() {
  local p hex
  for p in "${PORTS[@]}"; do
    hex=$(printf '%04X' "$p")
    grep -qE "^ *[0-9]+: [0-9A-F]{8}:$hex [0-9A-F]{8}:0000 0A " /proc/net/tcp 2>/dev/null || return 1
  done
}

our_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pcscd ] || return 1
  echo "$pid"
}

quickack_active() {
  ip route show table local 2>/dev/null | grep -qE '^local 127\.0\.0\.1 .*quickack 1'
}

apply_quickack() {
  quickack_active && return 0
  if ! command -v ip >/dev/null 2>&1; then
    say "warning: 'ip' (iproute2) is missing: cannot apply the loopback quickack route; every APDU through vpcd will stall ~40 ms (docs/pcsc-and-vpcd.md)"
    return 0
  fi
  if ! is_root; then
    say "warning: not root: cannot apply the loopback quickack route; every APDU through vpcd will stall ~40 ms. As root: ip route replace local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1"
    return 0
  fi
  if ip route replace local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1 2>/dev/null; then
    touch "$RIG_DIR/quickack.applied"
  else
    say "warning: could not apply the loopback quickack route (no CAP_NET_ADMIN?); every APDU through vpcd will stall ~40 ms (docs/pcsc-and-vpcd.md)"
  fi
}

mkdir -p "$CONF_DIR"
apply_quickack

# Already up?
if pid=$(our_pid) && ports_listening; then
  exit 0
fi

stop_pid() { # PID: SIGTERM, wait up to 5 s, then SIGKILL
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  sleep 0.2
}

# Ours, but not healthy (or still shutting down): replace it.
if pid=$(our_pid); then
  stop_pid "$pid"
fi
# One pcscd per machine (its socket path is fixed): stop any other one.
for pid in $(pgrep -x pcscd || true); do
  is_root || [ "$(stat -c %u "/proc/$pid")" = "$(id -u)" ] || die "another pcscd (pid $pid) is running and we may not stop it (run as root, or stop it: systemctl stop pcscd.socket pcscd)"
  say "stopping the running pcscd (pid $pid) to start the rig's own (8 vpcd slots)"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop pcscd.socket pcscd.service >/dev/null 2>&1 || true
  fi
  stop_pid "$pid"
done
# A stale socket from a killed pcscd makes a new one refuse to start.
pgrep -x pcscd >/dev/null || rm -f "$SOCKET"
mkdir -p "$(dirname "$SOCKET")"

# libifdvpcd keeps its per-slot sockets in a static array indexed by slot number only, so a second
# vpcd entry loaded from the SAME library takes over the first one's slots (its ports listen but are
# never accepted). A copy of the library under another path is a separate instance with its own state.
mkdir -p "$RIG_DIR/lib"
{
  echo "# purselab rig: vsmartcard vpcd, 4 x 2 slots (written by .ci/rig-up.sh)"
  for entry in ":0x8C7B" "B:0x8C7D" "C:0x8C7F" "D:0x8C81"; do
    letter=${entry%%:*}
    channel=${entry#*:}
    lib=$DRIVER
    if [ -n "$letter" ]; then
      lib="$RIG_DIR/lib/libifdvpcd-${letter,,}.so"
      if ! cmp -s "$DRIVER" "$lib"; then cp "$DRIVER" "$lib.tmp" && mv -f "$lib.tmp" "$lib"; fi
    fi
    echo
    echo "FRIENDLYNAME \"Virtual PCD${letter:+ $letter}\""
    echo "DEVICENAME   /dev/null:$channel"
    echo "LIBPATH      $lib"
    echo "CHANNELID    $channel"
  done
} >"$CONF_DIR/vpcd"

args=(-f -c "$CONF_DIR")
[ "${PURSELAB_RIG_APDU_LOG:-0}" = 1 ] && args+=(-a)
# setsid: the daemon outlives this script and ignores the terminal's Ctrl-C. Close every inherited
# descriptor above 2 first: a daemon holding the caller's pipe open makes `$(...)`, CI log capture
# and the like wait for it forever.
(
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
  done
  exec setsid "$PCSCD" "${args[@]}" >"$LOG" 2>&1 </dev/null
) &
pid=$!
# setsid execs pcscd in place (we are not a group leader); if it ever forks, take the new pcscd.
for _ in $(seq 20); do
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pcscd ] && break
  sleep 0.05
done
[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pcscd ] || pid=$(pgrep -n -x pcscd || echo "$pid")
echo "$pid" >"$PIDFILE"

for _ in $(seq 100); do
  if ! our_pid >/dev/null; then
    say "pcscd exited at start; last lines of $LOG:"
    tail -n 15 "$LOG" >&2 || true
    exit 1
  fi
  if ports_listening && [ -S "$SOCKET" ]; then
    exit 0
  fi
  sleep 0.1
done
say "pcscd started but the vpcd readers did not appear within 10 s; last lines of $LOG:"
tail -n 15 "$LOG" >&2 || true
exit 1
