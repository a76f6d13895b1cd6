/*
 * candidates.c
 *    Index candidates and hint facts from a query's parse tree; see candidates.h.
 *
 * The tree is libpg_query's JSON, read with jansson as sqlparse.c reads it: a node is an
 * object with one member named for its type ({"A_Expr": {...}}), except where a field can
 * hold one type only (a RangeVar in FROM is wrapped, a SelectStmt's "larg" is not).
 *
 * Each SELECT (and each UPDATE or DELETE) gets a scope: the tables of its FROM, each with what
 * the query asks of it (equality columns, constant predicates, range columns, containment,
 * joins, the ORDER BY, the columns it reads). Only the top-level AND of WHERE and of the JOIN
 * conditions is read for candidates: a condition under OR or NOT serves no index alone. A
 * subquery gets its own scope whose parent is the enclosing one, so that a correlated column
 * (EXISTS (SELECT 1 FROM b WHERE b.a_id = a.id)) counts as a value for b, as it does for the
 * planner's parameterized scans. The candidates of a scope are made when it is complete.
 */
#include "candidates.h"

#include "sqlparse.h"

#include <jansson.h>

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SCOPE_TABLES 16
#define MAX_EXPRS        8
#define MAX_REFS         16
#define MAX_CTES         32
#define MAX_JOINS        4

/* What one scope asks of one of its FROM items. */
typedef struct table_use {
    char schema[CAND_NAME_LEN];
    char table[CAND_NAME_LEN];
    char alias[CAND_NAME_LEN]; /* the name the query uses for it: alias, or the relation */
    bool is_table;             /* false for a subquery, a function or a WITH query */
    cand_expr_t eq[MAX_EXPRS]; /* compared by equality to a value that is not a constant */
    int n_eq;
    cand_pred_t consts[CAND_MAX_PREDS]; /* constant predicates */
    int n_consts;
    cand_expr_t range[MAX_EXPRS];
    int n_range;
    char contain[MAX_JOINS][CAND_NAME_LEN]; /* column @> value */
    int n_contain;
    char join[MAX_JOINS][CAND_NAME_LEN]; /* column = other table's column */
    int n_join;
    cand_key_t order[CAND_MAX_KEYS]; /* the whole ORDER BY, when it is on this table */
    int n_order;
    char refs[MAX_REFS][CAND_NAME_LEN]; /* the columns the query reads */
    int n_refs;
    bool refs_overflow;
    bool star; /* the query reads * of it */
} table_use_t;

typedef struct scope {
    struct scope *parent;
    table_use_t uses[MAX_SCOPE_TABLES];
    int n;
    bool is_select; /* a SELECT (covering candidates make sense), not an UPDATE or DELETE */
} scope_t;

typedef struct walker {
    const char *text; /* the query, for constants read from their location */
    const cand_catalog_t *catalog;
    cand_analysis_t *out;
    const char *ctes[MAX_CTES]; /* WITH names in scope; borrowed from the tree */
    int n_ctes;
    bool oom;
} walker_t;

/* Where a column reference leads. */
typedef enum resolution {
    RES_NONE,          /* not a column of anything this query names (or unknown) */
    RES_CURRENT_TABLE, /* a column of a table of the current scope */
    RES_CURRENT_OTHER, /* a column of a subquery or WITH query of the current scope, or a
                          column that may be in the current scope (treated as such) */
    RES_OUTER,         /* a column of an enclosing scope: a value for this one */
} resolution_t;

static void analyze_select(walker_t *w, json_t *sel, scope_t *parent, bool top);

/* ---- small helpers over the tree ---- */

static void copy_name(char *dst, const char *src)
{
    snprintf(dst, CAND_NAME_LEN, "%s", src == NULL ? "" : src);
}

/* The type of a wrapped node ({"Type": body}) and its body; NULL when v is no such node. */
static const char *node_type(json_t *v, json_t **body)
{
    if (!json_is_object(v) || json_object_size(v) != 1)
        return NULL;
    void *it = json_object_iter(v);
    if (body != NULL)
        *body = json_object_iter_value(it);
    return json_object_iter_key(it);
}

/* The body of v when v is a node of type; NULL otherwise. */
static json_t *node_of(json_t *v, const char *type)
{
    json_t *body;
    const char *t = node_type(v, &body);
    return t != NULL && strcmp(t, type) == 0 ? body : NULL;
}

/* The text of a String node ({"String": {"sval": "x"}}); "" for an empty one; NULL for other
 * nodes. */
static const char *string_node(json_t *v)
{
    json_t *s = node_of(v, "String");
    if (s == NULL)
        return NULL;
    const char *text = json_string_value(json_object_get(s, "sval"));
    return text == NULL ? "" : text;
}

/* The operator of an A_Expr: the last name of its "name" list. */
static const char *operator_name(json_t *aexpr)
{
    json_t *names = json_object_get(aexpr, "name");
    size_t n = json_array_size(names);
    return n == 0 ? "" : string_node(json_array_get(names, n - 1));
}

static bool streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* ---- the analysis's lists ---- */

static bool grow(void **items, int *cap, int n, size_t size)
{
    if (n < *cap)
        return true;
    int bigger = *cap == 0 ? 8 : *cap * 2;
    void *p = realloc(*items, (size_t)bigger * size);
    if (p == NULL)
        return false;
    *items = p;
    *cap = bigger;
    return true;
}

static void add_table(walker_t *w, const char *schema, const char *table)
{
    cand_analysis_t *a = w->out;
    for (int i = 0; i < a->n_tables; i++)
        if (strcmp(a->tables[i].schema, schema) == 0 && strcmp(a->tables[i].table, table) == 0)
            return;
    if (!grow((void **)&a->tables, &a->cap_tables, a->n_tables, sizeof(*a->tables))) {
        w->oom = true;
        return;
    }
    cand_table_t *t = &a->tables[a->n_tables++];
    copy_name(t->schema, schema);
    copy_name(t->table, table);
}

