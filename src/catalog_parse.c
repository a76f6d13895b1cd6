/*
 * catalog_parse.c
 *    catalog_parse(): the catalog query's value (catalog.c) into a snapshot, with every
 *    closure computed once so that the lookups only copy them.
 *
 * The snapshot is a graph of relations and function groups: a view or a STABLE SQL function
 * reads relations and calls groups. Read dependencies and write closures are walked for every
 * node at parse time, with a stamp per node as the cycle guard, and stored as arrays of
 * generation keys; a lookup hashes the name and merges the arrays of the relations it
 * denotes. All strings and arrays of a snapshot live in its arena, freed in one walk.
 */
#include "catalog.h"

#include "catalog_snapshot.h"
#include "sqlparse.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable array of ints, for edges gathered before their count is known. */
typedef struct intvec {
    int *v;
    int n, cap;
} intvec_t;

static bool intvec_push(intvec_t *vec, int x)
{
    if (vec->n == vec->cap) {
        int cap = vec->cap == 0 ? 16 : vec->cap * 2;
        int *v = realloc(vec->v, (size_t)cap * sizeof(int));
        if (v == NULL)
            return false;
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = x;
    return true;
}

/* An oid and the relation that has it, sorted by oid to find the relations of a list. */
typedef struct oid_index {
    uint32_t oid;
    int rel;
} oid_index_t;

typedef struct parser {
    catalog_t *c;
    char *err;
    size_t errlen;
    bool failed;
    oid_index_t *by_oid;
    intvec_t reads, calls; /* the edges of the node being read */
} parser_t;

/* Records the first failure's message; returns false for the caller to pass on. */
__attribute__((format(printf, 2, 3))) static bool fail(parser_t *p, const char *fmt, ...)
{
    if (!p->failed && p->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
    p->failed = true;
    return false;
}

static bool out_of_memory(parser_t *p)
{
    return fail(p, "catalog: out of memory");
}

static int compare_oids(const void *a, const void *b)
{
    uint32_t x = ((const oid_index_t *)a)->oid, y = ((const oid_index_t *)b)->oid;
    return x < y ? -1 : x > y;
}

static int rel_by_oid(const parser_t *p, uint32_t oid)
{
    oid_index_t key = {oid, 0};
    const oid_index_t *hit =
        bsearch(&key, p->by_oid, (size_t)p->c->n_rels, sizeof(key), compare_oids);
    return hit == NULL ? -1 : hit->rel;
}

/* An optional boolean member: absent is false. */
static bool get_flag(parser_t *p, json_t *obj, const char *key, const char *what, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (v != NULL && !json_is_boolean(v))
        return fail(p, "catalog: %s: \"%s\" is not a boolean", what, key);
    *out = json_is_true(v);
    return true;
}

static const char *get_string(parser_t *p, json_t *obj, const char *key, const char *what)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL || s[0] == '\0') {
        fail(p, "catalog: %s: \"%s\" is not a non-empty string", what, key);
        return NULL;
    }
    return s;
}

/* An array member: NULL (with a message) when it is something else, or when it is absent
 * and required. An optional array that is absent is NULL too, without a message: jansson's
 * iterations treat NULL as empty. */
static json_t *get_array(parser_t *p, json_t *obj, const char *key, const char *what, bool required)
{
    json_t *v = json_object_get(obj, key);
    if ((v != NULL || required) && !json_is_array(v))
        fail(p, "catalog: %s: \"%s\" is not an array", what, key);
    return json_is_array(v) ? v : NULL;
}

static bool get_oid(parser_t *p, json_t *v, const char *what, uint32_t *oid)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
        json_integer_value(v) > (json_int_t)UINT32_MAX)
        return fail(p, "catalog: %s: an oid is not an integer in 1..4294967295", what);
    *oid = (uint32_t)json_integer_value(v);
    return true;
}

