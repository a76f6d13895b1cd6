/*
 * partition.c
 *    pgturbo partition: making, filling and retiring range partitions; see partition.h.
 *
 * The session works in UTC (SET TimeZone), so that the bounds PostgreSQL prints for a
 * timestamptz partition read as midnight UTC, as pgturbo writes them, and with a lock
 * timeout, so that a busy table makes a run fail quickly rather than queue behind a long
 * transaction and block the application's queries queued behind it.
 *
 * Rows that sit in the default partition would make CREATE TABLE ... PARTITION OF fail for
 * their range (pg_partman #605). So, in one transaction, the default partition is detached,
 * the new partition made, the rows moved into it and the default attached again.
 */
#include "partition.h"

#include "pqmsg.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define LOCK_TIMEOUT "'5s'"
#define BOUND_MIN    (INT64_MIN / 4) /* MINVALUE */
#define BOUND_MAX    (INT64_MAX / 4) /* MAXVALUE */

#define OID_DATE        1082
#define OID_TIMESTAMP   1114
#define OID_TIMESTAMPTZ 1184

/* A partition of a table, as the catalog says. */
typedef struct part_child {
    char schema[PARTBOUNDS_NAME_LEN];
    char name[PARTBOUNDS_NAME_LEN];
    bool is_default;
    bool detach_pending; /* a DETACH ... CONCURRENTLY that did not finish */
    bool exact;          /* both bounds are midnights */
    int64_t lo, hi;      /* days; BOUND_MIN/BOUND_MAX for MINVALUE/MAXVALUE */
    double rows;         /* reltuples; -1 when never analyzed */
    long long bytes;     /* pg_total_relation_size */
} part_child_t;

typedef struct part_children {
    part_child_t *items;
    int n;
} part_children_t;

/* The session settings every command starts with. */
static int session_begin(PGconn *conn, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, "SET TimeZone = 'UTC'; SET lock_timeout = " LOCK_TIMEOUT
                                 "; SET client_min_messages = warning");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(res);
    if (rc != 0)
        pqmsg_describe(err, errlen, "cannot set up the session", conn);
    return rc;
}

partition_status_t partition_resolve(PGconn *conn, const char *table, const char *column,
                                     part_table_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (session_begin(conn, err, errlen) != 0)
        return PARTITION_FAIL_DB;
    const char *params[] = {table, column != NULL ? column : ""};
    PGresult *res = PQexecParams(
        conn,
        "SELECT c.oid, n.nspname, c.relname, c.relkind, a.atttypid, "
        "format_type(a.atttypid, a.atttypmod) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 "
        "AND NOT a.attisdropped WHERE c.oid = to_regclass($1)",
        2, NULL, params, NULL, NULL, 0);
    partition_status_t rc = PARTITION_OK;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (state != NULL && strcmp(state, "42602") == 0) { /* invalid_name */
            part_set_err(err, errlen, "\"%s\" is not a table name", table);
            rc = PARTITION_FAIL_REFUSED;
        } else {
            pqmsg_describe(err, errlen, "cannot look up the table", conn);
            rc = PARTITION_FAIL_DB;
        }
    } else if (PQntuples(res) != 1) {
        part_set_err(err, errlen, "table \"%s\" does not exist", table);
        rc = PARTITION_FAIL_REFUSED;
    } else {
        out->oid = (unsigned)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(out->schema, sizeof(out->schema), "%s", PQgetvalue(res, 0, 1));
        snprintf(out->name, sizeof(out->name), "%s", PQgetvalue(res, 0, 2));
        snprintf(out->stem, sizeof(out->stem), "%s", out->name);
        out->relkind = PQgetvalue(res, 0, 3)[0];
        snprintf(out->column_type, sizeof(out->column_type), "%s", PQgetvalue(res, 0, 5));
        unsigned type = (unsigned)strtoul(PQgetvalue(res, 0, 4), NULL, 10);
        out->with_tz = type == OID_TIMESTAMPTZ;
        if (out->relkind != 'r' && out->relkind != 'p') {
            part_set_err(err, errlen, "\"%s\" is not a table", table);
            rc = PARTITION_FAIL_REFUSED;
        } else if (column == NULL) {
            out->column_type[0] = '\0';
        } else if (PQgetisnull(res, 0, 4)) {
            part_set_err(err, errlen, "table %s.%s has no column \"%s\"", out->schema, out->name,
                         column);
            rc = PARTITION_FAIL_REFUSED;
        } else if (type != OID_DATE && type != OID_TIMESTAMP && type != OID_TIMESTAMPTZ) {
            part_set_err(err, errlen,
                         "column \"%s\" of %s.%s is %s, not a date, timestamp or timestamptz",
                         column, out->schema, out->name, out->column_type);
            rc = PARTITION_FAIL_REFUSED;
        }
    }
    PQclear(res);
    return rc;
}

int64_t partition_today(PGconn *conn, part_interval_t iv, char *err, size_t errlen)
{
    PGresult *res =
        part_query(conn, "SELECT (now() AT TIME ZONE 'UTC')::date::text", 0, NULL, err, errlen);
    int64_t day = -1;
    if (res != NULL && !partbounds_parse_day(PQgetvalue(res, 0, 0), &day))
        part_set_err(err, errlen, "cannot read the server's date \"%s\"", PQgetvalue(res, 0, 0));
    PQclear(res);
    return day == -1 ? -1 : partbounds_floor(day, iv);
}

/* ---- partitions as the catalog has them ---- */

