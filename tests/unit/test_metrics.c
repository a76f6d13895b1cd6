/*
 * test_metrics.c
 *    Unit tests of metrics_render, the Prometheus text of /metrics, from hand-written JSON in
 *    inspect.h's shapes: the whole text of a small state, pool gauges, exact seconds from
 *    microseconds, label escaping, counter names, histograms (bounds, +Inf, sum, count, rows
 *    that are malformed or caught mid-record), fingerprints, alerts, scheduler jobs, and empty
 *    input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static json_t *parse(const char *text)
{
    json_error_t error;
    json_t *v = json_loads(text, 0, &error);
    if (v == NULL)
        fail_msg("bad test JSON at %d: %s", error.position, error.text);
    return v;
}

/* The input of the JSON texts (NULL for a member left NULL); release with input_free. */
static metrics_input_t input(const char *pools, const char *clients, const char *servers,
                             const char *metrics, const char *alerts)
{
    metrics_input_t in = {
        .pools = pools ? parse(pools) : NULL,
        .clients = clients ? parse(clients) : NULL,
        .servers = servers ? parse(servers) : NULL,
        .metrics = metrics ? parse(metrics) : NULL,
        .alerts = alerts ? parse(alerts) : NULL,
    };
    return in;
}

static void input_free(metrics_input_t *in)
{
    json_decref((json_t *)in->pools);
    json_decref((json_t *)in->clients);
    json_decref((json_t *)in->servers);
    json_decref((json_t *)in->metrics);
    json_decref((json_t *)in->alerts);
}

/* Renders in and checks that the length it reports is the text's. Caller frees. */
static char *render(const metrics_input_t *in)
{
    size_t len = 0;
    char *text = metrics_render(in, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    return text;
}

/* The lines of text that are samples (not # comments), in order. Caller frees. */
static char *samples(const char *text)
{
    char *out = calloc(1, strlen(text) + 1);
    assert_non_null(out);
    for (const char *line = text; *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) + 1 : strlen(line);
        if (line[0] != '#')
            strncat(out, line, n);
        line += n;
    }
    return out;
}

/* Renders and compares the sample lines with expected exactly. */
static void assert_samples(const metrics_input_t *in, const char *expected)
{
    char *text = render(in);
    char *got = samples(text);
    assert_string_equal(got, expected);
    free(got);
    free(text);
}

static const char *const family_types[][2] = {
    {"pgturbo_pool_clients_active", "gauge"},
    {"pgturbo_pool_clients_waiting", "gauge"},
    {"pgturbo_pool_servers_active", "gauge"},
    {"pgturbo_pool_servers_idle", "gauge"},
    {"pgturbo_pool_servers_login", "gauge"},
    {"pgturbo_pool_maxwait_seconds", "gauge"},
    {"pgturbo_clients", "gauge"},
    {"pgturbo_servers", "gauge"},
    {"pgturbo_query_duration_seconds", "histogram"},
    {"pgturbo_fingerprint_duration_seconds", "histogram"},
    {"pgturbo_alert", "gauge"},
    {"pgturbo_scheduler_runs_total", "counter"},
    {"pgturbo_scheduler_failures_total", "counter"},
    {"pgturbo_scheduler_last_success_timestamp_seconds", "gauge"},
};

/* ---- tests ---- */