/* The relations of an array of oids into vec; *unknown is set when one is not held. */
static bool read_oids(parser_t *p, json_t *obj, const char *key, const char *what, intvec_t *vec,
                      bool *unknown)
{
    json_t *list = get_array(p, obj, key, what, false);
    if (p->failed)
        return false;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        uint32_t oid = 0;
        if (!get_oid(p, item, what, &oid))
            return false;
        int r = rel_by_oid(p, oid);
        if (r < 0)
            *unknown = true;
        else if (!intvec_push(vec, r))
            return out_of_memory(p);
    }
    return true;
}

/* The groups of an array of [schema, name] pairs into p->calls; *unknown is set when one is
 * not held (a refused pg_catalog function, say). */
static bool read_calls(parser_t *p, json_t *obj, const char *what, bool *unknown)
{
    json_t *list = get_array(p, obj, "calls", what, false);
    if (p->failed)
        return false;
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *schema = json_string_value(json_array_get(item, 0));
        const char *name = json_string_value(json_array_get(item, 1));
        if (!json_is_array(item) || json_array_size(item) != 2 || schema == NULL || name == NULL)
            return fail(p, "catalog: %s: a call is not a [schema, name] pair", what);
        int g = snapshot_group_find(p->c, schema, name);
        if (g < 0)
            *unknown = true;
        else if (!intvec_push(&p->calls, g))
            return out_of_memory(p);
    }
    return true;
}

static bool intern_schema(parser_t *p, const char *schema, const char **out)
{
    slot_t *slot = snapshot_strmap_add(p->c, &p->c->schemas, schema, strlen(schema));
    if (slot == NULL)
        return out_of_memory(p);
    *out = slot->text;
    return true;
}

/* First pass over a relation: its identity and flags. */
static bool read_relation(parser_t *p, json_t *obj, int index)
{
    catalog_t *c = p->c;
    rel_t *rel = &c->rels[index];
    char what[64];
    snprintf(what, sizeof(what), "relations[%d]", index);
    if (!json_is_object(obj))
        return fail(p, "catalog: %s is not an object", what);
    const char *schema = get_string(p, obj, "schema", what);
    const char *name = get_string(p, obj, "name", what);
    const char *kind = get_string(p, obj, "kind", what);
    if (schema == NULL || name == NULL || kind == NULL)
        return false;
    if (strlen(kind) != 1 || strchr("rpvmf", kind[0]) == NULL)
        return fail(p, "catalog: %s: kind \"%s\" is not one of r, p, v, m, f", what, kind);
    if (!get_oid(p, json_object_get(obj, "oid"), what, &rel->oid))
        return false;
    rel->kind = kind[0];
    if (!get_flag(p, obj, "temp", what, &rel->temp) || !get_flag(p, obj, "rls", what, &rel->rls) ||
        !get_flag(p, obj, "shadowed", what, &rel->shadowed) ||
        !get_flag(p, obj, "triggers", what, &rel->triggers) ||
        !get_flag(p, obj, "rules", what, &rel->rules) ||
        !get_flag(p, obj, "unsafe", what, &rel->unsafe))
        return false;
    if (!intern_schema(p, schema, &rel->schema))
        return false;
    slot_t *slot = snapshot_strmap_add(c, &c->relnames, name, strlen(name));
    if (slot == NULL)
        return out_of_memory(p);
    if (slot->value < 0) {
        slot->value = c->n_keys++;
        c->keys[slot->value] = (gen_key_t){slot->text, -1};
    }
    rel->key = slot->value;
    for (int r = c->keys[rel->key].first_rel; r >= 0; r = c->rels[r].next_same_name)
        if (c->rels[r].schema == rel->schema)
            return fail(p, "catalog: %s: %s.%s is there twice", what, schema, name);
    rel->next_same_name = c->keys[rel->key].first_rel;
    c->keys[rel->key].first_rel = index;
    p->by_oid[index] = (oid_index_t){rel->oid, index};
    return true;
}

