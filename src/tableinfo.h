/*
 * tableinfo.h
 *    What `pgturbo advise` knows of a table from the catalog: its identity, size and write
 *    count, its columns, its indexes and the first columns of its foreign keys. Loaded once
 *    per table and kept in a cache for the run.
 *
 * Tables are looked up by name as a query writes them (schema "" when unqualified), resolved
 * the way PostgreSQL resolves them for the advise session (to_regclass, so with its
 * search_path). Every name goes to the server as a parameter, never inside the SQL text.
 */
#ifndef PGTURBO_TABLEINFO_H
#define PGTURBO_TABLEINFO_H

#include "candidates.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define TABLEINFO_MAX_INDEX_KEYS 32 /* INDEX_MAX_KEYS */

typedef struct column_info {
    char name[CAND_NAME_LEN];
    char type[CAND_NAME_LEN]; /* format_type(): "jsonb", "text[]", "timestamp with time zone" */
    int avg_width;            /* bytes, from pg_stats; 0 when unknown */
    double n_distinct;        /* pg_stats: > 0 a count, < 0 minus a share of the rows, 0 unknown */
} column_info_t;

typedef struct index_info {
    char name[CAND_NAME_LEN];
    char method[16]; /* btree, gin, hash ... */
    bool valid;      /* indisvalid: an invalid index serves no query */
    int n_keys;      /* key columns, INCLUDE columns not counted */
    char keys[TABLEINFO_MAX_INDEX_KEYS][CAND_VALUE_LEN]; /* tableinfo_normalize()d */
    bool desc[TABLEINFO_MAX_INDEX_KEYS];
    char predicate[CAND_VALUE_LEN * 2]; /* normalized; "" for none */
} index_info_t;

typedef struct table_info {
    unsigned oid;
    char schema[CAND_NAME_LEN]; /* where it really is */
    char name[CAND_NAME_LEN];
    char relkind;     /* 'r' table, 'p' partitioned, 'v' view, 'm' materialized view ... */
    double reltuples; /* the planner's row estimate; -1 when never analyzed */
    double relpages;
    double writes; /* n_tup_ins + n_tup_upd + n_tup_del since the statistics reset */
    column_info_t *columns;
    int n_columns;
    index_info_t *indexes;
    int n_indexes;
    char (*fk_columns)[CAND_NAME_LEN]; /* first column of each foreign key */
    int n_fk_columns;
} table_info_t;

typedef struct tableinfo_cache tableinfo_cache_t;

/* A cache over conn (borrowed; must outlive the cache). NULL when memory runs out. */
tableinfo_cache_t *tableinfo_cache_create(PGconn *conn);
/* Frees the cache and every table_info it gave; NULL is accepted. */
void tableinfo_cache_free(tableinfo_cache_t *cache);

/*
 * The table that schema.table (as a query writes them; schema "" for unqualified) names,
 * loaded on first use. *out is NULL when no table has that name (a view, a function or a
 * typo is not an error). Returns 0, or -1 when a catalog query failed (message in err). The
 * table_info is borrowed from the cache.
 */
__attribute__((warn_unused_result)) int tableinfo_get(tableinfo_cache_t *cache, const char *schema,
                                                      const char *table, const table_info_t **out,
                                                      char *err, size_t errlen);

/* The column named name, or NULL. */
const column_info_t *tableinfo_column(const table_info_t *t, const char *name);

/* The distinct values column c of t holds, estimated from pg_stats; 0 when unknown. */
double tableinfo_distinct(const table_info_t *t, const column_info_t *c);

/* True when a foreign key of t starts with column. */
bool tableinfo_is_fk_column(const table_info_t *t, const char *column);

/*
 * An expression or column as pg_get_indexdef() or candidate_definition() writes it, reduced
 * to a form where both compare equal: no double quotes, no casts to a named type (::text),
 * no parentheses, no spaces. Writes at most outlen bytes into out.
 */
void tableinfo_normalize(const char *expr, char *out, size_t outlen);

/* The schema.table of t quoted for SQL ("public"."Order Items"), malloc'd; NULL on failure. */
char *tableinfo_quoted_name(PGconn *conn, const table_info_t *t);

#endif /* PGTURBO_TABLEINFO_H */
