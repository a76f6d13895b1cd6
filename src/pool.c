/*
 * pool.c
 *    Pools of server connections with global limits and per-worker shards; see pool.h.
 */
#include "pool.h"

#include "client.h"
#include "log.h"
#include "profile.h"
#include "prepared.h"
#include "server.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per database name: server connections, for max_db_connections, and whether it is paused. */
typedef struct db_count {
    char name[CONFIG_NAME_LEN];
    _Atomic int n;
    bool paused; /* by PAUSE or KILL, so that pools made later start paused; under registry_lock */
    struct db_count *next;
} db_count_t;

/* How many statement texts a pool remembers as known to prepare without error. */
#define KNOWN_STATEMENTS 10000

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pool_t *pools;
static db_count_t *db_counts;
static bool all_paused; /* PAUSE without a database: names seen later start paused too */

/* The entry of database name, made on first use; NULL when memory runs out. */
static db_count_t *db_entry(const char *name)
{
    for (db_count_t *d = db_counts; d != NULL; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    db_count_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->paused = all_paused;
    d->next = db_counts;
    db_counts = d;
    return d;
}

static void apply_settings(pool_t *pool, const config_database_t *db)
{
    pthread_mutex_lock(&pool->lock);
    snprintf(pool->target.host, sizeof(pool->target.host), "%s", db->host);
    pool->target.port = db->port;
    snprintf(pool->target.dbname, sizeof(pool->target.dbname), "%s",
             strcmp(db->name, "*") == 0 && db->dbname[0] == '\0' ? pool->database : db->dbname);
    snprintf(pool->target.user, sizeof(pool->target.user), "%s", db->user);
    snprintf(pool->target.password, sizeof(pool->target.password), "%s", db->password);
    pthread_mutex_unlock(&pool->lock);
    atomic_store(&pool->cache_ns, 0); /* the target may be another: named again on use */
    atomic_store(&pool->pool_size, db->pool_size);
    atomic_store(&pool->min_pool_size, db->min_pool_size);
    atomic_store(&pool->reserve_pool_size, db->reserve_pool_size);
    atomic_store(&pool->max_db_connections, db->max_db_connections);
    atomic_store(&pool->mode, (int)db->pool_mode);
}

pool_t *pool_get(const config_database_t *db, const char *database, const char *user)
{
    pthread_mutex_lock(&registry_lock);
    pool_t *pool;
    for (pool = pools; pool != NULL; pool = pool->next)
        if (strcmp(pool->database, database) == 0 && strcmp(pool->user, user) == 0)
            goto done;
    db_count_t *d = db_entry(database);
    if (d == NULL)
        goto done;
    pool = calloc(1, sizeof(*pool) + (size_t)n_workers * sizeof(pool_shard_t));
    if (pool == NULL)
        goto done;
    atomic_store(&pool->paused, d->paused);
    snprintf(pool->database, sizeof(pool->database), "%s", database);
    snprintf(pool->user, sizeof(pool->user), "%s", user);
    pthread_mutex_init(&pool->lock, NULL);
    pool->db_servers = &d->n;
    pool->known = prepared_cache_create(KNOWN_STATEMENTS);
    if (pool->known == NULL) {
        prepared_cache_free(pool->known);
        free(pool);
        pool = NULL;
        goto done;
    }
    apply_settings(pool, db);
    pool->next = pools;
    pools = pool;
done:
    pthread_mutex_unlock(&registry_lock);
    return pool;
}

void pool_set_scram_keys(pool_t *pool, const uint8_t client_key[32], const uint8_t server_key[32])
{
    pthread_mutex_lock(&pool->lock);
    memcpy(pool->target.client_key, client_key, 32);
    memcpy(pool->target.server_key, server_key, 32);
    pool->target.has_keys = true;
    pthread_mutex_unlock(&pool->lock);
}

void pool_reload_all(const config_t *cfg)
{
    pthread_mutex_lock(&registry_lock);
    for (pool_t *pool = pools; pool != NULL; pool = pool->next) {
        const config_database_t *db = config_find_database(cfg, pool->database);
        if (db != NULL)
            apply_settings(pool, db);
    }
    pthread_mutex_unlock(&registry_lock);
}

void pool_free_all(void)
{
    while (pools != NULL) {
        pool_t *next = pools->next;
        buf_free(&pools->welcome);
        prepared_cache_free(pools->known);
        pthread_mutex_destroy(&pools->lock);
        free(pools);
        pools = next;
    }
    while (db_counts != NULL) {
        db_count_t *next = db_counts->next;
        free(db_counts);
        db_counts = next;
    }
}

int pool_pause(const char *database, bool paused)
{
    int n = 0;
    pthread_mutex_lock(&registry_lock);
    if (database == NULL) {
        all_paused = paused;
        for (db_count_t *d = db_counts; d != NULL; d = d->next)
            d->paused = paused;
    } else {
        db_count_t *d = db_entry(database);
        if (d == NULL) {
            pthread_mutex_unlock(&registry_lock);
            return -1;
        }
        d->paused = paused;
    }
    for (pool_t *pool = pools; pool != NULL; pool = pool->next)
        if (database == NULL || strcmp(pool->database, database) == 0) {
            atomic_store(&pool->paused, paused);
            n++;
        }
    pthread_mutex_unlock(&registry_lock);
    return n;
}

void pool_foreach(void (*fn)(pool_t *pool, void *arg), void *arg)
{
    pthread_mutex_lock(&registry_lock);
    pool_t *first = pools;
    pthread_mutex_unlock(&registry_lock);
    /* Pools are only ever added at the head, so the list from first on is stable. */
    for (pool_t *pool = first; pool != NULL; pool = pool->next)
        fn(pool, arg);
}

void pool_set_welcome(pool_t *pool, const buf_t *messages, const params_t *defaults)
{
    pthread_mutex_lock(&pool->lock);
    if (!atomic_load(&pool->has_welcome) &&
        buf_append(&pool->welcome, buf_head(messages), buf_len(messages)) == 0) {
        pool->defaults = *defaults;
        atomic_store_explicit(&pool->has_welcome, true, memory_order_release);
    }
    pthread_mutex_unlock(&pool->lock);
}

bool pool_statement_known(pool_t *pool, uint64_t hash)
{
    pthread_mutex_lock(&pool->lock);
    bool known = prepared_cache_lookup(pool->known, hash);
    pthread_mutex_unlock(&pool->lock);
    return known;
}

void pool_statement_learned(pool_t *pool, uint64_t hash)
{
    uint64_t evicted;
    pthread_mutex_lock(&pool->lock);
    prepared_cache_add(pool->known, hash, &evicted);
    pthread_mutex_unlock(&pool->lock);
}

/* ---- wait queue ---- */

static void enqueue(pool_shard_t *sh, client_t *c, int64_t now)
{
    c->wait_next = NULL;
    c->wait_prev = sh->wait_tail;
    if (sh->wait_tail != NULL)
        sh->wait_tail->wait_next = c;
    else
        sh->wait_head = c;
    sh->wait_tail = c;
    c->state = CLIENT_WAITING;
    c->wait_since = now;
    atomic_fetch_add(&sh->n_waiting, 1);
}

static void unlink_waiter(pool_shard_t *sh, client_t *c)
{
    if (c->wait_prev != NULL)
        c->wait_prev->wait_next = c->wait_next;
    else
        sh->wait_head = c->wait_next;
    if (c->wait_next != NULL)
        c->wait_next->wait_prev = c->wait_prev;
    else
        sh->wait_tail = c->wait_prev;
    c->wait_next = c->wait_prev = NULL;
    atomic_fetch_sub(&sh->n_waiting, 1);
}

void pool_unqueue(pool_t *pool, client_t *c)
{
    if (c->state != CLIENT_WAITING)
        return;
    unlink_waiter(&pool->shards[c->worker->id], c);
    c->state = CLIENT_IDLE;
}

/* ---- opening connections ---- */

/* Claims a slot under the pool's (and database's) limits; false when they are reached. */
static bool claim_slot(pool_t *pool, bool reserve)
{
    int limit =
        atomic_load(&pool->pool_size) + (reserve ? atomic_load(&pool->reserve_pool_size) : 0);
    int n = atomic_load(&pool->n_servers);
    do {
        if (n >= limit)
            return false;
    } while (!atomic_compare_exchange_weak(&pool->n_servers, &n, n + 1));
    int db_limit = atomic_load(&pool->max_db_connections);
    if (atomic_fetch_add(pool->db_servers, 1) >= db_limit && db_limit > 0) {
        atomic_fetch_sub(pool->db_servers, 1);
        atomic_fetch_sub(&pool->n_servers, 1);
        return false;
    }
    return true;
}

static void release_slot(pool_t *pool)
{
    atomic_fetch_sub(&pool->n_servers, 1);
    atomic_fetch_sub(pool->db_servers, 1);
}

static void fail_waiters(pool_shard_t *sh, const char *sqlstate, const char *msg)
{
    client_t *c;
    while ((c = sh->wait_head) != NULL)
        client_close(c, sqlstate, msg); /* unqueues c */
}

static bool open_server(pool_t *pool, worker_t *w, bool reserve)
{
    pool_shard_t *sh = &pool->shards[w->id];
    if (!claim_slot(pool, reserve))
        return false;
    server_t *s = server_connect(pool, w);
    if (s == NULL) {
        release_slot(pool);
        atomic_fetch_add_explicit(&w->counters.server_connect_failures, 1, memory_order_relaxed);
        if (sh->n_servers == 0)
            fail_waiters(sh, "08006", "server connection failed");
        return false;
    }
    sh->n_servers++;
    sh->n_connecting++;
    return true;
}

/* Asks another worker with an idle server of this pool to send it over. */
static void ask_other_workers(pool_t *pool, worker_t *w)
{
    for (int i = 0; i < n_workers; i++)
        if (i != w->id && atomic_load(&pool->shards[i].n_idle) > 0) {
            worker_request_server(w, pool, &workers[i]);
            return;
        }
}

typedef struct slot_search {
    pool_t *for_pool;
    pool_t *found;    /* another pool of the same database with an idle server */
    int found_worker; /* the worker that has it */
} slot_search_t;

static void find_idle_of_same_database(pool_t *pool, void *arg)
{
    slot_search_t *q = arg;
    if (q->found != NULL || pool == q->for_pool || pool->db_servers != q->for_pool->db_servers)
        return;
    for (int i = 0; i < n_workers; i++)
        if (atomic_load(&pool->shards[i].n_idle) > 0) {
            q->found = pool;
            q->found_worker = i;
            return;
        }
}

/*
 * When max_db_connections keeps a pool from opening a connection while another pool of the
 * same database has one idle, closes that one to make room, as PgBouncer does. Returns true
 * when room was made at once; when the idle server belongs to another worker, that worker is
 * asked to close it and the waiting clients get their connection on a later tick.
 */
static bool free_database_slot(pool_t *pool, worker_t *w)
{
    int db_limit = atomic_load(&pool->max_db_connections);
    if (db_limit <= 0 || atomic_load(pool->db_servers) < db_limit)
        return false;
    slot_search_t q = {.for_pool = pool};
    pool_foreach(find_idle_of_same_database, &q);
    if (q.found == NULL)
        return false;
    if (q.found_worker != w->id) {
        worker_request_close(w, q.found, &workers[q.found_worker]);
        return false;
    }
    server_close(q.found->shards[w->id].idle, "max_db_connections: room for another user's pool");
    return true;
}

/* Opens connections for the shard's waiters as far as the limits allow. */
static void grow(pool_t *pool, worker_t *w)
{
    pool_shard_t *sh = &pool->shards[w->id];
    if (w->shutting_down)
        return;
    int wanted = atomic_load(&sh->n_waiting) - sh->n_connecting;
    while (wanted > 0 && (open_server(pool, w, false) ||
                          (free_database_slot(pool, w) && open_server(pool, w, false))))
        wanted--;
    if (wanted > 0 && sh->wait_head != NULL)
        ask_other_workers(pool, w);
}

server_t *pool_acquire(pool_t *pool, client_t *c)
{
    worker_t *w = c->worker;
    pool_shard_t *sh = &pool->shards[w->id];
    server_t *s = sh->idle;
    bool paused = atomic_load_explicit(&pool->paused, memory_order_relaxed);
    if (s != NULL && sh->wait_head == NULL && !paused) {
        pool_remove_idle(s);
        return s;
    }
    enqueue(sh, c, loop_now(w->loop));
    if (!paused)
        grow(pool, w);
    return NULL;
}

/* ---- giving servers back ---- */

void pool_remove_idle(server_t *s)
{
    pool_shard_t *sh = &s->pool->shards[s->worker->id];
    if (s->idle_prev != NULL)
        s->idle_prev->idle_next = s->idle_next;
    else
        sh->idle = s->idle_next;
    if (s->idle_next != NULL)
        s->idle_next->idle_prev = s->idle_prev;
    s->idle_next = s->idle_prev = NULL;
    atomic_fetch_sub(&sh->n_idle, 1);
    s->state = SERVER_ACTIVE;
}

static void push_idle(server_t *s)
{
    pool_shard_t *sh = &s->pool->shards[s->worker->id];
    s->state = SERVER_IDLE;
    s->idle_since = loop_now(s->worker->loop);
    s->idle_prev = NULL;
    s->idle_next = sh->idle;
    if (sh->idle != NULL)
        sh->idle->idle_prev = s;
    sh->idle = s;
    atomic_fetch_add(&sh->n_idle, 1);
}

static worker_t *worker_with_waiters(pool_t *pool, worker_t *self)
{
    for (int i = 0; i < n_workers; i++)
        if (i != self->id && atomic_load(&pool->shards[i].n_waiting) > 0)
            return &workers[i];
    return NULL;
}

void pool_release(server_t *s)
{
    pool_t *pool = s->pool;
    worker_t *w = s->worker;
    pool_shard_t *sh = &pool->shards[w->id];
    const config_t *cfg = w->cfg;
    s->state = SERVER_ACTIVE;
    if (w->shutting_down) {
        server_close(s, "shutting down");
        return;
    }
    if (cfg->server_lifetime > 0 && loop_now(w->loop) - s->connected_at > cfg->server_lifetime) {
        server_close(s, "server_lifetime reached");
        return;
    }
    if (atomic_load_explicit(&pool->paused, memory_order_relaxed)) {
        push_idle(s);
        return;
    }
    client_t *c;
    while ((c = sh->wait_head) != NULL) {
        pool_unqueue(pool, c);
        int64_t waited_us = (loop_now(w->loop) - c->wait_since) * 1000;
        sh->wait_time_us += (uint64_t)waited_us;
        profile_waited(c, waited_us);
        if (client_take_server(c, s))
            return;
    }
    worker_t *target = worker_with_waiters(pool, w);
    if (target != NULL) {
        sh->n_servers--;
        worker_send_server(w, s, target);
        return;
    }
    push_idle(s);
}

void pool_server_ready(server_t *s)
{
    s->pool->shards[s->worker->id].n_connecting--;
    pool_release(s);
}

void pool_server_arrived(server_t *s)
{
    s->pool->shards[s->worker->id].n_servers++;
    pool_release(s);
}

void pool_server_gone(server_t *s, bool never_ready)
{
    pool_t *pool = s->pool;
    worker_t *w = s->worker;
    pool_shard_t *sh = &pool->shards[w->id];
    sh->n_servers--;
    if (never_ready) {
        sh->n_connecting--;
        atomic_fetch_add_explicit(&w->counters.server_connect_failures, 1, memory_order_relaxed);
    }
    release_slot(pool);
    if (sh->wait_head == NULL)
        return;
    if (never_ready && sh->n_servers == 0)
        fail_waiters(sh, s->fail_sqlstate, s->fail_message);
    else
        grow(pool, w);
}

/* ---- maintenance ---- */

static void welcome_waiters(pool_t *pool, pool_shard_t *sh)
{
    client_t *c = sh->wait_head;
    while (c != NULL) {
        client_t *next = c->wait_next;
        if (!c->welcomed) {
            unlink_waiter(sh, c);
            c->state = CLIENT_IDLE;
            client_take_server(c, NULL);
        }
        c = next;
    }
}

static void close_idle_servers(pool_t *pool, pool_shard_t *sh, const config_t *cfg, int64_t now)
{
    server_t *s = sh->idle;
    while (s != NULL) {
        server_t *next = s->idle_next;
        if (cfg->server_lifetime > 0 && now - s->connected_at > cfg->server_lifetime)
            server_close(s, "server_lifetime reached");
        else if (cfg->server_idle_timeout > 0 && now - s->idle_since > cfg->server_idle_timeout &&
                 atomic_load(&pool->n_servers) > atomic_load(&pool->min_pool_size))
            server_close(s, "server_idle_timeout reached");
        s = next;
    }
}

void pool_maintain(pool_t *pool, worker_t *w)
{
    pool_shard_t *sh = &pool->shards[w->id];
    const config_t *cfg = w->cfg;
    int64_t now = loop_now(w->loop);
    if (w->shutting_down) {
        while (sh->idle != NULL)
            server_close(sh->idle, "shutting down");
        return;
    }
    if (atomic_load_explicit(&pool->has_welcome, memory_order_acquire))
        welcome_waiters(pool, sh);
    close_idle_servers(pool, sh, cfg, now);
    if (atomic_load(&pool->paused))
        return;
    while (sh->wait_head != NULL && sh->idle != NULL) { /* resumed: serve who waited */
        server_t *s = sh->idle;
        pool_remove_idle(s);
        pool_release(s);
    }
    if (sh->wait_head != NULL) {
        if (now - sh->wait_head->wait_since > cfg->reserve_pool_timeout && sh->n_connecting == 0 &&
            open_server(pool, w, true))
            pool_log(LOG_INFO, pool, "opened a reserve pool connection");
        else
            grow(pool, w);
    }
    /* One worker keeps min_pool_size, so that workers do not overshoot it together. */
    if (w->id == 0)
        while (atomic_load(&pool->n_servers) < atomic_load(&pool->min_pool_size) &&
               open_server(pool, w, false))
            ;
}
