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
 *
 * What other writers report (the logical stream, the instances sharing Redis) is in
 * cache_peers.c, the admin API's figures and clears in cache_api.c, the warm in cache_warm.c;
 * cache_internal.h holds what they share.
 */
#include "cache_internal.h"

#include "cachekey.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "server.h"
#include "sqlparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cache_globals_t cache;

/* ---- setup ---- */

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
        cache_start_logical(cfg, err, errlen) < 0) {
        cache_stop();
        return -1;
    }
    if (cfg->cache_redis_host[0] != '\0' && cache_configured(cfg) &&
        cache_start_redis(cfg, err, errlen) < 0) {
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

uint32_t cache_ns_id(const cache_ns_t *ns)
{
    return (uint32_t)(ns - cache.ns);
}

void cache_target_name(char *out, size_t len, const char *host, int port, const char *dbname)
{
    snprintf(out, len, "%s:%d/%s", host, port, dbname);
}

/* The namespace of host:port/dbname, made on first use; NULL when none is left. */
cache_ns_t *cache_target_ns(const char *host, int port, const char *dbname)
{
    char target[sizeof(cache.ns[0].target)];
    cache_target_name(target, sizeof(target), host, port, dbname);
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
        cache_ns_t *made = cache_target_ns(host, port, dbname);
        if (made == NULL)
            return NULL;
        id = cache_ns_id(made);
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
catalog_t *cache_ns_catalog(cache_ns_t *ns)
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
void cache_ns_forget_catalog(cache_ns_t *ns)
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

int64_t cache_now_ms(void)
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

void cache_bump(cachegen_counter_t *counter)
{
    cachegen_bump(counter);
    atomic_fetch_add_explicit(&cache.write_bumps, 1, memory_order_relaxed);
}

void cache_bump_everything(cache_ns_t *ns)
{
    cachegen_counter_t *all = atomic_load_explicit(&ns->all, memory_order_acquire);
    if (all != NULL)
        cachegen_bump(all);
    atomic_fetch_add_explicit(&cache.everything_bumps, 1, memory_order_relaxed);
}

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
        cache_publish_writes(w, waiter);
    if (w->ddl)
        cache_ns_forget_catalog(&cache.ns[w->ns]);
    if (w->everything)
        cache_bump_everything(&cache.ns[w->ns]);
    for (int i = 0; i < w->n; i++)
        cache_bump(w->counters[i]);
    w->n = 0;
    w->everything = false;
    w->ddl = false;
    w->ns = 0;
}

/* Bumps counter now and keeps it for the end of the transaction. */
static void write_table(cache_writes_t *w, cachegen_counter_t *counter)
{
    cache_bump(counter);
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
    cache_bump_everything(ns);
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
    if (w->ns != 0 && w->ns != cache_ns_id(ns))
        bump_writes(w, NULL);
    w->ns = cache_ns_id(ns);
    if (info->kind == SQL_DDL) {
        cache_ns_forget_catalog(ns);
        w->ddl = true;
        write_everything(w, ns);
        return;
    }
    catalog_t *cat = cache_ns_catalog(ns);
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
            cachegen_counter_t *counter = cachegen_get(cache.gens, cache_ns_id(ns), names[k]);
            if (counter == NULL)
                write_everything(w, ns);
            else
                write_table(w, counter);
        }
    }
    catalog_unref(cat);
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
 * The parts of c's key that come from c, with kind and describe: the target, the user its
 * pool logs it in as, and the session parameters the server reports that shape how values
 * are written. The caller sets the text (and a unit's Parse and Bind rests).
 */
static void key_request(const client_t *c, const cache_ns_t *ns, uint8_t kind, bool describe,
                        cachekey_request_t *r)
{
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->describe = describe;
    r->ns = cache_ns_id(ns);
    r->user = c->pool->user;
    for (int id = 0; id < PARAM_COUNT; id++)
        r->params[id] = (c->params.known & (1u << id)) ? c->params.value[id] : "";
}

/* ---- what a read depends on ---- */

static bool add_dep(read_plan_t *p, uint32_t ns, const char *name)
{
    cachegen_counter_t *counter = cachegen_get(cache.gens, ns, name);
    if (counter == NULL)
        return false;
    for (int i = 0; i < p->n_deps; i++)
        if (p->deps[i].counter == counter)
            return true;
    uint64_t seen = cachegen_read(counter);
    /* A table a reported commit changed, not yet visible: an answer read now could not be
     * kept (cachestore_put refuses it), so none is recorded or asked of Redis. */
    if (p->n_deps == MAX_DEPS || cachegen_is_pending(seen))
        return false;
    p->deps[p->n_deps].counter = counter;
    p->deps[p->n_deps].seen = seen;
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
    catalog_t *cat = cache_ns_catalog(ns);
    if (cat == NULL) {
        c->cache->want_catalog = cache_ns_id(ns);
        return false;
    }
    p->n_deps = 0;
    p->ttl_ms = INT64_MAX;
    p->rule = 0;
    bool ok = add_dep(p, cache_ns_id(ns), "") &&
              plan_with_catalog(c->worker->cfg, cat, cache_ns_id(ns), info, tag, p);
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
    f->hash = cc->key_hash;
    memcpy(f->deps, p->deps, (size_t)p->n_deps * sizeof(p->deps[0]));
    f->n_deps = p->n_deps;
    f->ttl_ms = p->ttl_ms;
    f->rule = p->rule;
    f->extended = extended;
    f->max_size = (size_t)c->worker->cfg->cache_max_entry_size;
    f->warm = c->internal;
    cc->armed = f;
    cachestore_count_miss(cache.store, p->rule);
    return 0;
}

/*
 * A read that memory does not hold: asked of Redis first (once), then armed to be recorded,
 * to be stored in Redis too with the generations Redis gave. CACHE_WAIT, 0, or -1 when memory
 * runs out.
 */
static int miss(client_t *c, cache_ns_t *ns, const read_plan_t *p, bool extended)
{
    cache_client_t *cc = c->cache;
    uint64_t hash = cc->key_hash;
    bool asked = cc->l2_read && cc->l2_hash == hash;
    cc->l2_read = false;
    if (!asked) {
        free(cc->l2_gens);
        cc->l2_gens = NULL;
        if (cache.redis != NULL)
            return cache_l2_read(c, ns, p, hash);
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

/* Looks the key in cc->key up (its hash kept in cc->key_hash for a miss); on a hit writes
 * the answer, a prefix before it. */
static int lookup(client_t *c, const uint8_t *prefix, size_t prefix_len)
{
    cache_client_t *cc = c->cache;
    uint64_t hash = sqlparse_hash((const char *)buf_head(&cc->key), buf_len(&cc->key));
    cc->key_hash = hash;
    uint32_t before = buf_len(&c->out);
    uint16_t rule;
    if (prefix_len > 0 && buf_append(&c->out, prefix, prefix_len) < 0)
        return -1;
    int rc = cachestore_get(cache.store, hash, buf_head(&cc->key), buf_len(&cc->key),
                            cache_now_ms(), &c->out, &rule);
    if (rc != CACHESTORE_HIT) {
        buf_truncate(&c->out, before); /* the prefix goes: nothing was answered */
        return rc < 0 ? -1 : 0;
    }
    /* Right after an L2 read of this key, the hit is what the L2 just gave memory. That read
     * is used up: a later miss of the same key asks Redis again. */
    bool from_l2 = cc->l2_read && cc->l2_hash == hash;
    cc->l2_read = false;
    if (c->internal)
        atomic_fetch_add_explicit(from_l2 ? &cache.warmed : &cache.warm_fresh, 1,
                                  memory_order_relaxed);
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
    cachekey_request_t kr;
    key_request(c, ns, CACHEKEY_QUERY, false, &kr);
    kr.text = text;
    kr.text_len = len;
    if (cachekey_encode(&cc->key, &kr) < 0)
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
    cachekey_request_t kr;
    key_request(c, ns, CACHEKEY_UNIT, u.describe, &kr);
    kr.text = text;
    kr.text_len = len;
    kr.types = body + len + 1;
    kr.types_len = body_len - (uint32_t)len - 1;
    kr.bind = u.bind_rest;
    kr.bind_len = u.bind_rest_len;
    if (cachekey_encode(&cc->key, &kr) < 0)
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
    if (ns == NULL || !cache_ns_allows(ns, cache_now_ms()))
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
        ss->writes.ns = cache_ns_id(ns);
        return;
    }
    if (m->type == 'Q')
        info = sqlparse_cache_get(c->worker->sql, (const char *)m->body,
                                  strnlen((const char *)m->body, m->body_len));
    else
        info = bound_statement(c, m);
    if (info == NULL) {
        if (ss->writes.ns != 0 && ss->writes.ns != cache_ns_id(ns))
            bump_writes(&ss->writes, NULL);
        ss->writes.ns = cache_ns_id(ns);
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
    if (!ns_wants_catalog(ns, cache_now_ms()) ||
        atomic_exchange_explicit(&ns->loading, true, memory_order_acq_rel))
        return 0;
    atomic_store_explicit(&ns->tried_at, cache_now_ms(), memory_order_relaxed);
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
        atomic_store_explicit(&ns->loaded_at, cache_now_ms(), memory_order_relaxed);
        atomic_fetch_add_explicit(&ns->catalog_loads, 1, memory_order_relaxed);
    }
    atomic_store_explicit(&ns->loading, false, memory_order_release);
}

static void finish_fill(server_t *s, cache_server_t *ss)
{
    cache_fill_t *f = ss->fill;
    ss->fill = NULL;
    if (!f->failed && s->txn_status == 'I' && buf_len(&f->value) > 0) {
        int rc = cachestore_put(cache.store, f->hash, f->key, f->key_len, buf_head(&f->value),
                                buf_len(&f->value), f->deps, f->n_deps, cache_now_ms() + f->ttl_ms,
                                f->rule);
        atomic_fetch_add_explicit(rc == 0 ? &cache.fills : &cache.fills_dropped, 1,
                                  memory_order_relaxed);
        if (rc == 0 && f->warm)
            atomic_fetch_add_explicit(&cache.warmed, 1, memory_order_relaxed);
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
