/*
 * cache.h
 *    The query result cache in the proxy: which reads are answered from memory, how their
 *    answers are recorded, and how writes make the answers they may change unreachable.
 *
 * Correctness rests on generations (cachegen.h). Every table of a database target has a
 * counter, named by its relname, so that same-named tables of different schemas share one
 * (a write to one invalidates reads of the other: more than needed, never less). A write
 * bumps the counters of every table it can change when it is sent and again when its
 * transaction ends; an answer is recorded with the counters as they were before its query
 * was sent, and served only while all of them are unchanged (cachestore.h). A read that races
 * a commit can therefore never be kept: the commit's bump comes after the generations it saw.
 * The catalog (catalog.h), loaded on a server connection of the pool, says what a read depends
 * on (a view's tables, a stable SQL function's tables) and what a write can reach (partitions,
 * foreign-key actions; a trigger or a rule makes it reach everything of the database).
 *
 * What is answered from memory: a read outside any transaction, from a client whose session
 * carries no state that pgturbo does not follow (sql_info_t.session_state), that is
 *  - a simple Query holding one SELECT, or
 *  - an extended-protocol unit [Parse of the unnamed statement] Bind [Describe of the portal]
 *    Execute (all rows) Sync, on the unnamed portal;
 * whose tables all have a rule with a TTL in [cache] (or whose text carries the sqlcommenter
 * tag pgturbo_cache='seconds'; pgturbo_cache='off' keeps any query out), that calls only
 * functions the catalog clears, locks no rows, and names no temporary or system relation.
 *
 * Threads: the store and the generations are shared by every worker; the state of a client
 * or a server connection belongs to its worker, as the connection does.
 */
#ifndef PGTURBO_CACHE_H
#define PGTURBO_CACHE_H

#include "config.h"
#include "proto.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct server;
struct pending;

/* Per-client and per-server state, made on first use, freed with the connection. */
typedef struct cache_client cache_client_t;
typedef struct cache_server cache_server_t;

/*
 * Makes the process-wide store and generations with cfg's limits. Call once, before the
 * workers start. Returns 0, or -1 with a message in err.
 */
__attribute__((warn_unused_result)) int cache_start(const config_t *cfg, char *err,
                                                    size_t errlen);

/* A reloaded config: new limits; every entry goes when the rules changed. */
void cache_reconfigure(const config_t *old_cfg, const config_t *new_cfg);

/* Stops the cache's threads that hand work back to the workers (the Redis link): after the
 * workers stopped, before they are freed. */
void cache_stop_links(void);

/* Frees everything cache_start made; after the workers stopped. */
void cache_stop(void);

/* Whether cfg caches at all: [cache] has at least one rule. */
static inline bool cache_configured(const config_t *cfg)
{
    return cfg->n_cache_rules > 0;
}

/* ---- from client.c ---- */

/* A Parse or a Close from c: the statement texts the cache needs later. */
void cache_observe(struct client *c, const proto_msg_t *m);

/* cache_answer: the answer is being asked of Redis; client_continue comes when it is in. */
#define CACHE_WAIT (-2)

/*
 * m (a Query, Parse or Bind) is at the head of c->in. When it starts a cacheable read whose
 * answer is in the cache, writes the answer to c->out and returns how many bytes of c->in it
 * answered (the caller consumes them). Returns 0 when the messages go on to a server as usual
 * (a miss arms the recording of the answer), CACHE_WAIT when the answer is being asked of the
 * Redis that instances share (the caller stops handling c's input until client_continue), -1
 * when memory runs out.
 */
__attribute__((warn_unused_result)) int cache_answer(struct client *c, const proto_msg_t *m);

/*
 * client.c forwarded m (Query, FunctionCall, Bind, Describe, Execute or Sync) to s and queued
 * what it expects back: the writes m makes are bumped and kept for the end of the transaction,
 * and the responses of an armed read are marked to be recorded. -1 when memory runs out.
 */
__attribute__((warn_unused_result)) int cache_forwarded(struct client *c, struct server *s,
                                                        const proto_msg_t *m);

/* The client is closing. */
void cache_client_gone(struct client *c);

/* ---- from server.c ---- */

/* A response message on s, with head the request it answers (NULL for none). */
void cache_response(struct server *s, const proto_msg_t *m, const struct pending *head);

/* n bytes of a long message passing through s to its client, when head asks for a copy. */
void cache_stream(struct server *s, const uint8_t *p, uint32_t n);

/* A ReadyForQuery ended head on s; s->txn_status is already the new status. */
void cache_ready(struct server *s, const struct pending *head);

/* s is closing: what its open transaction wrote counts as ended. */
void cache_server_gone(struct server *s);

/* ---- from the admin API and the console ---- */

/* The cache's figures as JSON (docs/api.md): settings, totals, per rule of the current config,
 * per database target. NULL when memory runs out or the cache is not running. Caller releases
 * with json_decref. */
json_t *cache_snapshot(void);

/* What a warm did (POST /api/v1/cache/warm, docs/api.md). */
typedef struct cache_warm_result {
    size_t requested; /* the entries asked for */
    size_t entries;   /* the entries with the most hits taken: at most requested */
    size_t warmed;    /* answers recorded again (from PostgreSQL, or the L2) */
    size_t fresh;     /* answers found current, answered from memory: nothing to do */
    size_t skipped;   /* not run: cached for a pgturbo_cache tag, or its database or user gone */
    size_t failed;    /* nothing recorded: an error, no answer in time, no longer cacheable,
                       * a write meanwhile; or not run once the warm's minute was over */
} cache_warm_result_t;

/* cache_warm: another warm is under way. */
#define CACHE_WARM_BUSY (-2)

/*
 * Runs again the top entries with the most hits, most hits first and one at a time, each
 * through an internal client of a worker (cache_warm.c): what a client's miss records is
 * recorded. Fills *out (borrowed). From a thread that is not a worker's (it waits for them).
 * Returns 0; -1 when the cache is not running; CACHE_WARM_BUSY when another warm runs.
 */
__attribute__((warn_unused_result)) int cache_warm(size_t top, cache_warm_result_t *out);

/* Whether warms may go on: the admin API forbids them before it waits for its requests to end
 * (a warm under way stops after its current entry), and allows them when it starts. */
void cache_warm_allow(bool allowed);

/*
 * Drops entries: those that depend on table (a relname, in every database target) when table
 * is not NULL, those of every table the catalogs place in schema when schema is not NULL, or
 * all of them. Returns how many entries went.
 */
size_t cache_clear(const char *schema, const char *table);

#endif /* PGTURBO_CACHE_H */