static void add_hint(walker_t *w, cand_hint_kind_t kind, const table_use_t *u, const char *column,
                     const char *detail, long value)
{
    cand_analysis_t *a = w->out;
    cand_hint_t h = {.kind = kind, .value = value};
    copy_name(h.schema, u->schema);
    copy_name(h.table, u->table);
    copy_name(h.column, column);
    copy_name(h.detail, detail);
    for (int i = 0; i < a->n_hints; i++)
        if (memcmp(&a->hints[i], &h, sizeof(h)) == 0)
            return;
    if (!grow((void **)&a->hints, &a->cap_hints, a->n_hints, sizeof(*a->hints))) {
        w->oom = true;
        return;
    }
    a->hints[a->n_hints++] = h;
}

static bool expr_equal(const cand_expr_t *a, const cand_expr_t *b)
{
    return a->kind == b->kind && strcmp(a->column, b->column) == 0 && strcmp(a->op, b->op) == 0 &&
           strcmp(a->function, b->function) == 0 && strcmp(a->key, b->key) == 0;
}

static bool key_equal(const cand_key_t *a, const cand_key_t *b)
{
    return expr_equal(&a->expr, &b->expr) && a->desc == b->desc && a->nulls == b->nulls &&
           strcmp(a->opclass, b->opclass) == 0;
}

static bool pred_equal(const cand_pred_t *a, const cand_pred_t *b)
{
    if (a->kind != b->kind || strcmp(a->column, b->column) != 0 || a->n_values != b->n_values)
        return false;
    for (int i = 0; i < a->n_values; i++)
        if (a->values[i].kind != b->values[i].kind ||
            strcmp(a->values[i].text, b->values[i].text) != 0)
            return false;
    return true;
}

bool candidate_equal(const candidate_t *a, const candidate_t *b)
{
    if (strcmp(a->schema, b->schema) != 0 || strcmp(a->table, b->table) != 0 ||
        a->method != b->method || a->n_keys != b->n_keys || a->n_include != b->n_include ||
        a->n_preds != b->n_preds)
        return false;
    for (int i = 0; i < a->n_keys; i++)
        if (!key_equal(&a->keys[i], &b->keys[i]))
            return false;
    for (int i = 0; i < a->n_include; i++)
        if (strcmp(a->include[i], b->include[i]) != 0)
            return false;
    for (int i = 0; i < a->n_preds; i++)
        if (!pred_equal(&a->preds[i], &b->preds[i]))
            return false;
    return true;
}

static void add_candidate(walker_t *w, const candidate_t *c)
{
    cand_analysis_t *a = w->out;
    if (c->n_keys == 0)
        return;
    for (int i = 0; i < a->n_cands; i++)
        if (candidate_equal(&a->cands[i], c))
            return;
    if (!grow((void **)&a->cands, &a->cap_cands, a->n_cands, sizeof(*a->cands))) {
        w->oom = true;
        return;
    }
    a->cands[a->n_cands++] = *c;
}

/* ---- scopes and column references ---- */

static bool is_cte(const walker_t *w, const char *name)
{
    for (int i = w->n_ctes - 1; i >= 0; i--)
        if (strcmp(w->ctes[i], name) == 0)
            return true;
    return false;
}

static table_use_t *add_use(scope_t *s)
{
    if (s->n >= MAX_SCOPE_TABLES)
        return NULL;
    table_use_t *u = &s->uses[s->n++];
    memset(u, 0, sizeof(*u));
    return u;
}

static const char *alias_of(json_t *item)
{
    return json_string_value(json_object_get(json_object_get(item, "alias"), "aliasname"));
}

/* Adds the FROM item v to scope s; JOIN conditions go to quals (a JSON array, borrowed
 * items). */
static void add_from(walker_t *w, scope_t *s, json_t *v, json_t *quals)
{
    json_t *body;
    const char *type = node_type(v, &body);
    if (type == NULL)
        return;
    if (strcmp(type, "RangeVar") == 0) {
        const char *rel = json_string_value(json_object_get(body, "relname"));
        const char *schema = json_string_value(json_object_get(body, "schemaname"));
        const char *alias = alias_of(body);
        table_use_t *u = add_use(s);
        if (u == NULL || rel == NULL)
            return;
        copy_name(u->alias, alias != NULL ? alias : rel);
        copy_name(u->table, rel);
        copy_name(u->schema, schema);
        u->is_table = schema != NULL || !is_cte(w, rel);
        if (u->is_table)
            add_table(w, u->schema, u->table);
    } else if (strcmp(type, "JoinExpr") == 0) {
        add_from(w, s, json_object_get(body, "larg"), quals);
        add_from(w, s, json_object_get(body, "rarg"), quals);
        json_t *q = json_object_get(body, "quals");
        if (q != NULL && json_array_append(quals, q) != 0)
            w->oom = true;
    } else if (strcmp(type, "RangeSubselect") == 0) {
        json_t *sub = node_of(json_object_get(body, "subquery"), "SelectStmt");
        if (sub != NULL)
            analyze_select(w, sub, s, false);
        table_use_t *u = add_use(s);
        if (u != NULL)
            copy_name(u->alias, alias_of(body));
    } else if (strcmp(type, "RangeFunction") == 0) {
        table_use_t *u = add_use(s);
        if (u != NULL)
            copy_name(u->alias, alias_of(body));
    }
}

/*
 * Where the ColumnRef body cref leads: the scope and use it belongs to, and the column name.
 * A reference to a whole row or to * leads nowhere (column "").
 */
