/*
 * test_scheduler.c
 *    The [scheduler] of a running pgturbo, seen through GET /api/v1/scheduler, /metrics and
 *    the log: a partition_maintain job on the test cluster runs at start and then every
 *    second, each run ok with its summary line; a job on an unreachable server fails with the
 *    connection error, run after run, while the proxy serves queries; run_at_start = no waits
 *    an interval; a reload keeps the state of a job that stays and drops a removed one.
 *
 *    The assertions are on the summary ("done in N ms (K actions)"), the counters and the
 *    status, never on what partition_maintain writes, so that they hold for any database
 *    without pgturbo.partition_config, where a run does nothing.
 */
#include "harness.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define TOKEN       "it-scheduler-token"
#define WAIT_MS     15000 /* the longest any test waits for runs of one-second jobs */
#define SUMMARY_OK  "scheduler: partition maintain postgres: done in "
#define SUMMARY_BAD "scheduler: partition maintain nowhere: failed: cannot connect: "

/* GET path with the token; fails the test unless the answer is 200. Returns the body, which
 * the caller frees. */
static char *http_get(int port, const char *path)
{
    harness_response_t r = harness_http(port, "GET", path, "Bearer " TOKEN);
    if (r.status != 200)
        fail_msg("GET %s: expected 200, got %d: \"%.300s\"", path, r.status, r.body);
    return r.body;
}

/* GET /api/v1/scheduler as JSON (an array); release with json_decref. */
static json_t *get_jobs(int port)
{
    char *body = http_get(port, "/api/v1/scheduler");
    json_error_t error;
    json_t *jobs = json_loads(body, 0, &error);
    if (jobs == NULL || !json_is_array(jobs))
        fail_msg("GET /api/v1/scheduler: not a JSON array: \"%.300s\"", body);
    free(body);
    return jobs;
}

/* The job of jobs on database, or NULL. Borrowed from jobs. */
static json_t *find_job(json_t *jobs, const char *database)
{
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job)
    {
        const char *db = json_string_value(json_object_get(job, "database"));
        if (db != NULL && strcmp(db, database) == 0)
            return job;
    }
    return NULL;
}

static json_int_t int_member(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("member %s is missing or not an integer", key);
    return json_integer_value(v);
}

static const char *string_member(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (v == NULL)
        fail_msg("member %s is missing or not a string", key);
    return v;
}

/* Polls the API until the job on database has finished at least runs runs; returns the job
 * list of that answer (release with json_decref). Fails the test after WAIT_MS. */
static json_t *wait_runs(int port, const char *database, json_int_t runs)
{
    long long deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        json_t *jobs = get_jobs(port);
        json_t *job = find_job(jobs, database);
        if (job == NULL)
            fail_msg("no job on %s in GET /api/v1/scheduler", database);
        if (int_member(job, "runs") >= runs)
            return jobs;
        json_decref(jobs);
        if (harness_now_ms() > deadline)
            fail_msg("the job on %s did not finish %lld runs within %d ms", database,
                     (long long)runs, WAIT_MS);
        harness_sleep_ms(50);
    }
}

/* ---- checks ---- */

/* Whether s is "YYYY-MM-DDTHH:MM:SSZ". */
static bool is_iso_time(const char *s)
{
    int y, mo, d, h, mi, sec;
    char z;
    return s != NULL && strlen(s) == 20 &&
           sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &sec, &z) == 7 && z == 'Z';
}

/* Whether message is "done in N ms (K actions)". */
static bool is_summary(const char *message)
{
    long long ms = -1;
    int actions = -1;
    char end = '\0';
    return sscanf(message, "done in %lld ms (%d actions%c", &ms, &actions, &end) == 3 && ms >= 0 &&
           actions >= 0 && end == ')' && message[strlen(message) - 1] == ')';
}

/* ---- daemons ---- */

