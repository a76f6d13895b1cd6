/*
 * advise.c
 *    `pgturbo advise` from start to end; see advise.h.
 *
 * The choice is greedy. Each round, every candidate not yet valued is costed against the
 * indexes chosen so far (HypoPG holds those as hypothetical indexes too, recreated after a
 * hypopg_reset at the start of each round, so that thousands of candidates never pile up in
 * it): for each query on its table, the plan cost with it, and whether the plan uses it. A
 * candidate's benefit is the sum over the queries it helps of calls x cost saved; its charge
 * is the table's writes since the statistics reset times the cost of keeping one more index
 * up to date per write, plus its size in pages. Of the candidates that cut at least one
 * frequent query's cost by --min-improvement percent, the one of highest benefit - charge
 * (when positive) is chosen, and the candidates whose costs it changes are valued again in
 * the next round. Candidates that share leading columns with a chosen index are dropped, as
 * an existing index with the same leading columns drops them before any costing.
 *
 * GIN candidates, which HypoPG cannot model, are valued once against the indexes that exist,
 * with a real index on a sampled temporary copy of the table; their costs are scaled to the
 * real table by the ratio of the sample's costs with and without the index.
 */
#include "advise.h"

#include "advice.h"
#include "candidate_sql.h"
#include "candidates.h"
#include "daemonworkload.h"
#include "hints.h"
#include "migrations.h"
#include "pqmsg.h"
#include "proof.h"
#include "retarget.h"
#include "sqlparse.h"
#include "tableinfo.h"
#include "workload.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADVISE_FREQUENT_CALLS   10   /* a query run this often is frequent */
#define ADVISE_FREQUENT_SHARE   0.01 /* ... as is one taking this share of the workload time */
#define ADVISE_MAX_ADVICE       20   /* indexes advised in one run at most */
#define PARTIAL_MAX_SELECTIVITY 0.2  /* a partial index's predicate keeps at most this share */
#define PARTIAL_MAX_DISTINCT                                                                       \
    100                         /* ... and compares with constants a column of at most this        \
                                 * many distinct values (a status, a kind, a flag) */
#define WRITE_COST_BTREE   1.0  /* planner cost units to maintain a b-tree per write */
#define WRITE_COST_GIN     3.0  /* ... a GIN index */
#define SIZE_COST_PER_PAGE 1.0  /* planner cost units per 8 kB page of index */
#define HELP_MIN_SHARE     0.01 /* a query counts as helped when its cost falls by 1 % */

/* A table a query names, as it writes it, and what it is. */
typedef struct query_ref {
    const table_info_t *table;
    char schema[CAND_NAME_LEN];
    char name[CAND_NAME_LEN];
} query_ref_t;

typedef struct query_state {
    cand_analysis_t analysis;
    query_ref_t *refs;
    int n_refs;
    double base; /* cost with the indexes chosen so far */
} query_state_t;

/* A candidate on its way through proof and choice. */
typedef struct acand {
    candidate_t c; /* schema and table: where the table really is */
    const table_info_t *table;
    char name[CAND_NAME_LEN];
    char *definition;
    char *create_sql; /* CREATE INDEX ON table definition, for HypoPG */
    advice_proof_t proof;
    bool rejected;
    bool chosen;
    bool valued;    /* after[] and uses[] hold for the indexes chosen so far */
    double *before; /* per query: cost without it, the other chosen indexes in place */
    double *after;  /* per query: cost with it; only for queries on the table */
    bool *uses;
    double size_bytes;
    double sample_rows;
    double benefit, charge, time_saved_ms;
    bool qualifies;
    bool charged_out; /* qualified, but its charge outweighed its benefit */
} acand_t;

typedef struct table_sample {
    const table_info_t *table;
    proof_sample_t sample;
    bool failed;
} table_sample_t;

typedef struct run {
    PGconn *conn;
    const advise_options_t *opts;
    workload_t workload;
    tableinfo_cache_t *tables;
    advice_set_t set;
    query_state_t *qs;
    acand_t *cands;
    int n_cands, cap_cands;
    table_sample_t *samples;
    int n_samples;
    int catalog_failed; /* a catalog lookup failed inside the has_column callback */
    int n_uncostable;
    char err[1024];
} run_t;

/* ---- small helpers ---- */

static PGconn *connect_db(const char *conninfo)
{
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *values[] = {conninfo, "pgturbo advise", NULL};
    return PQconnectdbParams(keys, values, 1);
}

static void print_connect_error(PGconn *conn)
{
    char msg[1024] = "cannot connect: out of memory";
    if (conn != NULL)
        pqmsg_describe(msg, sizeof(msg), "cannot connect", conn);
    fprintf(stderr, "pgturbo advise: %s\n", msg);
}

__attribute__((format(printf, 2, 3))) static void add_note(run_t *r, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char **bigger = realloc(r->set.notes, sizeof(char *) * (size_t)(r->set.n_notes + 1));
    if (bigger == NULL)
        return;
    r->set.notes = bigger;
    char *copy = strdup(buf);
    if (copy != NULL)
        r->set.notes[r->set.n_notes++] = copy;
}

/* Quoting through libpq, as candidates.h wants it (malloc'd copies). */
static char *pq_ident(void *ctx, const char *s)
{
    char *q = PQescapeIdentifier(ctx, s, strlen(s));
    char *copy = q == NULL ? NULL : strdup(q);
    PQfreemem(q);
    return copy;
}

static char *pq_literal(void *ctx, const char *s)
{
    char *q = PQescapeLiteral(ctx, s, strlen(s));
    char *copy = q == NULL ? NULL : strdup(q);
    PQfreemem(q);
    return copy;
}

/* Plain quoting for comparisons with pg_get_indexdef(), never sent to the server. */
static char *plain_quote(const char *s, char q)
{
    size_t n = strlen(s);
    char *out = malloc(2 * n + 3);
    if (out == NULL)
        return NULL;
    size_t k = 0;
    out[k++] = q;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == q)
            out[k++] = q;
        out[k++] = s[i];
    }
    out[k++] = q;
    out[k] = '\0';
    return out;
}

static char *plain_ident(void *ctx, const char *s)
{
    return plain_quote(s, '"');
}

static char *plain_literal(void *ctx, const char *s)
{
    return plain_quote(s, '\'');
}

static const cand_quoting_t plain_quoting = {plain_ident, plain_literal, NULL};

