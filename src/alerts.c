/*
 * alerts.c
 *    Alert rules and the set of active alerts; see alerts.h.
 */
#include "alerts.h"

#include "cache.h"
#include "inspect.h"
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *active; /* array of alerts; under lock */

static json_t *make_alert(const char *name, const char *subject, double value, double threshold)
{
    return json_pack("{s:s, s:s, s:f, s:f}", "name", name, "subject", subject, "value", value,
                     "threshold", threshold);
}

static void check_queries(json_t *found, const config_t *cfg)
{
    json_t *rows = inspect_queries(INSPECT_SORT_P95, 0, NULL);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_int_t calls = json_integer_value(json_object_get(row, "calls"));
        if (calls < ALERTS_MIN_CALLS)
            continue;
        char subject[128];
        snprintf(subject, sizeof(subject), "%s/%s",
                 json_string_value(json_object_get(row, "database")),
                 json_string_value(json_object_get(row, "fingerprint")));
        double p95 = json_real_value(json_object_get(row, "p95"));
        if (p95 > cfg->alert_p95_ms)
            json_array_append_new(found, make_alert("p95", subject, p95, cfg->alert_p95_ms));
        double rate =
            100.0 * (double)json_integer_value(json_object_get(row, "errors")) / (double)calls;
        if (rate > cfg->alert_error_rate)
            json_array_append_new(found,
                                  make_alert("error_rate", subject, rate, cfg->alert_error_rate));
    }
    json_decref(rows);
}

static void check_pools(json_t *found, const config_t *cfg)
{
    json_t *pools = inspect_pools();
    size_t i;
    json_t *pool;
    json_array_foreach(pools, i, pool)
    {
        json_int_t waiting = json_integer_value(json_object_get(pool, "cl_waiting"));
        if (waiting < cfg->alert_waiting_clients)
            continue;
        char subject[160];
        snprintf(subject, sizeof(subject), "%s/%s",
                 json_string_value(json_object_get(pool, "database")),
                 json_string_value(json_object_get(pool, "user")));
        json_array_append_new(found, make_alert("waiting_clients", subject, (double)waiting,
                                                cfg->alert_waiting_clients));
    }
    json_decref(pools);
}

/* A [cache] rule whose hit ratio since the start is under alert_cache_hit_ratio percent, once
 * it had ALERTS_MIN_LOOKUPS lookups. */
static void check_cache(json_t *found, const config_t *cfg)
{
    json_t *cache = cache_snapshot();
    size_t i;
    json_t *rule;
    json_array_foreach(json_object_get(cache, "rules"), i, rule)
    {
        json_int_t hits = json_integer_value(json_object_get(rule, "hits"));
        json_int_t lookups = hits + json_integer_value(json_object_get(rule, "misses"));
        if (lookups < ALERTS_MIN_LOOKUPS)
            continue;
        double ratio = 100.0 * (double)hits / (double)lookups;
        if (ratio < cfg->alert_cache_hit_ratio)
            json_array_append_new(found,
                                  make_alert("cache_hit_ratio",
                                             json_string_value(json_object_get(rule, "rule")),
                                             ratio, cfg->alert_cache_hit_ratio));
    }
    json_decref(cache);
}

/* The alert of the same name and subject in list, or NULL. */
static json_t *same_alert(json_t *list, json_t *alert)
{
    size_t i;
    json_t *a;
    json_array_foreach(list, i, a)
    {
        if (json_equal(json_object_get(a, "name"), json_object_get(alert, "name")) &&
            json_equal(json_object_get(a, "subject"), json_object_get(alert, "subject")))
            return a;
    }
    return NULL;
}

static void log_alert(const char *what, json_t *a)
{
    log_warning("alert %s: %s %s value=%.2f threshold=%.2f", what,
                json_string_value(json_object_get(a, "name")),
                json_string_value(json_object_get(a, "subject")),
                json_real_value(json_object_get(a, "value")),
                json_real_value(json_object_get(a, "threshold")));
}

void alerts_evaluate(const config_t *cfg)
{
    json_t *found = json_array();
    if (found == NULL)
        return;
    check_queries(found, cfg);
    check_pools(found, cfg);
    check_cache(found, cfg);
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    pthread_mutex_lock(&lock);
    size_t i;
    json_t *a;
    json_array_foreach(found, i, a)
    {
        json_t *old = active != NULL ? same_alert(active, a) : NULL;
        json_object_set_new(a, "since",
                            old != NULL ? json_incref(json_object_get(old, "since"))
                                        : json_string(now));
        if (old == NULL)
            log_alert("raised", a);
    }
    if (active != NULL)
        json_array_foreach(active, i, a)
        {
            if (same_alert(found, a) == NULL)
                log_alert("cleared", a);
        }
    json_decref(active);
    active = found;
    pthread_mutex_unlock(&lock);
}

json_t *alerts_active(void)
{
    pthread_mutex_lock(&lock);
    json_t *copy = active != NULL ? json_deep_copy(active) : json_array();
    pthread_mutex_unlock(&lock);
    return copy;
}

void alerts_free(void)
{
    pthread_mutex_lock(&lock);
    json_decref(active);
    active = NULL;
    pthread_mutex_unlock(&lock);
}
