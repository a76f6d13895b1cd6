/*
 * report.c
 *    pgturbo report: the catalog checks, each a small function that runs its queries, adds
 *    its section to the document and its recommendations; see report.h.
 *
 * Design notes. Every check reads the catalog through queries whose only parameters are
 * numbers and object ids, so no user-chosen name is ever spliced into SQL that runs; names
 * appear only in the SQL of the recommendations' actions, quoted with PQescapeIdentifier.
 * The one exception is the schema of the pgstattuple extension, which is quoted the same way.
 * Rules (what is a duplicate, how much bloat, when a table needs VACUUM) live in health.c as
 * pure functions; this file only gathers their inputs and words the findings.
 */
#include "report.h"

#include "health.h"
#include "report_bloat.h"
#include "report_indexes.h"
#include "reportctx.h"
#include "jsontext.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void report_options_init(report_options_t *opt)
{
    opt->top = 10;
    opt->long_query_s = 60;
    opt->idle_in_xact_s = 60;
    opt->min_relation_bytes = 1024.0 * 1024.0;
    opt->replica_lag_s = 30;
    opt->exact_bloat_limit = 20;
    opt->daemon = NULL;
}

/* ---- database ---- */

static void check_database(report_ctx_t *c)
{
    PGresult *r = rctx_run0(
        c, "database", NULL,
        "SELECT current_database() AS name, current_setting('server_version') AS version,"
        " pg_database_size(current_database()) AS size_bytes,"
        " (SELECT to_char((stats_reset) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " FROM pg_stat_database   WHERE datname = current_database()) AS stats_reset,"
        " pg_is_in_recovery() AS in_recovery, current_setting('block_size')::int AS block_size,"
        " current_setting('track_commit_timestamp')::bool AS track_commit_timestamp,"
        " current_setting('autovacuum')::bool AS autovacuum,"
        " to_char((now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS generated_at");
    if (r == NULL) {
        rctx_fail(c, "database: cannot read the database's size and settings");
        return;
    }
    json_t *d = json_object();
    rctx_put_text(d, r, 0, "name");
    char server[600];
    snprintf(server, sizeof(server), "%s:%s", PQhost(c->conn) ? PQhost(c->conn) : "",
             PQport(c->conn) ? PQport(c->conn) : "");
    json_object_set_new(d, "server", jsontext_string(server));
    rctx_put_text(d, r, 0, "version");
    rctx_put_int(d, r, 0, "size_bytes");
    rctx_put_text(d, r, 0, "stats_reset");
    json_object_set_new(d, "in_recovery", json_boolean(rctx_flag(r, 0, "in_recovery")));
    json_object_set_new(d, "autovacuum", json_boolean(rctx_flag(r, 0, "autovacuum")));
    json_object_set_new(c->doc, "generated_at", rctx_jstr(rctx_val(r, 0, "generated_at")));
    json_object_set_new(c->doc, "database", d);
    c->block_size = (int)rctx_num(r, 0, "block_size");
    c->track_commit_ts = rctx_flag(r, 0, "track_commit_timestamp");
    c->autovacuum = rctx_flag(r, 0, "autovacuum");
    snprintf(c->stats_reset, sizeof(c->stats_reset), "%s",
             rctx_has(r, 0, "stats_reset") ? rctx_val(r, 0, "stats_reset") : "");
    PQclear(r);
    if (!c->autovacuum)
        rctx_recommend(
            c, HEALTH_WARNING, "maintenance", "autovacuum_off", NULL,
            "autovacuum is off: dead rows pile up and statistics go stale in every table",
            "ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();");
}

/* ---- tables ---- */