static bool is_system_schema(const char *schema)
{
    return strcmp(schema, "pg_catalog") == 0 || strcmp(schema, "information_schema") == 0 ||
           strncmp(schema, "pg_toast", 8) == 0 || strncmp(schema, "pg_temp", 7) == 0 ||
           strcmp(schema, "pgturbo") == 0;
}

static bool is_advisable_table(const table_info_t *t)
{
    return t != NULL && (t->relkind == 'r' || t->relkind == 'm') && !is_system_schema(t->schema);
}

/* ---- the workload's queries, analyzed ---- */

static bool catalog_has_column(void *ctx, const char *schema, const char *table, const char *column)
{
    run_t *r = ctx;
    const table_info_t *t;
    char err[512];
    if (tableinfo_get(r->tables, schema, table, &t, err, sizeof(err)) != 0) {
        if (r->catalog_failed++ == 0)
            snprintf(r->err, sizeof(r->err), "%s", err);
        return false;
    }
    return t != NULL && tableinfo_column(t, column) != NULL;
}

/*
 * Analyzes every query of the workload: its sample when the sample parses (as prepared, when
 * the daemon saw its values bound), else the text of pg_stat_statements; costs are then those
 * of the sample with its values. Keeps the queries that read or write at least one table
 * advise may index (not the catalogs, not advise's own queries).
 */
static int analyze_queries(run_t *r)
{
    const workload_t *w = &r->workload;
    cand_catalog_t catalog = {catalog_has_column, r};
    r->set.queries = calloc((size_t)(w->n > 0 ? w->n : 1), sizeof(*r->set.queries));
    r->qs = calloc((size_t)(w->n > 0 ? w->n : 1), sizeof(*r->qs));
    if (r->set.queries == NULL || r->qs == NULL) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        return -1;
    }
    for (int i = 0; i < w->n; i++) {
        const workload_query_t *wq = &w->queries[i];
        int k = r->set.n_queries;
        advice_query_t *q = &r->set.queries[k];
        query_state_t *qs = &r->qs[k];
        memset(q, 0, sizeof(*q));
        memset(qs, 0, sizeof(*qs));
        q->wq = wq;
        int rc = 1;
        if (wq->sample != NULL) {
            /* Bound values are parameters, not constants of the query's shape. */
            const char *shape = wq->prepared != NULL ? wq->prepared : wq->sample;
            rc = candidates_analyze(shape, &catalog, &qs->analysis);
            if (rc == 0) {
                q->text = wq->sample;
                q->sampled = true;
            } else {
                cand_analysis_free(&qs->analysis);
            }
        }
        if (rc != 0) {
            rc = candidates_analyze(wq->text, &catalog, &qs->analysis);
            q->text = wq->text;
        }
        if (rc < 0 || r->catalog_failed > 0) {
            if (r->catalog_failed == 0)
                snprintf(r->err, sizeof(r->err), "out of memory");
            cand_analysis_free(&qs->analysis);
            return -1;
        }
        bool keep = false;
        qs->refs = calloc((size_t)(qs->analysis.n_tables > 0 ? qs->analysis.n_tables : 1),
                          sizeof(*qs->refs));
        if (qs->refs == NULL) {
            snprintf(r->err, sizeof(r->err), "out of memory");
            cand_analysis_free(&qs->analysis);
            return -1;
        }
        for (int t = 0; t < qs->analysis.n_tables; t++) {
            const cand_table_t *ct = &qs->analysis.tables[t];
            const table_info_t *info;
            if (tableinfo_get(r->tables, ct->schema, ct->table, &info, r->err, sizeof(r->err)) !=
                0) {
                cand_analysis_free(&qs->analysis);
                free(qs->refs);
                return -1;
            }
            query_ref_t *ref = &qs->refs[qs->n_refs++];
            ref->table = info;
            snprintf(ref->schema, sizeof(ref->schema), "%s", ct->schema);
            snprintf(ref->name, sizeof(ref->name), "%s", ct->table);
            keep = keep || is_advisable_table(info);
        }
        if (!keep) {
            cand_analysis_free(&qs->analysis);
            free(qs->refs);
            continue;
        }
        r->set.n_queries++;
        r->set.n_sampled += q->sampled;
        r->set.total_calls += wq->calls;
        r->set.total_ms += wq->total_ms;
    }
    for (int k = 0; k < r->set.n_queries; k++) {
        advice_query_t *q = &r->set.queries[k];
        q->frequent =
            q->wq->calls >= ADVISE_FREQUENT_CALLS ||
            (r->set.total_ms > 0 && q->wq->total_ms >= ADVISE_FREQUENT_SHARE * r->set.total_ms);
    }
    return 0;
}

/* True when query k names table t. */
static bool query_uses_table(const run_t *r, int k, const table_info_t *t)
{
    const query_state_t *qs = &r->qs[k];
    for (int i = 0; i < qs->n_refs; i++)
        if (qs->refs[i].table == t)
            return true;
    return false;
}

/* ---- candidates: checked against the catalog, deduplicated, named ---- */

/* The normalized form of one key, as tableinfo_normalize() makes of pg_get_indexdef(). */
static void normalized_key(const cand_key_t *k, char *out, size_t outlen)
{
    candidate_t one = {.n_keys = 1};
    one.keys[0].expr = k->expr;
    char *def = candidate_definition(&one, &plain_quoting);
    tableinfo_normalize(def == NULL ? "" : def, out, outlen);
    free(def);
}

/* The normalized predicate of c ("" when it has none). */
static void normalized_predicate(const candidate_t *c, char *out, size_t outlen)
{
    out[0] = '\0';
    if (c->n_preds == 0)
        return;
    char *def = candidate_definition(c, &plain_quoting);
    const char *where = def == NULL ? NULL : strstr(def, " WHERE ");
    tableinfo_normalize(where == NULL ? "" : where + 7, out, outlen);
    free(def);
}

/* The existing index that serves c (same method, same leading columns in the same or the
 * opposite directions, no other predicate), or NULL. */
