/*
 * partition_convert.c
 *    pgturbo partition convert; see partition_convert.h for the steps.
 *
 * The trigger function's body is dollar-quoted with $pgturbo$; a name that contains that tag
 * is refused rather than escaped.
 */
#include "partition_convert.h"

#include "pqmsg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INDEXES    64
#define MAX_SEQUENCES  16
#define MAX_FKS        32
#define MAX_PARTITIONS 2000 /* a span of rows that would make more is refused */
#define TRIGGER_NAME   "pgturbo_capture"
#define BODY_TAG       "$pgturbo$"

/* An index of the table: made on the copy under a temporary name, renamed at the swap. */
typedef struct carried_index {
    char name[PARTBOUNDS_NAME_LEN];
    char temp[PARTBOUNDS_NAME_LEN]; /* its name on the copy until the swap */
    char *create;                   /* the statement that makes it on the copy */
} carried_index_t;

/* A sequence of a column: owned (serial) or an identity's. */
typedef struct carried_sequence {
    char sequence[PART_QUALIFIED_LEN];
    char name[PARTBOUNDS_NAME_LEN];   /* the sequence's own name, unquoted */
    char column[PARTBOUNDS_NAME_LEN]; /* the column's name, unquoted */
    bool identity;
} carried_sequence_t;

typedef struct convert {
    const convert_options_t *o;
    part_exec_t x;
    part_table_t t; /* the table */
    char qtable[PART_QUALIFIED_LEN];
    char qcol[PART_QUOTED_LEN];
    char new_name[PARTBOUNDS_NAME_LEN], old_name[PARTBOUNDS_NAME_LEN];
    char qnew[PART_QUALIFIED_LEN], qlog[PART_QUALIFIED_LEN], qfunction[PART_QUALIFIED_LEN];
    char *columns;  /* quoted, comma-separated */
    char *key;      /* the primary key's columns, quoted */
    char *old_key;  /* ... as OLD."a", OLD."b" */
    char *new_key;  /* ... as NEW."a", NEW."b" */
    char keep[256]; /* "" or the condition of the kept rows */
    int64_t first;  /* the first partition's day */
    int64_t last;   /* the last partition's day */
    carried_index_t indexes[MAX_INDEXES];
    int n_indexes;
    char *fks[MAX_FKS]; /* ALTER TABLE ... ADD CONSTRAINT of each foreign key */
    int n_fks;
    carried_sequence_t sequences[MAX_SEQUENCES];
    int n_sequences;
    char *err;
    size_t errlen;
} convert_t;

static void convert_free(convert_t *c)
{
    free(c->columns);
    free(c->key);
    free(c->old_key);
    free(c->new_key);
    for (int i = 0; i < c->n_indexes; i++)
        free(c->indexes[i].create);
    for (int i = 0; i < c->n_fks; i++)
        free(c->fks[i]);
}

static partition_status_t oom(convert_t *c)
{
    part_set_err(c->err, c->errlen, "out of memory");
    return PARTITION_FAIL_DB;
}

static partition_status_t run(convert_t *c, const char *sql)
{
    return part_exec_sql(&c->x, sql, c->err, c->errlen) == 0 ? PARTITION_OK : PARTITION_FAIL_DB;
}

/* Ends a failed transaction; the caller reports the failure that caused it. */
static void rollback(convert_t *c)
{
    char err[256];
    if (part_exec_sql(&c->x, "ROLLBACK", err, sizeof(err)) != 0)
        fprintf(c->x.out, "%s.%s: ROLLBACK failed too: %s\n", c->t.schema, c->t.name, err);
}

/* Runs a query on the table's oid ($1) and the key column's name ($2, when with_column);
 * NULL with err set. */
static PGresult *ask(convert_t *c, const char *sql, bool with_column)
{
    char oid[16];
    snprintf(oid, sizeof(oid), "%u", c->t.oid);
    const char *params[] = {oid, c->o->settings.column};
    return part_query(c->x.conn, sql, with_column ? 2 : 1, params, c->err, c->errlen);
}

/* ---- what the table is ---- */