static void check_tables(report_ctx_t *c)
{
    char top[16];
    snprintf(top, sizeof(top), "%d", c->opt->top);
    const char *params[] = {top};
    PGresult *r = rctx_run(
        c, "tables", NULL,
        "SELECT n.nspname AS schema, c.relname AS table,"
        " pg_total_relation_size(c.oid) AS total_bytes,"
        " pg_relation_size(c.oid) AS table_bytes, pg_indexes_size(c.oid) AS index_bytes,"
        " coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast_bytes, CASE"
        " WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE s.n_live_tup END AS rows"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT"
        " JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relkind IN ('r', 'm')"
        " AND (n.nspname !~ '^pg_' AND n.nspname <> 'information_schema')"
        " ORDER BY total_bytes DESC, 1, 2 LIMIT $1::int",
        1, params);
    json_t *largest = json_array();
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        json_t *t = json_object();
        rctx_put_text(t, r, i, "schema");
        rctx_put_text(t, r, i, "table");
        rctx_put_int(t, r, i, "total_bytes");
        rctx_put_int(t, r, i, "table_bytes");
        rctx_put_int(t, r, i, "index_bytes");
        rctx_put_int(t, r, i, "toast_bytes");
        rctx_put_int(t, r, i, "rows");
        json_array_append_new(largest, t);
    }
    PQclear(r);
    json_t *tables = json_object();
    json_object_set_new(tables, "largest", largest);

    r = rctx_run0(
        c, "tables", NULL,
        "SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'm')) AS count,"
        " coalesce(sum(pg_table_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')), 0)  AS "
        "table_bytes,"
        " coalesce(sum(pg_relation_size(c.oid)) FILTER (WHERE c.relkind = 'i'), 0)  AS index_bytes"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'm', 'i') AND (n.nspname !~ '^pg_'"
        " AND n.nspname <> 'information_schema')");
    if (r != NULL) {
        rctx_put_int(tables, r, 0, "count");
        rctx_put_int(tables, r, 0, "table_bytes");
        rctx_put_int(tables, r, 0, "index_bytes");
        c->in.index_bytes = rctx_num(r, 0, "index_bytes");
        c->in.relation_bytes = rctx_num(r, 0, "table_bytes") + c->in.index_bytes;
    }
    PQclear(r);
    json_object_set_new(c->doc, "tables", tables);
}

/* ---- cache hit ratio ---- */

static json_t *ratio(double hit, double read)
{
    double pct = health_hit_percent(hit, read);
    json_t *o = json_object();
    json_object_set_new(o, "blocks_hit", json_integer((json_int_t)hit));
    json_object_set_new(o, "blocks_read", json_integer((json_int_t)read));
    json_object_set_new(o, "ratio_percent",
                        pct >= 0 ? json_real(round(pct * 100) / 100) : json_null());
    json_object_set_new(o, "assessment", json_string(health_cache_assessment(pct)));
    return o;
}

static void check_cache(report_ctx_t *c)
{
    PGresult *r = rctx_run0(
        c, "cache", NULL,
        "SELECT (SELECT coalesce(sum(heap_blks_hit), 0) FROM pg_statio_user_tables) AS heap_hit,"
        " (SELECT coalesce(sum(heap_blks_read), 0) FROM pg_statio_user_tables) AS heap_read,"
        " (SELECT coalesce(sum(idx_blks_hit), 0) FROM pg_statio_user_indexes) AS idx_hit,"
        " (SELECT coalesce(sum(idx_blks_read), 0) FROM pg_statio_user_indexes) AS idx_read");
    if (r == NULL)
        return;
    double hh = rctx_num(r, 0, "heap_hit"), hr = rctx_num(r, 0, "heap_read");
    double ih = rctx_num(r, 0, "idx_hit"), ir = rctx_num(r, 0, "idx_read");
    PQclear(r);
    json_t *cache = json_object();
    json_object_set_new(cache, "heap", ratio(hh, hr));
    json_object_set_new(cache, "index", ratio(ih, ir));
    json_object_set_new(cache, "overall", ratio(hh + ih, hr + ir));
    json_object_set_new(c->doc, "cache", cache);

    double pct = health_hit_percent(hh + ih, hr + ir);
    if (hh + ih + hr + ir < MIN_CACHE_BLOCKS)
        return; /* too little traffic to judge; the score leaves it out too */
    c->in.cache_hit_percent = pct;
    const char *assessment = health_cache_assessment(pct);
    health_severity_t sev = strcmp(assessment, "poor") == 0   ? HEALTH_CRITICAL
                            : strcmp(assessment, "fair") == 0 ? HEALTH_WARNING
                                                              : HEALTH_SUCCESS;
    if (sev == HEALTH_SUCCESS)
        return;
    char msg[MSG_LEN];
    snprintf(msg, sizeof(msg),
             "Cache hit ratio is %.1f %% (%s; heap %.1f %%, index %.1f %%): reads go to disk", pct,
             assessment, health_hit_percent(hh, hr), health_hit_percent(ih, ir));
    rctx_recommend(c, sev, "cache", "cache_hit_ratio", NULL, msg,
                   "Raise shared_buffers (about 25 % of RAM), add the indexes that turn scans into "
                   "lookups, or add memory; a cold cache after a restart heals by itself");
}

/* ---- VACUUM and ANALYZE ---- */