static resolution_t resolve(const walker_t *w, scope_t *s, json_t *cref, scope_t **found_scope,
                            int *found_use, const char **column)
{
    json_t *fields = json_object_get(cref, "fields");
    size_t n = json_array_size(fields);
    *column = "";
    if (n == 0 || n > 3)
        return RES_NONE;
    const char *col = string_node(json_array_get(fields, n - 1));
    if (col == NULL)
        return RES_NONE; /* alias.* or * */
    *column = col;
    if (n == 1) {
        for (scope_t *sc = s; sc != NULL; sc = sc->parent) {
            int hit = -1, tables = 0, others = 0;
            for (int i = 0; i < sc->n; i++) {
                table_use_t *u = &sc->uses[i];
                if (!u->is_table) {
                    others++;
                    continue;
                }
                tables++;
                if (w->catalog != NULL && w->catalog->has_column != NULL &&
                    w->catalog->has_column(w->catalog->ctx, u->schema, u->table, col))
                    hit = hit == -1 ? i : -2;
            }
            if (hit < 0 && tables == 1 && others == 0 && sc == s &&
                (w->catalog == NULL || w->catalog->has_column == NULL)) {
                for (int i = 0; i < sc->n; i++)
                    if (sc->uses[i].is_table)
                        hit = i;
            }
            if (hit >= 0) {
                *found_scope = sc;
                *found_use = hit;
                return sc == s ? RES_CURRENT_TABLE : RES_OUTER;
            }
            if (sc == s &&
                (hit == -2 || others > 0 || w->catalog == NULL || w->catalog->has_column == NULL))
                return RES_CURRENT_OTHER;
        }
        return RES_CURRENT_OTHER;
    }
    const char *qualifier = string_node(json_array_get(fields, n - 2));
    const char *schema = n == 3 ? string_node(json_array_get(fields, 0)) : NULL;
    for (scope_t *sc = s; sc != NULL; sc = sc->parent) {
        for (int i = 0; i < sc->n; i++) {
            table_use_t *u = &sc->uses[i];
            bool match = schema != NULL ? streq(u->schema, schema) && streq(u->table, qualifier)
                                        : streq(u->alias, qualifier);
            if (!match)
                continue;
            *found_scope = sc;
            *found_use = i;
            if (sc != s)
                return RES_OUTER;
            return u->is_table ? RES_CURRENT_TABLE : RES_CURRENT_OTHER;
        }
    }
    return RES_NONE;
}

/* A column reference of the current scope's tables: the use and the column; NULL otherwise. */
static table_use_t *current_column(const walker_t *w, scope_t *s, json_t *node, const char **col)
{
    json_t *cref = node_of(node, "ColumnRef");
    if (cref == NULL)
        return NULL;
    scope_t *sc;
    int i;
    if (resolve(w, s, cref, &sc, &i, col) != RES_CURRENT_TABLE)
        return NULL;
    return &sc->uses[i];
}

/* True when v mentions no column of the current scope: a parameter, a constant, a correlated
 * column, or an expression of those (now() - interval '1 day'), as the planner sees it. */
static bool is_value(const walker_t *w, scope_t *s, json_t *v)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            if (!is_value(w, s, item))
                return false;
        }
        return true;
    }
    if (!json_is_object(v))
        return true;
    json_t *body;
    const char *type = node_type(v, &body);
    if (type != NULL && strcmp(type, "SubLink") == 0)
        return true; /* a subquery's result is a value (an InitPlan) */
    if (type != NULL && strcmp(type, "ColumnRef") == 0) {
        scope_t *sc;
        int i;
        const char *col;
        resolution_t r = resolve(w, s, body, &sc, &i, &col);
        return r == RES_OUTER;
    }
    const char *key;
    json_t *child;
    json_object_foreach(v, key, child)
    {
        if (!is_value(w, s, child))
            return false;
    }
    return true;
}

/* The number at text[at] as the query writes it ("-3", "1.5e3"); false when there is none.
 * The JSON tree omits zero and, in this libpg_query, negative integers. */
static bool number_at(const char *text, long at, char *out, size_t outlen)
{
    if (at < 0 || (size_t)at >= strlen(text))
        return false;
    size_t i = (size_t)at, n = 0;
    if (text[i] == '-' || text[i] == '+')
        out[n++] = text[i++];
    while (text[i] != '\0' &&
           (isdigit((unsigned char)text[i]) || text[i] == '.' || text[i] == 'e' || text[i] == 'E' ||
            ((text[i] == '-' || text[i] == '+') && (text[i - 1] == 'e' || text[i - 1] == 'E')))) {
        if (n + 1 >= outlen)
            return false;
        out[n++] = text[i++];
    }
    out[n] = '\0';
    return n > 0 && isdigit((unsigned char)out[n - 1]);
}

/* The constant v (an A_Const, possibly cast) into out; false for anything else, NULL too. */
static bool constant_of(const walker_t *w, json_t *v, cand_value_t *out)
{
    json_t *cast = node_of(v, "TypeCast");
    if (cast != NULL)
        v = json_object_get(cast, "arg");
    json_t *c = node_of(v, "A_Const");
    if (c == NULL || json_is_true(json_object_get(c, "isnull")))
        return false;
    json_t *member;
    if ((member = json_object_get(c, "sval")) != NULL) {
        const char *s = json_string_value(json_object_get(member, "sval"));
        if (s == NULL)
            s = "";
        if (strlen(s) >= CAND_VALUE_LEN)
            return false;
        out->kind = CAND_VALUE_STRING;
        snprintf(out->text, sizeof(out->text), "%s", s);
        return true;
    }
    if ((member = json_object_get(c, "boolval")) != NULL) {
        out->kind = CAND_VALUE_BOOL;
        snprintf(out->text, sizeof(out->text), "%s",
                 json_is_true(json_object_get(member, "boolval")) ? "true" : "false");
        return true;
    }
    if (json_object_get(c, "ival") != NULL || json_object_get(c, "fval") != NULL) {
        out->kind = CAND_VALUE_NUMBER;
        return number_at(w->text, (long)json_integer_value(json_object_get(c, "location")),
                         out->text, sizeof(out->text));
    }
    return false;
}

/* What an operand of a comparison is for an index. */
typedef enum target_kind {
    TARGET_NONE,
    TARGET_EXPR,    /* an indexable expression of a current table: expr */
    TARGET_HIDDEN,  /* column ->> $n: the key is a parameter */
    TARGET_WRAPPED, /* a function or cast around a current table's column; detail names it */
} target_kind_t;

