/*
 * test_advise.c
 *    pgturbo advise against the test cluster. A database from the seed schemas (users,
 *    activity_logs with 200,000 rows, workflows, workflow_runs, form_responses with JSONB, and
 *    a table named "Order Items") runs a scripted workload whose right indexes are known:
 *    composite, composite with DESC order, partial (IS NULL, and IN of constants that only a
 *    sampled text shows), GIN on jsonb @>, expression on data->>'key', a foreign key in a
 *    join, and quoting. Advise must find each and nothing for the queries already well served,
 *    give hints for queries no index fixes, and apply and roll back what it advises.
 *    The daemon source: the same workload through pgturbo, advised from its admin API.
 *    Bad input: an unreachable database, bad command lines, an empty
 *    workload, HypoPG missing.
 */
#include "harness.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DB "advise_seed"

static char out[1 << 18];

/* Sessions of the "application" that stay connected while advise runs: their last queries,
 * with their constants, are what pg_stat_activity shows advise as samples. */
static PGconn *app_email, *app_status;

/* Runs `pgturbo advise ARGS 'CONNINFO of db'` and returns its exit code; output in out. */
static int advise_as(const char *db, const char *user, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s advise %s 'host=127.0.0.1 port=%d user=%s dbname=%s'",
             PGTURBO_BIN, args, harness_pg_port(), user, db);
    return harness_shell(cmd, out, sizeof(out));
}

static int advise(const char *db, const char *args)
{
    return advise_as(db, "postgres", args);
}

static void run_params(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
}