static void check_maintenance(report_ctx_t *c)
{
    PGresult *r =
        rctx_run0(c, "maintenance", NULL,
                  "SELECT s.schemaname AS schema, s.relname AS table, s.n_live_tup AS live,"
                  " s.n_dead_tup AS dead, s.n_mod_since_analyze AS modified,"
                  " to_char((s.last_vacuum) AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_vacuum,"
                  " to_char((s.last_autovacuum) AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_autovacuum,"
                  " to_char((s.last_analyze) AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_analyze,"
                  " to_char((s.last_autoanalyze) AT TIME ZONE 'UTC', "
                  "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_autoanalyze,"
                  " coalesce((SELECT split_part(o, '=', 2)::bool FROM unnest(c.reloptions) o "
                  "  WHERE o LIKE 'autovacuum_enabled=%'), true) AS autovacuum_enabled"
                  " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                  " ORDER BY s.n_dead_tup DESC, 1, 2");
    json_t *vacuum = json_array(), *analyze = json_array();
    json_t *m = json_object();
    json_object_set_new(m, "vacuum", vacuum);
    json_object_set_new(m, "analyze", analyze);
    json_object_set_new(c->doc, "maintenance", m);
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        double live = rctx_num(r, i, "live"), dead = rctx_num(r, i, "dead");
        bool analyzed = rctx_has(r, i, "last_analyze") || rctx_has(r, i, "last_autoanalyze");
        bool needs_vacuum = health_needs_vacuum(live, dead);
        bool needs_analyze = health_needs_analyze(live, rctx_num(r, i, "modified"), analyzed);
        if (!needs_vacuum && !needs_analyze)
            continue;
        json_t *o = json_object();
        rctx_put_text(o, r, i, "schema");
        rctx_put_text(o, r, i, "table");
        rctx_put_int(o, r, i, "live");
        rctx_put_int(o, r, i, "dead");
        json_object_set_new(o, "dead_percent",
                            rctx_jreal(live + dead > 0 ? dead * 100 / (live + dead) : 0));
        rctx_put_int(o, r, i, "modified");
        rctx_put_text(o, r, i, "last_vacuum");
        rctx_put_text(o, r, i, "last_autovacuum");
        rctx_put_text(o, r, i, "last_analyze");
        rctx_put_text(o, r, i, "last_autoanalyze");
        bool autovac = rctx_flag(r, i, "autovacuum_enabled");
        json_object_set_new(o, "autovacuum_enabled", json_boolean(autovac));
        json_array_append_new(needs_vacuum ? vacuum : analyze, o);

        char q[NAME_LEN], msg[MSG_LEN], action[MSG_LEN], object[NAME_LEN];
        rctx_quoted(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table"), q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", rctx_val(r, i, "schema"),
                 rctx_val(r, i, "table"));
        if (needs_vacuum) {
            const char *last = rctx_has(r, i, "last_autovacuum") ? rctx_val(r, i, "last_autovacuum")
                               : rctx_has(r, i, "last_vacuum")   ? rctx_val(r, i, "last_vacuum")
                                                                 : "never";
            snprintf(msg, sizeof(msg),
                     "Table %s needs VACUUM: %.0f dead rows, %.0f %% of its rows (last "
                     "vacuum: %s)%s",
                     rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table")), dead,
                     dead * 100 / (live + dead), last,
                     autovac ? "" : "; autovacuum is disabled for it");
            if (autovac)
                snprintf(action, sizeof(action), "VACUUM (ANALYZE) %s;", q);
            else
                snprintf(action, sizeof(action),
                         "VACUUM (ANALYZE) %s; ALTER TABLE %s RESET (autovacuum_enabled);", q, q);
            rctx_recommend(c, HEALTH_WARNING, "maintenance", "needs_vacuum", object, msg, action);
            c->in.tables_needing_vacuum++;
        } else {
            snprintf(msg, sizeof(msg),
                     "Table %s needs ANALYZE: %s, so the planner's estimates are off",
                     rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table")),
                     analyzed ? "many rows changed since its statistics were taken"
                              : "it was never analyzed");
            snprintf(action, sizeof(action), "ANALYZE %s;", q);
            rctx_recommend(c, HEALTH_INFO, "maintenance", "needs_analyze", object, msg, action);
            c->in.tables_needing_analyze++;
        }
    }
    PQclear(r);
}

/* ---- connections, sessions, locks ---- */

