/*
 * report.h
 *    pgturbo report: a health report of one PostgreSQL database from its catalog and
 *    statistics views, as one JSON document (jansson) that reportrender.c prints as text or
 *    HTML. The command line (reportcli.c) and, later, the daemon's GET /api/v1/report both
 *    build it with report_build.
 *
 * Checks, each a function of report.c, each a section of the document:
 *   database      name, server, version, size, statistics reset time
 *   tables        the largest tables: table, index and TOAST bytes, row estimates
 *   cache         heap and index cache hit ratios with their assessment (health.h)
 *   indexes       most used; unused since the last stats reset (neither unique nor backing a
 *                 constraint, and older than the reset when track_commit_timestamp can
 *                 tell; largest first); duplicate; redundant (a btree prefix of another);
 *                 invalid; foreign keys without an index
 *   bloat         tables and btree indexes: the catalog-statistics estimate (health.h), or
 *                 pgstattuple's figures for the large ones when the extension is installed
 *   maintenance   tables needing VACUUM (dead tuples) or ANALYZE, with their last runs
 *   connections   client backends by state against max_connections (the whole server)
 *   sessions      long-running queries and long idle-in-transaction sessions (this database)
 *   locks         sessions waiting for a lock and the sessions blocking them
 *   sequences     sequences near the end of their range (or of their column's type)
 *   replication   replicas and their lag, or this server's replay delay if it is a replica
 *   daemon        pools and slow-query counts, when the caller passes them
 * followed by "score" (0-100, the formula in health.h), "score_breakdown" (one object per
 * factor: factor, penalty, max), "recommendations" (category, severity, message, action,
 * check, object; most severe first; a single "success" one when nothing needs doing) and
 * "skipped" (check, reason) for checks that lacked a privilege, an extension or a statistic.
 *
 * Every identifier in generated SQL (the recommendations' actions) is quoted with
 * PQescapeIdentifier; the catalog queries themselves take object ids as parameters, never
 * names. A check that fails for lack of privilege (42501), a missing object or extension, or
 * a lock or statement timeout is skipped with the server's reason; any other error, or a lost
 * connection, fails the whole report.
 */
#ifndef PGTURBO_REPORT_H
#define PGTURBO_REPORT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>

typedef struct report_options {
    int top;                   /* rows in the "largest" and "most used" lists (10) */
    double long_query_s;       /* an active query this old is long-running (60) */
    double idle_in_xact_s;     /* idle in a transaction this long is reported (60) */
    double min_relation_bytes; /* smaller unused indexes, bloat and tables are minor (1 MiB) */
    double replica_lag_s;      /* a replica this far behind is a warning, 10x critical (30) */
    int exact_bloat_limit;     /* relations measured with pgstattuple at most (20) */
    /*
     * Daemon figures, borrowed, or NULL when the report is not built by the daemon:
     *   {"pools": [objects with database, user, cl_active, cl_waiting, sv_active, sv_idle,
     *              maxwait_us, as inspect_pools() gives them],
     *    "queries": {"total": integer, "slow": integer}}
     * A pool with waiting clients becomes a warning; slow / total feeds the score.
     */
    const json_t *daemon;
} report_options_t;

/* The defaults above. */
void report_options_init(report_options_t *opt);

/*
 * Builds the report of the database conn is connected to (PostgreSQL 14 or later). Borrows
 * conn, and leaves these set on its session: client_encoding UTF8, statement_timeout 60 s,
 * lock_timeout 5 s, idle_in_transaction_session_timeout 0.
 * Returns a new JSON object the caller releases with json_decref, or NULL with a message in
 * err (a lost connection, a query that failed for another reason than those skipped above,
 * an older server, no memory).
 */
__attribute__((warn_unused_result)) json_t *report_build(PGconn *conn, const report_options_t *opt,
                                                         char *err, size_t errlen);

#endif /* PGTURBO_REPORT_H */
