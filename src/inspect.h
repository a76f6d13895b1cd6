/*
 * inspect.h
 *    Snapshots of the daemon's state as JSON (jansson) for the admin HTTP API: pools,
 *    clients, servers, and the query statistics of stats.c, gathered from every worker in the
 *    worker's own thread (worker_call_all), so nothing on the query path takes a lock.
 *
 * Every function blocks the calling thread until each worker has answered, so it must not be
 * called from a worker (the admin API's threads call it). Each returns a new JSON value the
 * caller releases with json_decref, or NULL when memory runs out. Times are milliseconds as
 * JSON reals unless a name ends in _us; timestamps are ISO 8601 UTC strings.
 *
 * Shapes (arrays of objects; keys in this order):
 *   pools:    database, user, pool_mode, cl_active, cl_waiting, sv_active, sv_idle, sv_login,
 *             maxwait_us, paused
 *   clients:  id, user, database, state, addr, port, tls, application_name, connect_time,
 *             wait_us
 *   servers:  id, user, database, state, addr, port, tls, backend_pid, connect_time, client_id
 *   queries:  fingerprint (16 hex digits), database, kind, query (normalized), calls, errors,
 *             rows, total_exec_time, mean_exec_time, min_exec_time, max_exec_time, p50, p95,
 *             p99, p999, wait_time (pg_stat_statements' names where they exist)
 *   slow:     time, database, user, level ("warning"|"error"), duration, fingerprint, query,
 *             parameters (array of strings, only with log_parameters = on)
 *   routes:   route, requests, slow_requests, queries_per_request {mean, p50, p95, p99},
 *             db_time_per_request {mean, p50, p95, p99}
 *   slow requests: time, request_id, route, queries, db_time, level
 *   n_plus_one: time, database, scope ("transaction"|"request"), request_id, fingerprint,
 *             query, count, preceding_query, suggestion
 *   alerts:   name ("p95"|"error_rate"|"waiting_clients"), subject, value, threshold, since
 *   scheduler: job ("partition_maintain"), database, interval_s, runs, last_status
 *             ("never"|"ok"|"failed"), last_started (null before the first run),
 *             last_duration_ms (integer, or null), last_message (or null), next_run
 */
#ifndef PGTURBO_INSPECT_H
#define PGTURBO_INSPECT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum inspect_sort {
    INSPECT_SORT_TOTAL,  /* total_exec_time, descending */
    INSPECT_SORT_P95,    /* p95, descending */
    INSPECT_SORT_CALLS,  /* calls, descending */
    INSPECT_SORT_ERRORS, /* errors, descending */
} inspect_sort_t;

json_t *inspect_pools(void);
json_t *inspect_clients(void);
json_t *inspect_servers(void);

/* Queries sorted and cut to limit (0 = all), of one database or all (database NULL). */
json_t *inspect_queries(inspect_sort_t sort, int limit, const char *database);

/* One fingerprint's row (over all databases summed into one row per database: an array), or
 * an empty array when it is unknown. */
json_t *inspect_query(uint64_t fingerprint);

/* The parameter samples of a fingerprint (for pgturbo advise; admin only): [{"database",
 * "query" (the text as sent, or the normalized text), "parameters" (array or null)}]. */
json_t *inspect_samples(uint64_t fingerprint);

/* Slow-log entries newer than since (Unix ms; 0 = all), newest first, at most limit. */
json_t *inspect_slow(int64_t since_ms, int limit);

json_t *inspect_routes(void);
json_t *inspect_slow_requests(int limit);
json_t *inspect_n_plus_one(int limit);
json_t *inspect_alerts(void);

/* The [scheduler] jobs and their last runs, from scheduler_snapshot(); never waits for the
 * workers (nor for a run in progress). */
json_t *inspect_scheduler(void);

/*
 * What /metrics shows, as JSON: {"counters": {name: value...}, "databases": [{"database",
 * "count", "sum_us", "le": [bounds us...], "buckets": [cumulative counts...]}],
 * "fingerprints": [the top_n by total time, same fields plus "fingerprint"]}.
 */
json_t *inspect_metrics(int top_n);

/*
 * pgturbo report (report.h) of the first [databases] entry, with the daemon's pools and
 * slow-query counts; NULL with a reason in why when PostgreSQL cannot be reached or the
 * report fails.
 */
json_t *inspect_report(char *why, size_t len);

/* Forgets every query statistic, slow-log entry, route and finding (POST stats/reset). */
void inspect_reset(void);

/* Whether PostgreSQL answers: a connection to the first [databases] entry as its user runs
 * SELECT 1 within 2 s. false with a reason in why. */
bool inspect_health(char *why, size_t len);

#endif /* PGTURBO_INSPECT_H */
