/*
 * console.h
 *    The admin console: the virtual database "pgturbo" (or "pgbouncer", for existing scripts)
 *    where admin_users and stats_users run PgBouncer's SHOW commands and admin_users steer the
 *    pools (RELOAD, PAUSE, RESUME, KILL, SHUTDOWN).
 *
 * Answers are result sets with PgBouncer's column names. Counts that live in other workers
 * (clients, servers, per-pool statistics) are gathered by asking every worker through its
 * mailbox: each adds its part in its own thread, and the last one hands the request back to
 * the console client's worker, which sends the answer. Meanwhile the console client reads no
 * further commands, so answers keep their order.
 */
#ifndef PGTURBO_CONSOLE_H
#define PGTURBO_CONSOLE_H

#include "proto.h"

#include <stdbool.h>

struct client;
struct worker;
struct console_request;

/* Whether a client asking for this database wants the console. */
bool console_is_database(const char *name);

/*
 * Whether user may use the console: admin_users may run everything, stats_users the SHOW
 * commands. Sets *admin accordingly.
 */
bool console_allows(const struct client *c, bool *admin);

/* Sends the console's welcome (after authentication) and makes c a console client. */
void console_welcome(struct client *c);

/* Handles one message of a console client; the client may be closed on return. */
void console_handle(struct client *c, const proto_msg_t *m);

/* In worker w's thread: adds w's part to a gathering request. */
void console_collect(struct worker *w, struct console_request *req);

/* In the console client's worker: every worker answered; sends the result and frees req. */
void console_deliver(struct console_request *req);

/*
 * At exit, for a request still in a stopped worker's mailbox: gathered (its answer was on the
 * way back) or not (this worker's part was never added). Frees it once nobody else holds it.
 */
void console_abandon(struct console_request *req, bool gathered);

/* The console client closes: a request in flight will find no one to answer. */
void console_client_closed(struct client *c);

#endif /* PGTURBO_CONSOLE_H */