static void whole_text_of_a_small_state_is_exact(void **state)
{
    metrics_input_t in = input(
        "[{\"database\": \"app\", \"user\": \"web\", \"pool_mode\": \"transaction\", "
        "\"cl_active\": 3, \"cl_waiting\": 1, \"sv_active\": 2, \"sv_idle\": 0, \"sv_login\": 1, "
        "\"maxwait_us\": 1500000, \"paused\": false}]",
        "[{\"id\": 1}, {\"id\": 2}, {\"id\": 3}, {\"id\": 4}]", "[{\"id\": 1}, {\"id\": 2}]",
        "{\"counters\": {\"queries\": 42}, "
        "\"databases\": [{\"database\": \"app\", \"count\": 42, \"sum_us\": 84000, "
        "\"le\": [1000, 5000], \"buckets\": [40, 41]}], "
        "\"fingerprints\": [{\"database\": \"app\", \"fingerprint\": \"00000000deadbeef\", "
        "\"count\": 2, \"sum_us\": 12000, \"le\": [1000, 5000], \"buckets\": [0, 1]}]}",
        "[{\"name\": \"waiting_clients\", \"subject\": \"app/web\", \"value\": 1, "
        "\"threshold\": 1, \"since\": \"2026-11-24T21:55:26Z\"}]");
    const scheduler_job_info_t job = {
        .database = "app", .runs = 3, .failures = 1, .last_success = 1767225600000};
    in.jobs = &job;
    in.n_jobs = 1;
    char *text = render(&in);
    assert_string_equal(
        text,
        "# HELP pgturbo_pool_clients_active Logged-in clients of the pool that are not waiting "
        "for a server connection.\n"
        "# TYPE pgturbo_pool_clients_active gauge\n"
        "pgturbo_pool_clients_active{database=\"app\",user=\"web\"} 3\n"
        "# HELP pgturbo_pool_clients_waiting Clients of the pool waiting for a server "
        "connection.\n"
        "# TYPE pgturbo_pool_clients_waiting gauge\n"
        "pgturbo_pool_clients_waiting{database=\"app\",user=\"web\"} 1\n"
        "# HELP pgturbo_pool_servers_active Server connections of the pool in use by a client.\n"
        "# TYPE pgturbo_pool_servers_active gauge\n"
        "pgturbo_pool_servers_active{database=\"app\",user=\"web\"} 2\n"
        "# HELP pgturbo_pool_servers_idle Server connections of the pool ready for a client.\n"
        "# TYPE pgturbo_pool_servers_idle gauge\n"
        "pgturbo_pool_servers_idle{database=\"app\",user=\"web\"} 0\n"
        "# HELP pgturbo_pool_servers_login Server connections of the pool still connecting or "
        "logging in.\n"
        "# TYPE pgturbo_pool_servers_login gauge\n"
        "pgturbo_pool_servers_login{database=\"app\",user=\"web\"} 1\n"
        "# HELP pgturbo_pool_maxwait_seconds How long the pool's longest-waiting client has "
        "waited.\n"
        "# TYPE pgturbo_pool_maxwait_seconds gauge\n"
        "pgturbo_pool_maxwait_seconds{database=\"app\",user=\"web\"} 1.5\n"
        "# HELP pgturbo_clients Client connections, logged in or not.\n"
        "# TYPE pgturbo_clients gauge\n"
        "pgturbo_clients 4\n"
        "# HELP pgturbo_servers Server connections to PostgreSQL.\n"
        "# TYPE pgturbo_servers gauge\n"
        "pgturbo_servers 2\n"
        "# HELP pgturbo_queries_total pgturbo's counter queries_total since start or the last "
        "reset.\n"
        "# TYPE pgturbo_queries_total counter\n"
        "pgturbo_queries_total 42\n"
        "# HELP pgturbo_query_duration_seconds How long queries took, per database, from "
        "sending to the server's answer.\n"
        "# TYPE pgturbo_query_duration_seconds histogram\n"
        "pgturbo_query_duration_seconds_bucket{database=\"app\",le=\"0.001\"} 40\n"
        "pgturbo_query_duration_seconds_bucket{database=\"app\",le=\"0.005\"} 41\n"
        "pgturbo_query_duration_seconds_bucket{database=\"app\",le=\"+Inf\"} 42\n"
        "pgturbo_query_duration_seconds_sum{database=\"app\"} 0.084\n"
        "pgturbo_query_duration_seconds_count{database=\"app\"} 42\n"
        "# HELP pgturbo_fingerprint_duration_seconds How long queries took, for the "
        "fingerprints with the most total time.\n"
        "# TYPE pgturbo_fingerprint_duration_seconds histogram\n"
        "pgturbo_fingerprint_duration_seconds_bucket{database=\"app\",fingerprint="
        "\"00000000deadbeef\",le=\"0.001\"} 0\n"
        "pgturbo_fingerprint_duration_seconds_bucket{database=\"app\",fingerprint="
        "\"00000000deadbeef\",le=\"0.005\"} 1\n"
        "pgturbo_fingerprint_duration_seconds_bucket{database=\"app\",fingerprint="
        "\"00000000deadbeef\",le=\"+Inf\"} 2\n"
        "pgturbo_fingerprint_duration_seconds_sum{database=\"app\",fingerprint="
        "\"00000000deadbeef\"} 0.012\n"
        "pgturbo_fingerprint_duration_seconds_count{database=\"app\",fingerprint="
        "\"00000000deadbeef\"} 2\n"
        "# HELP pgturbo_alert 1 for each active alert: name is p95, error_rate or "
        "waiting_clients.\n"
        "# TYPE pgturbo_alert gauge\n"
        "pgturbo_alert{name=\"waiting_clients\",subject=\"app/web\"} 1\n"
        "# HELP pgturbo_scheduler_runs_total Finished runs of a scheduler job, failed ones "
        "included, since it was configured.\n"
        "# TYPE pgturbo_scheduler_runs_total counter\n"
        "pgturbo_scheduler_runs_total{job=\"partition_maintain\",database=\"app\"} 3\n"
        "# HELP pgturbo_scheduler_failures_total Failed runs of a scheduler job since it was "
        "configured.\n"
        "# TYPE pgturbo_scheduler_failures_total counter\n"
        "pgturbo_scheduler_failures_total{job=\"partition_maintain\",database=\"app\"} 1\n"
        "# HELP pgturbo_scheduler_last_success_timestamp_seconds Unix time the last successful "
        "run of a scheduler job ended.\n"
        "# TYPE pgturbo_scheduler_last_success_timestamp_seconds gauge\n"
        "pgturbo_scheduler_last_success_timestamp_seconds{job=\"partition_maintain\","
        "database=\"app\"} 1767225600\n");
    free(text);
    input_free(&in);
}