/* Second pass over a relation, once every oid and group is known: its edges. */
static bool read_relation_links(parser_t *p, json_t *obj, int index)
{
    catalog_t *c = p->c;
    rel_t *rel = &c->rels[index];
    char what[64];
    snprintf(what, sizeof(what), "relations[%d]", index);
    intvec_t parents = {0}, cascades = {0};
    p->reads.n = p->calls.n = 0;
    bool unknown_call = false, ok;
    ok = read_oids(p, obj, "parents", what, &parents, &rel->unknown_links) &&
         read_oids(p, obj, "cascades", what, &cascades, &rel->unknown_links) &&
         read_oids(p, obj, "reads", what, &p->reads, &rel->unknown_links) &&
         read_calls(p, obj, what, &unknown_call);
    if (ok) {
        rel->n_parents = parents.n;
        rel->n_cascades = cascades.n;
        rel->n_reads = p->reads.n;
        rel->n_calls = p->calls.n;
        rel->parents = snapshot_arena_ints(c, parents.v, parents.n);
        rel->cascades = snapshot_arena_ints(c, cascades.v, cascades.n);
        rel->reads = snapshot_arena_ints(c, p->reads.v, p->reads.n);
        rel->calls = snapshot_arena_ints(c, p->calls.v, p->calls.n);
        if ((parents.n > 0 && rel->parents == NULL) || (cascades.n > 0 && rel->cascades == NULL) ||
            (p->reads.n > 0 && rel->reads == NULL) || (p->calls.n > 0 && rel->calls == NULL))
            ok = out_of_memory(p);
    }
    free(parents.v);
    free(cascades.v);
    if (!ok)
        return false;
    /* A view reading what the snapshot does not hold reads a system relation or a sequence,
     * whose contents change without writes the proxy sees. */
    if (rel->kind == 'v' && rel->unknown_links)
        rel->unsafe = true;
    if (unknown_call)
        rel->unsafe = rel->calls_refused = true;
    for (int i = 0; i < rel->n_calls; i++)
        if (c->groups[rel->calls[i]].status == GROUP_REFUSED)
            rel->calls_refused = true;
    return true;
}

/* The children of every relation, from their parents. */
static bool link_children(parser_t *p)
{
    catalog_t *c = p->c;
    for (int r = 0; r < c->n_rels; r++)
        for (int i = 0; i < c->rels[r].n_parents; i++)
            c->rels[c->rels[r].parents[i]].n_children++;
    for (int r = 0; r < c->n_rels; r++) {
        rel_t *rel = &c->rels[r];
        if (rel->n_children > 0 && (rel->children = snapshot_arena_alloc(
                                        c, (size_t)rel->n_children * sizeof(int))) == NULL)
            return out_of_memory(p);
        rel->n_children = 0;
    }
    for (int r = 0; r < c->n_rels; r++)
        for (int i = 0; i < c->rels[r].n_parents; i++) {
            rel_t *parent = &c->rels[c->rels[r].parents[i]];
            parent->children[parent->n_children++] = r;
        }
    return true;
}

/* Adds the group schema.name; false (with a message) when it is there already. */
static bool add_group(parser_t *p, const char *what, const char *schema, const char *name,
                      char status)
{
    catalog_t *c = p->c;
    group_t *g = &c->groups[c->n_groups];
    if (!intern_schema(p, schema, &g->schema))
        return false;
    slot_t *slot = snapshot_strmap_add(c, &c->fnames, name, strlen(name));
    if (slot == NULL)
        return out_of_memory(p);
    for (int k = slot->value; k >= 0; k = c->groups[k].next_same_name)
        if (c->groups[k].schema == g->schema)
            return fail(p, "catalog: %s: function %s.%s is there twice", what, schema, name);
    g->name = slot->text;
    g->status = status;
    g->next_same_name = slot->value;
    slot->value = c->n_groups++;
    return true;
}