/* The names of the copy, the old table, the change log and the trigger function. */
static partition_status_t name_things(convert_t *c)
{
    char log[PARTBOUNDS_NAME_LEN], function[PARTBOUNDS_NAME_LEN];
    partbounds_cut_name(c->t.name, "_pgturbo_new", c->new_name);
    partbounds_cut_name(c->t.name, "_old", c->old_name);
    partbounds_cut_name(c->t.name, "_pgturbo_changes", log);
    partbounds_cut_name(c->t.name, "_pgturbo_capture", function);
    PGconn *conn = c->x.conn;
    if (!part_qualify(conn, c->t.schema, c->t.name, c->qtable) ||
        !part_qualify(conn, c->t.schema, c->new_name, c->qnew) ||
        !part_qualify(conn, c->t.schema, log, c->qlog) ||
        !part_qualify(conn, c->t.schema, function, c->qfunction) ||
        !part_quote_ident(conn, c->o->settings.column, c->qcol))
        return oom(c);
    return PARTITION_OK;
}

/* Refuses what convert cannot do: a table in an inheritance tree, one referenced by foreign
 * keys, one without a primary key. Reads the primary key's columns. */
static partition_status_t check_table(convert_t *c)
{
    PGresult *res = ask(c,
                        "WITH key AS (SELECT quote_ident(a.attname) AS col, k.n "
                        "FROM pg_constraint p, unnest(p.conkey) WITH ORDINALITY k(attnum, n) "
                        "JOIN pg_attribute a ON a.attrelid = $1::oid AND a.attnum = k.attnum "
                        "WHERE p.conrelid = $1::oid AND p.contype = 'p') "
                        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = $1::oid "
                        "OR inhparent = $1::oid), "
                        "(SELECT string_agg(conrelid::regclass::text || ' (' || conname || ')', "
                        "', ') FROM pg_constraint WHERE confrelid = $1::oid AND contype = 'f'), "
                        "(SELECT string_agg(col, ', ' ORDER BY n) FROM key), "
                        "(SELECT string_agg('OLD.' || col, ', ' ORDER BY n) FROM key), "
                        "(SELECT string_agg('NEW.' || col, ', ' ORDER BY n) FROM key)",
                        false);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    partition_status_t rc = PARTITION_FAIL_REFUSED;
    const char *name = c->o->table;
    if (PQgetvalue(res, 0, 0)[0] == 't')
        part_set_err(c->err, c->errlen,
                     "%s is in an inheritance tree (a partition, a parent or a child): "
                     "convert takes plain tables only",
                     name);
    else if (!PQgetisnull(res, 0, 1))
        part_set_err(c->err, c->errlen,
                     "%s is referenced by the foreign keys of %s: a partitioned table can be "
                     "referenced only through a key that includes %s; drop or change those "
                     "foreign keys first",
                     name, PQgetvalue(res, 0, 1), c->o->settings.column);
    else if (PQgetisnull(res, 0, 2))
        part_set_err(c->err, c->errlen,
                     "%s has no primary key: convert needs one to carry over the rows written "
                     "while it copies",
                     name);
    else if ((c->key = strdup(PQgetvalue(res, 0, 2))) == NULL ||
             (c->old_key = strdup(PQgetvalue(res, 0, 3))) == NULL ||
             (c->new_key = strdup(PQgetvalue(res, 0, 4))) == NULL)
        rc = oom(c);
    else
        rc = PARTITION_OK;
    PQclear(res);
    if (rc != PARTITION_OK)
        return rc;
    if (strstr(c->old_key, BODY_TAG) != NULL || strstr(c->qlog, BODY_TAG) != NULL) {
        part_set_err(c->err, c->errlen, "%s has a key column whose name convert cannot use", name);
        return PARTITION_FAIL_REFUSED;
    }
    return PARTITION_OK;
}

