#!/bin/bash
# What monthly range partitioning buys a time-series table: three "last 30 days" queries and
# the removal of the data older than 12 months, on the same rows in a plain table and in a
# table partitioned by month with `pgturbo partition create`, in one run. Prints a Markdown
# table.
#
#   bench/partition_range.sh [--rows N] PGTURBO_BIN [DURATION_SECONDS]
#                                       (default 10,000,000 rows, 30 s per query and table;
#                                        about 4.5 minutes on a 2-core machine; ROWS=N also works)
#
# It starts a throwaway PostgreSQL 15 and loads, into a database "bench":
#
# - activity_logs (the "plain" column): the shape of seed 000's activity_logs table
#   (id bigserial, user_id, category, action, level, metadata jsonb, created_at timestamptz),
#   N rows spread evenly over the 24 months up to now, in time order as an append-only log
#   fills up, with PRIMARY KEY (id) and an index on (created_at): what a team has before it
#   partitions. One INSERT ... SELECT from generate_series, then the indexes, then VACUUM
#   ANALYZE.
# - activity_logs_monthly (the "partitioned" column): CREATE TABLE ... PARTITION BY RANGE
#   (created_at), then `PGTURBO_BIN partition create activity_logs_monthly --column created_at
#   --interval month --premake 2 --from <first row's day> CONNINFO` (the months from the first
#   row's to the current one, plus 2 ahead: 27 partitions), then INSERT ... SELECT * FROM
#   activity_logs, then PRIMARY KEY (id, created_at) (a partitioned table's key must hold the
#   partition column) and the index on (created_at), then VACUUM ANALYZE.
#
# Each query runs as a pgbench custom script (`pgbench -n -f Qn.sql -c 2 -j 2 -T DURATION`)
# against the plain table, then against the partitioned one, after one warm-up run of each:
#
#   Q1  SELECT count(*), count(DISTINCT user_id) FROM t WHERE created_at >= now() - interval '30 days'
#   Q2  SELECT level, count(*) FROM t WHERE created_at >= now() - interval '30 days' GROUP BY level
#   Q3  SELECT * FROM t WHERE created_at >= now() - interval '30 days' ORDER BY created_at DESC LIMIT 50
#
# and the last row is the retention job, timed by the wall clock (date +%s%N around psql, so
# each side includes one psql start): on the plain table `DELETE ... WHERE created_at < now() -
# interval '12 months'` and then VACUUM (which the deleted rows need before their space is
# reused), on the partitioned table one DROP TABLE of the partitions wholly older than that
# (what `pgturbo partition maintain` does with --retain 12; the month holding the cutoff stays,
# so the DROP removes up to a month's rows fewer than the DELETE: the notes give both counts).
#
# How to read it: for the queries the figures are pgbench's tps (higher is better); for the
# retention job, milliseconds (lower is better). The last column is partitioned / plain of
# the same figure, so above 1 means partitioning won a query and below 1 means it won the
# retention job. Under the table, EXPLAIN (costs off) of Q1 on the partitioned table shows
# partition pruning: now() is stable, not immutable, so PostgreSQL prunes when the executor
# starts ("Subplans Removed") and scans only the partitions that can hold the last 30 days:
# the current month, the one before, and the 2 empty ones made ahead, which a condition with
# no upper bound cannot exclude: "partitions scanned: 4 of 27 (2 of them empty ...)".
# The planner still plans every partition (pruning comes after planning), which each query
# pays, with the simple query protocol that pgbench uses here, in planning time.
#
# Progress goes to stderr and the report to stdout. Everything the script starts is stopped
# and removed on exit, also on failure or Ctrl-C. It needs about 2 x 1.7 GB in /tmp per
# 10,000,000 rows.
set -eu

usage() {
    echo "usage: $0 [--rows N] PGTURBO_BIN [DURATION_SECONDS]   (or ROWS=N $0 ...)" >&2
    exit 2
}
ROWS=${ROWS:-10000000}
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --rows)
            [ $# -ge 2 ] || usage
            ROWS=$2
            shift 2
            ;;
        --rows=*)
            ROWS=${1#--rows=}
            shift
            ;;
        -h | --help) usage ;;
        -*) usage ;;
        *)
            ARGS+=("$1")
            shift
            ;;
    esac
done
if [ ${#ARGS[@]} -lt 1 ] || [ ${#ARGS[@]} -gt 2 ]; then usage; fi
case $ROWS in '' | *[!0-9]* | 0) usage ;; esac
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
set_pgturbo "${ARGS[0]}"
DURATION=${ARGS[1]:-30}
case $DURATION in '' | *[!0-9]* | 0) usage ;; esac
if [ ! -x "$PGTURBO" ]; then
    echo "$0: $PGTURBO is not an executable file (build it with: make release)" >&2
    exit 2
