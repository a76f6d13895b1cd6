/*
 * advise.c
 *    `pgturbo advise` from start to end: connection, workload, and what is made of it; see
 *    advise.h.
 */
#include "advise.h"

#include "sqlparse.h"
#include "workload.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Opens the connection, naming itself "pgturbo advise" unless conninfo names it otherwise. */
static PGconn *connect_db(const char *conninfo)
{
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *values[] = {conninfo, "pgturbo advise", NULL};
    return PQconnectdbParams(keys, values, 1);
}

/* One line for a failed connection: libpq's first line of the message is the useful one. */
static void print_connect_error(PGconn *conn)
{
    const char *msg = conn == NULL ? "out of memory" : PQerrorMessage(conn);
    size_t n = strcspn(msg, "\n");
    fprintf(stderr, "pgturbo advise: cannot connect: %.*s\n", (int)n, msg);
}

/* Keeps the reads and writes (SELECT, UPDATE, DELETE ...): DDL, utility statements and
 * transaction control have no index to gain. */
static void drop_unadvisable(workload_t *w)
{
    int kept = 0;
    for (int i = 0; i < w->n; i++) {
        workload_query_t *q = &w->queries[i];
        sql_info_t *info = sqlparse_analyze(q->text);
        bool keep = info != NULL && (info->kind == SQL_READ || info->kind == SQL_WRITE) &&
                    info->n_read + info->n_written > 0;
        sql_info_free(info);
        if (!keep) {
            w->total_ms -= q->total_ms;
            w->total_calls -= q->calls;
            free(q->text);
            free(q->sample);
            continue;
        }
        w->queries[kept++] = *q;
    }
    w->n = kept;
}

advise_status_t advise_run(const advise_options_t *opts)
{
    char err[1024] = "";
    advise_status_t status = ADVISE_OK;
    workload_t w = {0};
    PGconn *conn = connect_db(opts->conninfo);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        print_connect_error(conn);
        PQfinish(conn);
        return ADVISE_FAIL_DB;
    }
    /* advise's own queries stay out of the statistics where the role may say so. */
    PQclear(PQexec(conn, "SET pg_stat_statements.track = 'none'"));
    status = workload_load(conn, &w, err, sizeof(err));
    if (status != ADVISE_OK) {
        fprintf(stderr, "pgturbo advise: %s\n", err);
        goto done;
    }
    drop_unadvisable(&w);
    if (w.n == 0) {
        printf("nothing to advise: pg_stat_statements holds no queries of database \"%s\"\n",
               PQdb(conn));
        goto done;
    }
    printf("workload: %d queries, %.0f calls, %.1f ms\n", w.n, w.total_calls, w.total_ms);
done:
    workload_free(&w);
    PQfinish(conn);
    return status;
}
