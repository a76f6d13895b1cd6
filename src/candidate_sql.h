/*
 * candidate_sql.h
 *    How an index candidate (candidates.h) is written: its stable name and the definition
 *    that follows "CREATE INDEX name ON table", with every identifier and string quoted.
 */
#ifndef PGTURBO_CANDIDATE_SQL_H
#define PGTURBO_CANDIDATE_SQL_H

#include "candidates.h"

/*
 * The stable name of c: idx_<table>_<keys> with _desc after descending keys, then _gin for
 * GIN, _incl_<columns> for INCLUDE, _where_<columns> for a partial index; lower-case ASCII
 * letters, digits and '_' only; cut to 63 bytes, ending then in 8 hex digits of a hash of the
 * whole name so that long names stay distinct.
 */
void candidate_name(const candidate_t *c, char out[CAND_NAME_LEN]);

/* Quoting of identifiers and literals for SQL (libpq's PQescapeIdentifier and
 * PQescapeLiteral): each returns a malloc'd string, or NULL when it fails. */
typedef struct cand_quoting {
    char *(*ident)(void *ctx, const char *s);
    char *(*literal)(void *ctx, const char *s);
    void *ctx;
} cand_quoting_t;

/*
 * The part of CREATE INDEX after "ON table": "[USING gin ](keys)[ INCLUDE (columns)][ WHERE
 * predicate]", every identifier and string quoted through q. Caller frees; NULL when memory
 * runs out or quoting fails.
 */
char *candidate_definition(const candidate_t *c, const cand_quoting_t *q);

#endif /* PGTURBO_CANDIDATE_SQL_H */
