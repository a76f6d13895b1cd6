#!/bin/bash
# Benchmarks pgturbo against PgBouncer and direct PostgreSQL in one run and prints a Markdown
# table: tps, pgturbo's ratios to the other two, each pooler's CPU time per transaction and
# pgbench's average latency.
#
#   bench/pgbench_compare.sh PGTURBO_BIN [DURATION_SECONDS]    (default 15 s per cell)
#
# It starts a throwaway PostgreSQL 15 (tests/harness/cluster.sh), loads `pgbench -i -s 10`
# into a database "bench", then starts pgturbo and PgBouncer with the same pool settings
# (transaction mode, default_pool_size 20, max_client_conn 2000; pgturbo with 2 workers) and
# runs every pgbench row against all three, one target after the other, so drift over the run
# hits all of them alike. The cluster accepts TLS, but every row except the last runs in plain
# end to end (pgbench PGSSLMODE=disable, both poolers server_tls_sslmode = disable); the last
# row repeats `-S -c 8` with TLS between pgbench and its target (PGSSLMODE=require; both poolers
# restarted with client_tls_sslmode = require and the same throwaway certificate of
# tests/harness/certs.sh), the poolers' server side still plain. Progress goes to stderr and
# the report to stdout, so
# `bench/pgbench_compare.sh build-release/pgturbo 15 > results.md` keeps a clean table.
# Everything the script starts is stopped and removed on exit, also on failure or Ctrl-C.
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
MAX_CLIENT_CONN=2000
WORKERS=${PGTURBO_WORKERS:-2}
SCALE=10
JOBS=2
CLK_TCK=$(getconf CLK_TCK)

make_workdir bench
chmod 755 "$WORK"
# The poolers' certificate for the TLS row; PgBouncer runs as postgres and must read its key.
"$ROOT/tests/harness/certs.sh" "$WORK/certs"
chown -R postgres "$WORK/certs"
BOUNCER_PID=""
PGBENCH_PID=""
cleanup_on_exit PGBENCH_PID TURBO_PID BOUNCER_PID

# User and system CPU time (all threads) of PID in clock ticks, as "user system": fields 14
# and 15 of /proc/PID/stat, counted after the command name, which may itself hold spaces.
cpu_ticks() {
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    echo "$rest" | awk '{ print $12, $13 }'
}

# Context switches of PID so far, voluntary (it slept) plus involuntary (it was preempted),
# summed over its threads.
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# Starts pgturbo with the benchmark's pool settings, up to three tries, and says on stderr how
# each went (with the log of a failed one). Returns 1 if none came up, 2 at once if PGTURBO is
# not an executable file.
start_pgturbo_logged() {
    if [ ! -x "$PGTURBO" ]; then
        log "pgturbo: $PGTURBO is not an executable file"
        return 2
    fi
    for _ in 1 2 3; do
        if launch_pgturbo bench "$POOL_SIZE" "$MAX_CLIENT_CONN" "$WORKERS"; then
            log "pgturbo on 127.0.0.1:$TURBO_PORT (pid $TURBO_PID)"
            return 0
        fi
        log "pgturbo did not start on 127.0.0.1:$TURBO_PORT; last lines of its log:"
        tail -n 20 "$WORK/pgturbo.log" >&2 || true
    done
    return 1
}

# PgBouncer refuses to run as root, so it runs as postgres. setpriv execs it in place (runuser
# would stay in between as its parent), so $! is PgBouncer itself, whose CPU time we read.
# Connection logging is off: it costs PgBouncer CPU on the -C row that pgturbo does not pay.
start_pgbouncer() {
    for _ in 1 2 3; do try_start_pgbouncer && return 0; done
    return 1
}

try_start_pgbouncer() {
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
max_client_conn = $MAX_CLIENT_CONN
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = $WORK/pgbouncer/pgbouncer.log
$BOUNCER_EXTRA
$POOLER_TLS_SETTINGS
EOF
    chown -R postgres "$WORK/pgbouncer"
    setpriv --reuid=postgres --regid=postgres --init-groups \
        pgbouncer "$WORK/pgbouncer/pgbouncer.ini" >/dev/null 2>&1 &
    BOUNCER_PID=$!
    if ! wait_ready "$BOUNCER_PID" "$BOUNCER_PORT" bench; then
        log "PgBouncer did not start on 127.0.0.1:$BOUNCER_PORT; last lines of its log:"
        tail -n 20 "$WORK/pgbouncer/pgbouncer.log" >&2 || true
        stop_proc "$BOUNCER_PID"
        BOUNCER_PID=""
        return 1
    fi
    log "PgBouncer on 127.0.0.1:$BOUNCER_PORT (pid $BOUNCER_PID)"
}

