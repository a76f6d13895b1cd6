/*
 * workload.h
 *    The queries `pgturbo advise` works from: pg_stat_statements of the connected database.
 *
 * pg_stat_statements replaces every constant of a query by $n (data->>'email' = 'x' is kept as
 * data->>$1 = $2, status IN ('a', 'b') as status IN ($3, $4)), and the constants are what
 * expression and partial indexes are made of. So the workload also takes samples: the last
 * query of every other session of the database in pg_stat_activity is a real text, and its
 * query_id (PostgreSQL 14 and later) names its pg_stat_statements entry. An application's
 * pooled connections, idle between requests, show their most recent queries there.
 */
#ifndef PGTURBO_WORKLOAD_H
#define PGTURBO_WORKLOAD_H

#include "advise.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* At most this many queries, those of most total time first. */
#define WORKLOAD_MAX_QUERIES 1000

typedef struct workload_query {
    int64_t queryid;
    char *text;      /* as pg_stat_statements keeps it: constants as $n */
    char *sample;    /* a real text with the same query id, or NULL */
    char *prepared;  /* the sample as prepared, with $n where values were bound, or NULL */
    double calls;    /* executions since the statistics were reset */
    double total_ms; /* their total execution time */
    double rows;     /* rows they returned or changed */
} workload_query_t;

typedef struct workload {
    workload_query_t *queries; /* by total time, most first */
    int n;
    int n_hidden;    /* entries whose text this role may not see (pg_read_all_stats) */
    int n_samples;   /* queries with a sample */
    double total_ms; /* of the n queries */
    double total_calls;
} workload_t;

/*
 * Loads the workload of conn's database from pg_stat_statements into w (zeroed by the
 * caller), creating the extension in the database when it is missing and the role may. On
 * failure writes one line (and what to do) into err and returns ADVISE_FAIL_EXTENSION when
 * pg_stat_statements is missing or not preloaded, ADVISE_FAIL_DB for other errors. Free w with
 * workload_free() in every case.
 */
__attribute__((warn_unused_result)) advise_status_t workload_load(PGconn *conn, workload_t *w,
                                                                  char *err, size_t errlen);

/*
 * pg_stat_statements replaces the constant of a typed literal by $n, which makes text that
 * does not parse (now() - interval '1 day' is kept as now() - interval $1). Returns a
 * malloc'd copy of text with each such "typename $n" written as "$n::typename", or NULL when
 * text has none (or memory runs out).
 */
char *workload_repair_text(const char *text);

/* Frees what w holds and zeroes it. */
void workload_free(workload_t *w);

#endif /* PGTURBO_WORKLOAD_H */