static const char *const schema_sql =
    "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, name text, "
    "  is_active boolean NOT NULL DEFAULT true, created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX users_email_idx ON users (email);"
    "CREATE TABLE activity_logs (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES "
    "  users (id), category text NOT NULL, action text NOT NULL, level text NOT NULL, "
    "  entity_type text, entity_id bigint, metadata jsonb, created_at timestamptz NOT NULL);"
    "CREATE TABLE workflows (id bigserial PRIMARY KEY, name text NOT NULL, created_by bigint, "
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE workflow_runs (id bigserial PRIMARY KEY, workflow_id bigint NOT NULL "
    "  REFERENCES workflows (id), status text NOT NULL, trigger_data jsonb, "
    "  started_at timestamptz NOT NULL, completed_at timestamptz);"
    "CREATE TABLE form_responses (id bigserial PRIMARY KEY, form_schema_id bigint NOT NULL, "
    "  workflow_run_id bigint, data jsonb NOT NULL, metadata jsonb, "
    "  submitted_at timestamptz NOT NULL);"
    "CREATE TABLE \"Order Items\" (\"Order Id\" bigint NOT NULL, sku text NOT NULL, "
    "  quantity int NOT NULL);"
    "INSERT INTO users (email, name, created_at) SELECT 'user' || i || '@example.com', "
    "  'User ' || i, now() - i * interval '1 hour' FROM generate_series(1, 20000) i;"
    "INSERT INTO activity_logs (user_id, category, action, level, entity_type, entity_id, "
    "  metadata, created_at) SELECT 1 + (i * 7919) % 20000, 'cat' || (i % 10), 'act' || (i % 23), "
    "  CASE WHEN i % 100 = 0 THEN 'error' WHEN i % 10 = 0 THEN 'warning' ELSE 'info' END, "
    "  'entity' || (i % 5), i % 1000, jsonb_build_object('ip', '10.0.' || (i % 256) || '.1'), "
    "  now() - (i % 259200) * interval '1 minute' FROM generate_series(1, 200000) i;"
    "INSERT INTO workflows (name, created_by) SELECT 'workflow ' || i, i "
    "  FROM generate_series(1, 1000) i;"
    /* 2 % running, 2 % failed, 1 % pending, the rest completed; running and pending have no
     * completed_at. */
    "INSERT INTO workflow_runs (workflow_id, status, trigger_data, started_at, completed_at) "
    "  SELECT 1 + (i * 7) % 1000, CASE WHEN i % 100 < 2 THEN 'running' "
    "  WHEN i % 100 < 4 THEN 'failed' "
    "  WHEN i % 100 < 5 THEN 'pending' ELSE 'completed' END, "
    "  jsonb_build_object('by', 'user' || (i % 50)), now() - i * interval '1 minute', "
    "  CASE WHEN i % 100 < 2 OR i % 100 = 4 THEN NULL "
    "  ELSE now() - i * interval '1 minute' + interval '30 seconds' END "
    "  FROM generate_series(1, 100000) i;"
    /* Form responses are wide documents, as in seed 004. */
    "INSERT INTO form_responses (form_schema_id, workflow_run_id, data, metadata, submitted_at) "
    "  SELECT 1 + i % 40, CASE WHEN i % 3 = 0 THEN i END, jsonb_build_object('email', 'resp' || "
    "  i || '@example.com', 'score', i % 100, 'source', 'campaign-' || (i % 50), 'country', "
    "  'c' || (i % 30), 'answers', repeat(md5(i::text), 12)), "
    "  jsonb_build_object('agent', 'ua' || (i % 7)), now() - i * interval '2 minutes' "
    "  FROM generate_series(1, 100000) i;"
    "INSERT INTO \"Order Items\" SELECT 1 + i % 5000, 'sku-' || (i % 300), 1 + i % 4 "
    "  FROM generate_series(1, 50000) i;";

/* The workload, 20 times over, through the extended protocol as drivers send it. */
static void run_workload(PGconn *c)
{
    char p1[64], p2[64], p3[64];
    for (int i = 0; i < 20; i++) {
        const char *params[3] = {p1, p2, p3};
        snprintf(p1, sizeof(p1), "%d", 1 + i * 37);
        run_params(c,
                   "SELECT id, action, created_at FROM activity_logs WHERE user_id = $1 "
                   "ORDER BY created_at DESC LIMIT 20",
                   1, params);
        snprintf(p1, sizeof(p1), "cat%d", i % 10);
        snprintf(p2, sizeof(p2), "act%d", i % 23);
        snprintf(p3, sizeof(p3), "%s", "2000-01-01");
        run_params(c,
                   "SELECT * FROM activity_logs WHERE category = $1 AND action = $2 "
                   "AND created_at > now() - interval '30 days'",
                   2, params);
        run_params(c,
                   "SELECT * FROM workflow_runs WHERE completed_at IS NULL "
                   "ORDER BY started_at LIMIT 50",
                   0, params);
        snprintf(p1, sizeof(p1), "{\"source\": \"campaign-%d\"}", i);
        run_params(c, "SELECT id FROM form_responses WHERE data @> $1::jsonb", 1, params);
        snprintf(p1, sizeof(p1), "%d", i + 1);
        run_params(c, "SELECT * FROM users WHERE id = $1", 1, params);
        snprintf(p1, sizeof(p1), "user%d@example.com", i);
        run_params(c, "SELECT * FROM users WHERE email = $1", 1, params);
        snprintf(p1, sizeof(p1), "%d", i + 1);
        run_params(c, "SELECT * FROM \"Order Items\" WHERE \"Order Id\" = $1", 1, params);
        snprintf(p1, sizeof(p1), "workflow %d", i + 1);
        run_params(c,
                   "SELECT r.id FROM workflow_runs r JOIN workflows w ON w.id = r.workflow_id "
                   "WHERE w.name = $1",
                   1, params);
        snprintf(p1, sizeof(p1), "resp%d@example.com", i);
        run_params(app_email,
                   "SELECT id, submitted_at FROM form_responses WHERE data->>'email' = $1", 1,
                   params);
        run_params(app_status,
                   "SELECT * FROM workflow_runs WHERE status IN ('running', 'pending') "
                   "ORDER BY started_at DESC LIMIT 50",
                   0, params);
        /* Queries that no index fixes, for hints. */
        snprintf(p1, sizeof(p1), "user%d@", i);
        run_params(c, "SELECT id FROM users WHERE substr(email, 1, 6) = $1", 1, params);
    }
    run_params(c, "SELECT * FROM form_responses ORDER BY metadata->>'agent'", 0, NULL);
    char in_list[2048] = "SELECT id FROM users WHERE id IN (";
    const char *values[120];
    char texts[120][8];
    for (int i = 0; i < 120; i++) {
        snprintf(texts[i], sizeof(texts[i]), "%d", i + 1);
        values[i] = texts[i];
        size_t n = strlen(in_list);
        snprintf(in_list + n, sizeof(in_list) - n, "%s$%d", i == 0 ? "" : ", ", i + 1);
    }
    strcat(in_list, ")");
    run_params(c, in_list, 120, values);
}

/* The workload's queries with values, and the index each must use once advice is applied. */
static const struct {
    const char *query;
    const char *index;
} planned[] = {
    {"SELECT id, action, created_at FROM activity_logs WHERE user_id = 38 "
     "ORDER BY created_at DESC LIMIT 20",
     "idx_activity_logs_user_id_created_at_desc"},
    {"SELECT * FROM activity_logs WHERE category = 'cat3' AND action = 'act5' "
     "AND created_at > now() - interval '30 days'",
     "idx_activity_logs_category_action_created_at"},
    {"SELECT * FROM workflow_runs WHERE completed_at IS NULL ORDER BY started_at LIMIT 50",
     "idx_workflow_runs_started_at_where_completed_at"},
    {"SELECT * FROM workflow_runs WHERE status IN ('running', 'pending') "
     "ORDER BY started_at DESC LIMIT 50",
     "idx_workflow_runs_started_at_desc_where_status"},
    {"SELECT id FROM form_responses WHERE data @> '{\"email\": \"resp7@example.com\"}'",
     "idx_form_responses_data_gin"},
    {"SELECT id, submitted_at FROM form_responses WHERE data->>'email' = 'resp7@example.com'",
     "idx_form_responses_data_email"},
    {"SELECT * FROM \"Order Items\" WHERE \"Order Id\" = 7", "idx_order_items_order_id"},
    {"SELECT r.id FROM workflow_runs r JOIN workflows w ON w.id = r.workflow_id "
     "WHERE w.name = 'workflow 7'",
     "idx_workflow_runs_workflow_id"},
};

#define N_PLANNED (sizeof(planned) / sizeof(planned[0]))

/* The indexes of the database's tables, one "table index definition" per line. */
static char *index_list(PGconn *c)
{
    return harness_query_value(c, "SELECT string_agg(tablename || ' ' || indexdef, E'\\n' "
                                  "ORDER BY tablename, indexname) FROM pg_indexes "
                                  "WHERE schemaname = 'public'");
}

/* Sum of the execution times of the planned queries, from EXPLAIN ANALYZE, in ms. */
static double workload_ms(PGconn *c)
{
    double total = 0;
    for (size_t i = 0; i < N_PLANNED; i++) {
        char sql[1024];
        snprintf(sql, sizeof(sql), "EXPLAIN (ANALYZE, FORMAT JSON) %s", planned[i].query);
        char *plan = harness_query_value(c, sql);
        json_error_t error;
        json_t *root = json_loads(plan, 0, &error);
        total += json_number_value(json_object_get(json_array_get(root, 0), "Execution Time"));
        json_decref(root);
        free(plan);
    }
    return total;
}

static char *indexes_before;
static double ms_before;

static int setup(void **state)
{
    harness_create_database(DB);
    PGconn *c = harness_connect_direct(DB);
    harness_silence_notices(c);
    harness_exec_ok(c, schema_sql);
    harness_exec_ok(c, "VACUUM ANALYZE");
    harness_exec_ok(c, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    /* The workload window starts now: the load is not part of it. The session's counts of
     * the rows it wrote reach the statistics when it goes idle after the forced flush, and
     * only then may they be reset. */
    harness_exec_ok(c, "SELECT pg_stat_force_next_flush()");
    harness_exec_ok(c, "SELECT pg_stat_reset()");
    harness_exec_ok(c, "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                       "WHERE datname = current_database()), 0)");
    app_email = harness_connect_direct(DB);
    app_status = harness_connect_direct(DB);
    run_workload(c);
    indexes_before = index_list(c);
    ms_before = workload_ms(c);
    PQfinish(c);
    return 0;
}

static int teardown(void **state)
{
    free(indexes_before);
    harness_shell("rm -rf /tmp/pgturbo-advise-migrations", NULL, 0);
    PQfinish(app_email);
    PQfinish(app_status);
    harness_drop_database(DB);
    return 0;
}

/* The advice on table whose definition is definition, or NULL. */
static json_t *find_advice(json_t *root, const char *table, const char *definition)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(root, "advice"), i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "table")), table) == 0 &&
            strcmp(json_string_value(json_object_get(a, "definition")), definition) == 0)
            return a;
    }
    return NULL;
}