/* Waits until the admin API on port accepts connections. */
static void wait_listening(int port)
{
    long long deadline = harness_now_ms() + 5000;
    for (;;) {
        int fd = harness_raw_try_connect(port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        if (harness_now_ms() > deadline)
            fail_msg("the admin API is not listening on port %d", port);
        harness_sleep_ms(20);
    }
}

/* The [pgturbo] lines of the API on api_port, then a [scheduler] section of the lines in
 * scheduler (none when NULL). */
static void settings(char *out, size_t len, int api_port, const char *scheduler)
{
    snprintf(out, len, "admin_listen = 127.0.0.1:%d\nadmin_token = " TOKEN "\n%s%s", api_port,
             scheduler != NULL ? "[scheduler]\n" : "", scheduler != NULL ? scheduler : "");
}

/* The partition_maintain line of a job on the test cluster's database postgres. */
static void cluster_job(char *out, size_t len, const char *interval)
{
    snprintf(out, len,
             "partition_maintain = %s host=127.0.0.1 port=%d user=postgres dbname=postgres\n",
             interval, harness_pg_port());
}

/* Starts pgturbo with the API on a free port, which it returns, and the [scheduler] lines. */
static int start(pgturbo_proc_t *p, const char *scheduler)
{
    char text[2048];
    int api_port = harness_free_port();
    settings(text, sizeof(text), api_port, scheduler);
    harness_start_pgturbo(p, text, NULL);
    wait_listening(api_port);
    return api_port;
}

static void assert_proxy_serves(const pgturbo_proc_t *p)
{
    PGconn *c = harness_connect(p->port, "postgres", NULL);
    char *v = harness_query_value(c, "SELECT 40 + 2");
    assert_string_equal(v, "42");
    free(v);
    PQfinish(c);
}

/* ---- tests ---- */

static void job_runs_at_start_and_every_interval(void **state)
{
    char job[512], scheduler[600];
    pgturbo_proc_t p;
    cluster_job(job, sizeof(job), "1");
    snprintf(scheduler, sizeof(scheduler), "%srun_at_start = yes\n", job);
    int api = start(&p, scheduler);

    json_t *jobs = wait_runs(api, "postgres", 2);
    assert_int_equal(json_array_size(jobs), 1);
    json_t *j = json_array_get(jobs, 0);
    assert_string_equal(string_member(j, "job"), "partition_maintain");
    assert_string_equal(string_member(j, "database"), "postgres");
    assert_int_equal(int_member(j, "interval_s"), 1);
    assert_string_equal(string_member(j, "last_status"), "ok");
    assert_true(is_iso_time(string_member(j, "last_started")));
    assert_true(int_member(j, "last_duration_ms") >= 0);
    if (!is_summary(string_member(j, "last_message")))
        fail_msg("last_message is not a summary: \"%s\"", string_member(j, "last_message"));
    assert_true(is_iso_time(string_member(j, "next_run")));
    assert_null(json_object_get(j, "conninfo"));
    json_int_t runs = int_member(j, "runs");
    json_decref(jobs);

    /* Every run logs its summary; the log may be a run ahead of the answer above. */
    assert_true(harness_count_in_file(p.log, SUMMARY_OK) >= runs);
    assert_int_equal(
        harness_count_in_file(p.log, "scheduler: partition maintain postgres every 1 s"), 1);
    char *metrics = http_get(api, "/metrics");
    assert_non_null(strstr(metrics, "\npgturbo_scheduler_runs_total{job=\"partition_maintain\","
                                    "database=\"postgres\"} "));
    assert_non_null(strstr(metrics, "\npgturbo_scheduler_failures_total{job=\"partition_"
                                    "maintain\",database=\"postgres\"} 0\n"));
    assert_non_null(strstr(metrics, "\npgturbo_scheduler_last_success_timestamp_seconds{job=\""
                                    "partition_maintain\",database=\"postgres\"} 1"));
    free(metrics);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void unreachable_database_fails_while_the_proxy_serves(void **state)
{
    char good[512], scheduler[1200], message[256];
    pgturbo_proc_t p;
    int nowhere = harness_free_port();
    cluster_job(good, sizeof(good), "1");
    snprintf(scheduler, sizeof(scheduler),
             "%spartition_maintain = 1 host=127.0.0.1 port=%d user=postgres dbname=nowhere\n", good,
             nowhere);
    int api = start(&p, scheduler);

    json_t *jobs = wait_runs(api, "nowhere", 2);
    assert_int_equal(json_array_size(jobs), 2);
    json_t *j = find_job(jobs, "nowhere");
    assert_string_equal(string_member(j, "last_status"), "failed");
    snprintf(message, sizeof(message),
             "cannot connect: connection to server at \"127.0.0.1\", port %d failed: Connection "
             "refused",
             nowhere);
    if (strncmp(string_member(j, "last_message"), message, strlen(message)) != 0)
        fail_msg("last_message \"%s\" does not start with \"%s\"", string_member(j, "last_message"),
                 message);
    assert_true(is_iso_time(string_member(j, "last_started")));
    assert_true(is_iso_time(string_member(j, "next_run")));
    json_decref(jobs);

    /* The failing job keeps failing, and neither the good job nor the proxy minds. */
    jobs = wait_runs(api, "postgres", 2);
    assert_string_equal(string_member(find_job(jobs, "postgres"), "last_status"), "ok");
    json_decref(jobs);
    assert_proxy_serves(&p);
    assert_true(harness_count_in_file(p.log, SUMMARY_BAD) >= 2);
    char *metrics = http_get(api, "/metrics");
    assert_non_null(strstr(metrics, "\npgturbo_scheduler_failures_total{job=\"partition_maintain\","
                                    "database=\"nowhere\"} "));
    assert_null(strstr(metrics, "\npgturbo_scheduler_failures_total{job=\"partition_maintain\","
                                "database=\"nowhere\"} 0\n"));
    assert_null(strstr(metrics, "last_success_timestamp_seconds{job=\"partition_maintain\","
                                "database=\"nowhere\"}"));
    free(metrics);
    assert_true(harness_pgturbo_alive(&p));
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void without_run_at_start_a_job_waits_an_interval(void **state)
{
    char job[512], scheduler[600];
    pgturbo_proc_t p;
    cluster_job(job, sizeof(job), "3600");
    snprintf(scheduler, sizeof(scheduler), "run_at_start = no\n%s", job);
    int api = start(&p, scheduler);

    json_t *jobs = get_jobs(api);
    assert_int_equal(json_array_size(jobs), 1);
    json_t *j = json_array_get(jobs, 0);
    assert_int_equal(int_member(j, "interval_s"), 3600);
    assert_int_equal(int_member(j, "runs"), 0);
    assert_string_equal(string_member(j, "last_status"), "never");
    assert_true(json_is_null(json_object_get(j, "last_started")));
    assert_true(json_is_null(json_object_get(j, "last_duration_ms")));
    assert_true(json_is_null(json_object_get(j, "last_message")));
    assert_true(is_iso_time(string_member(j, "next_run")));
    json_decref(jobs);
    assert_int_equal(harness_count_in_file(p.log, SUMMARY_OK), 0);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void reload_keeps_a_staying_job_and_drops_a_removed_one(void **state)
{
    char job[512], text[2048];
    pgturbo_proc_t p;
    cluster_job(job, sizeof(job), "1");
    int api = start(&p, job);
    json_t *jobs = wait_runs(api, "postgres", 1);
    json_int_t runs = int_member(json_array_get(jobs, 0), "runs");
    json_decref(jobs);

    /* The same job: its runs go on from where they were. */
    settings(text, sizeof(text), api, job);
    harness_reload_pgturbo(&p, text, NULL);
    jobs = get_jobs(api);
    assert_int_equal(json_array_size(jobs), 1);
    assert_true(int_member(json_array_get(jobs, 0), "runs") >= runs);
    json_decref(jobs);
    json_decref(wait_runs(api, "postgres", runs + 1));

    /* No [scheduler] at all: no jobs, and none runs any more. */
    settings(text, sizeof(text), api, NULL);
    harness_reload_pgturbo(&p, text, NULL);
    jobs = get_jobs(api);
    assert_int_equal(json_array_size(jobs), 0);
    json_decref(jobs);
    assert_int_equal(harness_count_in_file(p.log, "scheduler: no jobs"), 1);
    /* Proving that nothing runs takes waiting longer than the job's interval. */
    int logged = harness_count_in_file(p.log, SUMMARY_OK);
    harness_sleep_ms(1500);
    assert_int_equal(harness_count_in_file(p.log, SUMMARY_OK), logged);
    char *metrics = http_get(api, "/metrics");
    assert_null(strstr(metrics, "\npgturbo_scheduler_runs_total{"));
    free(metrics);
    assert_proxy_serves(&p);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(job_runs_at_start_and_every_interval),
        cmocka_unit_test(unreachable_database_fails_while_the_proxy_serves),
        cmocka_unit_test(without_run_at_start_a_job_waits_an_interval),
        cmocka_unit_test(reload_keeps_a_staying_job_and_drops_a_removed_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
