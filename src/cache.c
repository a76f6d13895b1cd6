/*
 * cache.c
 *    The query result cache in the proxy; see cache.h for what is cached and why no answer
 *    outlives its data.
 *
 * The path of a read: cache_answer() builds the key of the read at the head of the client's
 * input (database target, user, the session parameters that shape results, the text without
 * comments and, for the extended protocol, the parameter types, values and formats) and looks
 * it up. A hit is written to the client and costs no server at all. A miss analyzes the text
 * (sqlparse, then the catalog), and when the read may be cached "arms" a fill: the key, the
 * generations of every table the read depends on, read now, before the query is sent, the
 * TTL and the rule. cache_forwarded() marks the pending responses of the read's messages and
 * hands the fill to the server connection, which copies the marked responses into it
 * (cache_response, cache_stream) and stores it when ReadyForQuery says the read ran outside a
 * transaction (cache_ready).
 *
 * The path of a write: cache_forwarded() finds what each Query, Bind or FunctionCall can
 * change, bumps those generations at once and keeps them on the server connection, which
 * bumps them again when its transaction ends (a ReadyForQuery saying idle, or the connection
 * closing).
 */
#include "cache.h"

#include "cachegen.h"
#include "cachelogical.h"
#include "cacheredis.h"
#include "cachestore.h"
#include "catalog.h"
#include "client.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "prepared.h"
#include "server.h"
#include "sqlparse.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMESPACES     256 /* database targets (cachegen's limit) */
#define MAX_DEPS           32  /* generations one answer depends on */
#define MAX_WRITES         32  /* tables kept per transaction; past it, everything */
#define MAX_NAMES          64  /* relnames a lookup in the catalog may return */
#define RULE_TAG           (CACHESTORE_MAX_RULES - 1) /* answers cached for a pgturbo_cache tag */
#define CATALOG_REFRESH_MS 60000                      /* the catalog is read again this often */
#define CATALOG_RETRY_MS   10000                      /* after a failed read of the catalog */
#define GENERATION_NAMES   65536                      /* counters over all targets */
#define LOGICAL_CHECK_MS   100 /* how often a worker asks whether a consumer is streaming */
#define KEY_VERSION        1
#define DDL_NAME           "\001ddl" /* published beside "": the catalog changed */
#define MIN_LEASE_MS       50
#define MAX_LEASE_MS       60000

/* One database target (host:port/dbname): its catalog and its everything-counter. */
typedef struct cache_ns {
    pthread_mutex_t lock; /* guards cat and target while they are written */
    catalog_t *cat;       /* NULL until read, and from a DDL until read again */
    char target[CONFIG_HOST_LEN + CONFIG_NAME_LEN + 16];
    cachegen_counter_t *_Atomic all; /* every answer of the target depends on it */
    _Atomic int64_t loaded_at;       /* ms (loop_clock_us), 0 = never */
    _Atomic int64_t tried_at;        /* last attempt, for the retry delay */
    _Atomic bool loading;            /* a catalog query is under way */
    _Atomic uint64_t ddl_epoch;      /* DDL sent or ended: a catalog read before is outdated */
    _Atomic uint64_t catalog_loads, catalog_failures;
    cachelogical_t *logical;        /* cache_invalidation = logical: its consumer, or NULL */
    _Atomic bool logical_streaming; /* the consumer streams: no change can be missed */
    _Atomic int64_t logical_checked_at;
} cache_ns_t;

/* An answer being recorded: armed by cache_answer() on a miss, carried by the server from the
 * first forwarded message on, stored or dropped at the ReadyForQuery. */
typedef struct cache_fill {
    uint64_t hash;
    uint8_t *key;
    uint32_t key_len;
    cachestore_dep_t deps[MAX_DEPS];
    int n_deps;
    int64_t ttl_ms;
    uint16_t rule;
    bool extended;   /* a Bind ... Sync unit, not a Query */
    size_t max_size; /* cache_max_entry_size when it was armed */
    bool failed;     /* a response that must not be replayed came: an error, a notice ... */
    buf_t value;
    cacheredis_gens_t *l2; /* the global generations to store the answer in Redis with, or NULL */
} cache_fill_t;

/* What a client waits for from Redis: the publish of its commit's writes, or an L2 read. The
 * worker frees it once the Redis thread handed it back (worker_post_run). */
typedef struct redis_wait {
    struct redis_wait *next, *prev; /* the client's list */
    worker_t *worker;
    client_t *client; /* NULL once the client went */
    bool is_read;
    /* An L2 read: the key, what the read depends on locally, and what Redis answered. */
    uint64_t hash;
    uint8_t *key;
    uint32_t key_len;
    cachestore_dep_t deps[MAX_DEPS];
    int n_deps;
    int64_t ttl_ms;
    uint16_t rule;
    cacheredis_result_t result;
    uint8_t *value;
    size_t value_len;
    cacheredis_gens_t *gens;
} redis_wait_t;

struct cache_client {
    bool dirty;                 /* the session changed state that pgturbo does not follow */
    prepared_map_t *stmts;      /* Parse bodies by statement name ("" for the unnamed one) */
    cache_fill_t *armed;        /* a missed read whose messages are being forwarded */
    uint32_t want_catalog;      /* the namespace whose catalog a read found missing, or 0 */
    buf_t key;                  /* where keys are built */
    redis_wait_t *waits;        /* publishes and L2 reads under way */
    bool l2_reading;            /* an L2 read of the read at the head of the input is under way */
    bool l2_read;               /* ... and has answered: the read goes on without asking again */
    uint64_t l2_hash;           /* the key hash of that read */
    cacheredis_gens_t *l2_gens; /* what its MISS gave, for the fill */
};

/* The tables an open transaction wrote, bumped again when it ends. */
typedef struct cache_writes {
    uint32_t ns;
    bool everything;
    bool ddl; /* the catalog changes when the transaction commits */
    int n;
    cachegen_counter_t *counters[MAX_WRITES];
} cache_writes_t;

struct cache_server {
    bool dirty;         /* ran a statement that changed session state */
    cache_fill_t *fill; /* the answer being recorded */
    cache_writes_t writes;
    uint32_t catalog_ns;    /* the namespace of the catalog query under way */
    uint64_t catalog_epoch; /* the namespace's ddl_epoch when it was sent */
    bool catalog_failed;
    buf_t catalog; /* its value, as it comes */
};

static struct {
    cachestore_t *store;
    cachegen_t *gens;
    cache_ns_t ns[MAX_NAMESPACES + 1]; /* by cachegen namespace id (1 ...) */
    _Atomic uint64_t write_bumps, everything_bumps, fills, fills_dropped;
    const config_t *_Atomic cfg; /* the current config (retired ones live until exit) */
    cacheredis_t *redis;         /* the link to the instances sharing Redis, or NULL */
    _Atomic uint64_t l2_hits, l2_misses, holds;
} cache;

/* ---- setup ---- */

static int start_logical(const config_t *cfg, char *err, size_t errlen);
static int start_redis(const config_t *cfg, char *err, size_t errlen);

static void limits_of(const config_t *cfg, cachestore_limits_t *l)
{
    l->max_memory = (size_t)cfg->cache_max_memory;
    l->max_entries = (uint32_t)cfg->cache_max_entries;
    l->max_entry_size = (size_t)cfg->cache_max_entry_size;
    l->compress_min = (size_t)cfg->cache_compress_min;
}

int cache_start(const config_t *cfg, char *err, size_t errlen)
{
    cachestore_limits_t limits;
    limits_of(cfg, &limits);
    cache.store = cachestore_create(&limits);
    cache.gens = cachegen_create(GENERATION_NAMES);
    if (cache.store == NULL || cache.gens == NULL) {
        snprintf(err, errlen, "cache: out of memory");
        cache_stop();
        return -1;
    }
    for (int i = 0; i <= MAX_NAMESPACES; i++)
        pthread_mutex_init(&cache.ns[i].lock, NULL);
    atomic_store(&cache.cfg, cfg);
    if (cfg->cache_invalidation == CACHE_INVALIDATION_LOGICAL && cache_configured(cfg) &&
        start_logical(cfg, err, errlen) < 0) {
        cache_stop();
        return -1;
    }
    if (cfg->cache_redis_host[0] != '\0' && cache_configured(cfg) &&
        start_redis(cfg, err, errlen) < 0) {
        cache_stop();
        return -1;
    }
    return 0;
}