/* The statement that makes index row (of the query in read_indexes) on the copy. */
static partition_status_t index_statement(convert_t *c, PGresult *res, int row, carried_index_t *ix)
{
    const char *contype = PQgetvalue(res, row, 1);
    bool unique = PQgetvalue(res, row, 2)[0] == 't';
    const char *keys = PQgetvalue(res, row, 3);
    bool has_key = PQgetvalue(res, row, 4)[0] == 't';
    bool plain = PQgetvalue(res, row, 5)[0] == 't';
    const char *tail = PQgetisnull(res, row, 6) ? NULL : PQgetvalue(res, row, 6);
    char temp[PART_QUOTED_LEN], sql[PART_SQL_LEN];
    partbounds_cut_name(ix->name, "_pgturbo", ix->temp);
    if (!part_quote_ident(c->x.conn, ix->temp, temp))
        return oom(c);
    const char *add_key = has_key ? "" : ", ";
    const char *key = has_key ? "" : c->qcol;
    if (contype[0] == 'p' || contype[0] == 'u') {
        snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD CONSTRAINT %s %s (%s%s%s)", c->qnew, temp,
                 contype[0] == 'p' ? "PRIMARY KEY" : "UNIQUE", keys, add_key, key);
        if (!has_key)
            fprintf(c->x.out,
                    "%s.%s: %s (%s) becomes (%s, %s): a partitioned table's unique keys must "
                    "hold its partition key\n",
                    c->t.schema, c->t.name, ix->name, keys, keys, c->o->settings.column);
    } else if (contype[0] != '\0') {
        part_set_err(c->err, c->errlen,
                     "%s has the exclusion constraint %s, which a partitioned table cannot "
                     "have: drop it first",
                     c->o->table, ix->name);
        return PARTITION_FAIL_REFUSED;
    } else if (unique && !has_key && plain) {
        snprintf(sql, sizeof(sql), "CREATE UNIQUE INDEX %s ON %s (%s, %s)", temp, c->qnew, keys,
                 c->qcol);
    } else if (tail != NULL && (!unique || has_key)) {
        snprintf(sql, sizeof(sql), "CREATE %sINDEX %s ON %s USING %s", unique ? "UNIQUE " : "",
                 temp, c->qnew, tail);
    } else {
        part_set_err(c->err, c->errlen,
                     "index %s of %s cannot be made on a partitioned table as it is (a unique "
                     "index of expressions without %s): drop or change it first",
                     ix->name, c->o->table, c->o->settings.column);
        return PARTITION_FAIL_REFUSED;
    }
    return (ix->create = strdup(sql)) == NULL ? oom(c) : PARTITION_OK;
}

static partition_status_t read_indexes(convert_t *c)
{
    PGresult *res =
        ask(c,
            "WITH ix AS (SELECT i.*, ic.relname AS name, coalesce(con.contype::text, '') AS "
            "contype, pg_get_indexdef(i.indexrelid) AS def, format('CREATE %sINDEX %I ON %I.%I "
            "USING ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, ic.relname, n.nspname, "
            "t.relname) AS prefix FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid "
            "AND con.conrelid = i.indrelid WHERE i.indrelid = $1::oid) "
            "SELECT name, contype, indisunique, (SELECT string_agg(pg_get_indexdef(indexrelid, "
            "k, true), ', ' ORDER BY k) FROM generate_series(1, indnkeyatts) k), "
            "(SELECT attnum FROM pg_attribute WHERE attrelid = $1::oid AND attname = $2) "
            "= ANY (indkey::int2[]), indexprs IS NULL AND indpred IS NULL, "
            "CASE WHEN starts_with(def, prefix) THEN substr(def, length(prefix) + 1) END "
            "FROM ix ORDER BY name",
            true);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    partition_status_t rc = PARTITION_OK;
    if (PQntuples(res) > MAX_INDEXES) {
        part_set_err(c->err, c->errlen, "%s has %d indexes; convert carries at most %d",
                     c->o->table, PQntuples(res), MAX_INDEXES);
        rc = PARTITION_FAIL_REFUSED;
    }
    for (int i = 0; i < PQntuples(res) && rc == PARTITION_OK; i++) {
        carried_index_t *ix = &c->indexes[c->n_indexes++];
        snprintf(ix->name, sizeof(ix->name), "%s", PQgetvalue(res, i, 0));
        rc = index_statement(c, res, i, ix);
    }
    PQclear(res);
    return rc;
}

