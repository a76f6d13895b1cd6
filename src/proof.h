/*
 * proof.h
 *    The planner's word on an index: the plan cost of a query with and without it.
 *
 * Costs are those of generic plans. A query is prepared with the types of its parameters
 * inferred (texts from pg_stat_statements have every constant as $n), then EXPLAIN EXECUTE
 * runs it with plan_cache_mode = force_generic_plan, so the plan is the one for any values
 * (the NULLs given to EXECUTE are never looked at), and it is prepared anew each time, as a
 * prepared statement keeps its plan when a hypothetical index comes or goes. A text with
 * constants (a sample) is planned for those constants.
 *
 * The index is either hypothetical (HypoPG: b-tree, also partial, expression, INCLUDE) or,
 * for what HypoPG cannot model (GIN, HypoPG issue #97), real: built on a temporary sampled
 * copy of the table in the advise session, invisible to every other session, and costed with
 * the query pointed at the copy.
 */
#ifndef PGTURBO_PROOF_H
#define PGTURBO_PROOF_H

#include "advise.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define PROOF_SAMPLE_ROWS    20000 /* rows of a sample copy; smaller tables are copied whole */
#define PROOF_INDEX_NAME_LEN 128

/* Sets up the session for planning: generic plans, and lock and statement timeouts so that
 * advise never waits long behind someone else's lock. Returns 0, or -1 (message in err). */
__attribute__((warn_unused_result)) int proof_session_begin(PGconn *conn, char *err, size_t errlen);

/*
 * Makes HypoPG usable in the database: present, or created now (then *created is true and
 * proof_hypopg_end() drops it again). ADVISE_FAIL_EXTENSION with what to do in err when the
 * server lacks it or the role may not create it; ADVISE_FAIL_DB on other errors.
 */
__attribute__((warn_unused_result)) advise_status_t proof_hypopg_begin(PGconn *conn, bool *created,
                                                                       char *err, size_t errlen);
/* Removes the hypothetical indexes, and HypoPG when proof_hypopg_begin() created it. */
void proof_hypopg_end(PGconn *conn, bool created);

/*
 * The total cost of text's plan in *cost, and in *uses whether the plan scans the index
 * named index_name (NULL: none). Returns 0; 1 when the text cannot be planned (an error of
 * the query, in err); -1 when the connection failed.
 */
__attribute__((warn_unused_result)) int proof_cost(PGconn *conn, const char *text,
                                                   const char *index_name, double *cost, bool *uses,
                                                   char *err, size_t errlen);

/*
 * Creates a hypothetical index from create_sql ("CREATE INDEX ON ..."): its oid and the name
 * plans show for it. Returns 0; 1 when HypoPG refuses it (message in err); -1 when the
 * connection failed.
 */
__attribute__((warn_unused_result)) int proof_hypo_create(PGconn *conn, const char *create_sql,
                                                          unsigned *oid,
                                                          char name[PROOF_INDEX_NAME_LEN],
                                                          char *err, size_t errlen);
/* HypoPG's estimate of the hypothetical index's size in bytes; 0, or -1 on failure. */
__attribute__((warn_unused_result)) int proof_hypo_size(PGconn *conn, unsigned oid, double *bytes,
                                                        char *err, size_t errlen);
/* Drops one hypothetical index; all of them with oid 0 (hypopg_reset). 0, or -1. */
__attribute__((warn_unused_result)) int proof_hypo_drop(PGconn *conn, unsigned oid, char *err,
                                                        size_t errlen);

/* A temporary sampled copy of a table. */
typedef struct proof_sample {
    char name[64];      /* pgturbo_sample_<oid>, in pg_temp */
    char qualified[80]; /* pg_temp.pgturbo_sample_<oid>: what queries are pointed at */
    double rows;        /* rows copied */
} proof_sample_t;

/* Copies about PROOF_SAMPLE_ROWS rows of the table (quoted_table, oid, reltuples rows) into a
 * temporary table and analyzes it. Returns 0, or -1 (message in err). */
__attribute__((warn_unused_result)) int proof_sample_create(PGconn *conn, const char *quoted_table,
                                                            unsigned oid, double reltuples,
                                                            proof_sample_t *out, char *err,
                                                            size_t errlen);
/*
 * Builds the index "pgturbo_sample_idx" on the sample with definition (the part of CREATE
 * INDEX after the table) and gives its size in bytes. Returns 0; 1 when PostgreSQL refuses
 * the definition (message in err); -1 when the connection failed.
 */
__attribute__((warn_unused_result)) int proof_sample_index(PGconn *conn, const proof_sample_t *s,
                                                           const char *definition, double *bytes,
                                                           char *err, size_t errlen);
/* Drops the sample's index. */
void proof_sample_index_drop(PGconn *conn);
/* Drops the sample. */
void proof_sample_drop(PGconn *conn, const proof_sample_t *s);

#define PROOF_SAMPLE_INDEX "pgturbo_sample_idx"

#endif /* PGTURBO_PROOF_H */
