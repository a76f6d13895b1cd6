/*
 * cache_internal.h
 *    What the files of the result cache share (not part of cache.h's interface): cache.c
 *    (answering, recording, writes), cache_peers.c (the writers that other instances and the
 *    logical stream report), cache_api.c (the figures and the clears of the admin API) and
 *    cache_warm.c (the warm of the admin API).
 */
#ifndef PGTURBO_CACHE_INTERNAL_H
#define PGTURBO_CACHE_INTERNAL_H

#include "buf.h"
#include "cache.h"
#include "cachegen.h"
#include "cachelogical.h"
#include "cacheredis.h"
#include "cachestore.h"
#include "catalog.h"
#include "client.h"
#include "config.h"
#include "prepared.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define MAX_NAMESPACES 256 /* database targets (cachegen's limit) */
#define MAX_DEPS       32  /* generations one answer depends on */
#define MAX_WRITES                                                                                 \
    30                        /* tables kept per transaction; past it, everything (with            \
                               * "" and DDL_NAME, what one publish carries) */
#define MAX_NAMES          64 /* relnames a lookup in the catalog may return */
#define RULE_TAG           (CACHESTORE_MAX_RULES - 1) /* answers cached for a pgturbo_cache tag */
#define CATALOG_REFRESH_MS 60000                      /* the catalog is read again this often */
#define CATALOG_RETRY_MS   10000                      /* after a failed read of the catalog */
#define GENERATION_NAMES   65536                      /* counters over all targets */
#define LOGICAL_CHECK_MS   100 /* how often a worker asks whether a consumer is streaming */
#define DDL_NAME           "\001ddl" /* published beside "": the catalog changed */

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
    bool warm;             /* armed for the warm's internal client (cache_warm.c) */
} cache_fill_t;

/* What a client waits for from Redis: the publish of its commit's writes, or an L2 read. The
 * worker frees it once the Redis thread handed it back (worker_post_run). */
typedef struct redis_wait {
    struct redis_wait *next, *prev; /* the client's list */
    worker_t *worker;
    client_t *client; /* NULL once the client went */
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
    uint64_t key_hash;          /* its hash, as the last lookup made it */
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

/* What every worker and thread of the cache shares; cache.c defines it. */
typedef struct cache_globals {
    cachestore_t *store;
    cachegen_t *gens;
    cache_ns_t ns[MAX_NAMESPACES + 1]; /* by cachegen namespace id (1 ...) */
    _Atomic uint64_t write_bumps, everything_bumps, fills, fills_dropped;
    const config_t *_Atomic cfg; /* the current config (retired ones live until exit) */
    cacheredis_t *redis;         /* the link to the instances sharing Redis, or NULL */
    _Atomic uint64_t holds;
    /* Warms run (POST /api/v1/cache/warm); answers their internal clients recorded, from the
     * server or the L2; and lookups of theirs that found the answer current already. */
    _Atomic uint64_t warms, warmed, warm_fresh;
} cache_globals_t;

extern cache_globals_t cache;

/* What a read depends on, and for how long it may be kept. */
typedef struct read_plan {
    cachestore_dep_t deps[MAX_DEPS];
    int n_deps;
    int64_t ttl_ms;
    uint16_t rule;
} read_plan_t;

/* ---- cache.c ---- */

/* The id of ns, as cachegen knows its target. */
uint32_t cache_ns_id(const cache_ns_t *ns);

/* Writes the name of a database target, "host:port/dbname", to out (len bytes). */
void cache_target_name(char *out, size_t len, const char *host, int port, const char *dbname);

/* The namespace of host:port/dbname, made on first use; NULL when none is left. */
cache_ns_t *cache_target_ns(const char *host, int port, const char *dbname);

/* The target's catalog with a reference the caller drops (catalog_unref), or NULL. */
catalog_t *cache_ns_catalog(cache_ns_t *ns);

/* A DDL was sent or ended: the catalog is outdated until read again. */
void cache_ns_forget_catalog(cache_ns_t *ns);

/* Monotonic milliseconds, the clock of TTLs and leases. */
int64_t cache_now_ms(void);

/* Bumps one table's generation, or every answer of a target. */
void cache_bump(cachegen_counter_t *counter);
void cache_bump_everything(cache_ns_t *ns);

/* ---- cache_peers.c ---- */

/* cache_invalidation = logical: a consumer per [databases] target. 0, or -1 with err. */
int cache_start_logical(const config_t *cfg, char *err, size_t errlen);

/* cache_redis_host: the link to the instances sharing Redis. 0, or -1 with err. */
int cache_start_redis(const config_t *cfg, char *err, size_t errlen);

/* Whether ns may be answered from memory now (this instance hears every write of it). */
bool cache_ns_allows(cache_ns_t *ns, int64_t now);

/* Tells the other instances what a transaction wrote, waiter's output held until they have
 * it (waiter may be NULL). */
void cache_publish_writes(const cache_writes_t *w, client_t *waiter);

/* Tells the other instances, and the L2's generations, that relname ("" = everything) of the
 * namespace was cleared by hand (cache_clear), without waiting; nothing without Redis. */
void cache_publish_cleared(cache_ns_t *ns, const char *relname);

/* Copies the namespace's target (host:port/dbname, "" while unused) into out, under its lock. */
void cache_ns_target(cache_ns_t *ns, char *out, size_t len);

/* Asks Redis for the read whose key (hash) is in c's key buffer: CACHE_WAIT, or 0 when it
 * cannot ask. */
int cache_l2_read(client_t *c, cache_ns_t *ns, const read_plan_t *p, uint64_t hash);

#endif /* PGTURBO_CACHE_INTERNAL_H */