typedef struct target {
    target_kind_t kind;
    table_use_t *use;
    cand_expr_t expr;
    char detail[CAND_NAME_LEN];
} target_t;

static target_t target_of(const walker_t *w, scope_t *s, json_t *v)
{
    target_t t = {.kind = TARGET_NONE};
    const char *col;
    json_t *body;
    const char *type = node_type(v, &body);
    if (type == NULL)
        return t;
    if (strcmp(type, "ColumnRef") == 0) {
        if ((t.use = current_column(w, s, v, &col)) != NULL) {
            t.kind = TARGET_EXPR;
            t.expr.kind = CAND_EXPR_COLUMN;
            copy_name(t.expr.column, col);
        }
        return t;
    }
    if (strcmp(type, "A_Expr") == 0 &&
        streq(json_string_value(json_object_get(body, "kind")), "AEXPR_OP")) {
        const char *op = operator_name(body);
        if (!streq(op, "->>") && !streq(op, "->"))
            return t;
        if ((t.use = current_column(w, s, json_object_get(body, "lexpr"), &col)) == NULL)
            return t;
        copy_name(t.expr.column, col);
        json_t *key = json_object_get(body, "rexpr");
        cand_value_t value;
        if (node_of(key, "ParamRef") != NULL) {
            t.kind = TARGET_HIDDEN;
        } else if (constant_of(w, key, &value) && value.kind == CAND_VALUE_STRING) {
            t.kind = TARGET_EXPR;
            t.expr.kind = CAND_EXPR_JSON_FIELD;
            snprintf(t.expr.op, sizeof(t.expr.op), "%s", op);
            snprintf(t.expr.key, sizeof(t.expr.key), "%s", value.text);
        }
        return t;
    }
    if (strcmp(type, "FuncCall") == 0) {
        json_t *names = json_object_get(body, "funcname");
        const char *fn = string_node(json_array_get(names, json_array_size(names) - 1));
        json_t *args = json_object_get(body, "args");
        size_t i;
        json_t *arg;
        json_array_foreach(args, i, arg)
        {
            if ((t.use = current_column(w, s, arg, &col)) == NULL)
                continue;
            copy_name(t.expr.column, col);
            if (json_array_size(args) == 1 && (streq(fn, "lower") || streq(fn, "upper"))) {
                t.kind = TARGET_EXPR;
                t.expr.kind = CAND_EXPR_FUNCTION;
                snprintf(t.expr.function, sizeof(t.expr.function), "%s", fn);
            } else {
                t.kind = TARGET_WRAPPED;
                snprintf(t.detail, sizeof(t.detail), "%s()", fn == NULL ? "?" : fn);
            }
            return t;
        }
        return t;
    }
    if (strcmp(type, "TypeCast") == 0) {
        if ((t.use = current_column(w, s, json_object_get(body, "arg"), &col)) == NULL)
            return t;
        json_t *names = json_object_get(json_object_get(body, "typeName"), "names");
        const char *tn = string_node(json_array_get(names, json_array_size(names) - 1));
        t.kind = TARGET_WRAPPED;
        copy_name(t.expr.column, col);
        snprintf(t.detail, sizeof(t.detail), "::%s", tn == NULL ? "?" : tn);
    }
    return t;
}

/* ---- what a condition asks of a table ---- */

static void add_expr(cand_expr_t *list, int *n, const cand_expr_t *e)
{
    for (int i = 0; i < *n; i++)
        if (expr_equal(&list[i], e))
            return;
    if (*n < MAX_EXPRS)
        list[(*n)++] = *e;
}

static void add_name(char (*list)[CAND_NAME_LEN], int *n, int max, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(list[i], name) == 0)
            return;
    if (*n < max)
        copy_name(list[(*n)++], name);
}

static void add_const(table_use_t *u, const cand_pred_t *p)
{
    for (int i = 0; i < u->n_consts; i++)
        if (strcmp(u->consts[i].column, p->column) == 0)
            return; /* one constant predicate per column */
    if (u->n_consts < CAND_MAX_PREDS)
        u->consts[u->n_consts++] = *p;
}

/* target = value: a constant makes a predicate for a partial index (and an equality column
 * of a plain index); anything else an equality column. */
static void add_equality(const walker_t *w, const target_t *t, json_t *value)
{
    cand_value_t c;
    if (t->expr.kind == CAND_EXPR_COLUMN && constant_of(w, value, &c)) {
        cand_pred_t p = {.kind = CAND_PRED_EQUALS, .n_values = 1};
        copy_name(p.column, t->expr.column);
        p.values[0] = c;
        add_const(t->use, &p);
    } else {
        add_expr(t->use->eq, &t->use->n_eq, &t->expr);
    }
}

/* The A_Expr op between two operands, in either order: a target of this scope on one side
 * and a value on the other. */
static bool target_and_value(const walker_t *w, scope_t *s, json_t *aexpr, target_t *t,
                             json_t **value)
{
    json_t *l = json_object_get(aexpr, "lexpr"), *r = json_object_get(aexpr, "rexpr");
    *t = target_of(w, s, l);
    if (t->kind == TARGET_EXPR && is_value(w, s, r)) {
        *value = r;
        return true;
    }
    *t = target_of(w, s, r);
    if (t->kind == TARGET_EXPR && is_value(w, s, l)) {
        *value = l;
        return true;
    }
    return false;
}