static const index_info_t *serving_index(const table_info_t *t, const candidate_t *c)
{
    char keys[CAND_MAX_KEYS][CAND_VALUE_LEN];
    char pred[CAND_VALUE_LEN * 2];
    for (int i = 0; i < c->n_keys; i++)
        normalized_key(&c->keys[i], keys[i], sizeof(keys[i]));
    normalized_predicate(c, pred, sizeof(pred));
    const char *method = c->method == CAND_GIN ? "gin" : "btree";
    for (int x = 0; x < t->n_indexes; x++) {
        const index_info_t *ix = &t->indexes[x];
        if (!ix->valid || strcmp(ix->method, method) != 0 || ix->n_keys < c->n_keys)
            continue;
        if (ix->predicate[0] != '\0' && strcmp(ix->predicate, pred) != 0)
            continue;
        bool same = true, same_dirs = true, flipped_dirs = true;
        for (int i = 0; i < c->n_keys && same; i++) {
            same = strcmp(ix->keys[i], keys[i]) == 0;
            same_dirs = same_dirs && ix->desc[i] == c->keys[i].desc;
            flipped_dirs = flipped_dirs && ix->desc[i] != c->keys[i].desc;
        }
        if (same && (c->method == CAND_GIN || same_dirs || flipped_dirs))
            return ix;
    }
    return NULL;
}

/* True when a and b have the same predicate and their keys agree on their common prefix
 * (same expressions, directions all the same or all reversed): one index would make the
 * other redundant. */
static bool keys_overlap(const candidate_t *a, const candidate_t *b)
{
    if (a->method != b->method || a->n_preds != b->n_preds)
        return false;
    for (int i = 0; i < a->n_preds; i++) {
        candidate_t x = {.n_preds = 1}, y = {.n_preds = 1};
        x.preds[0] = a->preds[i];
        y.preds[0] = b->preds[i];
        if (!candidate_equal(&x, &y))
            return false;
    }
    int n = a->n_keys < b->n_keys ? a->n_keys : b->n_keys;
    bool same_dirs = true, flipped_dirs = true;
    for (int i = 0; i < n; i++) {
        const cand_expr_t *x = &a->keys[i].expr, *y = &b->keys[i].expr;
        if (x->kind != y->kind || strcmp(x->column, y->column) != 0 ||
            strcmp(x->key, y->key) != 0 || strcmp(x->function, y->function) != 0 ||
            strcmp(x->op, y->op) != 0)
            return false;
        same_dirs = same_dirs && a->keys[i].desc == b->keys[i].desc;
        flipped_dirs = flipped_dirs && a->keys[i].desc != b->keys[i].desc;
    }
    return n > 0 && (a->method == CAND_GIN || same_dirs || flipped_dirs);
}

/* True when every column c names exists in t; fixes the GIN operator class for its type. */
static bool check_columns(const table_info_t *t, candidate_t *c)
{
    for (int i = 0; i < c->n_keys; i++) {
        const column_info_t *col = tableinfo_column(t, c->keys[i].expr.column);
        if (col == NULL)
            return false;
        if (c->method == CAND_GIN) {
            size_t len = strlen(col->type);
            if (strcmp(col->type, "jsonb") == 0)
                snprintf(c->keys[i].opclass, sizeof(c->keys[i].opclass), "jsonb_path_ops");
            else if (len > 2 && strcmp(col->type + len - 2, "[]") == 0)
                c->keys[i].opclass[0] = '\0';
            else
                return false; /* @> on ranges and the like wants GiST, not GIN */
        }
        if (c->keys[i].expr.kind == CAND_EXPR_JSON_FIELD && strcmp(col->type, "jsonb") != 0 &&
            strcmp(col->type, "json") != 0)
            return false;
    }
    for (int i = 0; i < c->n_include; i++)
        if (tableinfo_column(t, c->include[i]) == NULL)
            return false;
    for (int i = 0; i < c->n_preds; i++)
        if (tableinfo_column(t, c->preds[i].column) == NULL)
            return false;
    return true;
}

/* The share of t's rows that c's predicate keeps, as the planner estimates it from the
 * column statistics; 0 when unknown. Returns 0, or -1 when the connection failed. */
static int predicate_selectivity(run_t *r, const acand_t *a, double *share)
{
    *share = 0;
    if (a->table->reltuples <= 0)
        return 0;
    const char *where = strstr(a->definition, " WHERE ");
    char *table = tableinfo_quoted_name(r->conn, a->table);
    if (where == NULL || table == NULL) {
        free(table);
        return 0;
    }
    size_t len = strlen(where) + strlen(table) + 64;
    char *sql = malloc(len);
    if (sql == NULL) {
        free(table);
        snprintf(r->err, sizeof(r->err), "out of memory");
        return -1;
    }
    snprintf(sql, len, "EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY %s%s", table, where);
    free(table);
    PGresult *res = PQexec(r->conn, sql);
    free(sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        json_error_t error;
        json_t *root = json_loads(PQgetvalue(res, 0, 0), 0, &error);
        json_t *rows =
            json_object_get(json_object_get(json_array_get(root, 0), "Plan"), "Plan Rows");
        if (json_is_number(rows))
            *share = json_number_value(rows) / a->table->reltuples;
        json_decref(root);
    }
    PQclear(res);
    return PQstatus(r->conn) == CONNECTION_OK ? 0 : -1;
}

static void acand_free(acand_t *a)
{
    free(a->definition);
    free(a->create_sql);
    free(a->before);
    free(a->after);
    free(a->uses);
}

/* Adds candidate c of query k (on table t) unless an equal one is there. */
static int add_acand(run_t *r, const candidate_t *c, const table_info_t *t)
{
    candidate_t norm = *c;
    snprintf(norm.schema, sizeof(norm.schema), "%s", t->schema);
    snprintf(norm.table, sizeof(norm.table), "%s", t->name);
    if (!check_columns(t, &norm))
        return 0;
    for (int i = 0; i < r->n_cands; i++)
        if (candidate_equal(&r->cands[i].c, &norm))
            return 0;
    if (r->n_cands == r->cap_cands) {
        int cap = r->cap_cands ? r->cap_cands * 2 : 32;
        acand_t *bigger = realloc(r->cands, sizeof(*bigger) * (size_t)cap);
        if (bigger == NULL)
            goto oom;
        r->cands = bigger;
        r->cap_cands = cap;
    }
    acand_t *a = &r->cands[r->n_cands];
    memset(a, 0, sizeof(*a));
    a->c = norm;
    a->table = t;
    a->proof = norm.method == CAND_GIN ? ADVICE_PROOF_SAMPLE : ADVICE_PROOF_HYPOPG;
    candidate_name(&norm, a->name);
    cand_quoting_t quoting = {pq_ident, pq_literal, r->conn};
    a->definition = candidate_definition(&norm, &quoting);
    char *table = tableinfo_quoted_name(r->conn, t);
    a->before = calloc((size_t)r->set.n_queries + 1, sizeof(double));
    a->after = calloc((size_t)r->set.n_queries + 1, sizeof(double));
    a->uses = calloc((size_t)r->set.n_queries + 1, sizeof(bool));
    if (a->definition != NULL && table != NULL) {
        size_t len = strlen(a->definition) + strlen(table) + 32;
        a->create_sql = malloc(len);
        if (a->create_sql != NULL)
            snprintf(a->create_sql, len, "CREATE INDEX ON %s %s", table, a->definition);
    }
    free(table);
    if (a->create_sql == NULL || a->before == NULL || a->after == NULL || a->uses == NULL) {
        acand_free(a);
        goto oom;
    }
    r->n_cands++;
    return 0;
oom:
    snprintf(r->err, sizeof(r->err), "out of memory");
    return -1;
}

