/*
 * pool.h
 *    Pools of server connections, one per (database, user).
 *
 * A pool's limits are global (pool_size, reserve_pool_size, max_db_connections count every
 * worker's connections, through atomic counters), but the connections themselves live in
 * per-worker shards: a worker acquires and releases its own idle servers without any lock.
 * When a worker has clients waiting and the pool is full, it asks a worker with idle servers
 * to send one over; when a worker releases a server it has no waiter for while another worker
 * has some, it sends it there. Waiting clients are served first come, first served within a
 * worker.
 */
#ifndef PGTURBO_POOL_H
#define PGTURBO_POOL_H

#include "buf.h"
#include "config.h"
#include "params.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct client;
struct server;
struct worker;

/* The part of a pool that one worker owns. */
typedef struct pool_shard {
    struct server *idle;      /* idle servers, most recently used first */
    struct client *wait_head; /* clients waiting for a server, oldest first */
    struct client *wait_tail;
    int n_servers;         /* servers of this shard in any state */
    int n_connecting;      /* of which still connecting or logging in */
    _Atomic int n_idle;    /* read by other workers deciding whom to ask */
    _Atomic int n_waiting; /* read by other workers deciding where to send */
    /* Counters for the console's SHOW STATS, touched only by the shard's worker. */
    uint64_t xact_count, query_count;
    uint64_t bytes_received, bytes_sent; /* from and to clients */
    uint64_t xact_time_us, query_time_us, wait_time_us;
} pool_shard_t;

/* Connection settings of a pool, copied from its [databases] entry. */
typedef struct pool_target {
    char host[CONFIG_HOST_LEN];
    int port;
    char dbname[CONFIG_NAME_LEN];
    char user[CONFIG_NAME_LEN];
    char password[CONFIG_SECRET_LEN];
    bool has_keys; /* SCRAM keys a client proved (pass-through), for lack of a password */
    uint8_t client_key[32], server_key[32];
} pool_target_t;

typedef struct pool {
    char database[CONFIG_NAME_LEN]; /* as clients name it */
    char user[CONFIG_NAME_LEN];     /* as clients log in */
    pthread_mutex_t lock;           /* guards target and welcome while they are written */
    pool_target_t target;
    _Atomic int pool_size;
    _Atomic int min_pool_size;
    _Atomic int reserve_pool_size;
    _Atomic int max_db_connections;
    _Atomic int mode;        /* pool_mode_t */
    _Atomic int n_servers;   /* over all workers */
    _Atomic int *db_servers; /* shared by the pools of one database */
    _Atomic bool has_welcome;
    _Atomic bool paused; /* PAUSE or KILL from the console: no server is handed out */
    _Atomic uint32_t cache_ns; /* the result cache's id of the target (cache.c); 0 = not yet */
    buf_t welcome;       /* ParameterStatus messages of a fresh server; immutable once set */
    struct prepared_cache *known; /* statements some server prepared without error; under lock */
    params_t defaults;            /* tracked parameters of a fresh server */
    struct pool *next;
    pool_shard_t shards[]; /* one per worker */
} pool_t;

/*
 * The pool for (database entry, user), created on first use. The result lives until
 * pool_free_all(). NULL when memory runs out.
 */
pool_t *pool_get(const config_database_t *db, const char *database, const char *user);

/* Keeps the SCRAM keys a client of the pool proved, to log in to PostgreSQL with them. */
void pool_set_scram_keys(pool_t *pool, const uint8_t client_key[32], const uint8_t server_key[32]);

/* Applies a reloaded config's sizes and targets to every existing pool. */
void pool_reload_all(const config_t *cfg);

/* Frees every pool (at exit, after the workers are gone). */
void pool_free_all(void);

/* Records the first server's parameters as the welcome clients get. */
void pool_set_welcome(pool_t *pool, const buf_t *messages, const params_t *defaults);

/*
 * Returns an idle server of c's worker's shard for c to link, or queues c and arranges for a
 * server to come (a new connection if the limits allow, else one from another worker) and
 * returns NULL. A queued client gets its server through client_take_server().
 */
struct server *pool_acquire(pool_t *pool, struct client *c);

/* Takes c out of the wait queue (it closed or timed out); a no-op when not queued. */
void pool_unqueue(pool_t *pool, struct client *c);

/*
 * Takes back a server that finished its work: hands it to the first waiter of the shard,
 * else to a worker with waiters, else keeps it idle. A server past server_lifetime is closed.
 */
void pool_release(struct server *s);

/* Takes an idle server out of the idle list (it is closing, or moving to another worker). */
void pool_remove_idle(struct server *s);

/* A server moved here from another worker; it is released into this worker's shard. */
void pool_server_arrived(struct server *s);

/* A new server finished its login; it is released into the pool. */
void pool_server_ready(struct server *s);

/*
 * A server of this pool is gone (closed). Updates the counts and opens a replacement for
 * waiting clients; when it never got ready and its shard has no other server, the waiting
 * clients get its failure (they would otherwise wait for a server that cannot come).
 */
void pool_server_gone(struct server *s, bool never_ready);

/* Opens new connections while there are waiters or fewer than min_pool_size; from the tick. */
void pool_maintain(pool_t *pool, struct worker *w);

#define pool_log(level, p, fmt, ...)                                                               \
    log_write(level, "pool %s@%s: " fmt, (p)->user, (p)->database, ##__VA_ARGS__)

/* True when some server of the pool prepared the statement with this hash without error. */
bool pool_statement_known(pool_t *pool, uint64_t hash);

/* Records that a server prepared the statement with this hash without error. */
void pool_statement_learned(pool_t *pool, uint64_t hash);

/*
 * Pauses or resumes the pools of database (every pool when database is NULL): a paused pool
 * keeps its clients waiting instead of handing them servers; on resume the workers serve
 * them from their next tick. Pools made later for a paused database start paused, also when
 * it had none yet (and, after a PAUSE of all, for every database). Returns how many pools it
 * changed, or -1 when memory runs out.
 */
int pool_pause(const char *database, bool paused);

/* Calls fn for every pool. */
void pool_foreach(void (*fn)(pool_t *pool, void *arg), void *arg);

#endif /* PGTURBO_POOL_H */
