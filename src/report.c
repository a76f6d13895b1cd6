/*
 * report.c
 *    pgturbo report: the catalog checks, each a small function that runs its queries, adds
 *    its section to the document and its recommendations; see report.h.
 *
 * Design notes. Every check reads the catalog through queries whose only parameters are
 * numbers and object ids, so no user-chosen name is ever spliced into SQL that runs; names
 * appear only in the SQL of the recommendations' actions, quoted with PQescapeIdentifier.
 * The one exception is the schema of the pgstattuple extension, which is quoted the same way.
 * Rules (what is a duplicate, how much bloat, when a table needs VACUUM) live in health.c as
 * pure functions; this file only gathers their inputs and words the findings.
 */
#include "report.h"

#include "health.h"
#include "jsontext.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct ctx {
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
} ctx_t;

void report_options_init(report_options_t *opt)
{
    opt->top = 10;
    opt->long_query_s = 60;
    opt->idle_in_xact_s = 60;
    opt->min_relation_bytes = 1024.0 * 1024.0;
    opt->replica_lag_s = 30;
    opt->exact_bloat_limit = 20;
    opt->daemon = NULL;
}

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

static void fail(ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(ctx_t *c, const char *fmt, ...)
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
static void error_text(const PGresult *res, PGconn *conn, char *out, size_t len)
{
    const char *m = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (m == NULL)
        m = PQerrorMessage(conn);
    snprintf(out, len, "%s", m);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
}

static void skip(ctx_t *c, const char *check, const char *reason)
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
static PGresult *run(ctx_t *c, const char *check, const char *hint, const char *sql, int nparams,
                     const char *const *params)
{
    if (c->failed)
        return NULL;
    PGresult *res = PQexecParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    char msg[MSG_LEN];
    error_text(res, c->conn, msg, sizeof(msg));
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (PQstatus(c->conn) == CONNECTION_OK && skippable(state)) {
        char reason[2 * MSG_LEN];
        bool privilege = strcmp(state, "42501") == 0 && hint != NULL;
        snprintf(reason, sizeof(reason), "%s%s%s", msg, privilege ? "; " : "",
                 privilege ? hint : "");
        skip(c, check, reason);
    } else {
        fail(c, "%s: %s", check, msg);
    }
    PQclear(res);
    return NULL;
}

/* Like run without parameters. */
static PGresult *run0(ctx_t *c, const char *check, const char *hint, const char *sql)
{
    return run(c, check, hint, sql, 0, NULL);
}

/* ---- reading results by column name ---- */

static const char *val(const PGresult *r, int row, const char *name)
{
    int col = PQfnumber(r, name);
    if (col < 0 || PQgetisnull(r, row, col))
        return NULL;
    return PQgetvalue(r, row, col);
}

static double num(const PGresult *r, int row, const char *name)
{
    const char *v = val(r, row, name);
    return v != NULL ? strtod(v, NULL) : 0;
}

static bool has(const PGresult *r, int row, const char *name)
{
    return val(r, row, name) != NULL;
}

static bool flag(const PGresult *r, int row, const char *name)
{
    const char *v = val(r, row, name);
    return v != NULL && v[0] == 't';
}

static json_t *jstr(const char *s)
{
    return s != NULL ? jsontext_string(s) : json_null();
}

/* A real rounded to one decimal. */
static json_t *jreal(double x)
{
    return json_real(round(x * 10) / 10);
}

/* Copies the named columns of row into obj: text as strings, the rest by kind. */
static void put_text(json_t *obj, const PGresult *r, int row, const char *name)
{
    json_object_set_new(obj, name, jstr(val(r, row, name)));
}

static void put_int(json_t *obj, const PGresult *r, int row, const char *name)
{
    const char *v = val(r, row, name);
    json_object_set_new(obj, name, v != NULL ? json_integer(strtoll(v, NULL, 10)) : json_null());
}

static void put_real(json_t *obj, const PGresult *r, int row, const char *name)
{
    const char *v = val(r, row, name);
    json_object_set_new(obj, name, v != NULL ? jreal(strtod(v, NULL)) : json_null());
}

/* ---- names and recommendations ---- */

/* "schema"."name" as PQescapeIdentifier quotes them, into out ("" if that fails). */
static void quoted(ctx_t *c, const char *schema, const char *name, char *out, size_t len)
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
static void quoted1(ctx_t *c, const char *name, char *out, size_t len)
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
 * only when it needs quotes to read unambiguously. Actions use quoted() instead, which
 * always quotes. The result lives in c until eight more calls.
 */
static const char *shown(ctx_t *c, const char *schema, const char *name)
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

static rec_count_t *count_of(ctx_t *c, const char *check, const char *category,
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
static void recommend(ctx_t *c, health_severity_t sev, const char *category, const char *check,
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
    json_object_set_new(r, "object", jstr(object));
    json_array_append_new(c->recs[sev], r);
}

/* One line for each kind of finding that had more than MAX_RECS_PER_CHECK. */
static void recommend_remainders(ctx_t *c)
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

static void size_text(double bytes, char *out, size_t len)
{
    health_format_bytes(bytes, out, len);
}

/* ---- database ---- */

static void check_database(ctx_t *c)
{
    PGresult *r = run0(
        c, "database", NULL,
        "SELECT current_database() AS name, current_setting('server_version') AS version,"
        " pg_database_size(current_database()) AS size_bytes,"
        " (SELECT to_char((stats_reset) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " FROM pg_stat_database   WHERE datname = current_database()) AS stats_reset,"
        " pg_is_in_recovery() AS in_recovery, current_setting('block_size')::int AS block_size,"
        " current_setting('track_commit_timestamp')::bool AS track_commit_timestamp,"
        " current_setting('autovacuum')::bool AS autovacuum,"
        " to_char((now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS generated_at");
    if (r == NULL) {
        fail(c, "database: cannot read the database's size and settings");
        return;
    }
    json_t *d = json_object();
    put_text(d, r, 0, "name");
    char server[600];
    snprintf(server, sizeof(server), "%s:%s", PQhost(c->conn) ? PQhost(c->conn) : "",
             PQport(c->conn) ? PQport(c->conn) : "");
    json_object_set_new(d, "server", jsontext_string(server));
    put_text(d, r, 0, "version");
    put_int(d, r, 0, "size_bytes");
    put_text(d, r, 0, "stats_reset");
    json_object_set_new(d, "in_recovery", json_boolean(flag(r, 0, "in_recovery")));
    json_object_set_new(d, "autovacuum", json_boolean(flag(r, 0, "autovacuum")));
    json_object_set_new(c->doc, "generated_at", jstr(val(r, 0, "generated_at")));
    json_object_set_new(c->doc, "database", d);
    c->block_size = (int)num(r, 0, "block_size");
    c->track_commit_ts = flag(r, 0, "track_commit_timestamp");
    c->autovacuum = flag(r, 0, "autovacuum");
    snprintf(c->stats_reset, sizeof(c->stats_reset), "%s",
             has(r, 0, "stats_reset") ? val(r, 0, "stats_reset") : "");
    PQclear(r);
    if (!c->autovacuum)
        recommend(c, HEALTH_WARNING, "maintenance", "autovacuum_off", NULL,
                  "autovacuum is off: dead rows pile up and statistics go stale in every table",
                  "ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();");
}

/* ---- tables ---- */

static void check_tables(ctx_t *c)
{
    char top[16];
    snprintf(top, sizeof(top), "%d", c->opt->top);
    const char *params[] = {top};
    PGresult *r =
        run(c, "tables", NULL,
            "SELECT n.nspname AS schema, c.relname AS table,"
            " pg_total_relation_size(c.oid) AS total_bytes,"
            " pg_relation_size(c.oid) AS table_bytes, pg_indexes_size(c.oid) AS index_bytes,"
            " coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast_bytes, CASE"
            " WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE s.n_live_tup END AS rows"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT"
            " JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relkind IN ('r', 'm')"
            " AND (n.nspname !~ '^pg_' AND n.nspname <> 'information_schema')"
            " ORDER BY total_bytes DESC, 1, 2 LIMIT $1::int",
            1, params);
    json_t *largest = json_array();
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        json_t *t = json_object();
        put_text(t, r, i, "schema");
        put_text(t, r, i, "table");
        put_int(t, r, i, "total_bytes");
        put_int(t, r, i, "table_bytes");
        put_int(t, r, i, "index_bytes");
        put_int(t, r, i, "toast_bytes");
        put_int(t, r, i, "rows");
        json_array_append_new(largest, t);
    }
    PQclear(r);
    json_t *tables = json_object();
    json_object_set_new(tables, "largest", largest);

    r = run0(
        c, "tables", NULL,
        "SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'm')) AS count,"
        " coalesce(sum(pg_table_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')), 0)  AS "
        "table_bytes,"
        " coalesce(sum(pg_relation_size(c.oid)) FILTER (WHERE c.relkind = 'i'), 0)  AS index_bytes"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'm', 'i') AND (n.nspname !~ '^pg_'"
        " AND n.nspname <> 'information_schema')");
    if (r != NULL) {
        put_int(tables, r, 0, "count");
        put_int(tables, r, 0, "table_bytes");
        put_int(tables, r, 0, "index_bytes");
        c->in.index_bytes = num(r, 0, "index_bytes");
        c->in.relation_bytes = num(r, 0, "table_bytes") + c->in.index_bytes;
    }
    PQclear(r);
    json_object_set_new(c->doc, "tables", tables);
}