/* One bound of "FOR VALUES FROM (x) TO (y)" at *p: MINVALUE, MAXVALUE or a quoted literal.
 * *exact is cleared when the literal is not a midnight. Advances *p past it. */
static bool parse_bound(const char **p, int64_t *day, bool *exact)
{
    const char *s = *p;
    if (strncmp(s, "MINVALUE", 8) == 0 || strncmp(s, "MAXVALUE", 8) == 0) {
        *day = s[1] == 'I' ? BOUND_MIN : BOUND_MAX;
        *p = s + 8;
        return true;
    }
    if (*s != '\'' || !partbounds_parse_day(s + 1, day))
        return false;
    const char *end = strchr(s + 1, '\'');
    if (end == NULL)
        return false;
    const char *rest = s + 11; /* after 'YYYY-MM-DD */
    size_t len = (size_t)(end - rest);
    bool midnight = len == 0 || (len == 9 && strncmp(rest, " 00:00:00", 9) == 0) ||
                    (len == 12 && strncmp(rest, " 00:00:00+00", 12) == 0);
    if (!midnight) {
        *exact = false;
        if (*day != BOUND_MAX)
            (*day)++; /* the bound is inside that day: the range reaches into the next */
    }
    *p = end + 1;
    return true;
}

/* Reads pg_get_expr(relpartbound) of a range partition into c. */
static bool parse_partbound(const char *expr, part_child_t *c)
{
    if (strcmp(expr, "DEFAULT") == 0) {
        c->is_default = true;
        return true;
    }
    const char *p = strstr(expr, "FROM (");
    const char *q = strstr(expr, ") TO (");
    if (p == NULL || q == NULL)
        return false;
    p += 6;
    c->exact = true;
    int64_t lo;
    bool lo_exact = true;
    if (!parse_bound(&p, &lo, &lo_exact))
        return false;
    if (!lo_exact)
        lo--; /* a lower bound inside a day: the range starts within that day */
    c->lo = lo;
    c->exact = lo_exact;
    p = q + 6;
    return parse_bound(&p, &c->hi, &c->exact);
}

static void children_free(part_children_t *ch)
{
    free(ch->items);
    ch->items = NULL;
    ch->n = 0;
}

/* The partitions of parent, with their ranges, estimates and sizes. */
static partition_status_t children_load(PGconn *conn, const part_table_t *parent,
                                        part_children_t *ch, char *err, size_t errlen)
{
    ch->items = NULL;
    ch->n = 0;
    if (parent->oid == 0) /* a table a dry run has not made */
        return PARTITION_OK;
    char oid[16];
    snprintf(oid, sizeof(oid), "%u", parent->oid);
    const char *params[] = {oid};
    PGresult *res = part_query(conn,
                               "SELECT n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid), "
                               "i.inhdetachpending, c.reltuples, pg_total_relation_size(c.oid) "
                               "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE i.inhparent = $1::oid ORDER BY c.relname",
                               1, params, err, errlen);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    int n = PQntuples(res);
    ch->items = calloc(n > 0 ? (size_t)n : 1, sizeof(*ch->items));
    if (ch->items == NULL) {
        PQclear(res);
        part_set_err(err, errlen, "out of memory");
        return PARTITION_FAIL_DB;
    }
    for (int i = 0; i < n; i++) {
        part_child_t *c = &ch->items[ch->n];
        snprintf(c->schema, sizeof(c->schema), "%s", PQgetvalue(res, i, 0));
        snprintf(c->name, sizeof(c->name), "%s", PQgetvalue(res, i, 1));
        c->detach_pending = PQgetvalue(res, i, 3)[0] == 't';
        c->rows = strtod(PQgetvalue(res, i, 4), NULL);
        c->bytes = strtoll(PQgetvalue(res, i, 5), NULL, 10);
        if (!parse_partbound(PQgetvalue(res, i, 2), c)) {
            part_set_err(err, errlen, "partition %s.%s of %s.%s has bounds pgturbo cannot read: %s",
                         c->schema, c->name, parent->schema, parent->name, PQgetvalue(res, i, 2));
            PQclear(res);
            children_free(ch);
            return PARTITION_FAIL_REFUSED;
        }
        ch->n++;
    }
    PQclear(res);
    return PARTITION_OK;
}

static const part_child_t *default_of(const part_children_t *ch)
{
    for (int i = 0; i < ch->n; i++)
        if (ch->items[i].is_default && !ch->items[i].detach_pending)
            return &ch->items[i];
    return NULL;
}

/* ---- making partitions ---- */

/* The bound literal of day, for the column's type, quoted. */
static void bound_literal(const part_table_t *t, int64_t day, char *out, size_t len)
{
    char text[32];
    partbounds_literal(day, t->with_tz, text, sizeof(text));
    snprintf(out, len, "'%s'", text);
}

/* The range condition "col >= lo AND col < hi" on the key column into out. */
static bool range_condition(PGconn *conn, const part_table_t *t, const part_settings_t *s,
                            int64_t lo, int64_t hi, char *out, size_t len)
{
    char col[PART_QUOTED_LEN], a[40], b[40];
    if (!part_quote_ident(conn, s->column, col))
        return false;
    bound_literal(t, lo, a, sizeof(a));
    bound_literal(t, hi, b, sizeof(b));
    snprintf(out, len, "%s >= %s AND %s < %s", col, a, col, b);
    return true;
}

