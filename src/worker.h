/*
 * worker.h
 *    A worker thread: its event loop, its listening socket, the clients and server
 *    connections it owns, and a mailbox through which other threads reach it.
 *
 * Workers share nothing on the per-message path. A connection belongs to exactly one worker,
 * which alone touches it; a server connection moves to another worker only through the
 * mailbox (see pool.h), and configuration changes arrive the same way.
 */
#ifndef PGTURBO_WORKER_H
#define PGTURBO_WORKER_H

#include "config.h"
#include "loop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct client;
struct stats;
struct sqlparse_cache;
struct server;
struct pool;
struct cancel_conn;
struct console_request;
struct authquery_request;

/* Counters of one worker, summed when read. Written only by the worker's own thread. */
typedef struct worker_stats {
    _Atomic uint64_t clients_accepted;
    _Atomic uint64_t clients_refused;
    _Atomic uint64_t transactions;
    _Atomic uint64_t queries;
    _Atomic uint64_t server_connects;
    _Atomic uint64_t server_connect_failures;
} worker_stats_t;

typedef struct worker {
    int id;
    pthread_t thread;
    loop_t *loop;
    int listen_fd;
    loop_io_t listen_io;
    bool defer_accept; /* listen_fd reports a connection once its first bytes are in */
    int mail_fd;       /* eventfd that wakes the loop for the mailbox */
    loop_io_t mail_io;
    pthread_mutex_t mail_lock;
    struct mail *mail_head; /* messages from other threads, under mail_lock */
    struct mail *mail_tail;
    const config_t *cfg;         /* the config this worker runs with */
    struct client *clients;      /* every client of this worker (doubly linked) */
    struct server *servers;      /* every server connection of this worker (doubly linked) */
    struct client *dead_clients; /* closed during the current batch, freed after it */
    struct server *dead_servers;
    struct server *outgoing;     /* server connections to hand to other workers after the batch */
    struct cancel_conn *cancels; /* connections carrying CancelRequests to PostgreSQL */
    bool shutting_down;
    int64_t shutdown_deadline;
    worker_stats_t counters;
    struct stats *stats;        /* query statistics, written by this worker only */
    struct sqlparse_cache *sql; /* query texts this worker has parsed */
} worker_t;

/* The workers, set up by worker_start_all; indexes are worker ids. */
extern worker_t *workers;
extern int n_workers;
/* Clients connected over all workers, for max_client_conn. */
extern _Atomic int total_clients;

/* When the workers started (monotonic ms), for per-second averages. */
extern int64_t worker_started_at;

/*
 * Creates n workers listening on cfg's address, each with its own SO_REUSEPORT socket, and
 * starts their threads. Returns 0, or -1 with a message in err (nothing left running).
 */
__attribute__((warn_unused_result)) int worker_start_all(const config_t *cfg, int n, char *err,
                                                         size_t errlen);

/* Hands a new config to every worker (borrowed: it must outlive the workers). */
void worker_reload_all(const config_t *cfg);

/* Tells every worker to stop accepting and finish; returns once all threads have ended. */
void worker_shutdown_all(void);

/* Frees the workers after worker_shutdown_all. */
void worker_free_all(void);

/* Moves server s to worker target once the current batch is done (from s's own worker). */
void worker_send_server(worker_t *self, struct server *s, worker_t *target);

/* Asks worker target to send one of pool's idle servers to worker self, if it has one. */
void worker_request_server(worker_t *self, struct pool *pool, worker_t *target);

/* Asks worker target to close one of pool's idle servers, if it has one (to make room under
 * max_db_connections for another pool of the same database). */
void worker_request_close(worker_t *self, struct pool *pool, worker_t *target);

/* Hands a cancel request for (pid, key) to worker target, which owns that client. */
void worker_post_cancel(worker_t *target, int32_t pid, int32_t key);

/* Asks worker target to add its part to a console request (console_collect). */
void worker_post_gather(worker_t *target, struct console_request *req);

/* Hands a console request whose every part is in back to the worker of its client. */
void worker_post_gathered(worker_t *origin, struct console_request *req);

/* Hands an auth_query answer to the worker of the client that asked. */
void worker_post_auth_answer(worker_t *target, struct authquery_request *req);

/* Tells worker target to close every client and server connection of database (KILL). */
void worker_post_kill(worker_t *target, const char *database);

/*
 * Runs fn(w, arg) in the thread of every worker w and returns once all have run it. For
 * threads other than the workers' (the admin API): a worker calling it would wait for itself.
 * Returns 0, or -1 when memory runs out (then fn ran nowhere).
 */
__attribute__((warn_unused_result)) int worker_call_all(void (*fn)(worker_t *w, void *arg),
                                                        void *arg);

/*
 * Runs fn(target, arg) in target's thread soon, from any thread, without waiting for it: how
 * another thread hands a worker the completion of something it asked for. When the worker ends
 * before it could run, fn(NULL, arg) runs instead as it is freed, so that fn frees what arg
 * owns. Returns 0, or -1 when memory runs out (then fn never runs).
 */
__attribute__((warn_unused_result)) int
worker_post_run(worker_t *target, void (*fn)(worker_t *w, void *arg), void *arg);

/* Links and unlinks connections in the worker's lists. */
void worker_add_client(worker_t *w, struct client *c);
void worker_add_server(worker_t *w, struct server *s);
/* Moves a closed connection to the list freed after the current batch. */
void worker_bury_client(worker_t *w, struct client *c);
void worker_bury_server(worker_t *w, struct server *s);

#endif /* PGTURBO_WORKER_H */
