/*
 * hints.c
 *    Which facts of a query deserve a hint, and what it says; see hints.h.
 */
#include "hints.h"

#include <stdio.h>
#include <string.h>

/* The valid index whose first key is column, or NULL. */
static const index_info_t *index_led_by(const table_info_t *t, const char *column)
{
    char key[CAND_VALUE_LEN];
    tableinfo_normalize(column, key, sizeof(key));
    for (int i = 0; i < t->n_indexes; i++) {
        const index_info_t *ix = &t->indexes[i];
        if (ix->valid && ix->n_keys > 0 && strcmp(ix->keys[0], key) == 0)
            return ix;
    }
    return NULL;
}

static int row_bytes(const table_info_t *t)
{
    int bytes = 0;
    for (int i = 0; i < t->n_columns; i++)
        bytes += t->columns[i].avg_width;
    return bytes;
}

bool hints_message(const cand_hint_t *fact, const table_info_t *t, char *out, size_t outlen)
{
    if (t == NULL)
        return false;
    const char *schema = t->schema, *table = t->name, *column = fact->column;
    switch (fact->kind) {
    case CAND_HINT_SELECT_STAR: {
        int bytes = row_bytes(t);
        if (t->n_columns < HINT_WIDE_COLUMNS && bytes < HINT_WIDE_ROW_BYTES)
            return false;
        snprintf(out, outlen,
                 "SELECT * reads all %d columns of %s.%s (about %d bytes a row): name the "
                 "columns the code uses, so that less is read and sent, and an index can cover "
                 "the query",
                 t->n_columns, schema, table, bytes);
        return true;
    }
    case CAND_HINT_ORDER_NO_LIMIT:
        if (t->reltuples < HINT_LARGE_TABLE_ROWS)
            return false;
        snprintf(out, outlen,
                 "ORDER BY without LIMIT over %s.%s (about %.0f rows) sorts every row it "
                 "returns: add a LIMIT, or page by key",
                 schema, table, t->reltuples);
        return true;
    case CAND_HINT_OFFSET:
        if (fact->value >= HINT_DEEP_OFFSET) {
            snprintf(out, outlen,
                     "OFFSET %ld makes PostgreSQL read and throw away %ld rows of %s.%s on "
                     "every call: page by key instead (WHERE id > $last ORDER BY id LIMIT n)",
                     fact->value, fact->value, schema, table);
            return true;
        }
        if (fact->value < 0 && t->reltuples >= HINT_LARGE_TABLE_ROWS) {
            snprintf(out, outlen,
                     "OFFSET pagination over %s.%s (about %.0f rows): each page reads and "
                     "throws away every row before it, so deep pages get slower and slower; "
                     "page by key instead (WHERE id > $last ORDER BY id LIMIT n)",
                     schema, table, t->reltuples);
            return true;
        }
        return false;
    case CAND_HINT_LEADING_WILDCARD:
        snprintf(out, outlen,
                 "LIKE '%s' on %s.%s.%s starts with a wildcard, so no b-tree index can serve "
                 "it: a trigram index can (CREATE EXTENSION pg_trgm; an index USING gin (%s "
                 "gin_trgm_ops)), or full-text search",
                 fact->detail, schema, table, column, column);
        return true;
    case CAND_HINT_FUNCTION_ON_COLUMN: {
        const index_info_t *ix = index_led_by(t, column);
        if (ix == NULL)
            return false;
        snprintf(out, outlen,
                 "%s around %s.%s.%s keeps index %s from serving the condition: compare the "
                 "bare column (date(created_at) = $1 as created_at >= $1 AND created_at < $1 + "
                 "1), or index the expression",
                 fact->detail, schema, table, column, ix->name);
        return true;
    }
    case CAND_HINT_LARGE_IN_LIST:
        if (fact->value < HINT_LARGE_IN_LIST)
            return false;
        snprintf(out, outlen,
                 "IN list of %ld values on %s.%s.%s: send one array instead (= ANY($1)); a "
                 "list this long is slow to parse and plan, and each length is a query of its "
                 "own in pg_stat_statements",
                 fact->value, schema, table, column);
        return true;
    case CAND_HINT_HIDDEN_CONSTANT:
        snprintf(out, outlen,
                 "%s.%s.%s ->> $n: pg_stat_statements hides the JSON key and no session showed "
                 "this query with its constants, so no expression index could be tried; run "
                 "advise while the application is connected (its idle sessions show their last "
                 "query)",
                 schema, table, column);
        return true;
    }
    return false;
}