/* advise --json ARGS: the JSON on stdout, parsed (what goes to stderr is dropped). */
static json_t *advise_json(const char *db, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "%s advise --json %s 'host=127.0.0.1 port=%d user=postgres dbname=%s' 2>/dev/null",
             PGTURBO_BIN, args, harness_pg_port(), db);
    int rc = harness_shell(cmd, out, sizeof(out));
    if (rc != 0)
        fail_msg("advise exited with %d:\n%s", rc, out);
    json_error_t error;
    json_t *root = json_loads(out, 0, &error);
    if (root == NULL)
        fail_msg("advise --json printed no JSON (%s):\n%s", error.text, out);
    return root;
}

/* Asserts that advice a exists, has the proof and name given, and cuts a query's cost by at
 * least half. */
static void assert_advice(json_t *root, const char *table, const char *definition, const char *name,
                          const char *proof)
{
    json_t *a = find_advice(root, table, definition);
    if (a == NULL)
        fail_msg("no advice %s on %s in:\n%s", definition, table, out);
    assert_string_equal(json_string_value(json_object_get(a, "name")), name);
    assert_string_equal(json_string_value(json_object_get(a, "proof")), proof);
    json_t *queries = json_object_get(a, "queries");
    assert_true(json_array_size(queries) >= 1);
    json_t *q = json_array_get(queries, 0);
    assert_true(json_real_value(json_object_get(q, "cost_after")) <
                json_real_value(json_object_get(q, "cost_before")) / 2);
    assert_true(json_real_value(json_object_get(a, "estimated_size_bytes")) > 0);
}