static void check_connections(report_ctx_t *c)
{
    PGresult *r = rctx_run0(c, "connections", NULL,
                            "SELECT CASE WHEN backend_type IS NULL THEN 'hidden'"
                            "  ELSE coalesce(state, 'unknown') END AS state, count(*) AS n,"
                            " current_setting('max_connections')::int AS max FROM pg_stat_activity"
                            " WHERE backend_type = 'client backend'"
                            /* What other roles' sessions look like to a role without
                             * pg_read_all_stats: no type, no state, but a user and a database. */
                            " OR (backend_type IS NULL AND datname IS NOT NULL"
                            "     AND usesysid IS NOT NULL)"
                            " GROUP BY 1 ORDER BY 2 DESC, 1");
    if (r == NULL)
        return;
    json_t *by_state = json_object();
    double total = 0, hidden = 0;
    double max = PQntuples(r) > 0 ? rctx_num(r, 0, "max") : 0;
    for (int i = 0; i < PQntuples(r); i++) {
        json_object_set_new(by_state, rctx_val(r, i, "state"),
                            json_integer((json_int_t)rctx_num(r, i, "n")));
        total += rctx_num(r, i, "n");
        if (strcmp(rctx_val(r, i, "state"), "hidden") == 0)
            hidden = rctx_num(r, i, "n");
    }
    PQclear(r);
    if (max <= 0) {
        r = rctx_run0(c, "connections", NULL,
                      "SELECT current_setting('max_connections')::int AS max");
        max = r != NULL ? rctx_num(r, 0, "max") : 0;
        PQclear(r);
    }
    double pct = max > 0 ? total * 100 / max : 0;
    json_t *o = json_object();
    json_object_set_new(o, "max_connections", json_integer((json_int_t)max));
    json_object_set_new(o, "total", json_integer((json_int_t)total));
    json_object_set_new(o, "usage_percent", rctx_jreal(pct));
    json_object_set_new(o, "by_state", by_state);
    json_object_set_new(c->doc, "connections", o);
    c->in.connection_percent = pct;
    if (hidden > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "%.0f session%s of other roles show%s no state or query to this role, so "
                 "long-running and idle-in-transaction sessions among them are not seen; grant "
                 "it pg_read_all_stats (or pg_monitor)",
                 hidden, hidden == 1 ? "" : "s", hidden == 1 ? "s" : "");
        rctx_skip(c, "sessions", reason);
    }
    if (pct >= 80) {
        char msg[MSG_LEN];
        snprintf(msg, sizeof(msg), "%.0f of max_connections %.0f in use (%.0f %%)", total, max,
                 pct);
        rctx_recommend(
            c, pct >= 90 ? HEALTH_CRITICAL : HEALTH_WARNING, "connections", "connection_usage",
            NULL, msg,
            "Pool connections (pgturbo serve in transaction mode), close idle ones; raise "
            "max_connections only with memory to spare");
    }
}

static void check_sessions(report_ctx_t *c)
{
    char long_s[32], idle_s[32];
    snprintf(long_s, sizeof(long_s), "%g", c->opt->long_query_s);
    snprintf(idle_s, sizeof(idle_s), "%g", c->opt->idle_in_xact_s);
    const char *params[] = {long_s, idle_s};
    PGresult *r = rctx_run(
        c, "sessions", NULL,
        "SELECT pid, usename AS user, application_name, client_addr::text AS client_addr, state,"
        " extract(epoch FROM now() - query_start)::float8 AS query_s, extract(epoch"
        " FROM now() - state_change)::float8 AS idle_s, extract(epoch"
        " FROM now() - xact_start)::float8 AS xact_s, left(query, 500) AS query,"
        " wait_event_type, wait_event FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND ((state = 'active'"
        " AND now() - query_start >= make_interval(secs => $1::float8))"
        "  OR (state IN ('idle in transaction', 'idle in transaction (aborted)')    "
        "  AND now() - state_change >= make_interval(secs => $2::float8))) ORDER BY query_start,"
        " pid",
        2, params);
    json_t *running = json_array(), *idle = json_array();
    json_t *s = json_object();
    json_object_set_new(s, "long_running", running);
    json_object_set_new(s, "idle_in_transaction", idle);
    json_object_set_new(s, "long_query_threshold_s", rctx_jreal(c->opt->long_query_s));
    json_object_set_new(s, "idle_in_transaction_threshold_s", rctx_jreal(c->opt->idle_in_xact_s));
    json_object_set_new(c->doc, "sessions", s);
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        bool active = strcmp(rctx_val(r, i, "state"), "active") == 0;
        json_t *o = json_object();
        rctx_put_int(o, r, i, "pid");
        rctx_put_text(o, r, i, "user");
        rctx_put_text(o, r, i, "application_name");
        rctx_put_text(o, r, i, "client_addr");
        rctx_put_text(o, r, i, "state");
        rctx_put_real(o, r, i, active ? "query_s" : "idle_s");
        rctx_put_real(o, r, i, "xact_s");
        rctx_put_text(o, r, i, "wait_event_type");
        rctx_put_text(o, r, i, "wait_event");
        rctx_put_text(o, r, i, "query");
        json_array_append_new(active ? running : idle, o);
        c->in.problem_sessions++;

        char msg[MSG_LEN], action[MSG_LEN], object[64];
        const char *pid = rctx_val(r, i, "pid");
        const char *user = rctx_val(r, i, "user") ? rctx_val(r, i, "user") : "?";
        const char *app =
            rctx_val(r, i, "application_name") ? rctx_val(r, i, "application_name") : "";
        snprintf(object, sizeof(object), "pid %s", pid);
        if (active) {
            snprintf(msg, sizeof(msg), "Query of pid %s (user %s%s%s) has run for %.0f s", pid,
                     user, app[0] ? ", application " : "", app, rctx_num(r, i, "query_s"));
            snprintf(action, sizeof(action),
                     "Look at its plan (EXPLAIN); stop it with SELECT pg_cancel_backend(%s); "
                     "and bound queries with statement_timeout",
                     pid);
            rctx_recommend(c, HEALTH_WARNING, "sessions", "long_running_query", object, msg,
                           action);
        } else {
            snprintf(msg, sizeof(msg),
                     "Session pid %s (user %s%s%s) has been idle in a transaction for %.0f s "
                     "(transaction open %.0f s): it holds its locks and keeps VACUUM from "
                     "removing dead rows",
                     pid, user, app[0] ? ", application " : "", app, rctx_num(r, i, "idle_s"),
                     rctx_num(r, i, "xact_s"));
            snprintf(action, sizeof(action),
                     "Commit or roll back promptly in the application; set "
                     "idle_in_transaction_session_timeout; end this one with SELECT "
                     "pg_terminate_backend(%s);",
                     pid);
            rctx_recommend(c, HEALTH_WARNING, "sessions", "idle_in_transaction", object, msg,
                           action);
        }
    }
    PQclear(r);
}

