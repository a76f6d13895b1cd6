/*
 * metrics.c
 *    The Prometheus text exposition of /metrics, rendered from inspect.h's JSON and the
 *    scheduler's jobs; see metrics.h.
 *
 * Every family is written whole (HELP, TYPE, then all its samples) before the next, as the
 * format requires. Times that arrive as integer microseconds are written as exact decimal
 * seconds ("0.0005", not "0.00050000000000000001"), so histogram bounds read as configured.
 */
#include "metrics.h"

#include "cache.h"
#include "inspect.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A pool gauge: the family, the key of the pools row it shows, and whether the key holds
 * microseconds to show as seconds. */
typedef struct pool_gauge {
    const char *name;
    const char *key;
    bool micros;
    const char *help;
} pool_gauge_t;

static const pool_gauge_t pool_gauges[] = {
    {"pgturbo_pool_clients_active", "cl_active", false,
     "Logged-in clients of the pool that are not waiting for a server connection."},
    {"pgturbo_pool_clients_waiting", "cl_waiting", false,
     "Clients of the pool waiting for a server connection."},
    {"pgturbo_pool_servers_active", "sv_active", false,
     "Server connections of the pool in use by a client."},
    {"pgturbo_pool_servers_idle", "sv_idle", false,
     "Server connections of the pool ready for a client."},
    {"pgturbo_pool_servers_login", "sv_login", false,
     "Server connections of the pool still connecting or logging in."},
    {"pgturbo_pool_maxwait_seconds", "maxwait_us", true,
     "How long the pool's longest-waiting client has waited."},
};

/* A double in the shortest form that reads back as the same value. */
static void put_double(FILE *f, double v)
{
    if (isnan(v)) {
        fputs("NaN", f);
        return;
    }
    if (isinf(v)) {
        fputs(v > 0 ? "+Inf" : "-Inf", f);
        return;
    }
    char text[40];
    snprintf(text, sizeof(text), "%.15g", v);
    if (strtod(text, NULL) != v)
        snprintf(text, sizeof(text), "%.17g", v);
    fputs(text, f);
}

/* A JSON number as a sample value. The caller has checked json_is_number. */
static void put_number(FILE *f, const json_t *v)
{
    if (json_is_integer(v))
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        put_double(f, json_real_value(v));
}

/* A JSON number of microseconds as seconds: exact for integers. */
static void put_micros_as_seconds(FILE *f, const json_t *v)
{
    if (!json_is_integer(v)) {
        put_double(f, json_real_value(v) / 1e6);
        return;
    }
    json_int_t us = json_integer_value(v);
    unsigned long long u = us < 0 ? 0ULL - (unsigned long long)us : (unsigned long long)us;
    if (us < 0)
        fputc('-', f);
    fprintf(f, "%llu", u / 1000000);
    unsigned long long frac = u % 1000000;
    if (frac != 0) {
        char digits[8];
        snprintf(digits, sizeof(digits), "%06llu", frac);
        size_t n = strlen(digits);
        while (n > 0 && digits[n - 1] == '0')
            n--;
        fprintf(f, ".%.*s", (int)n, digits);
    }
}

