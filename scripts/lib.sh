# shellcheck shell=bash
# Plumbing shared by the scripts that put pgturbo in front of a throwaway PostgreSQL 15
# (bench/idle_clients.sh, bench/pgbench_compare.sh, scripts/demo.sh): a work directory that is
# removed on exit together with every process the script started, free loopback ports, the
# cluster of tests/harness/cluster.sh started with retries, and pgturbo started and waited for.
#
# Sourced, not run, by bash scripts under `set -eu`:
#     . "$(dirname "$0")/../scripts/lib.sh"
# It sets ROOT (the repository) and CLUSTER (cluster.sh) when sourced; its functions set the
# globals PGTURBO, WORK, ENVDIR, PG_PORT, TURBO_PORT, TURBO_PID and CLUSTER_STARTED, which the
# scripts read. Progress messages go to stderr, so a script's stdout stays its report.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=$ROOT/tests/harness/cluster.sh
TURBO_PID=""
CLUSTER_STARTED=0
CLEANUP_PIDS=()

# Writes one progress line to stderr.
log() { printf '%s\n' "$*" >&2; }

# Sets PGTURBO to the pgturbo binary at PATH, made absolute so that it does not depend on the
# directory it is run from.
set_pgturbo() {
    case $1 in /*) PGTURBO=$1 ;; *) PGTURBO=$PWD/$1 ;; esac
}

# Makes the run's work directory WORK (/tmp/pgturbo-NAME.XXXXXX), with the cluster's state
# files in ENVDIR (WORK/env). cleanup removes it.
make_workdir() {
    WORK=$(mktemp -d "/tmp/pgturbo-$1.XXXXXX")
    ENVDIR=$WORK/env
}

# Stops one process we started: SIGTERM, up to 5 s of grace, then SIGKILL. An empty PID is
# nothing to stop.
stop_proc() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stops the processes whose pids the variables named by cleanup_on_exit hold, in that order,
# then the cluster if start_cluster was called, and removes WORK. Failures are ignored: it runs
# on the way out, also after an error.
# shellcheck disable=SC2317  # only called by the EXIT trap
cleanup() {
    local name
    set +e
    for name in "${CLEANUP_PIDS[@]}"; do
        stop_proc "${!name:-}"
    done
    [ "$CLUSTER_STARTED" -eq 1 ] && "$CLUSTER" stop "$ENVDIR" >/dev/null 2>&1
    rm -rf "$WORK"
}

# Runs cleanup when the script exits, also on failure, Ctrl-C, SIGHUP or SIGTERM (exiting
# with 128 + the signal's number). Each argument names a variable holding the pid of a process
# to stop then, or an empty string; the variables are read at exit, not now.
cleanup_on_exit() {
    CLEANUP_PIDS=("$@")
    trap cleanup EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Prints a random free loopback port below the ephemeral range: no client socket can hold it,
# not even one left in TIME_WAIT (which a listener cannot bind), so many client connections or
# pgbench -C cannot collide with it.
free_port() {
    local low span port
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

# One `cluster.sh start` of the cluster in ENVDIR, its messages to LOGFILE if given (each try
# overwrites it), else to stderr.
cluster_start_once() {
    if [ -n "$1" ]; then
        "$CLUSTER" start "$ENVDIR" >"$1" 2>&1
    else
        "$CLUSTER" start "$ENVDIR" >&2
    fi
}

# Up to three cluster_start_once tries with LOGFILE as there, and sets PG_PORT once one worked.
# cluster.sh picks the port anywhere in 20000-49999, where a TIME_WAIT socket may hold it, so
# each try gets a fresh port; a failed one is stopped again before the next, and without
# LOGFILE a line on stderr says so. With LOGFILE, the last try's messages are copied to stderr
# if every try failed. Returns 1 then.
cluster_start_retrying() {
    local logfile=$1
    CLUSTER_STARTED=1
    for _ in 1 2 3; do
        if cluster_start_once "$logfile"; then
            PG_PORT=$(cat "$ENVDIR/pg.port")
            return 0
        fi
        "$CLUSTER" stop "$ENVDIR" >/dev/null 2>&1 || true
        [ -n "$logfile" ] || log "PostgreSQL did not start; retrying on another port"
    done
    [ -z "$logfile" ] || cat "$logfile" >&2
    return 1
}

# Starts the throwaway PostgreSQL 15 in ENVDIR (retrying on another port if need be) and sets
# PG_PORT, with cluster.sh's messages on stderr. Returns 1 if PostgreSQL did not start.
start_cluster() {
    cluster_start_retrying ""
}

# start_cluster, but with cluster.sh's messages kept in LOGFILE, which reaches stderr only if
# PostgreSQL did not start.
start_cluster_quietly() {
    cluster_start_retrying "$1"
}

# Creates the empty database NAME in the cluster.
create_database() {
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XAtqc "CREATE DATABASE $1" >/dev/null
}

# Waits (100 checks, 0.1 s apart) until process PID listens on 127.0.0.1:PORT and answers a
# query there as user postgres in database DB. Returns 1 if it did not, or if it exited.
wait_ready() {
    local pid=$1 port=$2 db=$3
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 1
        if ss -Htln "sport = :$port" | grep -q . &&
            timeout 10 psql -h 127.0.0.1 -p "$port" -U postgres -d "$db" -XAtqc 'SELECT 1' \
                >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# One try at starting PGTURBO on a fresh port (TURBO_PORT) in front of the cluster's database
# DB, in transaction mode with POOL_SIZE server connections per pool, MAX_CLIENT_CONN clients
# and WORKERS threads (pgturbo's default if not given), plus the [pgturbo] lines in the global
# TURBO_EXTRA if it is set (e.g. TLS settings). Its configuration is WORK/pgturbo.ini and its
# output is appended to WORK/pgturbo.log. Sets TURBO_PID once pgturbo answers a query; if it
# does not, stops it, empties TURBO_PID and returns 1.
launch_pgturbo() {
    local db=$1 pool_size=$2 max_client_conn=$3 workers=${4:-}
    TURBO_PORT=$(free_port)
    {
        cat <<EOF
[pgturbo]
listen_addr = 127.0.0.1
listen_port = $TURBO_PORT
auth_type = trust
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = $max_client_conn
EOF
        [ -z "$workers" ] || echo "workers = $workers"
        [ -z "${TURBO_EXTRA:-}" ] || printf '%s\n' "$TURBO_EXTRA"
        cat <<EOF

[databases]
$db = host=127.0.0.1 port=$PG_PORT dbname=$db user=postgres
EOF
    } >"$WORK/pgturbo.ini"
    "$PGTURBO" serve "$WORK/pgturbo.ini" >>"$WORK/pgturbo.log" 2>&1 &
    TURBO_PID=$!
    wait_ready "$TURBO_PID" "$TURBO_PORT" "$db" && return 0
    stop_proc "$TURBO_PID"
    TURBO_PID=""
    return 1
}

# launch_pgturbo with the same arguments, up to three tries, each on a fresh port in case a
# port that looked free was taken in between. Returns 1 if none came up.
start_pgturbo() {
    for _ in 1 2 3; do
        launch_pgturbo "$@" && return 0
    done
    return 1
}
