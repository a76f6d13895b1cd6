/*
 * test_report.c
 *    pgturbo report against a database seeded with known problems: tables from the seed
 *    reports (users, projects, activity_logs with 50,000 rows, audit_logs), a duplicate
 *    index, a redundant prefix index, a large unused index, an invalid index, foreign keys
 *    without an index (one on a large table, one on a small table in a schema and table whose
 *    names need quotes, with a column named by a reserved word), a bloated table whose
 *    autovacuum is off, a sequence near its end, an idle-in-transaction session holding a
 *    row lock and a session waiting for it, and a table named "<script>x". The report runs
 *    once (--json) in the group setup, and each test checks one finding and its severity;
 *    other tests run it again for HTML, text, missing privileges, pgstattuple, an empty
 *    database and bad input.
 *
 *    The databases pgturbo_report and pgturbo_report_empty and the role
 *    pgturbo_report_plain belong to this file, so it may run in parallel with the others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "report.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DB       "pgturbo_report"
#define EMPTY_DB "pgturbo_report_empty"
#define PLAIN    "pgturbo_report_plain"

static json_t *doc;     /* the report of the group setup */
static int idle_pid;    /* the idle-in-transaction session */
static int waiting_pid; /* the session waiting for its row lock */
static char dir[64];    /* temp directory for outputs */
static char out[65536]; /* output of the last command */

/* ---- running pgturbo report ---- */

static void conninfo(const char *dbname, const char *user, char *buf, size_t len)
{
    snprintf(buf, len, "host=127.0.0.1 port=%d dbname=%s user=%s", harness_pg_port(), dbname, user);
}

/* Runs pgturbo report with args and the connection string of dbname/user; returns its exit
 * code, its output (stdout and stderr) in out. */
static int report(const char *args, const char *dbname, const char *user)
{
    char cmd[1024], ci[256];
    conninfo(dbname, user, ci, sizeof(ci));
    snprintf(cmd, sizeof(cmd), "%s report %s '%s'", PGTURBO_BIN, args, ci);
    return harness_shell(cmd, out, sizeof(out));
}

/* Runs pgturbo report --json into a file and returns the parsed document. */
static json_t *report_json(const char *args, const char *dbname, const char *user)
{
    char path[128], all[512];
    snprintf(path, sizeof(path), "%s/report.json", dir);
    snprintf(all, sizeof(all), "--json --output %s %s", path, args);
    int rc = report(all, dbname, user);
    if (rc != 0)
        fail_msg("pgturbo report exited with %d:\n%s", rc, out);
    json_error_t e;
    json_t *d = json_load_file(path, 0, &e);
    if (d == NULL)
        fail_msg("report is not JSON: %s (line %d)", e.text, e.line);
    unlink(path);
    return d;
}

/* The first recommendation of check whose object is object (NULL: any). */
static const json_t *find_rec(const json_t *d, const char *check, const char *object)
{
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(d, "recommendations"), i, r)
    {
        const char *o = json_string_value(json_object_get(r, "object"));
        if (strcmp(json_string_value(json_object_get(r, "check")), check) == 0 &&
            (object == NULL || (o != NULL && strcmp(o, object) == 0)))
            return r;
    }
    return NULL;
}

static const char *field(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL ? v : "";
}

/* Asserts that check found object with severity; returns the recommendation. */
static const json_t *expect_rec(const char *check, const char *object, const char *severity)
{
    const json_t *r = find_rec(doc, check, object);
    if (r == NULL) {
        char *text = json_dumps(json_object_get(doc, "recommendations"), JSON_INDENT(1));
        fail_msg("no %s recommendation for %s in:\n%s", check, object ? object : "(any)", text);
    }
    assert_string_equal(field(r, "severity"), severity);
    assert_true(strlen(field(r, "message")) > 0);
    assert_true(strlen(field(r, "action")) > 0);
    return r;
}

/* The first row of list whose key equals value. */
static const json_t *row_with(const json_t *list, const char *key, const char *value)
{
    size_t i;
    const json_t *x;
    json_array_foreach(list, i, x) if (strcmp(field(x, key), value) == 0) return x;
    return NULL;
}

/* ---- the seeded database ---- */