/* Whether the default partition d holds rows in [lo, hi); -1 on failure. */
static int default_has_rows(part_exec_t *x, const part_table_t *t, const part_settings_t *s,
                            const part_child_t *d, int64_t lo, int64_t hi, char *err, size_t errlen)
{
    char name[PART_QUALIFIED_LEN], cond[512], sql[PART_SQL_LEN];
    if (!part_qualify(x->conn, d->schema, d->name, name) ||
        !range_condition(x->conn, t, s, lo, hi, cond, sizeof(cond))) {
        part_set_err(err, errlen, "out of memory");
        return -1;
    }
    snprintf(sql, sizeof(sql), "SELECT EXISTS (SELECT 1 FROM ONLY %s WHERE %s)", name, cond);
    PGresult *res = part_query(x->conn, sql, 0, NULL, err, errlen);
    if (res == NULL)
        return -1;
    int has = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return has;
}

/* Makes the partition of [lo, hi) named name, moving the default partition's rows of that
 * range into it when it has some. */
static partition_status_t make_one(part_exec_t *x, const part_table_t *t, const part_settings_t *s,
                                   const part_child_t *dflt, int64_t lo, int64_t hi,
                                   const char *name, char *err, size_t errlen)
{
    char parent[PART_QUALIFIED_LEN], child[PART_QUALIFIED_LEN], a[40], b[40], sql[PART_SQL_LEN];
    if (!part_qualify(x->conn, t->schema, t->name, parent) ||
        !part_qualify(x->conn, t->schema, name, child)) {
        part_set_err(err, errlen, "out of memory");
        return PARTITION_FAIL_DB;
    }
    bound_literal(t, lo, a, sizeof(a));
    bound_literal(t, hi, b, sizeof(b));
    int has_rows = dflt == NULL ? 0 : default_has_rows(x, t, s, dflt, lo, hi, err, errlen);
    if (has_rows < 0)
        return PARTITION_FAIL_DB;
    char dname[PART_QUALIFIED_LEN] = "";
    if (has_rows && !part_qualify(x->conn, dflt->schema, dflt->name, dname)) {
        part_set_err(err, errlen, "out of memory");
        return PARTITION_FAIL_DB;
    }
    if (has_rows) {
        snprintf(sql, sizeof(sql), "ALTER TABLE %s DETACH PARTITION %s", parent, dname);
        if (part_exec_sql(x, sql, err, errlen) != 0)
            return PARTITION_FAIL_DB;
    }
    snprintf(sql, sizeof(sql), "CREATE TABLE %s PARTITION OF %s FOR VALUES FROM (%s) TO (%s)",
             child, parent, a, b);
    if (part_exec_sql(x, sql, err, errlen) != 0)
        return PARTITION_FAIL_DB;
    fprintf(x->out, "%s.%s: made %s for [%s, %s)\n", t->schema, t->name, name, a, b);
    if (!has_rows)
        return PARTITION_OK;
    char cond[512];
    char *cols = part_column_list(x->conn, t->oid, err, errlen);
    if (cols == NULL || !range_condition(x->conn, t, s, lo, hi, cond, sizeof(cond))) {
        free(cols);
        return PARTITION_FAIL_DB;
    }
    snprintf(sql, sizeof(sql),
             "WITH moved AS (DELETE FROM ONLY %s WHERE %s RETURNING %s) "
             "INSERT INTO %s (%s) SELECT %s FROM moved",
             dname, cond, cols, child, cols, cols);
    free(cols);
    PGresult *res = x->dry_run ? NULL : PQexec(x->conn, sql);
    if (x->dry_run)
        fprintf(x->out, "%s;\n", sql);
    else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pqmsg_describe(err, errlen, "cannot move the rows of the default partition", x->conn);
        PQclear(res);
        return PARTITION_FAIL_DB;
    }
    fprintf(x->out, "%s.%s: moved %s rows from %s into %s\n", t->schema, t->name,
            res != NULL ? PQcmdTuples(res) : "the", dflt->name, name);
    PQclear(res);
    snprintf(sql, sizeof(sql), "ALTER TABLE %s ATTACH PARTITION %s DEFAULT", parent, dname);
    return part_exec_sql(x, sql, err, errlen) == 0 ? PARTITION_OK : PARTITION_FAIL_DB;
}

/* Checks interval [lo, hi) against the partitions there: 1 when one covers it exactly, 0 when
 * none overlaps it, -1 (err set) when one overlaps it otherwise. */
static int covered(const part_table_t *t, const part_children_t *ch, int64_t lo, int64_t hi,
                   char *err, size_t errlen)
{
    for (int i = 0; i < ch->n; i++) {
        const part_child_t *c = &ch->items[i];
        if (c->is_default || c->hi <= lo || hi <= c->lo)
            continue;
        if (c->exact && c->lo == lo && c->hi == hi && !c->detach_pending)
            return 1;
        char a[32];
        partbounds_literal(lo, false, a, sizeof(a));
        part_set_err(err, errlen,
                     "partition %s.%s of %s.%s overlaps the range starting %s that pgturbo would "
                     "make%s: nothing was changed",
                     c->schema, c->name, t->schema, t->name, a,
                     c->detach_pending ? " (it is being detached)" : "");
        return -1;
    }
    return 0;
}