static void empty_state_has_every_family_header_and_zero_connections(void **state)
{
    metrics_input_t in = input("[]", "[]", "[]",
                               "{\"counters\": {}, \"databases\": [], \"fingerprints\": []}", "[]");
    char *text = render(&in);
    for (size_t i = 0; i < sizeof(family_types) / sizeof(family_types[0]); i++) {
        char line[128];
        snprintf(line, sizeof(line), "# TYPE %s %s\n", family_types[i][0], family_types[i][1]);
        assert_non_null(strstr(text, line));
    }
    char *got = samples(text);
    assert_string_equal(got, "pgturbo_clients 0\npgturbo_servers 0\n");
    free(got);
    free(text);
    input_free(&in);
}

static void null_inputs_leave_their_families_empty(void **state)
{
    metrics_input_t in = {0};
    assert_samples(&in, "");
}

static void every_pool_gets_all_six_gauges(void **state)
{
    metrics_input_t in =
        input("[{\"database\": \"a\", \"user\": \"u\", \"cl_active\": 1, \"cl_waiting\": 2, "
              "\"sv_active\": 3, \"sv_idle\": 4, \"sv_login\": 5, \"maxwait_us\": 0},"
              " {\"database\": \"b\", \"user\": \"v\", \"cl_active\": 10, \"cl_waiting\": 20, "
              "\"sv_active\": 30, \"sv_idle\": 40, \"sv_login\": 50, \"maxwait_us\": 250}]",
              NULL, NULL, NULL, NULL);
    assert_samples(&in, "pgturbo_pool_clients_active{database=\"a\",user=\"u\"} 1\n"
                        "pgturbo_pool_clients_active{database=\"b\",user=\"v\"} 10\n"
                        "pgturbo_pool_clients_waiting{database=\"a\",user=\"u\"} 2\n"
                        "pgturbo_pool_clients_waiting{database=\"b\",user=\"v\"} 20\n"
                        "pgturbo_pool_servers_active{database=\"a\",user=\"u\"} 3\n"
                        "pgturbo_pool_servers_active{database=\"b\",user=\"v\"} 30\n"
                        "pgturbo_pool_servers_idle{database=\"a\",user=\"u\"} 4\n"
                        "pgturbo_pool_servers_idle{database=\"b\",user=\"v\"} 40\n"
                        "pgturbo_pool_servers_login{database=\"a\",user=\"u\"} 5\n"
                        "pgturbo_pool_servers_login{database=\"b\",user=\"v\"} 50\n"
                        "pgturbo_pool_maxwait_seconds{database=\"a\",user=\"u\"} 0\n"
                        "pgturbo_pool_maxwait_seconds{database=\"b\",user=\"v\"} 0.00025\n");
    input_free(&in);
}