/* The foreign keys the table holds, and the sequences of its columns. */
static partition_status_t read_keys_and_sequences(convert_t *c)
{
    PGresult *res = ask(c,
                        "SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint "
                        "WHERE conrelid = $1::oid AND contype = 'f' ORDER BY conname",
                        false);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    for (int i = 0; i < PQntuples(res) && c->n_fks < MAX_FKS; i++) {
        char sql[PART_SQL_LEN];
        snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD CONSTRAINT %s %s", c->qnew,
                 PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
        if ((c->fks[c->n_fks++] = strdup(sql)) == NULL) {
            PQclear(res);
            return oom(c);
        }
    }
    PQclear(res);
    res = ask(c,
              "SELECT quote_ident(n.nspname) || '.' || quote_ident(s.relname), a.attname, "
              "d.deptype = 'i', s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
              "AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace "
              "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
              "WHERE d.refobjid = $1::oid AND d.classid = 'pg_class'::regclass "
              "AND d.deptype IN ('a', 'i') ORDER BY 1",
              false);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    for (int i = 0; i < PQntuples(res) && c->n_sequences < MAX_SEQUENCES; i++) {
        carried_sequence_t *s = &c->sequences[c->n_sequences++];
        snprintf(s->sequence, sizeof(s->sequence), "%s", PQgetvalue(res, i, 0));
        snprintf(s->column, sizeof(s->column), "%s", PQgetvalue(res, i, 1));
        s->identity = PQgetvalue(res, i, 2)[0] == 't';
        snprintf(s->name, sizeof(s->name), "%s", PQgetvalue(res, i, 3));
    }
    PQclear(res);
    return PARTITION_OK;
}

/* The partitions to make: from the kept range's (or the oldest row's) interval to the
 * newest row's or the premade ones, whichever is later; and the condition of the kept rows. */
static partition_status_t plan_range(convert_t *c)
{
    const part_settings_t *s = &c->o->settings;
    char sql[PART_SQL_LEN], err[256];
    int64_t today = partition_today(c->x.conn, s->interval, err, sizeof(err));
    if (today < 0) {
        part_set_err(c->err, c->errlen, "%s", err);
        return PARTITION_FAIL_DB;
    }
    snprintf(sql, sizeof(sql),
             "SELECT min(%s)::text, max(%s)::text, count(*) FILTER (WHERE %s IS NULL) "
             "FROM ONLY %s",
             c->qcol, c->qcol, c->qcol, c->qtable);
    PGresult *res = part_query(c->x.conn, sql, 0, NULL, c->err, c->errlen);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    int64_t min = today, max = today;
    if (!PQgetisnull(res, 0, 0) && partbounds_parse_day(PQgetvalue(res, 0, 0), &min))
        min = partbounds_floor(min, s->interval);
    if (!PQgetisnull(res, 0, 1) && partbounds_parse_day(PQgetvalue(res, 0, 1), &max))
        max = partbounds_floor(max, s->interval);
    long long nulls = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    PQclear(res);
    if (nulls > 0 && !s->default_partition) {
        part_set_err(c->err, c->errlen,
                     "%lld rows of %s have no %s: add --default to keep them in the default "
                     "partition",
                     nulls, c->o->table, s->column);
        return PARTITION_FAIL_REFUSED;
    }
    c->first = c->o->keep >= 0 ? partbounds_add(today, s->interval, -c->o->keep) : min;
    int64_t premade = partbounds_add(today, s->interval, s->premake);
    c->last = max > premade ? max : premade;
    int n = 0;
    for (int64_t d = c->first; d <= c->last && n <= MAX_PARTITIONS;
         d = partbounds_add(d, s->interval, 1))
        n++;
    if (n > MAX_PARTITIONS) {
        part_set_err(c->err, c->errlen,
                     "the rows of %s span more than %d %ss: narrow the copy with --keep, or "
                     "choose a longer --interval",
                     c->o->table, MAX_PARTITIONS, partbounds_interval_name(s->interval));
        return PARTITION_FAIL_REFUSED;
    }
    if (c->o->keep >= 0) {
        char lit[32];
        partbounds_literal(c->first, c->t.with_tz, lit, sizeof(lit));
        snprintf(c->keep, sizeof(c->keep), "%s >= '%s'", c->qcol, lit);
    }
    return PARTITION_OK;
}