/* Asserts that root advises the right index of each query of the workload, and no other. */
static void assert_each_known_index(json_t *root)
{
    assert_advice(root, "activity_logs", "(\"user_id\", \"created_at\" DESC)",
                  "idx_activity_logs_user_id_created_at_desc", "hypopg");
    assert_advice(root, "activity_logs", "(\"category\", \"action\", \"created_at\")",
                  "idx_activity_logs_category_action_created_at", "hypopg");
    assert_advice(root, "workflow_runs", "(\"started_at\") WHERE \"completed_at\" IS NULL",
                  "idx_workflow_runs_started_at_where_completed_at", "hypopg");
    assert_advice(root, "workflow_runs",
                  "(\"started_at\" DESC) WHERE \"status\" IN ('running', 'pending')",
                  "idx_workflow_runs_started_at_desc_where_status", "hypopg");
    assert_advice(root, "form_responses", "USING gin (\"data\" jsonb_path_ops)",
                  "idx_form_responses_data_gin", "sample");
    assert_advice(root, "form_responses", "((\"data\" ->> 'email'))",
                  "idx_form_responses_data_email", "hypopg");
    assert_advice(root, "workflow_runs", "(\"workflow_id\")", "idx_workflow_runs_workflow_id",
                  "hypopg");
    assert_advice(root, "Order Items", "(\"Order Id\")", "idx_order_items_order_id", "hypopg");
    /* users is well served by its primary key and users_email_idx; the b-tree on
     * workflow_runs (started_at) that both queries could use gave way to the two partial
     * indexes. */
    assert_int_equal(json_array_size(json_object_get(root, "advice")), 8);
}

