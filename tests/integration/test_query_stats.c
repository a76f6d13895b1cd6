/*
 * test_query_stats.c
 *    Every query measured: a workload with a known mix through pgturbo, checked in the admin
 *    console's SHOW QUERIES (calls, errors, rows, percentiles), the slow log, N+1 findings in
 *    a transaction and in a sqlcommenter request, alerts, and query_stats = off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void start(pgturbo_proc_t *p, const char *extra)
{
    char ini[1024];
    snprintf(ini, sizeof(ini), "admin_users = postgres\n%s", extra != NULL ? extra : "");
    harness_start_pgturbo(p, ini, NULL);
}

/* SHOW QUERIES, as the console answers it. */
static PGresult *show_queries(int port)
{
    PGconn *console = harness_connect(port, "pgturbo", NULL);
    PGresult *res = PQexec(console, "SHOW QUERIES");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQfinish(console);
    return res;
}

/* The row of SHOW QUERIES whose normalized text is query, or -1. */
static int row_of(PGresult *res, const char *query)
{
    int col = PQfnumber(res, "query");
    for (int i = 0; i < PQntuples(res); i++)
        if (strcmp(PQgetvalue(res, i, col), query) == 0)
            return i;
    return -1;
}

static long value(PGresult *res, const char *query, const char *column)
{
    int row = row_of(res, query);
    if (row < 0)
        fail_msg("no row for %s", query);
    return atol(PQgetvalue(res, row, PQfnumber(res, column)));
}

static double real_value(PGresult *res, const char *query, const char *column)
{
    int row = row_of(res, query);
    if (row < 0)
        fail_msg("no row for %s", query);
    return atof(PQgetvalue(res, row, PQfnumber(res, column)));
}

/* The number of lines of the daemon's log that contain every one of the needles. */
static int log_lines(const pgturbo_proc_t *p, const char *a, const char *b)
{
    FILE *f = fopen(p->log, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
    fclose(f);
    return n;
}

static bool wait_log(const pgturbo_proc_t *p, const char *a, const char *b, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (log_lines(p, a, b) > 0)
            return true;
        harness_sleep_ms(100);
    }
    return false;
}