/* name="value", with a comma before it unless first; the value escaped as the format says. */
static void put_label(FILE *f, bool first, const char *name, const char *value)
{
    fprintf(f, "%s%s=\"", first ? "" : ",", name);
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '"')
            fputs("\\\"", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void put_header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The string member key of object o, or NULL when it is missing or not a string. */
static const char *string_of(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void put_pools(FILE *f, const json_t *pools)
{
    for (size_t g = 0; g < sizeof(pool_gauges) / sizeof(pool_gauges[0]); g++) {
        const pool_gauge_t *pg = &pool_gauges[g];
        put_header(f, pg->name, "gauge", pg->help);
        size_t i;
        const json_t *row;
        json_array_foreach(pools, i, row)
        {
            const char *database = string_of(row, "database");
            const char *user = string_of(row, "user");
            const json_t *v = json_object_get(row, pg->key);
            if (database == NULL || user == NULL || !json_is_number(v))
                continue;
            fprintf(f, "%s{", pg->name);
            put_label(f, true, "database", database);
            put_label(f, false, "user", user);
            fputs("} ", f);
            if (pg->micros)
                put_micros_as_seconds(f, v);
            else
                put_number(f, v);
            fputc('\n', f);
        }
    }
}

static void put_connection_count(FILE *f, const char *name, const char *help, const json_t *list)
{
    put_header(f, name, "gauge", help);
    if (json_is_array(list))
        fprintf(f, "%s %zu\n", name, json_array_size(list));
}

/*
 * The family name of a counter key: "pgturbo_" + the key with every character Prometheus
 * does not allow in a name replaced by '_' + "_total" (unless the key ends so already).
 * False when the key is empty or too long for out.
 */
static bool counter_name(const char *key, char *out, size_t len)
{
    size_t klen = strlen(key);
    const char *suffix = klen >= 6 && strcmp(key + klen - 6, "_total") == 0 ? "" : "_total";
    if (klen == 0 || (size_t)snprintf(out, len, "pgturbo_%s%s", key, suffix) >= len)
        return false;
    for (char *p = out + strlen("pgturbo_"); *p != '\0'; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_';
        if (!ok)
            *p = '_';
    }
    return true;
}

static void put_counters(FILE *f, const json_t *counters)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)counters, key, v)
    {
        char name[256], help[320];
        if (!json_is_number(v) || !counter_name(key, name, sizeof(name)))
            continue;
        /* Two keys that differ only in characters a name cannot hold would make one family
         * twice, which scrapers reject: the first one wins. */
        bool seen = false;
        const char *k2;
        const json_t *v2;
        json_object_foreach((json_t *)counters, k2, v2)
        {
            char other[256];
            if (k2 == key)
                break;
            if (json_is_number(v2) && counter_name(k2, other, sizeof(other)) &&
                strcmp(other, name) == 0)
                seen = true;
        }
        if (seen)
            continue;
        snprintf(help, sizeof(help), "pgturbo's counter %s since start or the last reset.",
                 name + strlen("pgturbo_"));
        put_header(f, name, "counter", help);
        fprintf(f, "%s ", name);
        put_number(f, v);
        fputc('\n', f);
    }
}

/* database="...", and fingerprint="..." when with_fingerprint. */
static void put_series_labels(FILE *f, const json_t *row, bool with_fingerprint)
{
    put_label(f, true, "database", string_of(row, "database"));
    if (with_fingerprint)
        put_label(f, false, "fingerprint", string_of(row, "fingerprint"));
}

/* Whether a "databases" or "fingerprints" row has every field a histogram needs. */
static bool histogram_row_ok(const json_t *row, bool with_fingerprint)
{
    const json_t *le = json_object_get(row, "le");
    const json_t *buckets = json_object_get(row, "buckets");
    if (string_of(row, "database") == NULL ||
        (with_fingerprint && string_of(row, "fingerprint") == NULL) ||
        !json_is_integer(json_object_get(row, "count")) ||
        !json_is_number(json_object_get(row, "sum_us")) || !json_is_array(le) ||
        !json_is_array(buckets))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(le, i, v)
    {
        if (!json_is_number(v))
            return false;
    }
    json_array_foreach(buckets, i, v)
    {
        if (!json_is_integer(v))
            return false;
    }
    return true;
}

/* Whether a bound of "le" is a finite one; a negative or infinite one stands for +Inf (such as
 * UINT64_MAX cast to a JSON integer), which the count gives instead. */
static bool finite_bound(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) >= 0;
    double d = json_real_value(v);
    return isfinite(d) && d >= 0;
}

/*
 * One histogram family from rows of {database, [fingerprint,] count, sum_us, le, buckets}:
 * a _bucket per finite bound (le in seconds; buckets are cumulative counts), the +Inf bucket,
 * _sum in seconds and _count. The +Inf bucket and _count are the largest of count and the
 * buckets, so that a record counted in a bucket but not yet in count (a snapshot taken while
 * a worker records) cannot make the buckets decrease, which scrapers reject.
 */
static void put_histogram(FILE *f, const char *name, const char *help, const json_t *rows,
                          bool with_fingerprint)
{
    put_header(f, name, "histogram", help);
    size_t r;
    const json_t *row;
    json_array_foreach(rows, r, row)
    {
        if (!histogram_row_ok(row, with_fingerprint))
            continue;
        const json_t *le = json_object_get(row, "le");
        const json_t *buckets = json_object_get(row, "buckets");
        json_int_t total = json_integer_value(json_object_get(row, "count"));
        size_t n = json_array_size(le) < json_array_size(buckets) ? json_array_size(le)
                                                                  : json_array_size(buckets);
        for (size_t i = 0; i < json_array_size(buckets); i++)
            if (json_integer_value(json_array_get(buckets, i)) > total)
                total = json_integer_value(json_array_get(buckets, i));
        for (size_t i = 0; i < n; i++) {
            if (!finite_bound(json_array_get(le, i)))
                continue;
            fprintf(f, "%s_bucket{", name);
            put_series_labels(f, row, with_fingerprint);
            fputs(",le=\"", f);
            put_micros_as_seconds(f, json_array_get(le, i));
            fprintf(f, "\"} %" JSON_INTEGER_FORMAT "\n",
                    json_integer_value(json_array_get(buckets, i)));
        }
        fprintf(f, "%s_bucket{", name);
        put_series_labels(f, row, with_fingerprint);
        fprintf(f, ",le=\"+Inf\"} %" JSON_INTEGER_FORMAT "\n", total);
        fprintf(f, "%s_sum{", name);
        put_series_labels(f, row, with_fingerprint);
        fputs("} ", f);
        put_micros_as_seconds(f, json_object_get(row, "sum_us"));
        fprintf(f, "\n%s_count{", name);
        put_series_labels(f, row, with_fingerprint);
        fprintf(f, "} %" JSON_INTEGER_FORMAT "\n", total);
    }
}