/* Gives a distinct name to candidates whose stable names collide (partial indexes with
 * other constants, or names cut to 63 bytes), and to those named like an existing index of
 * another definition: the name, cut, and a hash of the definition. */
static void resolve_name_clashes(run_t *r)
{
    for (int i = 0; i < r->n_cands; i++) {
        acand_t *a = &r->cands[i];
        bool clash = false;
        for (int j = 0; j < i && !clash; j++)
            clash = strcmp(r->cands[j].name, a->name) == 0;
        for (int x = 0; x < a->table->n_indexes && !clash; x++)
            clash = strcmp(a->table->indexes[x].name, a->name) == 0;
        if (!clash)
            continue;
        uint64_t h = sqlparse_hash(a->definition, strlen(a->definition));
        char base[CAND_NAME_LEN];
        snprintf(base, sizeof(base), "%s", a->name);
        snprintf(a->name, sizeof(a->name), "%.54s_%08x", base, (unsigned)(h ^ (h >> 32)));
    }
}

/*
 * True when a predicate of a compares a column of many distinct values with a constant
 * (user_id = 42): the constant is then most likely a value the application changes from call
 * to call, inlined by its driver or its code, and an index on that one value serves one call.
 */
static bool compares_many_valued_column(const acand_t *a)
{
    for (int i = 0; i < a->c.n_preds; i++) {
        const cand_pred_t *p = &a->c.preds[i];
        if (p->kind != CAND_PRED_EQUALS && p->kind != CAND_PRED_IN)
            continue;
        const column_info_t *col = tableinfo_column(a->table, p->column);
        if (col != NULL && tableinfo_distinct(a->table, col) > PARTIAL_MAX_DISTINCT)
            return true;
    }
    return false;
}

/* Collects the candidates of every query, keeping those the catalog allows and no existing
 * index serves, and partial ones only with a selective predicate on a column of few values. */
static int collect_candidates(run_t *r)
{
    int served = 0, unselective = 0, unadvisable = 0, many_valued = 0;
    for (int k = 0; k < r->set.n_queries; k++) {
        const cand_analysis_t *an = &r->qs[k].analysis;
        for (int i = 0; i < an->n_cands; i++) {
            const candidate_t *c = &an->cands[i];
            const table_info_t *t;
            if (tableinfo_get(r->tables, c->schema, c->table, &t, r->err, sizeof(r->err)) != 0)
                return -1;
            if (!is_advisable_table(t)) {
                if (t != NULL && t->relkind == 'p')
                    unadvisable++;
                continue;
            }
            /* A join column is indexed for its foreign key only. */
            if (c->reason == CAND_JOIN && !tableinfo_is_fk_column(t, c->keys[0].expr.column))
                continue;
            if (serving_index(t, c) != NULL) {
                served++;
                continue;
            }
            if (add_acand(r, c, t) != 0)
                return -1;
        }
    }
    for (int i = 0; i < r->n_cands; i++) {
        acand_t *a = &r->cands[i];
        if (a->c.n_preds == 0)
            continue;
        if (compares_many_valued_column(a)) {
            a->rejected = true;
            many_valued++;
            continue;
        }
        double share;
        if (predicate_selectivity(r, a, &share) != 0)
            return -1;
        if (share > PARTIAL_MAX_SELECTIVITY) {
            a->rejected = true;
            unselective++;
        }
    }
    resolve_name_clashes(r);
    if (served > 0)
        add_note(r,
                 "%d candidate%s already served by an existing index with the same leading "
                 "columns",
                 served, served == 1 ? " was" : "s were");
    if (unselective > 0)
        add_note(r,
                 "%d partial candidate%s dropped: the predicate keeps more than %.0f %% of "
                 "the rows",
                 unselective, unselective == 1 ? "" : "s", 100 * PARTIAL_MAX_SELECTIVITY);
    if (many_valued > 0)
        add_note(r,
                 "%d partial candidate%s dropped: the constant is compared with a column of more "
                 "than %d distinct values, so it is likely a value that changes from call to call",
                 many_valued, many_valued == 1 ? "" : "s", PARTIAL_MAX_DISTINCT);
    if (unadvisable > 0)
        add_note(r,
                 "%d candidate%s on partitioned tables left out: advise does not index "
                 "partitioned tables yet",
                 unadvisable, unadvisable == 1 ? "" : "s");
    return 0;
}

/* ---- proof and choice ---- */

/* Costs the queries advise may help with no new index. Returns 0, or -1. */
static int cost_baseline(run_t *r)
{
    for (int k = 0; k < r->set.n_queries; k++) {
        bool relevant = false;
        for (int i = 0; i < r->n_cands && !relevant; i++)
            relevant = query_uses_table(r, k, r->cands[i].table);
        if (!relevant)
            continue;
        advice_query_t *q = &r->set.queries[k];
        bool uses;
        char err[512];
        int rc = proof_cost(r->conn, q->text, NULL, &q->cost, &uses, err, sizeof(err));
        if (rc < 0) {
            snprintf(r->err, sizeof(r->err), "%s", err);
            return -1;
        }
        q->costed = rc == 0 && q->cost > 0;
        r->qs[k].base = q->cost;
        if (!q->costed)
            r->n_uncostable++;
    }
    return 0;
}