fi

PLAIN=activity_logs
PART=activity_logs_monthly
PREMAKE=2
CLIENTS=2
JOBS=2

make_workdir partition
PGBENCH_PID=""
cleanup_on_exit PGBENCH_PID

# psql on the bench database, unaligned and quiet, stopping at the first error.
sql() {
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench -XAtq -v ON_ERROR_STOP=1 "$@"
}

# Wall-clock milliseconds since the epoch.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Seconds since START_MS, for the progress lines.
elapsed() { echo "$((($(now_ms) - START_MS) / 1000)) s"; }

# Runs one pgbench cell: the custom script FILE for DURATION seconds. Sets R_TPS and R_LAT
# (ms), or both to "failed" with the reason on stderr.
run_cell() {
    local file=$1 out=$WORK/pgbench.out rc=0
    R_TPS=failed
    R_LAT=failed
    # In the background, so that a signal to this script is handled at once, not after pgbench.
    PGSSLMODE=disable timeout $((DURATION + 120)) pgbench -h 127.0.0.1 -p "$PG_PORT" \
        -U postgres -n -f "$file" -c "$CLIENTS" -j "$JOBS" -T "$DURATION" bench >"$out" 2>&1 &
    PGBENCH_PID=$!
    wait "$PGBENCH_PID" || rc=$?
    PGBENCH_PID=""
    if [ "$rc" -ne 0 ]; then
        log "  pgbench failed:"
        { grep -m 3 -E 'error|ERROR|FATAL|abort' "$out" || tail -n 3 "$out"; } | sed 's/^/    /' >&2
        return 0
    fi
    R_TPS=$(awk '/^tps = / { printf "%.1f", $3; exit }' "$out")
    R_LAT=$(awk '/^latency average = / { printf "%.1f", $4; exit }' "$out")
    [ -n "$R_TPS" ] || R_TPS=failed
}

# B / A with two decimals (four when below 0.01), or n/a.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || a + 0 == 0) { print "n/a"; exit }
        r = b / a
        if (r < 0.01) printf "%.4fx", r; else printf "%.2fx", r }'
}

START_MS=$(now_ms)
log "starting PostgreSQL 15 ..."
start_cluster_quietly "$WORK/cluster.log" || exit 1
create_database bench
CONNINFO="host=127.0.0.1 port=$PG_PORT user=postgres dbname=bench sslmode=disable"

# The rows cover the 24 months up to now; the first one's day (UTC) is where the partitions
# start.
read -r T_END T_START FROM <<<"$(sql -F ' ' -c "SELECT extract(epoch FROM t),
    extract(epoch FROM t - interval '24 months'),
    to_char((t - interval '24 months') AT TIME ZONE 'UTC', 'YYYY-MM-DD')
    FROM (SELECT now() AS t) AS n")"

log "[$(elapsed)] partitioned table $PART: partitions from $FROM ..."
sql -c "CREATE TABLE $PART (
    id bigserial, user_id bigint, category text, action text, level text, metadata jsonb,
    created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)"
PARTITION_CMD="pgturbo partition create $PART --column created_at --interval month"
PARTITION_CMD="$PARTITION_CMD --premake $PREMAKE --from $FROM CONNINFO"
PARTITION_HOW="\`$PARTITION_CMD\`"
if ! "$PGTURBO" partition create "$PART" --column created_at --interval month \
    --premake "$PREMAKE" --from "$FROM" "$CONNINFO" >"$WORK/partition.log" 2>&1; then
    log "$PGTURBO partition create failed:"
    sed 's/^/    /' "$WORK/partition.log" >&2
    exit 1
fi
sed 's/^/    /' "$WORK/partition.log" >&2
N_PARTS=$(sql -c "SELECT count(*) FROM pg_inherits WHERE inhparent = '$PART'::regclass")
log "[$(elapsed)] $N_PARTS partitions"

log "[$(elapsed)] loading $ROWS rows into $PLAIN ..."
sql >/dev/null <<SQL
CREATE TABLE $PLAIN (
    id bigserial, user_id bigint, category text, action text, level text, metadata jsonb,
    created_at timestamptz NOT NULL);