/* Adds a group of every (schema, name) in a list of {"schema", "names"} objects. */
static bool read_group_names(parser_t *p, json_t *root, const char *key, char status)
{
    json_t *list = get_array(p, root, key, "the value", true);
    if (list == NULL)
        return false;
    size_t i, j;
    json_t *item, *name;
    json_array_foreach(list, i, item)
    {
        char what[64];
        snprintf(what, sizeof(what), "%s[%zu]", key, i);
        const char *schema = get_string(p, item, "schema", what);
        json_t *names = get_array(p, item, "names", what, true);
        if (schema == NULL || names == NULL)
            return false;
        json_array_foreach(names, j, name)
        {
            const char *s = json_string_value(name);
            if (s == NULL || s[0] == '\0')
                return fail(p, "catalog: %s: a name is not a non-empty string", what);
            if (!add_group(p, what, schema, s, status))
                return false;
        }
    }
    return true;
}

/* The text of a {"String": {"sval": ...}} node, or NULL. */
static const char *string_node(json_t *node)
{
    return json_string_value(json_object_get(json_object_get(node, "String"), "sval"));
}

/* The last element of a list of String nodes (an operator or function name), or NULL. */
static const char *last_name(json_t *names)
{
    size_t n = json_array_size(names);
    return n == 0 ? NULL : string_node(json_array_get(names, n - 1));
}

/* The groups a function call of a body may run into p->calls; false when memory runs out. */
static bool body_call(parser_t *p, json_t *call, bool *unsafe)
{
    json_t *names = json_object_get(call, "funcname");
    size_t n = json_array_size(names);
    const char *name = last_name(names);
    const char *schema = n >= 2 ? string_node(json_array_get(names, n - 2)) : NULL;
    if (name == NULL) {
        *unsafe = true;
        return true;
    }
    const catalog_t *c = p->c;
    const slot_t *slot = snapshot_strmap_find(&c->fnames, name, strlen(name));
    bool found = false;
    for (int g = slot == NULL ? -1 : slot->value; g >= 0; g = c->groups[g].next_same_name) {
        if (schema != NULL && strcmp(c->groups[g].schema, schema) != 0)
            continue;
        if (!intvec_push(&p->calls, g))
            return out_of_memory(p);
        found = true;
    }
    if (!found)
        *unsafe = true;
    return true;
}

static bool operator_unsafe(const catalog_t *c, const char *name)
{
    return name == NULL || !catalog_operator_cacheable(c, name);
}

/* An operator expression of a body: BETWEEN names no operator, but runs <= and >=. */
static bool body_operator_unsafe(const catalog_t *c, json_t *expr)
{
    const char *kind = json_string_value(json_object_get(expr, "kind"));
    if (kind != NULL && strstr(kind, "BETWEEN") != NULL)
        return operator_unsafe(c, "<=") || operator_unsafe(c, ">=");
    return operator_unsafe(c, last_name(json_object_get(expr, "name")));
}

/* Walks the parse tree of a classic SQL body for what sqlparse does not report by name: the
 * functions it calls and the value functions, clock casts, samples and operators that make
 * it uncacheable. */
static bool walk_body(parser_t *p, json_t *v, bool *unsafe)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            if (!walk_body(p, item, unsafe))
                return false;
        }
        return true;
    }
    if (!json_is_object(v))
        return true;
    const char *key;
    json_t *child;
    json_object_foreach(v, key, child)
    {
        if (strcmp(key, "FuncCall") == 0) {
            if (!body_call(p, child, unsafe))
                return false;
        } else if (strcmp(key, "SQLValueFunction") == 0 || strcmp(key, "RangeTableSample") == 0) {
            *unsafe = true;
        } else if (strcmp(key, "A_Expr") == 0) {
            if (body_operator_unsafe(p->c, child))
                *unsafe = true;
        } else if (strcmp(key, "TypeCast") == 0) {
            if (sqlparse_cast_reads_clock(child))
                *unsafe = true;
        } else if (strcmp(key, "SortBy") == 0) {
            json_t *op = json_object_get(child, "useOp");
            if (op != NULL && operator_unsafe(p->c, last_name(op)))
                *unsafe = true;
        }
        if (!walk_body(p, child, unsafe))
            return false;
    }
    return true;
}