static void classify_op(walker_t *w, scope_t *s, json_t *aexpr)
{
    const char *op = operator_name(aexpr);
    json_t *l = json_object_get(aexpr, "lexpr"), *r = json_object_get(aexpr, "rexpr");
    target_t t;
    json_t *value;
    if (streq(op, "=")) {
        const char *lc, *rc;
        table_use_t *lu = current_column(w, s, l, &lc), *ru = current_column(w, s, r, &rc);
        if (lu != NULL && ru != NULL && lu != ru) {
            add_name(lu->join, &lu->n_join, MAX_JOINS, lc);
            add_name(ru->join, &ru->n_join, MAX_JOINS, rc);
            return;
        }
        if (target_and_value(w, s, aexpr, &t, &value))
            add_equality(w, &t, value);
        return;
    }
    if (streq(op, "<") || streq(op, "<=") || streq(op, ">") || streq(op, ">=")) {
        if (target_and_value(w, s, aexpr, &t, &value))
            add_expr(t.use->range, &t.use->n_range, &t.expr);
        return;
    }
    if (streq(op, "@>") || streq(op, "<@")) {
        json_t *col = streq(op, "@>") ? l : r, *val = streq(op, "@>") ? r : l;
        const char *name;
        table_use_t *u = current_column(w, s, col, &name);
        if (u != NULL && is_value(w, s, val))
            add_name(u->contain, &u->n_contain, MAX_JOINS, name);
    }
}

/* column IN (items): constants make a predicate, parameters an equality column. */
static void classify_in(walker_t *w, scope_t *s, json_t *aexpr)
{
    if (!streq(operator_name(aexpr), "="))
        return; /* NOT IN */
    target_t t = target_of(w, s, json_object_get(aexpr, "lexpr"));
    json_t *items = json_object_get(node_of(json_object_get(aexpr, "rexpr"), "List"), "items");
    if (t.kind != TARGET_EXPR || items == NULL || !is_value(w, s, items))
        return;
    size_t n = json_array_size(items);
    cand_pred_t p = {.kind = CAND_PRED_IN};
    bool constants = t.expr.kind == CAND_EXPR_COLUMN && n <= CAND_MAX_VALUES;
    for (size_t i = 0; constants && i < n; i++)
        constants = constant_of(w, json_array_get(items, i), &p.values[p.n_values++]);
    if (constants) {
        copy_name(p.column, t.expr.column);
        if (n == 1)
            p.kind = CAND_PRED_EQUALS;
        add_const(t.use, &p);
    } else {
        add_expr(t.use->eq, &t.use->n_eq, &t.expr);
    }
}

/* One condition of the top-level AND of WHERE or of a JOIN. */
static void classify(walker_t *w, scope_t *s, json_t *cond)
{
    json_t *body;
    const char *type = node_type(cond, &body);
    if (type == NULL)
        return;
    if (strcmp(type, "BoolExpr") == 0) {
        if (!streq(json_string_value(json_object_get(body, "boolop")), "AND_EXPR"))
            return;
        size_t i;
        json_t *arg;
        json_array_foreach(json_object_get(body, "args"), i, arg)
        {
            classify(w, s, arg);
        }
        return;
    }
    if (strcmp(type, "NullTest") == 0) {
        const char *col;
        table_use_t *u = current_column(w, s, json_object_get(body, "arg"), &col);
        if (u == NULL || json_is_true(json_object_get(body, "argisrow")))
            return;
        cand_pred_t p = {
            .kind = streq(json_string_value(json_object_get(body, "nulltesttype")), "IS_NOT_NULL")
                        ? CAND_PRED_IS_NOT_NULL
                        : CAND_PRED_IS_NULL};
        copy_name(p.column, col);
        add_const(u, &p);
        return;
    }
    if (strcmp(type, "A_Expr") != 0)
        return;
    const char *kind = json_string_value(json_object_get(body, "kind"));
    target_t t;
    json_t *value;
    if (streq(kind, "AEXPR_OP")) {
        classify_op(w, s, body);
    } else if (streq(kind, "AEXPR_IN")) {
        classify_in(w, s, body);
    } else if (streq(kind, "AEXPR_OP_ANY")) {
        if (streq(operator_name(body), "=") && target_and_value(w, s, body, &t, &value))
            add_expr(t.use->eq, &t.use->n_eq, &t.expr);
    } else if (streq(kind, "AEXPR_BETWEEN")) {
        t = target_of(w, s, json_object_get(body, "lexpr"));
        if (t.kind == TARGET_EXPR && is_value(w, s, json_object_get(body, "rexpr")))
            add_expr(t.use->range, &t.use->n_range, &t.expr);
    }
}

/* ---- hint facts, from every comparison however deep ---- */

static bool is_comparison(json_t *aexpr)
{
    const char *kind = json_string_value(json_object_get(aexpr, "kind"));
    const char *op = operator_name(aexpr);
    if (streq(kind, "AEXPR_IN") || streq(kind, "AEXPR_BETWEEN") || streq(kind, "AEXPR_OP_ANY"))
        return true;
    return streq(kind, "AEXPR_OP") && (streq(op, "=") || streq(op, "<") || streq(op, "<=") ||
                                       streq(op, ">") || streq(op, ">="));
}

static void hint_operand(walker_t *w, scope_t *s, json_t *operand)
{
    target_t t = target_of(w, s, operand);
    if (t.kind == TARGET_WRAPPED)
        add_hint(w, CAND_HINT_FUNCTION_ON_COLUMN, t.use, t.expr.column, t.detail, 0);
    else if (t.kind == TARGET_HIDDEN)
        add_hint(w, CAND_HINT_HIDDEN_CONSTANT, t.use, t.expr.column, "", 0);
}