static void put_alerts(FILE *f, const json_t *alerts)
{
    put_header(f, "pgturbo_alert", "gauge",
               "1 for each active alert: name is p95, error_rate or waiting_clients.");
    size_t i;
    const json_t *a;
    json_array_foreach(alerts, i, a)
    {
        const char *name = string_of(a, "name");
        const char *subject = string_of(a, "subject");
        if (name == NULL || subject == NULL)
            continue;
        fputs("pgturbo_alert{", f);
        put_label(f, true, "name", name);
        put_label(f, false, "subject", subject);
        fputs("} 1\n", f);
    }
}

/* job="...",database="..." of a scheduler job. */
static void put_job_labels(FILE *f, const scheduler_job_info_t *job)
{
    put_label(f, true, "job", SCHEDULER_JOB_PARTITION_MAINTAIN);
    put_label(f, false, "database", job->database);
}

static void put_scheduler(FILE *f, const scheduler_job_info_t *jobs, int n)
{
    put_header(f, "pgturbo_scheduler_runs_total", "counter",
               "Finished runs of a scheduler job, failed ones included, since it was configured.");
    for (int i = 0; i < n; i++) {
        fputs("pgturbo_scheduler_runs_total{", f);
        put_job_labels(f, &jobs[i]);
        fprintf(f, "} %llu\n", (unsigned long long)jobs[i].runs);
    }
    put_header(f, "pgturbo_scheduler_failures_total", "counter",
               "Failed runs of a scheduler job since it was configured.");
    for (int i = 0; i < n; i++) {
        fputs("pgturbo_scheduler_failures_total{", f);
        put_job_labels(f, &jobs[i]);
        fprintf(f, "} %llu\n", (unsigned long long)jobs[i].failures);
    }
    put_header(f, "pgturbo_scheduler_last_success_timestamp_seconds", "gauge",
               "Unix time the last successful run of a scheduler job ended.");
    for (int i = 0; i < n; i++) {
        if (jobs[i].last_success == 0)
            continue;
        fputs("pgturbo_scheduler_last_success_timestamp_seconds{", f);
        put_job_labels(f, &jobs[i]);
        fputs("} ", f);
        put_double(f, (double)jobs[i].last_success / 1000);
        fputc('\n', f);
    }
}

/* One kind of values of an object of the result cache: each of keys present in obj (an integer,
 * or a boolean as 0/1) as <prefix><key><suffix>, of type, with help. */
static void put_cache_values(FILE *f, const json_t *obj, const char *const *keys, size_t n,
                             const char *prefix, const char *suffix, const char *type,
                             const char *help)
{
    char name[96];
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, keys[i]);
        if (!json_is_integer(v) && !json_is_boolean(v))
            continue;
        snprintf(name, sizeof(name), "%s%s%s", prefix, keys[i], suffix);
        put_header(f, name, type, help);
        fprintf(f, "%s %" JSON_INTEGER_FORMAT "\n", name,
                json_is_boolean(v) ? (json_int_t)json_is_true(v) : json_integer_value(v));
    }
}

#define N_KEYS(a) (sizeof(a) / sizeof((a)[0]))

/* The totals of the result cache: counters (those ending in _total) and gauges. */
static void put_cache_totals(FILE *f, const json_t *totals)
{
    static const char *const counters[] = {
        "hits",    "misses",   "stale",         "expired",     "evictions",
        "inserts", "rejected", "invalidations", "write_bumps", "everything_bumps",
        "warms",   "warmed",   "warm_fresh",
    };
    static const char *const gauges[] = {"entries", "bytes", "value_bytes", "stored_bytes"};
    put_cache_values(f, totals, counters, N_KEYS(counters), "pgturbo_cache_", "_total", "counter",
                     "Result cache counter since the start (docs/api.md).");
    put_cache_values(f, totals, gauges, N_KEYS(gauges), "pgturbo_cache_", "", "gauge",
                     "Result cache size now (docs/api.md).");
}