# The [pgturbo] / [pgbouncer] TLS lines, the same for both poolers: the server side always
# plain; with TLS=1 also client_tls_sslmode = require with the run's certificate. Sets
# POOLER_TLS_SETTINGS and TURBO_EXTRA (which launch_pgturbo adds to pgturbo.ini).
set_pooler_tls() {
    POOLER_TLS_SETTINGS="server_tls_sslmode = disable"
    if [ "$1" -eq 1 ]; then
        POOLER_TLS_SETTINGS="$POOLER_TLS_SETTINGS
client_tls_sslmode = require
client_tls_cert_file = $WORK/certs/server.crt
client_tls_key_file = $WORK/certs/server.key"
    fi
    # shellcheck disable=SC2034  # read by launch_pgturbo (scripts/lib.sh)
    TURBO_EXTRA=$POOLER_TLS_SETTINGS
}

# What libpq negotiated with the target on PORT over TLS, as psql's \conninfo says it
# ("protocol: TLSv1.3, cipher: ..."), or "unknown".
tls_conninfo() {
    PGSSLMODE=require psql -h 127.0.0.1 -p "$1" -U postgres -d bench -XAtqc '\conninfo' 2>/dev/null |
        sed -n 's/^SSL connection (\(protocol: [^,]*, cipher: [^,]*\),.*/\1/p' | grep . || echo unknown
}

# Runs one pgbench cell against PORT with the row's flags (CLIENTS is the row's -c, to cap -j),
# with PGSSLMODE=SSLMODE. Sets R_TPS and R_LAT (ms), or R_TPS=failed. If PID is given (a
# pooler), also sets R_CPU to its CPU microseconds per transaction over the run.
run_cell() {
    port=$1
    pid=$2
    clients=$3
    sslmode=$4
    shift 4
    R_TPS=failed
    R_LAT=failed
    R_CPU=failed
    jobs=$JOBS
    [ "$clients" -lt "$jobs" ] && jobs=$clients
    t0=""
    if [ -n "$pid" ]; then
        t0=$(cpu_ticks "$pid") || return 0
        cs0=$(ctx_switches "$pid")
    fi
    out=$WORK/pgbench.out
    # In the background, so that a signal to this script is handled at once, not after pgbench.
    PGSSLMODE=$sslmode timeout $((DURATION + 60)) pgbench -h 127.0.0.1 -p "$port" -U postgres -n \
        -T "$DURATION" -j "$jobs" "$@" bench >"$out" 2>&1 &
    PGBENCH_PID=$!
    rc=0
    wait "$PGBENCH_PID" || rc=$?
    PGBENCH_PID=""
    if [ "$rc" -ne 0 ]; then
        log "  pgbench failed:"
        { grep -m 3 -E 'error|ERROR|FATAL|abort' "$out" || tail -n 3 "$out"; } | sed 's/^/    /' >&2
        return 0
    fi
    t1=""
    if [ -n "$pid" ]; then
        t1=$(cpu_ticks "$pid") || return 0
        cs1=$(ctx_switches "$pid")
    fi
    tps=$(awk '/^tps = / { print $3; exit }' "$out")
    lat=$(awk '/^latency average = / { print $4; exit }' "$out")
    txn=$(awk -F': ' '/^number of transactions actually processed/ {
        split($2, a, "/"); print a[1]; exit }' "$out")
    case $txn in '' | *[!0-9]* | 0)
        log "  pgbench reported no transactions"
        return 0
        ;;
    esac
    R_TPS=$(printf '%.0f' "$tps")
    R_LAT=$(printf '%.3f' "$lat")
    if [ -n "$pid" ]; then
        R_CPU=$(echo "$t0 $t1" | awk -v hz="$CLK_TCK" -v n="$txn" -v cs=$((cs1 - cs0)) '{
            u = ($3 - $1) * 1000000 / hz / n; s = ($4 - $2) * 1000000 / hz / n
            printf "%.1f (user %.1f, %.2f cs)", u + s, u, cs / n }')
    else
        R_CPU=""
    fi
}

