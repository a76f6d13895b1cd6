#!/bin/bash
# What measuring every query costs: pgbench -S -c 8 through pgturbo with query_stats = on and
# with query_stats = off, in one run, and the ratio. Prints a Markdown table.
#
#   bench/profiling_cost.sh PGTURBO_BIN [DURATION_SECONDS] [ROUNDS]   (default 10 s, 3 rounds)
#
# It starts a throwaway PostgreSQL 15, loads `pgbench -i -s 10` into "bench", and alternates
# the two settings ROUNDS times (on, off, on, off ...; pgturbo restarted for each, transaction
# mode, pool of 20, 2 workers, server side plain), so that drift over the run hits both alike.
# The figures are the transactions of each setting summed over its rounds, and pgturbo's CPU
# time (user + system, /proc/PID/stat) per transaction, which varies less than tps on a
# machine whose 2 cores pgbench and PostgreSQL share.
set -eu

usage() {
    echo "usage: $0 PGTURBO_BIN [DURATION_SECONDS] [ROUNDS]" >&2
    exit 2
}
if [ $# -lt 1 ] || [ $# -gt 3 ]; then usage; fi
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
set_pgturbo "$1"
DURATION=${2:-10}
ROUNDS=${3:-3}
case $DURATION$ROUNDS in *[!0-9]*) usage ;; esac

make_workdir profiling
cleanup_on_exit TURBO_PID
start_cluster_quietly "$WORK/cluster.log" || exit 1
create_database bench
log "loading pgbench -i -s 10"
pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 10 -q bench >/dev/null 2>&1

CLK_TCK=$(getconf CLK_TCK)

# pgturbo's user + system CPU time in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat")
    rest=${stat##*) }
    echo "$rest" | awk '{ print $12 + $13 }'
}

# Runs pgbench -S -c 8 for DURATION against pgturbo started with query_stats = $1 and prints
# the number of transactions it made and the CPU ticks pgturbo used meanwhile.
one_round() {
    # shellcheck disable=SC2034 # read by launch_pgturbo in scripts/lib.sh
    TURBO_EXTRA="server_tls_sslmode = disable
query_stats = $1"
    start_pgturbo bench 20 100 2 || { log "pgturbo did not start"; exit 1; }
    local out before after
    before=$(cpu_ticks "$TURBO_PID")
    out=$(PGSSLMODE=disable pgbench -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -n -S -c 8 -j 2 \
        -T "$DURATION" bench 2>&1)
    after=$(cpu_ticks "$TURBO_PID")
    stop_proc "$TURBO_PID"
    TURBO_PID=""
    echo "$out" | awk -v t=$((after - before)) '/number of transactions actually processed/ {
        print $NF, t }'
}

on=0
off=0
on_ticks=0
off_ticks=0
for round in $(seq "$ROUNDS"); do
    log "round $round: query_stats = on"
    read -r txns ticks < <(one_round on)
    on=$((on + txns))
    on_ticks=$((on_ticks + ticks))
    log "round $round: query_stats = off"
    read -r txns ticks < <(one_round off)
    off=$((off + txns))
    off_ticks=$((off_ticks + ticks))
done
seconds=$((DURATION * ROUNDS))
echo "# Cost of query statistics"
echo
echo "Command: \`bench/profiling_cost.sh $* \` ($ROUNDS rounds of $DURATION s per setting, alternating)"
echo
echo "| query_stats | tps | tps ratio to off | pgturbo us CPU/txn |"
echo "|---|---:|---:|---:|"
awk -v on="$on" -v off="$off" -v s="$seconds" -v ont="$on_ticks" -v offt="$off_ticks" \
    -v hz="$CLK_TCK" 'BEGIN {
    printf "| on | %.0f | %.3f | %.1f |\n", on / s, on / off, ont / hz * 1e6 / on
    printf "| off | %.0f | 1.000 | %.1f |\n", off / s, offt / hz * 1e6 / off
}'