static bool same_rules(const config_t *a, const config_t *b)
{
    if (a->n_cache_rules != b->n_cache_rules)
        return false;
    return a->n_cache_rules == 0 ||
           memcmp(a->cache_rules, b->cache_rules,
                  (size_t)a->n_cache_rules * sizeof(a->cache_rules[0])) == 0;
}

void cache_reconfigure(const config_t *old_cfg, const config_t *new_cfg)
{
    if (cache.store == NULL)
        return;
    cachestore_limits_t limits;
    limits_of(new_cfg, &limits);
    cachestore_set_limits(cache.store, &limits);
    atomic_store(&cache.cfg, new_cfg);
    /* Rule ids are indexes into the rules: other rules make every entry's rule a stranger. */
    if (!same_rules(old_cfg, new_cfg)) {
        size_t n = cachestore_clear(cache.store);
        log_write(LOG_INFO, "cache: rules changed, %zu entries dropped", n);
    }
}

void cache_stop_links(void)
{
    /* The consumers first: one may wait for a publish, which only the link completes. */
    for (int i = 0; i <= MAX_NAMESPACES; i++) {
        cachelogical_stop(cache.ns[i].logical);
        cache.ns[i].logical = NULL;
    }
    cacheredis_stop(cache.redis);
    cache.redis = NULL;
}

void cache_stop(void)
{
    cache_stop_links();
    for (int i = 0; i <= MAX_NAMESPACES; i++) {
        if (cache.ns[i].cat != NULL) {
            catalog_unref(cache.ns[i].cat);
            cache.ns[i].cat = NULL;
        }
    }
    cachestore_free(cache.store);
    cachegen_free(cache.gens);
    cache.store = NULL;
    cache.gens = NULL;
}

/* ---- database targets and their catalogs ---- */

static uint32_t ns_id(const cache_ns_t *ns)
{
    return (uint32_t)(ns - cache.ns);
}

/* The namespace of host:port/dbname, made on first use; NULL when none is left. */
static cache_ns_t *target_ns(const char *host, int port, const char *dbname)
{
    char target[sizeof(cache.ns[0].target)];
    snprintf(target, sizeof(target), "%s:%d/%s", host, port, dbname);
    uint32_t id = cachegen_namespace(cache.gens, target);
    if (id == 0 || id > MAX_NAMESPACES)
        return NULL;
    cache_ns_t *ns = &cache.ns[id];
    pthread_mutex_lock(&ns->lock);
    memcpy(ns->target, target, sizeof(target));
    pthread_mutex_unlock(&ns->lock);
    return ns;
}

/* The namespace of the pool's database target, made on first use; NULL when none is left. */
static cache_ns_t *pool_ns(pool_t *pool)
{
    uint32_t id = atomic_load_explicit(&pool->cache_ns, memory_order_acquire);
    if (id == 0) {
        char host[CONFIG_HOST_LEN], dbname[CONFIG_NAME_LEN];
        pthread_mutex_lock(&pool->lock);
        memcpy(host, pool->target.host, sizeof(host));
        memcpy(dbname, pool->target.dbname, sizeof(dbname));
        int port = pool->target.port;
        pthread_mutex_unlock(&pool->lock);
        cache_ns_t *made = target_ns(host, port, dbname);
        if (made == NULL)
            return NULL;
        id = ns_id(made);
        atomic_store_explicit(&pool->cache_ns, id, memory_order_release);
    }
    cache_ns_t *ns = &cache.ns[id];
    if (atomic_load_explicit(&ns->all, memory_order_acquire) == NULL) {
        cachegen_counter_t *all = cachegen_get(cache.gens, id, "");
        if (all == NULL)
            return NULL;
        atomic_store_explicit(&ns->all, all, memory_order_release);
    }
    return ns;
}

/* The target's catalog with a reference the caller drops (catalog_unref), or NULL. */
static catalog_t *ns_catalog(cache_ns_t *ns)
{
    pthread_mutex_lock(&ns->lock);
    catalog_t *cat = ns->cat;
    if (cat != NULL)
        catalog_ref(cat);
    pthread_mutex_unlock(&ns->lock);
    return cat;
}

static void ns_set_catalog(cache_ns_t *ns, catalog_t *cat)
{
    pthread_mutex_lock(&ns->lock);
    catalog_t *old = ns->cat;
    ns->cat = cat;
    pthread_mutex_unlock(&ns->lock);
    catalog_unref(old);
}

/* A DDL was sent or its transaction ended: the catalog, and any read of it under way, is
 * outdated; no read is cached until it is read again. */
static void ns_forget_catalog(cache_ns_t *ns)
{
    atomic_fetch_add_explicit(&ns->ddl_epoch, 1, memory_order_acq_rel);
    ns_set_catalog(ns, NULL);
}

/* Whether the target's catalog should be read (again) now. */
static bool ns_wants_catalog(cache_ns_t *ns, int64_t now_ms)
{
    if (atomic_load_explicit(&ns->loading, memory_order_relaxed))
        return false;
    int64_t tried = atomic_load_explicit(&ns->tried_at, memory_order_relaxed);
    int64_t loaded = atomic_load_explicit(&ns->loaded_at, memory_order_relaxed);
    if (tried > loaded && now_ms - tried < CATALOG_RETRY_MS)
        return false;
    pthread_mutex_lock(&ns->lock);
    bool missing = ns->cat == NULL;
    pthread_mutex_unlock(&ns->lock);
    return missing || now_ms - loaded >= CATALOG_REFRESH_MS;
}

static int64_t now_ms(void)
{
    return loop_clock_us() / 1000;
}

/* ---- per-connection state ---- */

static cache_client_t *client_state(client_t *c)
{
    if (c->cache == NULL)
        c->cache = calloc(1, sizeof(*c->cache));
    return c->cache;
}

static cache_server_t *server_state(server_t *s)
{
    if (s->cache == NULL)
        s->cache = calloc(1, sizeof(*s->cache));
    return s->cache;
}

static void fill_free(cache_fill_t *f)
{
    if (f == NULL)
        return;
    free(f->key);
    buf_free(&f->value);
    free(f->l2);
    free(f);
}

static void wait_free(redis_wait_t *w)
{
    free(w->key);
    free(w->value);
    free(w->gens);
    free(w);
}