static void test_finds_each_known_index_and_nothing_for_served_queries(void **state)
{
    json_t *root = advise_json(DB, "");
    assert_each_known_index(root);
    json_t *gin = find_advice(root, "form_responses", "USING gin (\"data\" jsonb_path_ops)");
    assert_true(json_real_value(json_object_get(gin, "sample_rows")) > 1000);
    json_decref(root);
}

/* The hint of kind on the query that starts with query, or NULL. */
static json_t *find_hint(json_t *root, const char *kind, const char *query)
{
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(root, "hints"), i, h)
    {
        if (strcmp(json_string_value(json_object_get(h, "kind")), kind) == 0 &&
            strncmp(json_string_value(json_object_get(h, "query")), query, strlen(query)) == 0)
            return h;
    }
    return NULL;
}

static void assert_hint(json_t *root, const char *kind, const char *query, const char *says)
{
    json_t *h = find_hint(root, kind, query);
    if (h == NULL)
        fail_msg("no hint %s for %s in:\n%s", kind, query, out);
    const char *message = json_string_value(json_object_get(h, "message"));
    if (strstr(message, says) == NULL)
        fail_msg("hint %s says \"%s\", not \"%s\"", kind, message, says);
}

static void test_hints_for_queries_no_index_fixes(void **state)
{
    json_t *root = advise_json(DB, "");
    assert_hint(root, "select_star", "SELECT * FROM form_responses ORDER BY",
                "SELECT * reads all 6 columns of public.form_responses");
    assert_hint(root, "order_without_limit", "SELECT * FROM form_responses ORDER BY",
                "ORDER BY without LIMIT over public.form_responses");
    assert_hint(root, "function_on_indexed_column", "SELECT id FROM users WHERE substr(",
                "substr() around public.users.email keeps index users_email_idx from serving");
    assert_hint(root, "large_in_list", "SELECT id FROM users WHERE id IN (",
                "IN list of 120 values on public.users.id");
    /* Queries an advised index helps get no hints. */
    assert_null(find_hint(root, "select_star", "SELECT * FROM workflow_runs"));
    json_decref(root);
}

static void test_json_names_the_migration_of_each_advice(void **state)
{
    harness_shell("rm -rf /tmp/pgturbo-advise-json", NULL, 0);
    json_t *root = advise_json(DB, "--migrations /tmp/pgturbo-advise-json");
    size_t i;
    json_t *a;
    assert_int_equal(json_array_size(json_object_get(root, "advice")), 8);
    json_array_foreach(json_object_get(root, "advice"), i, a)
    {
        const char *version = json_string_value(json_object_get(a, "migration_version"));
        assert_non_null(version);
        assert_int_equal(strlen(version), 16);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "test -f /tmp/pgturbo-advise-json/%s_%s.up.sql", version,
                 json_string_value(json_object_get(a, "name")));
        assert_int_equal(harness_shell(cmd, NULL, 0), 0);
    }
    json_decref(root);
    harness_shell("rm -rf /tmp/pgturbo-advise-json", NULL, 0);
}

static void test_min_improvement_is_the_bar(void **state)
{
    assert_int_equal(advise(DB, "--min-improvement 100"), 0);
    assert_non_null(strstr(out, "nothing to advise: no index cuts the cost of a frequent query "
                                "by 100 % or more and pays for its upkeep"));
}

static void test_text_output_is_a_table(void **state)
{
    assert_int_equal(advise(DB, ""), 0);
    assert_non_null(strstr(out, "8 indexes advised, most time saved first:"));
    assert_non_null(strstr(out, "index"));
    assert_non_null(strstr(out, "est. size"));
    assert_non_null(strstr(out, "CREATE INDEX CONCURRENTLY IF NOT EXISTS "
                                "\"idx_order_items_order_id\" ON \"public\".\"Order Items\" "
                                "(\"Order Id\")"));
    assert_non_null(strstr(out, "proof: a real index on a sample of"));
    /* advise leaves no trace of HypoPG, which it created for the run. */
    PGconn *c = harness_connect_direct(DB);
    char *n = harness_query_value(c, "SELECT count(*) FROM pg_extension WHERE extname = "
                                     "'hypopg'");
    assert_string_equal(n, "0");
    free(n);
    PQfinish(c);
}

