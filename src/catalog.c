/*
 * catalog.c
 *    The catalog snapshot of catalog.h: the query that reads the facts, and the lookups, which
 *    only hash a name and copy the lists catalog_parse.c computed; references to a snapshot.
 *
 * The query gathers, for every relation of a non-system schema: its kind, whether it is
 * temporary, uses row-level security or has a name that a pg_catalog relation has, whether
 * it has user triggers or rules, its parents (pg_inherits), the tables that its foreign-key
 * actions can change (pg_constraint), and for a view what its stored query reads and calls.
 * The view's query comes from pg_rewrite.ev_action, a node tree whose text names every
 * relation (":relid"), function (":funcid", ":aggfnoid", ":winfnoid") and operator (":opno")
 * by oid. pg_depend would name them too, but not the pinned built-ins (now(), pg_class), so
 * the text is read with regular expressions instead. Functions are grouped by schema and name
 * with the worst volatility; the bodies of STABLE SQL functions are shipped (the text of
 * classic ones, which catalog_parse() analyzes with sqlparse, and the same node-tree facts as
 * a view's for BEGIN ATOMIC ones). Refused pg_catalog functions are not shipped unless a user
 * schema has a function of the same name: an unknown function is refused all the same, and
 * leaving them out keeps the value small.
 */
#include "catalog.h"

#include "catalog_snapshot.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- the query ---- */

