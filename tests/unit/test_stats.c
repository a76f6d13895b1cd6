/*
 * test_stats.c
 *    Query statistics: counters and percentiles of recorded queries, the merge of several
 *    workers' stores, the slow log's thresholds, eviction of cold fingerprints, reset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config.h"
#include "stats.h"

#include <stdlib.h>
#include <string.h>

static config_t cfg;

static int setup(void **state)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.stats_max_fingerprints = 100;
    cfg.slow_log_size = 10;
    cfg.slow_query_warn_ms = 100;
    cfg.slow_query_error_ms = 500;
    cfg.slow_request_warn_ms = 200;
    cfg.slow_request_error_ms = 1000;
    return 0;
}

static void note(stats_t *st, uint64_t fp, const char *text)
{
    sql_info_t info = {.fingerprint = fp, .kind = SQL_READ, .normalized = (char *)text};
    stats_note_query(st, &cfg, "app", &info);
}

static void record(stats_t *st, uint64_t fp, int64_t us, bool error)
{
    stats_query_result_t q = {.fingerprint = fp,
                              .database = "app",
                              .user = "u",
                              .duration_us = us,
                              .rows = 2,
                              .error = error};
    stats_record(st, &cfg, &q);
}

static json_t *queries(stats_t **stores, int n, const char *sort)
{
    stats_view_t *v = stats_view_create();
    for (int i = 0; i < n; i++)
        assert_int_equal(stats_view_add(v, stores[i]), 0);
    json_t *out = stats_view_queries(v, sort, 0, NULL);
    stats_view_free(v);
    return out;
}

static void test_counters_and_percentiles_of_one_store(void **state)
{
    stats_t *st = stats_create();
    note(st, 7, "select $1");
    for (int i = 1; i <= 100; i++)
        record(st, 7, i * 1000, i % 10 == 0);
    json_t *rows = queries(&st, 1, "total");
    assert_int_equal(json_array_size(rows), 1);
    json_t *r = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(r, "fingerprint")), "0000000000000007");
    assert_string_equal(json_string_value(json_object_get(r, "query")), "select $1");
    assert_int_equal(json_integer_value(json_object_get(r, "calls")), 100);
    assert_int_equal(json_integer_value(json_object_get(r, "errors")), 10);
    assert_int_equal(json_integer_value(json_object_get(r, "rows")), 200);
    assert_float_equal(json_real_value(json_object_get(r, "total_exec_time")), 5050.0, 1e-6);
    assert_float_equal(json_real_value(json_object_get(r, "min_exec_time")), 1.0, 1e-6);
    assert_float_equal(json_real_value(json_object_get(r, "max_exec_time")), 100.0, 1e-6);
    assert_float_equal(json_real_value(json_object_get(r, "p50")), 50.0, 0.5);
    assert_float_equal(json_real_value(json_object_get(r, "p95")), 95.0, 0.95);
    assert_float_equal(json_real_value(json_object_get(r, "p99")), 99.0, 0.99);
    json_decref(rows);
    stats_free(st);
}

static void test_stores_of_two_workers_are_merged(void **state)
{
    stats_t *a = stats_create(), *b = stats_create();
    note(a, 1, "one");
    note(b, 1, "one");
    note(b, 2, "two");
    record(a, 1, 1000, false);
    record(b, 1, 3000, false);
    for (int i = 0; i < 3; i++)
        record(b, 2, 100, false);
    stats_t *both[] = {a, b};
    json_t *rows = queries(both, 2, "total");
    assert_int_equal(json_array_size(rows), 2);
    json_t *first = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(first, "query")), "one");
    assert_int_equal(json_integer_value(json_object_get(first, "calls")), 2);
    assert_float_equal(json_real_value(json_object_get(first, "mean_exec_time")), 2.0, 1e-6);
    json_decref(rows);
    rows = queries(both, 2, "calls");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "query")),
                        "two");
    json_decref(rows);
    stats_free(a);
    stats_free(b);
}

static void test_slow_log_keeps_warnings_and_errors_newest_first(void **state)
{
    stats_t *st = stats_create();
    note(st, 5, "select pg_sleep($1)");
    record(st, 5, 99999, false);  /* under 100 ms: not slow */
    record(st, 5, 100000, false); /* warning */
    record(st, 5, 600000, false); /* error */
    stats_view_t *v = stats_view_create();
    assert_int_equal(stats_view_add(v, st), 0);
    json_t *slow = stats_view_slow(v, 0, 0);
    assert_int_equal(json_array_size(slow), 2);
    int errors = 0, warnings = 0;
    size_t i;
    json_t *row;
    json_array_foreach(slow, i, row)
    {
        const char *level = json_string_value(json_object_get(row, "level"));
        errors += strcmp(level, "error") == 0;
        warnings += strcmp(level, "warning") == 0;
        assert_string_equal(json_string_value(json_object_get(row, "query")),
                            "select pg_sleep($1)");
    }
    assert_int_equal(errors, 1);
    assert_int_equal(warnings, 1);
    json_decref(slow);
    stats_view_free(v);
    stats_free(st);
}