static void hint_aexpr(walker_t *w, scope_t *s, json_t *aexpr)
{
    const char *kind = json_string_value(json_object_get(aexpr, "kind"));
    json_t *l = json_object_get(aexpr, "lexpr"), *r = json_object_get(aexpr, "rexpr");
    if (streq(kind, "AEXPR_LIKE") || streq(kind, "AEXPR_ILIKE")) {
        const char *op = operator_name(aexpr);
        cand_value_t pattern;
        const char *col;
        table_use_t *u = current_column(w, s, l, &col);
        if (u == NULL) {
            target_t t = target_of(w, s, l);
            if (t.kind == TARGET_EXPR || t.kind == TARGET_WRAPPED) {
                u = t.use;
                col = t.expr.column;
            }
        }
        if (u != NULL && op != NULL && op[0] != '!' && constant_of(w, r, &pattern) &&
            pattern.kind == CAND_VALUE_STRING && (pattern.text[0] == '%' || pattern.text[0] == '_'))
            add_hint(w, CAND_HINT_LEADING_WILDCARD, u, col, pattern.text, 0);
        return;
    }
    if (!is_comparison(aexpr))
        return;
    hint_operand(w, s, l);
    if (!streq(kind, "AEXPR_IN") && !streq(kind, "AEXPR_BETWEEN"))
        hint_operand(w, s, r);
    if (streq(kind, "AEXPR_IN")) {
        json_t *items = json_object_get(node_of(r, "List"), "items");
        target_t t = target_of(w, s, l);
        if (t.kind == TARGET_EXPR || t.kind == TARGET_WRAPPED)
            add_hint(w, CAND_HINT_LARGE_IN_LIST, t.use, t.expr.column, "",
                     (long)json_array_size(items));
    }
}

/* Walks v for the hint facts of its comparisons, and analyzes the subqueries it holds. */
static void walk_conditions(walker_t *w, scope_t *s, json_t *v)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            walk_conditions(w, s, item);
        }
        return;
    }
    if (!json_is_object(v))
        return;
    json_t *body;
    const char *type = node_type(v, &body);
    if (type != NULL && strcmp(type, "SubLink") == 0) {
        walk_conditions(w, s, json_object_get(body, "testexpr"));
        json_t *sub = node_of(json_object_get(body, "subselect"), "SelectStmt");
        if (sub != NULL)
            analyze_select(w, sub, s, false);
        return;
    }
    if (type != NULL && strcmp(type, "A_Expr") == 0)
        hint_aexpr(w, s, body);
    const char *key;
    json_t *child;
    json_object_foreach(v, key, child)
    {
        walk_conditions(w, s, child);
    }
}

/* Records the columns v reads, per table, down to (not into) subqueries. */
static void collect_refs(walker_t *w, scope_t *s, json_t *v)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            collect_refs(w, s, item);
        }
        return;
    }
    if (!json_is_object(v))
        return;
    json_t *body;
    const char *type = node_type(v, &body);
    if (type != NULL && strcmp(type, "SubLink") == 0) {
        collect_refs(w, s, json_object_get(body, "testexpr"));
        return;
    }
    if (type != NULL && strcmp(type, "ColumnRef") == 0) {
        json_t *fields = json_object_get(body, "fields");
        size_t n = json_array_size(fields);
        if (n > 0 && node_of(json_array_get(fields, n - 1), "A_Star") != NULL) {
            const char *qualifier = n >= 2 ? string_node(json_array_get(fields, n - 2)) : NULL;
            for (int i = 0; i < s->n; i++)
                if (qualifier == NULL || streq(s->uses[i].alias, qualifier))
                    s->uses[i].star = true;
            return;
        }
        scope_t *sc;
        int i;
        const char *col;
        resolution_t r = resolve(w, s, body, &sc, &i, &col);
        if (r == RES_CURRENT_TABLE || r == RES_OUTER) {
            table_use_t *u = &sc->uses[i];
            if (u->n_refs >= MAX_REFS)
                u->refs_overflow = true;
            add_name(u->refs, &u->n_refs, MAX_REFS, col);
        } else if (r == RES_CURRENT_OTHER) {
            /* An unplaced column may be any table's: covering is off for all of them. */
            for (int k = 0; k < s->n; k++)
                s->uses[k].refs_overflow = true;
        }
        return;
    }
    const char *key;
    json_t *child;
    json_object_foreach(v, key, child)
    {
        collect_refs(w, s, child);
    }
}

/* The ORDER BY, kept when every item is a column of one table of the scope. */
static void read_order(walker_t *w, scope_t *s, json_t *sort)
{
    table_use_t *owner = NULL;
    cand_key_t keys[CAND_MAX_KEYS];
    int n = 0;
    size_t i;
    json_t *item;
    json_array_foreach(sort, i, item)
    {
        json_t *by = node_of(item, "SortBy");
        const char *col;
        table_use_t *u =
            by == NULL ? NULL : current_column(w, s, json_object_get(by, "node"), &col);
        const char *dir = json_string_value(json_object_get(by, "sortby_dir"));
        if (u == NULL || (owner != NULL && u != owner) || n >= CAND_MAX_KEYS ||
            streq(dir, "SORTBY_USING"))
            return;
        owner = u;
        cand_key_t k = {.desc = streq(dir, "SORTBY_DESC")};
        k.expr.kind = CAND_EXPR_COLUMN;
        copy_name(k.expr.column, col);
        const char *nulls = json_string_value(json_object_get(by, "sortby_nulls"));
        k.nulls = streq(nulls, "SORTBY_NULLS_FIRST")  ? CAND_NULLS_FIRST
                  : streq(nulls, "SORTBY_NULLS_LAST") ? CAND_NULLS_LAST
                                                      : CAND_NULLS_DEFAULT;
        /* The default placement, spelled out, is the default. */
        if ((k.nulls == CAND_NULLS_LAST && !k.desc) || (k.nulls == CAND_NULLS_FIRST && k.desc))
            k.nulls = CAND_NULLS_DEFAULT;
        keys[n++] = k;
    }
    if (owner == NULL)
        return;
    memcpy(owner->order, keys, sizeof(keys[0]) * (size_t)n);
    owner->n_order = n;
}

/* ---- candidates of a complete scope ---- */

static bool keys_have_column(const cand_key_t *keys, int n, const char *column)
{
    for (int i = 0; i < n; i++)
        if (keys[i].expr.kind == CAND_EXPR_COLUMN && strcmp(keys[i].expr.column, column) == 0)
            return true;
    return false;
}

static void push_key(candidate_t *c, const cand_expr_t *e)
{
    if (c->n_keys >= CAND_MAX_KEYS)
        return;
    for (int i = 0; i < c->n_keys; i++)
        if (expr_equal(&c->keys[i].expr, e))
            return;
    cand_key_t k = {.expr = *e};
    c->keys[c->n_keys++] = k;
}