/* ---- the steps ---- */

/* Drops what an interrupted convert left: the copy, the change log, the trigger. */
static partition_status_t drop_leftovers(convert_t *c)
{
    char sql[PART_SQL_LEN];
    snprintf(sql, sizeof(sql),
             "BEGIN; DROP TRIGGER IF EXISTS " TRIGGER_NAME " ON %s; "
             "DROP FUNCTION IF EXISTS %s(); DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS %s; "
             "COMMIT",
             c->qtable, c->qfunction, c->qlog, c->qnew);
    partition_status_t rc = run(c, sql);
    if (rc == PARTITION_OK)
        fprintf(c->x.out, "%s.%s: dropped %s, the copy of an interrupted convert; starting again\n",
                c->t.schema, c->t.name, c->new_name);
    return rc;
}

/* The copy as part_table_t, for partition_make(): its partitions are named after the table. */
static partition_status_t copy_table(convert_t *c, part_table_t *copy)
{
    *copy = c->t;
    copy->oid = 0;
    copy->relkind = 'p';
    snprintf(copy->name, sizeof(copy->name), "%s", c->new_name);
    if (c->x.dry_run)
        return PARTITION_OK;
    const char *params[] = {c->qnew};
    PGresult *res =
        part_query(c->x.conn, "SELECT to_regclass($1)::oid", 1, params, c->err, c->errlen);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    copy->oid = (unsigned)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return PARTITION_OK;
}

/* The partitioned copy, its indexes and partitions, and the trigger that records writes. */
static partition_status_t make_copy(convert_t *c)
{
    char sql[PART_SQL_LEN];
    snprintf(sql, sizeof(sql),
             "CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING "
             "GENERATED INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS INCLUDING "
             "COMPRESSION) PARTITION BY RANGE (%s)",
             c->qnew, c->qtable, c->qcol);
    partition_status_t rc = run(c, "BEGIN");
    if (rc == PARTITION_OK)
        rc = run(c, sql);
    for (int i = 0; i < c->n_indexes && rc == PARTITION_OK; i++)
        rc = run(c, c->indexes[i].create);
    part_table_t copy;
    if (rc == PARTITION_OK)
        rc = copy_table(c, &copy);
    int made = 0;
    if (rc == PARTITION_OK)
        rc = partition_make(&c->x, &copy, &c->o->settings, c->first, c->last, &made, c->err,
                            c->errlen);
    if (rc == PARTITION_OK && c->o->settings.default_partition)
        rc = partition_make_default(&c->x, &copy, c->err, c->errlen);
    if (rc == PARTITION_OK) {
        snprintf(sql, sizeof(sql),
                 "CREATE UNLOGGED TABLE %s AS SELECT %s FROM ONLY %s WITH NO DATA", c->qlog, c->key,
                 c->qtable);
        rc = run(c, sql);
    }
    if (rc == PARTITION_OK) {
        snprintf(sql, sizeof(sql),
                 "CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS " BODY_TAG
                 " BEGIN IF TG_OP <> 'INSERT' THEN INSERT INTO %s VALUES (%s); END IF; "
                 "IF TG_OP <> 'DELETE' THEN INSERT INTO %s VALUES (%s); END IF; RETURN NULL; "
                 "END " BODY_TAG,
                 c->qfunction, c->qlog, c->old_key, c->qlog, c->new_key);
        rc = run(c, sql);
    }
    if (rc == PARTITION_OK) {
        snprintf(sql, sizeof(sql),
                 "CREATE TRIGGER " TRIGGER_NAME " AFTER INSERT OR UPDATE OR DELETE ON %s "
                 "FOR EACH ROW EXECUTE FUNCTION %s()",
                 c->qtable, c->qfunction);
        rc = run(c, sql);
    }
    if (rc != PARTITION_OK) {
        rollback(c);
        return rc;
    }
    return run(c, "COMMIT");
}