#define MIGRATIONS "/tmp/pgturbo-advise-migrations"

static int count_files(const char *pattern)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls " MIGRATIONS "/%s 2>/dev/null | wc -l", pattern);
    harness_shell(cmd, out, sizeof(out));
    return atoi(out);
}

static void test_apply_builds_valid_indexes_that_the_workload_uses(void **state)
{
    harness_shell("rm -rf " MIGRATIONS, NULL, 0);
    assert_int_equal(advise(DB, "--migrations " MIGRATIONS " --apply"), 0);
    assert_non_null(strstr(out, "applied "));
    assert_int_equal(count_files("*.up.sql"), 8);
    assert_int_equal(count_files("*.down.sql"), 8);
    harness_shell("cat " MIGRATIONS "/*_idx_order_items_order_id.up.sql", out, sizeof(out));
    assert_non_null(strstr(out, "CREATE INDEX CONCURRENTLY IF NOT EXISTS "
                                "\"idx_order_items_order_id\" ON \"public\".\"Order Items\" "
                                "(\"Order Id\");\n"));
    harness_shell("cat " MIGRATIONS "/*_idx_order_items_order_id.down.sql", out, sizeof(out));
    assert_non_null(strstr(out, "DROP INDEX CONCURRENTLY IF EXISTS \"public\"."
                                "\"idx_order_items_order_id\";\n"));

    PGconn *c = harness_connect_direct(DB);
    char *n = harness_query_value(c, "SELECT count(*) FROM pgturbo.migrations");
    assert_string_equal(n, "8");
    free(n);
    n = harness_query_value(c, "SELECT count(*) FROM pg_index i JOIN pg_class c "
                               "ON c.oid = i.indexrelid WHERE c.relname LIKE 'idx\\_%' "
                               "AND i.indisvalid");
    assert_string_equal(n, "8");
    free(n);
    for (size_t i = 0; i < N_PLANNED; i++) {
        char sql[1024];
        snprintf(sql, sizeof(sql), "EXPLAIN (FORMAT JSON) %s", planned[i].query);
        char *plan = harness_query_value(c, sql);
        if (strstr(plan, planned[i].index) == NULL)
            fail_msg("%s does not use %s:\n%s", planned[i].query, planned[i].index, plan);
        free(plan);
    }
    double ms_after = workload_ms(c);
    if (!(ms_after * 4 < ms_before))
        fail_msg("the workload took %.1f ms before and %.1f ms after", ms_before, ms_after);
    PQfinish(c);

    /* The queries are well served now; the files are not written twice. */
    assert_int_equal(advise(DB, "--migrations " MIGRATIONS), 0);
    assert_non_null(strstr(out, "nothing to advise"));
    assert_int_equal(count_files("*.up.sql"), 8);
}

/* The version of the migration of index name in the migrations directory. */
static void version_of(const char *name, char *version, size_t len)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cd " MIGRATIONS " && ls *_%s.up.sql | cut -c1-16", name);
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 0);
    snprintf(version, len, "%.16s", out);
}