static void wait_unlink(cache_client_t *cc, redis_wait_t *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        cc->waits = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

void cache_client_gone(client_t *c)
{
    cache_client_t *cc = c->cache;
    if (cc == NULL)
        return;
    prepared_map_free(cc->stmts);
    fill_free(cc->armed);
    buf_free(&cc->key);
    /* What the Redis thread still holds is freed when it comes back. */
    for (redis_wait_t *w = cc->waits; w != NULL; w = w->next)
        w->client = NULL;
    free(cc->l2_gens);
    free(cc);
    c->cache = NULL;
}

/* ---- generations ---- */

static void bump(cachegen_counter_t *counter)
{
    cachegen_bump(counter);
    atomic_fetch_add_explicit(&cache.write_bumps, 1, memory_order_relaxed);
}

static void bump_everything(cache_ns_t *ns)
{
    cachegen_counter_t *all = atomic_load_explicit(&ns->all, memory_order_acquire);
    if (all != NULL)
        cachegen_bump(all);
    atomic_fetch_add_explicit(&cache.everything_bumps, 1, memory_order_relaxed);
}

static void publish_writes(const cache_writes_t *w, client_t *waiter);

/* Bumps what a transaction wrote, as it ends, and tells the other instances, with waiter's
 * output (when not NULL) held until they all applied it; w is emptied. */
static void bump_writes(cache_writes_t *w, client_t *waiter)
{
    if (w->ns == 0)
        return;
    /*
     * Published before the bumps here: a read of this instance that sees them asks Redis for
     * its answer after the publish, which the Redis thread sends first, so Redis cannot hand it
     * an answer that this write made stale and that it would then keep with the new generations.
     */
    if (cache.redis != NULL && (w->everything || w->n > 0))
        publish_writes(w, waiter);
    if (w->ddl)
        ns_forget_catalog(&cache.ns[w->ns]);
    if (w->everything)
        bump_everything(&cache.ns[w->ns]);
    for (int i = 0; i < w->n; i++)
        bump(w->counters[i]);
    w->n = 0;
    w->everything = false;
    w->ddl = false;
    w->ns = 0;
}

/* Bumps counter now and keeps it for the end of the transaction. */
static void write_table(cache_writes_t *w, cachegen_counter_t *counter)
{
    bump(counter);
    for (int i = 0; i < w->n; i++)
        if (w->counters[i] == counter)
            return;
    if (w->n == MAX_WRITES)
        w->everything = true;
    else
        w->counters[w->n++] = counter;
}

static void write_everything(cache_writes_t *w, cache_ns_t *ns)
{
    bump_everything(ns);
    w->everything = true;
}

/* Whether a call of any of info's unknown functions may write tables. */
static bool functions_may_write(const catalog_t *cat, const sql_info_t *info)
{
    if (info->too_many_functions)
        return true;
    for (int i = 0; i < info->n_functions; i++)
        if (catalog_function_may_write(cat, info->functions[i]))
            return true;
    return false;
}

/*
 * Bumps what a statement described by info can change, and keeps it in w. With no catalog
 * there is no telling what a write reaches, so it reaches everything; a DDL reaches
 * everything and makes the catalog be read again.
 */
static void record_writes(cache_ns_t *ns, const sql_info_t *info, cache_writes_t *w)
{
    if (info->kind == SQL_UNPARSED || info->kind == SQL_TRANSACTION)
        return;
    bool writes = info->kind == SQL_WRITE || info->kind == SQL_DDL || info->runs_unknown;
    if (!writes && info->n_functions == 0 && !info->too_many_functions)
        return;
    if (w->ns != 0 && w->ns != ns_id(ns))
        bump_writes(w, NULL);
    w->ns = ns_id(ns);
    if (info->kind == SQL_DDL) {
        ns_forget_catalog(ns);
        w->ddl = true;
        write_everything(w, ns);
        return;
    }
    catalog_t *cat = ns_catalog(ns);
    if (cat == NULL || info->runs_unknown || info->too_many_tables ||
        functions_may_write(cat, info)) {
        catalog_unref(cat);
        write_everything(w, ns);
        return;
    }
    for (int i = 0; writes && i < info->n_written; i++) {
        const char *names[MAX_NAMES];
        bool everything = false;
        int n = catalog_write_closure(cat, info->tables_written[i], names, MAX_NAMES, &everything);
        if (everything || n < 0) {
            write_everything(w, ns);
            break;
        }
        for (int k = 0; k < n; k++) {
            cachegen_counter_t *counter = cachegen_get(cache.gens, ns_id(ns), names[k]);
            if (counter == NULL)
                write_everything(w, ns);
            else
                write_table(w, counter);
        }
    }
    catalog_unref(cat);
}

/* ---- logical invalidation ---- */

static void publish_and_wait(cache_ns_t *ns, const char **names, int n);

/*
 * A change the logical stream reports (on the consumer's thread): the table's generation and
 * those of what a write to it reaches in the catalog's eyes (a partition's ancestors, which
 * reads of the parent depend on) are bumped. Triggers and cascades need no "everything": the
 * stream reports their changes too. (NULL, NULL) means changes may have been missed.
 */
static void logical_change(void *arg, const char *schema, const char *relname)
{
    cache_ns_t *ns = arg;
    cachegen_counter_t *counters[MAX_NAMES + 1];
    const char *names[MAX_NAMES + 1];
    int n = 0;
    cachegen_counter_t *own = relname != NULL ? cachegen_get(cache.gens, ns_id(ns), relname) : NULL;
    if (own != NULL) {
        counters[n] = own;
        names[n++] = relname;
        catalog_t *cat = ns_catalog(ns);
        char name[2 * CACHELOGICAL_NAME_LEN];
        snprintf(name, sizeof(name), "%s.%s", schema, relname);
        const char *reached[MAX_NAMES];
        bool everything = false;
        int k = cat != NULL ? catalog_write_closure(cat, name, reached, MAX_NAMES, &everything) : 0;
        for (int i = 0; i < k && own != NULL; i++) {
            cachegen_counter_t *counter = cachegen_get(cache.gens, ns_id(ns), reached[i]);
            if (counter == NULL)
                own = NULL; /* past the capacity: everything */
            else if (counter != counters[0]) {
                counters[n] = counter;
                names[n++] = cachegen_name(counter);
            }
        }
        catalog_unref(cat);
    }
    /* Redis first: a read here that sees the bumps below must not find an older answer there. */
    if (own == NULL) {
        const char *everything[] = {""};
        publish_and_wait(ns, everything, 1);
        bump_everything(ns);
        return;
    }
    publish_and_wait(ns, names, n);
    for (int i = 0; i < n; i++)
        bump(counters[i]);
}

/* Appends " key=value" to a connection string, the value quoted as libpq needs it. */
static void conninfo_put(char *out, size_t len, const char *key, const char *value)
{
    size_t used = strlen(out);
    int n = snprintf(out + used, len - used, "%s%s=", used > 0 ? " " : "", key);
    used = n > 0 && (size_t)n < len - used ? used + (size_t)n : len - 1;
    config_put_conninfo_value(out, len, &used, value);
}

/*
 * cache_invalidation = logical: one consumer per database target of [databases] (the "*"
 * entry names none), connecting as the entry's user (postgres when it has none) with its
 * password. Returns 0, or -1 with a message in err for a connection string libpq refuses.
 */
static int start_logical(const config_t *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->n_databases; i++) {
        const config_database_t *db = &cfg->databases[i];
        if (strcmp(db->name, "*") == 0)
            continue;
        const char *dbname = db->dbname[0] != '\0' ? db->dbname : db->name;
        cache_ns_t *ns = target_ns(db->host, db->port, dbname);
        if (ns == NULL || ns->logical != NULL)
            continue;
        if (atomic_load(&ns->all) == NULL)
            atomic_store(&ns->all, cachegen_get(cache.gens, ns_id(ns), ""));
        char conninfo[CONFIG_CONNINFO_LEN] = "";
        char port[16];
        snprintf(port, sizeof(port), "%d", db->port);
        conninfo_put(conninfo, sizeof(conninfo), "host", db->host);
        conninfo_put(conninfo, sizeof(conninfo), "port", port);
        conninfo_put(conninfo, sizeof(conninfo), "dbname", dbname);
        conninfo_put(conninfo, sizeof(conninfo), "user",
                     db->user[0] != '\0' ? db->user : "postgres");
        if (db->password[0] != '\0')
            conninfo_put(conninfo, sizeof(conninfo), "password", db->password);
        char why[256];
        ns->logical = cachelogical_start(conninfo, "pgturbo", logical_change, ns, why, sizeof(why));
        if (ns->logical == NULL) {
            snprintf(err, errlen, "cache_invalidation = logical: database \"%s\": %s", db->name,
                     why);
            return -1;
        }
    }
    return 0;
}

/* Whether the target's logical consumer streams (asked at most every LOGICAL_CHECK_MS). */
static bool logical_streaming(cache_ns_t *ns, int64_t now)
{
    if (now - atomic_load_explicit(&ns->logical_checked_at, memory_order_relaxed) >=
        LOGICAL_CHECK_MS) {
        cachelogical_status_t st;
        cachelogical_status(ns->logical, &st);
        atomic_store_explicit(&ns->logical_streaming, st.connected, memory_order_relaxed);
        atomic_store_explicit(&ns->logical_checked_at, now, memory_order_relaxed);
    }
    return atomic_load_explicit(&ns->logical_streaming, memory_order_relaxed);
}