static void pool_fields_of_the_wrong_type_are_left_out(void **state)
{
    metrics_input_t in = input("[{\"database\": \"a\", \"user\": \"u\", \"cl_active\": \"3\"},"
                               " {\"user\": \"u\", \"cl_active\": 3},"
                               " {\"database\": \"c\", \"user\": \"u\", \"cl_active\": 7}]",
                               NULL, NULL, NULL, NULL);
    assert_samples(&in, "pgturbo_pool_clients_active{database=\"c\",user=\"u\"} 7\n");
    input_free(&in);
}

static void microseconds_become_exact_decimal_seconds(void **state)
{
    metrics_input_t in = input("[{\"database\": \"a\", \"user\": \"u\", \"maxwait_us\": 1},"
                               " {\"database\": \"b\", \"user\": \"u\", \"maxwait_us\": 100000},"
                               " {\"database\": \"c\", \"user\": \"u\", \"maxwait_us\": 123456789},"
                               " {\"database\": \"d\", \"user\": \"u\", \"maxwait_us\": 5000000},"
                               " {\"database\": \"e\", \"user\": \"u\", \"maxwait_us\": 2.5}]",
                               NULL, NULL, NULL, NULL);
    assert_samples(&in, "pgturbo_pool_maxwait_seconds{database=\"a\",user=\"u\"} 0.000001\n"
                        "pgturbo_pool_maxwait_seconds{database=\"b\",user=\"u\"} 0.1\n"
                        "pgturbo_pool_maxwait_seconds{database=\"c\",user=\"u\"} 123.456789\n"
                        "pgturbo_pool_maxwait_seconds{database=\"d\",user=\"u\"} 5\n"
                        "pgturbo_pool_maxwait_seconds{database=\"e\",user=\"u\"} 2.5e-06\n");
    input_free(&in);
}

static void label_values_escape_backslash_quote_and_newline(void **state)
{
    metrics_input_t in =
        input("[{\"database\": \"a\\\"b\\\\c\", \"user\": \"x\\ny\", \"cl_active\": 1}]", NULL,
              NULL, NULL, "[{\"name\": \"p95\", \"subject\": \"db \\\"q\\\"\\\\\\n\"}]");
    assert_samples(&in, "pgturbo_pool_clients_active{database=\"a\\\"b\\\\c\",user=\"x\\ny\"} 1\n"
                        "pgturbo_alert{name=\"p95\",subject=\"db \\\"q\\\"\\\\\\n\"} 1\n");
    input_free(&in);
}

static void counters_are_named_pgturbo_key_total(void **state)
{
    metrics_input_t in =
        input(NULL, NULL, NULL,
              "{\"counters\": {\"queries\": 12, \"slow_queries\": 3, \"bytes_total\": 5, "
              "\"weird-key.x\": 2, \"exec_time_ms\": 0.5, \"text\": \"no\", \"\": 1}}",
              NULL);
    char *text = render(&in);
    char *got = samples(text);
    assert_string_equal(got, "pgturbo_queries_total 12\n"
                             "pgturbo_slow_queries_total 3\n"
                             "pgturbo_bytes_total 5\n"
                             "pgturbo_weird_key_x_total 2\n"
                             "pgturbo_exec_time_ms_total 0.5\n");
    assert_non_null(strstr(text, "# TYPE pgturbo_queries_total counter\n"));
    assert_non_null(strstr(text, "# TYPE pgturbo_weird_key_x_total counter\n"));
    free(got);
    free(text);
    input_free(&in);
}

static void counters_that_collide_once_renamed_appear_once(void **state)
{
    metrics_input_t in =
        input(NULL, NULL, NULL, "{\"counters\": {\"a-b\": 1, \"a_b\": 2, \"a.b_total\": 3}}", NULL);
    char *text = render(&in);
    char *got = samples(text);
    assert_string_equal(got, "pgturbo_a_b_total 1\n");
    assert_null(strstr(strstr(text, "# TYPE pgturbo_a_b_total") + 1, "# TYPE pgturbo_a_b_total"));
    free(got);
    free(text);
    input_free(&in);
}