/* ---- cache hit ratio ---- */

static json_t *ratio(double hit, double read)
{
    double pct = health_hit_percent(hit, read);
    json_t *o = json_object();
    json_object_set_new(o, "blocks_hit", json_integer((json_int_t)hit));
    json_object_set_new(o, "blocks_read", json_integer((json_int_t)read));
    json_object_set_new(o, "ratio_percent",
                        pct >= 0 ? json_real(round(pct * 100) / 100) : json_null());
    json_object_set_new(o, "assessment", json_string(health_cache_assessment(pct)));
    return o;
}

static void check_cache(ctx_t *c)
{
    PGresult *r = run0(
        c, "cache", NULL,
        "SELECT (SELECT coalesce(sum(heap_blks_hit), 0) FROM pg_statio_user_tables) AS heap_hit,"
        " (SELECT coalesce(sum(heap_blks_read), 0) FROM pg_statio_user_tables) AS heap_read,"
        " (SELECT coalesce(sum(idx_blks_hit), 0) FROM pg_statio_user_indexes) AS idx_hit,"
        " (SELECT coalesce(sum(idx_blks_read), 0) FROM pg_statio_user_indexes) AS idx_read");
    if (r == NULL)
        return;
    double hh = num(r, 0, "heap_hit"), hr = num(r, 0, "heap_read");
    double ih = num(r, 0, "idx_hit"), ir = num(r, 0, "idx_read");
    PQclear(r);
    json_t *cache = json_object();
    json_object_set_new(cache, "heap", ratio(hh, hr));
    json_object_set_new(cache, "index", ratio(ih, ir));
    json_object_set_new(cache, "overall", ratio(hh + ih, hr + ir));
    json_object_set_new(c->doc, "cache", cache);

    double pct = health_hit_percent(hh + ih, hr + ir);
    if (hh + ih + hr + ir < MIN_CACHE_BLOCKS)
        return; /* too little traffic to judge; the score leaves it out too */
    c->in.cache_hit_percent = pct;
    const char *assessment = health_cache_assessment(pct);
    health_severity_t sev = strcmp(assessment, "poor") == 0   ? HEALTH_CRITICAL
                            : strcmp(assessment, "fair") == 0 ? HEALTH_WARNING
                                                              : HEALTH_SUCCESS;
    if (sev == HEALTH_SUCCESS)
        return;
    char msg[MSG_LEN];
    snprintf(msg, sizeof(msg),
             "Cache hit ratio is %.1f %% (%s; heap %.1f %%, index %.1f %%): reads go to disk", pct,
             assessment, health_hit_percent(hh, hr), health_hit_percent(ih, ir));
    recommend(c, sev, "cache", "cache_hit_ratio", NULL, msg,
              "Raise shared_buffers (about 25 % of RAM), add the indexes that turn scans into "
              "lookups, or add memory; a cold cache after a restart heals by itself");
}

/* ---- indexes ---- */

static bool is_dropped(ctx_t *c, const char *oid)
{
    for (int i = 0; i < c->n_dropped; i++)
        if (strcmp(c->dropped[i], oid) == 0)
            return true;
    return false;
}

static json_t *index_row(const PGresult *r, int i)
{
    json_t *o = json_object();
    put_text(o, r, i, "schema");
    put_text(o, r, i, "table");
    put_text(o, r, i, "index");
    put_int(o, r, i, "size_bytes");
    put_int(o, r, i, "scans");
    put_text(o, r, i, "definition");
    return o;
}

/* The action that removes index i of r: DROP INDEX, or DROP CONSTRAINT for one that backs
 * a constraint. */
static void drop_action(ctx_t *c, const PGresult *r, int i, char *out, size_t len)
{
    char q[NAME_LEN];
    if (has(r, i, "constraint_name")) {
        char t[NAME_LEN], k[NAME_LEN];
        quoted(c, val(r, i, "schema"), val(r, i, "table"), t, sizeof(t));
        quoted1(c, val(r, i, "constraint_name"), k, sizeof(k));
        snprintf(out, len, "ALTER TABLE %s DROP CONSTRAINT %s;", t, k);
    } else {
        quoted(c, val(r, i, "schema"), val(r, i, "index"), q, sizeof(q));
        snprintf(out, len, "DROP INDEX CONCURRENTLY IF EXISTS %s;", q);
    }
}

