/*
 * cancel.h
 *    Cancel requests: which client a (process id, secret key) pair belongs to, and the
 *    forwarding of a cancel to the server connection that client is using right then.
 *
 * Every client gets its own BackendKeyData at login (its id and a random key) and is
 * registered here. A CancelRequest, which arrives on a new connection to any worker, is
 * looked up and handed to the worker that owns the client; that worker, if the client is in
 * the middle of a query, opens a connection to PostgreSQL and sends the server connection's
 * own key. A request that matches nobody, or a client with no query running, is ignored, as
 * PostgreSQL ignores it.
 */
#ifndef PGTURBO_CANCEL_H
#define PGTURBO_CANCEL_H

#include <stdint.h>

struct client;
struct server;
struct worker;

/* Makes the client findable by its key; from its own worker, after the welcome. Returns 0 or
 * -1 when memory runs out. */
__attribute__((warn_unused_result)) int cancel_register(struct client *c);

/* Forgets the client; from its own worker, before it is freed. */
void cancel_unregister(struct client *c);

/* A CancelRequest for (pid, key) arrived on any worker: hands it to the client's worker. */
void cancel_request(int32_t pid, int32_t key);

/* On the client's own worker: cancels what the client's server runs, if pid and key match. */
void cancel_deliver(struct worker *w, int32_t pid, int32_t key);

/* Closes cancel connections older than a few seconds (from the worker's tick). */
void cancel_expire(struct worker *w, int64_t now);

/* Frees the registry at exit. */
void cancel_free_all(void);

#endif /* PGTURBO_CANCEL_H */