static void histogram_takes_its_infinite_bucket_from_the_largest_count(void **state)
{
    /* A bucket ahead of count (a record in flight), and UINT64_MAX as a bound, which JSON
     * carries as -1: the +Inf bucket and _count are 9, and the -1 bound is not printed. */
    metrics_input_t in = input(NULL, NULL, NULL,
                               "{\"databases\": [{\"database\": \"a\", \"count\": 8, "
                               "\"sum_us\": 1000001, \"le\": [100, 1000, -1], "
                               "\"buckets\": [4, 9, 9]}]}",
                               NULL);
    assert_samples(&in, "pgturbo_query_duration_seconds_bucket{database=\"a\",le=\"0.0001\"} 4\n"
                        "pgturbo_query_duration_seconds_bucket{database=\"a\",le=\"0.001\"} 9\n"
                        "pgturbo_query_duration_seconds_bucket{database=\"a\",le=\"+Inf\"} 9\n"
                        "pgturbo_query_duration_seconds_sum{database=\"a\"} 1.000001\n"
                        "pgturbo_query_duration_seconds_count{database=\"a\"} 9\n");
    input_free(&in);
}

static void histogram_rows_missing_a_field_are_left_out(void **state)
{
    metrics_input_t in = input(
        NULL, NULL, NULL,
        "{\"databases\": ["
        "{\"count\": 1, \"sum_us\": 1, \"le\": [1], \"buckets\": [1]},"
        "{\"database\": \"b\", \"sum_us\": 1, \"le\": [1], \"buckets\": [1]},"
        "{\"database\": \"c\", \"count\": 1, \"sum_us\": 1, \"le\": 5, \"buckets\": [1]},"
        "{\"database\": \"d\", \"count\": 1, \"sum_us\": 1, \"le\": [\"x\"], \"buckets\": [1]},"
        "{\"database\": \"e\", \"count\": 1, \"sum_us\": 1, \"le\": [], \"buckets\": []}],"
        " \"fingerprints\": [{\"database\": \"e\", \"count\": 1, \"sum_us\": 1, \"le\": [], "
        "\"buckets\": []}]}",
        NULL);
    assert_samples(&in, "pgturbo_query_duration_seconds_bucket{database=\"e\",le=\"+Inf\"} 1\n"
                        "pgturbo_query_duration_seconds_sum{database=\"e\"} 0.000001\n"
                        "pgturbo_query_duration_seconds_count{database=\"e\"} 1\n");
    input_free(&in);
}

static void histogram_uses_the_shorter_of_le_and_buckets(void **state)
{
    metrics_input_t in = input(NULL, NULL, NULL,
                               "{\"fingerprints\": [{\"database\": \"a\", \"fingerprint\": "
                               "\"0123456789abcdef\", \"count\": 3, \"sum_us\": 0, "
                               "\"le\": [10, 20, 30], \"buckets\": [1, 2]}]}",
                               NULL);
    assert_samples(&in, "pgturbo_fingerprint_duration_seconds_bucket{database=\"a\",fingerprint="
                        "\"0123456789abcdef\",le=\"0.00001\"} 1\n"
                        "pgturbo_fingerprint_duration_seconds_bucket{database=\"a\",fingerprint="
                        "\"0123456789abcdef\",le=\"0.00002\"} 2\n"
                        "pgturbo_fingerprint_duration_seconds_bucket{database=\"a\",fingerprint="
                        "\"0123456789abcdef\",le=\"+Inf\"} 3\n"
                        "pgturbo_fingerprint_duration_seconds_sum{database=\"a\",fingerprint="
                        "\"0123456789abcdef\"} 0\n"
                        "pgturbo_fingerprint_duration_seconds_count{database=\"a\",fingerprint="
                        "\"0123456789abcdef\"} 3\n");
    input_free(&in);
}

static void alerts_without_name_or_subject_are_left_out(void **state)
{
    metrics_input_t in = input(NULL, NULL, NULL, NULL,
                               "[{\"name\": \"p95\"}, {\"subject\": \"x\"},"
                               " {\"name\": \"error_rate\", \"subject\": \"app\"}]");
    assert_samples(&in, "pgturbo_alert{name=\"error_rate\",subject=\"app\"} 1\n");
    input_free(&in);
}

