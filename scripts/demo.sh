#!/bin/bash
# The first five minutes with pgturbo (`make demo`): starts a throwaway PostgreSQL 15 with a
# small sample app (scripts/demo_schema.sql), puts pgturbo in front of it in transaction mode
# with a pool of 5 server connections, runs 20 clients through it for 10 seconds
# (scripts/demo_workload.sql) and prints what happened: clients served, the server connections
# PostgreSQL saw, throughput and latency. Then it stops everything and removes its files.
#
#   scripts/demo.sh PGTURBO_BIN          e.g. scripts/demo.sh build-release/pgturbo
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 PGTURBO_BIN" >&2
    exit 2
fi
PGTURBO=$1
case $PGTURBO in /*) ;; *) PGTURBO=$PWD/$PGTURBO ;; esac
if [ ! -x "$PGTURBO" ]; then
    echo "$0: $PGTURBO is not an executable file (build it with: make release)" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER=$ROOT/tests/harness/cluster.sh
POOL_SIZE=5
CLIENTS=20
SECONDS_RUN=10

WORK=$(mktemp -d /tmp/pgturbo-demo.XXXXXX)
ENVDIR=$WORK/env
TURBO_PID=""
PGBENCH_PID=""
CLUSTER_STARTED=0

say() { printf '%s\n' "$*"; }
heading() { printf '\n== %s ==\n' "$*"; }

# Stops one process we started: SIGTERM, up to 5 s of grace, then SIGKILL.
stop_proc() {
    pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # only called by the EXIT trap
cleanup() {
    set +e
    stop_proc "$PGBENCH_PID"
    stop_proc "$TURBO_PID"
    [ "$CLUSTER_STARTED" -eq 1 ] && "$CLUSTER" stop "$ENVDIR" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# A random free loopback port below the ephemeral range, where no client socket (not even one
# in TIME_WAIT) can be holding it.
free_port() {
    low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range)
    span=$((low - 20000))
    [ "$span" -ge 1000 ] || span=30000
    while :; do
        port=$(($(od -An -N2 -tu2 /dev/urandom) % span + 20000))
        ss -Htan "sport = :$port" | grep -q . || {
            echo "$port"
            return
        }
    done
}

# cluster.sh picks PostgreSQL's port anywhere in 20000-49999, which may be held by a TIME_WAIT
# socket, so a failed start is retried on a fresh port.
start_cluster() {
    for _ in 1 2 3; do
        "$CLUSTER" start "$ENVDIR" >"$WORK/cluster.log" 2>&1 && return 0
        "$CLUSTER" stop "$ENVDIR" >/dev/null 2>&1 || true
    done
    cat "$WORK/cluster.log" >&2
    return 1
}

psql_direct() {
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -v ON_ERROR_STOP=1 "$@"
}

start_pgturbo() {
    for _ in 1 2 3; do
        TURBO_PORT=$(free_port)
        cat >"$WORK/pgturbo.ini" <<EOF
[pgturbo]
listen_addr = 127.0.0.1
listen_port = $TURBO_PORT
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 200

[databases]
demo = host=127.0.0.1 port=$PG_PORT dbname=demo user=postgres
EOF
        "$PGTURBO" serve "$WORK/pgturbo.ini" >>"$WORK/pgturbo.log" 2>&1 &
        TURBO_PID=$!
        for _ in $(seq 100); do
            kill -0 "$TURBO_PID" 2>/dev/null || break
            if ss -Htln "sport = :$TURBO_PORT" | grep -q . &&
                timeout 10 psql -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -d demo -XAtqc \
                    'SELECT 1' >/dev/null 2>&1; then
                return 0
            fi
            sleep 0.1
        done
        stop_proc "$TURBO_PID"
        TURBO_PID=""
    done
    return 1
}

say "pgturbo demo: a throwaway PostgreSQL, a sample app, and $CLIENTS clients sharing"
say "$POOL_SIZE server connections. Takes about 20 seconds and removes everything at the end."

heading "PostgreSQL"
CLUSTER_STARTED=1
if ! start_cluster; then
    say "PostgreSQL 15 did not start; see the messages above."
    exit 1
fi
PG_PORT=$(cat "$ENVDIR/pg.port")
psql_direct -d postgres -qc 'CREATE DATABASE demo'
psql_direct -d demo -q -f "$ROOT/scripts/demo_schema.sql" >/dev/null
counts=$(psql_direct -d demo -XAtF ' ' -c "SELECT (SELECT count(*) FROM users),
    (SELECT count(*) FROM projects), (SELECT count(*) FROM activity_logs)")
read -r n_users n_projects n_logs <<<"$counts"
say "PostgreSQL 15 is running on 127.0.0.1:$PG_PORT (a throwaway cluster)."
say "Sample data in database \"demo\" (scripts/demo_schema.sql): $n_users users," \
    "$n_projects projects, $n_logs activity_logs rows."

heading "pgturbo"
if ! start_pgturbo; then
    say "pgturbo did not start. Its last log lines:"
    tail -n 20 "$WORK/pgturbo.log" || true
    exit 1
fi
say "pgturbo is listening on 127.0.0.1:$TURBO_PORT (pool_mode = transaction," \
    "default_pool_size = $POOL_SIZE)."
say "Apps connect to pgturbo instead of PostgreSQL: psql -h 127.0.0.1 -p $TURBO_PORT -U postgres demo"

heading "Workload"
say "$CLIENTS clients for $SECONDS_RUN s through pgturbo (scripts/demo_workload.sql): each looks"
say "up a user and a project, reads the project's latest activity and, 1 time in 5, logs an event."
pgbench -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -n -f "$ROOT/scripts/demo_workload.sql" \
    -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" demo >"$WORK/pgbench.out" 2>&1 &
PGBENCH_PID=$!

# While the clients run, count the connections PostgreSQL serves in database demo; the query
# itself connects to database postgres and so never counts itself.
max_conns=0
while kill -0 "$PGBENCH_PID" 2>/dev/null; do
    n=$(psql_direct -d postgres -XAtqc "SELECT count(*) FROM pg_stat_activity
        WHERE datname = 'demo' AND backend_type = 'client backend'" 2>/dev/null) || n=0
    [ "$n" -gt "$max_conns" ] && max_conns=$n
    sleep 0.2
done
rc=0
wait "$PGBENCH_PID" || rc=$?
PGBENCH_PID=""
if [ "$rc" -ne 0 ]; then
    say "The workload failed (pgbench exit status $rc):"
    grep -m 5 -E 'error|ERROR|FATAL|abort' "$WORK/pgbench.out" || tail -n 5 "$WORK/pgbench.out"
    say "pgturbo's last log lines:"
    tail -n 20 "$WORK/pgturbo.log" || true
    exit 1
fi

txns=$(awk -F': ' '/^number of transactions actually processed/ {
    split($2, a, "/"); print a[1]; exit }' "$WORK/pgbench.out")
failed=$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1]; exit }' \
    "$WORK/pgbench.out")
tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$WORK/pgbench.out")
latency=$(awk '/^latency average = / { printf "%.1f", $4; exit }' "$WORK/pgbench.out")

heading "Result"
printf '%-26s %s\n' \
    "Clients served:" "$CLIENTS at once, ${txns:-?} transactions in $SECONDS_RUN s (${failed:-0} failed)" \
    "PostgreSQL connections:" "$max_conns at most (pg_stat_activity), for $CLIENTS clients" \
    "Throughput:" "${tps:-?} transactions per second" \
    "Average latency:" "${latency:-?} ms per transaction"
if [ "$max_conns" -gt 0 ] && [ "$max_conns" -lt "$CLIENTS" ]; then
    say
    say "Without a pooler each client holds a PostgreSQL backend of its own: $CLIENTS of them."
    say "Through pgturbo the $CLIENTS clients shared $max_conns."
fi

heading "Done"
say "Stopping pgturbo and PostgreSQL and removing their files. To put pgturbo in front of your"
say "own database: $PGTURBO serve pgturbo.ini"
say "(an ini file like PgBouncer's, with sections [pgturbo] and [databases])."