/* The benefit, charge and qualification of a valued candidate against the current base. */
static void score(run_t *r, acand_t *a)
{
    a->benefit = a->time_saved_ms = 0;
    a->qualifies = false;
    for (int k = 0; k < r->set.n_queries; k++) {
        const advice_query_t *q = &r->set.queries[k];
        double base = r->qs[k].base;
        if (!q->costed || !a->uses[k] || !query_uses_table(r, k, a->table))
            continue;
        double saved = base - a->after[k];
        if (saved <= HELP_MIN_SHARE * base)
            continue;
        a->benefit += q->wq->calls * saved;
        a->time_saved_ms += q->wq->total_ms * saved / q->cost;
        if (q->frequent && 100.0 * saved / base >= r->opts->min_improvement)
            a->qualifies = true;
    }
    double per_write = a->c.method == CAND_GIN ? WRITE_COST_GIN : WRITE_COST_BTREE;
    a->charge = a->table->writes * per_write + a->size_bytes / 8192.0 * SIZE_COST_PER_PAGE;
}

/* The sample of table t, made on first use; NULL when it cannot be made. */
static table_sample_t *sample_of(run_t *r, const table_info_t *t, int *rc)
{
    *rc = 0;
    for (int i = 0; i < r->n_samples; i++)
        if (r->samples[i].table == t)
            return r->samples[i].failed ? NULL : &r->samples[i];
    table_sample_t *bigger = realloc(r->samples, sizeof(*bigger) * (size_t)(r->n_samples + 1));
    char *name = tableinfo_quoted_name(r->conn, t);
    if (bigger == NULL || name == NULL) {
        if (bigger != NULL)
            r->samples = bigger;
        free(name);
        snprintf(r->err, sizeof(r->err), "out of memory");
        *rc = -1;
        return NULL;
    }
    r->samples = bigger;
    table_sample_t *s = &r->samples[r->n_samples++];
    memset(s, 0, sizeof(*s));
    s->table = t;
    char err[512];
    if (proof_sample_create(r->conn, name, t->oid, t->reltuples, &s->sample, err, sizeof(err)) !=
        0) {
        s->failed = true;
        if (PQstatus(r->conn) != CONNECTION_OK) {
            snprintf(r->err, sizeof(r->err), "%s", err);
            *rc = -1;
        } else {
            add_note(r, "no sample of %s.%s for the proof of GIN indexes: %s", t->schema, t->name,
                     err);
        }
    }
    free(name);
    return s->failed ? NULL : s;
}

/* Query k pointed at the sample s of table t; NULL when it cannot be. */
static char *retarget(run_t *r, int k, const table_info_t *t, const proof_sample_t *s)
{
    const query_state_t *qs = &r->qs[k];
    char *text = strdup(r->set.queries[k].text);
    for (int i = 0; text != NULL && i < qs->n_refs; i++) {
        if (qs->refs[i].table != t)
            continue;
        char *next = retarget_table(text, qs->refs[i].schema, qs->refs[i].name, s->qualified);
        free(text);
        text = next;
    }
    return text;
}

/* Values candidate a with a real index on a sample copy of its table. */
static int value_on_sample(run_t *r, acand_t *a)
{
    int rc;
    table_sample_t *ts = sample_of(r, a->table, &rc);
    a->valued = true;
    if (ts == NULL) {
        a->rejected = true;
        return rc;
    }
    double before[1024];
    int n = r->set.n_queries;
    double *sample_before = n <= 1024 ? before : malloc(sizeof(double) * (size_t)n);
    if (sample_before == NULL) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        return -1;
    }
    char err[512];
    int result = 0;
    for (int k = 0; k < n; k++) {
        sample_before[k] = -1;
        if (!r->set.queries[k].costed || !query_uses_table(r, k, a->table))
            continue;
        char *text = retarget(r, k, a->table, &ts->sample);
        bool uses;
        if (text != NULL && (rc = proof_cost(r->conn, text, NULL, &sample_before[k], &uses, err,
                                             sizeof(err))) < 0) {
            free(text);
            result = -1;
            goto done;
        }
        if (text == NULL || rc != 0)
            sample_before[k] = -1;
        free(text);
    }
    double bytes;
    rc = proof_sample_index(r->conn, &ts->sample, a->definition, &bytes, err, sizeof(err));
    if (rc != 0) {
        proof_sample_index_drop(r->conn);
        if (rc < 0) {
            result = -1;
            goto done;
        }
        a->rejected = true;
        goto done;
    }
    a->sample_rows = ts->sample.rows;
    a->size_bytes = ts->sample.rows > 0 && a->table->reltuples > ts->sample.rows
                        ? bytes * a->table->reltuples / ts->sample.rows
                        : bytes;
    for (int k = 0; k < n; k++) {
        if (sample_before[k] <= 0)
            continue;
        char *text = retarget(r, k, a->table, &ts->sample);
        double after;
        bool uses;
        rc = text == NULL
                 ? 1
                 : proof_cost(r->conn, text, PROOF_SAMPLE_INDEX, &after, &uses, err, sizeof(err));
        free(text);
        if (rc < 0) {
            proof_sample_index_drop(r->conn);
            result = -1;
            goto done;
        }
        if (rc == 0 && uses) {
            a->uses[k] = true;
            a->after[k] = r->set.queries[k].cost * after / sample_before[k];
        }
    }
    proof_sample_index_drop(r->conn);
done:
    if (result < 0)
        snprintf(r->err, sizeof(r->err), "%s", err);
    if (sample_before != before)
        free(sample_before);
    return result;
}

/* Values candidate a with a hypothetical index, the chosen ones being in place. */
static int value_hypothetical(run_t *r, acand_t *a)
{
    unsigned oid;
    char name[PROOF_INDEX_NAME_LEN], err[512];
    int rc = proof_hypo_create(r->conn, a->create_sql, &oid, name, err, sizeof(err));
    if (rc < 0)
        goto fail;
    if (rc > 0) {
        /* HypoPG cannot model it: a real index on a sample can. */
        a->proof = ADVICE_PROOF_SAMPLE;
        return value_on_sample(r, a);
    }
    if (proof_hypo_size(r->conn, oid, &a->size_bytes, err, sizeof(err)) != 0)
        goto fail;
    for (int k = 0; k < r->set.n_queries; k++) {
        a->uses[k] = false;
        if (!r->set.queries[k].costed || !query_uses_table(r, k, a->table))
            continue;
        bool uses;
        rc = proof_cost(r->conn, r->set.queries[k].text, name, &a->after[k], &uses, err,
                        sizeof(err));
        if (rc < 0)
            goto fail;
        a->uses[k] = rc == 0 && uses;
    }
    if (proof_hypo_drop(r->conn, oid, err, sizeof(err)) != 0)
        goto fail;
    a->valued = true;
    return 0;
fail:
    snprintf(r->err, sizeof(r->err), "%s", err);
    return -1;
}