/*
 * Whether the target may be answered from memory now: only while this instance hears every
 * write that can change it. A logical consumer must stream (it hears every commit); without
 * one, an instance sharing Redis must be fresh (it hears the other instances' writes).
 */
static bool ns_allows(cache_ns_t *ns, int64_t now)
{
    if (ns->logical != NULL)
        return logical_streaming(ns, now);
    return cache.redis == NULL || cacheredis_fresh(cache.redis, now);
}

/* ---- instances sharing Redis ---- */

/* Bumps every namespace that has answers: anything may have changed. */
static void bump_every_namespace(void)
{
    for (int i = 1; i <= MAX_NAMESPACES; i++)
        if (atomic_load_explicit(&cache.ns[i].all, memory_order_acquire) != NULL)
            bump_everything(&cache.ns[i]);
}

/*
 * Another instance's invalidation (on the Redis thread): the tables it names are bumped as a
 * write here would bump them (it sent the closure of what it wrote), "" bumps everything of
 * the target and DDL_NAME makes its catalog be read again. Targets are matched by name, so
 * the instances sharing a Redis must name each database the same way (host, port, dbname).
 */
static void redis_change(void *arg, const char *target, const char *const *relnames, int n)
{
    uint32_t id = target != NULL ? cachegen_namespace(cache.gens, target) : 0;
    if (id == 0 || id > MAX_NAMESPACES) {
        bump_every_namespace();
        return;
    }
    cache_ns_t *ns = &cache.ns[id];
    if (atomic_load_explicit(&ns->all, memory_order_acquire) == NULL)
        return; /* nothing here was ever read of it */
    for (int i = 0; i < n; i++) {
        if (relnames[i][0] == '\0') {
            bump_everything(ns);
        } else if (strcmp(relnames[i], DDL_NAME) == 0) {
            ns_forget_catalog(ns);
        } else {
            cachegen_counter_t *counter = cachegen_get(cache.gens, id, relnames[i]);
            if (counter != NULL)
                bump(counter);
            else
                bump_everything(ns);
        }
    }
}

static int start_redis(const config_t *cfg, char *err, size_t errlen)
{
    cacheredis_config_t rc = {.port = cfg->cache_redis_port, .db = cfg->cache_redis_db};
    if (strlen(cfg->cache_redis_password) >= sizeof(rc.password)) {
        snprintf(err, errlen, "cache_redis_password is longer than %zu bytes",
                 sizeof(rc.password) - 1);
        return -1;
    }
    memcpy(rc.password, cfg->cache_redis_password, strlen(cfg->cache_redis_password) + 1);
    snprintf(rc.host, sizeof(rc.host), "%s", cfg->cache_redis_host);
    snprintf(rc.prefix, sizeof(rc.prefix), "%s", cfg->cache_redis_prefix);
    if (cfg->cache_redis_lease < MIN_LEASE_MS || cfg->cache_redis_lease > MAX_LEASE_MS) {
        snprintf(err, errlen, "cache_redis_lease must be between %d and %d ms", MIN_LEASE_MS,
                 MAX_LEASE_MS);
        return -1;
    }
    rc.lease_ms = (int)cfg->cache_redis_lease;
    char why[256];
    cache.redis = cacheredis_start(&rc, redis_change, NULL, why, sizeof(why));
    if (cache.redis == NULL) {
        snprintf(err, errlen, "cache_redis_host: %s", why);
        return -1;
    }
    return 0;
}

static void ns_target(cache_ns_t *ns, char *out, size_t len)
{
    pthread_mutex_lock(&ns->lock);
    snprintf(out, len, "%s", ns->target);
    pthread_mutex_unlock(&ns->lock);
}

/* A publish that the logical consumer's thread waits for. */
typedef struct sync_publish {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} sync_publish_t;

static void sync_published(void *arg)
{
    sync_publish_t *p = arg;
    pthread_mutex_lock(&p->lock);
    p->done = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/*
 * A write the logical stream reported goes to Redis too, and the consumer waits until the
 * other instances have it before it confirms the transaction: the global generations of the
 * L2 move, which no instance's consumer would otherwise move, and a commit that waits for the
 * consumer as a synchronous standby returns only after. Names past what a publish carries,
 * or that its message could not hold, go as everything of the target.
 */
static void publish_and_wait(cache_ns_t *ns, const char **names, int n)
{
    const char *everything[] = {""};
    if (cache.redis == NULL)
        return;
    for (int i = 0; i < n; i++)
        if (strchr(names[i], '\n') != NULL || n > CACHEREDIS_MAX_DEPS)
            names = everything, n = 1;
    char target[sizeof(ns->target)];
    ns_target(ns, target, sizeof(target));
    sync_publish_t p = {.done = false};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);
    if (cacheredis_publish(cache.redis, target, names, n, sync_published, &p) == 0) {
        pthread_mutex_lock(&p.lock);
        while (!p.done)
            pthread_cond_wait(&p.cond, &p.lock);
        pthread_mutex_unlock(&p.lock);
    }
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.lock);
}

/* Hands w back to its worker, where fn frees it. */
static void hand_back(redis_wait_t *w, void (*fn)(worker_t *worker, void *arg))
{
    if (worker_post_run(w->worker, fn, w) < 0)
        log_error("cache: out of memory handing a Redis answer back to worker %d; "
                  "its client waits until it goes",
                  w->worker->id);
}

static redis_wait_t *wait_new(client_t *c, bool is_read)
{
    redis_wait_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->worker = c->worker;
    w->client = c;
    w->is_read = is_read;
    return w;
}

static void wait_link(cache_client_t *cc, redis_wait_t *w)
{
    w->prev = NULL;
    w->next = cc->waits;
    if (cc->waits != NULL)
        cc->waits->prev = w;
    cc->waits = w;
}

/* A publish came back to its worker: the commit may be seen. */
static void publish_returned(worker_t *worker, void *arg)
{
    redis_wait_t *w = arg;
    client_t *c = worker != NULL ? w->client : NULL;
    if (c != NULL)
        wait_unlink(c->cache, w);
    wait_free(w);
    if (c != NULL)
        client_release_output(c);
}

/* A publish is over (on the Redis thread). */
static void published(void *arg)
{
    if (arg != NULL)
        hand_back(arg, publish_returned);
}

/*
 * Tells the other instances what a transaction wrote; waiter's output, from the ReadyForQuery
 * about to come on, waits until they all applied it (cacheredis.h says how long at most). A
 * name that the channel's message could not carry (a newline in it) goes as everything.
 */
static void publish_writes(const cache_writes_t *w, client_t *waiter)
{
    char target[sizeof(cache.ns[0].target)];
    ns_target(&cache.ns[w->ns], target, sizeof(target));
    const char *names[CACHEREDIS_MAX_DEPS];
    int n = 0;
    bool everything = w->everything;
    for (int i = 0; i < w->n && !everything; i++) {
        const char *name = cachegen_name(w->counters[i]);
        if (strchr(name, '\n') != NULL || n == CACHEREDIS_MAX_DEPS - 1)
            everything = true;
        else
            names[n++] = name;
    }
    if (everything) {
        n = 0;
        names[n++] = "";
    }
    if (w->ddl)
        names[n++] = DDL_NAME;
    redis_wait_t *wait = waiter != NULL && waiter->cache != NULL ? wait_new(waiter, false) : NULL;
    if (cacheredis_publish(cache.redis, target, names, n, published, wait) < 0) {
        log_error("cache: out of memory publishing a write of %s to the other instances", target);
        free(wait);
        return;
    }
    if (wait != NULL) {
        wait_link(waiter->cache, wait);
        client_hold_output(waiter);
        atomic_fetch_add_explicit(&cache.holds, 1, memory_order_relaxed);
    }
}