static int by_scans_desc(const void *a, const void *b, void *arg)
{
    const PGresult *r = arg;
    double x = num(r, *(const int *)a, "scans"), y = num(r, *(const int *)b, "scans");
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

static int by_size_desc(const void *a, const void *b, void *arg)
{
    const PGresult *r = arg;
    double x = num(r, *(const int *)a, "size_bytes"), y = num(r, *(const int *)b, "size_bytes");
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

static void report_overlaps(ctx_t *c, const PGresult *r, const int *duplicate, const int *covered,
                            json_t *dups, json_t *redundant)
{
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        int other = duplicate[i] != -1 ? duplicate[i] : covered[i];
        if (other == -1)
            continue;
        bool dup = duplicate[i] != -1;
        json_t *o = index_row(r, i);
        json_object_set_new(o, dup ? "duplicate_of" : "covered_by", jstr(val(r, other, "index")));
        json_object_set_new(o, dup ? "duplicate_of_definition" : "covered_by_definition",
                            jstr(val(r, other, "definition")));
        json_array_append_new(dup ? dups : redundant, o);
        char **grown = realloc(c->dropped, sizeof(char *) * (size_t)(c->n_dropped + 1));
        if (grown != NULL)
            c->dropped = grown;
        char *oid = grown != NULL ? strdup(val(r, i, "oid")) : NULL;
        if (oid == NULL) {
            fail(c, "indexes: out of memory");
            return;
        }
        c->dropped[c->n_dropped++] = oid;
        c->in.bad_indexes++;

        char msg[MSG_LEN], action[MSG_LEN], size[32], object[NAME_LEN];
        size_text(num(r, i, "size_bytes"), size, sizeof(size));
        snprintf(object, sizeof(object), "%s.%s", val(r, i, "schema"), val(r, i, "index"));
        drop_action(c, r, i, action, sizeof(action));
        if (dup) {
            snprintf(msg, sizeof(msg),
                     "Index %s on %s (%s) duplicates %s: same definition, maintained twice "
                     "on every write",
                     shown(c, NULL, val(r, i, "index")),
                     shown(c, val(r, i, "schema"), val(r, i, "table")), size,
                     shown(c, NULL, val(r, other, "index")));
            recommend(c, HEALTH_WARNING, "indexes", "duplicate_index", object, msg, action);
        } else {
            snprintf(msg, sizeof(msg),
                     "Index %s on %s (%s) is redundant: its columns lead %s, which serves "
                     "the same lookups",
                     shown(c, NULL, val(r, i, "index")),
                     shown(c, val(r, i, "schema"), val(r, i, "table")), size,
                     shown(c, NULL, val(r, other, "index")));
            recommend(c, HEALTH_INFO, "indexes", "redundant_index", object, msg, action);
        }
    }
}

static void report_invalid(ctx_t *c, const PGresult *r, json_t *invalid)
{
    for (int i = 0; i < PQntuples(r); i++) {
        if (flag(r, i, "valid") || flag(r, i, "building"))
            continue;
        json_array_append_new(invalid, index_row(r, i));
        c->in.bad_indexes++;
        char msg[MSG_LEN], action[MSG_LEN], q[NAME_LEN], object[NAME_LEN];
        quoted(c, val(r, i, "schema"), val(r, i, "index"), q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", val(r, i, "schema"), val(r, i, "index"));
        snprintf(msg, sizeof(msg),
                 "Index %s on %s is invalid (a failed CREATE INDEX CONCURRENTLY or REINDEX): "
                 "writes maintain it, queries never use it",
                 shown(c, NULL, val(r, i, "index")),
                 shown(c, val(r, i, "schema"), val(r, i, "table")));
        snprintf(action, sizeof(action),
                 "REINDEX INDEX CONCURRENTLY %s; (or DROP INDEX CONCURRENTLY %s; if it is not "
                 "wanted)",
                 q, q);
        recommend(c, HEALTH_WARNING, "indexes", "invalid_index", object, msg, action);
    }
}

static void report_unused(ctx_t *c, const PGresult *r, const int *order, json_t *unused)
{
    int n = PQntuples(r), too_new = 0, small = 0;
    double small_bytes = 0;
    for (int k = 0; k < n; k++) {
        int i = order[k];
        if (!flag(r, i, "valid") || flag(r, i, "unique") || has(r, i, "constraint_name") ||
            num(r, i, "scans") > 0 || strcmp(val(r, i, "kind"), "i") != 0 ||
            is_dropped(c, val(r, i, "oid")))
            continue;
        const char *created = val(r, i, "created_at");
        if (created != NULL && c->stats_reset[0] != '\0' && strcmp(created, c->stats_reset) > 0) {
            too_new++;
            continue;
        }
        double bytes = num(r, i, "size_bytes");
        bool large = bytes >= c->opt->min_relation_bytes;
        json_t *o = index_row(r, i);
        json_object_set_new(o, "created_at", jstr(created));
        json_object_set_new(
            o, "severity", json_string(health_severity_name(large ? HEALTH_WARNING : HEALTH_INFO)));
        json_array_append_new(unused, o);
        c->in.unused_index_bytes += bytes;
        if (!large) {
            small++;
            small_bytes += bytes;
            continue;
        }
        char msg[MSG_LEN], action[MSG_LEN], size[32], object[NAME_LEN];
        size_text(bytes, size, sizeof(size));
        snprintf(object, sizeof(object), "%s.%s", val(r, i, "schema"), val(r, i, "index"));
        snprintf(msg, sizeof(msg),
                 "Index %s on %s (%s) has not been used since %s: it costs space and "
                 "every write",
                 shown(c, NULL, val(r, i, "index")),
                 shown(c, val(r, i, "schema"), val(r, i, "table")), size,
                 c->stats_reset[0] != '\0' ? c->stats_reset : "statistics began");
        drop_action(c, r, i, action, sizeof(action));
        strncat(action, " -- check replicas first: scans there are not counted here",
                sizeof(action) - strlen(action) - 1);
        recommend(c, HEALTH_WARNING, "indexes", "unused_index", object, msg, action);
    }
    if (small > 0) {
        char msg[MSG_LEN], size[32];
        size_text(small_bytes, size, sizeof(size));
        snprintf(msg, sizeof(msg), "%d small unused index%s (%s in all)", small,
                 small == 1 ? "" : "es", size);
        recommend(c, HEALTH_INFO, "indexes", "unused_small_indexes", NULL, msg,
                  "Drop them when convenient; see the unused list");
    }
    if (too_new > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "%d index%s created after the last statistics reset (%s) not judged as unused",
                 too_new, too_new == 1 ? "" : "es", c->stats_reset);
        skip(c, "unused_indexes", reason);
    }
}

static void check_indexes(ctx_t *c)
{
    PGresult *r = run0(
        c, "indexes", NULL,
        "SELECT i.indexrelid AS oid, i.indrelid AS table_oid, n.nspname AS schema,"
        " t.relname AS table, x.relname AS index, x.relkind AS kind, am.amname AS am,"
        " i.indkey::text AS keys, i.indclass::text AS opclasses,"
        " i.indcollation::text AS collations, i.indoption::text AS options, i.indnatts AS natts,"
        " i.indnkeyatts AS nkeys, pg_get_expr(i.indexprs, i.indrelid) AS exprs,"
        " pg_get_expr(i.indpred, i.indrelid) AS pred, i.indisunique AS unique,"
        " i.indisvalid AS valid, (SELECT k.conname FROM pg_constraint k"
        " WHERE k.conindid = i.indexrelid   AND k.conrelid = i.indrelid"
        " AND k.contype IN ('p', 'u', 'x') LIMIT 1)  AS constraint_name,"
        " pg_relation_size(i.indexrelid) AS size_bytes, coalesce(s.idx_scan, 0) AS scans,"
        " pg_get_indexdef(i.indexrelid) AS definition, CASE"
        " WHEN current_setting('track_commit_timestamp')::bool"
        "  THEN to_char((pg_xact_commit_timestamp(x.xmin)) AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " END AS created_at, EXISTS (SELECT 1 FROM pg_stat_progress_create_index p "
        "  WHERE p.index_relid = i.indexrelid) AS building FROM pg_index i"
        " JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
        " JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = x.relam LEFT"
        " JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid WHERE (n.nspname !~ '^pg_'"
        " AND n.nspname <> 'information_schema') ORDER BY i.indexrelid");
    if (r == NULL)
        return;
    int n = PQntuples(r);
    health_index_t *idx = calloc((size_t)n + 1, sizeof(*idx));
    int *duplicate = calloc((size_t)n + 1, sizeof(int));
    int *covered = calloc((size_t)n + 1, sizeof(int));
    int *order = calloc((size_t)n + 1, sizeof(int));
    if (idx == NULL || duplicate == NULL || covered == NULL || order == NULL) {
        fail(c, "indexes: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        health_index_t *x = &idx[i];
        x->table = (unsigned int)strtoul(val(r, i, "table_oid"), NULL, 10);
        x->am = val(r, i, "am");
        x->natts = (int)num(r, i, "natts");
        x->nkeys = (int)num(r, i, "nkeys");
        x->exprs = val(r, i, "exprs");
        x->pred = val(r, i, "pred");
        x->unique = flag(r, i, "unique");
        x->constraint = has(r, i, "constraint_name");
        /* A vector that does not parse takes the index out of the comparison. */
        x->valid =
            flag(r, i, "valid") &&
            health_parse_vector(val(r, i, "keys"), x->keys, HEALTH_INDEX_MAX_KEYS) == x->natts &&
            health_parse_vector(val(r, i, "opclasses"), x->opclasses, HEALTH_INDEX_MAX_KEYS) ==
                x->nkeys &&
            health_parse_vector(val(r, i, "collations"), x->collations, HEALTH_INDEX_MAX_KEYS) ==
                x->nkeys &&
            health_parse_vector(val(r, i, "options"), x->options, HEALTH_INDEX_MAX_KEYS) ==
                x->nkeys;
    }
    health_index_overlaps(idx, n, duplicate, covered);

    json_t *indexes = json_object();
    json_t *most_used = json_array(), *unused = json_array(), *dups = json_array();
    json_t *redundant = json_array(), *invalid = json_array();
    json_object_set_new(indexes, "most_used", most_used);
    json_object_set_new(indexes, "unused", unused);
    json_object_set_new(indexes, "duplicate", dups);
    json_object_set_new(indexes, "redundant", redundant);
    json_object_set_new(indexes, "invalid", invalid);
    json_object_set_new(c->doc, "indexes", indexes);

    for (int i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, (size_t)n, sizeof(int), by_scans_desc, r);
    for (int k = 0; k < n && k < c->opt->top && num(r, order[k], "scans") > 0; k++)
        json_array_append_new(most_used, index_row(r, order[k]));

    report_overlaps(c, r, duplicate, covered, dups, redundant);
    report_invalid(c, r, invalid);

    for (int i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, (size_t)n, sizeof(int), by_size_desc, r);
    report_unused(c, r, order, unused);
    if (!c->track_commit_ts && json_array_size(unused) > 0)
        skip(c, "unused_index_age",
             "track_commit_timestamp is off, so indexes created since the last statistics "
             "reset cannot be told apart; some listed as unused may just be new");
done:
    free(idx);
    free(duplicate);
    free(covered);
    free(order);
    PQclear(r);
}

/* ---- foreign keys without an index ---- */

static void check_foreign_keys(ctx_t *c)
{
    PGresult *r = run0(
        c, "foreign_keys", NULL,
        "SELECT n.nspname AS schema, t.relname AS table, k.conname AS constraint,"
        " array_to_json(ARRAY(SELECT a.attname"
        " FROM unnest(k.conkey) WITH ORDINALITY   AS u(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = k.conrelid   AND a.attnum = u.attnum"
        " ORDER BY u.ord))::text AS columns, rn.nspname AS referenced_schema,"
        " rt.relname AS referenced_table, pg_table_size(t.oid) AS table_bytes, CASE"
        " WHEN t.reltuples >= 0 THEN t.reltuples::bigint END AS rows FROM pg_constraint k"
        " JOIN pg_class t ON t.oid = k.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " JOIN pg_class rt ON rt.oid = k.confrelid"
        " JOIN pg_namespace rn ON rn.oid = rt.relnamespace WHERE k.contype = 'f'"
        " AND k.conparentid = 0 AND (n.nspname !~ '^pg_' AND n.nspname <> 'information_schema')"
        " AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = k.conrelid "
        "  AND i.indisvalid AND i.indpred IS NULL AND i.indnkeyatts >= cardinality(k.conkey) "
        "  AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(k.conkey)]       @> "
        "k.conkey "
        "  AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(k.conkey)]       <@ "
        "k.conkey)"
        " ORDER BY table_bytes DESC, 1, 2, 3");
    json_t *list = json_array();
    json_object_set_new(c->doc, "foreign_keys_without_index", list);
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        json_t *cols = json_loads(val(r, i, "columns"), 0, NULL);
        if (!json_is_array(cols)) {
            json_decref(cols);
            continue;
        }
        json_t *o = json_object();
        put_text(o, r, i, "schema");
        put_text(o, r, i, "table");
        put_text(o, r, i, "constraint");
        json_object_set(o, "columns", cols);
        put_text(o, r, i, "referenced_schema");
        put_text(o, r, i, "referenced_table");
        put_int(o, r, i, "table_bytes");
        put_int(o, r, i, "rows");
        json_array_append_new(list, o);
        c->in.fk_without_index++;

        char t[NAME_LEN], action[MSG_LEN], msg[MSG_LEN], object[NAME_LEN], names[400] = "";
        quoted(c, val(r, i, "schema"), val(r, i, "table"), t, sizeof(t));
        int len = snprintf(action, sizeof(action), "CREATE INDEX CONCURRENTLY ON %s (", t);
        size_t k;
        json_t *col;
        json_array_foreach(cols, k, col)
        {
            char q[NAME_LEN];
            quoted1(c, json_string_value(col), q, sizeof(q));
            if (len >= 0 && (size_t)len < sizeof(action))
                len += snprintf(action + len, sizeof(action) - (size_t)len, "%s%s",
                                k > 0 ? ", " : "", q);
            size_t used = strlen(names);
            snprintf(names + used, sizeof(names) - used, "%s%s", k > 0 ? ", " : "",
                     shown(c, NULL, json_string_value(col)));
        }
        if (len >= 0 && (size_t)len < sizeof(action))
            snprintf(action + len, sizeof(action) - (size_t)len, ");");
        json_decref(cols);
        snprintf(object, sizeof(object), "%s.%s", val(r, i, "schema"), val(r, i, "table"));
        bool large = num(r, i, "table_bytes") >= c->opt->min_relation_bytes;
        snprintf(msg, sizeof(msg),
                 "Foreign key %s on %s (%s) referencing %s has no index: deletes and "
                 "updates of %s scan %s, and joins on it cannot use an index",
                 shown(c, NULL, val(r, i, "constraint")),
                 shown(c, val(r, i, "schema"), val(r, i, "table")), names,
                 shown(c, val(r, i, "referenced_schema"), val(r, i, "referenced_table")),
                 shown(c, val(r, i, "referenced_schema"), val(r, i, "referenced_table")),
                 shown(c, val(r, i, "schema"), val(r, i, "table")));
        recommend(c, large ? HEALTH_WARNING : HEALTH_INFO, "indexes", "foreign_key_without_index",
                  object, msg, action);
    }
    PQclear(r);
}

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
static bool pgstattuple_schema(ctx_t *c, char *out, size_t len)
{
    PGresult *r = run0(c, "bloat_exact", NULL,
                       "SELECT n.nspname FROM pg_extension e"
                       " JOIN pg_namespace n ON n.oid = e.extnamespace"
                       " WHERE e.extname = 'pgstattuple'");
    bool found = r != NULL && PQntuples(r) == 1;
    if (found)
        quoted1(c, PQgetvalue(r, 0, 0), out, len);
    PQclear(r);
    return found && out[0] != '\0';
}

/*
 * Replaces the estimates of the largest relations with pgstattuple's figures (tables:
 * pgstattuple_approx, dead tuples and free space beyond the fillfactor; btree indexes:
 * pgstatindex, leaf density below the fillfactor). Without the extension, or the right to
 * run it, the estimates stay and the check says why.
 */
static void measure_bloat(ctx_t *c, bloat_row_t *rows, int n)
{
    char schema[NAME_LEN];
    if (c->failed)
        return;
    bloat_row_t **big = calloc((size_t)n + 1, sizeof(*big));
    if (big == NULL) {
        fail(c, "bloat: out of memory");
        return;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].size >= c->opt->min_relation_bytes)
            big[m++] = &rows[i];
    if (m == 0 || !pgstattuple_schema(c, schema, sizeof(schema))) {
        if (m > 0 && !c->failed)
            skip(c, "bloat_exact",
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
    PQclear(run0(c, "bloat_exact", NULL, "SET statement_timeout = '" MEASURE_TIMEOUT "'"));
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
            error_text(r, c->conn, msg, sizeof(msg));
            PQclear(r);
            if (PQstatus(c->conn) != CONNECTION_OK) {
                fail(c, "bloat_exact: %s", msg);
                break;
            }
            if (denied) {
                snprintf(reason, sizeof(reason),
                         "%s; grant pg_stat_scan_tables for measured bloat (estimated instead)",
                         msg);
                skip(c, "bloat_exact", reason);
                break;
            }
            continue; /* this relation keeps its estimate */
        }
        if (b->index == NULL) {
            double len = num(r, 0, "table_len");
            b->wasted = num(r, 0, "dead_tuple_len") + num(r, 0, "approx_free_space") -
                        len * (100 - b->fillfactor) / 100.0;
        } else {
            double leaves = num(r, 0, "leaf_pages"), density = num(r, 0, "avg_leaf_density");
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
    PQclear(run0(c, "bloat_exact", NULL, "SET statement_timeout = '" STATEMENT_TIMEOUT "'"));
    if (timed_out > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "pgstattuple took over " MEASURE_TIMEOUT
                 " on %d relation%s, whose bloat is estimated instead",
                 timed_out, timed_out == 1 ? "" : "s");
        skip(c, "bloat_exact", reason);
    }
}

static void bloat_recommend(ctx_t *c, const bloat_row_t *b)
{
    double pct = b->size > 0 ? b->wasted * 100 / b->size : 0;
    if (b->wasted < c->opt->min_relation_bytes || pct < 20)
        return;
    health_severity_t sev = pct >= 50 ? HEALTH_WARNING : HEALTH_INFO;
    char msg[MSG_LEN], action[MSG_LEN], q[NAME_LEN], object[NAME_LEN], wasted[32], size[32];
    size_text(b->wasted, wasted, sizeof(wasted));
    size_text(b->size, size, sizeof(size));
    const char *how = b->exact ? "measured by pgstattuple" : "estimated";
    if (b->index == NULL) {
        quoted(c, b->schema, b->table, q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", b->schema, b->table);
        snprintf(msg, sizeof(msg), "Table %s is %.0f %% bloat: %s of %s wasted (%s)",
                 shown(c, b->schema, b->table), pct, wasted, size, how);
        snprintf(action, sizeof(action),
                 "VACUUM (ANALYZE) %s; makes the space reusable; to give it back, VACUUM FULL "
                 "%s; (exclusive lock) or pg_repack",
                 q, q);
        recommend(c, sev, "bloat", "table_bloat", object, msg, action);
    } else {
        quoted(c, b->schema, b->index, q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", b->schema, b->index);
        snprintf(msg, sizeof(msg), "Index %s on %s is %.0f %% bloat: %s of %s wasted (%s)",
                 shown(c, NULL, b->index), shown(c, b->schema, b->table), pct, wasted, size, how);
        snprintf(action, sizeof(action), "REINDEX INDEX CONCURRENTLY %s;", q);
        recommend(c, sev, "bloat", "index_bloat", object, msg, action);
    }
}

static json_t *bloat_list(ctx_t *c, bloat_row_t *rows, int n, bool indexes)
{
    json_t *list = json_array();
    int listed = 0;
    for (int i = 0; i < n && listed < c->opt->top; i++) {
        bloat_row_t *b = &rows[i];
        if ((b->index != NULL) != indexes || b->wasted <= 0)
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "schema", jstr(b->schema));
        json_object_set_new(o, "table", jstr(b->table));
        if (indexes)
            json_object_set_new(o, "index", jstr(b->index));
        json_object_set_new(o, "size_bytes", json_integer((json_int_t)b->size));
        json_object_set_new(o, "wasted_bytes", json_integer((json_int_t)b->wasted));
        json_object_set_new(o, "wasted_percent",
                            jreal(b->size > 0 ? b->wasted * 100 / b->size : 0));
        json_object_set_new(o, "method", json_string(b->exact ? "pgstattuple" : "estimate"));
        json_array_append_new(list, o);
        listed++;
    }
    return list;
}

static void check_bloat(ctx_t *c)
{
    PGresult *t =
        run0(c, "bloat", NULL,
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
        run0(c, "bloat", NULL,
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
        fail(c, "bloat: out of memory");
        goto done;
    }
    for (int i = 0; i < nt; i++) {
        double tuples = num(t, i, "tuples");
        health_table_stats_t s = {
            .pages = num(t, i, "pages"),
            .tuples = tuples,
            .block_size = c->block_size,
            .fillfactor = (int)num(t, i, "fillfactor"),
            .data_width = num(t, i, "width"),
            .natts = (int)num(t, i, "natts"),
            .has_nulls = flag(t, i, "nulls"),
        };
        /* Rows without column statistics cannot be sized (never analyzed, or no right to
         * read them); an empty analyzed table has no statistics and needs none. */
        if (tuples < 0 || (tuples > 0 && num(t, i, "with_stats") < s.natts)) {
            unknown++;
            continue;
        }
        bloat_row_t *b = &rows[n++];
        b->oid = val(t, i, "oid");
        b->schema = val(t, i, "schema");
        b->table = val(t, i, "table");
        b->size = s.pages * c->block_size;
        b->fillfactor = s.fillfactor;
        b->wasted = health_table_bloat(&s);
    }
    for (int i = 0; i < nx; i++) {
        double tuples = num(x, i, "tuples");
        health_btree_stats_t s = {
            .pages = num(x, i, "pages"),
            .tuples = tuples,
            .block_size = c->block_size,
            .fillfactor = (int)num(x, i, "fillfactor"),
            .data_width = num(x, i, "width"),
        };
        if (tuples < 0 || (tuples > 0 && num(x, i, "with_stats") < num(x, i, "natts"))) {
            unknown++;
            continue;
        }
        bloat_row_t *b = &rows[n++];
        b->oid = val(x, i, "oid");
        b->schema = val(x, i, "schema");
        b->table = val(x, i, "table");
        b->index = val(x, i, "index");
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
        skip(c, "bloat", reason);
    }
done:
    free(rows);
    PQclear(t);
    PQclear(x);
}

/* ---- VACUUM and ANALYZE ---- */

static void check_maintenance(ctx_t *c)
{
    PGresult *r = run0(c, "maintenance", NULL,
                       "SELECT s.schemaname AS schema, s.relname AS table, s.n_live_tup AS live,"
                       " s.n_dead_tup AS dead, s.n_mod_since_analyze AS modified,"
                       " to_char((s.last_vacuum) AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_vacuum,"
                       " to_char((s.last_autovacuum) AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_autovacuum,"
                       " to_char((s.last_analyze) AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_analyze,"
                       " to_char((s.last_autoanalyze) AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_autoanalyze,"
                       " coalesce((SELECT split_part(o, '=', 2)::bool FROM unnest(c.reloptions) o "
                       "  WHERE o LIKE 'autovacuum_enabled=%'), true) AS autovacuum_enabled"
                       " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                       " ORDER BY s.n_dead_tup DESC, 1, 2");
    json_t *vacuum = json_array(), *analyze = json_array();
    json_t *m = json_object();
    json_object_set_new(m, "vacuum", vacuum);
    json_object_set_new(m, "analyze", analyze);
    json_object_set_new(c->doc, "maintenance", m);
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        double live = num(r, i, "live"), dead = num(r, i, "dead");
        bool analyzed = has(r, i, "last_analyze") || has(r, i, "last_autoanalyze");
        bool needs_vacuum = health_needs_vacuum(live, dead);
        bool needs_analyze = health_needs_analyze(live, num(r, i, "modified"), analyzed);
        if (!needs_vacuum && !needs_analyze)
            continue;
        json_t *o = json_object();
        put_text(o, r, i, "schema");
        put_text(o, r, i, "table");
        put_int(o, r, i, "live");
        put_int(o, r, i, "dead");
        json_object_set_new(o, "dead_percent",
                            jreal(live + dead > 0 ? dead * 100 / (live + dead) : 0));
        put_int(o, r, i, "modified");
        put_text(o, r, i, "last_vacuum");
        put_text(o, r, i, "last_autovacuum");
        put_text(o, r, i, "last_analyze");
        put_text(o, r, i, "last_autoanalyze");
        bool autovac = flag(r, i, "autovacuum_enabled");
        json_object_set_new(o, "autovacuum_enabled", json_boolean(autovac));
        json_array_append_new(needs_vacuum ? vacuum : analyze, o);

        char q[NAME_LEN], msg[MSG_LEN], action[MSG_LEN], object[NAME_LEN];
        quoted(c, val(r, i, "schema"), val(r, i, "table"), q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", val(r, i, "schema"), val(r, i, "table"));
        if (needs_vacuum) {
            const char *last = has(r, i, "last_autovacuum") ? val(r, i, "last_autovacuum")
                               : has(r, i, "last_vacuum")   ? val(r, i, "last_vacuum")
                                                            : "never";
            snprintf(msg, sizeof(msg),
                     "Table %s needs VACUUM: %.0f dead rows, %.0f %% of its rows (last "
                     "vacuum: %s)%s",
                     shown(c, val(r, i, "schema"), val(r, i, "table")), dead,
                     dead * 100 / (live + dead), last,
                     autovac ? "" : "; autovacuum is disabled for it");
            if (autovac)
                snprintf(action, sizeof(action), "VACUUM (ANALYZE) %s;", q);
            else
                snprintf(action, sizeof(action),
                         "VACUUM (ANALYZE) %s; ALTER TABLE %s RESET (autovacuum_enabled);", q, q);
            recommend(c, HEALTH_WARNING, "maintenance", "needs_vacuum", object, msg, action);
            c->in.tables_needing_vacuum++;
        } else {
            snprintf(msg, sizeof(msg),
                     "Table %s needs ANALYZE: %s, so the planner's estimates are off",
                     shown(c, val(r, i, "schema"), val(r, i, "table")),
                     analyzed ? "many rows changed since its statistics were taken"
                              : "it was never analyzed");
            snprintf(action, sizeof(action), "ANALYZE %s;", q);
            recommend(c, HEALTH_INFO, "maintenance", "needs_analyze", object, msg, action);
            c->in.tables_needing_analyze++;
        }
    }
    PQclear(r);
}

/* ---- connections, sessions, locks ---- */

static void check_connections(ctx_t *c)
{
    PGresult *r = run0(c, "connections", NULL,
                       "SELECT CASE WHEN backend_type IS NULL THEN 'hidden'"
                       "  ELSE coalesce(state, 'unknown') END AS state, count(*) AS n,"
                       " current_setting('max_connections')::int AS max FROM pg_stat_activity"
                       " WHERE backend_type = 'client backend'"
                       /* What other roles' sessions look like to a role without
                        * pg_read_all_stats: no type, no state, but a user and a database. */
                       " OR (backend_type IS NULL AND datname IS NOT NULL"
                       "     AND usesysid IS NOT NULL)"
                       " GROUP BY 1 ORDER BY 2 DESC, 1");
    if (r == NULL)
        return;
    json_t *by_state = json_object();
    double total = 0, hidden = 0;
    double max = PQntuples(r) > 0 ? num(r, 0, "max") : 0;
    for (int i = 0; i < PQntuples(r); i++) {
        json_object_set_new(by_state, val(r, i, "state"), json_integer((json_int_t)num(r, i, "n")));
        total += num(r, i, "n");
        if (strcmp(val(r, i, "state"), "hidden") == 0)
            hidden = num(r, i, "n");
    }
    PQclear(r);
    if (max <= 0) {
        r = run0(c, "connections", NULL, "SELECT current_setting('max_connections')::int AS max");
        max = r != NULL ? num(r, 0, "max") : 0;
        PQclear(r);
    }
    double pct = max > 0 ? total * 100 / max : 0;
    json_t *o = json_object();
    json_object_set_new(o, "max_connections", json_integer((json_int_t)max));
    json_object_set_new(o, "total", json_integer((json_int_t)total));
    json_object_set_new(o, "usage_percent", jreal(pct));
    json_object_set_new(o, "by_state", by_state);
    json_object_set_new(c->doc, "connections", o);
    c->in.connection_percent = pct;
    if (hidden > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "%.0f session%s of other roles show%s no state or query to this role, so "
                 "long-running and idle-in-transaction sessions among them are not seen; grant "
                 "it pg_read_all_stats (or pg_monitor)",
                 hidden, hidden == 1 ? "" : "s", hidden == 1 ? "s" : "");
        skip(c, "sessions", reason);
    }
    if (pct >= 80) {
        char msg[MSG_LEN];
        snprintf(msg, sizeof(msg), "%.0f of max_connections %.0f in use (%.0f %%)", total, max,
                 pct);
        recommend(c, pct >= 90 ? HEALTH_CRITICAL : HEALTH_WARNING, "connections",
                  "connection_usage", NULL, msg,
                  "Pool connections (pgturbo serve in transaction mode), close idle ones; raise "
                  "max_connections only with memory to spare");
    }
}

static void check_sessions(ctx_t *c)
{
    char long_s[32], idle_s[32];
    snprintf(long_s, sizeof(long_s), "%g", c->opt->long_query_s);
    snprintf(idle_s, sizeof(idle_s), "%g", c->opt->idle_in_xact_s);
    const char *params[] = {long_s, idle_s};
    PGresult *r = run(
        c, "sessions", NULL,
        "SELECT pid, usename AS user, application_name, client_addr::text AS client_addr, state,"
        " extract(epoch FROM now() - query_start)::float8 AS query_s, extract(epoch"
        " FROM now() - state_change)::float8 AS idle_s, extract(epoch"
        " FROM now() - xact_start)::float8 AS xact_s, left(query, 500) AS query,"
        " wait_event_type, wait_event FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND ((state = 'active'"
        " AND now() - query_start >= make_interval(secs => $1::float8))"
        "  OR (state IN ('idle in transaction', 'idle in transaction (aborted)')    "
        "  AND now() - state_change >= make_interval(secs => $2::float8))) ORDER BY query_start,"
        " pid",
        2, params);
    json_t *running = json_array(), *idle = json_array();
    json_t *s = json_object();
    json_object_set_new(s, "long_running", running);
    json_object_set_new(s, "idle_in_transaction", idle);
    json_object_set_new(s, "long_query_threshold_s", jreal(c->opt->long_query_s));
    json_object_set_new(s, "idle_in_transaction_threshold_s", jreal(c->opt->idle_in_xact_s));
    json_object_set_new(c->doc, "sessions", s);
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        bool active = strcmp(val(r, i, "state"), "active") == 0;
        json_t *o = json_object();
        put_int(o, r, i, "pid");
        put_text(o, r, i, "user");
        put_text(o, r, i, "application_name");
        put_text(o, r, i, "client_addr");
        put_text(o, r, i, "state");
        put_real(o, r, i, active ? "query_s" : "idle_s");
        put_real(o, r, i, "xact_s");
        put_text(o, r, i, "wait_event_type");
        put_text(o, r, i, "wait_event");
        put_text(o, r, i, "query");
        json_array_append_new(active ? running : idle, o);
        c->in.problem_sessions++;

        char msg[MSG_LEN], action[MSG_LEN], object[64];
        const char *pid = val(r, i, "pid");
        const char *user = val(r, i, "user") ? val(r, i, "user") : "?";
        const char *app = val(r, i, "application_name") ? val(r, i, "application_name") : "";
        snprintf(object, sizeof(object), "pid %s", pid);
        if (active) {
            snprintf(msg, sizeof(msg), "Query of pid %s (user %s%s%s) has run for %.0f s", pid,
                     user, app[0] ? ", application " : "", app, num(r, i, "query_s"));
            snprintf(action, sizeof(action),
                     "Look at its plan (EXPLAIN); stop it with SELECT pg_cancel_backend(%s); "
                     "and bound queries with statement_timeout",
                     pid);
            recommend(c, HEALTH_WARNING, "sessions", "long_running_query", object, msg, action);
        } else {
            snprintf(msg, sizeof(msg),
                     "Session pid %s (user %s%s%s) has been idle in a transaction for %.0f s "
                     "(transaction open %.0f s): it holds its locks and keeps VACUUM from "
                     "removing dead rows",
                     pid, user, app[0] ? ", application " : "", app, num(r, i, "idle_s"),
                     num(r, i, "xact_s"));
            snprintf(action, sizeof(action),
                     "Commit or roll back promptly in the application; set "
                     "idle_in_transaction_session_timeout; end this one with SELECT "
                     "pg_terminate_backend(%s);",
                     pid);
            recommend(c, HEALTH_WARNING, "sessions", "idle_in_transaction", object, msg, action);
        }
    }
    PQclear(r);
}

static void check_locks(ctx_t *c)
{
    /* pg_blocking_pids gives 0 for a prepared transaction, which has no session. */
    PGresult *r =
        run0(c, "locks", NULL,
             "SELECT w.pid, w.usename AS user, w.application_name, left(w.query, 500) AS query,"
             " w.wait_event_type, w.wait_event,"
             " extract(epoch FROM now() - (SELECT min(l.waitstart) FROM pg_locks l"
             "   WHERE l.pid = w.pid AND NOT l.granted))::float8 AS waiting_s,"
             " bp.pid AS blocker_pid, b.usename AS blocker_user,"
             " CASE WHEN bp.pid = 0 THEN 'prepared transaction' ELSE b.state END AS blocker_state,"
             " left(b.query, 500) AS blocker_query,"
             " extract(epoch FROM now() - b.xact_start)::float8 AS blocker_xact_s"
             " FROM pg_stat_activity w"
             " CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)"
             " LEFT JOIN pg_stat_activity b ON b.pid = bp.pid"
             " WHERE w.datname = current_database() AND w.backend_type = 'client backend'"
             " ORDER BY w.pid, bp.pid");
    json_t *waits = json_array();
    json_t *locks = json_object();
    json_object_set_new(locks, "waits", waits);
    json_object_set_new(c->doc, "locks", locks);
    json_t *cur = NULL;
    const char *cur_pid = "";
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        if (strcmp(val(r, i, "pid"), cur_pid) != 0) {
            cur_pid = val(r, i, "pid");
            cur = json_object();
            put_int(cur, r, i, "pid");
            put_text(cur, r, i, "user");
            put_text(cur, r, i, "application_name");
            put_real(cur, r, i, "waiting_s");
            put_text(cur, r, i, "wait_event_type");
            put_text(cur, r, i, "wait_event");
            put_text(cur, r, i, "query");
            json_object_set_new(cur, "blocked_by", json_array());
            json_array_append_new(waits, cur);
            c->in.problem_sessions++;

            char msg[MSG_LEN], action[MSG_LEN], object[64];
            const char *blocker = val(r, i, "blocker_pid");
            const char *state = val(r, i, "blocker_state") ? val(r, i, "blocker_state") : "?";
            snprintf(object, sizeof(object), "pid %s", cur_pid);
            snprintf(msg, sizeof(msg),
                     "Session pid %s has waited %.0f s for a lock held by pid %s (%s)%s", cur_pid,
                     num(r, i, "waiting_s"), blocker, state,
                     i + 1 < PQntuples(r) && strcmp(val(r, i + 1, "pid"), cur_pid) == 0
                         ? " and others"
                         : "");
            if (strcmp(blocker, "0") == 0)
                snprintf(action, sizeof(action),
                         "COMMIT PREPARED or ROLLBACK PREPARED the transaction holding it (see "
                         "pg_prepared_xacts); set lock_timeout in the waiting application");
            else
                snprintf(action, sizeof(action),
                         "Find why pid %s holds its lock so long (see sessions); end it with "
                         "SELECT pg_terminate_backend(%s); set lock_timeout in the waiting "
                         "application",
                         blocker, blocker);
            recommend(c, HEALTH_WARNING, "locks", "lock_wait", object, msg, action);
        }
        json_t *b = json_object();
        json_object_set_new(b, "pid", json_integer(strtoll(val(r, i, "blocker_pid"), NULL, 10)));
        json_object_set_new(b, "user", jstr(val(r, i, "blocker_user")));
        json_object_set_new(b, "state", jstr(val(r, i, "blocker_state")));
        json_object_set_new(b, "xact_s",
                            has(r, i, "blocker_xact_s") ? jreal(num(r, i, "blocker_xact_s"))
                                                        : json_null());
        json_object_set_new(b, "query", jstr(val(r, i, "blocker_query")));
        json_array_append_new(json_object_get(cur, "blocked_by"), b);
    }
    PQclear(r);
}

/* ---- sequences ---- */

static void check_sequences(ctx_t *c)
{
    PGresult *r = run0(
        c, "sequences", NULL,
        "SELECT n.nspname AS schema, c.relname AS sequence, s.seqmin::text AS min,"
        " s.seqmax::text AS max, s.seqincrement::text AS increment,"
        " has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable, CASE"
        " WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE')"
        "  THEN pg_sequence_last_value(c.oid)::text END AS last_value,"
        " col.schema AS column_schema, col.table AS column_table, col.name AS column_name,"
        " col.type AS column_type, col.max AS column_max FROM pg_sequence s"
        " JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT"
        " JOIN LATERAL (SELECT tn.nspname AS schema, t.relname AS table, a.attname AS name,   "
        "format_type(a.atttypid, NULL) AS type, "
        "  CASE a.atttypid WHEN 'int2'::regtype THEN 32767    WHEN 'int4'::regtype THEN 2147483647"
        " END AS max   FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid "
        "  JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
        "  AND d.refobjsubid > 0 LIMIT 1) col ON true WHERE (n.nspname !~ '^pg_'"
        " AND n.nspname <> 'information_schema') ORDER BY 1, 2");
    json_t *list = json_array();
    json_object_set_new(c->doc, "sequences", list);
    int unreadable = 0;
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        if (!flag(r, i, "readable")) {
            unreadable++;
            continue;
        }
        long double last = has(r, i, "last_value") ? strtold(val(r, i, "last_value"), NULL) : 0;
        double pct = health_sequence_used_percent(
            last, has(r, i, "last_value"), strtold(val(r, i, "min"), NULL),
            strtold(val(r, i, "max"), NULL), strtold(val(r, i, "increment"), NULL),
            has(r, i, "column_max") ? strtold(val(r, i, "column_max"), NULL) : 0);
        if (pct < 50)
            continue;
        json_t *o = json_object();
        put_text(o, r, i, "schema");
        put_text(o, r, i, "sequence");
        json_object_set_new(o, "used_percent", json_real(round(pct * 100) / 100));
        put_text(o, r, i, "last_value");
        put_text(o, r, i, "max");
        put_text(o, r, i, "column_table");
        put_text(o, r, i, "column_name");
        put_text(o, r, i, "column_type");
        json_array_append_new(list, o);
        if (pct < 75)
            continue;
        bool critical = pct >= 90;
        if (critical)
            c->in.sequences_critical++;
        else
            c->in.sequences_warning++;
        char q[NAME_LEN], msg[MSG_LEN], action[MSG_LEN], object[NAME_LEN];
        quoted(c, val(r, i, "schema"), val(r, i, "sequence"), q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", val(r, i, "schema"), val(r, i, "sequence"));
        if (has(r, i, "column_name")) {
            char t[NAME_LEN], col[NAME_LEN];
            quoted(c, val(r, i, "column_schema"), val(r, i, "column_table"), t, sizeof(t));
            quoted1(c, val(r, i, "column_name"), col, sizeof(col));
            snprintf(msg, sizeof(msg),
                     "Sequence %s is %.1f %% used (%s of %s, for column %s of %s, type %s): "
                     "inserts fail when it runs out",
                     shown(c, val(r, i, "schema"), val(r, i, "sequence")), pct,
                     val(r, i, "last_value"),
                     has(r, i, "column_max") ? val(r, i, "column_max") : val(r, i, "max"),
                     shown(c, NULL, val(r, i, "column_name")),
                     shown(c, val(r, i, "column_schema"), val(r, i, "column_table")),
                     val(r, i, "column_type"));
            snprintf(action, sizeof(action),
                     "ALTER TABLE %s ALTER COLUMN %s TYPE bigint; ALTER SEQUENCE %s AS bigint; "
                     "(rewrites the table: plan a window)",
                     t, col, q);
        } else {
            snprintf(msg, sizeof(msg),
                     "Sequence %s is %.1f %% used (%s of %s): nextval fails when it runs out",
                     shown(c, val(r, i, "schema"), val(r, i, "sequence")), pct,
                     val(r, i, "last_value"), val(r, i, "max"));
            snprintf(action, sizeof(action),
                     "ALTER SEQUENCE %s AS bigint MAXVALUE "
                     "9223372036854775807;",
                     q);
        }
        recommend(c, critical ? HEALTH_CRITICAL : HEALTH_WARNING, "sequences",
                  "sequence_exhaustion", object, msg, action);
    }
    PQclear(r);
    if (unreadable > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "%d sequence%s this role may not read (needs SELECT or USAGE on them)", unreadable,
                 unreadable == 1 ? "" : "s");
        skip(c, "sequences", reason);
    }
}

/* ---- replication ---- */

static void check_replication(ctx_t *c)
{
    PGresult *r =
        run0(c, "replication", NULL,
             "SELECT application_name, client_addr::text AS client_addr, state, sync_state,"
             " extract(epoch FROM write_lag)::float8 AS write_lag_s, extract(epoch"
             " FROM flush_lag)::float8 AS flush_lag_s, extract(epoch"
             " FROM replay_lag)::float8 AS replay_lag_s, CASE WHEN pg_is_in_recovery() THEN NULL"
             "  ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END AS lag_bytes"
             " FROM pg_stat_replication ORDER BY 1, 2");
    json_t *replicas = json_array();
    json_t *o = json_object();
    json_object_set_new(o, "replicas", replicas);
    json_object_set_new(c->doc, "replication", o);
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        json_t *x = json_object();
        put_text(x, r, i, "application_name");
        put_text(x, r, i, "client_addr");
        put_text(x, r, i, "state");
        put_text(x, r, i, "sync_state");
        put_real(x, r, i, "write_lag_s");
        put_real(x, r, i, "flush_lag_s");
        put_real(x, r, i, "replay_lag_s");
        put_int(x, r, i, "lag_bytes");
        json_array_append_new(replicas, x);
        double lag = num(r, i, "replay_lag_s");
        if (lag < c->opt->replica_lag_s)
            continue;
        c->in.lagging_replicas++;
        char msg[MSG_LEN], object[NAME_LEN];
        const char *name = val(r, i, "application_name") ? val(r, i, "application_name") : "";
        snprintf(object, sizeof(object), "%s", name);
        snprintf(msg, sizeof(msg), "Replica %s (%s) replays %.0f s behind", name,
                 val(r, i, "client_addr") ? val(r, i, "client_addr") : "local", lag);
        recommend(c, lag >= 10 * c->opt->replica_lag_s ? HEALTH_CRITICAL : HEALTH_WARNING,
                  "replication", "replica_lag", object, msg,
                  "Check the replica's I/O and CPU and the network; long queries on the replica "
                  "with hot_standby_feedback or max_standby_streaming_delay hold replay back");
    }
    PQclear(r);
    r = run0(c, "replication", NULL,
             "SELECT pg_is_in_recovery() AS in_recovery, extract(epoch"
             " FROM now() - pg_last_xact_replay_timestamp())::float8  AS replay_delay_s");
    if (r != NULL) {
        bool replica = flag(r, 0, "in_recovery");
        json_object_set_new(o, "role", json_string(replica ? "replica" : "primary"));
        if (replica)
            put_real(o, r, 0, "replay_delay_s");
    }
    PQclear(r);
}

