#!/bin/bash
# Benchmarks pgturbo's result cache: pgbench's select-only workload (-S) with a cache rule on
# pgbench_accounts, beside direct PostgreSQL, PgBouncer and pgturbo without the cache, in one
# run, and prints a Markdown table of tps and ratios.
#
#   bench/cache_pgbench.sh PGTURBO_BIN [DURATION_SECONDS]    (default 15 s per cell)
#
# It starts a throwaway PostgreSQL 15 (tests/harness/cluster.sh), loads `pgbench -i -s 1`
# (100,000 accounts, so that a warm-up reads nearly every one) into a database "bench", and
# starts PgBouncer and two pgturbo daemons with the same pool settings (transaction mode,
# default_pool_size 20, 2 workers): one without [cache] rules, one with
# `pgbench_accounts = 600`. Before the measured cells the cached pgturbo is warmed with 20 s of
# the same workload in each protocol, and each cell's hit ratio is read from its SHOW CACHE
# before and after.
# Every cell runs against all four targets one after the other, so drift over the run hits all
# of them alike. Progress goes to stderr and the report to stdout. Everything the script
# starts is stopped and removed on exit, also on failure or Ctrl-C.
set -eu

usage() {
    echo "usage: $0 PGTURBO_BIN [DURATION_SECONDS]" >&2
    exit 2
}
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
set_pgturbo "$1"
DURATION=${2:-15}
case $DURATION in '' | *[!0-9]* | 0) usage ;; esac

POOL_SIZE=20
WORKERS=2
SCALE=1
JOBS=2
WARMUP=20

make_workdir cache-bench
chmod 755 "$WORK"
BOUNCER_PID="" PLAIN_PID="" PGBENCH_PID=""
cleanup_on_exit PGBENCH_PID TURBO_PID PLAIN_PID BOUNCER_PID

start_pgbouncer() {
    BOUNCER_PORT=$(free_port)
    mkdir -p "$WORK/pgbouncer"
    echo '"postgres" ""' >"$WORK/pgbouncer/userlist.txt"
    cat >"$WORK/pgbouncer/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
server_tls_sslmode = disable
logfile = $WORK/pgbouncer/pgbouncer.log
EOF
    chown -R postgres "$WORK/pgbouncer"
    setpriv --reuid=postgres --regid=postgres --init-groups \
        pgbouncer "$WORK/pgbouncer/pgbouncer.ini" >/dev/null 2>&1 &
    BOUNCER_PID=$!
    wait_ready "$BOUNCER_PID" "$BOUNCER_PORT" bench
}

# Starts a pgturbo with the [pgturbo] and [cache] lines given; sets TURBO_PID and TURBO_PORT.
start_turbo() {
    # shellcheck disable=SC2034  # read by launch_pgturbo (scripts/lib.sh)
    TURBO_EXTRA="server_tls_sslmode = disable
admin_users = postgres
$1"
    start_pgturbo bench "$POOL_SIZE" 500 "$WORKERS"
}

# hits and misses of the cached pgturbo, from the total row of its SHOW CACHE.
cache_counts() {
    psql -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -d pgturbo -XAtqF ' ' -c 'SHOW CACHE' |
        awk '$1 == "total" { print $2, $3 }'
}

# One pgbench cell against PORT with the row's flags; sets R_TPS (or "failed").
run_cell() {
    local port=$1
    shift
    R_TPS=failed
    out=$WORK/pgbench.out
    timeout $((DURATION + 60)) pgbench -h 127.0.0.1 -p "$port" -U postgres -n -T "$DURATION" \
        -j "$JOBS" "$@" bench >"$out" 2>&1 &
    PGBENCH_PID=$!
    rc=0
    wait "$PGBENCH_PID" || rc=$?
    PGBENCH_PID=""
    if [ "$rc" -ne 0 ]; then
        log "  pgbench failed:"
        { grep -m 3 -E 'error|ERROR|FATAL|abort' "$out" || tail -n 3 "$out"; } | sed 's/^/    /' >&2
        return 0
    fi
    R_TPS=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$out")
}

ratio() {
    case "$1$2" in *[!0-9]*) echo "n/a" ;; *) awk -v a="$1" -v b="$2" \
        'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }' ;; esac
}

