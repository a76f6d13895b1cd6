/*
 * client.h
 *    A connection from an application to pgturbo: startup, the messages it sends, and the
 *    server connection it borrows from its pool for a transaction (or for its whole session).
 */
#ifndef PGTURBO_CLIENT_H
#define PGTURBO_CLIENT_H

#include "buf.h"
#include "config.h"
#include "loop.h"
#include "net.h"
#include "params.h"
#include "prepared.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct pool;
struct server;
struct worker;
struct auth_state;
struct cache_client;
struct console_request;

typedef enum client_state {
    CLIENT_LOGIN,   /* reading the startup packet (and doing the TLS handshake) */
    CLIENT_AUTH,    /* proving its password (or waiting for auth_query to say what it is) */
    CLIENT_IDLE,    /* logged in; no server */
    CLIENT_WAITING, /* queued in its pool for a server (to log in, or to run its messages) */
    CLIENT_ACTIVE,  /* a server is linked to it */
    CLIENT_CLOSED,  /* closed; freed after the current batch */
} client_state_t;

typedef struct client {
    int id;
    client_state_t state;
    struct worker *worker;
    struct pool *pool;
    struct server *server;
    const config_database_t *db; /* borrowed from the worker's config at login */
    loop_io_t io;
    int fd;
    struct client *next, *prev;           /* worker's list */
    struct client *wait_next, *wait_prev; /* pool shard's wait queue */
    buf_t in, out;
    SSL *ssl;                            /* TLS, once the client asked for it; NULL = plain */
    bool tls_handshaking;                /* TLS handshake under way */
    bool tls_want_write;                 /* the handshake waits for the socket to take more */
    struct auth_state *auth;             /* the password exchange, during CLIENT_AUTH */
    bool console;                        /* logged in to the admin console */
    bool console_admin;                  /* ... as one of admin_users */
    struct console_request *console_req; /* a console answer being gathered */
    struct sockaddr_storage addr;        /* the peer, for auth_hba_file */
    struct profile_state *prof;          /* query measurement state (profile.h), or NULL */
    struct cache_client *cache;          /* result cache state (cache.h), or NULL */
    params_t params;                     /* session parameters the client's session has */
    prepared_map_t *stmts;               /* its named prepared statements (transaction mode) */
    bool welcomed;                       /* got AuthenticationOk ... ReadyForQuery */
    bool reading_paused;
    bool counted;        /* counted in total_clients */
    bool internal;       /* made in-process by client_adopt (the cache's warm), not accepted */
    bool parsed_locally; /* answered a Parse without a server; its Sync is ours too */
    int holds;           /* client_hold_output calls not yet released */
    uint32_t sendable;   /* while holds > 0: how many bytes at the head of out may go */
    int32_t cancel_key;
    int64_t connected_at, active_at, wait_since;
    char user[CONFIG_NAME_LEN];
    char database[CONFIG_NAME_LEN];
    char peer[NET_ADDR_LEN];
} client_t;

#define client_log(level, c, fmt, ...)                                                             \
    log_write(level, "C-%d %s@%s %s: " fmt, (c)->id, (c)->user, (c)->database, (c)->peer,          \
              ##__VA_ARGS__)

/* Takes ownership of an accepted socket and starts reading its startup packet. */
void client_accept(struct worker *w, int fd, const struct sockaddr_storage *addr, const char *peer);

/*
 * Makes a client of w on fd, one end of a socketpair whose other end only pgturbo's own code
 * holds (takes ownership of fd), logged in as user to the [databases] entry db (borrowed from
 * w->cfg) under the name database, with the known values of params (borrowed) as its startup
 * parameters, and peer as its name in logs and the console. Neither a startup packet nor a
 * password is asked for, so fd must never be a socket a user can reach. The client gets its
 * pool's welcome as any other, and does not count against max_client_conn. In w's thread.
 * Returns 0, or -1 (fd closed) when memory runs out, w is shutting down, or database is the
 * console's.
 */
__attribute__((warn_unused_result)) int client_adopt(struct worker *w, int fd,
                                                     const config_database_t *db,
                                                     const char *database, const char *user,
                                                     const params_t *params, const char *peer);

/* Authentication succeeded: c gets the console, or its pool's welcome (see auth.h). */
void client_authenticated(client_t *c);

/*
 * Closes the client. With a sqlstate, it first gets an ErrorResponse (FATAL) saying message;
 * without, message is only logged. The server it used is cleaned for reuse or closed.
 */
void client_close(client_t *c, const char *sqlstate, const char *message);

/*
 * A server is available for waiting client c. Returns true when c took it; false when c only
 * needed the pool's welcome (now sent) or is gone, and the server stays free.
 */
bool client_take_server(client_t *c, struct server *s);

/* The server finished c's transaction and went back to the pool (transaction mode). */
void client_server_released(client_t *c);

/* Sends what it can of c->out; closes c on error. Returns 0, or -1 when c was closed. */
int client_flush(client_t *c);

/*
 * Holds back what c->out gets from now on (what it holds already may still be sent) until as
 * many client_release_output calls as holds came: how a commit waits, before its client sees
 * it, for the other pgturbo instances to apply its invalidations.
 */
void client_hold_output(client_t *c);

/* Ends one hold; when it was the last, sends what waited. */
void client_release_output(client_t *c);

/* Goes on with c's input after something it waited for outside the pool came (cache.h). */
void client_continue(client_t *c);

/* Sends the welcome (AuthenticationOk, parameters, BackendKeyData, ReadyForQuery). */
void client_welcome(client_t *c);

/* Stops or resumes reading from the client (while its server's output is full). */
void client_pause_reading(client_t *c, bool pause);

/* "login", "waiting", "idle", "active" or "closed", for the console and the admin API. */
const char *client_state_name(client_state_t state);

/* Timeouts of one client, checked from the worker's tick. */
void client_check_timeouts(client_t *c, int64_t now);

#endif /* PGTURBO_CLIENT_H */