/* The link to the Redis that instances share, when there is one (docs/api.md, "redis"). */
static void put_cache_redis(FILE *f, const json_t *redis)
{
    static const char *const counters[] = {
        "published", "publish_timeouts", "publish_unsent",
        "received",  "commits_held",     "gets",
        "hits",      "misses",           "get_errors",
        "puts",      "put_errors",       "disconnects",
    };
    static const char *const gauges[] = {"connected", "fresh", "peers"};
    put_cache_values(f, redis, counters, N_KEYS(counters), "pgturbo_cache_redis_", "_total",
                     "counter", "Result cache's Redis link, since the start (docs/api.md).");
    put_cache_values(f, redis, gauges, N_KEYS(gauges), "pgturbo_cache_redis_", "", "gauge",
                     "Result cache's Redis link now (docs/api.md).");
}

/* One family of per-rule values of the result cache. */
static void put_cache_rule_family(FILE *f, const json_t *rules, const char *key, const char *name,
                                  const char *type, const char *help)
{
    put_header(f, name, type, help);
    size_t i;
    const json_t *r;
    json_array_foreach(rules, i, r)
    {
        const char *rule = string_of(r, "rule");
        const json_t *v = json_object_get(r, key);
        if (rule == NULL || !json_is_integer(v))
            continue;
        fprintf(f, "%s{", name);
        put_label(f, true, "rule", rule);
        fprintf(f, "} %" JSON_INTEGER_FORMAT "\n", json_integer_value(v));
    }
}

static void put_cache(FILE *f, const json_t *cache)
{
    if (cache == NULL)
        return;
    put_cache_totals(f, json_object_get(cache, "totals"));
    put_cache_redis(f, json_object_get(cache, "redis"));
    const json_t *rules = json_object_get(cache, "rules");
    put_cache_rule_family(f, rules, "hits", "pgturbo_cache_rule_hits_total", "counter",
                          "Reads answered from the result cache, per rule.");
    put_cache_rule_family(f, rules, "misses", "pgturbo_cache_rule_misses_total", "counter",
                          "Cacheable reads the result cache did not hold, per rule.");
    put_cache_rule_family(f, rules, "entries", "pgturbo_cache_rule_entries", "gauge",
                          "Answers held by the result cache, per rule.");
    put_cache_rule_family(f, rules, "bytes", "pgturbo_cache_rule_bytes", "gauge",
                          "Bytes the answers of a rule count against cache_max_memory.");
}

char *metrics_render(const metrics_input_t *in, size_t *len)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL)
        return NULL;
    const json_t *m = in->metrics;

    put_pools(f, in->pools);
    put_connection_count(f, "pgturbo_clients", "Client connections, logged in or not.",
                         in->clients);
    put_connection_count(f, "pgturbo_servers", "Server connections to PostgreSQL.", in->servers);
    put_counters(f, json_object_get(m, "counters"));
    put_histogram(f, "pgturbo_query_duration_seconds",
                  "How long queries took, per database, from sending to the server's answer.",
                  json_object_get(m, "databases"), false);
    put_histogram(f, "pgturbo_fingerprint_duration_seconds",
                  "How long queries took, for the fingerprints with the most total time.",
                  json_object_get(m, "fingerprints"), true);
    put_alerts(f, in->alerts);
    put_scheduler(f, in->jobs, in->n_jobs);
    put_cache(f, in->cache);

    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return NULL;
    }
    *len = size;
    return text;
}

char *metrics_collect(size_t *len)
{
    scheduler_job_info_t jobs[CONFIG_MAX_JOBS];
    int n_jobs = scheduler_snapshot(jobs);
    metrics_input_t in = {
        .pools = inspect_pools(),
        .clients = inspect_clients(),
        .servers = inspect_servers(),
        .metrics = inspect_metrics(METRICS_TOP_FINGERPRINTS),
        .alerts = inspect_alerts(),
        .cache = cache_snapshot(),
        .jobs = jobs,
        .n_jobs = n_jobs,
    };
    char *text = NULL;
    if (in.pools != NULL && in.clients != NULL && in.servers != NULL && in.metrics != NULL &&
        in.alerts != NULL)
        text = metrics_render(&in, len);
    json_decref((json_t *)in.pools);
    json_decref((json_t *)in.clients);
    json_decref((json_t *)in.servers);
    json_decref((json_t *)in.metrics);
    json_decref((json_t *)in.alerts);
    json_decref((json_t *)in.cache);
    return text;
}