/* The statement that copies the rows of blocks [from, to) of the table, kept ones only. */
static void batch_statement(const convert_t *c, int64_t from, int64_t to, char *sql, size_t len)
{
    snprintf(sql, len,
             "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM ONLY %s "
             "WHERE ctid >= '(%lld,0)'::tid AND ctid < '(%lld,0)'::tid%s%s "
             "ON CONFLICT DO NOTHING",
             c->qnew, c->columns, c->columns, c->qtable, (long long)from, (long long)to,
             c->keep[0] != '\0' ? " AND " : "", c->keep);
}

/* Copies the table's blocks as they were when the copy started, in batches of about
 * o->batch rows; rows written since are in the change log. */
static partition_status_t copy_rows(convert_t *c)
{
    char sql[PART_SQL_LEN];
    PGresult *res = ask(c,
                        "SELECT pg_relation_size($1::oid) / current_setting('block_size')::int, "
                        "greatest(reltuples, 0) FROM pg_class WHERE oid = $1::oid",
                        false);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    int64_t blocks = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    double rows = strtod(PQgetvalue(res, 0, 1), NULL);
    PQclear(res);
    double per_block = blocks > 0 && rows > 0 ? rows / (double)blocks : 1;
    int64_t step = (int64_t)(c->o->batch / per_block);
    if (step < 1)
        step = 1;
    if (c->x.dry_run) {
        batch_statement(c, 0, step, sql, sizeof(sql));
        fprintf(c->x.out, "%s;\n-- ... and so on, %lld blocks at a time, up to block %lld\n", sql,
                (long long)step, (long long)blocks);
        return PARTITION_OK;
    }
    long long copied = 0;
    int shown = 0;
    for (int64_t b = 0; b < blocks; b += step) {
        batch_statement(c, b, b + step, sql, sizeof(sql));
        res = PQexec(c->x.conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            pqmsg_describe(c->err, c->errlen, "cannot copy rows", c->x.conn);
            PQclear(res);
            return PARTITION_FAIL_DB;
        }
        copied += strtoll(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        int done = (int)(100 * (b + step < blocks ? b + step : blocks) / blocks);
        if (done / 10 > shown / 10 || b + step >= blocks) {
            fprintf(c->x.out, "%s.%s: copied %lld rows (%d %% of the table)\n", c->t.schema,
                    c->t.name, copied, done);
            fflush(c->x.out);
            shown = done;
        }
    }
    return PARTITION_OK;
}

/* Compares the rows of the table's kept range with the copy's, under the swap's lock. */
static partition_status_t check_counts(convert_t *c)
{
    if (c->x.dry_run)
        return PARTITION_OK;
    char sql[PART_SQL_LEN];
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM ONLY %s%s%s), (SELECT count(*) FROM %s)", c->qtable,
             c->keep[0] != '\0' ? " WHERE " : "", c->keep, c->qnew);
    PGresult *res = part_query(c->x.conn, sql, 0, NULL, c->err, c->errlen);
    if (res == NULL)
        return PARTITION_FAIL_DB;
    partition_status_t rc = PARTITION_OK;
    if (strcmp(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1)) != 0) {
        part_set_err(c->err, c->errlen,
                     "row counts differ (%s rows to keep in %s, %s in the copy): nothing was "
                     "swapped; run convert again",
                     PQgetvalue(res, 0, 0), c->o->table, PQgetvalue(res, 0, 1));
        rc = PARTITION_FAIL_DB;
    } else {
        fprintf(c->x.out, "%s.%s: %s rows in the copy, as many as in the table's kept range\n",
                c->t.schema, c->t.name, PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return rc;
}

/* Renames the indexes: the table's get "_old", the copy's their names. */
static partition_status_t rename_indexes(convert_t *c)
{
    partition_status_t rc = PARTITION_OK;
    for (int i = 0; i < c->n_indexes && rc == PARTITION_OK; i++) {
        char old[PARTBOUNDS_NAME_LEN], qname[PART_QUALIFIED_LEN], qtemp[PART_QUALIFIED_LEN],
            qold[PART_QUOTED_LEN], qnew[PART_QUOTED_LEN], sql[PART_SQL_LEN];
        partbounds_cut_name(c->indexes[i].name, "_old", old);
        if (!part_qualify(c->x.conn, c->t.schema, c->indexes[i].name, qname) ||
            !part_qualify(c->x.conn, c->t.schema, c->indexes[i].temp, qtemp) ||
            !part_quote_ident(c->x.conn, old, qold) ||
            !part_quote_ident(c->x.conn, c->indexes[i].name, qnew))
            return oom(c);
        snprintf(sql, sizeof(sql), "ALTER INDEX %s RENAME TO %s", qname, qold);
        rc = run(c, sql);
        snprintf(sql, sizeof(sql), "ALTER INDEX %s RENAME TO %s", qtemp, qnew);
        if (rc == PARTITION_OK)
            rc = run(c, sql);
    }
    return rc;
}

/* The statements that give an identity's sequence to the copy: the copy's own sequence
 * (made by LIKE ... INCLUDING IDENTITY) goes on from where the table's stopped and takes its
 * name, the table's gets "_old". table and column are quoted literals. */
static partition_status_t carry_identity(convert_t *c, const carried_sequence_t *s,
                                         const char *table, const char *column)
{
    char old[PARTBOUNDS_NAME_LEN], qold[PART_QUOTED_LEN], sql[PART_SQL_LEN];
    partbounds_cut_name(s->name, "_old", old);
    char *name = PQescapeLiteral(c->x.conn, s->name, strlen(s->name));
    if (name == NULL || !part_quote_ident(c->x.conn, old, qold)) {
        PQfreemem(name);
        return oom(c);
    }
    snprintf(sql, sizeof(sql),
             "SELECT setval(pg_get_serial_sequence(%s, %s), last_value, is_called) FROM %s; "
             "ALTER SEQUENCE %s RENAME TO %s; "
             "DO " BODY_TAG " BEGIN EXECUTE format('ALTER SEQUENCE %%s RENAME TO %%I', "
             "pg_get_serial_sequence(%s, %s), %s); END " BODY_TAG,
             table, column, s->sequence, s->sequence, qold, table, column, name);
    PQfreemem(name);
    if (strstr(s->sequence, BODY_TAG) != NULL) {
        part_set_err(c->err, c->errlen, "sequence %s has a name convert cannot use", s->name);
        return PARTITION_FAIL_REFUSED;
    }
    return run(c, sql);
}

/* Hands the sequences to the copy: owned ones (serial) change owner, identities go on. */
static partition_status_t carry_sequences(convert_t *c)
{
    partition_status_t rc = PARTITION_OK;
    for (int i = 0; i < c->n_sequences && rc == PARTITION_OK; i++) {
        const carried_sequence_t *s = &c->sequences[i];
        char col[PART_QUOTED_LEN], sql[PART_SQL_LEN];
        char *table = PQescapeLiteral(c->x.conn, c->qtable, strlen(c->qtable));
        char *column = PQescapeLiteral(c->x.conn, s->column, strlen(s->column));
        if (table == NULL || column == NULL || !part_quote_ident(c->x.conn, s->column, col)) {
            rc = oom(c);
        } else if (s->identity) {
            rc = carry_identity(c, s, table, column);
        } else {
            snprintf(sql, sizeof(sql), "ALTER SEQUENCE %s OWNED BY %s.%s", s->sequence, c->qtable,
                     col);
            rc = run(c, sql);
        }
        PQfreemem(table);
        PQfreemem(column);
    }
    return rc;
}

/* The short transaction that blocks writes: the recorded rows copied again, the counts
 * checked, the names swapped. */
static partition_status_t swap(convert_t *c)
{
    char sql[PART_SQL_LEN], qold[PART_QUOTED_LEN], qname[PART_QUOTED_LEN];
    if (!part_quote_ident(c->x.conn, c->old_name, qold) ||
        !part_quote_ident(c->x.conn, c->t.name, qname))
        return oom(c);
    partition_status_t rc = run(c, "BEGIN");
    snprintf(sql, sizeof(sql), "LOCK TABLE %s IN EXCLUSIVE MODE", c->qtable);
    if (rc == PARTITION_OK)
        rc = run(c, sql);
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE (%s) IN (SELECT %s FROM %s)", c->qnew, c->key,
             c->key, c->qlog);
    if (rc == PARTITION_OK)
        rc = run(c, sql);
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM ONLY %s WHERE (%s) IN "
             "(SELECT %s FROM %s)%s%s",
             c->qnew, c->columns, c->columns, c->qtable, c->key, c->key, c->qlog,
             c->keep[0] != '\0' ? " AND " : "", c->keep);
    if (rc == PARTITION_OK)
        rc = run(c, sql);
    if (rc == PARTITION_OK)
        rc = check_counts(c);
    snprintf(sql, sizeof(sql),
             "DROP TRIGGER " TRIGGER_NAME " ON %s; DROP FUNCTION %s(); DROP TABLE %s; "
             "ALTER TABLE %s RENAME TO %s; ALTER TABLE %s RENAME TO %s",
             c->qtable, c->qfunction, c->qlog, c->qtable, qold, c->qnew, qname);
    if (rc == PARTITION_OK)
        rc = run(c, sql);
    if (rc == PARTITION_OK)
        rc = rename_indexes(c);
    if (rc == PARTITION_OK)
        rc = carry_sequences(c);
    if (rc == PARTITION_OK)
        rc = partition_config_save(&c->x, &c->t, &c->o->settings, c->err, c->errlen);
    if (rc != PARTITION_OK) {
        rollback(c);
        return rc;
    }
    return run(c, "COMMIT");
}