/* The relations a body's table name may denote, as a read: *unsafe when it denotes none, or
 * may be a temporary relation or a pg_catalog one. */
static bool body_table(parser_t *p, const char *name, bool *unsafe)
{
    name_walk_t w;
    if (!snapshot_name_walk_init(&w, p->c, name, false)) {
        *unsafe = true;
        return true;
    }
    bool found = false, qualified;
    for (int r; (r = snapshot_name_walk_next(&w, &qualified)) >= 0;) {
        const rel_t *rel = &p->c->rels[r];
        if (!qualified && (rel->temp || rel->shadowed))
            *unsafe = true;
        if (!intvec_push(&p->reads, r))
            return out_of_memory(p);
        found = true;
    }
    if (!found)
        *unsafe = true;
    return true;
}

/* A classic SQL body: a plain read, by sqlparse, of known relations calling known functions. */
static bool read_sql_body(parser_t *p, const char *src, bool *unsafe)
{
    sql_info_t *info = sqlparse_analyze(src);
    if (info == NULL)
        return out_of_memory(p);
    bool ok = true;
    if (info->kind != SQL_READ || info->n_statements == 0 || info->for_update ||
        info->too_many_tables)
        *unsafe = true;
    for (int i = 0; ok && i < info->n_read; i++)
        ok = body_table(p, info->tables_read[i], unsafe);
    sql_info_free(info);
    if (!ok || *unsafe)
        return ok;
    bool oom = false;
    json_t *tree = sqlparse_tree(src, &oom);
    if (tree == NULL) {
        if (oom)
            return out_of_memory(p);
        *unsafe = true;
        return true;
    }
    ok = walk_body(p, tree, unsafe);
    json_decref(tree);
    return ok;
}

static bool read_stable_group(parser_t *p, json_t *item, size_t index)
{
    catalog_t *c = p->c;
    char what[64];
    snprintf(what, sizeof(what), "stable_functions[%zu]", index);
    const char *schema = get_string(p, item, "schema", what);
    const char *name = get_string(p, item, "name", what);
    json_t *bodies = get_array(p, item, "bodies", what, true);
    if (schema == NULL || name == NULL || bodies == NULL)
        return false;
    int g = snapshot_group_find(c, schema, name);
    if (g < 0 || c->groups[g].status != GROUP_STABLE)
        return fail(p, "catalog: %s: no stable group %s.%s", what, schema, name);
    group_t *group = &c->groups[g];
    p->reads.n = p->calls.n = 0;
    size_t i;
    json_t *body;
    json_array_foreach(bodies, i, body)
    {
        if (!json_is_object(body))
            return fail(p, "catalog: %s: a body is not an object", what);
        json_t *sql = json_object_get(body, "sql");
        bool unsafe = false, unknown = false;
        if (sql != NULL) {
            if (!json_is_string(sql))
                return fail(p, "catalog: %s: \"sql\" is not a string", what);
            if (!read_sql_body(p, json_string_value(sql), &unsafe))
                return false;
        } else if (!get_flag(p, body, "unsafe", what, &unsafe) ||
                   !read_oids(p, body, "reads", what, &p->reads, &unknown) ||
                   !read_calls(p, body, what, &unknown)) {
            return false;
        }
        if (unsafe || unknown)
            group->unsafe = true;
    }
    group->n_reads = p->reads.n;
    group->n_calls = p->calls.n;
    group->reads = snapshot_arena_ints(c, p->reads.v, p->reads.n);
    group->calls = snapshot_arena_ints(c, p->calls.v, p->calls.n);
    if ((p->reads.n > 0 && group->reads == NULL) || (p->calls.n > 0 && group->calls == NULL))
        return out_of_memory(p);
    return true;
}

/* The bodies of stable groups; the groups were added, all STABLE, by the first pass. */
static bool read_stable_groups(parser_t *p, json_t *list)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (!read_stable_group(p, item, i))
            return false;
    }
    return true;
}