static const char *const SCHEMA[] = {
    "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, full_name text,"
    " is_active boolean NOT NULL DEFAULT true, created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE projects (id bigserial PRIMARY KEY, owner_id bigint NOT NULL REFERENCES users,"
    " name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX idx_projects_owner_created ON projects (owner_id, created_at)",
    "CREATE TABLE activity_logs (id bigserial PRIMARY KEY, user_id bigint REFERENCES users,"
    " project_id bigint REFERENCES projects, category text NOT NULL, action text NOT NULL,"
    " level text NOT NULL DEFAULT 'info', message text,"
    " created_at timestamptz NOT NULL DEFAULT now())",
    /* Bloat is seeded here: autovacuum must not clean it up before the report. */
    "CREATE TABLE audit_logs (id bigserial PRIMARY KEY, actor text NOT NULL, event text NOT NULL,"
    " payload text, created_at timestamptz NOT NULL DEFAULT now())"
    " WITH (autovacuum_enabled = off)",
    "CREATE SCHEMA \"My Schema\"",
    "CREATE TABLE \"My Schema\".\"Order Items\" (id serial PRIMARY KEY,"
    " \"user\" bigint REFERENCES users, \"select\" int)",
    "CREATE TABLE \"<script>x\" (id int)",
    "CREATE SEQUENCE nearly_done AS smallint",
    "SELECT setval('nearly_done', 32000)",
    "INSERT INTO users (email, full_name) SELECT 'u' || g || '@example.com', 'User ' || g"
    " FROM generate_series(1, 1000) g",
    "INSERT INTO projects (owner_id, name) SELECT 1 + g % 1000, 'p' || g"
    " FROM generate_series(1, 2000) g",
    "INSERT INTO activity_logs (user_id, project_id, category, action, message, created_at)"
    " SELECT 1 + g % 1000, 1 + g % 2000, 'cat' || g % 10, 'act' || g % 20,"
    " 'message number ' || g, now() - g * interval '1 minute' FROM generate_series(1, 50000) g",
    "INSERT INTO audit_logs (actor, event, payload) SELECT 'actor' || g % 100, 'login',"
    " repeat('x', 100) FROM generate_series(1, 50000) g",
    "INSERT INTO \"My Schema\".\"Order Items\" (\"user\", \"select\")"
    " SELECT 1 + g % 1000, g FROM generate_series(1, 100) g",
    "INSERT INTO \"<script>x\" VALUES (1)",
    /* Used by the workload. */
    "CREATE INDEX idx_activity_logs_user_created ON activity_logs (user_id, created_at)",
    /* A prefix of the one above. */
    "CREATE INDEX idx_activity_logs_user ON activity_logs (user_id)",
    /* Twins. */
    "CREATE INDEX idx_activity_logs_category_action ON activity_logs (category, action)",
    "CREATE INDEX idx_activity_logs_category_action_dup ON activity_logs (category, action)",
    /* Large (about 2 MB) and never used. */
    "CREATE INDEX idx_activity_logs_message ON activity_logs (message)",
    "ANALYZE",
    "SELECT pg_stat_reset()",
    /* Nine rows in ten become dead; with autovacuum off they stay. */
    "DELETE FROM audit_logs WHERE id % 10 <> 0",
};

static void seed(void)
{
    harness_create_database(DB);
    PGconn *c = harness_connect_direct(DB);
    harness_silence_notices(c);
    for (size_t i = 0; i < sizeof(SCHEMA) / sizeof(SCHEMA[0]); i++)
        harness_exec_ok(c, SCHEMA[i]);
    /* A unique index over duplicate values fails and stays behind, invalid. */
    assert_string_equal(harness_exec_error(c,
                                           "CREATE UNIQUE INDEX CONCURRENTLY idx_audit_logs_actor"
                                           " ON audit_logs (actor)"),
                        "23505");
    PQfinish(c);

    /* A new session: ANALYZE sees the deletes (the planner's row count drops, the pages stay),
     * and a workload uses idx_activity_logs_user_created and the primary keys. */
    c = harness_connect_direct(DB);
    harness_exec_ok(c, "ANALYZE audit_logs");
    for (int i = 1; i <= 20; i++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM activity_logs WHERE user_id = %d"
                 " AND created_at > now() - interval '1 day'",
                 i);
        free(harness_query_value(c, sql));
        snprintf(sql, sizeof(sql), "SELECT email FROM users WHERE id = %d", i);
        free(harness_query_value(c, sql));
    }
    free(harness_query_value(c, "SELECT pg_stat_force_next_flush()"));
    free(harness_query_value(c, "SELECT 1"));
    PQfinish(c);
}

