/*
 * tableinfo.c
 *    Tables, columns, indexes and foreign keys from the catalog, for `pgturbo advise`; see
 *    tableinfo.h.
 */
#include "tableinfo.h"

#include "pqmsg.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A name as some query writes it, and the table it leads to (NULL: none). */
typedef struct lookup {
    char schema[CAND_NAME_LEN];
    char table[CAND_NAME_LEN];
    table_info_t *info;
} lookup_t;

struct tableinfo_cache {
    PGconn *conn;
    lookup_t *lookups;
    int n_lookups, cap_lookups;
    table_info_t **tables; /* distinct tables, by oid */
    int n_tables, cap_tables;
};

tableinfo_cache_t *tableinfo_cache_create(PGconn *conn)
{
    tableinfo_cache_t *cache = calloc(1, sizeof(*cache));
    if (cache != NULL)
        cache->conn = conn;
    return cache;
}

static void table_free(table_info_t *t)
{
    if (t == NULL)
        return;
    free(t->columns);
    free(t->indexes);
    free(t->fk_columns);
    free(t);
}

void tableinfo_cache_free(tableinfo_cache_t *cache)
{
    if (cache == NULL)
        return;
    for (int i = 0; i < cache->n_tables; i++)
        table_free(cache->tables[i]);
    free(cache->tables);
    free(cache->lookups);
    free(cache);
}

/* Runs sql with text parameters; NULL (message in err) unless it returned rows. */
static PGresult *query(PGconn *conn, const char *sql, int n, const char *const *params,
                       const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pqmsg_describe(err, errlen, what, conn);
        PQclear(res);
        return NULL;
    }
    return res;
}

void tableinfo_normalize(const char *expr, char *out, size_t outlen)
{
    size_t n = 0;
    for (size_t i = 0; expr[i] != '\0' && n + 1 < outlen; i++) {
        char c = expr[i];
        if (c == '\'') {
            /* A string literal is copied whole: what it holds is not syntax. */
            size_t j = i + 1;
            while (expr[j] != '\0' && !(expr[j] == '\'' && expr[j + 1] != '\''))
                j += expr[j] == '\'' ? 2 : 1;
            for (size_t k = i; k <= j && expr[k] != '\0' && n + 1 < outlen; k++)
                out[n++] = expr[k];
            i = expr[j] == '\0' ? j - 1 : j;
            continue;
        }
        if (c == ':' && expr[i + 1] == ':') {
            /* A cast to a named type: ::text, ::character varying, ::"char", ::text[]. */
            static const char *const long_types[] = {
                "character varying",
                "double precision",
                "timestamp with time zone",
                "timestamp without time zone",
                "time with time zone",
                "time without time zone",
                "bit varying",
            };
            size_t j = i + 2;
            for (size_t t = 0; t < sizeof(long_types) / sizeof(long_types[0]); t++)
                if (strncmp(expr + j, long_types[t], strlen(long_types[t])) == 0) {
                    j += strlen(long_types[t]);
                    break;
                }
            while (isalnum((unsigned char)expr[j]) || expr[j] == '_' || expr[j] == '"' ||
                   expr[j] == '.' || expr[j] == '[' || expr[j] == ']')
                j++;
            i = j - 1;
            continue;
        }
        if (c == '"' || c == '(' || c == ')' || isspace((unsigned char)c))
            continue;
        out[n++] = c;
    }
    out[n] = '\0';
}

/* Columns, with their average width and distinct values from pg_stats (the row of the
 * table itself, not of its inheritance tree, unless it is partitioned). */
static int load_columns(PGconn *conn, table_info_t *t, const char *oid, char *err, size_t errlen)
{
    const char *params[] = {oid};
    PGresult *res = query(conn,
                          "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
                          "coalesce(s.avg_width, 0), coalesce(s.n_distinct, 0) "
                          "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                          "JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "LEFT JOIN pg_stats s ON s.schemaname = n.nspname "
                          "AND s.tablename = c.relname AND s.attname = a.attname "
                          "AND s.inherited = (c.relkind = 'p') "
                          "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
                          "ORDER BY a.attnum",
                          1, params, "cannot read the columns", err, errlen);
    if (res == NULL)
        return -1;
    int n = PQntuples(res);
    t->columns = calloc(n > 0 ? (size_t)n : 1, sizeof(*t->columns));
    if (t->columns == NULL) {
        PQclear(res);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        column_info_t *c = &t->columns[i];
        snprintf(c->name, sizeof(c->name), "%s", PQgetvalue(res, i, 0));
        snprintf(c->type, sizeof(c->type), "%s", PQgetvalue(res, i, 1));
        c->avg_width = atoi(PQgetvalue(res, i, 2));
        c->n_distinct = strtod(PQgetvalue(res, i, 3), NULL);
    }
    t->n_columns = n;
    PQclear(res);
    return 0;
}