/* Adds a STABLE group for every entry of stable_functions, bodies read later. */
static bool add_stable_groups(parser_t *p, json_t *list)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        char what[64];
        snprintf(what, sizeof(what), "stable_functions[%zu]", i);
        const char *schema = get_string(p, item, "schema", what);
        const char *name = get_string(p, item, "name", what);
        if (schema == NULL || name == NULL)
            return false;
        if (!add_group(p, what, schema, name, GROUP_STABLE))
            return false;
    }
    return true;
}

static bool read_unsafe_operators(parser_t *p, json_t *root)
{
    catalog_t *c = p->c;
    json_t *list = get_array(p, root, "unsafe_operators", "the value", true);
    if (list == NULL)
        return false;
    size_t n = json_array_size(list);
    if (n == 0)
        return true;
    if ((c->unsafe_ops = snapshot_arena_alloc(c, n * sizeof(char *))) == NULL)
        return out_of_memory(p);
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *s = json_string_value(item);
        if (s == NULL || s[0] == '\0')
            return fail(p, "catalog: unsafe_operators[%zu] is not a non-empty string", i);
        if ((c->unsafe_ops[i] = snapshot_arena_strndup(c, s, strlen(s))) == NULL)
            return out_of_memory(p);
    }
    c->n_unsafe_ops = (int)n;
    qsort(c->unsafe_ops, n, sizeof(c->unsafe_ops[0]), snapshot_compare_strings);
    return true;
}

/* ---- closures ---- */

/*
 * The state of the walks: a stamp per node (relations first, then groups) and per key marks
 * what the current walk has seen, so one allocation serves every walk. The stack holds
 * (node, mode) pairs; a node is pushed at most twice per walk (once per direction before it
 * is written), so twice the nodes always fit.
 */
typedef struct walk {
    unsigned stamp;
    unsigned *node_stamp;
    unsigned char *modes; /* the write walk's modes seen, valid where node_stamp is current */
    unsigned *key_stamp;
    int *stack;
    int n_stack;
    const char **keys;
    int n_keys;
} walk_t;

static void walk_begin(walk_t *w)
{
    w->stamp++;
    w->n_stack = 0;
    w->n_keys = 0;
}

static void walk_push(walk_t *w, int node, int mode)
{
    w->stack[w->n_stack++] = node;
    w->stack[w->n_stack++] = mode;
}

/* Pushes node for the read walk unless this walk has pushed it already. */
static void walk_visit(walk_t *w, int node)
{
    if (w->node_stamp[node] == w->stamp)
        return;
    w->node_stamp[node] = w->stamp;
    walk_push(w, node, 0);
}

/* Adds key to the walk's keys; false when that would make more than CATALOG_MAX_KEYS. */
static bool walk_key(walk_t *w, const catalog_t *c, int key)
{
    if (w->key_stamp[key] == w->stamp)
        return true;
    if (w->n_keys == CATALOG_MAX_KEYS)
        return false;
    w->key_stamp[key] = w->stamp;
    w->keys[w->n_keys++] = c->keys[key].name;
    return true;
}

/* The keys of the walk into the arena; false when memory runs out. */
static bool walk_keep(walk_t *w, catalog_t *c, key_list_t *out)
{
    out->n = w->n_keys;
    out->keys = NULL;
    if (w->n_keys == 0)
        return true;
    out->keys = snapshot_arena_alloc(c, (size_t)w->n_keys * sizeof(char *));
    if (out->keys == NULL)
        return false;
    memcpy(out->keys, w->keys, (size_t)w->n_keys * sizeof(char *));
    return true;
}