static void start_candidate(candidate_t *c, const table_use_t *u, cand_reason_t reason)
{
    memset(c, 0, sizeof(*c));
    copy_name(c->schema, u->schema);
    copy_name(c->table, u->table);
    c->method = CAND_BTREE;
    c->reason = reason;
}

/* A twin of c with INCLUDE of the other columns the query reads, when few and all known. */
static void add_covering(walker_t *w, const scope_t *s, const table_use_t *u, const candidate_t *c)
{
    if (!s->is_select || u->star || u->refs_overflow)
        return;
    for (int i = 0; i < c->n_keys; i++)
        if (c->keys[i].expr.kind != CAND_EXPR_COLUMN)
            return; /* an index-only scan cannot rebuild the column of an expression */
    candidate_t cov = *c;
    for (int i = 0; i < u->n_refs; i++) {
        const char *col = u->refs[i];
        bool in_pred = false;
        for (int p = 0; p < c->n_preds; p++)
            in_pred = in_pred || strcmp(c->preds[p].column, col) == 0;
        if (keys_have_column(c->keys, c->n_keys, col) || in_pred)
            continue;
        if (cov.n_include >= CAND_MAX_INCLUDE)
            return;
        copy_name(cov.include[cov.n_include++], col);
    }
    if (cov.n_include > 0)
        add_candidate(w, &cov);
}

/* Adds the b-tree candidates of prefix keys followed by each ending (the ORDER BY, or one
 * range column), and their covering twins. */
static void add_btree_variants(walker_t *w, const scope_t *s, const table_use_t *u,
                               const candidate_t *prefix)
{
    candidate_t c;
    bool any = false;
    if (u->n_order > 0) {
        c = *prefix;
        c.reason = c.reason == CAND_PARTIAL ? CAND_PARTIAL : CAND_ORDER;
        int added = 0;
        for (int i = 0; i < u->n_order && c.n_keys < CAND_MAX_KEYS; i++) {
            if (keys_have_column(prefix->keys, prefix->n_keys, u->order[i].expr.column))
                continue; /* fixed by equality: any direction serves */
            c.keys[c.n_keys++] = u->order[i];
            added++;
        }
        if (added > 0) {
            add_candidate(w, &c);
            add_covering(w, s, u, &c);
            any = true;
        }
    }
    int ranges = 0;
    for (int i = 0; i < u->n_range && ranges < 2; i++) {
        bool fixed = false;
        for (int k = 0; k < prefix->n_keys; k++)
            fixed = fixed || expr_equal(&prefix->keys[k].expr, &u->range[i]);
        if (fixed)
            continue;
        c = *prefix;
        push_key(&c, &u->range[i]);
        add_candidate(w, &c);
        add_covering(w, s, u, &c);
        ranges++;
        any = true;
    }
    if (!any && prefix->n_keys > 0) {
        add_candidate(w, prefix);
        add_covering(w, s, u, prefix);
    }
}

static void emit_candidates(walker_t *w, const scope_t *s, const table_use_t *u)
{
    candidate_t c;
    /* Plain b-tree: every equality column, constants included. */
    start_candidate(&c, u, CAND_FILTER);
    for (int i = 0; i < u->n_eq; i++)
        push_key(&c, &u->eq[i]);
    for (int i = 0; i < u->n_consts; i++) {
        const cand_pred_t *p = &u->consts[i];
        if (p->kind == CAND_PRED_EQUALS || p->kind == CAND_PRED_IN) {
            cand_expr_t e = {.kind = CAND_EXPR_COLUMN};
            copy_name(e.column, p->column);
            push_key(&c, &e);
        }
    }
    add_btree_variants(w, s, u, &c);

    /* Partial: the constant predicates move to the index's WHERE. */
    if (u->n_consts > 0) {
        start_candidate(&c, u, CAND_PARTIAL);
        for (int i = 0; i < u->n_eq; i++)
            push_key(&c, &u->eq[i]);
        memcpy(c.preds, u->consts, sizeof(c.preds[0]) * (size_t)u->n_consts);
        c.n_preds = u->n_consts;
        if (c.n_keys == 0 && u->n_order == 0 && u->n_range == 0) {
            cand_expr_t e = {.kind = CAND_EXPR_COLUMN};
            copy_name(e.column, u->consts[0].column);
            push_key(&c, &e);
        }
        add_btree_variants(w, s, u, &c);
    }

    for (int i = 0; i < u->n_contain; i++) {
        start_candidate(&c, u, CAND_CONTAINMENT);
        c.method = CAND_GIN;
        c.n_keys = 1;
        c.keys[0].expr.kind = CAND_EXPR_COLUMN;
        copy_name(c.keys[0].expr.column, u->contain[i]);
        snprintf(c.keys[0].opclass, sizeof(c.keys[0].opclass), "jsonb_path_ops");
        add_candidate(w, &c);
    }
    for (int i = 0; i < u->n_join; i++) {
        start_candidate(&c, u, CAND_JOIN);
        c.n_keys = 1;
        c.keys[0].expr.kind = CAND_EXPR_COLUMN;
        copy_name(c.keys[0].expr.column, u->join[i]);
        add_candidate(w, &c);
    }
}

/* ---- statements ---- */

/* Pushes the names of a WITH clause and analyzes its queries; returns the depth to restore. */
static int enter_with(walker_t *w, json_t *with, scope_t *parent)
{
    int depth = w->n_ctes;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(with, "ctes"), i, item)
    {
        json_t *cte = node_of(item, "CommonTableExpr");
        const char *name = json_string_value(json_object_get(cte, "ctename"));
        if (name != NULL && w->n_ctes < MAX_CTES)
            w->ctes[w->n_ctes++] = name;
        json_t *sel = node_of(json_object_get(cte, "ctequery"), "SelectStmt");
        if (sel != NULL)
            analyze_select(w, sel, parent, false);
    }
    return depth;
}