/* An L2 read came back to its worker: a HIT goes into memory, where the read finds it when
 * the client's input is read again; a MISS leaves its generations for the fill. */
static void l2_returned(worker_t *worker, void *arg)
{
    redis_wait_t *w = arg;
    client_t *c = worker != NULL ? w->client : NULL;
    if (c == NULL) {
        wait_free(w);
        return;
    }
    cache_client_t *cc = c->cache;
    wait_unlink(cc, w);
    cc->l2_reading = false;
    cc->l2_read = true;
    cc->l2_hash = w->hash;
    if (w->result == CACHEREDIS_HIT) {
        atomic_fetch_add_explicit(&cache.l2_hits, 1, memory_order_relaxed);
        /* Rejected when a generation moved since the read was planned: then it goes on. */
        int rc = cachestore_put(cache.store, w->hash, w->key, w->key_len, w->value, w->value_len,
                                w->deps, w->n_deps, now_ms() + w->ttl_ms, w->rule);
        (void)rc;
    } else if (w->result == CACHEREDIS_MISS) {
        atomic_fetch_add_explicit(&cache.l2_misses, 1, memory_order_relaxed);
        free(cc->l2_gens);
        cc->l2_gens = w->gens;
        w->gens = NULL;
    }
    wait_free(w);
    client_continue(c);
}

/* An L2 read is over (on the Redis thread): what it gave is copied for the worker. */
static void l2_got(void *arg, cacheredis_result_t result, const uint8_t *value, size_t len,
                   const cacheredis_gens_t *gens)
{
    redis_wait_t *w = arg;
    w->result = result;
    if (result == CACHEREDIS_HIT && (w->value = malloc(len > 0 ? len : 1)) != NULL) {
        memcpy(w->value, value, len);
        w->value_len = len;
    } else if (result == CACHEREDIS_MISS && (w->gens = malloc(sizeof(*gens))) != NULL) {
        memcpy(w->gens, gens, sizeof(*gens));
    } else {
        w->result = CACHEREDIS_DOWN;
    }
    hand_back(w, l2_returned);
}

/* ---- keys ---- */

/* The value of the sqlcommenter tag pgturbo_cache: -1 for off, 0 for none, or a TTL in ms. */
static int64_t tag_ttl(const char *text, size_t len)
{
    if (memchr(text, '*', len) == NULL)
        return 0;
    sql_tag_t tags[8];
    int n = sqlparse_comment_tags(text, len, tags, 8);
    for (int i = 0; i < n; i++) {
        if (strcmp(tags[i].key, "pgturbo_cache") != 0)
            continue;
        if (strcmp(tags[i].value, "off") == 0)
            return -1;
        char *end;
        double seconds = strtod(tags[i].value, &end);
        if (end == tags[i].value || *end != '\0' || !(seconds > 0) || seconds > 86400.0 * 365)
            return -1; /* a tag pgturbo cannot read: the query stays out */
        return (int64_t)(seconds * 1000.0 + 0.5) > 0 ? (int64_t)(seconds * 1000.0 + 0.5) : 1;
    }
    return 0;
}

/*
 * Starts a key in k: the format, the kind of request ('Q' or 'X'; describe: the unit asks for
 * the row description), the target, the user and the session parameters the server reports
 * that shape how values are written. Returns 0 or -1 (out of memory).
 */
static int key_begin(buf_t *k, const client_t *c, uint32_t ns, uint8_t kind, bool describe)
{
    uint8_t head[7] = {KEY_VERSION, kind, describe ? 1 : 0};
    memcpy(head + 3, &ns, sizeof(ns));
    buf_consume(k, buf_len(k));
    if (buf_append(k, head, sizeof(head)) < 0 ||
        buf_append(k, c->pool->user, strlen(c->pool->user) + 1) < 0)
        return -1;
    for (int id = 0; id < PARAM_COUNT; id++) {
        if (id == PARAM_APPLICATION_NAME)
            continue;
        const char *v = (c->params.known & (1u << id)) ? c->params.value[id] : "";
        if (buf_append(k, v, strlen(v) + 1) < 0)
            return -1;
    }
    return 0;
}

/* Appends text without its comments (see sqlparse_strip_comments) and a NUL. */
static int key_text(buf_t *k, const char *text, size_t len)
{
    if (buf_reserve(k, len + 1) < 0)
        return -1;
    size_t n = sqlparse_strip_comments(text, len, (char *)buf_tail(k));
    buf_tail(k)[n] = '\0';
    buf_produce(k, (uint32_t)n + 1);
    return 0;
}

/* ---- what a read depends on ---- */

typedef struct read_plan {
    cachestore_dep_t deps[MAX_DEPS];
    int n_deps;
    int64_t ttl_ms;
    uint16_t rule;
} read_plan_t;

static bool add_dep(read_plan_t *p, uint32_t ns, const char *name)
{
    cachegen_counter_t *counter = cachegen_get(cache.gens, ns, name);
    if (counter == NULL)
        return false;
    for (int i = 0; i < p->n_deps; i++)
        if (p->deps[i].counter == counter)
            return true;
    if (p->n_deps == MAX_DEPS)
        return false;
    p->deps[p->n_deps].counter = counter;
    p->deps[p->n_deps].seen = cachegen_read(counter);
    p->n_deps++;
    return true;
}

/* The rule of one table the read names; false when there is none or it says off. */
static bool table_rule(const config_t *cfg, const catalog_t *cat, const char *name, read_plan_t *p)
{
    const char *schema = catalog_schema_of(cat, name);
    const char *relname = name;
    size_t schema_len = schema != NULL ? strlen(schema) : 0;
    if (schema != NULL && strncmp(name, schema, schema_len) == 0 && name[schema_len] == '.')
        relname = name + schema_len + 1;
    int r = config_cache_rule_find(cfg, schema, relname);
    if (r < 0 || cfg->cache_rules[r].ttl == 0)
        return false;
    if (cfg->cache_rules[r].ttl < p->ttl_ms) {
        p->ttl_ms = cfg->cache_rules[r].ttl;
        p->rule = (uint16_t)r;
    }
    return true;
}

/* Adds the generations of the names a catalog lookup gave; false when one has no counter. */
static bool add_names(read_plan_t *p, uint32_t ns, const char **names, int n)
{
    for (int i = 0; i < n; i++)
        if (!add_dep(p, ns, names[i]))
            return false;
    return true;
}

/* Whether every table and function of a read can be cached, and on what it depends. */
static bool plan_with_catalog(const config_t *cfg, const catalog_t *cat, uint32_t ns,
                              const sql_info_t *info, int64_t tag, read_plan_t *p)
{
    const char *names[MAX_NAMES];
    for (int i = 0; i < info->n_read; i++) {
        int n = catalog_read_deps(cat, info->tables_read[i], names, MAX_NAMES);
        if (n < 0 || !add_names(p, ns, names, n))
            return false;
        if (tag == 0 && !table_rule(cfg, cat, info->tables_read[i], p))
            return false;
    }
    for (int i = 0; i < info->n_functions; i++) {
        int n = catalog_function_deps(cat, info->functions[i], names, MAX_NAMES);
        if (n < 0 || !add_names(p, ns, names, n))
            return false;
    }
    return true;
}

/*
 * Plans the caching of a read: false when it may not be cached. The generations are read
 * here, before the read is sent. A missing catalog is asked for (cc->want_catalog).
 */
static bool plan_read(client_t *c, cache_ns_t *ns, const sql_info_t *info, int64_t tag,
                      read_plan_t *p)
{
    if (info->kind != SQL_READ || info->n_statements != 1 || info->for_update ||
        info->too_many_tables || info->reads_clock || info->runs_unknown || info->session_state ||
        info->too_many_functions || (info->n_read == 0 && tag == 0))
        return false;
    catalog_t *cat = ns_catalog(ns);
    if (cat == NULL) {
        c->cache->want_catalog = ns_id(ns);
        return false;
    }
    p->n_deps = 0;
    p->ttl_ms = INT64_MAX;
    p->rule = 0;
    bool ok = add_dep(p, ns_id(ns), "") &&
              plan_with_catalog(c->worker->cfg, cat, ns_id(ns), info, tag, p);
    catalog_unref(cat);
    if (ok && tag > 0) {
        p->ttl_ms = tag;
        p->rule = RULE_TAG;
    }
    return ok;
}