partition_status_t partition_make(part_exec_t *x, const part_table_t *parent,
                                  const part_settings_t *s, int64_t first, int64_t last, int *made,
                                  char *err, size_t errlen)
{
    *made = 0;
    part_children_t ch;
    partition_status_t rc = children_load(x->conn, parent, &ch, err, errlen);
    if (rc != PARTITION_OK)
        return rc;
    /* Every interval is checked before anything is made. */
    for (int64_t lo = first; lo <= last && rc == PARTITION_OK;
         lo = partbounds_add(lo, s->interval, 1)) {
        int64_t hi = partbounds_add(lo, s->interval, 1);
        int cov = covered(parent, &ch, lo, hi, err, errlen);
        char name[PARTBOUNDS_NAME_LEN];
        partbounds_name(parent->stem, lo, s->interval, name);
        int taken = cov == 0 ? part_relation_exists(x->conn, parent->schema, name, err, errlen) : 0;
        if (cov < 0)
            rc = PARTITION_FAIL_REFUSED;
        else if (taken < 0)
            rc = PARTITION_FAIL_DB;
        else if (taken > 0) {
            part_set_err(err, errlen,
                         "%s.%s already exists and is not the partition of %s.%s for its range: "
                         "nothing was changed",
                         parent->schema, name, parent->schema, parent->name);
            rc = PARTITION_FAIL_REFUSED;
        }
    }
    const part_child_t *dflt = default_of(&ch);
    for (int64_t lo = first; lo <= last && rc == PARTITION_OK;
         lo = partbounds_add(lo, s->interval, 1)) {
        int64_t hi = partbounds_add(lo, s->interval, 1);
        if (covered(parent, &ch, lo, hi, err, errlen) != 0)
            continue;
        char name[PARTBOUNDS_NAME_LEN];
        partbounds_name(parent->stem, lo, s->interval, name);
        rc = make_one(x, parent, s, dflt, lo, hi, name, err, errlen);
        *made += rc == PARTITION_OK;
    }
    children_free(&ch);
    return rc;
}

partition_status_t partition_make_default(part_exec_t *x, const part_table_t *parent, char *err,
                                          size_t errlen)
{
    part_children_t ch;
    partition_status_t rc = children_load(x->conn, parent, &ch, err, errlen);
    if (rc != PARTITION_OK)
        return rc;
    bool has = default_of(&ch) != NULL;
    children_free(&ch);
    if (has)
        return PARTITION_OK;
    char name[PARTBOUNDS_NAME_LEN], qparent[PART_QUALIFIED_LEN], qchild[PART_QUALIFIED_LEN],
        sql[PART_SQL_LEN];
    partbounds_cut_name(parent->stem, "_default", name);
    if (!part_qualify(x->conn, parent->schema, parent->name, qparent) ||
        !part_qualify(x->conn, parent->schema, name, qchild)) {
        part_set_err(err, errlen, "out of memory");
        return PARTITION_FAIL_DB;
    }
    snprintf(sql, sizeof(sql), "CREATE TABLE %s PARTITION OF %s DEFAULT", qchild, qparent);
    if (part_exec_sql(x, sql, err, errlen) != 0)
        return PARTITION_FAIL_DB;
    fprintf(x->out, "%s.%s: made %s for rows outside every range\n", parent->schema, parent->name,
            name);
    return PARTITION_OK;
}

/* ---- settings ---- */

static const char config_ddl[] = "CREATE SCHEMA IF NOT EXISTS pgturbo; "
                                 "CREATE TABLE IF NOT EXISTS pgturbo.partition_config ("
                                 "parent_schema text NOT NULL, parent_table text NOT NULL, "
                                 "control_column text NOT NULL, "
                                 "partition_interval text NOT NULL "
                                 "CHECK (partition_interval IN ('day', 'week', 'month', 'year')), "
                                 "premake integer NOT NULL CHECK (premake >= 0), "
                                 "retain integer CHECK (retain >= 0), "
                                 "retention text NOT NULL CHECK (retention IN ('drop', 'detach')), "
                                 "archive_schema text, "
                                 "default_partition boolean NOT NULL, "
                                 "updated_at timestamptz NOT NULL DEFAULT now(), "
                                 "PRIMARY KEY (parent_schema, parent_table))";

/* s->field as a quoted literal, or NULL for an empty text, into out. */
static bool literal(PGconn *conn, const char *text, bool empty_is_null, char *out, size_t len)
{
    if (empty_is_null && text[0] == '\0') {
        snprintf(out, len, "NULL");
        return true;
    }
    char *q = PQescapeLiteral(conn, text, strlen(text));
    if (q == NULL)
        return false;
    snprintf(out, len, "%s", q);
    PQfreemem(q);
    return true;
}

