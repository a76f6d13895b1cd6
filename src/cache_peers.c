/*
 * cache_peers.c
 *    The writes this instance learns of from elsewhere, and what it tells the others: the
 *    logical-decoding consumers (cache_invalidation = logical), and the link to the pgturbo
 *    instances that share a Redis (publishes of this instance's commits, with its clients held
 *    until the others applied them; their invalidations applied here; the L2 reads). See
 *    cache.h and cacheredis.h for why no answer outlives its data.
 */
#include "cache_internal.h"

#include "log.h"
#include "pool.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(MAX_WRITES + 2 <= CACHEREDIS_MAX_DEPS, "a publish carries a transaction's writes");
_Static_assert(MAX_DEPS <= CACHEREDIS_MAX_DEPS, "an L2 read carries what a read depends on");
_Static_assert(sizeof(((cache_ns_t *)NULL)->target) <= CACHEREDIS_TARGET_LEN,
               "every database target can be published");

/* Counters a transaction of the logical stream marks at most; past them, everything. */
#define LOGICAL_TXN_MAX (MAX_NAMES + 1)

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

void cache_ns_target(cache_ns_t *ns, char *out, size_t len)
{
    pthread_mutex_lock(&ns->lock);
    snprintf(out, len, "%s", ns->target);
    pthread_mutex_unlock(&ns->lock);
}

/* ---- logical invalidation ---- */

static void publish_and_wait(cache_ns_t *ns, const char **names, int n);

/* The counters of what a transaction the logical stream reported changed, marked pending
 * until it is visible. */
typedef struct logical_txn {
    int n;
    cachegen_counter_t *counters[LOGICAL_TXN_MAX];
} logical_txn_t;

/* Adds counter, unless it is there already. Returns false when there is no room left. */
static bool txn_add(logical_txn_t *t, cachegen_counter_t *counter)
{
    for (int i = 0; i < t->n; i++)
        if (t->counters[i] == counter)
            return true;
    if (t->n == LOGICAL_TXN_MAX)
        return false;
    t->counters[t->n++] = counter;
    return true;
}

/* Adds a table and what a write to it reaches in the catalog's eyes (a partition's ancestors,
 * which reads of the parent depend on). Returns false when past a capacity. */
static bool txn_add_table(logical_txn_t *t, cache_ns_t *ns, const catalog_t *cat,
                          const cachelogical_table_t *table)
{
    cachegen_counter_t *own = cachegen_get(cache.gens, cache_ns_id(ns), table->relname);
    if (own == NULL || !txn_add(t, own))
        return false;
    if (cat == NULL)
        return true;
    char name[2 * CACHELOGICAL_NAME_LEN];
    snprintf(name, sizeof(name), "%s.%s", table->schema, table->relname);
    const char *reached[MAX_NAMES];
    bool everything = false;
    int k = catalog_write_closure(cat, name, reached, MAX_NAMES, &everything);
    for (int i = 0; i < k; i++) {
        cachegen_counter_t *counter = cachegen_get(cache.gens, cache_ns_id(ns), reached[i]);
        if (counter == NULL || !txn_add(t, counter))
            return false;
    }
    return true;
}

/*
 * A transaction the logical stream reported (on the consumer's thread), before the consumer
 * confirms it: the counters of its tables are marked pending (bumped, and no answer read while
 * marked is kept), then the other instances sharing Redis are told and waited for. Triggers and
 * cascades need no "everything": the stream reports their changes too. tables NULL means
 * changes may have been missed. The mark goes before the publish: an answer Redis still has
 * from before the write cannot be taken into memory under a pending generation.
 */
static void *logical_commit(void *arg, const cachelogical_table_t *tables, int n)
{
    cache_ns_t *ns = arg;
    logical_txn_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        char target[sizeof(ns->target)];
        cache_ns_target(ns, target, sizeof(target));
        log_error("cache logical: out of memory: every answer of %s is dropped", target);
        cache_bump_everything(ns);
        const char *everything[] = {""};
        publish_and_wait(ns, everything, 1);
        return NULL;
    }
    catalog_t *cat = tables != NULL ? cache_ns_catalog(ns) : NULL;
    bool named = tables != NULL;
    for (int i = 0; i < n && named; i++)
        named = txn_add_table(t, ns, cat, &tables[i]);
    catalog_unref(cat);
    if (!named) {
        t->n = 0;
        t->counters[t->n++] = atomic_load_explicit(&ns->all, memory_order_acquire);
    } else if (t->n == 0) {
        free(t); /* no table (a logical message alone): nothing to mark */
        return NULL;
    }
    const char *names[LOGICAL_TXN_MAX];
    for (int i = 0; i < t->n; i++) {
        cachegen_begin_pending(t->counters[i]);
        names[i] = named ? cachegen_name(t->counters[i]) : "";
    }
    atomic_fetch_add_explicit(named ? &cache.write_bumps : &cache.everything_bumps, (uint64_t)t->n,
                              memory_order_relaxed);
    publish_and_wait(ns, names, t->n);
    return t;
}

/* The transaction is visible to every new snapshot: its marks go (and the generations move
 * again, past what was read while they were set). */
