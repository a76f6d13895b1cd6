/*
 * proof.c
 *    Plan costs with and without an index, through HypoPG or a sampled copy; see proof.h.
 */
#include "proof.h"

#include "pqmsg.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATEMENT_NAME "pgturbo_advise"

/* 1 for an error of the statement, -1 when the connection is gone. */
static int failure(PGconn *conn)
{
    return PQstatus(conn) == CONNECTION_OK ? 1 : -1;
}

static int exec_command(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    PQclear(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 0;
    pqmsg_describe(err, errlen, what, conn);
    return failure(conn);
}

int proof_session_begin(PGconn *conn, char *err, size_t errlen)
{
    return exec_command(conn,
                        "SET plan_cache_mode = force_generic_plan; SET lock_timeout = '5s'; "
                        "SET statement_timeout = '60s'",
                        "cannot set up the session", err, errlen) == 0
               ? 0
               : -1;
}

advise_status_t proof_hypopg_begin(PGconn *conn, bool *created, char *err, size_t errlen)
{
    *created = false;
    PGresult *res = PQexec(conn, "SELECT (SELECT count(*) FROM pg_extension WHERE extname = "
                                 "'hypopg'), (SELECT count(*) FROM pg_available_extensions "
                                 "WHERE name = 'hypopg')");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pqmsg_describe(err, errlen, "cannot look for HypoPG", conn);
        PQclear(res);
        return ADVISE_FAIL_DB;
    }
    bool installed = atoi(PQgetvalue(res, 0, 0)) > 0;
    bool available = atoi(PQgetvalue(res, 0, 1)) > 0;
    PQclear(res);
    if (installed)
        return ADVISE_OK;
    int major = PQserverVersion(conn) / 10000;
    if (!available) {
        snprintf(err, errlen,
                 "HypoPG is not installed on the server: advise proves every index with it. "
                 "Install it (Debian and Ubuntu: apt-get install postgresql-%d-hypopg; "
                 "elsewhere see https://github.com/HypoPG/hypopg), then run advise again",
                 major);
        return ADVISE_FAIL_EXTENSION;
    }
    res = PQexec(conn, "CREATE EXTENSION IF NOT EXISTS hypopg");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        bool privilege = state != NULL && strcmp(state, "42501") == 0;
        if (privilege)
            snprintf(err, errlen,
                     "HypoPG is installed on the server but not in database \"%s\", and this "
                     "role may not create it: as a superuser, run CREATE EXTENSION hypopg; in "
                     "that database (advise then uses it without privileges), or run advise as "
                     "a role that may",
                     PQdb(conn));
        else
            pqmsg_describe(err, errlen, "cannot create extension hypopg", conn);
        PQclear(res);
        return privilege ? ADVISE_FAIL_EXTENSION : ADVISE_FAIL_DB;
    }
    PQclear(res);
    *created = true;
    return ADVISE_OK;
}

void proof_hypopg_end(PGconn *conn, bool created)
{
    if (PQstatus(conn) != CONNECTION_OK)
        return;
    PQclear(PQexec(conn, "SELECT hypopg_reset()"));
    if (created)
        PQclear(PQexec(conn, "DROP EXTENSION IF EXISTS hypopg"));
}

/* True when the plan node (or one below it) scans index name. */
static bool plan_uses(json_t *plan, const char *name)
{
    const char *index = json_string_value(json_object_get(plan, "Index Name"));
    if (index != NULL && strcmp(index, name) == 0)
        return true;
    size_t i;
    json_t *child;
    json_array_foreach(json_object_get(plan, "Plans"), i, child)
    {
        if (plan_uses(child, name))
            return true;
    }
    return false;
}

int proof_cost(PGconn *conn, const char *text, const char *index_name, double *cost, bool *uses,
               char *err, size_t errlen)
{
    *cost = 0;
    *uses = false;
    PGresult *res = PQprepare(conn, STATEMENT_NAME, text, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        PQclear(res);
        pqmsg_describe(err, errlen, "cannot prepare", conn);
        return failure(conn);
    }
    PQclear(res);
    int rc = 1;
    res = PQdescribePrepared(conn, STATEMENT_NAME);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pqmsg_describe(err, errlen, "cannot describe", conn);
        rc = failure(conn);
        goto done;
    }
    int nparams = PQnparams(res);
    PQclear(res);
    size_t cap = 64 + (size_t)nparams * 6;
    char *sql = malloc(cap);
    if (sql == NULL) {
        res = NULL;
        snprintf(err, errlen, "out of memory");
        rc = -1;
        goto done;
    }
    size_t n = (size_t)snprintf(sql, cap, "EXPLAIN (FORMAT JSON) EXECUTE " STATEMENT_NAME);
    for (int i = 0; i < nparams; i++)
        n += (size_t)snprintf(sql + n, cap - n, "%sNULL", i == 0 ? "(" : ", ");
    if (nparams > 0)
        snprintf(sql + n, cap - n, ")");
    res = PQexec(conn, sql);
    free(sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        pqmsg_describe(err, errlen, "cannot explain", conn);
        rc = failure(conn);
        goto done;
    }
    json_error_t error;
    json_t *root = json_loads(PQgetvalue(res, 0, 0), 0, &error);
    json_t *plan = json_object_get(json_array_get(root, 0), "Plan");
    json_t *total = json_object_get(plan, "Total Cost");
    if (!json_is_number(total)) {
        snprintf(err, errlen, "cannot read the plan");
        json_decref(root);
        rc = 1;
        goto done;
    }
    *cost = json_number_value(total);
    *uses = index_name != NULL && plan_uses(plan, index_name);
    json_decref(root);
    rc = 0;