static void scheduler_jobs_have_runs_failures_and_a_success_time_once_they_had_one(void **state)
{
    const scheduler_job_info_t jobs[] = {
        {.database = "app", .runs = 2, .failures = 0, .last_success = 1767225600123},
        {.database = "down", .runs = 4, .failures = 4, .last_success = 0},
        {.database = "new \"db\"", .runs = 0, .failures = 0, .last_success = 0},
    };
    metrics_input_t in = {.jobs = jobs, .n_jobs = 3};
    assert_samples(
        &in,
        "pgturbo_scheduler_runs_total{job=\"partition_maintain\",database=\"app\"} 2\n"
        "pgturbo_scheduler_runs_total{job=\"partition_maintain\",database=\"down\"} 4\n"
        "pgturbo_scheduler_runs_total{job=\"partition_maintain\",database=\"new \\\"db\\\"\"} 0\n"
        "pgturbo_scheduler_failures_total{job=\"partition_maintain\",database=\"app\"} 0\n"
        "pgturbo_scheduler_failures_total{job=\"partition_maintain\",database=\"down\"} 4\n"
        "pgturbo_scheduler_failures_total{job=\"partition_maintain\",database=\"new "
        "\\\"db\\\"\"} 0\n"
        "pgturbo_scheduler_last_success_timestamp_seconds{job=\"partition_maintain\","
        "database=\"app\"} 1767225600.123\n");
}

/* The Redis link's figures: counters with _total, booleans as 0/1 gauges; none without it. */
static void cache_redis_link_is_counters_and_gauges(void **state)
{
    metrics_input_t in = input(NULL, NULL, NULL, NULL, NULL);
    in.cache = parse("{\"totals\": {\"hits\": 3, \"warmed\": 4}, \"rules\": [], \"redis\": "
                     "{\"connected\": true, \"fresh\": false, \"peers\": 2, \"published\": 7, "
                     "\"hits\": 5}}");
    char *text = render(&in);
    assert_non_null(strstr(text, "\npgturbo_cache_hits_total 3\n"));
    assert_non_null(strstr(text, "\npgturbo_cache_warmed_total 4\n"));
    assert_non_null(strstr(text, "\npgturbo_cache_redis_published_total 7\n"));
    assert_non_null(strstr(text, "\npgturbo_cache_redis_hits_total 5\n"));
    assert_non_null(strstr(text, "\npgturbo_cache_redis_connected 1\n"));
    assert_non_null(strstr(text, "\npgturbo_cache_redis_fresh 0\n"));
    assert_non_null(strstr(text, "\npgturbo_cache_redis_peers 2\n"));
    assert_non_null(strstr(text, "# TYPE pgturbo_cache_redis_connected gauge\n"));
    free(text);
    json_decref((json_t *)in.cache);
    in.cache = parse("{\"totals\": {\"hits\": 3}, \"rules\": [], \"redis\": null}");
    text = render(&in);
    assert_null(strstr(text, "pgturbo_cache_redis_"));
    free(text);
    json_decref((json_t *)in.cache);
    input_free(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_text_of_a_small_state_is_exact),
        cmocka_unit_test(empty_state_has_every_family_header_and_zero_connections),
        cmocka_unit_test(null_inputs_leave_their_families_empty),
        cmocka_unit_test(every_pool_gets_all_six_gauges),
        cmocka_unit_test(pool_fields_of_the_wrong_type_are_left_out),
        cmocka_unit_test(microseconds_become_exact_decimal_seconds),
        cmocka_unit_test(label_values_escape_backslash_quote_and_newline),
        cmocka_unit_test(counters_are_named_pgturbo_key_total),
        cmocka_unit_test(counters_that_collide_once_renamed_appear_once),
        cmocka_unit_test(histogram_takes_its_infinite_bucket_from_the_largest_count),
        cmocka_unit_test(histogram_rows_missing_a_field_are_left_out),
        cmocka_unit_test(histogram_uses_the_shorter_of_le_and_buckets),
        cmocka_unit_test(alerts_without_name_or_subject_are_left_out),
        cmocka_unit_test(scheduler_jobs_have_runs_failures_and_a_success_time_once_they_had_one),
        cmocka_unit_test(cache_redis_link_is_counters_and_gauges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
