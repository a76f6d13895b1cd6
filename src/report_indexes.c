/*
 * report_indexes.c
 *    Index and foreign-key checks of pgturbo report; see report_indexes.h. The rules (what is
 *    a duplicate, what is a redundant prefix) are health.c's.
 */
#include "report_indexes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- indexes ---- */

static bool is_dropped(report_ctx_t *c, const char *oid)
{
    for (int i = 0; i < c->n_dropped; i++)
        if (strcmp(c->dropped[i], oid) == 0)
            return true;
    return false;
}

static json_t *index_row(const PGresult *r, int i)
{
    json_t *o = json_object();
    rctx_put_text(o, r, i, "schema");
    rctx_put_text(o, r, i, "table");
    rctx_put_text(o, r, i, "index");
    rctx_put_int(o, r, i, "size_bytes");
    rctx_put_int(o, r, i, "scans");
    rctx_put_text(o, r, i, "definition");
    return o;
}

/* The action that removes index i of r: DROP INDEX, or DROP CONSTRAINT for one that backs
 * a constraint. */
static void drop_action(report_ctx_t *c, const PGresult *r, int i, char *out, size_t len)
{
    char q[NAME_LEN];
    if (rctx_has(r, i, "constraint_name")) {
        char t[NAME_LEN], k[NAME_LEN];
        rctx_quoted(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table"), t, sizeof(t));
        rctx_quoted1(c, rctx_val(r, i, "constraint_name"), k, sizeof(k));
        snprintf(out, len, "ALTER TABLE %s DROP CONSTRAINT %s;", t, k);
    } else {
        rctx_quoted(c, rctx_val(r, i, "schema"), rctx_val(r, i, "index"), q, sizeof(q));
        snprintf(out, len, "DROP INDEX CONCURRENTLY IF EXISTS %s;", q);
    }
}

static int by_scans_desc(const void *a, const void *b, void *arg)
{
    const PGresult *r = arg;
    double x = rctx_num(r, *(const int *)a, "scans"), y = rctx_num(r, *(const int *)b, "scans");
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

static int by_size_desc(const void *a, const void *b, void *arg)
{
    const PGresult *r = arg;
    double x = rctx_num(r, *(const int *)a, "size_bytes"),
           y = rctx_num(r, *(const int *)b, "size_bytes");
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

static void report_overlaps(report_ctx_t *c, const PGresult *r, const int *duplicate,
                            const int *covered, json_t *dups, json_t *redundant)
{
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        int other = duplicate[i] != -1 ? duplicate[i] : covered[i];
        if (other == -1)
            continue;
        bool dup = duplicate[i] != -1;
        json_t *o = index_row(r, i);
        json_object_set_new(o, dup ? "duplicate_of" : "covered_by",
                            rctx_jstr(rctx_val(r, other, "index")));
        json_object_set_new(o, dup ? "duplicate_of_definition" : "covered_by_definition",
                            rctx_jstr(rctx_val(r, other, "definition")));
        json_array_append_new(dup ? dups : redundant, o);
        char **grown = realloc(c->dropped, sizeof(char *) * (size_t)(c->n_dropped + 1));
        if (grown != NULL)
            c->dropped = grown;
        char *oid = grown != NULL ? strdup(rctx_val(r, i, "oid")) : NULL;
        if (oid == NULL) {
            rctx_fail(c, "indexes: out of memory");
            return;
        }
        c->dropped[c->n_dropped++] = oid;
        c->in.bad_indexes++;

        char msg[MSG_LEN], action[MSG_LEN], size[32], object[NAME_LEN];
        rctx_size_text(rctx_num(r, i, "size_bytes"), size, sizeof(size));
        snprintf(object, sizeof(object), "%s.%s", rctx_val(r, i, "schema"),
                 rctx_val(r, i, "index"));
        drop_action(c, r, i, action, sizeof(action));
        if (dup) {
            snprintf(msg, sizeof(msg),
                     "Index %s on %s (%s) duplicates %s: same definition, maintained twice "
                     "on every write",
                     rctx_shown(c, NULL, rctx_val(r, i, "index")),
                     rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table")), size,
                     rctx_shown(c, NULL, rctx_val(r, other, "index")));
            rctx_recommend(c, HEALTH_WARNING, "indexes", "duplicate_index", object, msg, action);
        } else {
            snprintf(msg, sizeof(msg),
                     "Index %s on %s (%s) is redundant: its columns lead %s, which serves "
                     "the same lookups",
                     rctx_shown(c, NULL, rctx_val(r, i, "index")),
                     rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table")), size,
                     rctx_shown(c, NULL, rctx_val(r, other, "index")));
            rctx_recommend(c, HEALTH_INFO, "indexes", "redundant_index", object, msg, action);
        }
    }
}

static void report_invalid(report_ctx_t *c, const PGresult *r, json_t *invalid)
{
    for (int i = 0; i < PQntuples(r); i++) {
        if (rctx_flag(r, i, "valid") || rctx_flag(r, i, "building"))
            continue;
        json_array_append_new(invalid, index_row(r, i));
        c->in.bad_indexes++;
        char msg[MSG_LEN], action[MSG_LEN], q[NAME_LEN], object[NAME_LEN];
        rctx_quoted(c, rctx_val(r, i, "schema"), rctx_val(r, i, "index"), q, sizeof(q));
        snprintf(object, sizeof(object), "%s.%s", rctx_val(r, i, "schema"),
                 rctx_val(r, i, "index"));
        snprintf(msg, sizeof(msg),
                 "Index %s on %s is invalid (a failed CREATE INDEX CONCURRENTLY or REINDEX): "
                 "writes maintain it, queries never use it",
                 rctx_shown(c, NULL, rctx_val(r, i, "index")),
                 rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table")));
        snprintf(action, sizeof(action),
                 "REINDEX INDEX CONCURRENTLY %s; (or DROP INDEX CONCURRENTLY %s; if it is not "
                 "wanted)",
                 q, q);
        rctx_recommend(c, HEALTH_WARNING, "indexes", "invalid_index", object, msg, action);
    }
}

static void report_unused(report_ctx_t *c, const PGresult *r, const int *order, json_t *unused)
{
    int n = PQntuples(r), too_new = 0, small = 0;
    double small_bytes = 0;
    for (int k = 0; k < n; k++) {
        int i = order[k];
        if (!rctx_flag(r, i, "valid") || rctx_flag(r, i, "unique") ||
            rctx_has(r, i, "constraint_name") || rctx_num(r, i, "scans") > 0 ||
            strcmp(rctx_val(r, i, "kind"), "i") != 0 || is_dropped(c, rctx_val(r, i, "oid")))
            continue;
        const char *created = rctx_val(r, i, "created_at");
        if (created != NULL && c->stats_reset[0] != '\0' && strcmp(created, c->stats_reset) > 0) {
            too_new++;
            continue;
        }
        double bytes = rctx_num(r, i, "size_bytes");
        bool large = bytes >= c->opt->min_relation_bytes;
        json_t *o = index_row(r, i);
        json_object_set_new(o, "created_at", rctx_jstr(created));
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
        rctx_size_text(bytes, size, sizeof(size));
        snprintf(object, sizeof(object), "%s.%s", rctx_val(r, i, "schema"),
                 rctx_val(r, i, "index"));
        snprintf(msg, sizeof(msg),
                 "Index %s on %s (%s) has not been used since %s: it costs space and "
                 "every write",
                 rctx_shown(c, NULL, rctx_val(r, i, "index")),
                 rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table")), size,
                 c->stats_reset[0] != '\0' ? c->stats_reset : "statistics began");
        drop_action(c, r, i, action, sizeof(action));
        strncat(action, " -- check replicas first: scans there are not counted here",
                sizeof(action) - strlen(action) - 1);
        rctx_recommend(c, HEALTH_WARNING, "indexes", "unused_index", object, msg, action);
    }
    if (small > 0) {
        char msg[MSG_LEN], size[32];
        rctx_size_text(small_bytes, size, sizeof(size));
        snprintf(msg, sizeof(msg), "%d small unused index%s (%s in all)", small,
                 small == 1 ? "" : "es", size);
        rctx_recommend(c, HEALTH_INFO, "indexes", "unused_small_indexes", NULL, msg,
                       "Drop them when convenient; see the unused list");
    }
    if (too_new > 0) {
        char reason[MSG_LEN];
        snprintf(reason, sizeof(reason),
                 "%d index%s created after the last statistics reset (%s) not judged as unused",
                 too_new, too_new == 1 ? "" : "es", c->stats_reset);
        rctx_skip(c, "unused_indexes", reason);
    }
}

void report_check_indexes(report_ctx_t *c)
{
    PGresult *r = rctx_run0(
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
        rctx_fail(c, "indexes: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        health_index_t *x = &idx[i];
        x->table = (unsigned int)strtoul(rctx_val(r, i, "table_oid"), NULL, 10);
        x->am = rctx_val(r, i, "am");
        x->natts = (int)rctx_num(r, i, "natts");
        x->nkeys = (int)rctx_num(r, i, "nkeys");
        x->exprs = rctx_val(r, i, "exprs");
        x->pred = rctx_val(r, i, "pred");
        x->unique = rctx_flag(r, i, "unique");
        x->constraint = rctx_has(r, i, "constraint_name");
        /* A vector that does not parse takes the index out of the comparison. */
        x->valid = rctx_flag(r, i, "valid") &&
                   health_parse_vector(rctx_val(r, i, "keys"), x->keys, HEALTH_INDEX_MAX_KEYS) ==
                       x->natts &&
                   health_parse_vector(rctx_val(r, i, "opclasses"), x->opclasses,
                                       HEALTH_INDEX_MAX_KEYS) == x->nkeys &&
                   health_parse_vector(rctx_val(r, i, "collations"), x->collations,
                                       HEALTH_INDEX_MAX_KEYS) == x->nkeys &&
                   health_parse_vector(rctx_val(r, i, "options"), x->options,
                                       HEALTH_INDEX_MAX_KEYS) == x->nkeys;
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
    for (int k = 0; k < n && k < c->opt->top && rctx_num(r, order[k], "scans") > 0; k++)
        json_array_append_new(most_used, index_row(r, order[k]));

    report_overlaps(c, r, duplicate, covered, dups, redundant);
    report_invalid(c, r, invalid);

    for (int i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, (size_t)n, sizeof(int), by_size_desc, r);
    report_unused(c, r, order, unused);
    if (!c->track_commit_ts && json_array_size(unused) > 0)
        rctx_skip(c, "unused_index_age",
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

void report_check_foreign_keys(report_ctx_t *c)
{
    PGresult *r = rctx_run0(
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
        json_t *cols = json_loads(rctx_val(r, i, "columns"), 0, NULL);
        if (!json_is_array(cols)) {
            json_decref(cols);
            continue;
        }
        json_t *o = json_object();
        rctx_put_text(o, r, i, "schema");
        rctx_put_text(o, r, i, "table");
        rctx_put_text(o, r, i, "constraint");
        json_object_set(o, "columns", cols);
        rctx_put_text(o, r, i, "referenced_schema");
        rctx_put_text(o, r, i, "referenced_table");
        rctx_put_int(o, r, i, "table_bytes");
        rctx_put_int(o, r, i, "rows");
        json_array_append_new(list, o);
        c->in.fk_without_index++;

        char t[NAME_LEN], action[MSG_LEN], msg[MSG_LEN], object[NAME_LEN], names[400] = "";
        rctx_quoted(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table"), t, sizeof(t));
        int len = snprintf(action, sizeof(action), "CREATE INDEX CONCURRENTLY ON %s (", t);
        size_t k;
        json_t *col;
        json_array_foreach(cols, k, col)
        {
            char q[NAME_LEN];
            rctx_quoted1(c, json_string_value(col), q, sizeof(q));
            if (len >= 0 && (size_t)len < sizeof(action))
                len += snprintf(action + len, sizeof(action) - (size_t)len, "%s%s",
                                k > 0 ? ", " : "", q);
            size_t used = strlen(names);
            snprintf(names + used, sizeof(names) - used, "%s%s", k > 0 ? ", " : "",
                     rctx_shown(c, NULL, json_string_value(col)));
        }
        if (len >= 0 && (size_t)len < sizeof(action))
            snprintf(action + len, sizeof(action) - (size_t)len, ");");
        json_decref(cols);
        snprintf(object, sizeof(object), "%s.%s", rctx_val(r, i, "schema"),
                 rctx_val(r, i, "table"));
        bool large = rctx_num(r, i, "table_bytes") >= c->opt->min_relation_bytes;
        snprintf(
            msg, sizeof(msg),
            "Foreign key %s on %s (%s) referencing %s has no index: deletes and "
            "updates of %s scan %s, and joins on it cannot use an index",
            rctx_shown(c, NULL, rctx_val(r, i, "constraint")),
            rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table")), names,
            rctx_shown(c, rctx_val(r, i, "referenced_schema"), rctx_val(r, i, "referenced_table")),
            rctx_shown(c, rctx_val(r, i, "referenced_schema"), rctx_val(r, i, "referenced_table")),
            rctx_shown(c, rctx_val(r, i, "schema"), rctx_val(r, i, "table")));
        rctx_recommend(c, large ? HEALTH_WARNING : HEALTH_INFO, "indexes",
                       "foreign_key_without_index", object, msg, action);
    }
    PQclear(r);
}