static int group_setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/pgturbo-report.XXXXXX");
    assert_non_null(mkdtemp(dir));
    seed();

    /* One session stays idle in its transaction holding a row lock, another waits for it. */
    PGconn *idle = harness_connect_direct(DB);
    harness_exec_ok(idle, "BEGIN");
    harness_exec_ok(idle, "UPDATE users SET full_name = 'held' WHERE id = 1");
    idle_pid = PQbackendPID(idle);
    PGconn *waiting = harness_connect_direct(DB);
    waiting_pid = PQbackendPID(waiting);
    assert_int_equal(PQsendQuery(waiting, "UPDATE users SET full_name = 'waits' WHERE id = 1"), 1);
    harness_sleep_ms(1500);

    doc = report_json("--idle-seconds 1 --long-query-seconds 1", DB, "postgres");

    harness_exec_ok(idle, "ROLLBACK");
    PGresult *res;
    while ((res = PQgetResult(waiting)) != NULL) {
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    }
    PQfinish(waiting);
    PQfinish(idle);
    return 0;
}

static int group_teardown(void **state)
{
    json_decref(doc);
    harness_drop_database(DB);
    harness_drop_database(EMPTY_DB);
    PGconn *c = harness_connect_direct("postgres");
    harness_silence_notices(c);
    harness_exec_ok(c, "DROP ROLE IF EXISTS " PLAIN);
    PQfinish(c);
    rmdir(dir);
    return 0;
}

/* ---- findings ---- */

static void duplicate_index_is_a_warning(void **state)
{
    const json_t *r =
        expect_rec("duplicate_index", "public.idx_activity_logs_category_action_dup", "warning");
    assert_string_equal(field(r, "category"), "indexes");
    assert_string_equal(
        field(r, "action"),
        "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"idx_activity_logs_category_action_dup\";");
    const json_t *d = row_with(json_object_get(json_object_get(doc, "indexes"), "duplicate"),
                               "index", "idx_activity_logs_category_action_dup");
    assert_non_null(d);
    assert_string_equal(field(d, "duplicate_of"), "idx_activity_logs_category_action");
    /* The kept twin is not reported as a duplicate itself. */
    assert_null(find_rec(doc, "duplicate_index", "public.idx_activity_logs_category_action"));
}

static void redundant_prefix_index_is_info(void **state)
{
    expect_rec("redundant_index", "public.idx_activity_logs_user", "info");
    const json_t *d = row_with(json_object_get(json_object_get(doc, "indexes"), "redundant"),
                               "index", "idx_activity_logs_user");
    assert_non_null(d);
    assert_string_equal(field(d, "covered_by"), "idx_activity_logs_user_created");
}

static void unused_large_index_is_a_warning_and_used_ones_are_not_listed(void **state)
{
    const json_t *r = expect_rec("unused_index", "public.idx_activity_logs_message", "warning");
    assert_non_null(strstr(field(r, "message"), "has not been used since"));
    const json_t *unused = json_object_get(json_object_get(doc, "indexes"), "unused");
    /* Largest first. */
    assert_string_equal(field(json_array_get(unused, 0), "index"), "idx_activity_logs_message");
    assert_null(row_with(unused, "index", "users_pkey"));      /* a constraint */
    assert_null(row_with(unused, "index", "users_email_key")); /* unique */
    /* Reported as a duplicate or redundant already, not again as unused. */
    assert_null(row_with(unused, "index", "idx_activity_logs_category_action_dup"));
    assert_null(row_with(unused, "index", "idx_activity_logs_user"));
    /* Small unused ones are info, together. */
    const json_t *small = row_with(unused, "index", "idx_projects_owner_created");
    assert_non_null(small);
    assert_string_equal(field(small, "severity"), "info");
    expect_rec("unused_small_indexes", NULL, "info");
    /* The workload's indexes are the most used, and none of them is unused. */
    const json_t *most = json_object_get(json_object_get(doc, "indexes"), "most_used");
    assert_true(json_array_size(most) > 0);
    size_t i;
    const json_t *x;
    json_array_foreach(most, i, x)
    {
        assert_true(json_integer_value(json_object_get(x, "scans")) > 0);
        assert_null(row_with(unused, "index", field(x, "index")));
    }
}

