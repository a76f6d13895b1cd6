/*
 * reportctx.h
 *    What the checks of pgturbo report share: the state of one report being built, running a
 *    check's queries (a missing privilege or extension skips the check with its reason),
 *    reading results by column name, quoted names for actions and shown names for messages,
 *    and recommendations (at most MAX_RECS_PER_CHECK of a kind, the rest summed up).
 *    Used by report.c and the check files report_indexes.c and report_bloat.c only.
 */
#ifndef PGTURBO_REPORTCTX_H
#define PGTURBO_REPORTCTX_H

#include "health.h"
#include "report.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define STATEMENT_TIMEOUT  "60s" /* for every query of the report */
#define MEASURE_TIMEOUT    "10s" /* for each pgstattuple call */
#define MIN_CACHE_BLOCKS   10000 /* fewer blocks read or hit than this say nothing yet */
#define MAX_RECS_PER_CHECK 10    /* more findings of a kind are summed up in one line */
#define MSG_LEN            1024
#define NAME_LEN           300 /* "schema"."name", each NAMEDATALEN, quotes doubled */

/* Findings of one check and severity, to sum up those beyond MAX_RECS_PER_CHECK. */
typedef struct rec_count {
    const char *check;
    const char *category;
    health_severity_t severity;
    int count;
} rec_count_t;

typedef struct report_ctx {
    PGconn *conn;
    const report_options_t *opt;
    json_t *doc;
    json_t *recs[HEALTH_CRITICAL + 1]; /* by severity */
    json_t *skipped;
    health_inputs_t in;
    rec_count_t counts[48];
    int n_counts;
    int block_size;
    bool track_commit_ts;
    bool autovacuum;
    bool failed;
    char stats_reset[32]; /* ISO time, "" when never reset */
    /* Names for messages (shown), reused round-robin. */
    char shown[8][NAME_LEN];
    int next_shown;
    /* Index ids reported as duplicate or redundant: not listed again as unused. */
    char **dropped;
    int n_dropped;
    char *err;
    size_t errlen;
} report_ctx_t;

/* Fails the whole report with a message (the first failure wins). */
void rctx_fail(report_ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The server's error of a failed result (or the connection's), on one line. */
void rctx_error_text(const PGresult *res, PGconn *conn, char *out, size_t len);

/* Records a skipped check with the server's reason (a missing privilege or extension). */
void rctx_skip(report_ctx_t *c, const char *check, const char *reason);

/*
 * Runs a check's query (parameters are numbers and object ids only). Returns the result
 * (caller PQclears), or NULL when the check was skipped (hint says what would let it run) or
 * the report failed.
 */
PGresult *rctx_run(report_ctx_t *c, const char *check, const char *hint, const char *sql,
                   int nparams, const char *const *params);
PGresult *rctx_run0(report_ctx_t *c, const char *check, const char *hint, const char *sql);

/* A row's value by column name: text ("" for NULL), number, whether not NULL, boolean. */
const char *rctx_val(const PGresult *r, int row, const char *name);
double rctx_num(const PGresult *r, int row, const char *name);
bool rctx_has(const PGresult *r, int row, const char *name);
bool rctx_flag(const PGresult *r, int row, const char *name);

/* JSON values: a string (null for NULL, any bytes made valid), a real (rounded). */
json_t *rctx_jstr(const char *s);
json_t *rctx_jreal(double x);

/* Copies a column of a row into obj under its own name, as text, integer or real. */
void rctx_put_text(json_t *obj, const PGresult *r, int row, const char *name);
void rctx_put_int(json_t *obj, const PGresult *r, int row, const char *name);
void rctx_put_real(json_t *obj, const PGresult *r, int row, const char *name);

/* A name quoted for SQL ("schema"."name", or one identifier) with PQescapeIdentifier. */
void rctx_quoted(report_ctx_t *c, const char *schema, const char *name, char *out, size_t len);
void rctx_quoted1(report_ctx_t *c, const char *name, char *out, size_t len);

/* A name for a message, valid until NAME_LEN more calls (round-robin buffers). */
const char *rctx_shown(report_ctx_t *c, const char *schema, const char *name);

/* Adds a recommendation (the first MAX_RECS_PER_CHECK of a check and severity; the others
 * are counted), and at the end one line for each count beyond that. */
void rctx_recommend(report_ctx_t *c, health_severity_t sev, const char *category, const char *check,
                    const char *object, const char *message, const char *action);
void rctx_recommend_remainders(report_ctx_t *c);

/* Bytes as "1.5 MB". */
void rctx_size_text(double bytes, char *out, size_t len);

#endif /* PGTURBO_REPORTCTX_H */