/* Starts a round: no hypothetical index but the chosen ones. */
static int reset_hypothetical(run_t *r)
{
    char err[512], name[PROOF_INDEX_NAME_LEN];
    unsigned oid;
    if (proof_hypo_drop(r->conn, 0, err, sizeof(err)) != 0)
        goto fail;
    for (int i = 0; i < r->n_cands; i++) {
        const acand_t *a = &r->cands[i];
        if (a->chosen && a->proof == ADVICE_PROOF_HYPOPG &&
            proof_hypo_create(r->conn, a->create_sql, &oid, name, err, sizeof(err)) != 0)
            goto fail;
    }
    return 0;
fail:
    snprintf(r->err, sizeof(r->err), "%s", err);
    return -1;
}

/* True when some query on both tables changes cost with both candidates. */
static bool share_queries(const run_t *r, const acand_t *a, const acand_t *b)
{
    if (a->table == b->table)
        return true;
    for (int k = 0; k < r->set.n_queries; k++)
        if (query_uses_table(r, k, a->table) && query_uses_table(r, k, b->table))
            return true;
    return false;
}

/* Records chosen candidate a as advice, with the queries it helps and their costs. */
static int record_advice(run_t *r, acand_t *a)
{
    advice_t *bigger = realloc(r->set.advice, sizeof(*bigger) * (size_t)(r->set.n_advice + 1));
    if (bigger == NULL)
        goto oom;
    r->set.advice = bigger;
    advice_t *adv = &r->set.advice[r->set.n_advice];
    memset(adv, 0, sizeof(*adv));
    snprintf(adv->name, sizeof(adv->name), "%s", a->name);
    adv->table = a->table;
    adv->cand = a->c;
    adv->proof = a->proof;
    adv->sample_rows = a->sample_rows;
    adv->size_bytes = a->size_bytes;
    adv->time_saved_ms = a->time_saved_ms;
    adv->benefit = a->benefit;
    adv->charge = a->charge;
    adv->definition = strdup(a->definition);
    adv->helps = calloc((size_t)r->set.n_queries + 1, sizeof(*adv->helps));
    char *table = tableinfo_quoted_name(r->conn, a->table);
    char *schema = pq_ident(r->conn, a->table->schema);
    char *name = pq_ident(r->conn, a->name);
    if (adv->definition != NULL && table != NULL && schema != NULL && name != NULL) {
        size_t len = strlen(table) + strlen(name) + strlen(adv->definition) + 64;
        adv->up_sql = malloc(len);
        if (adv->up_sql != NULL)
            snprintf(adv->up_sql, len, "CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s %s", name,
                     table, adv->definition);
        len = strlen(schema) + strlen(name) + 64;
        adv->down_sql = malloc(len);
        if (adv->down_sql != NULL)
            snprintf(adv->down_sql, len, "DROP INDEX CONCURRENTLY IF EXISTS %s.%s", schema, name);
    }
    free(table);
    free(schema);
    free(name);
    r->set.n_advice++;
    if (adv->up_sql == NULL || adv->down_sql == NULL || adv->helps == NULL)
        goto oom;
    for (int k = 0; k < r->set.n_queries; k++) {
        advice_query_t *q = &r->set.queries[k];
        double base = a->before[k];
        if (!q->costed || !a->uses[k] || !query_uses_table(r, k, a->table) ||
            base - a->after[k] <= HELP_MIN_SHARE * base)
            continue;
        advice_help_t *h = &adv->helps[adv->n_helps++];
        h->query = k;
        h->before = base;
        h->after = a->after[k];
        q->helped = true;
    }
    return 0;
oom:
    snprintf(r->err, sizeof(r->err), "out of memory");
    return -1;
}

/* The benefit, charge and qualification of a from its before[] and after[] costs. */
static void score_marginal(run_t *r, acand_t *a)
{
    double *saved_base = malloc(sizeof(double) * (size_t)(r->set.n_queries + 1));
    if (saved_base == NULL) {
        a->qualifies = false;
        return;
    }
    for (int k = 0; k < r->set.n_queries; k++) {
        saved_base[k] = r->qs[k].base;
        r->qs[k].base = a->before[k];
    }
    score(r, a);
    for (int k = 0; k < r->set.n_queries; k++)
        r->qs[k].base = saved_base[k];
    free(saved_base);
}

/*
 * Costs the queries on chosen index x's table without x and with it, every other chosen
 * index in place: what x alone brings. Returns 0, or -1.
 */
static int value_marginal(run_t *r, acand_t *x)
{
    char err[512] = "", name[PROOF_INDEX_NAME_LEN];
    unsigned oid;
    x->chosen = false;
    int rc = reset_hypothetical(r);
    x->chosen = true;
    if (rc != 0)
        return -1;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 &&
            proof_hypo_create(r->conn, x->create_sql, &oid, name, err, sizeof(err)) != 0)
            goto fail;
        for (int k = 0; k < r->set.n_queries; k++) {
            if (!r->set.queries[k].costed || !query_uses_table(r, k, x->table))
                continue;
            bool uses;
            double cost;
            rc = proof_cost(r->conn, r->set.queries[k].text, pass == 1 ? name : NULL, &cost, &uses,
                            err, sizeof(err));
            if (rc < 0)
                goto fail;
            if (pass == 0) {
                x->before[k] = rc == 0 ? cost : 0;
            } else {
                x->after[k] = rc == 0 ? cost : x->before[k];
                x->uses[k] = rc == 0 && uses;
            }
        }
    }
    return 0;
fail:
    snprintf(r->err, sizeof(r->err), "%s", err);
    return -1;
}

/*
 * Drops chosen indexes that no longer pay for themselves with the others in place (a
 * b-tree chosen early for two queries, each of which a partial index chosen later serves
 * better), until every one does; then records the advice with what each brings alone.
 */