INSERT INTO $PLAIN (id, user_id, category, action, level, metadata, created_at)
SELECT g,
       1 + (g * 7919) % 100000,
       c.category[1 + g % 6],
       c.action[1 + g % 6],
       CASE WHEN g % 100 < 2 THEN 'error' WHEN g % 100 < 8 THEN 'warning'
            WHEN g % 100 < 15 THEN 'debug' ELSE 'info' END,
       jsonb_build_object('duration_ms', g % 400, 'client', c.client[1 + g % 4]),
       to_timestamp($T_START::float8 + (g - 1) * (($T_END - $T_START)::float8 / $ROWS))
FROM generate_series(1::bigint, $ROWS) AS g,
     (SELECT ARRAY['auth', 'auth', 'project', 'project', 'task', 'task'] AS category,
             ARRAY['login', 'logout', 'view', 'update', 'create', 'complete'] AS action,
             ARRAY['web', 'ios', 'android', 'api'] AS client) AS c;
SELECT setval(pg_get_serial_sequence('$PLAIN', 'id'), $ROWS);
SET maintenance_work_mem = '512MB';
ALTER TABLE $PLAIN ADD PRIMARY KEY (id);
CREATE INDEX ON $PLAIN (created_at);
VACUUM ANALYZE $PLAIN;
SQL

log "[$(elapsed)] copying the rows into $PART ..."
sql >/dev/null <<SQL
INSERT INTO $PART SELECT * FROM $PLAIN;
SELECT setval(pg_get_serial_sequence('$PART', 'id'), $ROWS);
SET maintenance_work_mem = '512MB';
ALTER TABLE $PART ADD PRIMARY KEY (id, created_at);
CREATE INDEX ON $PART (created_at);
VACUUM ANALYZE $PART;
SQL
IFS='|' read -r PLAIN_SIZE PART_SIZE RECENT <<<"$(sql -F '|' -c "SELECT
    pg_size_pretty(pg_total_relation_size('$PLAIN')),
    (SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid)))
     FROM pg_inherits WHERE inhparent = '$PART'::regclass),
    (SELECT count(*) FROM $PLAIN WHERE created_at >= now() - interval '30 days')")"
log "[$(elapsed)] loaded: $PLAIN $PLAIN_SIZE, $PART $PART_SIZE with indexes"

QUERIES=(
    "SELECT count(*), count(DISTINCT user_id) FROM %s WHERE created_at >= now() - interval '30 days'"
    "SELECT level, count(*) FROM %s WHERE created_at >= now() - interval '30 days' GROUP BY level"
    "SELECT * FROM %s WHERE created_at >= now() - interval '30 days' ORDER BY created_at DESC LIMIT 50"
)
TABLE=()
i=0
for q in "${QUERIES[@]}"; do
    i=$((i + 1))
    for t in "$PLAIN" "$PART"; do
        # shellcheck disable=SC2059  # the query is the format
        printf "$q;\n" "$t" >"$WORK/q$i-$t.sql"
        sql -f "$WORK/q$i-$t.sql" >/dev/null # warm-up: caches and statistics
    done
    log "[$(elapsed)] Q$i on $PLAIN ..."
    run_cell "$WORK/q$i-$PLAIN.sql"
    p_tps=$R_TPS p_lat=$R_LAT
    log "[$(elapsed)] Q$i on $PART ..."
    run_cell "$WORK/q$i-$PART.sql"
    t_tps=$R_TPS t_lat=$R_LAT
    # shellcheck disable=SC2059
    shown=$(printf "$q" t)
    TABLE+=("| Q$i \`$shown\` | tps | $p_tps ($p_lat ms) | $t_tps ($t_lat ms) | $(ratio "$p_tps" "$t_tps") |")
done

# EXPLAIN of Q1 on the partitioned table, and the partitions it scans: the relations of
# $PART_ that a plan node reads ("Seq Scan on activity_logs_monthly_2026_11 ...").
# shellcheck disable=SC2059  # the query is the format
sql -c "EXPLAIN (costs off) $(printf "${QUERIES[0]}" "$PART")" >"$WORK/explain.txt"
grep -oE " on ${PART}_[a-z0-9_]+" "$WORK/explain.txt" | sed 's/^ on //' | sort -u >"$WORK/scanned.txt"
SCANNED=$(wc -l <"$WORK/scanned.txt")
# Those of them that hold no rows: the partitions made ahead, which "created_at >= ..." with no
# upper bound cannot prune.
SCANNED_EMPTY=0
if [ "$SCANNED" -gt 0 ]; then
    SCANNED_EMPTY=$(sql -c "SELECT $(sed 's/.*/(SELECT count(*) FROM (SELECT FROM & LIMIT 1) AS x)/' \
        "$WORK/scanned.txt" | paste -sd+)")
    SCANNED_EMPTY=$((SCANNED - SCANNED_EMPTY))
