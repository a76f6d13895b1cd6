/*
 * stats.h
 *    Query statistics of one worker: per (database, fingerprint) counters and a latency
 *    histogram, the slow query log, N+1 findings, and per-route request statistics.
 *
 * Each worker owns a stats_t and is the only thread that writes it; readers (the admin API,
 * the console) ask each worker through its mailbox to copy what they need (stats_collect),
 * so nothing global and no lock sits on the query path. A query costs a hash lookup, a few
 * additions and a histogram record; histograms (6.9 KB) are allocated on a fingerprint's
 * first query, and past stats_max_fingerprints the least recently used fingerprint is
 * forgotten.
 */
#ifndef PGTURBO_STATS_H
#define PGTURBO_STATS_H

#include "config.h"
#include "histogram.h"
#include "sqlparse.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct stats stats_t;

/* Creates an empty store; NULL when memory runs out. Free with stats_free(). */
stats_t *stats_create(void);
void stats_free(stats_t *st);

/*
 * Makes sure the store knows (database, info's fingerprint), keeping info's normalized text
 * and kind for it. Called when a query is sent, so that the record at its end finds the text.
 * Returns stats_wants_sample() for this run, which saves the caller a second lookup.
 */
bool stats_note_query(stats_t *st, const config_t *cfg, const char *database,
                      const sql_info_t *info);

/* What one finished query was. */
typedef struct stats_query_result {
    uint64_t fingerprint;
    const char *database;
    const char *user;
    int64_t duration_us; /* from sending it to its last response */
    int64_t wait_us;     /* waited for a server connection before it was sent */
    uint64_t rows;
    bool error;
    const char *parameters; /* text of its Bind parameters for the slow log, or NULL */
} stats_query_result_t;

/* Records a finished query: counters, histogram, and the slow log when it was slow. */
void stats_record(stats_t *st, const config_t *cfg, const stats_query_result_t *q);

/* An N+1 finding: a fingerprint run count times in one transaction or request. */
typedef struct stats_n_plus_one {
    const char *database;
    const char *scope;      /* "transaction" or "request" */
    const char *request_id; /* "" for a transaction */
    uint64_t fingerprint;
    uint64_t preceding; /* the fingerprint run just before the loop, 0 if none */
    int count;
} stats_n_plus_one_t;

void stats_record_n_plus_one(stats_t *st, const config_t *cfg, const stats_n_plus_one_t *f);

/* A finished request (a request_id's queries): its route's statistics and the slow list. */
typedef struct stats_request {
    const char *route;
    const char *request_id;
    int queries;
    int64_t db_time_us;
} stats_request_t;

void stats_record_request(stats_t *st, const config_t *cfg, const stats_request_t *r);

/*
 * Parameter samples, for pgturbo advise: a few real runs of each fingerprint (the query text
 * as sent, or the Bind parameters of an extended-protocol query), shown only to admin_token.
 * stats_wants_sample says whether a run of (database, fingerprint) should be kept: the first
 * STATS_SAMPLES, then one run in 256 replacing an older one.
 */
#define STATS_SAMPLES 3
bool stats_wants_sample(stats_t *st, const char *database, uint64_t fingerprint);

/* Keeps a sample: text (a simple query's text, or NULL) and parameters (a JSON array of the
 * Bind parameters as text, or NULL); both copied. */
void stats_add_sample(stats_t *st, const char *database, uint64_t fingerprint, const char *text,
                      size_t len, const char *parameters);

/* Counts a query the parser could not read (it is forwarded all the same). */
void stats_count_unparsed(stats_t *st);

/* Forgets everything (POST /api/v1/stats/reset). */
void stats_reset(stats_t *st);

/*
 * A reader's merge of every worker's statistics. The reader creates a view, has each worker
 * add its store to it in the worker's own thread (under a lock the reader holds for that),
 * then asks the view for JSON. Borrows nothing from the stores once added.
 */
typedef struct stats_view stats_view_t;

stats_view_t *stats_view_create(void);
void stats_view_free(stats_view_t *v);

/* Adds st to v (in st's worker). Returns 0, or -1 when memory runs out. */
__attribute__((warn_unused_result)) int stats_view_add(stats_view_t *v, const stats_t *st);

/*
 * The JSON answers (shapes in inspect.h); each a new value, or NULL when memory runs out.
 * sort: "total", "p95", "calls" or "errors"; limit 0 = all; database NULL = all.
 */
json_t *stats_view_queries(const stats_view_t *v, const char *sort, int limit,
                           const char *database);
json_t *stats_view_query(const stats_view_t *v, uint64_t fingerprint);
/* The samples of a fingerprint: [{"database", "query", "parameters"}...]. */
json_t *stats_view_samples(const stats_view_t *v, uint64_t fingerprint);
json_t *stats_view_slow(const stats_view_t *v, int64_t since_ms, int limit);
json_t *stats_view_n_plus_one(const stats_view_t *v, int limit);
json_t *stats_view_routes(const stats_view_t *v);
json_t *stats_view_slow_requests(const stats_view_t *v, int limit);
json_t *stats_view_metrics(const stats_view_t *v, int top_n);

/* Queries measured in all, and those the slow log took, over every worker. */
uint64_t stats_view_calls(const stats_view_t *v);
uint64_t stats_view_slow_queries(const stats_view_t *v);

#endif /* PGTURBO_STATS_H */