static void test_simple_queries_differing_in_constants_share_a_fingerprint(void **state)
{
    pgturbo_proc_t p;
    start(&p, "pool_mode = transaction\n");
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    for (int i = 0; i < 10; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d AS qs_simple", i);
        harness_exec_ok(c, sql);
    }
    for (int i = 0; i < 3; i++)
        assert_string_equal(harness_exec_error(c, "SELECT 1/0 AS qs_error"), "22012");
    harness_exec_ok(c, "SELECT generate_series(1, 5) AS qs_rows");
    PQfinish(c);
    PGresult *res = show_queries(p.port);
    assert_int_equal(value(res, "SELECT $1 AS qs_simple", "calls"), 10);
    assert_int_equal(value(res, "SELECT $1 AS qs_simple", "errors"), 0);
    assert_int_equal(value(res, "SELECT $1/$2 AS qs_error", "calls"), 3);
    assert_int_equal(value(res, "SELECT $1/$2 AS qs_error", "errors"), 3);
    assert_int_equal(value(res, "SELECT generate_series($1, $2) AS qs_rows", "rows"), 5);
    assert_string_equal(
        PQgetvalue(res, row_of(res, "SELECT $1 AS qs_simple"), PQfnumber(res, "kind")), "read");
    PQclear(res);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void run_extended(int port, const char *mode)
{
    pgturbo_proc_t p;
    char ini[128];
    snprintf(ini, sizeof(ini), "pool_mode = %s\n", mode);
    start(&p, ini);
    PGconn *c = harness_connect(port == 0 ? p.port : port, "postgres", NULL);
    const char *param[] = {"41"};
    for (int i = 0; i < 7; i++) {
        PGresult *r =
            PQexecParams(c, "SELECT $1::int + 1 AS qs_ext", 1, NULL, param, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
    }
    PGresult *r = PQprepare(c, "qs_stmt", "SELECT $1::int * 2 AS qs_named", 1, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    for (int i = 0; i < 4; i++) {
        r = PQexecPrepared(c, "qs_stmt", 1, param, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
    }
    PQfinish(c);
    PGresult *res = show_queries(p.port);
    assert_int_equal(value(res, "SELECT $1::int + $2 AS qs_ext", "calls"), 7);
    assert_int_equal(value(res, "SELECT $1::int + $2 AS qs_ext", "rows"), 7);
    assert_int_equal(value(res, "SELECT $1::int * $2 AS qs_named", "calls"), 4);
    PQclear(res);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_extended_and_prepared_queries_in_session_mode(void **state)
{
    run_extended(0, "session");
}

static void test_extended_and_prepared_queries_in_transaction_mode(void **state)
{
    run_extended(0, "transaction");
}

static void test_slow_queries_are_logged_with_their_percentiles(void **state)
{
    pgturbo_proc_t p;
    start(&p, "slow_query_warn_ms = 100\nslow_query_error_ms = 250\n");
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "SELECT pg_sleep(0.12) AS qs_slow");
    harness_exec_ok(c, "SELECT pg_sleep(0.3) AS qs_slow");
    harness_exec_ok(c, "SELECT 1 AS qs_fast");
    PQfinish(c);
    PGresult *res = show_queries(p.port);
    assert_int_equal(value(res, "SELECT pg_sleep($1) AS qs_slow", "calls"), 2);
    assert_true(real_value(res, "SELECT pg_sleep($1) AS qs_slow", "min_exec_time") >= 120.0);
    assert_true(real_value(res, "SELECT pg_sleep($1) AS qs_slow", "max_exec_time") >= 300.0);
    assert_true(real_value(res, "SELECT pg_sleep($1) AS qs_slow", "p99") >= 297.0);
    PQclear(res);
    assert_int_equal(log_lines(&p, "[warning] slow query:", "SELECT pg_sleep($1) AS qs_slow"), 1);
    assert_int_equal(log_lines(&p, "[error] slow query:", "SELECT pg_sleep($1) AS qs_slow"), 1);
    assert_int_equal(log_lines(&p, "slow query:", "qs_fast"), 0);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_n_plus_one_in_a_transaction_is_found_once(void **state)
{
    pgturbo_proc_t p;
    start(&p, "pool_mode = transaction\nn_plus_one_threshold = 10\n");
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "BEGIN");
    harness_exec_ok(c, "SELECT generate_series(1, 12) AS qs_list");
    for (int i = 1; i <= 12; i++) {
        char sql[80];
        snprintf(sql, sizeof(sql), "SELECT %d AS qs_item", i);
        harness_exec_ok(c, sql);
    }
    harness_exec_ok(c, "COMMIT");
    /* Outside a transaction and a request, the same loop is no finding. */
    for (int i = 1; i <= 12; i++) {
        char sql[80];
        snprintf(sql, sizeof(sql), "SELECT %d * 2 AS qs_free", i);
        harness_exec_ok(c, sql);
    }
    PQfinish(c);
    assert_int_equal(log_lines(&p, "N+1:", "SELECT $1 AS qs_item"), 1);
    assert_int_equal(log_lines(&p, "N+1:", "transaction: 10 runs"), 1);
    assert_int_equal(log_lines(&p, "N+1:", "qs_free"), 0);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_n_plus_one_in_a_request_and_route_stats(void **state)
{
    pgturbo_proc_t p;
    start(&p, "n_plus_one_threshold = 5\nslow_request_warn_ms = 100\n");
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    for (int i = 1; i <= 6; i++) {
        char sql[160];
        snprintf(sql, sizeof(sql), "SELECT %d AS qs_req /*route='/api/agents',request_id='req-1'*/",
                 i);
        harness_exec_ok(c, sql);
    }
    harness_exec_ok(c, "SELECT pg_sleep(0.15) /*route='/api/slow',request_id='req-2'*/");
    harness_exec_ok(c, "SELECT 1 /*route='/api/agents',request_id='req-3'*/");
    PQfinish(c); /* ends req-3 */
    assert_true(wait_log(&p, "N+1:", "request req-1: 5 runs", 3000));
    assert_true(wait_log(&p, "slow request:", "request_id=req-2", 3000));
    assert_int_equal(log_lines(&p, "slow request:", "route=/api/slow"), 1);
    assert_int_equal(log_lines(&p, "slow request:", "req-1"), 0);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_p95_alert_is_raised_and_logged_once(void **state)
{
    pgturbo_proc_t p;
    start(&p, "alert_p95_ms = 20\n");
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    for (int i = 0; i < 21; i++)
        harness_exec_ok(c, "SELECT pg_sleep(0.03) AS qs_alert");
    PQfinish(c);
    assert_true(wait_log(&p, "alert raised: p95", NULL, 7000));
    harness_sleep_ms(5500); /* another evaluation: still raised, not logged again */
    assert_int_equal(log_lines(&p, "alert raised: p95", NULL), 1);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_query_stats_off_measures_nothing(void **state)
{
    pgturbo_proc_t p;
    start(&p, "query_stats = off\n");
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "SELECT 1 AS qs_off");
    PQfinish(c);
    PGresult *res = show_queries(p.port);
    assert_int_equal(PQntuples(res), 0);
    PQclear(res);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_parameters_reach_the_slow_log_only_when_asked(void **state)
{
    pgturbo_proc_t p;
    start(&p, "slow_query_warn_ms = 50\nlog_parameters = on\n");
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    const char *param[] = {"0.06"};
    PGresult *r =
        PQexecParams(c, "SELECT pg_sleep($1::float8) AS qs_params", 1, NULL, param, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(c);
    assert_int_equal(log_lines(&p, "slow query:", "parameters='0.06'"), 1);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);

    start(&p, "slow_query_warn_ms = 50\n");
    c = harness_connect(p.port, "postgres", NULL);
    r = PQexecParams(c, "SELECT pg_sleep($1::float8) AS qs_params", 1, NULL, param, NULL, NULL, 0);
    PQclear(r);
    PQfinish(c);
    assert_int_equal(log_lines(&p, "slow query:", "qs_params"), 1);
    assert_int_equal(log_lines(&p, "slow query:", "0.06"), 0);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_unparseable_text_is_forwarded_and_counted(void **state)
{
    pgturbo_proc_t p;
    start(&p, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    assert_string_equal(harness_exec_error(c, "SELEC 1 AS qs_typo"), "42601");
    harness_exec_ok(c, "SELECT 1"); /* the connection goes on */
    PQfinish(c);
    PGresult *res = show_queries(p.port);
    int row = row_of(res, "");
    assert_true(row >= 0);
    assert_string_equal(PQgetvalue(res, row, PQfnumber(res, "kind")), "unparsed");
    assert_int_equal(atol(PQgetvalue(res, row, PQfnumber(res, "errors"))), 1);
    PQclear(res);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_queries_differing_in_constants_share_a_fingerprint),
        cmocka_unit_test(test_extended_and_prepared_queries_in_session_mode),
        cmocka_unit_test(test_extended_and_prepared_queries_in_transaction_mode),
        cmocka_unit_test(test_slow_queries_are_logged_with_their_percentiles),
        cmocka_unit_test(test_n_plus_one_in_a_transaction_is_found_once),
        cmocka_unit_test(test_n_plus_one_in_a_request_and_route_stats),
        cmocka_unit_test(test_p95_alert_is_raised_and_logged_once),
        cmocka_unit_test(test_query_stats_off_measures_nothing),
        cmocka_unit_test(test_parameters_reach_the_slow_log_only_when_asked),
        cmocka_unit_test(test_unparseable_text_is_forwarded_and_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