partition_status_t partition_config_save(part_exec_t *x, const part_table_t *parent,
                                         const part_settings_t *s, char *err, size_t errlen)
{
    if (part_exec_sql(x, config_ddl, err, errlen) != 0)
        return PARTITION_FAIL_DB;
    char schema[PART_QUOTED_LEN], table[PART_QUOTED_LEN], column[PART_QUOTED_LEN],
        archive[PART_QUOTED_LEN], retain[16], sql[PART_SQL_LEN];
    if (!literal(x->conn, parent->schema, false, schema, sizeof(schema)) ||
        !literal(x->conn, parent->name, false, table, sizeof(table)) ||
        !literal(x->conn, s->column, false, column, sizeof(column)) ||
        !literal(x->conn, s->archive_schema, true, archive, sizeof(archive))) {
        part_set_err(err, errlen, "out of memory");
        return PARTITION_FAIL_DB;
    }
    if (s->retain < 0)
        snprintf(retain, sizeof(retain), "NULL");
    else
        snprintf(retain, sizeof(retain), "%d", s->retain);
    snprintf(sql, sizeof(sql),
             "INSERT INTO pgturbo.partition_config (parent_schema, parent_table, "
             "control_column, partition_interval, premake, retain, retention, archive_schema, "
             "default_partition) VALUES (%s, %s, %s, '%s', %d, %s, '%s', %s, %s) "
             "ON CONFLICT (parent_schema, parent_table) DO UPDATE SET "
             "control_column = EXCLUDED.control_column, "
             "partition_interval = EXCLUDED.partition_interval, premake = EXCLUDED.premake, "
             "retain = EXCLUDED.retain, retention = EXCLUDED.retention, "
             "archive_schema = EXCLUDED.archive_schema, "
             "default_partition = EXCLUDED.default_partition, updated_at = now()",
             schema, table, column, partbounds_interval_name(s->interval), s->premake, retain,
             s->retention == PART_RETENTION_DROP ? "drop" : "detach", archive,
             s->default_partition ? "true" : "false");
    return part_exec_sql(x, sql, err, errlen) == 0 ? PARTITION_OK : PARTITION_FAIL_DB;
}

/* Checks that parent is partitioned by range on column alone; REFUSED with the reason. */
static partition_status_t check_partition_key(PGconn *conn, const part_table_t *t,
                                              const char *column, char *err, size_t errlen)
{
    if (t->relkind != 'p') {
        part_set_err(err, errlen,
                     "%s.%s is a plain table, not a partitioned one: pgturbo partition convert "
                     "turns it into one",
                     t->schema, t->name);
        return PARTITION_FAIL_REFUSED;
    }
    char oid[16];
    snprintf(oid, sizeof(oid), "%u", t->oid);
    const char *params[] = {oid, column};
    PGresult *res = part_query(conn,
                               "SELECT pg_get_partkeydef($1::oid), "
                               "pg_get_partkeydef($1::oid) = 'RANGE (' || quote_ident($2) || ')'",
                               2, params, err, errlen);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    partition_status_t rc = PARTITION_OK;
    if (PQgetvalue(res, 0, 1)[0] != 't') {
        part_set_err(err, errlen,
                     "%s.%s is partitioned by %s, not by RANGE (%s): pgturbo leaves it as it is",
                     t->schema, t->name, PQgetvalue(res, 0, 0), column);
        rc = PARTITION_FAIL_REFUSED;
    }
    PQclear(res);
    return rc;
}

static partition_status_t begin(part_exec_t *x, char *err, size_t errlen)
{
    return part_exec_sql(x, "BEGIN", err, errlen) == 0 ? PARTITION_OK : PARTITION_FAIL_DB;
}

/* Commits when rc is PARTITION_OK, else rolls back; returns rc, or FAIL_DB when the commit
 * failed. */
static partition_status_t end(part_exec_t *x, partition_status_t rc, char *err, size_t errlen)
{
    if (rc != PARTITION_OK) {
        char ignored[256];
        if (part_exec_sql(x, "ROLLBACK", ignored, sizeof(ignored)) != 0)
            return PARTITION_FAIL_DB;
        return rc;
    }
    return part_exec_sql(x, "COMMIT", err, errlen) == 0 ? PARTITION_OK : PARTITION_FAIL_DB;
}

/* The intervals of the rows in the default partition d that start at or after keep_from, as
 * sorted first days in *starts (malloc'd; caller frees); their count, or -1. */
static int default_intervals(PGconn *conn, const part_table_t *t, const part_settings_t *s,
                             const part_child_t *d, int64_t **starts, char *err, size_t errlen)
{
    *starts = NULL;
    char name[PART_QUALIFIED_LEN], col[PART_QUOTED_LEN], sql[PART_SQL_LEN];
    if (!part_qualify(conn, d->schema, d->name, name) || !part_quote_ident(conn, s->column, col)) {
        part_set_err(err, errlen, "out of memory");
        return -1;
    }
    /* date_trunc('week') starts weeks on Mondays, as ISO weeks do. */
    snprintf(sql, sizeof(sql),
             "SELECT DISTINCT date_trunc('%s', %s%s)::date::text AS start FROM ONLY %s "
             "WHERE %s IS NOT NULL ORDER BY start",
             partbounds_interval_name(s->interval), col, t->with_tz ? " AT TIME ZONE 'UTC'" : "",
             name, col);
    PGresult *res = part_query(conn, sql, 0, NULL, err, errlen);
    if (res == NULL)
        return -1;
    int n = PQntuples(res), k = 0;
    *starts = calloc(n > 0 ? (size_t)n : 1, sizeof(**starts));
    for (int i = 0; *starts != NULL && i < n; i++)
        if (partbounds_parse_day(PQgetvalue(res, i, 0), &(*starts)[k]))
            k++;
    PQclear(res);
    if (*starts == NULL) {
        part_set_err(err, errlen, "out of memory");
        return -1;
    }
    return k;
}

/* Makes a partition for each interval of the rows in the default partition from keep_from
 * on (all when keep_from is BOUND_MIN), moving the rows into it. Rows older than keep_from
 * stay and are reported. */
