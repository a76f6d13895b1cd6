/*
 * admin.h
 *    The admin HTTP API: JSON snapshots of pools, connections and query statistics, the
 *    Prometheus /metrics, and /health, served by libmicrohttpd on admin_listen.
 *
 * Each connection gets a thread of libmicrohttpd's own (at most ADMIN_MAX_CONNECTIONS at a
 * time), because the answers come from inspect.h, whose functions block until every worker
 * has answered. Every path but /health needs "Authorization: Bearer <token>": admin_token
 * may use everything, admin_stats_token only the GET endpoints. The tokens are read from the
 * current config at each request, so a reload changes them at once; docs/api.md describes the
 * endpoints.
 */
#ifndef PGTURBO_ADMIN_H
#define PGTURBO_ADMIN_H

#include "config.h"

#include <stddef.h>

/* Connections served at once; more wait in the listen backlog. */
#define ADMIN_MAX_CONNECTIONS 32

/* Seconds a connection may stay silent before it is closed. */
#define ADMIN_IDLE_TIMEOUT 30

/*
 * Starts the API on cfg's admin_listen ("host:port", "[v6]:port" or "*:port"), once the
 * workers run (requests call into them). Without an admin_token it logs "admin API off: no
 * admin_token set" and returns 0 without listening. Returns -1 with a message naming the
 * address in err when admin_listen is malformed or cannot be bound (e.g. the port is in use).
 * cfg is borrowed: it, and every config later given to admin_reload, must stay valid until
 * admin_stop returns (serve.c frees replaced configs only at exit).
 */
__attribute__((warn_unused_result)) int admin_start(const config_t *cfg, char *err, size_t errlen);

/*
 * Makes cfg the config whose tokens requests are checked against (an atomic swap; requests
 * already running finish with the config they read). A token set where there was none starts
 * the API; removing admin_token stops it. The listening address stays the one the API started
 * on: a changed admin_listen is logged and takes effect only at the next start. Called from
 * the thread that calls admin_start and admin_stop.
 */
void admin_reload(const config_t *cfg);

/* Stops listening and waits for running requests to end; must come before the workers stop,
 * since requests wait on them. Nothing happens when the API is not running. */
void admin_stop(void);

#endif /* PGTURBO_ADMIN_H */