static void check_locks(report_ctx_t *c)
{
    /* pg_blocking_pids gives 0 for a prepared transaction, which has no session. */
    PGresult *r = rctx_run0(
        c, "locks", NULL,
        "SELECT w.pid, w.usename AS user, w.application_name, left(w.query, 500) AS query,"
        " w.wait_event_type, w.wait_event,"
        " extract(epoch FROM now() - (SELECT min(l.waitstart) FROM pg_locks l"
        "   WHERE l.pid = w.pid AND NOT l.granted))::float8 AS waiting_s,"
        " bp.pid AS blocker_pid, b.usename AS blocker_user,"
        " CASE WHEN bp.pid = 0 THEN 'prepared transaction' ELSE b.state END AS blocker_state,"
        " left(b.query, 500) AS blocker_query,"
        " extract(epoch FROM now() - b.xact_start)::float8 AS blocker_xact_s"
        " FROM pg_stat_activity w"
        " CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)"
        " LEFT JOIN pg_stat_activity b ON b.pid = bp.pid"
        " WHERE w.datname = current_database() AND w.backend_type = 'client backend'"
        " ORDER BY w.pid, bp.pid");
    json_t *waits = json_array();
    json_t *locks = json_object();
    json_object_set_new(locks, "waits", waits);
    json_object_set_new(c->doc, "locks", locks);
    json_t *cur = NULL;
    const char *cur_pid = "";
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        if (strcmp(rctx_val(r, i, "pid"), cur_pid) != 0) {
            cur_pid = rctx_val(r, i, "pid");
            cur = json_object();
            rctx_put_int(cur, r, i, "pid");
            rctx_put_text(cur, r, i, "user");
            rctx_put_text(cur, r, i, "application_name");
            rctx_put_real(cur, r, i, "waiting_s");
            rctx_put_text(cur, r, i, "wait_event_type");
            rctx_put_text(cur, r, i, "wait_event");
            rctx_put_text(cur, r, i, "query");
            json_object_set_new(cur, "blocked_by", json_array());
            json_array_append_new(waits, cur);
            c->in.problem_sessions++;

            char msg[MSG_LEN], action[MSG_LEN], object[64];
            const char *blocker = rctx_val(r, i, "blocker_pid");
            const char *state =
                rctx_val(r, i, "blocker_state") ? rctx_val(r, i, "blocker_state") : "?";
            snprintf(object, sizeof(object), "pid %s", cur_pid);
            snprintf(msg, sizeof(msg),
                     "Session pid %s has waited %.0f s for a lock held by pid %s (%s)%s", cur_pid,
                     rctx_num(r, i, "waiting_s"), blocker, state,
                     i + 1 < PQntuples(r) && strcmp(rctx_val(r, i + 1, "pid"), cur_pid) == 0
                         ? " and others"
                         : "");
            if (strcmp(blocker, "0") == 0)
                snprintf(action, sizeof(action),
                         "COMMIT PREPARED or ROLLBACK PREPARED the transaction holding it (see "
                         "pg_prepared_xacts); set lock_timeout in the waiting application");
            else
                snprintf(action, sizeof(action),
                         "Find why pid %s holds its lock so long (see sessions); end it with "
                         "SELECT pg_terminate_backend(%s); set lock_timeout in the waiting "
                         "application",
                         blocker, blocker);
            rctx_recommend(c, HEALTH_WARNING, "locks", "lock_wait", object, msg, action);
        }
        json_t *b = json_object();
        json_object_set_new(b, "pid",
                            json_integer(strtoll(rctx_val(r, i, "blocker_pid"), NULL, 10)));
        json_object_set_new(b, "user", rctx_jstr(rctx_val(r, i, "blocker_user")));
        json_object_set_new(b, "state", rctx_jstr(rctx_val(r, i, "blocker_state")));
        json_object_set_new(b, "xact_s",
                            rctx_has(r, i, "blocker_xact_s")
                                ? rctx_jreal(rctx_num(r, i, "blocker_xact_s"))
                                : json_null());
        json_object_set_new(b, "query", rctx_jstr(rctx_val(r, i, "blocker_query")));
        json_array_append_new(json_object_get(cur, "blocked_by"), b);
    }
    PQclear(r);
}