done:
    PQclear(res);
    PQclear(PQexec(conn, "DEALLOCATE " STATEMENT_NAME));
    return rc;
}

int proof_hypo_create(PGconn *conn, const char *create_sql, unsigned *oid,
                      char name[PROOF_INDEX_NAME_LEN], char *err, size_t errlen)
{
    const char *params[] = {create_sql};
    PGresult *res = PQexecParams(conn, "SELECT indexrelid, indexname FROM hypopg_create_index($1)",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        PQclear(res);
        pqmsg_describe(err, errlen, "HypoPG cannot model it", conn);
        return failure(conn);
    }
    *oid = (unsigned)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(name, PROOF_INDEX_NAME_LEN, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

int proof_hypo_size(PGconn *conn, unsigned oid, double *bytes, char *err, size_t errlen)
{
    char text[16];
    snprintf(text, sizeof(text), "%u", oid);
    const char *params[] = {text};
    PGresult *res =
        PQexecParams(conn, "SELECT hypopg_relation_size($1::oid)", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        PQclear(res);
        pqmsg_describe(err, errlen, "cannot estimate the size", conn);
        return -1;
    }
    *bytes = strtod(PQgetvalue(res, 0, 0), NULL);
    PQclear(res);
    return 0;
}

int proof_hypo_drop(PGconn *conn, unsigned oid, char *err, size_t errlen)
{
    char text[16];
    snprintf(text, sizeof(text), "%u", oid);
    const char *params[] = {text};
    PGresult *res = oid == 0 ? PQexec(conn, "SELECT hypopg_reset()")
                             : PQexecParams(conn, "SELECT hypopg_drop_index($1::oid)", 1, NULL,
                                            params, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    if (!ok) {
        pqmsg_describe(err, errlen, "cannot drop a hypothetical index", conn);
        return -1;
    }
    return 0;
}

int proof_sample_create(PGconn *conn, const char *quoted_table, unsigned oid, double reltuples,
                        proof_sample_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "pgturbo_sample_%u", oid);
    snprintf(out->qualified, sizeof(out->qualified), "pg_temp.%s", out->name);
    char sql[1024];
    /* SYSTEM sampling reads only the pages it keeps, so a huge table costs no full scan;
     * BERNOULLI, which reads every page, is the fallback when SYSTEM kept nothing. */
    const char *methods[] = {"SYSTEM", "BERNOULLI"};
    double percent =
        reltuples > 2 * PROOF_SAMPLE_ROWS ? 100.0 * PROOF_SAMPLE_ROWS / reltuples : 100.0;
    for (int m = 0; m < 2; m++) {
        snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", out->qualified);
        if (exec_command(conn, sql, "cannot drop a sample", err, errlen) != 0)
            return -1;
        if (percent >= 100.0)
            snprintf(sql, sizeof(sql), "CREATE TEMP TABLE %s AS SELECT * FROM ONLY %s", out->name,
                     quoted_table);
        else
            snprintf(sql, sizeof(sql),
                     "CREATE TEMP TABLE %s AS SELECT * FROM ONLY %s TABLESAMPLE %s (%.4f) "
                     "REPEATABLE (7)",
                     out->name, quoted_table, methods[m], percent);
        if (exec_command(conn, sql, "cannot copy a sample", err, errlen) != 0)
            return -1;
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", out->qualified);
        PGresult *res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            pqmsg_describe(err, errlen, "cannot count a sample", conn);
            PQclear(res);
            return -1;
        }
        out->rows = strtod(PQgetvalue(res, 0, 0), NULL);
        PQclear(res);
        if (out->rows > 0 || percent >= 100.0)
            break;
    }
    snprintf(sql, sizeof(sql), "ANALYZE %s", out->qualified);
    return exec_command(conn, sql, "cannot analyze a sample", err, errlen) == 0 ? 0 : -1;
}

int proof_sample_index(PGconn *conn, const proof_sample_t *s, const char *definition, double *bytes,
                       char *err, size_t errlen)
{
    size_t len = strlen(definition) + 256;
    char *sql = malloc(len);
    if (sql == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(sql, len, "CREATE INDEX " PROOF_SAMPLE_INDEX " ON %s %s", s->qualified, definition);
    int rc = exec_command(conn, sql, "cannot build the index on a sample", err, errlen);
    if (rc == 0) {
        snprintf(sql, len, "ANALYZE %s", s->qualified);
        rc = exec_command(conn, sql, "cannot analyze a sample", err, errlen);
    }
    free(sql);
    if (rc != 0)
        return rc;
    PGresult *res =
        PQexec(conn, "SELECT pg_relation_size('pg_temp." PROOF_SAMPLE_INDEX "'::regclass)");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pqmsg_describe(err, errlen, "cannot size the index on a sample", conn);
        PQclear(res);
        return failure(conn);
    }
    *bytes = strtod(PQgetvalue(res, 0, 0), NULL);
    PQclear(res);
    return 0;
}

void proof_sample_index_drop(PGconn *conn)
{
    PQclear(PQexec(conn, "DROP INDEX IF EXISTS pg_temp." PROOF_SAMPLE_INDEX));
}

void proof_sample_drop(PGconn *conn, const proof_sample_t *s)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", s->qualified);
    PQclear(PQexec(conn, sql));
}