/* What a read of node depends on: false when something it reaches is not cacheable. */
static bool read_walk(walk_t *w, const catalog_t *c, int node)
{
    walk_begin(w);
    walk_visit(w, node);
    while (w->n_stack > 0) {
        w->n_stack -= 2;
        int x = w->stack[w->n_stack];
        const int *reads, *calls;
        int n_reads, n_calls;
        if (x < c->n_rels) {
            const rel_t *rel = &c->rels[x];
            if (rel->temp || rel->rls || rel->kind == 'f' || !walk_key(w, c, rel->key))
                return false;
            if (rel->kind != 'v')
                continue;
            if (rel->unsafe)
                return false;
            reads = rel->reads, n_reads = rel->n_reads;
            calls = rel->calls, n_calls = rel->n_calls;
        } else {
            const group_t *g = &c->groups[x - c->n_rels];
            if (g->status == GROUP_REFUSED || g->unsafe)
                return false;
            reads = g->reads, n_reads = g->n_reads;
            calls = g->calls, n_calls = g->n_calls;
        }
        for (int i = 0; i < n_reads; i++)
            walk_visit(w, reads[i]);
        for (int i = 0; i < n_calls; i++)
            walk_visit(w, c->n_rels + calls[i]);
    }
    return true;
}

/* Pushes rel for the write walk in mode unless this walk has pushed it in that mode already. */
static void walk_write(walk_t *w, int rel, int mode)
{
    unsigned char seen = w->node_stamp[rel] == w->stamp ? w->modes[rel] : 0;
    if ((seen & mode) == mode)
        return;
    w->node_stamp[rel] = w->stamp;
    w->modes[rel] = seen | (unsigned char)mode;
    walk_push(w, rel, mode);
}

/* What a write to rel can change; true when it can change relations the snapshot cannot
 * name, or more than CATALOG_MAX_KEYS (the walk stops there, keeping the keys it has). */
static bool write_walk(walk_t *w, const catalog_t *c, int start)
{
    bool everything = false;
    walk_begin(w);
    walk_write(w, start, WALK_WRITTEN);
    while (w->n_stack > 0) {
        w->n_stack -= 2;
        int r = w->stack[w->n_stack], mode = w->stack[w->n_stack + 1];
        const rel_t *rel = &c->rels[r];
        if (!walk_key(w, c, rel->key))
            return true;
        if (rel->triggers || rel->rules || rel->unknown_links ||
            (rel->kind == 'v' && rel->calls_refused))
            everything = true;
        for (int i = 0; i < rel->n_cascades; i++)
            walk_write(w, rel->cascades[i], WALK_WRITTEN);
        if (rel->kind == 'v')
            for (int i = 0; i < rel->n_reads; i++)
                walk_write(w, rel->reads[i], WALK_WRITTEN);
        if (mode & WALK_DOWN)
            for (int i = 0; i < rel->n_children; i++)
                walk_write(w, rel->children[i], WALK_DOWN);
        if (mode & WALK_UP)
            for (int i = 0; i < rel->n_parents; i++)
                walk_write(w, rel->parents[i], WALK_UP);
    }
    return everything;
}

static bool compute_closures(parser_t *p)
{
    catalog_t *c = p->c;
    size_t nodes = (size_t)c->n_rels + (size_t)c->n_groups;
    walk_t w = {0};
    w.node_stamp = calloc(nodes + 1, sizeof(unsigned));
    w.modes = calloc((size_t)c->n_rels + 1, 1);
    w.key_stamp = calloc((size_t)c->n_keys + 1, sizeof(unsigned));
    w.stack = malloc((4 * nodes + 2) * sizeof(int));
    w.keys = malloc(CATALOG_MAX_KEYS * sizeof(char *));
    bool ok = w.node_stamp != NULL && w.modes != NULL && w.key_stamp != NULL && w.stack != NULL &&
              w.keys != NULL;
    for (int r = 0; ok && r < c->n_rels; r++) {
        rel_t *rel = &c->rels[r];
        if (read_walk(&w, c, r))
            ok = walk_keep(&w, c, &rel->read_deps);
        else
            rel->read_deps = (key_list_t){NULL, -1};
        rel->write_everything = write_walk(&w, c, r);
        ok = ok && walk_keep(&w, c, &rel->write_keys);
    }
    for (int g = 0; ok && g < c->n_groups; g++) {
        group_t *group = &c->groups[g];
        if (read_walk(&w, c, c->n_rels + g))
            ok = walk_keep(&w, c, &group->deps);
        else
            group->deps = (key_list_t){NULL, -1};
    }
    free(w.node_stamp);
    free(w.modes);
    free(w.key_stamp);
    free(w.stack);
    free(w.keys);
    return ok || out_of_memory(p);
}

