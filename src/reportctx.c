/*
 * reportctx.c
 *    The helpers the checks of pgturbo report share; see reportctx.h.
 */
#include "reportctx.h"

#include "jsontext.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- queries ---- */

/* SQLSTATEs that skip a check instead of failing the report. */
static bool skippable(const char *sqlstate)
{
    static const char *const codes[] = {
        "42501", /* insufficient_privilege */
        "42P01", /* undefined_table */
        "42883", /* undefined_function */
        "42704", /* undefined_object */
        "3F000", /* invalid_schema_name */
        "55P03", /* lock_not_available */
        "57014", /* query_canceled (statement_timeout) */
        "0A000", /* feature_not_supported */
        "55000", /* object_not_in_prerequisite_state */
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (sqlstate != NULL && strcmp(sqlstate, codes[i]) == 0)
            return true;
    return false;
}

void rctx_fail(report_ctx_t *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
}

/* The server's message without its trailing newline, into out. */
void rctx_error_text(const PGresult *res, PGconn *conn, char *out, size_t len)
{
    const char *m = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (m == NULL)
        m = PQerrorMessage(conn);
    snprintf(out, len, "%s", m);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
}

void rctx_skip(report_ctx_t *c, const char *check, const char *reason)
{
    json_t *s = json_object();
    json_object_set_new(s, "check", json_string(check));
    json_object_set_new(s, "reason", jsontext_string(reason));
    json_array_append_new(c->skipped, s);
}

/*
 * Runs sql with text parameters (NULL for SQL NULL). Returns the result when it succeeded.
 * Otherwise returns NULL and either skips check (a skippable SQLSTATE; the reason is the
 * server's message, and hint when the cause was a missing privilege) or fails the report.
 * quiet leaves both to the caller, which reads sqlstate.
 */
PGresult *rctx_run(report_ctx_t *c, const char *check, const char *hint, const char *sql,
                   int nparams, const char *const *params)
{
    if (c->failed)
        return NULL;
    PGresult *res = PQexecParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    char msg[MSG_LEN];
    rctx_error_text(res, c->conn, msg, sizeof(msg));
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (PQstatus(c->conn) == CONNECTION_OK && skippable(state)) {
        char reason[2 * MSG_LEN];
        bool privilege = strcmp(state, "42501") == 0 && hint != NULL;
        snprintf(reason, sizeof(reason), "%s%s%s", msg, privilege ? "; " : "",
                 privilege ? hint : "");
        rctx_skip(c, check, reason);
    } else {
        rctx_fail(c, "%s: %s", check, msg);
    }
    PQclear(res);
    return NULL;
}

/* Like run without parameters. */
PGresult *rctx_run0(report_ctx_t *c, const char *check, const char *hint, const char *sql)
{
    return rctx_run(c, check, hint, sql, 0, NULL);
}

/* ---- reading results by column name ---- */

const char *rctx_val(const PGresult *r, int row, const char *name)
{
    int col = PQfnumber(r, name);
    if (col < 0 || PQgetisnull(r, row, col))
        return NULL;
    return PQgetvalue(r, row, col);
}

double rctx_num(const PGresult *r, int row, const char *name)
{
    const char *v = rctx_val(r, row, name);
    return v != NULL ? strtod(v, NULL) : 0;
}

bool rctx_has(const PGresult *r, int row, const char *name)
{
    return rctx_val(r, row, name) != NULL;
}

bool rctx_flag(const PGresult *r, int row, const char *name)
{
    const char *v = rctx_val(r, row, name);
    return v != NULL && v[0] == 't';
}

json_t *rctx_jstr(const char *s)
{
    return s != NULL ? jsontext_string(s) : json_null();
}

/* A real rounded to one decimal. */
json_t *rctx_jreal(double x)
{
    return json_real(round(x * 10) / 10);
}

/* Copies the named columns of row into obj: text as strings, the rest by kind. */
void rctx_put_text(json_t *obj, const PGresult *r, int row, const char *name)
{
    json_object_set_new(obj, name, rctx_jstr(rctx_val(r, row, name)));
}

void rctx_put_int(json_t *obj, const PGresult *r, int row, const char *name)
{
    const char *v = rctx_val(r, row, name);
    json_object_set_new(obj, name, v != NULL ? json_integer(strtoll(v, NULL, 10)) : json_null());
}

void rctx_put_real(json_t *obj, const PGresult *r, int row, const char *name)
{
    const char *v = rctx_val(r, row, name);
    json_object_set_new(obj, name, v != NULL ? rctx_jreal(strtod(v, NULL)) : json_null());
}

/* ---- names and recommendations ---- */

/* "schema"."name" as PQescapeIdentifier quotes them, into out ("" if that fails). */
void rctx_quoted(report_ctx_t *c, const char *schema, const char *name, char *out, size_t len)
{
    char *s = PQescapeIdentifier(c->conn, schema, strlen(schema));
    char *n = PQescapeIdentifier(c->conn, name, strlen(name));
    if (s != NULL && n != NULL)
        snprintf(out, len, "%s.%s", s, n);
    else
        snprintf(out, len, "%s", "");
    PQfreemem(s);
    PQfreemem(n);
}

/* One identifier quoted, into out. */
void rctx_quoted1(report_ctx_t *c, const char *name, char *out, size_t len)
{
    char *n = PQescapeIdentifier(c->conn, name, strlen(name));
    snprintf(out, len, "%s", n != NULL ? n : "");
    PQfreemem(n);
}

/* Appends name to out at *used, in double quotes (doubled inside) when it is not a plain
 * lower-case identifier. */
static void append_shown(const char *name, char *out, size_t len, size_t *used)
{
    bool plain = name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9') && name[0] != '$';
    for (const char *p = name; *p && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '$';
    if (!plain && *used + 1 < len)
        out[(*used)++] = '"';
    for (const char *p = name; *p && *used + 2 < len; p++) {
        if (*p == '"' && !plain)
            out[(*used)++] = '"';
        out[(*used)++] = *p;
    }
    if (!plain && *used + 1 < len)
        out[(*used)++] = '"';
    out[*used] = '\0';
}

/*
 * A name for messages: schema.name (or name alone when schema is NULL), each part quoted
 * only when it needs quotes to read unambiguously. Actions use rctx_quoted() instead, which
 * always quotes. The result lives in c until eight more calls.
 */
const char *rctx_shown(report_ctx_t *c, const char *schema, const char *name)
{
    char *out = c->shown[c->next_shown];
    c->next_shown = (c->next_shown + 1) % 8;
    size_t used = 0;
    out[0] = '\0';
    if (schema != NULL) {
        append_shown(schema, out, NAME_LEN, &used);
        if (used + 1 < NAME_LEN) {
            out[used++] = '.';
            out[used] = '\0';
        }
    }
    append_shown(name != NULL ? name : "?", out, NAME_LEN, &used);
    return out;
}

static rec_count_t *count_of(report_ctx_t *c, const char *check, const char *category,
                             health_severity_t sev)
{
    for (int i = 0; i < c->n_counts; i++)
        if (strcmp(c->counts[i].check, check) == 0 && c->counts[i].severity == sev)
            return &c->counts[i];
    if (c->n_counts == (int)(sizeof(c->counts) / sizeof(c->counts[0])))
        return NULL;
    rec_count_t *n = &c->counts[c->n_counts++];
    n->check = check;
    n->category = category;
    n->severity = sev;
    n->count = 0;
    return n;
}

/* Adds a recommendation; check and category are static strings, the rest is copied. */
void rctx_recommend(report_ctx_t *c, health_severity_t sev, const char *category, const char *check,
                    const char *object, const char *message, const char *action)
{
    rec_count_t *n = count_of(c, check, category, sev);
    if (n != NULL && n->count++ >= MAX_RECS_PER_CHECK)
        return;
    json_t *r = json_object();
    json_object_set_new(r, "category", json_string(category));
    json_object_set_new(r, "severity", json_string(health_severity_name(sev)));
    json_object_set_new(r, "message", jsontext_string(message));
    json_object_set_new(r, "action", jsontext_string(action));
    json_object_set_new(r, "check", json_string(check));
    json_object_set_new(r, "object", rctx_jstr(object));
    json_array_append_new(c->recs[sev], r);
}

/* One line for each kind of finding that had more than MAX_RECS_PER_CHECK. */
void rctx_recommend_remainders(report_ctx_t *c)
{
    for (int i = 0; i < c->n_counts; i++) {
        rec_count_t *n = &c->counts[i];
        if (n->count <= MAX_RECS_PER_CHECK)
            continue;
        char msg[MSG_LEN];
        snprintf(msg, sizeof(msg), "%d more %s findings of this severity",
                 n->count - MAX_RECS_PER_CHECK, n->check);
        json_t *r = json_object();
        json_object_set_new(r, "category", json_string(n->category));
        json_object_set_new(r, "severity", json_string(health_severity_name(n->severity)));
        json_object_set_new(r, "message", json_string(msg));
        json_object_set_new(r, "action",
                            json_string("See the full list in this report's "
                                        "section of the same name"));
        json_object_set_new(r, "check", json_string(n->check));
        json_object_set_new(r, "object", json_null());
        json_array_append_new(c->recs[n->severity], r);
    }
}

void rctx_size_text(double bytes, char *out, size_t len)
{
    health_format_bytes(bytes, out, len);
}