static void test_changed_file_of_applied_version_is_refused(void **state)
{
    char version[32], args[256], path[256];
    version_of("idx_workflow_runs_workflow_id", version, sizeof(version));
    snprintf(path, sizeof(path), MIGRATIONS "/%s_idx_workflow_runs_workflow_id.up.sql", version);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cp %s %s.orig && echo '-- edited' >> %s", path, path, path);
    assert_int_equal(harness_shell(cmd, NULL, 0), 0);

    assert_int_equal(advise(DB, "--migrations " MIGRATIONS " --apply"), 4);
    assert_non_null(strstr(out, "checksum mismatch"));
    assert_non_null(strstr(out, "nothing was applied"));
    snprintf(args, sizeof(args), "--migrations " MIGRATIONS " --rollback %s", version);
    assert_int_equal(advise(DB, args), 4);
    assert_non_null(strstr(out, "checksum mismatch"));

    snprintf(cmd, sizeof(cmd), "mv %s.orig %s", path, path);
    assert_int_equal(harness_shell(cmd, NULL, 0), 0);
    assert_int_equal(advise(DB, "--migrations " MIGRATIONS " --apply"), 0);
    assert_non_null(strstr(out, "every migration in " MIGRATIONS " is applied"));
}

static void test_rollback_restores_the_schema(void **state)
{
    assert_int_equal(advise(DB, "--rollback 1999010100000001"), 4);
    assert_non_null(strstr(out, "version 1999010100000001 is not applied"));

    PGconn *c = harness_connect_direct(DB);
    PGresult *res = PQexec(c, "SELECT version FROM pgturbo.migrations ORDER BY version DESC");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 8);
    for (int i = 0; i < PQntuples(res); i++) {
        char args[256];
        /* The first from the files, the others from what pgturbo.migrations recorded. */
        snprintf(args, sizeof(args), "%s--rollback %s",
                 i == 0 ? "--migrations " MIGRATIONS " " : "", PQgetvalue(res, i, 0));
        assert_int_equal(advise(DB, args), 0);
        assert_non_null(strstr(out, "rolled back "));
    }
    PQclear(res);
    char *now = index_list(c);
    assert_string_equal(now, indexes_before);
    free(now);
    char *n = harness_query_value(c, "SELECT count(*) FROM pgturbo.migrations");
    assert_string_equal(n, "0");
    free(n);
    PQfinish(c);
}

static void test_hypopg_missing_exits_3_with_instructions(void **state)
{
    PGconn *c = harness_connect_direct(DB);
    harness_silence_notices(c);
    harness_exec_ok(c, "DROP ROLE IF EXISTS advise_plain");
    harness_exec_ok(c, "CREATE ROLE advise_plain LOGIN");
    harness_exec_ok(c, "GRANT pg_read_all_stats TO advise_plain");
    assert_int_equal(advise_as(DB, "advise_plain", ""), 3);
    assert_non_null(strstr(out, "HypoPG is installed on the server but not in database "
                                "\"" DB "\", and this role may not create it: as a superuser, "
                                "run CREATE EXTENSION hypopg;"));
    harness_exec_ok(c, "DROP ROLE advise_plain");
    PQfinish(c);
}

static void test_unreachable_database_exits_1(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s advise 'host=127.0.0.1 port=%d user=postgres dbname=x'",
             PGTURBO_BIN, harness_free_port());
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "pgturbo advise: cannot connect: "));
    assert_non_null(strstr(out, "Connection refused"));
}

