/*
 * report_bloat.c
 *    The bloat check of pgturbo report; see report_bloat.h.
 */
#include "report_bloat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bloat ---- */

/* A relation's bloat figures, estimated and then perhaps measured. */
typedef struct bloat_row {
    const char *oid, *schema, *table, *index; /* index NULL for a table */
    double size, wasted;
    int fillfactor;
    bool exact;
} bloat_row_t;

static int by_wasted_desc(const void *a, const void *b)
{
    const bloat_row_t *x = a, *y = b;
    return x->wasted < y->wasted ? 1 : x->wasted > y->wasted ? -1 : 0;
}

static int by_relation_size_desc(const void *a, const void *b)
{
    const bloat_row_t *x = *(const bloat_row_t *const *)a, *y = *(const bloat_row_t *const *)b;
    return x->size < y->size ? 1 : x->size > y->size ? -1 : 0;
}

/* The schema pgstattuple is installed in, quoted, into out; false when it is not. */
static bool pgstattuple_schema(report_ctx_t *c, char *out, size_t len)
{
    PGresult *r = rctx_run0(c, "bloat_exact", NULL,
                            "SELECT n.nspname FROM pg_extension e"
                            " JOIN pg_namespace n ON n.oid = e.extnamespace"
                            " WHERE e.extname = 'pgstattuple'");
    bool found = r != NULL && PQntuples(r) == 1;
    if (found)
        rctx_quoted1(c, PQgetvalue(r, 0, 0), out, len);
    PQclear(r);
    return found && out[0] != '\0';
}

/*
 * Replaces the estimates of the largest relations with pgstattuple's figures (tables:
 * pgstattuple_approx, dead tuples and free space beyond the fillfactor; btree indexes:
 * pgstatindex, leaf density below the fillfactor). Without the extension, or the right to
 * run it, the estimates stay and the check says why.
 */
static void measure_bloat(report_ctx_t *c, bloat_row_t *rows, int n)
{
    char schema[NAME_LEN];
    if (c->failed)
        return;
    bloat_row_t **big = calloc((size_t)n + 1, sizeof(*big));
    if (big == NULL) {
        rctx_fail(c, "bloat: out of memory");
        return;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].size >= c->opt->min_relation_bytes)
            big[m++] = &rows[i];
    if (m == 0 || !pgstattuple_schema(c, schema, sizeof(schema))) {
        if (m > 0 && !c->failed)
            rctx_skip(c, "bloat_exact",
                      "pgstattuple is not installed: bloat is estimated from catalog statistics "
                      "(CREATE EXTENSION pgstattuple for measured figures)");
        free(big);
        return;
    }
    qsort(big, (size_t)m, sizeof(*big), by_relation_size_desc);
    char table_sql[512], index_sql[512];
    snprintf(table_sql, sizeof(table_sql),
             "SELECT table_len, dead_tuple_len, approx_free_space"
             " FROM %s.pgstattuple_approx($1::regclass)",
             schema);
    snprintf(index_sql, sizeof(index_sql),
             "SELECT leaf_pages, avg_leaf_density FROM %s.pgstatindex($1::regclass)", schema);
    /* pgstatindex reads the whole index: a huge one keeps its estimate rather than hold the
     * report up. */
    PQclear(rctx_run0(c, "bloat_exact", NULL, "SET statement_timeout = '" MEASURE_TIMEOUT "'"));
    int timed_out = 0;
    for (int k = 0; k < m && k < c->opt->exact_bloat_limit && !c->failed; k++) {
        bloat_row_t *b = big[k];
        const char *params[] = {b->oid};
        PGresult *r =
            PQexecParams(c->conn, b->index ? index_sql : table_sql, 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            bool denied = state != NULL && strcmp(state, "42501") == 0;
            timed_out += state != NULL && strcmp(state, "57014") == 0;
            char msg[MSG_LEN], reason[2 * MSG_LEN];
            rctx_error_text(r, c->conn, msg, sizeof(msg));
            PQclear(r);
            if (PQstatus(c->conn) != CONNECTION_OK) {
                rctx_fail(c, "bloat_exact: %s", msg);
                break;
            }
            if (denied) {
                snprintf(reason, sizeof(reason),
                         "%s; grant pg_stat_scan_tables for measured bloat (estimated instead)",
                         msg);
                rctx_skip(c, "bloat_exact", reason);
                break;
            }
            continue; /* this relation keeps its estimate */
        }
        if (b->index == NULL) {
            double len = rctx_num(r, 0, "table_len");
            b->wasted = rctx_num(r, 0, "dead_tuple_len") + rctx_num(r, 0, "approx_free_space") -
                        len * (100 - b->fillfactor) / 100.0;
        } else {
            double leaves = rctx_num(r, 0, "leaf_pages"),
                   density = rctx_num(r, 0, "avg_leaf_density");
            b->wasted = leaves > 0 && !isnan(density)
                            ? leaves * c->block_size * (1 - density / b->fillfactor)
                            : 0;
        }
        if (b->wasted < 0)
            b->wasted = 0;
        b->exact = true;
        PQclear(r);
    }
    free(big);
    PQclear(rctx_run0(c, "bloat_exact", NULL, "SET statement_timeout = '" STATEMENT_TIMEOUT "'"));
    if (timed_out > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "pgstattuple took over " MEASURE_TIMEOUT
                 " on %d relation%s, whose bloat is estimated instead",
                 timed_out, timed_out == 1 ? "" : "s");
        rctx_skip(c, "bloat_exact", reason);
    }
}