static partition_status_t empty_default(part_exec_t *x, const part_table_t *t,
                                        const part_settings_t *s, int64_t keep_from, int *made,
                                        char *err, size_t errlen)
{
    part_children_t ch;
    partition_status_t rc = children_load(x->conn, t, &ch, err, errlen);
    const part_child_t *d = rc == PARTITION_OK ? default_of(&ch) : NULL;
    int64_t *starts = NULL;
    int n = d == NULL ? 0 : default_intervals(x->conn, t, s, d, &starts, err, errlen);
    if (n < 0)
        rc = PARTITION_FAIL_DB;
    int old = 0;
    for (int i = 0; i < n && rc == PARTITION_OK; i++) {
        if (starts[i] < keep_from) {
            old++;
            continue;
        }
        int one = 0;
        rc = partition_make(x, t, s, starts[i], starts[i], &one, err, errlen);
        *made += one;
    }
    if (rc == PARTITION_OK && old > 0)
        fprintf(x->out, "%s.%s: %s holds rows of %d %s%s older than the retention: left there\n",
                t->schema, t->name, d->name, old, partbounds_interval_name(s->interval),
                old == 1 ? "" : "s");
    free(starts);
    children_free(&ch);
    return rc;
}

/* Finds table name for create and maintain: resolved, partitioned by RANGE on s->column, and
 * the first day of the current interval in *today. */
static partition_status_t open_table(PGconn *conn, const char *name, const part_settings_t *s,
                                     part_table_t *t, int64_t *today, char *err, size_t errlen)
{
    partition_status_t rc = partition_resolve(conn, name, s->column, t, err, errlen);
    if (rc == PARTITION_OK)
        rc = check_partition_key(conn, t, s->column, err, errlen);
    if (rc == PARTITION_OK && (*today = partition_today(conn, s->interval, err, errlen)) < 0)
        rc = PARTITION_FAIL_DB;
    return rc;
}

/*
 * In one transaction: the default partition when s asks for one, a partition for each
 * interval of the default partition's rows from keep_from on, the partitions from the one
 * starting at first to s->premake after the current one (starting at today), and, when save,
 * s in pgturbo.partition_config. *made counts the partitions made.
 */
static partition_status_t make_partitions(part_exec_t *x, const part_table_t *t,
                                          const part_settings_t *s, int64_t keep_from,
                                          int64_t first, int64_t today, bool save, int *made,
                                          char *err, size_t errlen)
{
    int from_default = 0, ahead = 0;
    partition_status_t rc = begin(x, err, errlen);
    if (rc != PARTITION_OK)
        return rc;
    if (s->default_partition)
        rc = partition_make_default(x, t, err, errlen);
    if (rc == PARTITION_OK)
        rc = empty_default(x, t, s, keep_from, &from_default, err, errlen);
    if (rc == PARTITION_OK)
        rc = partition_make(x, t, s, first, partbounds_add(today, s->interval, s->premake), &ahead,
                            err, errlen);
    if (rc == PARTITION_OK && save)
        rc = partition_config_save(x, t, s, err, errlen);
    *made = from_default + ahead;
    return end(x, rc, err, errlen);
}

partition_status_t partition_create(PGconn *conn, const char *table, const part_settings_t *s,
                                    int64_t from, bool dry_run, FILE *out, char *err, size_t errlen)
{
    part_table_t t;
    int64_t today;
    partition_status_t rc = open_table(conn, table, s, &t, &today, err, errlen);
    if (rc != PARTITION_OK)
        return rc;
    int64_t first = from == PARTITION_FROM_TODAY ? today : partbounds_floor(from, s->interval);
    if (first > today)
        first = today;
    part_exec_t x = {conn, out, dry_run};
    int made;
    rc = make_partitions(&x, &t, s, BOUND_MIN, first, today, true, &made, err, errlen);
    if (rc == PARTITION_OK)
        fprintf(out, "%s.%s: %d partition%s made; managed by pgturbo partition maintain\n",
                t.schema, t.name, made, made == 1 ? "" : "s");
    return rc;
}

/* ---- retention ---- */

/* Detaches (and drops, or moves to the archive schema) every partition of t whose range ends
 * at or before cutoff. Each statement runs on its own: DETACH ... CONCURRENTLY cannot run in
 * a transaction, and is not allowed beside a default partition (a plain DETACH is used). */