static const char query_text[] =
    "WITH rel AS ("
    " SELECT c.oid, c.relname, c.relkind, c.relrowsecurity AS rls,"
    "  c.relpersistence = 't' AS temp,"
    "  CASE WHEN c.relpersistence = 't' THEN 'pg_temp' ELSE n.nspname END AS nspname"
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
    "  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
    "), fn AS ("
    " SELECT p.oid, n.nspname, p.proname, l.lanname, p.prosrc,"
    /* CREATE AGGREGATE records every aggregate as IMMUTABLE: what it really is depends on its
     * support functions, so a user aggregate with a non-IMMUTABLE one counts as VOLATILE. */
    "  CASE WHEN p.oid IN (SELECT a.aggfnoid FROM pg_catalog.pg_aggregate a"
    "    JOIN pg_catalog.pg_proc s ON s.oid IN (a.aggtransfn, a.aggfinalfn, a.aggcombinefn,"
    "     a.aggserialfn, a.aggdeserialfn, a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn)"
    "    WHERE s.provolatile <> 'i'"
    "     AND s.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace) THEN 'v'"
    "   ELSE p.provolatile::text END AS vol,"
    /* prosqlbody (BEGIN ATOMIC) exists from PostgreSQL 14 on; read through to_jsonb so that
     * the same text runs on 13, where the key is simply absent. */
    "  CASE WHEN p.provolatile = 's' AND l.lanname = 'sql'"
    "   THEN pg_catalog.to_jsonb(p) ->> 'prosqlbody' END AS sqlbody"
    " FROM pg_catalog.pg_proc p"
    " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
    " JOIN pg_catalog.pg_language l ON l.oid = p.prolang"
    /* Procedures and functions of pseudo-types no query can call are left out: the lookups
     * refuse what they do not know, which is right for them. */
    " WHERE p.prokind <> 'p' AND n.nspname !~ '^pg_(toast|temp)'"
    "  AND NOT (ARRAY[p.prorettype] || p.proargtypes::oid[]) && ARRAY["
    "   'pg_catalog.internal', 'pg_catalog.cstring', 'pg_catalog.trigger',"
    "   'pg_catalog.event_trigger', 'pg_catalog.language_handler', 'pg_catalog.fdw_handler',"
    "   'pg_catalog.index_am_handler', 'pg_catalog.tsm_handler',"
    "   'pg_catalog.table_am_handler']::pg_catalog.regtype[]::oid[]"
    "), grp AS ("
    " SELECT nspname, proname, max(vol) AS worst,"
    "  bool_or(vol = 'v' OR (vol = 's' AND lanname <> 'sql')) AS refused"
    " FROM fn GROUP BY nspname, proname"
    "), tree AS ("
    " SELECT 'v' AS kind, r.ev_class AS owner, r.ev_action::text AS t"
    " FROM pg_catalog.pg_rewrite r JOIN rel ON rel.oid = r.ev_class"
    " WHERE rel.relkind = 'v' AND r.rulename = '_RETURN'"
    " UNION ALL SELECT 'f', fn.oid, fn.sqlbody FROM fn WHERE fn.sqlbody IS NOT NULL"
    "), ref AS ("
    " SELECT tree.kind, tree.owner, m[1] AS field, m[2]::oid AS oid"
    " FROM tree, pg_catalog.regexp_matches(tree.t,"
    "  ':(relid|funcid|aggfnoid|winfnoid|opno) ([0-9]+)', 'g') m"
    "), facts AS ("
    " SELECT tree.kind, tree.owner, r.reads, c.calls,"
    /* A view's query (before PostgreSQL 16) lists the view itself as OLD and NEW: the
     * self-reference is dropped below. */
    "  tree.t ~ '[{](SQLVALUEFUNCTION|NEXTVALUEEXPR|TABLESAMPLECLAUSE) |:commandType [02-9]"
    "|:rowMarks [(]' OR o.owner IS NOT NULL AS unsafe"
    " FROM tree"
    " LEFT JOIN (SELECT kind, owner, pg_catalog.json_agg(DISTINCT oid::int8) AS reads FROM ref"
    "  WHERE field = 'relid' AND oid NOT IN (0, owner) GROUP BY kind, owner) r"
    "  ON r.kind = tree.kind AND r.owner = tree.owner"
    " LEFT JOIN (SELECT kind, owner, pg_catalog.json_agg(pg_catalog.json_build_array("
    "   nspname, proname) ORDER BY nspname, proname) AS calls"
    "  FROM (SELECT DISTINCT ref.kind, ref.owner, n.nspname, p.proname"
    "   FROM ref JOIN pg_catalog.pg_proc p ON p.oid = ref.oid"
    "   JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
    "   WHERE ref.field IN ('funcid', 'aggfnoid', 'winfnoid')) s"
    "  GROUP BY kind, owner) c"
    "  ON c.kind = tree.kind AND c.owner = tree.owner"
    " LEFT JOIN (SELECT DISTINCT ref.kind, ref.owner FROM ref"
    "  JOIN pg_catalog.pg_operator op ON op.oid = ref.oid"
    "  JOIN pg_catalog.pg_proc p ON p.oid = op.oprcode"
    "  WHERE ref.field = 'opno' AND (p.provolatile = 'v' OR (p.provolatile <> 'i'"
    "   AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace))) o"
    "  ON o.kind = tree.kind AND o.owner = tree.owner"
    ") SELECT pg_catalog.json_build_object("
    " 'version', 1,"
    " 'relations', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_strip_nulls("
    "  pg_catalog.json_build_object("
    "   'oid', rel.oid::int8, 'schema', rel.nspname, 'name', rel.relname, 'kind', rel.relkind,"
    "   'temp', nullif(rel.temp, false), 'rls', nullif(rel.rls, false),"
    "   'shadowed', nullif(sys.relname IS NOT NULL, false),"
    "   'triggers', nullif(trg.tgrelid IS NOT NULL, false),"
    "   'rules', nullif(rul.ev_class IS NOT NULL, false),"
    "   'parents', inh.parents, 'cascades', fk.cascades,"
    "   'reads', f.reads, 'calls', f.calls, 'unsafe', nullif(f.unsafe, false)))"
    "   ORDER BY rel.oid), '[]')"
    "  FROM rel"
    "  LEFT JOIN (SELECT DISTINCT relname FROM pg_catalog.pg_class"
    "   WHERE relnamespace = 'pg_catalog'::pg_catalog.regnamespace) sys"
    "   ON sys.relname = rel.relname"
    /* Since PostgreSQL 15 a user trigger cloned to a partition is not internal; before, it
     * was, and is told from the internal triggers of foreign keys and deferrable unique
     * constraints (which are cloned too) by having a parent and no constraint but its own. */
    "  LEFT JOIN (SELECT DISTINCT t.tgrelid FROM pg_catalog.pg_trigger t"
    "   LEFT JOIN pg_catalog.pg_constraint k ON k.oid = t.tgconstraint"
    "   WHERE NOT t.tgisinternal OR (t.tgparentid <> 0 AND coalesce(k.contype, 't') = 't'))"
    "   trg ON trg.tgrelid = rel.oid"
    "  LEFT JOIN (SELECT DISTINCT ev_class FROM pg_catalog.pg_rewrite"
    "   WHERE rulename <> '_RETURN') rul ON rul.ev_class = rel.oid"
    "  LEFT JOIN (SELECT inhrelid, pg_catalog.json_agg(inhparent::int8 ORDER BY inhparent)"
    "   AS parents FROM pg_catalog.pg_inherits GROUP BY inhrelid) inh"
    "   ON inh.inhrelid = rel.oid"
    "  LEFT JOIN (SELECT confrelid, pg_catalog.json_agg(DISTINCT conrelid::int8) AS cascades"
    "   FROM pg_catalog.pg_constraint WHERE contype = 'f'"
    "   AND (confdeltype IN ('c', 'n', 'd') OR confupdtype IN ('c', 'n', 'd'))"
    "   GROUP BY confrelid) fk ON fk.confrelid = rel.oid"
    "  LEFT JOIN facts f ON f.kind = 'v' AND f.owner = rel.oid),"
    " 'immutable_functions', (SELECT coalesce(pg_catalog.json_agg("
    "  pg_catalog.json_build_object('schema', nspname, 'names', names) ORDER BY nspname), '[]')"
    "  FROM (SELECT nspname, pg_catalog.json_agg(proname ORDER BY proname) AS names"
    "   FROM grp WHERE worst = 'i' GROUP BY nspname) s),"
    " 'refused_functions', (SELECT coalesce(pg_catalog.json_agg("
    "  pg_catalog.json_build_object('schema', nspname, 'names', names) ORDER BY nspname), '[]')"
    "  FROM (SELECT nspname, pg_catalog.json_agg(proname ORDER BY proname) AS names"
    "   FROM grp WHERE refused AND (nspname <> 'pg_catalog'"
    "    OR proname IN (SELECT proname FROM grp g WHERE g.nspname <> 'pg_catalog'))"
    "   GROUP BY nspname) s),"
    " 'stable_functions', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object("
    "  'schema', grp.nspname, 'name', grp.proname, 'bodies', ("
    "   SELECT pg_catalog.json_agg(CASE WHEN fn.sqlbody IS NULL"
    "    THEN pg_catalog.json_build_object('sql', fn.prosrc)"
    "    ELSE pg_catalog.json_strip_nulls(pg_catalog.json_build_object("
    "     'reads', f.reads, 'calls', f.calls, 'unsafe', nullif(f.unsafe, false))) END"
    "    ORDER BY fn.oid)"
    "   FROM fn LEFT JOIN facts f ON f.kind = 'f' AND f.owner = fn.oid"
    "   WHERE fn.nspname = grp.nspname AND fn.proname = grp.proname AND fn.vol = 's'))"
    "  ORDER BY grp.nspname, grp.proname), '[]')"
    "  FROM grp WHERE worst = 's' AND NOT refused),"
    " 'unsafe_operators', (SELECT coalesce(pg_catalog.json_agg(DISTINCT o.oprname), '[]')"
    "  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode"
    "  WHERE p.provolatile = 'v' OR (p.provolatile <> 'i'"
    "   AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace)))";

