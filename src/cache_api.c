/*
 * cache_api.c
 *    The result cache's figures for the admin API, /metrics and SHOW CACHE, and its clears
 *    (POST /api/v1/cache/clear); see cache.h. The warm is in cache_warm.c.
 */
#include "cache_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* ---- the admin API ---- */

static json_t *counters_json(const cachestore_counters_t *k)
{
    uint64_t lookups = k->hits + k->misses;
    return json_pack("{s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
                     "hits", (json_int_t)k->hits, "misses", (json_int_t)k->misses, "hit_ratio",
                     lookups > 0 ? (double)k->hits / (double)lookups : 0.0, "stale",
                     (json_int_t)k->stale, "expired", (json_int_t)k->expired, "evictions",
                     (json_int_t)k->evictions, "inserts", (json_int_t)k->inserts, "rejected",
                     (json_int_t)k->rejected, "invalidations", (json_int_t)k->invalidations,
                     "entries", (json_int_t)k->entries, "bytes", (json_int_t)k->bytes,
                     "value_bytes", (json_int_t)k->value_bytes, "stored_bytes",
                     (json_int_t)k->stored_bytes, "compression_ratio",
                     k->stored_bytes > 0 ? (double)k->value_bytes / (double)k->stored_bytes : 1.0);
}

/* One object per rule, and one for the answers cached for a pgturbo_cache tag. */
static json_t *rules_json(const config_t *cfg)
{
    json_t *rules = json_array();
    for (int i = 0; rules != NULL && i <= cfg->n_cache_rules; i++) {
        const config_cache_rule_t *r = i < cfg->n_cache_rules ? &cfg->cache_rules[i] : NULL;
        char name[2 * CONFIG_NAME_LEN];
        if (r != NULL)
            snprintf(name, sizeof(name), "%s%s%s", r->schema, r->schema[0] != '\0' ? "." : "",
                     r->table);
        else
            snprintf(name, sizeof(name), "pgturbo_cache tag");
        cachestore_counters_t k;
        cachestore_rule_counters(cache.store, r != NULL ? (uint16_t)i : RULE_TAG, &k);
        json_t *o = counters_json(&k);
        if (o == NULL || json_object_set_new(o, "rule", json_string(name)) < 0 ||
            json_object_set_new(o, "ttl_seconds",
                                r != NULL ? json_real((double)r->ttl / 1000.0) : json_null()) < 0 ||
            json_array_append_new(rules, o) < 0) {
            json_decref(o);
            json_decref(rules);
            return NULL;
        }
    }
    return rules;
}

/* The Redis link's state, or JSON null without one. */
static json_t *redis_json(void)
{
    if (cache.redis == NULL)
        return json_null();
    cacheredis_status_t st;
    cacheredis_status(cache.redis, &st);
    return json_pack(
        "{s:b, s:b, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:s}",
        "connected", st.connected, "fresh", st.fresh, "instance", st.instance, "peers", st.peers,
        "published", (json_int_t)st.published, "publish_timeouts", (json_int_t)st.publish_timeouts,
        "publish_unsent", (json_int_t)st.publish_unsent, "received", (json_int_t)st.received,
        "commits_held", (json_int_t)atomic_load(&cache.holds), "gets", (json_int_t)st.gets, "hits",
        (json_int_t)st.hits, "misses", (json_int_t)st.misses, "get_errors", (json_int_t)st.get_errors, "puts",
        (json_int_t)st.puts, "put_errors", (json_int_t)st.put_errors, "disconnects",
        (json_int_t)st.disconnects, "last_error", st.last_error);
}

/* A target's logical consumer, or JSON null without one. */
static json_t *logical_json(cache_ns_t *ns)
{
    if (ns->logical == NULL)
        return json_null();
    cachelogical_status_t st;
    cachelogical_status(ns->logical, &st);
    return json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:s}", "streaming", st.connected, "slot",
                     st.slot, "transactions", (json_int_t)st.transactions, "changes",
                     (json_int_t)st.changes, "invisible", (json_int_t)st.invisible, "reconnects",
                     (json_int_t)st.reconnects, "last_error", st.last_error);
}

