/*
 * metrics.h
 *    GET /metrics: the daemon's state in Prometheus' text exposition format (version 0.0.4),
 *    built from the JSON snapshots of inspect.h and the scheduler's jobs (scheduler.h).
 *
 * Rendering is a pure function of those JSON values (metrics_render), so it is unit-tested
 * without a daemon; metrics_collect gathers the values and renders them. Families:
 *   pgturbo_pool_clients_active, _clients_waiting, _servers_active, _servers_idle,
 *   _servers_login, pgturbo_pool_maxwait_seconds   gauges {database, user}
 *   pgturbo_clients, pgturbo_servers               gauges: connections right now
 *   pgturbo_<name>_total                           counters, one per key of "counters"
 *   pgturbo_query_duration_seconds                 histogram {database}
 *   pgturbo_fingerprint_duration_seconds           histogram {database, fingerprint}, only
 *                                                  for the top METRICS_TOP_FINGERPRINTS
 *                                                  fingerprints by total time
 *   pgturbo_alert                                  gauge {name, subject}: 1 per active alert
 *   pgturbo_scheduler_runs_total,
 *   pgturbo_scheduler_failures_total               counters {job, database}
 *   pgturbo_scheduler_last_success_timestamp_seconds
 *                                                  gauge {job, database}: absent until the
 *                                                  job's first success
 *   pgturbo_cache_<counter>_total                  counters of the result cache: hits,
 *                                                  misses, stale, expired, evictions, inserts,
 *                                                  rejected, invalidations, write_bumps,
 *                                                  everything_bumps
 *   pgturbo_cache_entries, _bytes, _value_bytes, _stored_bytes
 *                                                  gauges of the result cache
 *   pgturbo_cache_rule_hits_total, _misses_total   counters {rule}
 *   pgturbo_cache_rule_entries, _bytes             gauges {rule}
 *   pgturbo_cache_redis_<counter>_total            counters of the Redis link (published,
 *                                                  received, commits_held, gets, hits ...)
 *   pgturbo_cache_redis_connected, _fresh, _peers  gauges of the Redis link, when there is one
 */
#ifndef PGTURBO_METRICS_H
#define PGTURBO_METRICS_H

#include "scheduler.h"

#include <jansson.h>
#include <stddef.h>

/* Fingerprints given a histogram of their own: bounds the number of series. */
#define METRICS_TOP_FINGERPRINTS 20

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* What /metrics is built from, all borrowed. A NULL member leaves its families empty. */
typedef struct metrics_input {
    const json_t *pools;              /* inspect_pools() */
    const json_t *clients;            /* inspect_clients() */
    const json_t *servers;            /* inspect_servers() */
    const json_t *metrics;            /* inspect_metrics(METRICS_TOP_FINGERPRINTS) */
    const json_t *alerts;             /* inspect_alerts() */
    const json_t *cache;              /* cache_snapshot(), or NULL when the cache is off */
    const scheduler_job_info_t *jobs; /* scheduler_snapshot(); NULL when n_jobs is 0 */
    int n_jobs;
} metrics_input_t;

/*
 * Renders the exposition text of in. Returns a NUL-terminated string the caller frees with
 * free(), its length (without the NUL) in *len, or NULL when memory runs out. Values of the
 * wrong JSON type are left out rather than guessed at; label values are escaped as the
 * format requires (backslash, double quote, newline).
 */
char *metrics_render(const metrics_input_t *in, size_t *len);

/*
 * Gathers the snapshots from the workers and renders them, as metrics_render. Blocks until
 * every worker has answered, so it must not be called from a worker thread.
 */
char *metrics_collect(size_t *len);

#endif /* PGTURBO_METRICS_H */