const char *catalog_query(void)
{
    return query_text;
}

/* ---- lookups ---- */

/* Adds the keys of list to out[0..*n) that are not there yet (keys are interned, so equal
 * keys are the same pointer); false when out would hold more than max. */
static bool merge_keys(const char **out, int *n, int max, const key_list_t *list)
{
    if (*n == 0) {
        /* The first list has no duplicates: a name of one relation is a copy. */
        int take = list->n < max ? list->n : max;
        if (take < 0)
            take = 0;
        if (take > 0)
            memcpy(out, list->keys, (size_t)take * sizeof(out[0]));
        *n = take;
        return list->n <= max;
    }
    for (int i = 0; i < list->n; i++) {
        const char *key = list->keys[i];
        int j = 0;
        while (j < *n && out[j] != key)
            j++;
        if (j < *n)
            continue;
        if (*n >= max)
            return false;
        out[(*n)++] = key;
    }
    return true;
}

int catalog_read_deps(const catalog_t *c, const char *name, const char **out, int max)
{
    name_walk_t w;
    if (!snapshot_name_walk_init(&w, c, name, false))
        return -1;
    int n = 0;
    bool found = false, qualified;
    for (int r; (r = snapshot_name_walk_next(&w, &qualified)) >= 0;) {
        const rel_t *rel = &c->rels[r];
        /* Unqualified, the name may be the session's temporary relation or the pg_catalog
         * relation that search_path finds first. */
        if (!qualified && (rel->temp || rel->shadowed))
            return -1;
        if (rel->read_deps.n < 0 || !merge_keys(out, &n, max, &rel->read_deps))
            return -1;
        found = true;
    }
    return found ? n : -1;
}

