/*
 * workload.c
 *    The workload of `pgturbo advise` from pg_stat_statements, with real texts sampled from
 *    pg_stat_activity; see workload.h.
 */
#include "workload.h"

#include "pqmsg.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SQLSTATEs met here. */
#define SQLSTATE_INSUFFICIENT_PRIVILEGE "42501"
#define SQLSTATE_UNDEFINED_FILE         "58P01" /* the extension's control file is missing */
#define SQLSTATE_NOT_IN_PREREQUISITE    "55000" /* "must be loaded via shared_preload_libraries" */

static const char *sqlstate_of(const PGresult *res)
{
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return s == NULL ? "" : s;
}

/* Creates pg_stat_statements in the database unless it is there. */
static advise_status_t ensure_extension(PGconn *conn, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, "SELECT 1 FROM pg_extension WHERE extname = "
                                 "'pg_stat_statements'");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pqmsg_describe(err, errlen, "cannot read pg_extension", conn);
        PQclear(res);
        return ADVISE_FAIL_DB;
    }
    bool present = PQntuples(res) > 0;
    PQclear(res);
    if (present)
        return ADVISE_OK;
    res = PQexec(conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    advise_status_t status = ADVISE_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = sqlstate_of(res);
        if (strcmp(state, SQLSTATE_INSUFFICIENT_PRIVILEGE) == 0) {
            snprintf(err, errlen,
                     "pg_stat_statements is not installed in database \"%s\" and this role may "
                     "not create it: as a superuser, run CREATE EXTENSION pg_stat_statements; in "
                     "that database",
                     PQdb(conn));
            status = ADVISE_FAIL_EXTENSION;
        } else if (strcmp(state, SQLSTATE_UNDEFINED_FILE) == 0) {
            snprintf(err, errlen,
                     "pg_stat_statements is not installed on the server: install PostgreSQL's "
                     "contrib modules (Debian: postgresql-contrib), add pg_stat_statements to "
                     "shared_preload_libraries and restart PostgreSQL");
            status = ADVISE_FAIL_EXTENSION;
        } else {
            pqmsg_describe(err, errlen, "cannot create extension pg_stat_statements", conn);
            status = ADVISE_FAIL_DB;
        }
    }
    PQclear(res);
    return status;
}

#define STRINGIFY(x) #x
#define TEXT_OF(x)   STRINGIFY(x)
#define LIMIT_CLAUSE " LIMIT " TEXT_OF(WORKLOAD_MAX_QUERIES)

/* The statistics query for the server's version: total_exec_time since 13, toplevel since
 * 14 (statements run inside functions are left out: their callers are in the workload). */
static const char *statements_sql(int server_version)
{
    if (server_version >= 140000)
        return "SELECT s.queryid, s.query, s.calls, s.total_exec_time, s.rows "
               "FROM pg_stat_statements s "
               "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
               "AND s.toplevel AND s.calls > 0 "
               "ORDER BY s.total_exec_time DESC, s.queryid" LIMIT_CLAUSE;
    if (server_version >= 130000)
        return "SELECT s.queryid, s.query, s.calls, s.total_exec_time, s.rows "
               "FROM pg_stat_statements s "
               "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
               "AND s.calls > 0 "
               "ORDER BY s.total_exec_time DESC, s.queryid" LIMIT_CLAUSE;
    return "SELECT s.queryid, s.query, s.calls, s.total_time, s.rows "
           "FROM pg_stat_statements s "
           "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
           "AND s.calls > 0 "
           "ORDER BY s.total_time DESC, s.queryid" LIMIT_CLAUSE;
}

typedef struct activity_row {
    int64_t queryid;
    int row;
} activity_row_t;

static int compare_activity(const void *a, const void *b)
{
    int64_t x = ((const activity_row_t *)a)->queryid, y = ((const activity_row_t *)b)->queryid;
    return x < y ? -1 : x > y;
}

