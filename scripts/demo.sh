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
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
set_pgturbo "$1"
if [ ! -x "$PGTURBO" ]; then
    echo "$0: $PGTURBO is not an executable file (build it with: make release)" >&2
    exit 2
fi

POOL_SIZE=5
CLIENTS=20
SECONDS_RUN=10

make_workdir demo
PGBENCH_PID=""
cleanup_on_exit PGBENCH_PID TURBO_PID

say() { printf '%s\n' "$*"; }
heading() { printf '\n== %s ==\n' "$*"; }

psql_direct() {
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -v ON_ERROR_STOP=1 "$@"
}

say "pgturbo demo: a throwaway PostgreSQL, a sample app, and $CLIENTS clients sharing"
say "$POOL_SIZE server connections. Takes about 20 seconds and removes everything at the end."

heading "PostgreSQL"
if ! start_cluster_quietly "$WORK/cluster.log"; then
    say "PostgreSQL 15 did not start; see the messages above."
    exit 1
fi
create_database demo
psql_direct -d demo -q -f "$ROOT/scripts/demo_schema.sql" >/dev/null
counts=$(psql_direct -d demo -XAtF ' ' -c "SELECT (SELECT count(*) FROM users),
    (SELECT count(*) FROM projects), (SELECT count(*) FROM activity_logs)")
read -r n_users n_projects n_logs <<<"$counts"
say "PostgreSQL 15 is running on 127.0.0.1:$PG_PORT (a throwaway cluster)."
say "Sample data in database \"demo\" (scripts/demo_schema.sql): $n_users users," \
    "$n_projects projects, $n_logs activity_logs rows."

heading "pgturbo"
# shellcheck disable=SC2034 # read by launch_pgturbo in scripts/lib.sh
TURBO_EXTRA="admin_users = postgres
n_plus_one_threshold = 10"
if ! start_pgturbo demo "$POOL_SIZE" 200; then
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

# An endpoint written the way ORMs write it by default: a list, then one query per item.
say
say "One more request, as an ORM makes it: the projects of a user, then each project's latest"
say "activity one query at a time (tagged with a sqlcommenter comment)."
{
    echo "BEGIN;"
    echo "SELECT id FROM projects WHERE owner_id = 1 /*route='/api/projects',request_id='demo-1'*/;"
    for id in $(seq 1 12); do
        echo "SELECT created_at, action FROM activity_logs WHERE project_id = $id" \
            "ORDER BY created_at DESC LIMIT 1 /*route='/api/projects',request_id='demo-1'*/;"
    done
    echo "COMMIT;"
} | psql -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -d demo -Xq >/dev/null

heading "What pgturbo saw (admin console: SHOW QUERIES)"
printf '%-8s %10s %9s %9s  %s\n' "calls" "total ms" "mean ms" "p95 ms" "query (normalized)"
psql -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -d pgturbo -XAt -F '|' -c "SHOW QUERIES" |
    head -n 5 |
    awk -F'|' '{ q = $4; if (length(q) > 70) q = substr(q, 1, 67) "...";
        printf "%-8s %10.1f %9.3f %9.3f  %s\n", $5, $8, $9, $13, q }'
findings=$(grep -c 'N+1:' "$WORK/pgturbo.log" || true)
say
if [ "${findings:-0}" -gt 0 ]; then
    say "N+1 findings ($findings):"
    grep 'N+1:' "$WORK/pgturbo.log" | sed 's/^.*N+1: /  /' | cut -c1-160
    say "  Suggested rewrite: one query for all the ids (WHERE project_id = ANY(\$1)), or a JOIN."
else
    say "No N+1 findings."
fi

# The P95 in ms of the recent-activity query, as SHOW QUERIES says it now.
activity_p95() {
    psql -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -d pgturbo -XAt -F '|' -c "SHOW QUERIES" |
        awk -F'|' '$4 ~ /^SELECT created_at, user_id, category/ { print $13; exit }'
}

heading "pgturbo advise"
p95_before=$(activity_p95)
say "pgturbo advise reads the workload PostgreSQL saw (pg_stat_statements), proves each"
say "candidate index with HypoPG before anyone builds it, and with --apply builds what pays:"
say
advise_rc=0
"$PGTURBO" advise --apply --migrations "$WORK/migrations" \
    "host=127.0.0.1 port=$PG_PORT dbname=demo user=postgres" >"$WORK/advise.out" 2>&1 ||
    advise_rc=$?
sed 's/^/  /' "$WORK/advise.out"
if [ "$advise_rc" -eq 0 ]; then
    say
    say "The migrations it wrote (up and down) are in $WORK/migrations;" \
        "pgturbo.migrations records what was applied."
    stop_proc "$TURBO_PID"
    TURBO_PID=""
    if start_pgturbo demo "$POOL_SIZE" 200; then
        say "The same workload again, for $SECONDS_RUN s, on a fresh pgturbo:"
        pgbench -h 127.0.0.1 -p "$TURBO_PORT" -U postgres -n \
            -f "$ROOT/scripts/demo_workload.sql" -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" demo \
            >"$WORK/pgbench-after.out" 2>&1 || true
        tps_after=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$WORK/pgbench-after.out")
        p95_after=$(activity_p95)
        printf '%-34s %s\n' \
            "Recent-activity query P95:" "${p95_before:-?} ms before, ${p95_after:-?} ms after" \
            "Throughput:" "${tps:-?} before, ${tps_after:-?} transactions per second after"
    fi
else
    say "pgturbo advise did not run to the end (see above)."
fi

heading "Done"
say "Stopping pgturbo and PostgreSQL and removing their files. To put pgturbo in front of your"
say "own database: $PGTURBO serve pgturbo.ini"
say "(an ini file like PgBouncer's, with sections [pgturbo] and [databases])."