int catalog_write_closure(const catalog_t *c, const char *name, const char **out, int max,
                          bool *everything)
{
    *everything = false;
    name_walk_t w;
    if (!snapshot_name_walk_init(&w, c, name, false)) {
        *everything = true;
        return 0;
    }
    int n = 0;
    bool found = false, qualified;
    for (int r; (r = snapshot_name_walk_next(&w, &qualified)) >= 0;) {
        const rel_t *rel = &c->rels[r];
        if (rel->write_everything)
            *everything = true;
        if (!merge_keys(out, &n, max, &rel->write_keys))
            *everything = true;
        found = true;
    }
    if (!found)
        *everything = true;
    return n;
}

int catalog_function_deps(const catalog_t *c, const char *name, const char **out, int max)
{
    name_walk_t w;
    if (!snapshot_name_walk_init(&w, c, name, true))
        return -1;
    int n = 0;
    bool found = false, qualified;
    for (int g; (g = snapshot_name_walk_next(&w, &qualified)) >= 0;) {
        const group_t *group = &c->groups[g];
        if (group->deps.n < 0 || !merge_keys(out, &n, max, &group->deps))
            return -1;
        found = true;
    }
    return found ? n : -1;
}

bool catalog_operator_cacheable(const catalog_t *c, const char *name)
{
    return c->n_unsafe_ops == 0 ||
           bsearch(&name, c->unsafe_ops, (size_t)c->n_unsafe_ops, sizeof(c->unsafe_ops[0]),
                   snapshot_compare_strings) == NULL;
}

const char *catalog_schema_of(const catalog_t *c, const char *name)
{
    name_walk_t w;
    if (!snapshot_name_walk_init(&w, c, name, false))
        return NULL;
    const char *schema = NULL;
    bool qualified;
    for (int r; (r = snapshot_name_walk_next(&w, &qualified)) >= 0;) {
        if (schema != NULL && schema != c->rels[r].schema)
            return NULL;
        schema = c->rels[r].schema;
    }
    if (schema == NULL && w.n_readings > 1) {
        /* A qualified name of no relation: its schema, if the snapshot knows that schema. */
        const slot_t *slot =
            snapshot_strmap_find(&c->schemas, w.readings[1].schema, w.readings[1].schema_len);
        schema = slot == NULL ? NULL : slot->text;
    }
    return schema;
}

bool catalog_function_may_write(const catalog_t *c, const char *name)
{
    name_walk_t w;
    if (!snapshot_name_walk_init(&w, c, name, true))
        return true;
    bool found = false, qualified;
    for (int g; (g = snapshot_name_walk_next(&w, &qualified)) >= 0;) {
        const group_t *group = &c->groups[g];
        found = true;
        if (group->status == GROUP_REFUSED && strcmp(group->schema, "pg_catalog") != 0)
            return true;
    }
    return !found && strchr(name, '.') != NULL && strncmp(name, "pg_catalog.", 11) != 0;
}

int catalog_relations_in(const catalog_t *c, const char *schema, const char **out, int max)
{
    int n = 0;
    for (int i = 0; i < c->n_rels && n < max; i++)
        if (strcmp(c->rels[i].schema, schema) == 0)
            out[n++] = c->keys[c->rels[i].key].name;
    return n;
}

int catalog_relation_count(const catalog_t *c)
{
    return c->n_rels;
}

int catalog_function_count(const catalog_t *c)
{
    return c->n_groups;
}

void catalog_ref(catalog_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void catalog_unref(catalog_t *c)
{
    if (c == NULL)
        return;
    /* Release orders this thread's reads of the snapshot before the free that the last
     * dropper does; acquire makes that dropper see every other thread's. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (block_t *b = c->blocks, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(c);
}