/* Attaches the last query of other sessions of this database as samples, by query_id. */
static advise_status_t load_samples(PGconn *conn, workload_t *w, char *err, size_t errlen)
{
    if (PQserverVersion(conn) < 140000 || w->n == 0)
        return ADVISE_OK;
    PGresult *res = PQexec(conn, "SELECT query_id, query FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                                 "AND query_id IS NOT NULL AND query_id <> 0 "
                                 "AND backend_type = 'client backend'");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pqmsg_describe(err, errlen, "cannot read pg_stat_activity", conn);
        PQclear(res);
        return ADVISE_FAIL_DB;
    }
    int n = PQntuples(res);
    activity_row_t *rows = malloc(sizeof(*rows) * (size_t)(n > 0 ? n : 1));
    if (rows == NULL) {
        PQclear(res);
        snprintf(err, errlen, "out of memory");
        return ADVISE_FAIL_DB;
    }
    for (int i = 0; i < n; i++) {
        rows[i].queryid = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        rows[i].row = i;
    }
    qsort(rows, (size_t)n, sizeof(*rows), compare_activity);
    for (int i = 0; i < w->n; i++) {
        activity_row_t key = {.queryid = w->queries[i].queryid};
        activity_row_t *hit = bsearch(&key, rows, (size_t)n, sizeof(*rows), compare_activity);
        if (hit == NULL)
            continue;
        w->queries[i].sample = strdup(PQgetvalue(res, hit->row, 1));
        if (w->queries[i].sample != NULL)
            w->n_samples++;
    }
    free(rows);
    PQclear(res);
    return ADVISE_OK;
}

/* Type names that may start a typed literal (type 'constant'), lower case. */
static const char *const literal_types[] = {
    "bigint",    "bit",         "bool",    "boolean", "bytea",    "char", "cidr",
    "date",      "decimal",     "float",   "float4",  "float8",   "inet", "int",
    "int2",      "int4",        "int8",    "integer", "interval", "json", "jsonb",
    "macaddr",   "money",       "numeric", "real",    "smallint", "text", "time",
    "timestamp", "timestamptz", "timetz",  "uuid",    "varchar",  "xml",
};

static bool is_literal_type(const char *word, size_t len)
{
    for (size_t i = 0; i < sizeof(literal_types) / sizeof(literal_types[0]); i++)
        if (strlen(literal_types[i]) == len && strncasecmp(literal_types[i], word, len) == 0)
            return true;
    return false;
}

/* The start of the word that ends at end (exclusive), skipping white space before end. */
static size_t word_before(const char *s, size_t end, size_t *word_end)
{
    while (end > 0 && isspace((unsigned char)s[end - 1]))
        end--;
    *word_end = end;
    while (end > 0 && (isalnum((unsigned char)s[end - 1]) || s[end - 1] == '_'))
        end--;
    return end;
}

/* The start of the type name that precedes the parameter at p, and its end; false when the
 * word before is no type name. "timestamp with time zone" counts as one name. */
static bool typed_literal_at(const char *s, size_t p, size_t *start, size_t *end)
{
    size_t we, ws = word_before(s, p, &we);
    if (we == ws)
        return false;
    if (we - ws == 4 && strncasecmp(s + ws, "zone", 4) == 0) {
        size_t e2, s2 = word_before(s, ws, &e2); /* time */
        size_t e3, s3 = word_before(s, s2, &e3); /* with, without */
        size_t e4, s4 = word_before(s, s3, &e4); /* timestamp, time */
        if (e2 - s2 == 4 && strncasecmp(s + s2, "time", 4) == 0 &&
            ((e3 - s3 == 4 && strncasecmp(s + s3, "with", 4) == 0) ||
             (e3 - s3 == 7 && strncasecmp(s + s3, "without", 7) == 0)) &&
            ((e4 - s4 == 9 && strncasecmp(s + s4, "timestamp", 9) == 0) ||
             (e4 - s4 == 4 && strncasecmp(s + s4, "time", 4) == 0))) {
            *start = s4;
            *end = we;
            return s4 == 0 || !(isalnum((unsigned char)s[s4 - 1]) || s[s4 - 1] == '_' ||
                                s[s4 - 1] == '.' || s[s4 - 1] == '"');
        }
        return false;
    }
    if (!is_literal_type(s + ws, we - ws))
        return false;
    if (ws > 0 && (s[ws - 1] == '.' || s[ws - 1] == '"'))
        return false;
    *start = ws;
    *end = we;
    return true;
}

