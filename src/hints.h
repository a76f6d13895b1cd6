/*
 * hints.h
 *    Hints for queries that no index fixes, from the facts candidates.c reads off a query
 *    (SELECT *, ORDER BY without LIMIT, OFFSET, leading-wildcard LIKE, a function around a
 *    column, long IN lists, JSON keys hidden as $n) and what the catalog says of the table:
 *    pure, no I/O.
 */
#ifndef PGTURBO_HINTS_H
#define PGTURBO_HINTS_H

#include "candidates.h"
#include "tableinfo.h"

#include <stdbool.h>
#include <stddef.h>

#define HINT_WIDE_COLUMNS     10     /* SELECT * on a table of this many columns ... */
#define HINT_WIDE_ROW_BYTES   500    /* ... or rows this wide (pg_stats avg_width) */
#define HINT_LARGE_TABLE_ROWS 100000 /* ORDER BY without LIMIT, OFFSET $n over this many rows */
#define HINT_DEEP_OFFSET      1000   /* an OFFSET constant this deep */
#define HINT_LARGE_IN_LIST    100    /* an IN list this long */

/*
 * Writes into out the hint that fact makes about table t (the table the fact names; NULL
 * when it is not a table of the database), one sentence with what to do. Returns false,
 * writing nothing, when the fact is no reason for a hint (a narrow table, a small one, a
 * shallow OFFSET, a function around a column no index starts with ...).
 */
bool hints_message(const cand_hint_t *fact, const table_info_t *t, char *out, size_t outlen);

#endif /* PGTURBO_HINTS_H */