/* ---- the daemon's figures ---- */

static void check_daemon(ctx_t *c)
{
    const json_t *d = c->opt->daemon;
    if (d == NULL) {
        json_object_set_new(c->doc, "daemon", json_null());
        return;
    }
    json_object_set_new(c->doc, "daemon", json_deep_copy(d));
    json_t *queries = json_object_get(d, "queries");
    json_int_t total = json_integer_value(json_object_get(queries, "total"));
    json_int_t slow = json_integer_value(json_object_get(queries, "slow"));
    if (total > 0) {
        c->in.slow_query_ratio = (double)slow / (double)total;
        double pct = c->in.slow_query_ratio * 100;
        if (pct >= 1) {
            char msg[MSG_LEN];
            snprintf(msg, sizeof(msg), "%.1f %% of queries are slow (%lld of %lld)", pct,
                     (long long)slow, (long long)total);
            recommend(c, pct >= 5 ? HEALTH_CRITICAL : HEALTH_WARNING, "queries", "slow_queries",
                      NULL, msg, "See the slow log (GET /api/v1/slow) and pgturbo advise");
        }
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(d, "pools"), i, p)
    {
        json_int_t waiting = json_integer_value(json_object_get(p, "cl_waiting"));
        if (waiting <= 0)
            continue;
        char msg[MSG_LEN], object[NAME_LEN];
        const char *db = json_string_value(json_object_get(p, "database"));
        const char *user = json_string_value(json_object_get(p, "user"));
        snprintf(object, sizeof(object), "%s/%s", db ? db : "", user ? user : "");
        snprintf(msg, sizeof(msg),
                 "Pool %s has %lld client%s waiting for a server connection (longest %.0f ms)",
                 object, (long long)waiting, waiting == 1 ? "" : "s",
                 (double)json_integer_value(json_object_get(p, "maxwait_us")) / 1000);
        recommend(c, HEALTH_WARNING, "pool", "pool_waiting", object, msg,
                  "Raise pool_size if PostgreSQL has room, or shorten transactions");
    }
}