/* Indexes, one row per key column (pg_get_indexdef of each), in order. */
static int load_indexes(PGconn *conn, table_info_t *t, const char *oid, char *err, size_t errlen)
{
    const char *params[] = {oid};
    PGresult *res = query(conn,
                          "SELECT c.relname, am.amname, i.indisvalid, "
                          "coalesce(pg_get_expr(i.indpred, i.indrelid, true), ''), "
                          "k, pg_get_indexdef(i.indexrelid, k, true), (i.indoption[k - 1] & 1) = 1 "
                          "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                          "JOIN pg_am am ON am.oid = c.relam "
                          "CROSS JOIN LATERAL generate_series(1, i.indnkeyatts) k "
                          "WHERE i.indrelid = $1::oid ORDER BY c.relname, k",
                          1, params, "cannot read the indexes", err, errlen);
    if (res == NULL)
        return -1;
    int rows = PQntuples(res);
    t->indexes = calloc(rows > 0 ? (size_t)rows : 1, sizeof(*t->indexes));
    if (t->indexes == NULL) {
        PQclear(res);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    index_info_t *cur = NULL;
    for (int i = 0; i < rows; i++) {
        int k = atoi(PQgetvalue(res, i, 4));
        if (k == 1) {
            cur = &t->indexes[t->n_indexes++];
            snprintf(cur->name, sizeof(cur->name), "%s", PQgetvalue(res, i, 0));
            snprintf(cur->method, sizeof(cur->method), "%s", PQgetvalue(res, i, 1));
            cur->valid = PQgetvalue(res, i, 2)[0] == 't';
            tableinfo_normalize(PQgetvalue(res, i, 3), cur->predicate, sizeof(cur->predicate));
        }
        if (cur == NULL || cur->n_keys >= TABLEINFO_MAX_INDEX_KEYS)
            continue;
        tableinfo_normalize(PQgetvalue(res, i, 5), cur->keys[cur->n_keys], sizeof(cur->keys[0]));
        cur->desc[cur->n_keys] = PQgetvalue(res, i, 6)[0] == 't';
        cur->n_keys++;
    }
    PQclear(res);
    return 0;
}

static int load_foreign_keys(PGconn *conn, table_info_t *t, const char *oid, char *err,
                             size_t errlen)
{
    const char *params[] = {oid};
    PGresult *res = query(conn,
                          "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a "
                          "ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
                          "WHERE c.conrelid = $1::oid AND c.contype = 'f'",
                          1, params, "cannot read the foreign keys", err, errlen);
    if (res == NULL)
        return -1;
    int n = PQntuples(res);
    t->fk_columns = calloc(n > 0 ? (size_t)n : 1, sizeof(*t->fk_columns));
    if (t->fk_columns == NULL) {
        PQclear(res);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        snprintf(t->fk_columns[i], CAND_NAME_LEN, "%s", PQgetvalue(res, i, 0));
    t->n_fk_columns = n;
    PQclear(res);
    return 0;
}

/* The quoted name a query would write: "schema"."table", or "table". */
static char *written_name(PGconn *conn, const char *schema, const char *table)
{
    char *t = PQescapeIdentifier(conn, table, strlen(table));
    if (t == NULL)
        return NULL;
    if (schema[0] == '\0') {
        char *copy = strdup(t);
        PQfreemem(t);
        return copy;
    }
    char *s = PQescapeIdentifier(conn, schema, strlen(schema));
    if (s == NULL) {
        PQfreemem(t);
        return NULL;
    }
    size_t len = strlen(s) + strlen(t) + 2;
    char *out = malloc(len);
    if (out != NULL)
        snprintf(out, len, "%s.%s", s, t);
    PQfreemem(s);
    PQfreemem(t);
    return out;
}

/* Resolves and loads one table; *out NULL when the name is no table. */
static int load_table(tableinfo_cache_t *cache, const char *schema, const char *table,
                      table_info_t **out, char *err, size_t errlen)
{
    *out = NULL;
    char *name = written_name(cache->conn, schema, table);
    if (name == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *params[] = {name};
    PGresult *res = query(cache->conn,
                          "SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples, "
                          "c.relpages, coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0) "
                          "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid "
                          "WHERE c.oid = to_regclass($1::text)",
                          1, params, "cannot look up a table", err, errlen);
    free(name);
    if (res == NULL)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    unsigned oid = (unsigned)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    for (int i = 0; i < cache->n_tables; i++)
        if (cache->tables[i]->oid == oid) {
            *out = cache->tables[i];
            PQclear(res);
            return 0;
        }
    if (cache->n_tables == cache->cap_tables) {
        int cap = cache->cap_tables ? cache->cap_tables * 2 : 16;
        table_info_t **bigger = realloc(cache->tables, sizeof(*bigger) * (size_t)cap);
        if (bigger == NULL) {
            PQclear(res);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        cache->tables = bigger;
        cache->cap_tables = cap;
    }
    table_info_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        PQclear(res);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->oid = oid;
    snprintf(t->schema, sizeof(t->schema), "%s", PQgetvalue(res, 0, 1));
    snprintf(t->name, sizeof(t->name), "%s", PQgetvalue(res, 0, 2));
    t->relkind = PQgetvalue(res, 0, 3)[0];
    t->reltuples = strtod(PQgetvalue(res, 0, 4), NULL);
    t->relpages = strtod(PQgetvalue(res, 0, 5), NULL);
    t->writes = strtod(PQgetvalue(res, 0, 6), NULL);
    char oidtext[16];
    snprintf(oidtext, sizeof(oidtext), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (load_columns(cache->conn, t, oidtext, err, errlen) != 0 ||
        load_indexes(cache->conn, t, oidtext, err, errlen) != 0 ||
        load_foreign_keys(cache->conn, t, oidtext, err, errlen) != 0) {
        table_free(t);
        return -1;
    }
    cache->tables[cache->n_tables++] = t;
    *out = t;
    return 0;
}

int tableinfo_get(tableinfo_cache_t *cache, const char *schema, const char *table,
                  const table_info_t **out, char *err, size_t errlen)
{
    for (int i = 0; i < cache->n_lookups; i++) {
        lookup_t *l = &cache->lookups[i];
        if (strcmp(l->schema, schema) == 0 && strcmp(l->table, table) == 0) {
            *out = l->info;
            return 0;
        }
    }
    table_info_t *info;
    if (load_table(cache, schema, table, &info, err, errlen) != 0)
        return -1;
    if (cache->n_lookups == cache->cap_lookups) {
        int cap = cache->cap_lookups ? cache->cap_lookups * 2 : 16;
        lookup_t *bigger = realloc(cache->lookups, sizeof(*bigger) * (size_t)cap);
        if (bigger == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        cache->lookups = bigger;
        cache->cap_lookups = cap;
    }
    lookup_t *l = &cache->lookups[cache->n_lookups++];
    snprintf(l->schema, sizeof(l->schema), "%s", schema);
    snprintf(l->table, sizeof(l->table), "%s", table);
    l->info = info;
    *out = info;
    return 0;
}

const column_info_t *tableinfo_column(const table_info_t *t, const char *name)
{
    for (int i = 0; i < t->n_columns; i++)
        if (strcmp(t->columns[i].name, name) == 0)
            return &t->columns[i];
    return NULL;
}

double tableinfo_distinct(const table_info_t *t, const column_info_t *c)
{
    if (c->n_distinct >= 0)
        return c->n_distinct;
    return t->reltuples > 0 ? -c->n_distinct * t->reltuples : 0;
}

bool tableinfo_is_fk_column(const table_info_t *t, const char *column)
{
    for (int i = 0; i < t->n_fk_columns; i++)
        if (strcmp(t->fk_columns[i], column) == 0)
            return true;
    return false;
}

char *tableinfo_quoted_name(PGconn *conn, const table_info_t *t)
{
    return written_name(conn, t->schema, t->name);
}