/* Arms a fill for the read whose key is in cc->key. -1 when memory runs out. */
static int arm(client_t *c, const read_plan_t *p, bool extended)
{
    cache_client_t *cc = c->cache;
    cache_fill_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->key_len = buf_len(&cc->key);
    f->key = malloc(f->key_len);
    if (f->key == NULL) {
        free(f);
        return -1;
    }
    memcpy(f->key, buf_head(&cc->key), f->key_len);
    f->hash = sqlparse_hash((const char *)f->key, f->key_len);
    memcpy(f->deps, p->deps, (size_t)p->n_deps * sizeof(p->deps[0]));
    f->n_deps = p->n_deps;
    f->ttl_ms = p->ttl_ms;
    f->rule = p->rule;
    f->extended = extended;
    f->max_size = (size_t)c->worker->cfg->cache_max_entry_size;
    cc->armed = f;
    cachestore_count_miss(cache.store, p->rule);
    return 0;
}

/*
 * Asks Redis for the answer of the read whose key (hash) is in cc->key: CACHE_WAIT, or 0 when
 * it cannot ask (the read then goes on as a miss).
 */
static int l2_read(client_t *c, cache_ns_t *ns, const read_plan_t *p, uint64_t hash)
{
    cache_client_t *cc = c->cache;
    redis_wait_t *w = wait_new(c, true);
    if (w == NULL || (w->key = malloc(buf_len(&cc->key))) == NULL) {
        free(w);
        return 0;
    }
    w->key_len = buf_len(&cc->key);
    memcpy(w->key, buf_head(&cc->key), w->key_len);
    w->hash = hash;
    memcpy(w->deps, p->deps, (size_t)p->n_deps * sizeof(p->deps[0]));
    w->n_deps = p->n_deps;
    w->ttl_ms = p->ttl_ms;
    w->rule = p->rule;
    const char *names[MAX_DEPS];
    const cachegen_counter_t *all = atomic_load_explicit(&ns->all, memory_order_acquire);
    for (int i = 0; i < p->n_deps; i++)
        names[i] = p->deps[i].counter == all ? "" : cachegen_name(p->deps[i].counter);
    char target[sizeof(ns->target)];
    ns_target(ns, target, sizeof(target));
    if (cacheredis_get(cache.redis, hash, w->key, w->key_len, target, names, p->n_deps, l2_got, w) <
        0) {
        wait_free(w);
        return 0;
    }
    wait_link(cc, w);
    cc->l2_reading = true;
    return CACHE_WAIT;
}

/*
 * A read that memory does not hold: asked of Redis first (once), then armed to be recorded,
 * to be stored in Redis too with the generations Redis gave. CACHE_WAIT, 0, or -1 when memory
 * runs out.
 */
static int miss(client_t *c, cache_ns_t *ns, const read_plan_t *p, bool extended)
{
    cache_client_t *cc = c->cache;
    uint64_t hash = sqlparse_hash((const char *)buf_head(&cc->key), buf_len(&cc->key));
    bool asked = cc->l2_read && cc->l2_hash == hash;
    cc->l2_read = false;
    if (!asked) {
        free(cc->l2_gens);
        cc->l2_gens = NULL;
        if (cache.redis != NULL)
            return l2_read(c, ns, p, hash);
    }
    if (arm(c, p, extended) < 0)
        return -1;
    cc->armed->l2 = cc->l2_gens;
    cc->l2_gens = NULL;
    return 0;
}

/* ---- answering ---- */

/* Whether c is outside any transaction with nothing owed: a read now would be autocommit. */
static bool between_transactions(const client_t *c)
{
    const server_t *s = c->server;
    if (s == NULL)
        return true;
    if (s->cache != NULL && (s->cache->dirty || s->cache->fill != NULL))
        return false;
    return s->pend_count == 0 && !s->sync_pending && s->txn_status == 'I';
}

/* Looks the key in cc->key up; on a hit writes the answer, a prefix before it. */
static int lookup(client_t *c, const uint8_t *prefix, size_t prefix_len)
{
    cache_client_t *cc = c->cache;
    uint64_t hash = sqlparse_hash((const char *)buf_head(&cc->key), buf_len(&cc->key));
    uint32_t before = buf_len(&c->out);
    uint16_t rule;
    if (prefix_len > 0 && buf_append(&c->out, prefix, prefix_len) < 0)
        return -1;
    int rc = cachestore_get(cache.store, hash, buf_head(&cc->key), buf_len(&cc->key), now_ms(),
                            &c->out, &rule);
    if (rc != CACHESTORE_HIT) {
        buf_truncate(&c->out, before); /* the prefix goes: nothing was answered */
        return rc < 0 ? -1 : 0;
    }
    if (proto_build_ready(&c->out, 'I') < 0)
        return -1;
    return 1;
}

static int answer_query(client_t *c, cache_ns_t *ns, const proto_msg_t *m)
{
    cache_client_t *cc = c->cache;
    const char *text = (const char *)m->body;
    size_t len = strnlen(text, m->body_len);
    int64_t tag = tag_ttl(text, len);
    if (tag < 0)
        return 0;
    if (key_begin(&cc->key, c, ns_id(ns), 'Q', false) < 0 || key_text(&cc->key, text, len) < 0)
        return -1;
    int rc = lookup(c, NULL, 0);
    if (rc != 0)
        return rc < 0 ? -1 : (int)m->len;
    const sql_info_t *info = sqlparse_cache_get(c->worker->sql, text, len);
    if (info == NULL)
        return -1;
    read_plan_t plan;
    if (!plan_read(c, ns, info, tag, &plan))
        return 0;
    return miss(c, ns, &plan, false);
}

/* The messages of an extended-protocol unit at the head of the client's input. */
typedef struct unit {
    const uint8_t *parse; /* the Parse body after its name ("" only), or NULL */
    uint32_t parse_len;
    const char *statement;    /* the Bind's statement name */
    const uint8_t *bind_rest; /* the Bind after its names: formats, values, result formats */
    uint32_t bind_rest_len;
    bool describe;
    uint32_t bytes; /* the whole unit */
} unit_t;

/* Frames the message at p (avail bytes); false unless it is whole and of type want. */
static bool next_message(const client_t *c, const uint8_t *p, uint32_t avail, uint8_t want,
                         proto_msg_t *m)
{
    return proto_frame(p, avail, (uint32_t)c->worker->cfg->max_packet_size, m) ==
               PROTO_FRAME_COMPLETE &&
           m->type == want;
}

/* Reads [Parse ""] Bind "" [Describe portal ""] Execute "" 0 Sync; false when the input holds
 * anything else (or not all of it yet). */
static bool scan_unit(const client_t *c, unit_t *u)
{
    const uint8_t *p = buf_head(&c->in);
    uint32_t avail = buf_len(&c->in), at = 0;
    proto_msg_t m;
    proto_reader_t r;
    memset(u, 0, sizeof(*u));
    if (p[0] == 'P') {
        if (!next_message(c, p, avail, 'P', &m) || m.body_len == 0 || m.body[0] != '\0')
            return false;
        u->parse = m.body + 1;
        u->parse_len = m.body_len - 1;
        at += m.len;
    }
    if (!next_message(c, p + at, avail - at, 'B', &m))
        return false;
    proto_reader_init(&r, m.body, m.body_len);
    const char *portal = proto_get_string(&r);
    u->statement = proto_get_string(&r);
    if (!proto_reader_ok(&r) || portal[0] != '\0')
        return false;
    u->bind_rest = m.body + r.pos;
    u->bind_rest_len = m.body_len - r.pos;
    at += m.len;
    if (at < avail && p[at] == 'D') {
        if (!next_message(c, p + at, avail - at, 'D', &m) || m.body_len != 2 || m.body[0] != 'P' ||
            m.body[1] != '\0')
            return false;
        u->describe = true;
        at += m.len;
    }
    if (!next_message(c, p + at, avail - at, 'E', &m))
        return false;
    proto_reader_init(&r, m.body, m.body_len);
    portal = proto_get_string(&r);
    int32_t max_rows = proto_get_int32(&r);
    if (!proto_reader_ok(&r) || portal[0] != '\0' || max_rows != 0)
        return false;
    at += m.len;
    if (!next_message(c, p + at, avail - at, 'S', &m))
        return false;
    u->bytes = at + m.len;
    return true;
}