static void test_slow_log_is_bounded(void **state)
{
    stats_t *st = stats_create();
    note(st, 5, "slow");
    for (int i = 0; i < 25; i++)
        record(st, 5, 200000, false);
    stats_view_t *v = stats_view_create();
    assert_int_equal(stats_view_add(v, st), 0);
    json_t *slow = stats_view_slow(v, 0, 0);
    assert_int_equal(json_array_size(slow), 10);
    json_decref(slow);
    stats_view_free(v);
    stats_free(st);
}

static void test_cold_fingerprints_are_evicted_past_the_limit(void **state)
{
    stats_t *st = stats_create();
    for (uint64_t fp = 1; fp <= 150; fp++) {
        note(st, fp, "q");
        record(st, fp, 10, false);
    }
    json_t *rows = queries(&st, 1, "total");
    assert_int_equal(json_array_size(rows), 100);
    json_decref(rows);
    stats_free(st);
}

static void test_reset_forgets_everything(void **state)
{
    stats_t *st = stats_create();
    note(st, 5, "q");
    record(st, 5, 200000, false);
    stats_reset(st);
    json_t *rows = queries(&st, 1, "total");
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
    stats_free(st);
}

static void test_requests_give_route_percentiles_and_slow_requests(void **state)
{
    stats_t *st = stats_create();
    for (int i = 1; i <= 10; i++) {
        stats_request_t r = {
            .route = "/api/agents", .request_id = "r", .queries = i, .db_time_us = i * 50000};
        stats_record_request(st, &cfg, &r);
    }
    stats_view_t *v = stats_view_create();
    assert_int_equal(stats_view_add(v, st), 0);
    json_t *routes = stats_view_routes(v);
    assert_int_equal(json_array_size(routes), 1);
    json_t *r = json_array_get(routes, 0);
    assert_int_equal(json_integer_value(json_object_get(r, "requests")), 10);
    assert_int_equal(json_integer_value(json_object_get(r, "slow_requests")), 7); /* >= 200 ms */
    assert_float_equal(
        json_real_value(json_object_get(json_object_get(r, "queries_per_request"), "p50")), 5.0,
        0.01);
    json_t *slow = stats_view_slow_requests(v, 0);
    assert_int_equal(json_array_size(slow), 7);
    json_decref(slow);
    json_decref(routes);
    stats_view_free(v);
    stats_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_percentiles_of_one_store),
        cmocka_unit_test(test_stores_of_two_workers_are_merged),
        cmocka_unit_test(test_slow_log_keeps_warnings_and_errors_newest_first),
        cmocka_unit_test(test_slow_log_is_bounded),
        cmocka_unit_test(test_cold_fingerprints_are_evicted_past_the_limit),
        cmocka_unit_test(test_reset_forgets_everything),
        cmocka_unit_test(test_requests_give_route_percentiles_and_slow_requests),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