/* One object per database target the cache has met. */
static json_t *targets_json(void)
{
    json_t *targets = json_array();
    int64_t now = cache_now_ms();
    for (int i = 1; targets != NULL && i <= MAX_NAMESPACES; i++) {
        cache_ns_t *ns = &cache.ns[i];
        pthread_mutex_lock(&ns->lock);
        json_t *o = NULL;
        if (ns->target[0] != '\0') {
            int64_t loaded = atomic_load(&ns->loaded_at);
            o = json_pack(
                "{s:s, s:b, s:i, s:i, s:o, s:I, s:I, s:o}", "target", ns->target, "catalog_loaded",
                ns->cat != NULL, "relations", ns->cat != NULL ? catalog_relation_count(ns->cat) : 0,
                "functions", ns->cat != NULL ? catalog_function_count(ns->cat) : 0,
                "catalog_age_seconds",
                loaded > 0 ? json_real((double)(now - loaded) / 1000.0) : json_null(),
                "catalog_loads", (json_int_t)atomic_load(&ns->catalog_loads), "catalog_failures",
                (json_int_t)atomic_load(&ns->catalog_failures), "logical", logical_json(ns));
        }
        pthread_mutex_unlock(&ns->lock);
        if (o != NULL && json_array_append_new(targets, o) < 0) {
            json_decref(targets);
            return NULL;
        }
    }
    return targets;
}

json_t *cache_snapshot(void)
{
    const config_t *cfg = atomic_load(&cache.cfg);
    if (cache.store == NULL || cfg == NULL)
        return NULL;
    cachestore_counters_t k;
    cachestore_counters(cache.store, &k);
    json_t *totals = counters_json(&k);
    if (totals == NULL ||
        json_object_set_new(totals, "write_bumps",
                            json_integer((json_int_t)atomic_load(&cache.write_bumps))) < 0 ||
        json_object_set_new(totals, "everything_bumps",
                            json_integer((json_int_t)atomic_load(&cache.everything_bumps))) < 0 ||
        json_object_set_new(totals, "fills", json_integer((json_int_t)atomic_load(&cache.fills))) <
            0 ||
        json_object_set_new(totals, "fills_dropped",
                            json_integer((json_int_t)atomic_load(&cache.fills_dropped))) < 0 ||
        json_object_set_new(totals, "warms", json_integer((json_int_t)atomic_load(&cache.warms))) <
            0 ||
        json_object_set_new(totals, "warmed",
                            json_integer((json_int_t)atomic_load(&cache.warmed))) < 0 ||
        json_object_set_new(totals, "warm_fresh",
                            json_integer((json_int_t)atomic_load(&cache.warm_fresh))) < 0) {
        json_decref(totals);
        return NULL;
    }
    return json_pack("{s:b, s:s, s:{s:I, s:i, s:I, s:I}, s:o, s:o*, s:o*, s:o*}", "enabled",
                     cache_configured(cfg), "invalidation",
                     cfg->cache_invalidation == CACHE_INVALIDATION_LOGICAL ? "logical" : "proxy",
                     "limits", "max_memory", (json_int_t)cfg->cache_max_memory, "max_entries",
                     cfg->cache_max_entries, "max_entry_size",
                     (json_int_t)cfg->cache_max_entry_size, "compress_min",
                     (json_int_t)cfg->cache_compress_min, "totals", totals, "rules",
                     rules_json(cfg), "databases", targets_json(), "redis", redis_json());
}

/* Bumps and drops the entries of one relname in every target, and tells the other instances
 * of each target in use (they or the L2 may hold answers of it that this one never read). */
static size_t clear_table(const char *table)
{
    size_t n = 0;
    for (uint32_t i = 1; i <= MAX_NAMESPACES; i++) {
        if (atomic_load_explicit(&cache.ns[i].all, memory_order_acquire) == NULL)
            continue;
        cachegen_counter_t *counter = cachegen_find(cache.gens, i, table);
        if (counter != NULL) {
            cachegen_bump(counter);
            n += cachestore_remove_dep(cache.store, counter);
        }
        cache_publish_cleared(&cache.ns[i], table);
    }
    return n;
}

size_t cache_clear(const char *schema, const char *table)
{
    if (cache.store == NULL)
        return 0;
    if (table != NULL)
        return clear_table(table);
    if (schema == NULL) {
        for (int i = 1; i <= MAX_NAMESPACES; i++) {
            cachegen_counter_t *all = atomic_load_explicit(&cache.ns[i].all, memory_order_acquire);
            if (all == NULL)
                continue;
            cachegen_bump(all);
            cache_publish_cleared(&cache.ns[i], "");
        }
        return cachestore_clear(cache.store);
    }
    size_t n = 0;
    for (int i = 1; i <= MAX_NAMESPACES; i++) {
        catalog_t *cat = cache_ns_catalog(&cache.ns[i]);
        if (cat == NULL)
            continue;
        const char *names[1024];
        int k = catalog_relations_in(cat, schema, names, 1024);
        for (int j = 0; j < k; j++)
            n += clear_table(names[j]);
        catalog_unref(cat);
    }
    return n;
}