/* ---- catalog_parse ---- */

static size_t names_in(json_t *list)
{
    size_t n = 0, i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        n += json_array_size(json_object_get(item, "names"));
    }
    return n;
}

static bool parse_root(parser_t *p, json_t *root)
{
    catalog_t *c = p->c;
    if (!json_is_object(root))
        return fail(p, "catalog: the value is not a JSON object");
    json_t *version = json_object_get(root, "version");
    if (!json_is_integer(version) || json_integer_value(version) != 1)
        return fail(p, "catalog: \"version\" is not 1");
    json_t *relations = get_array(p, root, "relations", "the value", true);
    json_t *immutable = get_array(p, root, "immutable_functions", "the value", true);
    json_t *refused = get_array(p, root, "refused_functions", "the value", true);
    json_t *stable = get_array(p, root, "stable_functions", "the value", true);
    if (relations == NULL || immutable == NULL || refused == NULL || stable == NULL)
        return false;
    if (json_array_size(relations) > INT32_MAX / 8)
        return fail(p, "catalog: too many relations");
    size_t n_rels = json_array_size(relations);
    size_t n_groups = names_in(immutable) + names_in(refused) + json_array_size(stable);
    if (n_groups > INT32_MAX / 8)
        return fail(p, "catalog: too many functions");
    c->rels = snapshot_arena_alloc(c, (n_rels + 1) * sizeof(rel_t));
    c->groups = snapshot_arena_alloc(c, (n_groups + 1) * sizeof(group_t));
    c->keys = snapshot_arena_alloc(c, (n_rels + 1) * sizeof(gen_key_t));
    p->by_oid = malloc((n_rels + 1) * sizeof(oid_index_t));
    if (c->rels == NULL || c->groups == NULL || c->keys == NULL || p->by_oid == NULL ||
        !snapshot_strmap_init(c, &c->relnames, n_rels) ||
        !snapshot_strmap_init(c, &c->fnames, n_groups) ||
        !snapshot_strmap_init(c, &c->schemas, n_rels + n_groups))
        return out_of_memory(p);
    c->n_rels = (int)n_rels;
    size_t i;
    json_t *item;
    json_array_foreach(relations, i, item)
    {
        if (!read_relation(p, item, (int)i))
            return false;
    }
    qsort(p->by_oid, n_rels, sizeof(oid_index_t), compare_oids);
    for (i = 1; i < n_rels; i++)
        if (p->by_oid[i].oid == p->by_oid[i - 1].oid)
            return fail(p, "catalog: oid %u is there twice", p->by_oid[i].oid);
    if (!read_group_names(p, root, "immutable_functions", GROUP_IMMUTABLE) ||
        !read_group_names(p, root, "refused_functions", GROUP_REFUSED) ||
        !add_stable_groups(p, stable) || !read_unsafe_operators(p, root))
        return false;
    json_array_foreach(relations, i, item)
    {
        if (!read_relation_links(p, item, (int)i))
            return false;
    }
    return link_children(p) && read_stable_groups(p, stable) && compute_closures(p);
}

catalog_t *catalog_parse(const char *json, size_t len, char *err, size_t errlen)
{
    parser_t p = {.err = err, .errlen = errlen};
    if (errlen > 0)
        err[0] = '\0';
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fail(&p, "catalog: not JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    p.c = calloc(1, sizeof(catalog_t));
    if (p.c == NULL) {
        out_of_memory(&p);
    } else {
        atomic_init(&p.c->refs, 1);
        parse_root(&p, root);
    }
    json_decref(root);
    free(p.by_oid);
    free(p.reads.v);
    free(p.calls.v);
    if (p.failed) {
        catalog_unref(p.c);
        return NULL;
    }
    return p.c;
}