static void invalid_index_is_a_warning(void **state)
{
    const json_t *r = expect_rec("invalid_index", "public.idx_audit_logs_actor", "warning");
    assert_non_null(strstr(field(r, "action"), "REINDEX INDEX CONCURRENTLY "
                                               "\"public\".\"idx_audit_logs_actor\";"));
}

static void foreign_keys_without_index_by_table_size(void **state)
{
    const json_t *r = expect_rec("foreign_key_without_index", "public.activity_logs", "warning");
    assert_string_equal(
        field(r, "action"),
        "CREATE INDEX CONCURRENTLY ON \"public\".\"activity_logs\" (\"project_id\");");
    /* user_id is served by the leading column of idx_activity_logs_user_created. */
    const json_t *fks = json_object_get(doc, "foreign_keys_without_index");
    assert_null(row_with(fks, "constraint", "activity_logs_user_id_fkey"));
    assert_null(row_with(fks, "constraint", "projects_owner_id_fkey"));

    /* Names that need quotes: a schema and a table with a space and capitals, a reserved
     * word as the column. The action is valid SQL: it runs. */
    r = expect_rec("foreign_key_without_index", "My Schema.Order Items", "info");
    assert_string_equal(field(r, "action"), "CREATE INDEX CONCURRENTLY ON \"My Schema\".\"Order "
                                            "Items\" (\"user\");");
    assert_non_null(strstr(field(r, "message"), "\"My Schema\".\"Order Items\""));
    PGconn *c = harness_connect_direct(DB);
    harness_exec_ok(c, field(r, "action"));
    PQfinish(c);
}

static void bloated_table_needs_vacuum_and_says_autovacuum_is_off(void **state)
{
    const json_t *r = expect_rec("table_bloat", "public.audit_logs", "warning");
    assert_non_null(strstr(field(r, "message"), "(estimated)"));
    const json_t *t =
        row_with(json_object_get(json_object_get(doc, "bloat"), "tables"), "table", "audit_logs");
    assert_non_null(t);
    assert_true(json_number_value(json_object_get(t, "wasted_percent")) >= 80);
    assert_string_equal(field(t, "method"), "estimate");

    r = expect_rec("needs_vacuum", "public.audit_logs", "warning");
    assert_non_null(strstr(field(r, "message"), "autovacuum is disabled for it"));
    assert_string_equal(field(r, "action"),
                        "VACUUM (ANALYZE) \"public\".\"audit_logs\"; ALTER TABLE "
                        "\"public\".\"audit_logs\" RESET (autovacuum_enabled);");
    /* Without pgstattuple the report says how to get measured figures. */
    const json_t *s = row_with(json_object_get(doc, "skipped"), "check", "bloat_exact");
    assert_non_null(s);
    assert_non_null(strstr(field(s, "reason"), "CREATE EXTENSION pgstattuple"));
    /* The unbloated big table is not in the list. */
    assert_null(find_rec(doc, "table_bloat", "public.activity_logs"));
}

static void idle_in_transaction_session_is_a_warning(void **state)
{
    char object[32];
    snprintf(object, sizeof(object), "pid %d", idle_pid);
    const json_t *r = expect_rec("idle_in_transaction", object, "warning");
    assert_string_equal(field(r, "category"), "sessions");
    const json_t *s =
        row_with(json_object_get(json_object_get(doc, "sessions"), "idle_in_transaction"), "state",
                 "idle in transaction");
    assert_non_null(s);
    assert_int_equal(json_integer_value(json_object_get(s, "pid")), idle_pid);
    assert_true(json_number_value(json_object_get(s, "idle_s")) >= 1);
    assert_non_null(strstr(field(s, "query"), "UPDATE users SET full_name = 'held'"));
}

static void lock_wait_names_who_blocks_whom(void **state)
{
    char object[32];
    snprintf(object, sizeof(object), "pid %d", waiting_pid);
    const json_t *r = expect_rec("lock_wait", object, "warning");
    char blocker[64];
    snprintf(blocker, sizeof(blocker), "held by pid %d (idle in transaction)", idle_pid);
    assert_non_null(strstr(field(r, "message"), blocker));
    const json_t *w = json_array_get(json_object_get(json_object_get(doc, "locks"), "waits"), 0);
    assert_int_equal(json_integer_value(json_object_get(w, "pid")), waiting_pid);
    const json_t *b = json_array_get(json_object_get(w, "blocked_by"), 0);
    assert_int_equal(json_integer_value(json_object_get(b, "pid")), idle_pid);
    /* The waiting UPDATE has run for over a second too. */
    expect_rec("long_running_query", object, "warning");
}