log "starting PostgreSQL 15 ..."
start_cluster
create_database bench
log "loading pgbench -i -s $SCALE ..."
pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -q -s "$SCALE" bench >"$WORK/init.log" 2>&1 ||
    {
        cat "$WORK/init.log" >&2
        exit 1
    }
start_pgbouncer || {
    log "PgBouncer did not start"
    exit 1
}
start_turbo "" || {
    log "pgturbo (no cache) did not start"
    tail -n 20 "$WORK/pgturbo.log" >&2
    exit 1
}
PLAIN_PID=$TURBO_PID PLAIN_PORT=$TURBO_PORT
start_turbo "[cache]
cache_max_memory = 512MB
cache_max_entries = 1000000
pgbench_accounts = 600" || {
    log "pgturbo (cache) did not start"
    tail -n 20 "$WORK/pgturbo.log" >&2
    exit 1
}
# The simple protocol's keys hold the text with its value; the extended protocol's (extended and
# prepared alike) the text with $1 and the value apart: both are warmed.
for mode in simple prepared; do
    log "warming the cache: $WARMUP s of -S -c 8 -M $mode through pgturbo ..."
    pgbench -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -n -S -c 8 -j "$JOBS" -M "$mode" \
        -T "$WARMUP" bench >"$WORK/warmup.log" 2>&1
done

BOUNCER_VERSION=$(pgbouncer --version 2>/dev/null | awk 'NR == 1 { print $2 }')
PG_VERSION=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench -XAtqc 'SHOW server_version')
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
ROWS=("-S -c 8 -M simple" "-S -c 8 -M extended" "-S -c 8 -M prepared" "-S -c 50 -M simple")
TABLE=()
for row in "${ROWS[@]}"; do
    read -r -a flags <<<"$row"
    log "[$row] direct PostgreSQL ..."
    run_cell "$PG_PORT" "${flags[@]}"
    d=$R_TPS
    case $row in
        *prepared*) b="n/a (unsupported)" ;;
        *)
            log "[$row] PgBouncer ..."
            run_cell "$BOUNCER_PORT" "${flags[@]}"
            b=$R_TPS
            ;;
    esac
    log "[$row] pgturbo without cache ..."
    run_cell "$PLAIN_PORT" "${flags[@]}"
    p=$R_TPS
    log "[$row] pgturbo with cache ..."
    read -r h0 m0 <<<"$(cache_counts)"
    run_cell "$TURBO_PORT" "${flags[@]}"
    c=$R_TPS
    read -r h1 m1 <<<"$(cache_counts)"
    hit=$(awk -v h=$((h1 - h0)) -v m=$((m1 - m0)) 'BEGIN { if (h + m > 0) printf "%.1f %%", 100 * h / (h + m); else print "n/a" }')
    TABLE+=("| \`$row\` | $d | $b | $p | $c | $(ratio "$c" "$d") | $(ratio "$c" "$b") | $(ratio "$c" "$p") | $hit |")
done

echo "# pgturbo's result cache: pgbench -S with a rule on pgbench_accounts"
echo
echo "Command: \`$0 $*\`"
echo
echo "Each cell: \`pgbench -h 127.0.0.1 -p PORT -U postgres -n -T $DURATION -j $JOBS <test flags> bench\`" \
    "after \`pgbench -i -s $SCALE bench\` (100,000 accounts) and a warm-up of the cached pgturbo" \
    "($WARMUP s of -M simple and $WARMUP s of -M prepared)."
echo
echo "- Machine: $(nproc) CPUs ($CPU_MODEL), $(uname -sr)"
echo "- PostgreSQL $PG_VERSION, PgBouncer $BOUNCER_VERSION; poolers in transaction mode," \
    "default_pool_size=$POOL_SIZE, pgturbo workers=$WORKERS; the cached pgturbo has" \
    "\`[cache] pgbench_accounts = 600\`, cache_max_memory=512MB, cache_max_entries=1000000"
echo "- hit ratio: hits / (hits + misses) of the cached pgturbo during the cell (SHOW CACHE)"
echo
echo "| test | direct tps | pgbouncer tps | pgturbo tps (no cache) | pgturbo tps (cache) |" \
    "cache/direct | cache/pgbouncer | cache/no cache | hit ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${TABLE[@]}"
echo
echo "PgBouncer $BOUNCER_VERSION has no prepared statements in transaction mode, so its -M" \
    "prepared cell is n/a."