static partition_status_t retire(part_exec_t *x, const part_table_t *t, const part_settings_t *s,
                                 int64_t cutoff, char *err, size_t errlen)
{
    part_children_t ch;
    partition_status_t rc = children_load(x->conn, t, &ch, err, errlen);
    bool has_default = rc == PARTITION_OK && default_of(&ch) != NULL;
    char parent[PART_QUALIFIED_LEN], cut[32];
    partbounds_literal(cutoff, false, cut, sizeof(cut));
    if (rc == PARTITION_OK && !part_qualify(x->conn, t->schema, t->name, parent)) {
        part_set_err(err, errlen, "out of memory");
        rc = PARTITION_FAIL_DB;
    }
    for (int i = 0; i < ch.n && rc == PARTITION_OK; i++) {
        const part_child_t *c = &ch.items[i];
        char child[PART_QUALIFIED_LEN], archive[PART_QUOTED_LEN], sql[PART_SQL_LEN];
        if (c->is_default || c->hi > cutoff)
            continue;
        if (!part_qualify(x->conn, c->schema, c->name, child) ||
            !part_quote_ident(x->conn, s->archive_schema, archive)) {
            part_set_err(err, errlen, "out of memory");
            rc = PARTITION_FAIL_DB;
            break;
        }
        snprintf(sql, sizeof(sql), "ALTER TABLE %s DETACH PARTITION %s%s", parent, child,
                 c->detach_pending ? " FINALIZE"
                 : has_default     ? ""
                                   : " CONCURRENTLY");
        if (part_exec_sql(x, sql, err, errlen) != 0) {
            rc = PARTITION_FAIL_DB;
            break;
        }
        if (s->retention == PART_RETENTION_DROP) {
            snprintf(sql, sizeof(sql), "DROP TABLE %s", child);
            if (part_exec_sql(x, sql, err, errlen) != 0)
                rc = PARTITION_FAIL_DB;
            else
                fprintf(x->out, "%s.%s: dropped %s (its range ends by %s, past the retention)\n",
                        t->schema, t->name, c->name, cut);
        } else if (s->archive_schema[0] != '\0') {
            snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS %s", archive);
            int failed = part_exec_sql(x, sql, err, errlen);
            snprintf(sql, sizeof(sql), "ALTER TABLE %s SET SCHEMA %s", child, archive);
            if (failed || part_exec_sql(x, sql, err, errlen) != 0)
                rc = PARTITION_FAIL_DB;
            else
                fprintf(x->out, "%s.%s: detached %s (its range ends by %s), kept as %s.%s\n",
                        t->schema, t->name, c->name, cut, s->archive_schema, c->name);
        } else {
            fprintf(x->out, "%s.%s: detached %s (its range ends by %s), kept as a table\n",
                    t->schema, t->name, c->name, cut);
        }
    }
    children_free(&ch);
    return rc;
}

/* ---- maintain ---- */

/* One row of pgturbo.partition_config. */
typedef struct managed {
    char schema[PARTBOUNDS_NAME_LEN];
    char table[PARTBOUNDS_NAME_LEN];
    part_settings_t settings;
} managed_t;

/* The rows of pgturbo.partition_config (none when it does not exist); count, or -1. */
static int config_load(PGconn *conn, managed_t **out, char *err, size_t errlen)
{
    *out = NULL;
    PGresult *res = part_query(conn, "SELECT to_regclass('pgturbo.partition_config') IS NOT NULL",
                               0, NULL, err, errlen);
    if (res == NULL)
        return -1;
    bool exists = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!exists)
        return 0;
    res = part_query(conn,
                     "SELECT parent_schema, parent_table, control_column, partition_interval, "
                     "premake, coalesce(retain, -1), retention, coalesce(archive_schema, ''), "
                     "default_partition FROM pgturbo.partition_config ORDER BY 1, 2",
                     0, NULL, err, errlen);
    if (res == NULL)
        return -1;
    int n = PQntuples(res);
    *out = calloc(n > 0 ? (size_t)n : 1, sizeof(**out));
    if (*out == NULL) {
        PQclear(res);
        part_set_err(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        managed_t *m = &(*out)[i];
        part_settings_t *s = &m->settings;
        snprintf(m->schema, sizeof(m->schema), "%s", PQgetvalue(res, i, 0));
        snprintf(m->table, sizeof(m->table), "%s", PQgetvalue(res, i, 1));
        snprintf(s->column, sizeof(s->column), "%s", PQgetvalue(res, i, 2));
        if (!partbounds_parse_interval(PQgetvalue(res, i, 3), &s->interval))
            s->interval = PART_MONTH; /* the table's CHECK allows nothing else */
        s->premake = atoi(PQgetvalue(res, i, 4));
        s->retain = atoi(PQgetvalue(res, i, 5));
        s->retention = strcmp(PQgetvalue(res, i, 6), "drop") == 0 ? PART_RETENTION_DROP
                                                                  : PART_RETENTION_DETACH;
        snprintf(s->archive_schema, sizeof(s->archive_schema), "%s", PQgetvalue(res, i, 7));
        s->default_partition = PQgetvalue(res, i, 8)[0] == 't';
    }
    PQclear(res);
    return n;
}

static partition_status_t maintain_one(PGconn *conn, const managed_t *m, FILE *out, char *err,
                                       size_t errlen)
{
    const part_settings_t *s = &m->settings;
    char name[PART_QUALIFIED_LEN];
    part_table_t t;
    int64_t today;
    if (!part_qualify(conn, m->schema, m->table, name)) {
        part_set_err(err, errlen, "out of memory");
        return PARTITION_FAIL_DB;
    }
    partition_status_t rc = open_table(conn, name, s, &t, &today, err, errlen);
    if (rc != PARTITION_OK)
        return rc;
    int64_t keep_from = s->retain >= 0 ? partbounds_add(today, s->interval, -s->retain) : BOUND_MIN;
    part_exec_t x = {conn, out, false};
    int made;
    rc = make_partitions(&x, &t, s, keep_from, today, today, false, &made, err, errlen);
    if (rc == PARTITION_OK && s->retain >= 0)
        rc = retire(&x, &t, s, keep_from, err, errlen);
    return rc;
}

/* Whether the table a user wrote as name is m's; -1 on failure. */
static int names_managed(PGconn *conn, const char *name, const managed_t *m, char *err,
                         size_t errlen)
{
    const char *params[] = {name, m->schema, m->table};
    PGresult *res = PQexecParams(conn,
                                 "SELECT to_regclass($1) = (SELECT c.oid FROM pg_class c "
                                 "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE n.nspname = $2 AND c.relname = $3)",
                                 3, NULL, params, NULL, NULL, 0);
    int is = PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0)[0] == 't' : -1;
    if (is < 0) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "42602") == 0)
            is = 0;
        else
            pqmsg_describe(err, errlen, "cannot look up the table", conn);
    }
    PQclear(res);
    return is;
}