/* ---- sequences ---- */

static void check_sequences(report_ctx_t *c)
{
    PGresult *r = rctx_run0(
        c, "sequences", NULL,
        "SELECT n.nspname AS schema, c.relname AS sequence, s.seqmin::text AS min,"
        " s.seqmax::text AS max, s.seqincrement::text AS increment,"
        " has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable, CASE"
        " WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE')"
        "  THEN pg_sequence_last_value(c.oid)::text END AS last_value,"
        " col.schema AS column_schema, col.table AS column_table, col.name AS column_name,"
        " col.type AS column_type, col.max AS column_max FROM pg_sequence s"
        " JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT"
        " JOIN LATERAL (SELECT tn.nspname AS schema, t.relname AS table, a.attname AS name,   "
        "format_type(a.atttypid, NULL) AS type, "
        "  CASE a.atttypid WHEN 'int2'::regtype THEN 32767    WHEN 'int4'::regtype THEN 2147483647"
        " END AS max   FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid "
        "  JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
        "  AND d.refobjsubid > 0 LIMIT 1) col ON true WHERE (n.nspname !~ '^pg_'"
        " AND n.nspname <> 'information_schema') ORDER BY 1, 2");
    json_t *list = json_array();
    json_object_set_new(c->doc, "sequences", list);
    int unreadable = 0;
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        if (!rctx_flag(r, i, "readable")) {
            unreadable++;
            continue;
        }
        long double last =
            rctx_has(r, i, "last_value") ? strtold(rctx_val(r, i, "last_value"), NULL) : 0;
        double pct = health_sequence_used_percent(
            last, rctx_has(r, i, "last_value"), strtold(rctx_val(r, i, "min"), NULL),
            strtold(rctx_val(r, i, "max"), NULL), strtold(rctx_val(r, i, "increment"), NULL),
            rctx_has(r, i, "column_max") ? strtold(rctx_val(r, i, "column_max"), NULL) : 0);
        if (pct < 50)
            continue;
        json_t *o = json_object();
        rctx_put_text(o, r, i, "schema");
        rctx_put_text(o, r, i, "sequence");
        json_object_set_new(o, "used_percent", json_real(round(pct * 100) / 100));
        rctx_put_text(o, r, i, "last_value");
        rctx_put_text(o, r, i, "max");
        rctx_put_text(o, r, i, "column_table");
        rctx_put_text(o, r, i, "column_name");
        rctx_put_text(o, r, i, "column_type");
        json_array_append_new(list, o);
        if (pct < 75)
            continue;
        bool critical = pct >= 90;
        if (critical)
            c->in.sequences_critical++;
        else
            c->in.sequences_warning++;
        char q[NAME_LEN], msg[MSG_LEN], action[MSG_LEN], object[NAME_LEN];
        rctx_quoted(c, rctx_val(r, i, "schema"), rctx_val(r, i, "sequence"), q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", rctx_val(r, i, "schema"),
                 rctx_val(r, i, "sequence"));
        if (rctx_has(r, i, "column_name")) {
            char t[NAME_LEN], col[NAME_LEN];
            rctx_quoted(c, rctx_val(r, i, "column_schema"), rctx_val(r, i, "column_table"), t,
                        sizeof(t));
            rctx_quoted1(c, rctx_val(r, i, "column_name"), col, sizeof(col));
            snprintf(msg, sizeof(msg),
                     "Sequence %s is %.1f %% used (%s of %s, for column %s of %s, type %s): "
                     "inserts fail when it runs out",
                     rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "sequence")), pct,
                     rctx_val(r, i, "last_value"),
                     rctx_has(r, i, "column_max") ? rctx_val(r, i, "column_max")
                                                  : rctx_val(r, i, "max"),
                     rctx_shown(c, NULL, rctx_val(r, i, "column_name")),
                     rctx_shown(c, rctx_val(r, i, "column_schema"), rctx_val(r, i, "column_table")),
                     rctx_val(r, i, "column_type"));
            snprintf(action, sizeof(action),
                     "ALTER TABLE %s ALTER COLUMN %s TYPE bigint; ALTER SEQUENCE %s AS bigint; "
                     "(rewrites the table: plan a window)",
                     t, col, q);
        } else {
            snprintf(msg, sizeof(msg),
                     "Sequence %s is %.1f %% used (%s of %s): nextval fails when it runs out",
                     rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "sequence")), pct,
                     rctx_val(r, i, "last_value"), rctx_val(r, i, "max"));
            snprintf(action, sizeof(action),
                     "ALTER SEQUENCE %s AS bigint MAXVALUE "
                     "9223372036854775807;",
                     q);
        }
        rctx_recommend(c, critical ? HEALTH_CRITICAL : HEALTH_WARNING, "sequences",
                       "sequence_exhaustion", object, msg, action);
    }
    PQclear(r);
    if (unreadable > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "%d sequence%s this role may not read (needs SELECT or USAGE on them)", unreadable,
                 unreadable == 1 ? "" : "s");
        rctx_skip(c, "sequences", reason);
    }
}