/* ---- score and recommendations ---- */

static void finish(ctx_t *c)
{
    health_score_t s;
    health_score(&c->in, &s);
    json_object_set_new(c->doc, "score", json_integer(s.score));
    json_t *breakdown = json_array();
    for (int i = 0; i < HEALTH_FACTORS; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "factor", json_string(s.penalties[i].factor));
        json_object_set_new(o, "penalty", jreal(s.penalties[i].penalty));
        json_object_set_new(o, "max", jreal(s.penalties[i].max));
        json_array_append_new(breakdown, o);
    }
    json_object_set_new(c->doc, "score_breakdown", breakdown);

    recommend_remainders(c);
    if (json_array_size(c->recs[HEALTH_CRITICAL]) + json_array_size(c->recs[HEALTH_WARNING]) == 0)
        recommend(c, HEALTH_SUCCESS, "general", "all_good", NULL, "All metrics look good!",
                  "Continue monitoring");
    json_t *all = json_array();
    for (int sev = HEALTH_CRITICAL; sev >= HEALTH_SUCCESS; sev--)
        json_array_extend(all, c->recs[sev]);
    json_object_set_new(c->doc, "recommendations", all);
    json_object_set(c->doc, "skipped", c->skipped);
}

json_t *report_build(PGconn *conn, const report_options_t *opt, char *err, size_t errlen)
{
    ctx_t c = {.conn = conn, .opt = opt, .err = err, .errlen = errlen};
    c.in = (health_inputs_t){
        .cache_hit_percent = -1, .connection_percent = -1, .slow_query_ratio = -1};
    json_t *result = NULL;
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "not connected");
        return NULL;
    }
    int version = PQserverVersion(conn);
    if (version < 140000) {
        snprintf(err, errlen, "PostgreSQL 14 or later is needed; this server is %d.%d",
                 version / 10000, version % 10000);
        return NULL;
    }
    c.doc = json_object();
    c.skipped = json_array();
    for (int i = 0; i <= HEALTH_CRITICAL; i++)
        c.recs[i] = json_array();
    if (PQsetClientEncoding(conn, "UTF8") != 0) {
        fail(&c, "cannot set client_encoding: %s", PQerrorMessage(conn));
        goto done;
    }
    /* A report waits for no lock and no query long; the extended protocol takes one
     * statement at a time. */
    PQclear(run0(&c, "settings", NULL, "SET statement_timeout = '" STATEMENT_TIMEOUT "'"));
    PQclear(run0(&c, "settings", NULL, "SET lock_timeout = '5s'"));
    PQclear(run0(&c, "settings", NULL, "SET idle_in_transaction_session_timeout = 0"));
    if (c.failed)
        goto done;

    check_database(&c);
    check_tables(&c);
    check_cache(&c);
    check_indexes(&c);
    check_foreign_keys(&c);
    check_bloat(&c);
    check_maintenance(&c);
    check_connections(&c);
    check_sessions(&c);
    check_locks(&c);
    check_sequences(&c);
    check_replication(&c);
    check_daemon(&c);
    if (c.failed)
        goto done;
    finish(&c);
    result = c.doc;
    c.doc = NULL;
done:
    json_decref(c.doc);
    json_decref(c.skipped);
    for (int i = 0; i <= HEALTH_CRITICAL; i++)
        json_decref(c.recs[i]);
    for (int i = 0; i < c.n_dropped; i++)
        free(c.dropped[i]);
    free(c.dropped);
    return result;
}