static int finalize(run_t *r)
{
    for (bool dropped = true; dropped;) {
        dropped = false;
        for (int i = 0; i < r->n_cands && !dropped; i++) {
            acand_t *x = &r->cands[i];
            if (!x->chosen || x->proof != ADVICE_PROOF_HYPOPG)
                continue;
            if (value_marginal(r, x) != 0)
                return -1;
            score_marginal(r, x);
            if (!x->qualifies || x->benefit - x->charge <= 0) {
                x->chosen = false;
                dropped = true;
            }
        }
    }
    for (int i = 0; i < r->n_cands; i++) {
        acand_t *x = &r->cands[i];
        if (x->chosen && record_advice(r, x) != 0)
            return -1;
    }
    return 0;
}

/* The greedy choice; see the top of the file. */
static int choose(run_t *r)
{
    int n_chosen = 0;
    for (int round = 0; round < ADVISE_MAX_ADVICE; round++) {
        if (reset_hypothetical(r) != 0)
            return -1;
        acand_t *best = NULL;
        for (int i = 0; i < r->n_cands; i++) {
            acand_t *a = &r->cands[i];
            if (a->rejected || a->chosen)
                continue;
            if (!a->valued) {
                int rc = a->proof == ADVICE_PROOF_SAMPLE ? value_on_sample(r, a)
                                                         : value_hypothetical(r, a);
                if (rc != 0)
                    return -1;
                if (a->rejected)
                    continue;
            }
            score(r, a);
            a->charged_out = a->qualifies && a->benefit - a->charge <= 0;
            if (!a->qualifies || a->benefit - a->charge <= 0)
                continue;
            double net = a->benefit - a->charge;
            if (best == NULL || net > best->benefit - best->charge ||
                (net == best->benefit - best->charge && strcmp(a->name, best->name) < 0))
                best = a;
        }
        if (best == NULL)
            break;
        best->chosen = true;
        n_chosen++;
        for (int k = 0; k < r->set.n_queries; k++) {
            best->before[k] = r->qs[k].base;
            if (!best->uses[k] || !query_uses_table(r, k, best->table))
                continue;
            if (best->proof == ADVICE_PROOF_HYPOPG || best->after[k] < r->qs[k].base)
                r->qs[k].base = best->after[k];
        }
        for (int i = 0; i < r->n_cands; i++) {
            acand_t *a = &r->cands[i];
            if (a->chosen || a->rejected)
                continue;
            if (a->table == best->table && keys_overlap(&a->c, &best->c))
                a->rejected = true;
            else if (a->proof == ADVICE_PROOF_HYPOPG && share_queries(r, a, best))
                a->valued = false;
        }
    }
    return n_chosen > 0 ? finalize(r) : 0;
}

/* Hints for the queries no advised index helps. Returns 0, or -1. */
static int make_hints(run_t *r)
{
    for (int k = 0; k < r->set.n_queries; k++) {
        if (r->set.queries[k].helped)
            continue;
        const cand_analysis_t *an = &r->qs[k].analysis;
        for (int i = 0; i < an->n_hints; i++) {
            const cand_hint_t *fact = &an->hints[i];
            const table_info_t *t;
            if (tableinfo_get(r->tables, fact->schema, fact->table, &t, r->err, sizeof(r->err)) !=
                0)
                return -1;
            advice_hint_t h = {.query = k, .kind = fact->kind};
            if (!is_advisable_table(t) || !hints_message(fact, t, h.message, sizeof(h.message)))
                continue;
            bool seen = false;
            for (int j = 0; j < r->set.n_hints && !seen; j++)
                seen =
                    r->set.hints[j].query == k && strcmp(r->set.hints[j].message, h.message) == 0;
            if (seen)
                continue;
            advice_hint_t *bigger =
                realloc(r->set.hints, sizeof(*bigger) * (size_t)(r->set.n_hints + 1));
            if (bigger == NULL) {
                snprintf(r->err, sizeof(r->err), "out of memory");
                return -1;
            }
            r->set.hints = bigger;
            r->set.hints[r->set.n_hints++] = h;
        }
    }
    return 0;
}