static void sequence_near_its_end_is_critical(void **state)
{
    const json_t *r = expect_rec("sequence_exhaustion", "public.nearly_done", "critical");
    assert_non_null(strstr(field(r, "message"), "97.7 % used"));
    /* Critical findings come first. */
    const json_t *first = json_array_get(json_object_get(doc, "recommendations"), 0);
    assert_string_equal(field(first, "severity"), "critical");
}

static void score_is_the_documented_sum_of_penalties(void **state)
{
    json_int_t score = json_integer_value(json_object_get(doc, "score"));
    double sum = 0;
    size_t i;
    const json_t *p;
    json_array_foreach(json_object_get(doc, "score_breakdown"), i, p)
    {
        double penalty = json_number_value(json_object_get(p, "penalty"));
        assert_true(penalty >= 0 && penalty <= json_number_value(json_object_get(p, "max")));
        const char *f = field(p, "factor");
        /* The seeded problems cost points in these factors. */
        if (strcmp(f, "indexes") == 0 || strcmp(f, "bloat") == 0 || strcmp(f, "sessions") == 0 ||
            strcmp(f, "schema") == 0 || strcmp(f, "maintenance") == 0)
            assert_true(penalty > 0);
        if (strcmp(f, "slow_queries") == 0) /* no daemon figures */
            assert_true(penalty == 0);
        sum += penalty;
    }
    assert_int_equal(i, 9);
    double expected = 100 - sum;
    expected = expected < 0 ? 0 : expected;
    /* Penalties are rounded to a tenth each in the document. */
    assert_true(score >= expected - 1 && score <= expected + 1);
    assert_true(score >= 0 && score < 70);
    assert_false(find_rec(doc, "all_good", NULL));
}

static void table_names_are_data_in_json(void **state)
{
    const json_t *largest = json_object_get(json_object_get(doc, "tables"), "largest");
    const json_t *t = row_with(largest, "table", "<script>x");
    assert_non_null(t);
    assert_string_equal(field(t, "schema"), "public");
    assert_string_equal(field(json_array_get(largest, 0), "table"), "activity_logs");
    assert_non_null(row_with(largest, "table", "Order Items"));
}

/* ---- outputs ---- */