ratio() {
    case "$1$2" in *[!0-9]*) echo "n/a" ;; *) awk -v a="$1" -v b="$2" \
        'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }' ;; esac
}

# PgBouncer has prepared statements in transaction mode from 1.21 on (max_prepared_statements).
BOUNCER_VERSION=$(pgbouncer --version 2>/dev/null | awk 'NR == 1 { print $2 }')
BOUNCER_PREPARED=0
BOUNCER_EXTRA=""
case $BOUNCER_VERSION in
    1.[0-9].* | 1.1[0-9].* | 1.20.* | "") ;;
    *)
        BOUNCER_PREPARED=1
        BOUNCER_EXTRA="max_prepared_statements = 200"
        ;;
esac

hard=$(ulimit -Hn)
want=$((MAX_CLIENT_CONN + 1000))
[ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && want=$hard
ulimit -n "$want"

log "starting PostgreSQL 15 ..."
start_cluster
create_database bench
log "loading pgbench -i -s $SCALE ..."
pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -q -s "$SCALE" bench >"$WORK/init.log" 2>&1 ||
    {
        cat "$WORK/init.log" >&2
        exit 1
    }
pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -S -T 2 -c 2 -j 2 bench >/dev/null 2>&1 || true

POOLERS_TLS=0
set_pooler_tls 0
start_pgbouncer || true
start_pgturbo_logged || true

TURBO_VERSION=unknown
if [ -x "$PGTURBO" ]; then
    TURBO_VERSION=$(timeout 5 "$PGTURBO" version 2>/dev/null | head -n 1) || true
    [ -n "$TURBO_VERSION" ] || TURBO_VERSION=unknown
fi
PG_VERSION=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench -XAtqc 'SHOW server_version')
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

ROWS=(
    "-S -c 8 -M simple"
    "-S -c 50 -M simple"
    "-S -c 8 -M prepared"
    "-S -c 50 -M prepared"
    "-S -c 8 -C -M simple"
    "TLS -S -c 8 -M simple"
)
NOTES=()
TABLE=()
TURBO_TLS_INFO="" BOUNCER_TLS_INFO=""
for row in "${ROWS[@]}"; do
    # A row starting with TLS runs its flags over TLS between pgbench and its target.
    tls=0
    case $row in "TLS "*)
        tls=1
        row=${row#TLS }
        ;;
    esac
    read -r -a flags <<<"$row"
    clients=${flags[2]}
    prepared=0
    case $row in *prepared*) prepared=1 ;; esac
    sslmode=disable suffix=""
    if [ "$tls" -eq 1 ]; then
        sslmode=require suffix=" over TLS"
    fi
    # Both poolers restart when the client TLS setting changes (stopped here, started below).
    if [ "$tls" -ne "$POOLERS_TLS" ]; then
        log "[$row$suffix] restarting both poolers with client_tls_sslmode $sslmode ..."
        stop_proc "$BOUNCER_PID"
        stop_proc "$TURBO_PID"
        BOUNCER_PID="" TURBO_PID=""
        POOLERS_TLS=$tls
        set_pooler_tls "$tls"
    fi

    log "[$row$suffix] direct PostgreSQL ..."
    run_cell "$PG_PORT" "" "$clients" "$sslmode" "${flags[@]}"
    d_tps=$R_TPS d_lat=$R_LAT

    if [ "$prepared" -eq 1 ] && [ "$BOUNCER_PREPARED" -eq 0 ]; then
        b_tps="n/a (unsupported)" b_lat="n/a" b_cpu="n/a"
    else
        if [ -z "$BOUNCER_PID" ] || ! kill -0 "$BOUNCER_PID" 2>/dev/null; then
            [ -n "$BOUNCER_PID" ] && NOTES+=("PgBouncer was not running before row \`$row\`; restarted.")
            BOUNCER_PID=""
            start_pgbouncer || true
        fi
        if [ -n "$BOUNCER_PID" ]; then
            log "[$row$suffix] PgBouncer ..."
            if [ "$tls" -eq 1 ]; then BOUNCER_TLS_INFO=$(tls_conninfo "$BOUNCER_PORT"); fi
            run_cell "$BOUNCER_PORT" "$BOUNCER_PID" "$clients" "$sslmode" "${flags[@]}"
            b_tps=$R_TPS b_lat=$R_LAT b_cpu=$R_CPU
        else
            b_tps=failed b_lat=failed b_cpu=failed
        fi
    fi

    if [ -z "$TURBO_PID" ] || ! kill -0 "$TURBO_PID" 2>/dev/null; then
        if [ -n "$TURBO_PID" ]; then
            NOTES+=("pgturbo was not running before row \`$row\` (it exited); restarted.")
            wait "$TURBO_PID" 2>/dev/null || true
        fi
        TURBO_PID=""
        start_pgturbo_logged || true
    fi
    if [ -n "$TURBO_PID" ]; then
        log "[$row$suffix] pgturbo ..."
        if [ "$tls" -eq 1 ]; then TURBO_TLS_INFO=$(tls_conninfo "$TURBO_PORT"); fi
        run_cell "$TURBO_PORT" "$TURBO_PID" "$clients" "$sslmode" "${flags[@]}"
        t_tps=$R_TPS t_lat=$R_LAT t_cpu=$R_CPU
    else
        t_tps=failed t_lat=failed t_cpu=failed
    fi

    if [ "$prepared" -eq 1 ] && [ "$BOUNCER_PREPARED" -eq 0 ]; then
        tb="n/a, see /direct"
    else
        tb=$(ratio "$t_tps" "$b_tps")
    fi
    td=$(ratio "$t_tps" "$d_tps")
    TABLE+=("| \`$row\`$suffix | $d_tps | $b_tps | $t_tps | $tb | $td | $b_cpu | $t_cpu | $d_lat | $b_lat | $t_lat |")