/* ---- replication ---- */

static void check_replication(report_ctx_t *c)
{
    PGresult *r = rctx_run0(
        c, "replication", NULL,
        "SELECT application_name, client_addr::text AS client_addr, state, sync_state,"
        " extract(epoch FROM write_lag)::float8 AS write_lag_s, extract(epoch"
        " FROM flush_lag)::float8 AS flush_lag_s, extract(epoch"
        " FROM replay_lag)::float8 AS replay_lag_s, CASE WHEN pg_is_in_recovery() THEN NULL"
        "  ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END AS lag_bytes"
        " FROM pg_stat_replication ORDER BY 1, 2");
    json_t *replicas = json_array();
    json_t *o = json_object();
    json_object_set_new(o, "replicas", replicas);
    json_object_set_new(c->doc, "replication", o);
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        json_t *x = json_object();
        rctx_put_text(x, r, i, "application_name");
        rctx_put_text(x, r, i, "client_addr");
        rctx_put_text(x, r, i, "state");
        rctx_put_text(x, r, i, "sync_state");
        rctx_put_real(x, r, i, "write_lag_s");
        rctx_put_real(x, r, i, "flush_lag_s");
        rctx_put_real(x, r, i, "replay_lag_s");
        rctx_put_int(x, r, i, "lag_bytes");
        json_array_append_new(replicas, x);
        double lag = rctx_num(r, i, "replay_lag_s");
        if (lag < c->opt->replica_lag_s)
            continue;
        c->in.lagging_replicas++;
        char msg[MSG_LEN], object[NAME_LEN];
        const char *name =
            rctx_val(r, i, "application_name") ? rctx_val(r, i, "application_name") : "";
        snprintf(object, sizeof(object), "%s", name);
        snprintf(msg, sizeof(msg), "Replica %s (%s) replays %.0f s behind", name,
                 rctx_val(r, i, "client_addr") ? rctx_val(r, i, "client_addr") : "local", lag);
        rctx_recommend(
            c, lag >= 10 * c->opt->replica_lag_s ? HEALTH_CRITICAL : HEALTH_WARNING, "replication",
            "replica_lag", object, msg,
            "Check the replica's I/O and CPU and the network; long queries on the replica "
            "with hot_standby_feedback or max_standby_streaming_delay hold replay back");
    }
    PQclear(r);
    r = rctx_run0(c, "replication", NULL,
                  "SELECT pg_is_in_recovery() AS in_recovery, extract(epoch"
                  " FROM now() - pg_last_xact_replay_timestamp())::float8  AS replay_delay_s");
    if (r != NULL) {
        bool replica = rctx_flag(r, 0, "in_recovery");
        json_object_set_new(o, "role", json_string(replica ? "replica" : "primary"));
        if (replica)
            rctx_put_real(o, r, 0, "replay_delay_s");
    }
    PQclear(r);
}

/* ---- the daemon's figures ---- */