/* Reads everything convert needs of the table and refuses what it cannot do. */
static partition_status_t prepare(convert_t *c)
{
    const convert_options_t *o = c->o;
    partition_status_t rc =
        partition_resolve(c->x.conn, o->table, o->settings.column, &c->t, c->err, c->errlen);
    if (rc == PARTITION_OK && c->t.relkind == 'p') {
        part_set_err(c->err, c->errlen,
                     "%s is partitioned already: pgturbo partition create manages it", o->table);
        rc = PARTITION_FAIL_REFUSED;
    }
    if (rc == PARTITION_OK)
        rc = name_things(c);
    int taken = rc == PARTITION_OK
                    ? part_relation_exists(c->x.conn, c->t.schema, c->old_name, c->err, c->errlen)
                    : 0;
    if (taken < 0)
        rc = PARTITION_FAIL_DB;
    else if (taken > 0) {
        part_set_err(c->err, c->errlen,
                     "%s.%s exists: the old table would take that name; rename or drop it first",
                     c->t.schema, c->old_name);
        rc = PARTITION_FAIL_REFUSED;
    }
    if (rc == PARTITION_OK)
        rc = check_table(c);
    if (rc == PARTITION_OK &&
        (c->columns = part_column_list(c->x.conn, c->t.oid, c->err, c->errlen)) == NULL)
        rc = PARTITION_FAIL_DB;
    if (rc == PARTITION_OK)
        rc = read_indexes(c);
    if (rc == PARTITION_OK)
        rc = read_keys_and_sequences(c);
    if (rc == PARTITION_OK)
        rc = plan_range(c);
    return rc;
}

partition_status_t partition_convert(PGconn *conn, const convert_options_t *o, FILE *out, char *err,
                                     size_t errlen)
{
    convert_t c = {.o = o, .x = {conn, out, o->dry_run}, .err = err, .errlen = errlen};
    partition_status_t rc = prepare(&c);
    int leftover =
        rc == PARTITION_OK ? part_relation_exists(conn, c.t.schema, c.new_name, err, errlen) : 0;
    if (leftover < 0)
        rc = PARTITION_FAIL_DB;
    else if (leftover > 0)
        rc = drop_leftovers(&c);
    if (rc == PARTITION_OK)
        rc = make_copy(&c);
    if (rc == PARTITION_OK)
        rc = copy_rows(&c);
    for (int i = 0; i < c.n_fks && rc == PARTITION_OK; i++)
        rc = run(&c, c.fks[i]);
    if (rc == PARTITION_OK)
        rc = swap(&c);
    if (rc == PARTITION_OK && !o->dry_run)
        fprintf(out, "%s.%s: converted; the old table is %s.%s%s\n", c.t.schema, c.t.name,
                c.t.schema, c.old_name,
                c.keep[0] != '\0' ? " (with the rows older than the kept range)" : "");
    convert_free(&c);
    return rc;
}