char *workload_repair_text(const char *text)
{
    size_t len = strlen(text);
    /* Each repair adds two bytes ("::"). */
    size_t cap = len + 1;
    for (const char *p = text; (p = strchr(p, '$')) != NULL; p++)
        cap += 2;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t n = 0, copied = 0;
    bool changed = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\'' || c == '"') {
            /* Skip a string or a quoted identifier whole. */
            size_t j = i + 1;
            while (j < len && !(text[j] == c && (j + 1 >= len || text[j + 1] != c)))
                j += text[j] == c ? 2 : 1;
            i = j;
            continue;
        }
        if (c != '$' || i + 1 >= len || !isdigit((unsigned char)text[i + 1]))
            continue;
        size_t digits_end = i + 1;
        while (digits_end < len && isdigit((unsigned char)text[digits_end]))
            digits_end++;
        size_t type_start, type_end;
        if (!typed_literal_at(text, i, &type_start, &type_end))
            continue;
        memcpy(out + n, text + copied, type_start - copied);
        n += type_start - copied;
        memcpy(out + n, text + i, digits_end - i);
        n += digits_end - i;
        out[n++] = ':';
        out[n++] = ':';
        memcpy(out + n, text + type_start, type_end - type_start);
        n += type_end - type_start;
        copied = digits_end;
        i = digits_end - 1;
        changed = true;
    }
    if (!changed) {
        free(out);
        return NULL;
    }
    memcpy(out + n, text + copied, len - copied + 1);
    return out;
}

advise_status_t workload_load(PGconn *conn, workload_t *w, char *err, size_t errlen)
{
    advise_status_t status = ensure_extension(conn, err, errlen);
    if (status != ADVISE_OK)
        return status;
    PGresult *res = PQexec(conn, statements_sql(PQserverVersion(conn)));
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (strcmp(sqlstate_of(res), SQLSTATE_NOT_IN_PREREQUISITE) == 0) {
            snprintf(err, errlen,
                     "pg_stat_statements is not loaded: add it to shared_preload_libraries in "
                     "postgresql.conf and restart PostgreSQL");
            status = ADVISE_FAIL_EXTENSION;
        } else {
            pqmsg_describe(err, errlen, "cannot read pg_stat_statements", conn);
            status = ADVISE_FAIL_DB;
        }
        PQclear(res);
        return status;
    }
    int rows = PQntuples(res);
    w->queries = calloc(rows > 0 ? (size_t)rows : 1, sizeof(*w->queries));
    if (w->queries == NULL) {
        PQclear(res);
        snprintf(err, errlen, "out of memory");
        return ADVISE_FAIL_DB;
    }
    for (int i = 0; i < rows; i++) {
        const char *text = PQgetvalue(res, i, 1);
        if (PQgetisnull(res, i, 1) || strcmp(text, "<insufficient privilege>") == 0) {
            w->n_hidden++;
            continue;
        }
        workload_query_t *q = &w->queries[w->n];
        char *repaired = workload_repair_text(text);
        q->text = repaired != NULL ? repaired : strdup(text);
        if (q->text == NULL) {
            PQclear(res);
            snprintf(err, errlen, "out of memory");
            return ADVISE_FAIL_DB;
        }
        q->queryid = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        q->calls = strtod(PQgetvalue(res, i, 2), NULL);
        q->total_ms = strtod(PQgetvalue(res, i, 3), NULL);
        q->rows = strtod(PQgetvalue(res, i, 4), NULL);
        w->total_ms += q->total_ms;
        w->total_calls += q->calls;
        w->n++;
    }
    PQclear(res);
    return load_samples(conn, w, err, errlen);
}

void workload_free(workload_t *w)
{
    for (int i = 0; i < w->n; i++) {
        free(w->queries[i].text);
        free(w->queries[i].sample);
        free(w->queries[i].prepared);
    }
    free(w->queries);
    memset(w, 0, sizeof(*w));
}