static void bloat_recommend(report_ctx_t *c, const bloat_row_t *b)
{
    double pct = b->size > 0 ? b->wasted * 100 / b->size : 0;
    if (b->wasted < c->opt->min_relation_bytes || pct < 20)
        return;
    health_severity_t sev = pct >= 50 ? HEALTH_WARNING : HEALTH_INFO;
    char msg[MSG_LEN], action[MSG_LEN], q[NAME_LEN], object[NAME_LEN], wasted[32], size[32];
    rctx_size_text(b->wasted, wasted, sizeof(wasted));
    rctx_size_text(b->size, size, sizeof(size));
    const char *how = b->exact ? "measured by pgstattuple" : "estimated";
    if (b->index == NULL) {
        rctx_quoted(c, b->schema, b->table, q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", b->schema, b->table);
        snprintf(msg, sizeof(msg), "Table %s is %.0f %% bloat: %s of %s wasted (%s)",
                 rctx_shown(c, b->schema, b->table), pct, wasted, size, how);
        snprintf(action, sizeof(action),
                 "VACUUM (ANALYZE) %s; makes the space reusable; to give it back, VACUUM FULL "
                 "%s; (exclusive lock) or pg_repack",
                 q, q);
        rctx_recommend(c, sev, "bloat", "table_bloat", object, msg, action);
    } else {
        rctx_quoted(c, b->schema, b->index, q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", b->schema, b->index);
        snprintf(msg, sizeof(msg), "Index %s on %s is %.0f %% bloat: %s of %s wasted (%s)",
                 rctx_shown(c, NULL, b->index), rctx_shown(c, b->schema, b->table), pct, wasted,
                 size, how);
        snprintf(action, sizeof(action), "REINDEX INDEX CONCURRENTLY %s;", q);
        rctx_recommend(c, sev, "bloat", "index_bloat", object, msg, action);
    }
}

static json_t *bloat_list(report_ctx_t *c, bloat_row_t *rows, int n, bool indexes)
{
    json_t *list = json_array();
    int listed = 0;
    for (int i = 0; i < n && listed < c->opt->top; i++) {
        bloat_row_t *b = &rows[i];
        if ((b->index != NULL) != indexes || b->wasted <= 0)
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "schema", rctx_jstr(b->schema));
        json_object_set_new(o, "table", rctx_jstr(b->table));
        if (indexes)
            json_object_set_new(o, "index", rctx_jstr(b->index));
        json_object_set_new(o, "size_bytes", json_integer((json_int_t)b->size));
        json_object_set_new(o, "wasted_bytes", json_integer((json_int_t)b->wasted));
        json_object_set_new(o, "wasted_percent",
                            rctx_jreal(b->size > 0 ? b->wasted * 100 / b->size : 0));
        json_object_set_new(o, "method", json_string(b->exact ? "pgstattuple" : "estimate"));
        json_array_append_new(list, o);
        listed++;
    }
    return list;
}

void report_check_bloat(report_ctx_t *c)
{
    PGresult *t = rctx_run0(
        c, "bloat", NULL,
        "SELECT c.oid, n.nspname AS schema, c.relname AS table,"
        " c.relpages::float8 AS pages, c.reltuples::float8 AS tuples,"
        " coalesce((SELECT split_part(o, '=', 2)::int FROM unnest(c.reloptions) o "
        "  WHERE o LIKE 'fillfactor=%'), 100) AS fillfactor,"
        " sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0))::float8 AS width,"
        " count(*) AS natts, count(s.attname) AS with_stats,"
        " coalesce(bool_or(s.null_frac > 0), false) AS nulls FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname"
        "  AND s.attname = a.attname AND NOT s.inherited WHERE c.relkind IN ('r', 'm')"
        " AND (n.nspname !~ '^pg_' AND n.nspname <> 'information_schema') GROUP BY c.oid,"
        " n.nspname, c.relname, c.relpages, c.reltuples, c.reloptions");
    PGresult *x =
        rctx_run0(c, "bloat", NULL,
                  "SELECT x.oid, n.nspname AS schema, t.relname AS table, x.relname AS index,"
                  " x.relpages::float8 AS pages, x.reltuples::float8 AS tuples,"
                  " coalesce((SELECT split_part(o, '=', 2)::int FROM unnest(x.reloptions) o "
                  "  WHERE o LIKE 'fillfactor=%'), 90) AS fillfactor,"
                  " sum(coalesce(s.avg_width, 0))::float8 AS width, count(*) AS natts,"
                  " count(s.attname) AS with_stats FROM pg_index i"
                  " JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
                  " JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = x.relam"
                  " AND am.amname = 'btree' JOIN pg_attribute a ON a.attrelid = t.oid"
                  "  AND a.attnum = ANY (string_to_array(i.indkey::text, ' ')::int2[]) LEFT"
                  " JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = t.relname"
                  "  AND s.attname = a.attname AND NOT s.inherited WHERE x.relkind = 'i'"
                  " AND i.indexprs IS NULL AND i.indisvalid  AND (n.nspname !~ '^pg_'"
                  " AND n.nspname <> 'information_schema') GROUP BY x.oid, n.nspname, t.relname,"
                  " x.relname,  x.relpages, x.reltuples, x.reloptions");
    if (t == NULL || x == NULL) {
        PQclear(t);
        PQclear(x);
        return;
    }
    int nt = PQntuples(t), nx = PQntuples(x), n = 0, unknown = 0;
    bloat_row_t *rows = calloc((size_t)(nt + nx) + 1, sizeof(*rows));
    if (rows == NULL) {
        rctx_fail(c, "bloat: out of memory");
        goto done;
    }
    for (int i = 0; i < nt; i++) {
        double tuples = rctx_num(t, i, "tuples");
        health_table_stats_t s = {
            .pages = rctx_num(t, i, "pages"),
            .tuples = tuples,
            .block_size = c->block_size,
            .fillfactor = (int)rctx_num(t, i, "fillfactor"),
            .data_width = rctx_num(t, i, "width"),
            .natts = (int)rctx_num(t, i, "natts"),
            .has_nulls = rctx_flag(t, i, "nulls"),
        };
        /* Rows without column statistics cannot be sized (never analyzed, or no right to
         * read them); an empty analyzed table has no statistics and needs none. */
        if (tuples < 0 || (tuples > 0 && rctx_num(t, i, "with_stats") < s.natts)) {
            unknown++;
            continue;
        }
        bloat_row_t *b = &rows[n++];
        b->oid = rctx_val(t, i, "oid");
        b->schema = rctx_val(t, i, "schema");
        b->table = rctx_val(t, i, "table");
        b->size = s.pages * c->block_size;
        b->fillfactor = s.fillfactor;
        b->wasted = health_table_bloat(&s);
    }
    for (int i = 0; i < nx; i++) {
        double tuples = rctx_num(x, i, "tuples");
        health_btree_stats_t s = {
            .pages = rctx_num(x, i, "pages"),
            .tuples = tuples,
            .block_size = c->block_size,
            .fillfactor = (int)rctx_num(x, i, "fillfactor"),
            .data_width = rctx_num(x, i, "width"),
        };
        if (tuples < 0 || (tuples > 0 && rctx_num(x, i, "with_stats") < rctx_num(x, i, "natts"))) {
            unknown++;
            continue;
        }
        bloat_row_t *b = &rows[n++];
        b->oid = rctx_val(x, i, "oid");
        b->schema = rctx_val(x, i, "schema");
        b->table = rctx_val(x, i, "table");
        b->index = rctx_val(x, i, "index");
        b->size = s.pages * c->block_size;
        b->fillfactor = s.fillfactor;
        b->wasted = health_btree_bloat(&s);
    }
    measure_bloat(c, rows, n);
    qsort(rows, (size_t)n, sizeof(*rows), by_wasted_desc);

    bool any_exact = false;
    for (int i = 0; i < n; i++) {
        c->in.wasted_bytes += rows[i].wasted;
        any_exact = any_exact || rows[i].exact;
        bloat_recommend(c, &rows[i]);
    }
    json_t *bloat = json_object();
    json_object_set_new(bloat, "method", json_string(any_exact ? "pgstattuple" : "estimate"));
    json_object_set_new(bloat, "wasted_bytes", json_integer((json_int_t)c->in.wasted_bytes));
    json_object_set_new(bloat, "tables", bloat_list(c, rows, n, false));
    json_object_set_new(bloat, "indexes", bloat_list(c, rows, n, true));
    json_object_set_new(bloat, "not_estimated", json_integer(unknown));
    json_object_set_new(c->doc, "bloat", bloat);
    if (unknown > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "%d table%s or index%s without readable column statistics (never analyzed, "
                 "or this role may not read them): their bloat is not estimated",
                 unknown, unknown == 1 ? "" : "s", unknown == 1 ? "" : "es");
        rctx_skip(c, "bloat", reason);
    }
done:
    free(rows);
    PQclear(t);
    PQclear(x);
}
