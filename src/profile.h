/*
 * profile.h
 *    Every query measured: the glue between the connections and stats.c. client.c tells it
 *    what each message starts (a Query's text, a Parse, a Bind, an Execute); server.c tells it
 *    when the response that ends a query arrives; profile turns that into a fingerprint, a
 *    duration, rows and an error flag, and follows each client's transactions and sqlcommenter
 *    requests for N+1 detection and per-route statistics.
 *
 * The worker's sqlparse cache makes the fingerprint of a text cost one hash lookup after its
 * first time; pending responses carry the fingerprint and the start time (server.h), so the
 * end of a query needs no lookup. With query_stats = off none of this runs.
 */
#ifndef PGTURBO_PROFILE_H
#define PGTURBO_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct server;
struct pending;

/* Per-client state, made on first use; freed with profile_client_gone(). */
typedef struct profile_state profile_state_t;

/* A simple Query with this text is being sent: returns its fingerprint (0 = not measured). */
uint64_t profile_query(struct client *c, const char *text, size_t len);

/* A Parse of statement name (may be "") with this text. */
void profile_parse(struct client *c, const char *name, const char *text, size_t len);

/* A Bind of statement name; params (len bytes of the Bind body) tell its parameters apart. */
void profile_bind(struct client *c, const char *name, const uint8_t *params, size_t len);

/* An Execute is being sent: returns the fingerprint of its statement (0 = not measured). */
uint64_t profile_execute(struct client *c);

/* A Close of statement name. */
void profile_close_statement(struct client *c, const char *name);

/* The client waited this long for a server before its next query could go. */
void profile_waited(struct client *c, int64_t wait_us);

/* The response that ends a measured query (its pending entry p) arrived on s. */
void profile_finish(struct server *s, const struct pending *p);

/* The client's transaction ended (ReadyForQuery idle): its N+1 scope closes. */
void profile_transaction_end(struct client *c);

/* From the tick: a request idle for a second is over. */
void profile_tick(struct client *c, int64_t now_ms);

/* The client is closing: its open request is recorded and its state freed. */
void profile_client_gone(struct client *c);

#endif /* PGTURBO_PROFILE_H */