/* Marks in pick the rows of config the names given select; REFUSED for a name none does. */
static partition_status_t pick_managed(PGconn *conn, const managed_t *config, int n_config,
                                       const char *const *tables, int n_tables, bool *pick,
                                       char *err, size_t errlen)
{
    for (int i = 0; i < n_tables; i++) {
        bool found = false;
        for (int k = 0; k < n_config && !found; k++) {
            int is = names_managed(conn, tables[i], &config[k], err, errlen);
            if (is < 0)
                return PARTITION_FAIL_DB;
            found = is > 0;
            pick[k] = pick[k] || found;
        }
        if (!found) {
            part_set_err(err, errlen,
                         "\"%s\" is not managed by pgturbo partition (not in "
                         "pgturbo.partition_config): run pgturbo partition create first",
                         tables[i]);
            return PARTITION_FAIL_REFUSED;
        }
    }
    return PARTITION_OK;
}

partition_status_t partition_maintain(PGconn *conn, const char *const *tables, int n_tables,
                                      FILE *out, char *err, size_t errlen)
{
    if (session_begin(conn, err, errlen) != 0)
        return PARTITION_FAIL_DB;
    managed_t *config;
    int n = config_load(conn, &config, err, errlen);
    if (n < 0)
        return PARTITION_FAIL_DB;
    bool *pick = calloc(n > 0 ? (size_t)n : 1, sizeof(*pick));
    partition_status_t worst = pick != NULL ? PARTITION_OK : PARTITION_FAIL_DB;
    if (pick == NULL)
        part_set_err(err, errlen, "out of memory");
    else if (n_tables > 0)
        worst = pick_managed(conn, config, n, tables, n_tables, pick, err, errlen);
    /* A table that fails does not keep the others from their maintenance. */
    bool picked = worst == PARTITION_OK;
    for (int k = 0; k < n && picked; k++) {
        if (!pick[k] && n_tables > 0)
            continue;
        char one[512];
        partition_status_t rc = maintain_one(conn, &config[k], out, one, sizeof(one));
        if (rc != PARTITION_OK) {
            fprintf(out, "%s.%s: failed: %s\n", config[k].schema, config[k].table, one);
            if (worst == PARTITION_OK)
                part_set_err(err, errlen, "%s.%s: %s", config[k].schema, config[k].table, one);
            if (rc > worst)
                worst = rc;
        }
    }
    free(pick);
    free(config);
    return worst;
}

/* ---- list ---- */

static void print_bound(FILE *out, int64_t day)
{
    char text[32];
    if (day <= BOUND_MIN)
        fprintf(out, "%-12s", "MINVALUE");
    else if (day >= BOUND_MAX)
        fprintf(out, "%-12s", "MAXVALUE");
    else {
        partbounds_literal(day, false, text, sizeof(text));
        fprintf(out, "%-12s", text);
    }
}

static partition_status_t list_one(PGconn *conn, const char *name, const char *column, FILE *out,
                                   char *err, size_t errlen)
{
    part_table_t t;
    partition_status_t rc = partition_resolve(conn, name, column, &t, err, errlen);
    if (rc != PARTITION_OK)
        return rc;
    if (t.relkind != 'p') {
        part_set_err(err, errlen, "%s.%s is not partitioned", t.schema, t.name);
        return PARTITION_FAIL_REFUSED;
    }
    part_children_t ch;
    rc = children_load(conn, &t, &ch, err, errlen);
    if (rc != PARTITION_OK)
        return rc;
    fprintf(out, "%s.%s: %d partition%s\n", t.schema, t.name, ch.n, ch.n == 1 ? "" : "s");
    fprintf(out, "  %-40s %-12s %-12s %12s %12s\n", "partition", "from", "to", "rows (est.)",
            "bytes");
    for (int i = 0; i < ch.n; i++) {
        const part_child_t *c = &ch.items[i];
        fprintf(out, "  %-40s ", c->name);
        if (c->is_default)
            fprintf(out, "%-25s", "DEFAULT");
        else {
            print_bound(out, c->lo);
            fprintf(out, " ");
            print_bound(out, c->hi);
        }
        fprintf(out, " %12.0f %12lld%s\n", c->rows < 0 ? 0 : c->rows, c->bytes,
                c->detach_pending ? " (detach pending)" : "");
    }
    children_free(&ch);
    return PARTITION_OK;
}

partition_status_t partition_list(PGconn *conn, const char *table, FILE *out, char *err,
                                  size_t errlen)
{
    if (table != NULL)
        return list_one(conn, table, NULL, out, err, errlen);
    if (session_begin(conn, err, errlen) != 0)
        return PARTITION_FAIL_DB;
    managed_t *config;
    int n = config_load(conn, &config, err, errlen);
    if (n < 0)
        return PARTITION_FAIL_DB;
    if (n == 0)
        fprintf(out, "no table is managed by pgturbo partition in this database\n");
    partition_status_t rc = PARTITION_OK;
    for (int k = 0; k < n && rc == PARTITION_OK; k++) {
        char name[PART_QUALIFIED_LEN];
        if (!part_qualify(conn, config[k].schema, config[k].table, name)) {
            part_set_err(err, errlen, "out of memory");
            rc = PARTITION_FAIL_DB;
        } else {
            rc = list_one(conn, name, NULL, out, err, errlen);
        }
    }
    free(config);
    return rc;
}