static void check_daemon(report_ctx_t *c)
{
    const json_t *d = c->opt->daemon;
    if (d == NULL) {
        json_object_set_new(c->doc, "daemon", json_null());
        return;
    }
    json_object_set_new(c->doc, "daemon", json_deep_copy(d));
    json_t *queries = json_object_get(d, "queries");
    json_int_t total = json_integer_value(json_object_get(queries, "total"));
    json_int_t slow = json_integer_value(json_object_get(queries, "slow"));
    if (total > 0) {
        c->in.slow_query_ratio = (double)slow / (double)total;
        double pct = c->in.slow_query_ratio * 100;
        if (pct >= 1) {
            char msg[MSG_LEN];
            snprintf(msg, sizeof(msg), "%.1f %% of queries are slow (%lld of %lld)", pct,
                     (long long)slow, (long long)total);
            rctx_recommend(c, pct >= 5 ? HEALTH_CRITICAL : HEALTH_WARNING, "queries",
                           "slow_queries", NULL, msg,
                           "See the slow log (GET /api/v1/slow) and pgturbo advise");
        }
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(d, "pools"), i, p)
    {
        json_int_t waiting = json_integer_value(json_object_get(p, "cl_waiting"));
        if (waiting <= 0)
            continue;
        char msg[MSG_LEN], object[NAME_LEN];
        const char *db = json_string_value(json_object_get(p, "database"));
        const char *user = json_string_value(json_object_get(p, "user"));
        snprintf(object, sizeof(object), "%s/%s", db ? db : "", user ? user : "");
        snprintf(msg, sizeof(msg),
                 "Pool %s has %lld client%s waiting for a server connection (longest %.0f ms)",
                 object, (long long)waiting, waiting == 1 ? "" : "s",
                 (double)json_integer_value(json_object_get(p, "maxwait_us")) / 1000);
        rctx_recommend(c, HEALTH_WARNING, "pool", "pool_waiting", object, msg,
                       "Raise pool_size if PostgreSQL has room, or shorten transactions");
    }
}

/* ---- score and recommendations ---- */

static void finish(report_ctx_t *c)
{
    health_score_t s;
    health_score(&c->in, &s);
    json_object_set_new(c->doc, "score", json_integer(s.score));
    json_t *breakdown = json_array();
    for (int i = 0; i < HEALTH_FACTORS; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "factor", json_string(s.penalties[i].factor));
        json_object_set_new(o, "penalty", rctx_jreal(s.penalties[i].penalty));
        json_object_set_new(o, "max", rctx_jreal(s.penalties[i].max));
        json_array_append_new(breakdown, o);
    }
    json_object_set_new(c->doc, "score_breakdown", breakdown);

    rctx_recommend_remainders(c);
    if (json_array_size(c->recs[HEALTH_CRITICAL]) + json_array_size(c->recs[HEALTH_WARNING]) == 0)
        rctx_recommend(c, HEALTH_SUCCESS, "general", "all_good", NULL, "All metrics look good!",
                       "Continue monitoring");
    json_t *all = json_array();
    for (int sev = HEALTH_CRITICAL; sev >= HEALTH_SUCCESS; sev--)
        json_array_extend(all, c->recs[sev]);
    json_object_set_new(c->doc, "recommendations", all);
    json_object_set(c->doc, "skipped", c->skipped);
}

json_t *report_build(PGconn *conn, const report_options_t *opt, char *err, size_t errlen)
{
    report_ctx_t c = {.conn = conn, .opt = opt, .err = err, .errlen = errlen};
    c.in = (health_inputs_t){
        .cache_hit_percent = -1, .connection_percent = -1, .slow_query_ratio = -1};
    json_t *result = NULL;
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "not connected");
        return NULL;
    }
    int version = PQserverVersion(conn);
    if (version < 140000) {
        snprintf(err, errlen, "PostgreSQL 14 or later is needed; this server is %d.%d",
                 version / 10000, version % 10000);
        return NULL;
    }
    c.doc = json_object();
    c.skipped = json_array();
    for (int i = 0; i <= HEALTH_CRITICAL; i++)
        c.recs[i] = json_array();
    if (PQsetClientEncoding(conn, "UTF8") != 0) {
        rctx_fail(&c, "cannot set client_encoding: %s", PQerrorMessage(conn));
        goto done;
    }
    /* A report waits for no lock and no query long; the extended protocol takes one
     * statement at a time. */
    PQclear(rctx_run0(&c, "settings", NULL, "SET statement_timeout = '" STATEMENT_TIMEOUT "'"));
    PQclear(rctx_run0(&c, "settings", NULL, "SET lock_timeout = '5s'"));
    PQclear(rctx_run0(&c, "settings", NULL, "SET idle_in_transaction_session_timeout = 0"));
    if (c.failed)
        goto done;

    check_database(&c);
    check_tables(&c);
    check_cache(&c);
    report_check_indexes(&c);
    report_check_foreign_keys(&c);
    report_check_bloat(&c);
    check_maintenance(&c);
    check_connections(&c);
    check_sessions(&c);
    check_locks(&c);
    check_sequences(&c);
    check_replication(&c);
    check_daemon(&c);
    if (c.failed)
        goto done;
    finish(&c);
    result = c.doc;
    c.doc = NULL;
done:
    json_decref(c.doc);
    json_decref(c.skipped);
    for (int i = 0; i <= HEALTH_CRITICAL; i++)
        json_decref(c.recs[i]);
    for (int i = 0; i < c.n_dropped; i++)
        free(c.dropped[i]);
    free(c.dropped);
    return result;
}