static void logical_visible(void *arg, void *token)
{
    (void)arg;
    logical_txn_t *t = token;
    if (t == NULL)
        return;
    for (int i = 0; i < t->n; i++)
        cachegen_end_pending(t->counters[i]);
    free(t);
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
 * password, as application_name pgturbo_cache_<dbname>. Returns 0, or -1 with a message in err for
 * a connection string libpq refuses.
 */
int cache_start_logical(const config_t *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->n_databases; i++) {
        const config_database_t *db = &cfg->databases[i];
        if (strcmp(db->name, "*") == 0)
            continue;
        const char *dbname = db->dbname[0] != '\0' ? db->dbname : db->name;
        cache_ns_t *ns = cache_target_ns(db->host, db->port, dbname);
        if (ns == NULL || ns->logical != NULL)
            continue;
        if (atomic_load(&ns->all) == NULL)
            atomic_store(&ns->all, cachegen_get(cache.gens, cache_ns_id(ns), ""));
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
        /* Named for its database, so that synchronous_standby_names can make a database's
         * commits wait for the consumer of that database and no other. */
        char name[CONFIG_NAME_LEN];
        snprintf(name, sizeof(name), "pgturbo_cache_%.49s", dbname);
        conninfo_put(conninfo, sizeof(conninfo), "application_name", name);
        char why[256];
        cachelogical_callbacks_t cb = {logical_commit, logical_visible, ns};
        ns->logical = cachelogical_start(conninfo, "pgturbo", &cb, why, sizeof(why));
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
bool cache_ns_allows(cache_ns_t *ns, int64_t now)
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
            cache_bump_everything(&cache.ns[i]);
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
            cache_bump_everything(ns);
        } else if (strcmp(relnames[i], DDL_NAME) == 0) {
            cache_ns_forget_catalog(ns);
        } else {
            cachegen_counter_t *counter = cachegen_get(cache.gens, id, relnames[i]);
            if (counter != NULL)
                cache_bump(counter);
            else
                cache_bump_everything(ns);
        }
    }
}

int cache_start_redis(const config_t *cfg, char *err, size_t errlen)
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
    /* Checked here too, for a message that names the setting rather than the host. */
    if (cfg->cache_redis_lease < CACHEREDIS_MIN_LEASE_MS ||
        cfg->cache_redis_lease > CACHEREDIS_MAX_LEASE_MS) {
        snprintf(err, errlen, "cache_redis_lease must be between %d and %d ms",
                 CACHEREDIS_MIN_LEASE_MS, CACHEREDIS_MAX_LEASE_MS);
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
    if (n > CACHEREDIS_MAX_DEPS) {
        names = everything;
        n = 1;
    }
    char target[sizeof(ns->target)];
    cache_ns_target(ns, target, sizeof(target));
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

static redis_wait_t *wait_new(client_t *c)
{
    redis_wait_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->worker = c->worker;
    w->client = c;
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
 * about to come on, waits until they all applied it (cacheredis.h says how long at most).
 * MAX_WRITES leaves room for "" and DDL_NAME; a name the channel cannot carry (a newline in
 * it) is sent as everything by cacheredis.
 */
void cache_publish_writes(const cache_writes_t *w, client_t *waiter)
{
    char target[sizeof(cache.ns[0].target)];
    cache_ns_target(&cache.ns[w->ns], target, sizeof(target));
    const char *names[MAX_WRITES + 1];
    int n = 0;
    if (w->everything)
        names[n++] = "";
    for (int i = 0; i < w->n && !w->everything; i++)
        names[n++] = cachegen_name(w->counters[i]);
    if (w->ddl)
        names[n++] = DDL_NAME;
    redis_wait_t *wait = waiter != NULL && waiter->cache != NULL ? wait_new(waiter) : NULL;
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

void cache_publish_cleared(cache_ns_t *ns, const char *relname)
{
    if (cache.redis == NULL)
        return;
    char target[sizeof(ns->target)];
    cache_ns_target(ns, target, sizeof(target));
    if (cacheredis_publish(cache.redis, target, &relname, 1, published, NULL) < 0)
        log_error("cache: out of memory publishing a clear of %s to the other instances", target);
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
        /* Rejected when a generation moved since the read was planned: then it goes on. */
        int rc = cachestore_put(cache.store, w->hash, w->key, w->key_len, w->value, w->value_len,
                                w->deps, w->n_deps, cache_now_ms() + w->ttl_ms, w->rule);
        (void)rc;
    } else if (w->result == CACHEREDIS_MISS) {
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

/*
 * Asks Redis for the answer of the read whose key (hash) is in cc->key: CACHE_WAIT, or 0 when
 * it cannot ask (the read then goes on as a miss).
 */
int cache_l2_read(client_t *c, cache_ns_t *ns, const read_plan_t *p, uint64_t hash)
{
    cache_client_t *cc = c->cache;
    redis_wait_t *w = wait_new(c);
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
    cache_ns_target(ns, target, sizeof(target));
    if (cacheredis_get(cache.redis, hash, w->key, w->key_len, target, names, p->n_deps, l2_got, w) <
        0) {
        wait_free(w);
        return 0;
    }
    wait_link(cc, w);
    cc->l2_reading = true;
    return CACHE_WAIT;
}