static void test_daemon_source_reads_the_daemons_statistics_and_samples(void **state)
{
    pgturbo_proc_t p;
    char ini[256];
    int api_port = harness_free_port();
    snprintf(ini, sizeof(ini),
             "admin_listen = 127.0.0.1:%d\nadmin_token = advise-token\npool_mode = transaction\n",
             api_port);
    harness_start_pgturbo(&p, ini, NULL);
    /* Every session of the application goes through pgturbo this time. */
    PGconn *direct_email = app_email, *direct_status = app_status;
    app_email = harness_connect(p.port, DB, NULL);
    app_status = harness_connect(p.port, DB, NULL);
    PGconn *c = harness_connect(p.port, DB, NULL);
    run_workload(c);
    PQfinish(c);
    PQfinish(app_email);
    PQfinish(app_status);
    app_email = direct_email;
    app_status = direct_status;
    char args[256];
    snprintf(args, sizeof(args), "--source daemon --api 127.0.0.1:%d --token advise-token",
             api_port);
    json_t *root = advise_json(DB, args);
    /* Every query came with the extended protocol, and the daemon kept its Parse text and
     * Bind values: advise reads the bound values as parameters (user_id = $1 makes no partial
     * index on one user) and the literals as constants (status IN ('running', 'pending')
     * does), so it finds what the pg_stat_statements source finds. Only the query of 120
     * parameters has no sample: its values are too long to keep. */
    assert_string_equal(json_string_value(json_object_get(root, "source")), "daemon");
    json_t *workload = json_object_get(root, "workload");
    assert_int_equal(json_integer_value(json_object_get(workload, "queries")), 13);
    assert_int_equal(json_integer_value(json_object_get(workload, "sampled")), 12);
    assert_each_known_index(root);
    json_decref(root);
    /* A wrong token is the API's 401, said plainly. */
    snprintf(args, sizeof(args), "--source daemon --api 127.0.0.1:%d --token wrong", api_port);
    assert_int_equal(advise(DB, args), 1);
    assert_non_null(strstr(out, "answered 401"));
    assert_int_equal(advise(DB, "--source daemon"), 2);
    assert_non_null(strstr(out, "--source daemon needs --api"));
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

/* A driver that inlines its values sends user names as constants: a column of that many
 * distinct values gets a plain index, not a partial index on the one name sampled. */
static void test_inlined_values_make_no_partial_index(void **state)
{
    PGconn *app = harness_connect_direct(DB);
    char sql[128];
    for (int i = 0; i < 20; i++) {
        snprintf(sql, sizeof(sql), "SELECT id FROM users WHERE name = 'User %d'", 100 + i);
        harness_exec_ok(app, sql);
    }
    json_t *root = advise_json(DB, "");
    assert_advice(root, "users", "(\"name\")", "idx_users_name", "hypopg");
    json_t *notes = json_object_get(root, "notes");
    bool noted = false;
    for (size_t i = 0; i < json_array_size(notes); i++)
        noted = noted || strstr(json_string_value(json_array_get(notes, i)),
                                "column of more than 100 distinct values") != NULL;
    assert_true(noted);
    json_decref(root);
    PQfinish(app);
}

static void test_bad_command_lines_exit_2(void **state)
{
    assert_int_equal(advise("postgres", "--min-improvement 0"), 2);
    assert_non_null(strstr(out, "--min-improvement: expected a whole percentage"));
    assert_int_equal(advise("postgres", "--source elsewhere"), 2);
    assert_int_equal(advise("postgres", "--frobnicate"), 2);
    assert_non_null(strstr(out, "unknown option \"--frobnicate\""));
    assert_int_equal(advise("postgres", "--rollback 1 --apply"), 2);
}

static void test_empty_workload_has_nothing_to_advise(void **state)
{
    harness_create_database("advise_empty");
    PGconn *c = harness_connect_direct("advise_empty");
    harness_exec_ok(c, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    PQfinish(c);
    assert_int_equal(advise("advise_empty", ""), 0);
    assert_non_null(strstr(out, "nothing to advise"));
    harness_drop_database("advise_empty");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finds_each_known_index_and_nothing_for_served_queries),
        cmocka_unit_test(test_hints_for_queries_no_index_fixes),
        cmocka_unit_test(test_json_names_the_migration_of_each_advice),
        cmocka_unit_test(test_min_improvement_is_the_bar),
        cmocka_unit_test(test_text_output_is_a_table),
        cmocka_unit_test(test_hypopg_missing_exits_3_with_instructions),
        cmocka_unit_test(test_apply_builds_valid_indexes_that_the_workload_uses),
        cmocka_unit_test(test_changed_file_of_applied_version_is_refused),
        cmocka_unit_test(test_rollback_restores_the_schema),
        cmocka_unit_test(test_unreachable_database_exits_1),
        cmocka_unit_test(test_daemon_source_reads_the_daemons_statistics_and_samples),
        cmocka_unit_test(test_inlined_values_make_no_partial_index),
        cmocka_unit_test(test_bad_command_lines_exit_2),
        cmocka_unit_test(test_empty_workload_has_nothing_to_advise),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