static int compare_advice(const void *x, const void *y)
{
    const advice_t *a = x, *b = y;
    if (a->time_saved_ms != b->time_saved_ms)
        return a->time_saved_ms > b->time_saved_ms ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* ---- the run ---- */

/* NOTICEs ("does not exist, skipping") are not for the user of advise. */
static void ignore_notice(void *arg, const char *message)
{
}

void advice_set_free(advice_set_t *s)
{
    for (int i = 0; i < s->n_advice; i++) {
        free(s->advice[i].definition);
        free(s->advice[i].up_sql);
        free(s->advice[i].down_sql);
        free(s->advice[i].helps);
    }
    free(s->advice);
    free(s->hints);
    for (int i = 0; i < s->n_notes; i++)
        free(s->notes[i]);
    free(s->notes);
    free(s->queries);
    memset(s, 0, sizeof(*s));
}

static void run_free(run_t *r)
{
    for (int i = 0; i < r->set.n_queries; i++) {
        cand_analysis_free(&r->qs[i].analysis);
        free(r->qs[i].refs);
    }
    free(r->qs);
    for (int i = 0; i < r->n_cands; i++)
        acand_free(&r->cands[i]);
    free(r->cands);
    for (int i = 0; i < r->n_samples; i++)
        if (!r->samples[i].failed && PQstatus(r->conn) == CONNECTION_OK)
            proof_sample_drop(r->conn, &r->samples[i].sample);
    free(r->samples);
    advice_set_free(&r->set);
    tableinfo_cache_free(r->tables);
    workload_free(&r->workload);
}

/* Proves the candidates and chooses among them: from HypoPG's setup to the advice. */
static advise_status_t prove_and_choose(run_t *r)
{
    bool created = false;
    advise_status_t status = proof_hypopg_begin(r->conn, &created, r->err, sizeof(r->err));
    if (status != ADVISE_OK)
        return status;
    status = ADVISE_FAIL_DB;
    if (proof_session_begin(r->conn, r->err, sizeof(r->err)) != 0 || cost_baseline(r) != 0 ||
        choose(r) != 0)
        goto done;
    status = ADVISE_OK;
done:
    proof_hypopg_end(r->conn, created);
    return status;
}

/* Prints the advice, writes its migrations and applies them, as the options say. */
static advise_status_t deliver(run_t *r)
{
    const advise_options_t *opts = r->opts;
    /* With --json, stdout holds the JSON alone: what migrations do goes to stderr. */
    FILE *progress = opts->json ? stderr : stdout;
    char(*versions)[MIGRATION_VERSION_LEN] = NULL;
    const char **version_ptrs = NULL;
    advise_status_t status = ADVISE_OK;
    if (opts->migrations_dir != NULL) {
        versions = calloc((size_t)r->set.n_advice + 1, MIGRATION_VERSION_LEN);
        version_ptrs = calloc((size_t)r->set.n_advice + 1, sizeof(char *));
        if (versions == NULL || version_ptrs == NULL) {
            snprintf(r->err, sizeof(r->err), "out of memory");
            status = ADVISE_FAIL_DB;
            goto done;
        }
        for (int i = 0; i < r->set.n_advice; i++)
            version_ptrs[i] = versions[i];
    }
    /* JSON names the versions, so the files are written first; a table is printed before
     * what is written. */
    if (opts->json && opts->migrations_dir != NULL) {
        status = migrations_write(r->conn, opts->migrations_dir, &r->set, versions, progress,
                                  r->err, sizeof(r->err));
        if (status != ADVISE_OK)
            goto done;
    }
    if (opts->json)
        advice_print_json(&r->set, version_ptrs);
    else
        advice_print_text(&r->set);
    if (!opts->json && opts->migrations_dir != NULL) {
        if (r->set.n_advice > 0)
            printf("\n");
        status = migrations_write(r->conn, opts->migrations_dir, &r->set, versions, progress,
                                  r->err, sizeof(r->err));
        if (status != ADVISE_OK)
            goto done;
    }
    if (opts->apply) {
        if (!opts->json)
            printf("\n");
        status = opts->migrations_dir != NULL
                     ? migrations_apply_dir(r->conn, opts->migrations_dir, progress, r->err,
                                            sizeof(r->err))
                     : migrations_apply_advice(r->conn, &r->set, progress, r->err, sizeof(r->err));
    }
done:
    free(versions);
    free(version_ptrs);
    return status;
}

/* --rollback: the down migration of one applied version, and nothing else. */
static advise_status_t rollback(PGconn *conn, const advise_options_t *opts)
{
    char err[1024];
    advise_status_t status = migrations_rollback(conn, opts->rollback_version, opts->migrations_dir,
                                                 stdout, err, sizeof(err));
    if (status != ADVISE_OK)
        fprintf(stderr, "pgturbo advise: %s\n", err);
    return status;
}

advise_status_t advise_run(const advise_options_t *opts)
{
    run_t r = {.opts = opts};
    advise_status_t status = ADVISE_FAIL_DB;
    r.conn = connect_db(opts->conninfo);
    if (r.conn == NULL || PQstatus(r.conn) != CONNECTION_OK) {
        print_connect_error(r.conn);
        PQfinish(r.conn);
        return ADVISE_FAIL_DB;
    }
    PQsetNoticeProcessor(r.conn, ignore_notice, NULL);
    /* advise's own queries stay out of the statistics where the role may say so. */
    PQclear(PQexec(r.conn, "SET pg_stat_statements.track = 'none'"));
    if (opts->rollback_version != NULL) {
        status = rollback(r.conn, opts);
        PQfinish(r.conn);
        return status;
    }
    r.set.database = PQdb(r.conn);
    r.set.source = opts->source == ADVISE_SOURCE_DAEMON ? "daemon" : "pg_stat_statements";
    r.set.min_improvement = opts->min_improvement;
    r.set.workload = &r.workload;
    r.tables = tableinfo_cache_create(r.conn);
    if (r.tables == NULL) {
        snprintf(r.err, sizeof(r.err), "out of memory");
        goto fail;
    }
    status = opts->source == ADVISE_SOURCE_DAEMON
                 ? daemon_workload_load(opts->api, opts->token, PQdb(r.conn), &r.workload, r.err,
                                        sizeof(r.err))
                 : workload_load(r.conn, &r.workload, r.err, sizeof(r.err));
    if (status != ADVISE_OK)
        goto fail;
    status = ADVISE_FAIL_DB;
    if (analyze_queries(&r) != 0 || collect_candidates(&r) != 0)
        goto fail;
    int live = 0;
    for (int i = 0; i < r.n_cands; i++)
        live += !r.cands[i].rejected;
    r.set.n_candidates = live;
    if (live > 0) {
        status = prove_and_choose(&r);
        if (status != ADVISE_OK)
            goto fail;
    }
    const acand_t *heaviest = NULL;
    int charged_out = 0;
    for (int i = 0; i < r.n_cands; i++) {
        const acand_t *a = &r.cands[i];
        if (a->chosen || a->rejected || !a->charged_out)
            continue;
        charged_out++;
        if (heaviest == NULL || a->benefit > heaviest->benefit)
            heaviest = a;
    }
    if (heaviest != NULL)
        add_note(&r,
                 "%d candidate%s cut a frequent query's cost enough but would cost more to keep "
                 "up than %s save%s, e.g. %s: calls x cost saved %.0f, charge %.0f for %.0f "
                 "writes to %s.%s since the statistics reset and %.0f pages",
                 charged_out, charged_out == 1 ? "" : "s", charged_out == 1 ? "it" : "they",
                 charged_out == 1 ? "s" : "", heaviest->name, heaviest->benefit, heaviest->charge,
                 heaviest->table->writes, heaviest->table->schema, heaviest->table->name,
                 heaviest->size_bytes / 8192);
    if (r.n_uncostable > 0)
        add_note(&r,
                 "%d quer%s could not be planned from their text (e.g. parameter types "
                 "that cannot be inferred) and were left out",
                 r.n_uncostable, r.n_uncostable == 1 ? "y" : "ies");
    if (make_hints(&r) != 0) {
        status = ADVISE_FAIL_DB;
        goto fail;
    }
    if (r.set.n_advice > 1)
        qsort(r.set.advice, (size_t)r.set.n_advice, sizeof(*r.set.advice), compare_advice);
    status = deliver(&r);
    if (status != ADVISE_OK)
        goto fail;
    run_free(&r);
    PQfinish(r.conn);
    return status;
fail:
    fprintf(stderr, "pgturbo advise: %s\n", r.err);
    run_free(&r);
    PQfinish(r.conn);
    return status;
}
