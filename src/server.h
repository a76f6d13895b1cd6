/*
 * server.h
 *    A connection from pgturbo to PostgreSQL: login, the queue of responses it still owes,
 *    and the forwarding of its messages to the client it serves.
 *
 * Every request sent to the server pushes what its response will be onto a queue (a Parse
 * expects ParseComplete, a Sync or a Query ReadyForQuery ...). Server messages pop it in
 * order, which lets pgturbo add requests of its own (SET to bring session parameters along,
 * a Parse on demand for a prepared statement, the check query, ROLLBACK after a client left)
 * and drop their responses, and answer a client's Parse or Close itself while keeping every
 * response in the order the client expects. A server is free for another client when its
 * queue is empty, it is not inside an unfinished extended-query batch, and its last
 * ReadyForQuery said idle.
 */
#ifndef PGTURBO_SERVER_H
#define PGTURBO_SERVER_H

#include "buf.h"
#include "loop.h"
#include "params.h"
#include "prepared.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

struct cache_server;
struct client;
struct pool;
struct worker;

typedef enum server_state {
    SERVER_CONNECTING, /* TCP connect, then TLS negotiation, in progress */
    SERVER_LOGIN,      /* StartupMessage sent, waiting for the first ReadyForQuery */
    SERVER_IDLE,       /* in its pool shard's idle list */
    SERVER_ACTIVE,     /* serving a client, or finishing pgturbo's own requests */
    SERVER_MOVING,     /* handed to another worker, owned by no loop */
    SERVER_CLOSED,     /* closed; freed after the current batch */
} server_state_t;

/* What a request sent to the server expects back. */
typedef enum pending_kind {
    PENDING_QUERY,      /* Query or FunctionCall: ends with ReadyForQuery */
    PENDING_SYNC,       /* Sync: ReadyForQuery */
    PENDING_PARSE,      /* Parse: ParseComplete */
    PENDING_BIND,       /* Bind: BindComplete */
    PENDING_CLOSE,      /* Close: CloseComplete */
    PENDING_DESCRIBE,   /* Describe: [ParameterDescription] RowDescription or NoData */
    PENDING_EXECUTE,    /* Execute: ends with CommandComplete, EmptyQuery or PortalSuspended */
    PENDING_FAKE_PARSE, /* pgturbo owes the client a ParseComplete (statement already there) */
    PENDING_FAKE_CLOSE, /* pgturbo owes the client a CloseComplete */
} pending_kind_t;

/* What the result cache (cache.h) wants of a request's responses. */
typedef enum pending_mark {
    PENDING_MARK_NONE = 0,
    PENDING_MARK_FILL,    /* part of a read whose answer is being recorded */
    PENDING_MARK_CATALOG, /* pgturbo's catalog query: its value is kept */
} pending_mark_t;

typedef struct pending {
    uint8_t kind;  /* pending_kind_t */
    uint8_t mark;  /* pending_mark_t */
    bool swallow;  /* pgturbo's own request: the client does not see the response */
    bool failed;   /* a measured query: an ErrorResponse came */
    uint32_t rows; /* a measured query: rows its CommandCompletes reported */
    uint64_t hash; /* PENDING_PARSE of a named statement: forgotten if the Parse fails */
    uint64_t fingerprint; /* a measured Query or Execute (profile.h); 0 = not measured */
    int64_t started_us;   /* when it was sent */
} pending_t;

typedef struct server {
    int id;
    server_state_t state;
    struct worker *worker;
    struct pool *pool;
    struct client *client; /* the client served, or NULL */
    loop_io_t io;
    int fd;
    struct server *next, *prev;           /* worker's list */
    struct server *idle_next, *idle_prev; /* pool shard's idle list */
    buf_t in, out;
    SSL *ssl;             /* TLS with PostgreSQL; NULL = plain */
    bool tls_requested;   /* SSLRequest sent, its one-byte answer awaited */
    bool tls_handshaking; /* TLS handshake under way */
    bool tls_want_write;  /* the handshake waits for the socket to take more */
    params_t params;      /* session parameters as the server has them */
    pending_t *pending;   /* ring of owed responses */
    uint32_t pend_head, pend_count, pend_cap;
    prepared_cache_t *prepared; /* statements prepared on it (transaction mode) */
    char txn_status;            /* of the last ReadyForQuery: 'I', 'T' or 'E' */
    bool sync_pending;          /* extended-query messages sent since the last Sync */
    bool reading_paused;        /* the client's output is full */
    uint32_t stream_left;       /* bytes of a long message still to pass through */
    bool stream_forward;        /* whether those bytes go to the client */
    bool stream_copy;           /* whether the result cache records them */
    int32_t backend_pid, backend_key;
    int64_t connected_at, idle_since, used_at;
    int64_t query_started_us, xact_started_us; /* for SHOW STATS: the client's round trip */
    buf_t welcome;                             /* ParameterStatus messages seen during login */
    struct scram_client *scram;                /* SCRAM exchange state, during login only */
    struct cache_server *cache;                /* result cache state (cache.h), or NULL */
    char fail_sqlstate[6];                     /* why login failed, for the clients waiting on it */
    char fail_message[320];
} server_t;

#define server_log(level, s, fmt, ...)                                                             \
    log_write(level, "S-%d %s@%s: " fmt, (s)->id, (s)->pool->user, (s)->pool->database,            \
              ##__VA_ARGS__)

/* Opens a new connection for pool on worker w. NULL (and a log line) when it cannot start. */
server_t *server_connect(struct pool *pool, struct worker *w);

/*
 * Closes the connection: the client it serves, if any, gets an ErrorResponse 08006 and is
 * closed too; the pool is told. reason is logged.
 */
void server_close(server_t *s, const char *reason);

/* Starts serving client c: queues the check query and SETs that c's session needs. */
__attribute__((warn_unused_result)) int server_link(server_t *s, struct client *c);

/* Sends what it can of s->out; closes s on a write error. Returns 0 or -1 (closed). */
int server_flush(server_t *s);

/* Queues an owed response; -1 when memory runs out. */
__attribute__((warn_unused_result)) int server_expect(server_t *s, pending_kind_t kind,
                                                      bool swallow, uint64_t hash);

/* Marks the request queued last as a measured query with this fingerprint, sent now. */
void server_measure_last(server_t *s, uint64_t fingerprint);

/* Marks the request queued last for the result cache. */
void server_mark_last(server_t *s, pending_mark_t mark);

/* Sends one of pgturbo's own queries; its response is dropped. -1 when memory runs out. */
__attribute__((warn_unused_result)) int server_run_query(server_t *s, const char *sql);

/* Writes the ParseComplete/CloseComplete owed at the head of the queue to the client. */
void server_pay_fakes(server_t *s);

/* True when the server is between transactions and owes nothing. */
bool server_is_idle(const server_t *s);

/* The client left while s served it: make s clean for reuse, or close it. */
void server_client_left(server_t *s);

/* Stops or resumes reading from the server (when the client's output fills and drains). */
void server_pause_reading(server_t *s, bool pause);

/* Registers the server with worker w's loop (after a move). Returns 0 or -1. */
__attribute__((warn_unused_result)) int server_attach(server_t *s, struct worker *w);

/* Unregisters from the current worker's loop (before a move). */
void server_detach(server_t *s);

/* "login", "idle", "active" or "closed", for the console and the admin API. */
const char *server_state_name(server_state_t state);

/* Frees a closed server's memory (after the batch that closed it). */
void server_free(server_t *s);

#endif /* PGTURBO_SERVER_H */