static void finish_scope(walker_t *w, scope_t *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->uses[i].is_table)
            emit_candidates(w, s, &s->uses[i]);
}

static void analyze_select(walker_t *w, json_t *sel, scope_t *parent, bool top)
{
    if (w->oom || sel == NULL)
        return;
    int depth = w->n_ctes;
    json_t *with = json_object_get(sel, "withClause");
    if (with != NULL)
        enter_with(w, with, parent);
    const char *op = json_string_value(json_object_get(sel, "op"));
    if (op != NULL && !streq(op, "SETOP_NONE")) {
        analyze_select(w, json_object_get(sel, "larg"), parent, top);
        analyze_select(w, json_object_get(sel, "rarg"), parent, top);
        w->n_ctes = depth;
        return;
    }
    scope_t *s = calloc(1, sizeof(*s));
    json_t *quals = json_array();
    if (s == NULL || quals == NULL) {
        free(s);
        json_decref(quals);
        w->oom = true;
        return;
    }
    s->parent = parent;
    s->is_select = true;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(sel, "fromClause"), i, item)
    {
        add_from(w, s, item, quals);
    }
    json_t *where = json_object_get(sel, "whereClause");
    classify(w, s, where);
    json_array_foreach(quals, i, item)
    {
        classify(w, s, item);
    }
    json_t *sort = json_object_get(sel, "sortClause");
    read_order(w, s, sort);
    walk_conditions(w, s, where);
    walk_conditions(w, s, quals);
    walk_conditions(w, s, json_object_get(sel, "targetList"));
    walk_conditions(w, s, json_object_get(sel, "havingClause"));
    collect_refs(w, s, json_object_get(sel, "targetList"));
    collect_refs(w, s, where);
    collect_refs(w, s, quals);
    collect_refs(w, s, sort);
    collect_refs(w, s, json_object_get(sel, "groupClause"));
    collect_refs(w, s, json_object_get(sel, "havingClause"));
    if (top) {
        json_t *offset = json_object_get(sel, "limitOffset");
        bool limited = json_object_get(sel, "limitCount") != NULL;
        cand_value_t off;
        long offset_value = -2;
        if (offset != NULL)
            offset_value = constant_of(w, offset, &off) && off.kind == CAND_VALUE_NUMBER
                               ? strtol(off.text, NULL, 10)
                               : -1;
        for (int k = 0; k < s->n; k++) {
            table_use_t *u = &s->uses[k];
            if (!u->is_table)
                continue;
            if (u->star)
                add_hint(w, CAND_HINT_SELECT_STAR, u, "", "", 0);
            if (json_array_size(sort) > 0 && !limited)
                add_hint(w, CAND_HINT_ORDER_NO_LIMIT, u, "", "", 0);
            if (offset_value != -2)
                add_hint(w, CAND_HINT_OFFSET, u, "", "", offset_value);
        }
    }
    finish_scope(w, s);
    json_decref(quals);
    free(s);
    w->n_ctes = depth;
}

/* UPDATE and DELETE: the target and the FROM (USING) tables, filtered by WHERE. */
static void analyze_write(walker_t *w, json_t *stmt, const char *from_member)
{
    json_t *relation = json_object_get(stmt, "relation");
    if (relation == NULL)
        return;
    int depth = w->n_ctes;
    json_t *with = json_object_get(stmt, "withClause");
    if (with != NULL)
        enter_with(w, with, NULL);
    scope_t *s = calloc(1, sizeof(*s));
    json_t *quals = json_array();
    json_t *target = json_pack("{s:O}", "RangeVar", relation);
    if (s == NULL || quals == NULL || target == NULL) {
        free(s);
        json_decref(quals);
        json_decref(target);
        w->n_ctes = depth;
        w->oom = true;
        return;
    }
    add_from(w, s, target, quals);
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(stmt, from_member), i, item)
    {
        add_from(w, s, item, quals);
    }
    json_t *where = json_object_get(stmt, "whereClause");
    classify(w, s, where);
    json_array_foreach(quals, i, item)
    {
        classify(w, s, item);
    }
    walk_conditions(w, s, where);
    finish_scope(w, s);
    json_decref(target);
    json_decref(quals);
    free(s);
    w->n_ctes = depth;
}

static void analyze_statement(walker_t *w, json_t *stmt)
{
    json_t *body;
    const char *type = node_type(stmt, &body);
    if (type == NULL)
        return;
    if (strcmp(type, "SelectStmt") == 0) {
        analyze_select(w, body, NULL, true);
    } else if (strcmp(type, "UpdateStmt") == 0) {
        analyze_write(w, body, "fromClause");
    } else if (strcmp(type, "DeleteStmt") == 0) {
        analyze_write(w, body, "usingClause");
    } else if (strcmp(type, "InsertStmt") == 0) {
        json_t *rel = json_object_get(body, "relation");
        const char *name = json_string_value(json_object_get(rel, "relname"));
        if (name != NULL)
            add_table(w, json_string_value(json_object_get(rel, "schemaname")), name);
        analyze_select(w, node_of(json_object_get(body, "selectStmt"), "SelectStmt"), NULL, false);
    }
}

/* The parse tree of text as JSON; NULL when it does not parse (*oom tells why). */

int candidates_analyze(const char *text, const cand_catalog_t *catalog, cand_analysis_t *out)
{
    bool oom;
    json_t *root = sqlparse_tree(text, &oom);
    if (root == NULL)
        return oom ? -1 : 1;
    walker_t w = {.text = text, .catalog = catalog, .out = out};
    size_t i;
    json_t *raw;
    json_array_foreach(json_object_get(root, "stmts"), i, raw)
    {
        analyze_statement(&w, json_object_get(raw, "stmt"));
    }
    json_decref(root);
    return w.oom ? -1 : 0;
}

void cand_analysis_free(cand_analysis_t *a)
{
    free(a->cands);
    free(a->hints);
    free(a->tables);
    memset(a, 0, sizeof(*a));
}