static int answer_unit(client_t *c, cache_ns_t *ns)
{
    cache_client_t *cc = c->cache;
    unit_t u;
    if (!scan_unit(c, &u))
        return 0;
    const uint8_t *body = u.parse;
    uint32_t body_len = u.parse_len;
    if (body == NULL) {
        const prepared_stmt_t *stmt =
            cc->stmts != NULL ? prepared_map_get(cc->stmts, u.statement) : NULL;
        if (stmt == NULL)
            return 0;
        body = stmt->body;
        body_len = stmt->body_len;
    }
    const char *text = (const char *)body;
    size_t len = strnlen(text, body_len);
    if (len == body_len)
        return 0;
    int64_t tag = tag_ttl(text, len);
    if (tag < 0)
        return 0;
    if (key_begin(&cc->key, c, ns_id(ns), 'X', u.describe) < 0 ||
        key_text(&cc->key, text, len) < 0 ||
        buf_append(&cc->key, body + len + 1, body_len - len - 1) < 0 ||
        buf_append(&cc->key, u.bind_rest, u.bind_rest_len) < 0)
        return -1;
    static const uint8_t parse_complete[] = {'1', 0, 0, 0, 4};
    int rc = lookup(c, parse_complete, u.parse != NULL ? sizeof(parse_complete) : 0);
    if (rc < 0)
        return -1;
    if (rc > 0) {
        if (u.parse != NULL) {
            if (cc->stmts == NULL && (cc->stmts = prepared_map_create()) == NULL)
                return -1;
            if (prepared_map_put(cc->stmts, "", u.parse, u.parse_len) == NULL)
                return -1;
        }
        c->parsed_locally = false;
        return (int)u.bytes;
    }
    const sql_info_t *info = sqlparse_cache_get(c->worker->sql, text, len);
    if (info == NULL)
        return -1;
    read_plan_t plan;
    if (!plan_read(c, ns, info, tag, &plan))
        return 0;
    return miss(c, ns, &plan, true);
}

int cache_answer(client_t *c, const proto_msg_t *m)
{
    if (!cache_configured(c->worker->cfg) || c->pool == NULL || cache.store == NULL)
        return 0;
    cache_client_t *cc = client_state(c);
    if (cc == NULL)
        return -1;
    if (cc->l2_reading)
        return CACHE_WAIT;
    /* An armed read is on its way (its later messages, or all of it again after a wait). */
    if (cc->dirty || cc->armed != NULL || !between_transactions(c))
        return 0;
    cache_ns_t *ns = pool_ns(c->pool);
    if (ns == NULL || !ns_allows(ns, now_ms()))
        return 0;
    return m->type == 'Q' ? answer_query(c, ns, m) : answer_unit(c, ns);
}

/* ---- statements ---- */

void cache_observe(client_t *c, const proto_msg_t *m)
{
    if (!cache_configured(c->worker->cfg) || cache.store == NULL)
        return;
    cache_client_t *cc = client_state(c);
    if (cc == NULL)
        return;
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    if (m->type == 'C') {
        if (proto_get_byte(&r) == 'S') {
            const char *name = proto_get_string(&r);
            if (proto_reader_ok(&r) && cc->stmts != NULL)
                prepared_map_remove(cc->stmts, name);
        }
        return;
    }
    const char *name = proto_get_string(&r);
    if (!proto_reader_ok(&r))
        return;
    if (cc->stmts == NULL && (cc->stmts = prepared_map_create()) == NULL)
        return;
    /* Without its text, a later Bind of the statement counts as a write of everything. */
    if (prepared_map_put(cc->stmts, name, m->body + r.pos, r.len - r.pos) == NULL)
        prepared_map_remove(cc->stmts, name);
}

/* The description of the statement a Bind names, or NULL (unknown, or out of memory). */
static const sql_info_t *bound_statement(client_t *c, const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    (void)proto_get_string(&r); /* portal */
    const char *name = proto_get_string(&r);
    cache_client_t *cc = c->cache;
    if (!proto_reader_ok(&r) || cc->stmts == NULL)
        return NULL;
    const prepared_stmt_t *stmt = prepared_map_get(cc->stmts, name);
    if (stmt == NULL)
        return NULL;
    size_t len = strnlen((const char *)stmt->body, stmt->body_len);
    return sqlparse_cache_get(c->worker->sql, (const char *)stmt->body, len);
}

/* ---- forwarding ---- */

/* The statement m runs changed the session: no answer for this client or from this server. */
static void mark_dirty(client_t *c, cache_server_t *ss)
{
    c->cache->dirty = true;
    ss->dirty = true;
}

/* What a Query, Bind or FunctionCall writes, bumped and kept on the server. */
static void writes_of(client_t *c, cache_server_t *ss, cache_ns_t *ns, const proto_msg_t *m)
{
    const sql_info_t *info = NULL;
    if (m->type == 'F') {
        write_everything(&ss->writes, ns);
        ss->writes.ns = ns_id(ns);
        return;
    }
    if (m->type == 'Q')
        info = sqlparse_cache_get(c->worker->sql, (const char *)m->body,
                                  strnlen((const char *)m->body, m->body_len));
    else
        info = bound_statement(c, m);
    if (info == NULL) {
        if (ss->writes.ns != 0 && ss->writes.ns != ns_id(ns))
            bump_writes(&ss->writes, NULL);
        ss->writes.ns = ns_id(ns);
        write_everything(&ss->writes, ns);
        return;
    }
    if (info->session_state)
        mark_dirty(c, ss);
    record_writes(ns, info, &ss->writes);
}

/* Sends the catalog query on s after what is queued, when the target needs its catalog. */
static int maybe_load_catalog(client_t *c, server_t *s, cache_server_t *ss)
{
    uint32_t id = c->cache->want_catalog;
    c->cache->want_catalog = 0;
    if (id == 0 || ss->catalog_ns != 0)
        return 0;
    cache_ns_t *ns = &cache.ns[id];
    if (!ns_wants_catalog(ns, now_ms()) ||
        atomic_exchange_explicit(&ns->loading, true, memory_order_acq_rel))
        return 0;
    atomic_store_explicit(&ns->tried_at, now_ms(), memory_order_relaxed);
    if (server_run_query(s, catalog_query()) < 0) {
        atomic_store_explicit(&ns->loading, false, memory_order_release);
        return -1;
    }
    server_mark_last(s, PENDING_MARK_CATALOG);
    ss->catalog_ns = id;
    ss->catalog_epoch = atomic_load_explicit(&ns->ddl_epoch, memory_order_acquire);
    ss->catalog_failed = false;
    buf_consume(&ss->catalog, buf_len(&ss->catalog));
    return 0;
}

/* The armed read's message m went to s: its responses are to be recorded. */
static void follow_armed(client_t *c, server_t *s, cache_server_t *ss, const proto_msg_t *m)
{
    cache_client_t *cc = c->cache;
    cache_fill_t *f = cc->armed;
    bool expected = f->extended ? strchr("PBDES", m->type) != NULL : m->type == 'Q';
    if (!expected) {
        fill_free(f);
        cc->armed = NULL;
        return;
    }
    if (m->type != 'P')
        server_mark_last(s, PENDING_MARK_FILL);
    if (m->type != 'Q' && m->type != 'S')
        return;
    cc->armed = NULL;
    if (ss->fill != NULL || ss->dirty) {
        fill_free(f);
        return;
    }
    ss->fill = f;
}

