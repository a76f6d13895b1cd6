/*
 * authquery.h
 *    auth_query: the secret of a user that auth_file does not list, asked of PostgreSQL itself
 *    (by default from pg_shadow) over a connection logged in as auth_user, as PgBouncer does.
 *
 * Lookups run on one thread of their own with blocking libpq, so that a slow or unreachable
 * server never stalls a worker; the thread keeps one connection per target and reuses it.
 * A worker submits a request and goes on; the answer comes back through the worker's
 * mailbox (authquery_answered), to the client if it is still there.
 */
#ifndef PGTURBO_AUTHQUERY_H
#define PGTURBO_AUTHQUERY_H

#include "config.h"

#include <stdbool.h>

struct client;
struct worker;

typedef struct authquery_request {
    struct worker *worker; /* where the answer goes */
    struct client *client; /* who asked; NULL once it closed (touched by its worker only) */
    char user[CONFIG_NAME_LEN];
    /* The connection the query runs on: the client's database entry, as auth_user. */
    char host[CONFIG_HOST_LEN];
    int port;
    char dbname[CONFIG_NAME_LEN];
    char auth_user[CONFIG_NAME_LEN];
    char password[CONFIG_SECRET_LEN];
    char sslmode[16];
    char sslrootcert[CONFIG_PATH_LEN];
    char query[CONFIG_QUERY_LEN];
    /* The answer. */
    bool found; /* the query returned the user with a secret */
    char secret[CONFIG_SECRET_LEN * 4];
    char error[256]; /* why the lookup failed; empty when it ran */
    struct authquery_request *next;
} authquery_request_t;

/* Starts the lookup thread. Returns 0, or -1 when it cannot. */
__attribute__((warn_unused_result)) int authquery_start(void);

/* Stops the thread; requests not yet run are answered with an error. */
void authquery_stop(void);

/* Queues a lookup; takes ownership of req, which comes back through the worker's mailbox. */
void authquery_submit(authquery_request_t *req);

/* In req->worker's thread: hands the answer to the client (auth_lookup_done) and frees req. */
void authquery_answered(authquery_request_t *req);

#endif /* PGTURBO_AUTHQUERY_H */