static void html_is_one_self_contained_page_with_names_escaped(void **state)
{
    char args[256], path[128];
    snprintf(path, sizeof(path), "%s/report.html", dir);
    snprintf(args, sizeof(args), "--html --output %s", path);
    assert_int_equal(report(args, DB, "postgres"), 0);
    assert_string_equal(out, ""); /* nothing on stdout or stderr */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char html[1 << 20];
    size_t n = fread(html, 1, sizeof(html) - 1, f);
    html[n] = '\0';
    fclose(f);
    unlink(path);
    for (char *p = html; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    assert_non_null(strstr(html, "<!doctype html>"));
    assert_non_null(strstr(html, "<html"));
    assert_non_null(strstr(html, "</html>"));
    assert_null(strstr(html, "<script"));
    assert_non_null(strstr(html, "&lt;script&gt;x"));
    assert_null(strstr(html, "<link"));
    assert_null(strstr(html, "src="));
}

static void text_output_is_the_default(void **state)
{
    assert_int_equal(report("", DB, "postgres"), 0);
    assert_non_null(strstr(out, "pgturbo report of database " DB));
    assert_non_null(strstr(out, "Health score: "));
    assert_non_null(strstr(out, "CRITICAL [sequences]"));
    assert_non_null(strstr(out, "public.<script>x"));
}

/* ---- privileges, extensions, an empty database ---- */

static void missing_privileges_skip_checks_instead_of_failing(void **state)
{
    PGconn *c = harness_connect_direct(DB);
    harness_silence_notices(c);
    harness_exec_ok(c, "CREATE EXTENSION IF NOT EXISTS pgstattuple");
    harness_exec_ok(c, "DROP ROLE IF EXISTS " PLAIN);
    harness_exec_ok(c, "CREATE ROLE " PLAIN " LOGIN");
    /* Column statistics of the tables become readable, so bloat is estimated and
     * pgstattuple (granted to pg_stat_scan_tables only) is tried. */
    harness_exec_ok(c, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO " PLAIN);
    /* This idle session of postgres is one the role may not look into. */
    harness_exec_ok(c, "SELECT 1");

    json_t *d = report_json("", DB, PLAIN);
    const json_t *skipped = json_object_get(d, "skipped");
    const json_t *s = row_with(skipped, "check", "bloat_exact");
    assert_non_null(s);
    assert_non_null(strstr(field(s, "reason"), "permission denied"));
    assert_non_null(strstr(field(s, "reason"), "pg_stat_scan_tables"));
    s = row_with(skipped, "check", "sessions");
    assert_non_null(s);
    assert_non_null(strstr(field(s, "reason"), "pg_read_all_stats"));
    s = row_with(skipped, "check", "sequences");
    assert_non_null(s);
    assert_non_null(strstr(field(s, "reason"), "may not read"));
    /* What the role may see is still reported. */
    assert_string_equal(field(json_object_get(d, "bloat"), "method"), "estimate");
    assert_non_null(find_rec(d, "table_bloat", "public.audit_logs"));
    assert_non_null(find_rec(d, "duplicate_index", NULL));
    json_decref(d);
    PQfinish(c);
}

static void pgstattuple_measures_bloat_when_installed(void **state)
{
    PGconn *c = harness_connect_direct(DB);
    harness_silence_notices(c);
    harness_exec_ok(c, "CREATE EXTENSION IF NOT EXISTS pgstattuple");
    PQfinish(c);
    json_t *d = report_json("", DB, "postgres");
    assert_string_equal(field(json_object_get(d, "bloat"), "method"), "pgstattuple");
    assert_null(row_with(json_object_get(d, "skipped"), "check", "bloat_exact"));
    const json_t *t =
        row_with(json_object_get(json_object_get(d, "bloat"), "tables"), "table", "audit_logs");
    assert_non_null(t);
    assert_string_equal(field(t, "method"), "pgstattuple");
    assert_true(json_number_value(json_object_get(t, "wasted_percent")) >= 80);
    const json_t *r = find_rec(d, "table_bloat", "public.audit_logs");
    assert_non_null(r);
    assert_string_equal(field(r, "severity"), "warning");
    assert_non_null(strstr(field(r, "message"), "measured by pgstattuple"));
    json_decref(d);
}

static void empty_database_reports_nothing_wrong(void **state)
{
    harness_create_database(EMPTY_DB);
    json_t *d = report_json("", EMPTY_DB, "postgres");
    assert_int_equal(json_array_size(json_object_get(json_object_get(d, "tables"), "largest")), 0);
    assert_string_equal(
        field(json_object_get(json_object_get(d, "cache"), "overall"), "assessment"), "no data");
    /* Only the server-wide connection count could be a concern on a busy test cluster. */
    size_t i;
    const json_t *r;
    bool concern = false;
    json_array_foreach(json_object_get(d, "recommendations"), i, r)
    {
        const char *check = field(r, "check");
        if (strcmp(check, "all_good") != 0)
            assert_string_equal(check, "connection_usage");
        concern = concern || strcmp(check, "connection_usage") == 0;
    }
    if (!concern) {
        assert_non_null(find_rec(d, "all_good", NULL));
        assert_int_equal(json_integer_value(json_object_get(d, "score")), 100);
    }
    json_decref(d);
}

/* ---- the daemon's figures (the hook for GET /api/v1/report) ---- */

static void daemon_figures_feed_the_score_and_recommendations(void **state)
{
    json_error_t e;
    json_t *daemon = json_loads(
        "{\"pools\": [{\"database\": \"app\", \"user\": \"web\", \"cl_active\": 20,"
        "  \"cl_waiting\": 3, \"sv_active\": 20, \"sv_idle\": 0, \"maxwait_us\": 1500000},"
        " {\"database\": \"app\", \"user\": \"batch\", \"cl_waiting\": 0}],"
        " \"queries\": {\"total\": 1000, \"slow\": 30}}",
        0, &e);
    assert_non_null(daemon);
    report_options_t opt;
    report_options_init(&opt);
    opt.daemon = daemon;
    PGconn *c = harness_connect_direct(DB);
    char err[256];
    json_t *d = report_build(c, &opt, err, sizeof(err));
    PQfinish(c);
    if (d == NULL)
        fail_msg("report_build: %s", err);
    const json_t *r = find_rec(d, "slow_queries", NULL);
    assert_non_null(r);
    assert_string_equal(field(r, "severity"), "warning"); /* 3 %: 1 % warns, 5 % is critical */
    assert_non_null(strstr(field(r, "message"), "3.0 % of queries are slow (30 of 1000)"));
    r = find_rec(d, "pool_waiting", "app/web");
    assert_non_null(r);
    assert_string_equal(field(r, "severity"), "warning");
    assert_null(find_rec(d, "pool_waiting", "app/batch"));
    const json_t *p = row_with(json_object_get(d, "score_breakdown"), "factor", "slow_queries");
    assert_float_equal(json_number_value(json_object_get(p, "penalty")), 12.0, 1e-9);
    assert_true(json_equal(json_object_get(d, "daemon"), daemon));
    json_decref(d);
    json_decref(daemon);
}

/* ---- bad input ---- */

static void unreachable_server_exits_1_with_a_clear_message(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s report 'host=127.0.0.1 port=%d dbname=x user=postgres'",
             PGTURBO_BIN, harness_free_port());
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "pgturbo report: cannot connect: "));
    assert_non_null(strstr(out, "Connection refused"));
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1); /* one line */

    assert_int_equal(report("--json", "pgturbo_report_no_such_db", "postgres"), 1);
    assert_non_null(strstr(out, "database \"pgturbo_report_no_such_db\" does not exist"));
}