done

echo "# pgturbo vs PgBouncer vs PostgreSQL"
echo
echo "Command: \`$0 $*\`"
echo
echo "Each cell: \`pgbench -h 127.0.0.1 -p PORT -U postgres -n -T $DURATION -j $JOBS <test flags> bench\`" \
    "(PORT: PostgreSQL, PgBouncer or pgturbo), after \`pgbench -i -s $SCALE bench\`."
echo
echo "- Machine: $(nproc) CPUs ($CPU_MODEL), $(uname -sr)"
echo "- PostgreSQL $PG_VERSION, PgBouncer $BOUNCER_VERSION, pgturbo: $TURBO_VERSION"
echo "- Both poolers: pool_mode=transaction, default_pool_size=$POOL_SIZE," \
    "max_client_conn=$MAX_CLIENT_CONN; pgturbo workers=$WORKERS; PgBouncer log_connections=0"
echo "- TLS: the cluster accepts TLS, but all rows except the last run in plain end to end" \
    "(pgbench PGSSLMODE=disable; both poolers server_tls_sslmode=disable). The row \"over TLS\"" \
    "sets PGSSLMODE=require for pgbench, so its direct cell is TLS straight to PostgreSQL, and" \
    "runs both poolers (restarted for it) with client_tls_sslmode=require and the same P-256" \
    "certificate (tests/harness/certs.sh); their server side stays plain. Negotiated with" \
    "pgbench's libpq: PgBouncer ${BOUNCER_TLS_INFO:-not measured}; pgturbo ${TURBO_TLS_INFO:-not measured}"
echo "- CPU/txn: the pooler's utime+stime (/proc/PID/stat) over the run, in microseconds per transaction; in brackets the user-space part, the pooler's own code (the rest is the kernel's TCP and scheduling), and the pooler's context switches per transaction (voluntary, when it sleeps in epoll_wait, plus involuntary, when a process it woke preempts it; all threads, from /proc/PID/task/*/status)"
echo
echo "| test | direct tps | pgbouncer tps | pgturbo tps | pgturbo/pgbouncer | pgturbo/direct" \
    "| pgbouncer us CPU/txn | pgturbo us CPU/txn | direct latency ms | pgbouncer latency ms" \
    "| pgturbo latency ms |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${TABLE[@]}"
if [ "$BOUNCER_PREPARED" -eq 0 ]; then
    echo
    echo "PgBouncer $BOUNCER_VERSION has no prepared statements in transaction mode (they came" \
        "in 1.21), so its -M prepared cells are n/a: compare pgturbo with direct PostgreSQL there."
fi
if [ ${#NOTES[@]} -gt 0 ]; then
    echo
    for n in "${NOTES[@]}"; do echo "- $n"; done
fi