fi

# The retention job. The partitions wholly older than the cutoff: their upper bound, the
# literal after TO in pg_get_expr(relpartbound), is at or before it.
log "[$(elapsed)] retention: partitions older than 12 months ..."
sql -F ' ' -c "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = '$PART'::regclass
      AND substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
          <= now() - interval '12 months'
    ORDER BY 1" >"$WORK/old_parts.txt"
N_OLD=$(wc -l <"$WORK/old_parts.txt")
OLD_LIST=$(paste -sd, "$WORK/old_parts.txt")
DROP_ROWS=0
if [ "$N_OLD" -gt 0 ]; then
    DROP_ROWS=$(sql -c "SELECT $(sed 's/.*/(SELECT count(*) FROM &)/' "$WORK/old_parts.txt" |
        paste -sd+)")
fi
log "[$(elapsed)] retention on $PLAIN: DELETE ..."
t0=$(now_ms)
# Without -q, so that psql prints the command tag, "DELETE <rows>".
DELETE_OUT=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench -XAt -v ON_ERROR_STOP=1 -c "DELETE FROM $PLAIN WHERE created_at < now() - interval '12 months'")
t1=$(now_ms)
log "[$(elapsed)] retention on $PLAIN: VACUUM ..."
sql -c "VACUUM $PLAIN"
t2=$(now_ms)
DELETE_ROWS=${DELETE_OUT#DELETE }
DELETE_MS=$((t1 - t0)) VACUUM_MS=$((t2 - t1))
log "[$(elapsed)] retention on $PART: DROP TABLE of $N_OLD partitions ..."
t0=$(now_ms)
[ "$N_OLD" -eq 0 ] || sql -c "DROP TABLE $OLD_LIST"
t1=$(now_ms)
DROP_MS=$((t1 - t0))
TABLE+=("| retention: remove the rows older than 12 months | ms | $((DELETE_MS + VACUUM_MS)) (DELETE $DELETE_MS + VACUUM $VACUUM_MS) | $DROP_MS (DROP TABLE) | $(ratio "$((DELETE_MS + VACUUM_MS))" "$DROP_MS") |")
log "[$(elapsed)] done"

TURBO_VERSION=unknown
if [ -x "$PGTURBO" ]; then
    TURBO_VERSION=$(timeout 5 "$PGTURBO" version 2>/dev/null | head -n 1) || true
    [ -n "$TURBO_VERSION" ] || TURBO_VERSION=unknown
fi
PG_VERSION=$(sql -c 'SHOW server_version')
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

echo "# Last 30 days: a plain table vs monthly partitions"
echo
echo "Command: \`$0 --rows $ROWS ${ARGS[*]}\`"
echo
echo "- Machine: $(nproc) CPUs ($CPU_MODEL), $(uname -sr); PostgreSQL $PG_VERSION (default" \
    "settings of tests/harness/cluster.sh: shared_buffers 128MB, fsync off); pgturbo: $TURBO_VERSION"
echo "- $ROWS rows over the 24 months up to now, $RECENT of them in the last 30 days." \
    "Plain: $PLAIN, PRIMARY KEY (id) and an index on (created_at), $PLAIN_SIZE with indexes." \
    "Partitioned: $PART, $N_PARTS monthly partitions made by $PARTITION_HOW, PRIMARY KEY" \
    "(id, created_at) and an index on (created_at), $PART_SIZE with indexes."
echo "- Each query cell: \`pgbench -n -f Qn.sql -c $CLIENTS -j $JOBS -T $DURATION bench\`," \
    "after one warm-up run; in brackets pgbench's average latency."
echo "- Ratio: partitioned / plain. For tps above 1.00x partitioning is faster; for the" \
    "retention job's milliseconds below 1.00x is."
echo
echo "| query | unit | plain | partitioned | partitioned/plain |"
echo "|---|---|---:|---:|---:|"
printf '%s\n' "${TABLE[@]}"
echo
echo "Retention: the DELETE removed $DELETE_ROWS rows (created_at < now() - 12 months); the" \
    "DROP TABLE of the $N_OLD partitions wholly before that removed $DROP_ROWS rows (the" \
    "month that holds the cutoff stays until it is wholly older)."
echo
echo "EXPLAIN (costs off) of Q1 on $PART:"
echo
echo '```'
cat "$WORK/explain.txt"
echo '```'
echo
echo "partitions scanned: $SCANNED of $N_PARTS ($SCANNED_EMPTY of them empty: the partitions made" \
    "ahead of time, which a condition with no upper bound on created_at cannot prune)"