static void bad_arguments_exit_2(void **state)
{
    char cmd[512];
    static const char *const bad[] = {
        "",
        "--json --html 'dbname=x'",
        "--idle-seconds soon 'dbname=x'",
        "--long-query-seconds -1 'dbname=x'",
        "--top 0 'dbname=x'",
        "--output",
        "--bogus 'dbname=x'",
        "'dbname=x' 'dbname=y'",
        "'host=127.0.0.1 port'",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(cmd, sizeof(cmd), "%s report %s", PGTURBO_BIN, bad[i]);
        int rc = harness_shell(cmd, out, sizeof(out));
        if (rc != 2)
            fail_msg("\"%s\" exited with %d:\n%s", bad[i], rc, out);
        assert_non_null(strstr(out, "pgturbo report: "));
        assert_non_null(strstr(out, "usage:"));
    }
    snprintf(cmd, sizeof(cmd), "%s report --help", PGTURBO_BIN);
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "pgturbo report [--json | --html]"));
}

static void unwritable_output_exits_1(void **state)
{
    assert_int_equal(report("--json --output /nonexistent-dir/report.json", DB, "postgres"), 1);
    assert_non_null(strstr(out, "pgturbo report: cannot write /nonexistent-dir/report.json: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(duplicate_index_is_a_warning),
        cmocka_unit_test(redundant_prefix_index_is_info),
        cmocka_unit_test(unused_large_index_is_a_warning_and_used_ones_are_not_listed),
        cmocka_unit_test(invalid_index_is_a_warning),
        cmocka_unit_test(foreign_keys_without_index_by_table_size),
        cmocka_unit_test(bloated_table_needs_vacuum_and_says_autovacuum_is_off),
        cmocka_unit_test(idle_in_transaction_session_is_a_warning),
        cmocka_unit_test(lock_wait_names_who_blocks_whom),
        cmocka_unit_test(sequence_near_its_end_is_critical),
        cmocka_unit_test(score_is_the_documented_sum_of_penalties),
        cmocka_unit_test(table_names_are_data_in_json),
        cmocka_unit_test(html_is_one_self_contained_page_with_names_escaped),
        cmocka_unit_test(text_output_is_the_default),
        cmocka_unit_test(missing_privileges_skip_checks_instead_of_failing),
        cmocka_unit_test(pgstattuple_measures_bloat_when_installed),
        cmocka_unit_test(empty_database_reports_nothing_wrong),
        cmocka_unit_test(daemon_figures_feed_the_score_and_recommendations),
        cmocka_unit_test(unreachable_server_exits_1_with_a_clear_message),
        cmocka_unit_test(bad_arguments_exit_2),
        cmocka_unit_test(unwritable_output_exits_1),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