int cache_forwarded(client_t *c, server_t *s, const proto_msg_t *m)
{
    if (c->cache == NULL || cache.store == NULL)
        return 0;
    cache_server_t *ss = server_state(s);
    if (ss == NULL)
        return -1;
    if (m->type == 'Q' || m->type == 'B' || m->type == 'F') {
        cache_ns_t *ns = pool_ns(c->pool);
        if (ns != NULL)
            writes_of(c, ss, ns, m);
    }
    if (c->cache->armed != NULL)
        follow_armed(c, s, ss, m);
    if (m->type == 'Q' || m->type == 'S')
        return maybe_load_catalog(c, s, ss);
    return 0;
}

/* ---- responses ---- */

static bool fill_accepts(const cache_fill_t *f, uint8_t type)
{
    switch (type) {
    case 'T': /* RowDescription */
    case 'D': /* DataRow */
    case 'C': /* CommandComplete */
        return true;
    case '2': /* BindComplete */
    case 'n': /* NoData */
        return f->extended;
    default:
        return false;
    }
}

static void fill_append(cache_fill_t *f, const uint8_t *p, uint32_t n)
{
    if (f->failed)
        return;
    if ((size_t)buf_len(&f->value) + n > f->max_size || buf_append(&f->value, p, n) < 0) {
        f->failed = true;
        buf_free(&f->value);
    }
}

/* The catalog query's one value (a DataRow of one column) is kept. */
static void catalog_row(cache_server_t *ss, const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    int16_t columns = proto_get_int16(&r);
    int32_t len = proto_get_int32(&r);
    const uint8_t *value = len > 0 ? proto_get_bytes(&r, (uint32_t)len) : NULL;
    if (!proto_reader_ok(&r) || columns != 1 || value == NULL ||
        buf_append(&ss->catalog, value, (size_t)len) < 0)
        ss->catalog_failed = true;
}

void cache_response(server_t *s, const proto_msg_t *m, const pending_t *head)
{
    cache_server_t *ss = s->cache;
    if (ss == NULL || head == NULL)
        return;
    if (head->mark == PENDING_MARK_CATALOG) {
        if (m->type == 'D')
            catalog_row(ss, m);
        else if (m->type == 'E')
            ss->catalog_failed = true;
        return;
    }
    if (head->mark != PENDING_MARK_FILL || ss->fill == NULL || m->type == 'Z')
        return;
    if (!fill_accepts(ss->fill, m->type))
        ss->fill->failed = true;
    else
        fill_append(ss->fill, m->body - PROTO_HEADER_LEN, m->len);
}

void cache_stream(server_t *s, const uint8_t *p, uint32_t n)
{
    if (s->cache != NULL && s->cache->fill != NULL)
        fill_append(s->cache->fill, p, n);
}

static void finish_catalog(server_t *s, cache_server_t *ss)
{
    cache_ns_t *ns = &cache.ns[ss->catalog_ns];
    ss->catalog_ns = 0;
    char err[256] = "";
    catalog_t *cat = NULL;
    bool outdated = atomic_load_explicit(&ns->ddl_epoch, memory_order_acquire) != ss->catalog_epoch;
    if (!ss->catalog_failed && !outdated)
        cat = catalog_parse((const char *)buf_head(&ss->catalog), buf_len(&ss->catalog), err,
                            sizeof(err));
    else
        snprintf(err, sizeof(err), "the catalog query failed");
    buf_free(&ss->catalog);
    if (outdated) {
        /* A DDL came meanwhile: what was read may not show it. The next read asks again. */
        atomic_store_explicit(&ns->tried_at, 0, memory_order_relaxed);
    } else if (cat == NULL) {
        atomic_fetch_add_explicit(&ns->catalog_failures, 1, memory_order_relaxed);
        server_log(LOG_WARNING, s, "cache: cannot read the catalog: %s", err);
    } else {
        ns_set_catalog(ns, cat);
        atomic_store_explicit(&ns->loaded_at, now_ms(), memory_order_relaxed);
        atomic_fetch_add_explicit(&ns->catalog_loads, 1, memory_order_relaxed);
    }
    atomic_store_explicit(&ns->loading, false, memory_order_release);
}

static void finish_fill(server_t *s, cache_server_t *ss)
{
    cache_fill_t *f = ss->fill;
    ss->fill = NULL;
    if (!f->failed && s->txn_status == 'I' && buf_len(&f->value) > 0) {
        int rc =
            cachestore_put(cache.store, f->hash, f->key, f->key_len, buf_head(&f->value),
                           buf_len(&f->value), f->deps, f->n_deps, now_ms() + f->ttl_ms, f->rule);
        atomic_fetch_add_explicit(rc == 0 ? &cache.fills : &cache.fills_dropped, 1,
                                  memory_order_relaxed);
        /* Only what memory took: a rejection may mean a write came meanwhile. */
        if (rc == 0 && f->l2 != NULL && cache.redis != NULL &&
            cacheredis_put(cache.redis, f->hash, f->key, f->key_len, f->l2, buf_head(&f->value),
                           buf_len(&f->value), f->ttl_ms) < 0)
            server_log(LOG_WARNING, s, "cache: out of memory storing an answer in Redis");
    } else {
        atomic_fetch_add_explicit(&cache.fills_dropped, 1, memory_order_relaxed);
    }
    fill_free(f);
}

void cache_ready(server_t *s, const pending_t *head)
{
    cache_server_t *ss = s->cache;
    if (ss == NULL)
        return;
    if (head->mark == PENDING_MARK_CATALOG && ss->catalog_ns != 0)
        finish_catalog(s, ss);
    if (head->mark == PENDING_MARK_FILL && ss->fill != NULL)
        finish_fill(s, ss);
    if (s->txn_status == 'I')
        bump_writes(&ss->writes, s->client);
}

void cache_server_gone(server_t *s)
{
    cache_server_t *ss = s->cache;
    if (ss == NULL)
        return;
    bump_writes(&ss->writes, NULL);
    if (ss->catalog_ns != 0) {
        /* Not the query's failure: the next read asks again without waiting for a retry. */
        atomic_store_explicit(&cache.ns[ss->catalog_ns].tried_at, 0, memory_order_relaxed);
        atomic_store_explicit(&cache.ns[ss->catalog_ns].loading, false, memory_order_release);
    }
    fill_free(ss->fill);
    buf_free(&ss->catalog);
    free(ss);
    s->cache = NULL;
}

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
        (json_int_t)atomic_load(&cache.l2_hits), "misses",
        (json_int_t)atomic_load(&cache.l2_misses), "get_errors", (json_int_t)st.get_errors, "puts",
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
    return json_pack("{s:b, s:s, s:I, s:I, s:I, s:s}", "streaming", st.connected, "slot", st.slot,
                     "transactions", (json_int_t)st.transactions, "changes", (json_int_t)st.changes,
                     "reconnects", (json_int_t)st.reconnects, "last_error", st.last_error);
}

/* One object per database target the cache has met. */
static json_t *targets_json(void)
{
    json_t *targets = json_array();
    int64_t now = now_ms();
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
                            json_integer((json_int_t)atomic_load(&cache.fills_dropped))) < 0) {
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

/* Bumps and drops the entries of one relname in every target. */
static size_t clear_table(const char *table)
{
    size_t n = 0;
    for (uint32_t i = 1; i <= MAX_NAMESPACES; i++) {
        cachegen_counter_t *counter = cachegen_find(cache.gens, i, table);
        if (counter == NULL)
            continue;
        cachegen_bump(counter);
        n += cachestore_remove_dep(cache.store, counter);
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
            if (all != NULL)
                cachegen_bump(all);
        }
        return cachestore_clear(cache.store);
    }
    size_t n = 0;
    for (int i = 1; i <= MAX_NAMESPACES; i++) {
        catalog_t *cat = ns_catalog(&cache.ns[i]);
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
