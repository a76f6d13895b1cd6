#!/bin/bash
# Measures what idle clients cost pgturbo in memory: opens N client connections that finish the
# startup handshake and then sit idle, and reads pgturbo's resident set size (VmRSS) before and
# while they are held. Fails (exit 1) if the RSS with N clients exceeds 64 MiB, or if not every
# client got through the handshake.
#
#   bench/idle_clients.sh PGTURBO_BIN [N]       (default N = 10000)
#
# It starts a throwaway PostgreSQL 15 (tests/harness/cluster.sh) with an empty database "bench"
# and pgturbo in front of it (max_client_conn N+100); bench/idle_clients.py opens the clients.
# The open-file limit of pgturbo and of the client is raised to N*2+1000 (or the hard limit, if
# lower). Everything the script starts is stopped and removed on exit, also on failure.
set -eu

usage() {
    echo "usage: $0 PGTURBO_BIN [N]" >&2
    exit 2
}
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
set_pgturbo "$1"
N=${2:-10000}
case $N in '' | *[!0-9]* | 0) usage ;; esac
if [ ! -x "$PGTURBO" ]; then
    echo "$0: $PGTURBO is not an executable file" >&2
    exit 2
fi

HELPER=$ROOT/bench/idle_clients.py
LIMIT_BYTES=$((64 * 1024 * 1024))

make_workdir idle
HELPER_PID=""
cleanup_on_exit HELPER_PID TURBO_PID

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

mib() {
    awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'
}

# Open files: N client sockets plus server connections, listeners and a margin. Without
# CAP_SYS_RESOURCE the hard limit cannot be raised, so it caps the request.
want=$((N * 2 + 1000))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    log "note: open-file hard limit is $hard, below the $want asked for; using $hard"
    want=$hard
fi
if [ "$want" -lt $((N + 100)) ]; then
    log "$0: open-file limit $want is too low for $N clients (need at least $((N + 100)))"
    exit 1
fi
ulimit -n "$want"

# Every client takes one ephemeral port towards pgturbo's single address and port.
read -r port_low port_high </proc/sys/net/ipv4/ip_local_port_range
ports=$((port_high - port_low + 1))
if [ "$ports" -lt $((N + 1000)) ]; then
    log "$0: ephemeral port range $port_low-$port_high ($ports ports) is too small for $N clients"
    exit 1
fi

log "starting PostgreSQL 15 ..."
start_cluster
create_database bench

if ! start_pgturbo bench 20 $((N + 100)) 2; then
    log "pgturbo did not start; last lines of its log:"
    tail -n 20 "$WORK/pgturbo.log" >&2 || true
    exit 1
fi
log "pgturbo on 127.0.0.1:$TURBO_PORT (pid $TURBO_PID)"

# Before: idle, after the one query above made it open a server connection.
sleep 1
rss_before=$(rss_kib "$TURBO_PID")

log "opening $N idle clients ..."
/usr/bin/python3 "$HELPER" 127.0.0.1 "$TURBO_PORT" "$N" --user postgres --database bench \
    >"$WORK/helper.out" 2>"$WORK/helper.err" &
HELPER_PID=$!
while ! grep -q '^completed=' "$WORK/helper.out"; do
    if ! kill -0 "$HELPER_PID" 2>/dev/null; then
        log "the client helper exited early:"
        cat "$WORK/helper.err" >&2
        exit 1
    fi
    sleep 0.2
done
result=$(grep '^completed=' "$WORK/helper.out")
completed=${result#completed=}
completed=${completed%% *}
seconds=${result##*seconds=}

# Let pgturbo settle (lazy allocations, buffers shrinking back) before reading its RSS.
sleep 2
if ! kill -0 "$TURBO_PID" 2>/dev/null; then
    log "pgturbo exited while holding the clients; last lines of its log:"
    tail -n 20 "$WORK/pgturbo.log" >&2 || true
    exit 1
fi
rss_with=$(rss_kib "$TURBO_PID")

stop_proc "$HELPER_PID"
HELPER_PID=""
dropped=$(sed -n 's/^dropped=//p' "$WORK/helper.out")
sleep 1
rss_after=$(rss_kib "$TURBO_PID")

per_client=$(awk -v a="$rss_before" -v b="$rss_with" -v n="$completed" \
    'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1024 / n; else print "n/a" }')

echo "# pgturbo with $N idle clients"
echo
echo "Command: \`$0 $*\`"
echo
echo "- clients through the handshake: $completed of $N in $seconds s;" \
    "closed by pgturbo while held: ${dropped:-?}"
if [ -s "$WORK/helper.err" ]; then
    echo "- first errors: $(head -n 3 "$WORK/helper.err" | tr '\n' ';')"
fi
printf -- '- pgturbo RSS before:       %s\n' "$(mib "$rss_before")"
printf -- '- pgturbo RSS with clients: %s\n' "$(mib "$rss_with")"
printf -- '- pgturbo RSS after close:  %s\n' "$(mib "$rss_after")"
printf -- '- per client:               %s bytes\n' "$per_client"
echo "- open-file limit: $want; loopback ephemeral ports $port_low-$port_high ($ports ports)," \
    "enough for $N clients to one address"

status=0
if [ $((rss_with * 1024)) -gt "$LIMIT_BYTES" ]; then
    echo
    echo "FAIL: RSS with $N clients is over the 64 MiB limit"
    status=1
fi
if [ "$completed" -ne "$N" ]; then
    echo
    echo "FAIL: only $completed of $N clients completed the handshake"
    status=1
fi
if [ "$status" -eq 0 ]; then
    echo
    echo "PASS: under 64 MiB with $N idle clients"
fi
exit "$status"
