/*
 * sqlparse.c
 *    Query texts described from libpg_query's parse tree; see sqlparse.h.
 *
 * libpg_query gives the tree as JSON (pg_query_parse) or as protobuf. Debian's libpg-query-dev
 * ships the protobuf-c header, but it needs <protobuf-c/protobuf-c.h> from another package
 * whose runtime would have to match the copy built into libpg_query, so the tree is read as
 * JSON with jansson. A node is an object with one member named for its type
 * ({"SelectStmt": {...}}), except where a field can hold only one type: then the member is the
 * node itself (InsertStmt's "relation" is a bare RangeVar). Only RangeVar has a "relname", so
 * an object with one is a table reference however it is wrapped.
 *
 * The walk keeps a mode, read or written, for the RangeVars it meets: a DML statement's target
 * is written and the rest of it read; a DDL statement is walked as written, except inside the
 * queries it holds (CREATE VIEW ... AS SELECT reads). WITH names are kept on a stack with
 * PostgreSQL's scoping (a query sees the WITH names of its own and enclosing statements; a
 * non-recursive WITH query sees only those before it), so that an unqualified RangeVar naming
 * one is skipped. When unsure, the walk keeps a name as a table: an extra table costs a
 * needless invalidation, a missing one a stale cached result.
 */
#include "sqlparse.h"

#include <ctype.h>
#include <jansson.h>
#include <pg_query.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *sql_kind_name(sql_kind_t kind)
{
    switch (kind) {
    case SQL_READ:
        return "read";
    case SQL_WRITE:
        return "write";
    case SQL_DDL:
        return "ddl";
    case SQL_TRANSACTION:
        return "transaction";
    case SQL_UTILITY:
        return "utility";
    case SQL_UNPARSED:
        return "unparsed";
    }
    return "?";
}

uint64_t sqlparse_hash(const char *text, size_t len)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)text[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* ---- the parse tree walk ---- */

/*
 * Built-in functions known to be immutable or stable and not to depend on the clock or the
 * session, sorted (C locale) for bsearch. Any other function counts as volatile: that covers
 * now(), random(), nextval(), setval(), clock_timestamp(), txid_current(), gen_random_uuid(),
 * current_setting(), pg_sleep(), the advisory locks, and every user function, whose volatility
 * only the catalog knows.
 */
static const char *const stable_functions[] = {
    "abs",
    "acos",
    "array_agg",
    "array_append",
    "array_cat",
    "array_dims",
    "array_fill",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_to_json",
    "array_to_string",
    "array_upper",
    "ascii",
    "asin",
    "atan",
    "atan2",
    "avg",
    "bit_and",
    "bit_length",
    "bit_or",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "cbrt",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "chr",
    "concat",
    "concat_ws",
    "corr",
    "cos",
    "count",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "date_bin",
    "date_part",
    "date_trunc",
    "decode",
    "degrees",
    "dense_rank",
    "div",
    "encode",
    "every",
    "exp",
    "extract",
    "first_value",
    "floor",
    "format",
    "gcd",
    "generate_series",
    "generate_subscripts",
    "initcap",
    "isempty",
    "isfinite",
    "json_agg",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_extract_path",
    "json_extract_path_text",
    "json_object_agg",
    "json_object_keys",
    "json_typeof",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_strip_nulls",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "lag",
    "last_value",
    "lcm",
    "lead",
    "left",
    "length",
    "like_escape",
    "ln",
    "log",
    "log10",
    "lower",
    "lower_inc",
    "lower_inf",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "max",
    "md5",
    "min",
    "mod",
    "normalize",
    "nth_value",
    "ntile",
    "num_nonnulls",
    "num_nulls",
    "octet_length",
    "overlay",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pi",
    "position",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "radians",
    "range_merge",
    "rank",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_substr",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "scale",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sign",
    "similar_to_escape",
    "sin",
    "split_part",
    "sqrt",
    "starts_with",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "string_to_table",
    "strpos",
    "substr",
    "substring",
    "sum",
    "tan",
    "timezone",
    "to_char",
    "to_date",
    "to_hex",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "translate",
    "trim_scale",
    "trunc",
    "unnest",
    "upper",
    "upper_inc",
    "upper_inf",
    "var_pop",
    "var_samp",
    "variance",
    "width_bucket",
};

#define MAX_WITH_NAMES 64

typedef enum table_mode { TABLE_READ, TABLE_WRITTEN } table_mode_t;

typedef struct walk {
    sql_info_t *info;
    const char *with_names[MAX_WITH_NAMES]; /* WITH names in scope, innermost last; borrowed
                                               from the JSON tree */
    int n_with_names;
    bool dml; /* a data-modifying statement was met in the current top-level statement */
} walk_t;

static void walk_value(walk_t *w, json_t *v, table_mode_t mode);
static void walk_object(walk_t *w, json_t *obj, table_mode_t mode, bool dml_target);

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool is_stable_function(const char *name)
{
    return bsearch(&name, stable_functions, sizeof(stable_functions) / sizeof(stable_functions[0]),
                   sizeof(stable_functions[0]), compare_names) != NULL;
}

/* The text of a {"String": {"sval": ...}} node, or NULL. */
static const char *string_node(json_t *node)
{
    return json_string_value(json_object_get(json_object_get(node, "String"), "sval"));
}

static bool is_with_name(const walk_t *w, const char *name)
{
    for (int i = 0; i < w->n_with_names; i++)
        if (strcmp(w->with_names[i], name) == 0)
            return true;
    return false;
}

static void push_with_name(walk_t *w, const char *name)
{
    /* Past the limit, names stay unknown and so count as tables: the safe side. */
    if (name != NULL && w->n_with_names < MAX_WITH_NAMES)
        w->with_names[w->n_with_names++] = name;
}

static void add_table(walk_t *w, const char *schema, const char *rel, table_mode_t mode)
{
    sql_info_t *info = w->info;
    char name[SQLPARSE_NAME_LEN];
    if (rel == NULL || rel[0] == '\0')
        return;
    if (schema != NULL && schema[0] != '\0')
        snprintf(name, sizeof(name), "%s.%s", schema, rel);
    else
        snprintf(name, sizeof(name), "%s", rel);
    char(*list)[SQLPARSE_NAME_LEN] =
        mode == TABLE_WRITTEN ? info->tables_written : info->tables_read;
    int *n = mode == TABLE_WRITTEN ? &info->n_written : &info->n_read;
    for (int i = 0; i < *n; i++)
        if (strcmp(list[i], name) == 0)
            return;
    if (*n == SQLPARSE_MAX_TABLES) {
        info->too_many_tables = true;
        return;
    }
    memcpy(list[*n], name, sizeof(name));
    (*n)++;
}

/* A RangeVar: a table unless, unqualified, it names a WITH query in scope. A DML target is
 * always a table (PostgreSQL does not look for WITH names there). */
static void add_range_var(walk_t *w, json_t *rv, table_mode_t mode, bool check_with)
{
    const char *schema = json_string_value(json_object_get(rv, "schemaname"));
    const char *rel = json_string_value(json_object_get(rv, "relname"));
    if (rel == NULL)
        return;
    const char *persistence = json_string_value(json_object_get(rv, "relpersistence"));
    if (persistence != NULL && strcmp(persistence, "t") == 0)
        w->info->session_state = true;
    if (check_with && schema == NULL && is_with_name(w, rel))
        return;
    add_table(w, schema, rel, mode);
}

/* Walks the queries of a WITH clause, bringing its names into scope; the caller restores the
 * scope when the statement that owns the clause is done. */
static void walk_with(walk_t *w, json_t *with)
{
    json_t *ctes = json_object_get(with, "ctes");
    bool recursive = json_is_true(json_object_get(with, "recursive"));
    size_t i;
    json_t *cte;
    if (recursive) {
        json_array_foreach(ctes, i, cte)
        {
            json_t *body = json_object_get(cte, "CommonTableExpr");
            push_with_name(w, json_string_value(json_object_get(body, "ctename")));
        }
    }
    json_array_foreach(ctes, i, cte)
    {
        json_t *body = json_object_get(cte, "CommonTableExpr");
        walk_value(w, json_object_get(body, "ctequery"), TABLE_READ);
        if (!recursive)
            push_with_name(w, json_string_value(json_object_get(body, "ctename")));
    }
}

static void mark_clock(walk_t *w)
{
    w->info->volatile_functions = true;
    w->info->reads_clock = true;
}

/* Keeps the name of a function the stable list does not know, for the catalog to judge. */
static void add_function(walk_t *w, const char *schema, const char *name)
{
    sql_info_t *info = w->info;
    char full[SQLPARSE_NAME_LEN];
    if (schema != NULL)
        snprintf(full, sizeof(full), "%s.%s", schema, name);
    else
        snprintf(full, sizeof(full), "%s", name);
    for (int i = 0; i < info->n_functions; i++)
        if (strcmp(info->functions[i], full) == 0)
            return;
    if (info->n_functions == SQLPARSE_MAX_FUNCTIONS) {
        info->too_many_functions = true;
        return;
    }
    memcpy(info->functions[info->n_functions++], full, sizeof(full));
}

static void check_function(walk_t *w, json_t *call)
{
    json_t *names = json_object_get(call, "funcname");
    size_t n = json_array_size(names);
    const char *name = n >= 1 ? string_node(json_array_get(names, n - 1)) : NULL;
    const char *schema = n >= 2 ? string_node(json_array_get(names, n - 2)) : NULL;
    bool catalog_schema = schema == NULL || strcmp(schema, "pg_catalog") == 0;
    if (name != NULL && catalog_schema && is_stable_function(name))
        return;
    w->info->volatile_functions = true;
    if (name == NULL) {
        w->info->too_many_functions = true; /* a name the walk cannot read: never cleared */
        return;
    }
    if (catalog_schema && strcmp(name, "set_config") == 0)
        w->info->session_state = true;
    add_function(w, schema, name);
}

/*
 * Settings whose value cannot change what a query returns, or that the server reports with
 * ParameterStatus so that the cache's key carries them (client_encoding, DateStyle, TimeZone,
 * IntervalStyle, standard_conforming_strings, application_name). Sorted for bsearch.
 */
static const char *const harmless_settings[] = {
    "application_name",
    "client_encoding",
    "client_min_messages",
    "cpu_index_tuple_cost",
    "cpu_operator_cost",
    "cpu_tuple_cost",
    "datestyle",
    "default_statistics_target",
    "default_transaction_isolation",
    "effective_cache_size",
    "effective_io_concurrency",
    "from_collapse_limit",
    "geqo",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "intervalstyle",
    "jit",
    "join_collapse_limit",
    "lc_messages",
    "lock_timeout",
    "log_min_duration_statement",
    "log_statement",
    "maintenance_work_mem",
    "max_parallel_workers_per_gather",
    "plan_cache_mode",
    "random_page_cost",
    "seq_page_cost",
    "standard_conforming_strings",
    "statement_timeout",
    "synchronous_commit",
    "time zone",
    "timezone",
    "transaction",
    "transaction_isolation",
    "work_mem",
};

static bool is_harmless_setting(const char *name)
{
    char lower[SQLPARSE_NAME_LEN];
    size_t n = 0;
    for (; name[n] != '\0' && n + 1 < sizeof(lower); n++)
        lower[n] = (char)tolower((unsigned char)name[n]);
    lower[n] = '\0';
    if (strncmp(lower, "enable_", 7) == 0)
        return true;
    const char *key = lower;
    return bsearch(&key, harmless_settings,
                   sizeof(harmless_settings) / sizeof(harmless_settings[0]),
                   sizeof(harmless_settings[0]), compare_names) != NULL;
}

/* SET, RESET and SET LOCAL: see sql_info_t.session_state. */
static void check_set(walk_t *w, json_t *set)
{
    const char *name = json_string_value(json_object_get(set, "name"));
    if (json_is_true(json_object_get(set, "is_local")))
        return;
    if (name == NULL || !is_harmless_setting(name))
        w->info->session_state = true;
}

bool sqlparse_cast_reads_clock(json_t *type_cast)
{
    static const char *const clock_words[] = {"now", "today", "tomorrow", "yesterday"};
    json_t *a_const = json_object_get(json_object_get(type_cast, "arg"), "A_Const");
    const char *s = json_string_value(json_object_get(json_object_get(a_const, "sval"), "sval"));
    if (s == NULL)
        return false;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t len = strlen(s);
    while (len > 0 &&
           (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    for (size_t i = 0; i < sizeof(clock_words) / sizeof(clock_words[0]); i++)
        if (len == strlen(clock_words[i]) && strncasecmp(s, clock_words[i], len) == 0)
            return true;
    return false;
}

/* 'now'::timestamptz and friends read the clock while the text is analyzed by the server. */
static void check_type_cast(walk_t *w, json_t *cast)
{
    if (sqlparse_cast_reads_clock(cast))
        mark_clock(w);
}

static bool is_dml_node(const char *type)
{
    return strcmp(type, "InsertStmt") == 0 || strcmp(type, "UpdateStmt") == 0 ||
           strcmp(type, "DeleteStmt") == 0 || strcmp(type, "MergeStmt") == 0;
}

/* One member of an object: the member's name tells the node type or the field. */
static void walk_member(walk_t *w, const char *key, json_t *child, table_mode_t mode)
{
    if (is_dml_node(key)) {
        w->dml = true;
        walk_object(w, child, TABLE_READ, true);
    } else if (strcmp(key, "SelectStmt") == 0) {
        walk_value(w, child, TABLE_READ);
    } else if (strcmp(key, "intoClause") == 0) {
        walk_value(w, child, TABLE_WRITTEN);
    } else if (strcmp(key, "lockingClause") == 0) {
        /* Its lockedRels name tables (or aliases) of the FROM list, already counted. */
        if (json_array_size(child) > 0)
            w->info->for_update = true;
    } else if (strcmp(key, "FuncCall") == 0) {
        check_function(w, child);
        walk_value(w, child, mode);
    } else if (strcmp(key, "SQLValueFunction") == 0) {
        mark_clock(w);
    } else if (strcmp(key, "TypeCast") == 0) {
        check_type_cast(w, child);
        walk_value(w, child, mode);
    } else if (strcmp(key, "RangeTableSample") == 0) {
        if (json_object_get(child, "repeatable") == NULL)
            mark_clock(w);
        walk_value(w, child, mode);
    } else {
        walk_value(w, child, mode);
    }
}

/* An object: a RangeVar, a node wrapper or a node's fields. dml_target: obj is the body of an
 * INSERT/UPDATE/DELETE/MERGE, whose "relation" is written. */
static void walk_object(walk_t *w, json_t *obj, table_mode_t mode, bool dml_target)
{
    if (json_is_string(json_object_get(obj, "relname"))) {
        add_range_var(w, obj, mode, true);
        return;
    }
    int scope = w->n_with_names;
    json_t *with = json_object_get(obj, "withClause");
    if (with != NULL)
        walk_with(w, with);
    const char *key;
    json_t *child;
    json_object_foreach(obj, key, child)
    {
        if (strcmp(key, "withClause") == 0)
            continue;
        if (dml_target && strcmp(key, "relation") == 0)
            add_range_var(w, child, TABLE_WRITTEN, false);
        else
            walk_member(w, key, child, mode);
    }
    w->n_with_names = scope;
}

static void walk_value(walk_t *w, json_t *v, table_mode_t mode)
{
    if (json_is_object(v)) {
        walk_object(w, v, mode, false);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            walk_value(w, item, mode);
        }
    }
}

/* DROP TABLE/VIEW/MATERIALIZED VIEW/FOREIGN TABLE names its tables as lists of strings. */
static void walk_drop(walk_t *w, json_t *drop)
{
    const char *type = json_string_value(json_object_get(drop, "removeType"));
    if (type == NULL ||
        (strcmp(type, "OBJECT_TABLE") != 0 && strcmp(type, "OBJECT_VIEW") != 0 &&
         strcmp(type, "OBJECT_MATVIEW") != 0 && strcmp(type, "OBJECT_FOREIGN_TABLE") != 0))
        return;
    size_t i;
    json_t *object;
    json_array_foreach(json_object_get(drop, "objects"), i, object)
    {
        json_t *items = json_object_get(json_object_get(object, "List"), "items");
        size_t n = json_array_size(items);
        if (n == 0)
            continue;
        const char *rel = string_node(json_array_get(items, n - 1));
        const char *schema = n >= 2 ? string_node(json_array_get(items, n - 2)) : NULL;
        add_table(w, schema, rel, TABLE_WRITTEN);
    }
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool is_ddl_node(const char *type)
{
    static const char *const ddl[] = {
        "TruncateStmt",
        "GrantStmt",
        "GrantRoleStmt",
        "CommentStmt",
        "RenameStmt",
        "DefineStmt",
        "IndexStmt",
        "ViewStmt",
        "RuleStmt",
        "CompositeTypeStmt",
        "SecLabelStmt",
        "ReassignOwnedStmt",
        "ImportForeignSchemaStmt",
    };
    if (has_prefix(type, "Create") || has_prefix(type, "Alter") || has_prefix(type, "Drop"))
        return true;
    for (size_t i = 0; i < sizeof(ddl) / sizeof(ddl[0]); i++)
        if (strcmp(type, ddl[i]) == 0)
            return true;
    return false;
}

/* EXPLAIN runs its statement only with ANALYZE (not ANALYZE false/off/0). */
static bool explain_analyzes(json_t *explain)
{
    size_t i;
    json_t *opt;
    json_array_foreach(json_object_get(explain, "options"), i, opt)
    {
        json_t *def = json_object_get(opt, "DefElem");
        const char *name = json_string_value(json_object_get(def, "defname"));
        if (name == NULL || strcmp(name, "analyze") != 0)
            continue;
        json_t *arg = json_object_get(def, "arg");
        if (arg == NULL)
            return true;
        const char *s = string_node(arg);
        if (s != NULL)
            return strcasecmp(s, "false") != 0 && strcasecmp(s, "off") != 0;
        json_t *integer = json_object_get(arg, "Integer");
        if (integer != NULL)
            return json_integer_value(json_object_get(integer, "ival")) != 0;
        json_t *boolean = json_object_get(arg, "Boolean");
        if (boolean != NULL)
            return json_is_true(json_object_get(boolean, "boolval"));
        return true;
    }
    return false;
}

/* Walks one top-level statement ({"SelectStmt": {...}}) and returns its kind. */
static sql_kind_t walk_statement(walk_t *w, json_t *stmt)
{
    void *member = json_object_iter(stmt); /* a node wrapper has exactly one member */
    if (member == NULL)
        return SQL_UTILITY;
    const char *type = json_object_iter_key(member);
    json_t *body = json_object_iter_value(member);
    w->dml = false;
    if (strcmp(type, "SelectStmt") == 0) {
        walk_object(w, body, TABLE_READ, false);
        if (w->dml)
            return SQL_WRITE;
        return json_object_get(body, "intoClause") != NULL ? SQL_DDL : SQL_READ;
    }
    if (is_dml_node(type)) {
        walk_member(w, type, body, TABLE_READ);
        return SQL_WRITE;
    }
    if (strcmp(type, "CopyStmt") == 0) {
        bool from = json_is_true(json_object_get(body, "is_from"));
        walk_object(w, body, TABLE_READ, from);
        return from || w->dml ? SQL_WRITE : SQL_UTILITY;
    }
    if (strcmp(type, "TransactionStmt") == 0)
        return SQL_TRANSACTION;
    if (strcmp(type, "ExplainStmt") == 0) {
        walk_object(w, body, TABLE_READ, false);
        return w->dml && explain_analyzes(body) ? SQL_WRITE : SQL_UTILITY;
    }
    if (strcmp(type, "RefreshMatViewStmt") == 0) {
        walk_object(w, body, TABLE_WRITTEN, false);
        return SQL_WRITE;
    }
    if (strcmp(type, "DoStmt") == 0 || strcmp(type, "CallStmt") == 0) {
        mark_clock(w);
        w->info->runs_unknown = true;
        walk_object(w, body, TABLE_READ, false);
        return SQL_WRITE;
    }
    if (strcmp(type, "ExecuteStmt") == 0)
        w->info->runs_unknown = true;
    if (strcmp(type, "VariableSetStmt") == 0)
        check_set(w, body);
    if (strcmp(type, "DiscardStmt") == 0 || strcmp(type, "LoadStmt") == 0)
        w->info->session_state = true;
    if (is_ddl_node(type)) {
        if (strcmp(type, "DropStmt") == 0)
            walk_drop(w, body);
        else
            walk_object(w, body, TABLE_WRITTEN, false);
        return SQL_DDL;
    }
    walk_object(w, body, TABLE_READ, false);
    return SQL_UTILITY;
}

static int kind_strength(sql_kind_t kind)
{
    switch (kind) {
    case SQL_READ:
        return 0;
    case SQL_UTILITY:
        return 1;
    case SQL_TRANSACTION:
        return 2;
    case SQL_WRITE:
        return 3;
    case SQL_DDL:
        return 4;
    case SQL_UNPARSED:
        return 5;
    }
    return 5;
}

static int compare_table_names(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* The length of the valid UTF-8 sequence at s (as jansson checks it), or 0 if none is. */
static size_t utf8_sequence(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/*
 * libpg_query copies the bytes of literals and identifiers into its JSON as they are, so a
 * text in another client_encoding (LATIN1 'café') makes JSON that jansson rejects. Replaces
 * each byte that is not part of valid UTF-8 with '?', in place: the JSON's structure is ASCII,
 * so only the contents of strings change (and those of constants do not matter here).
 */
static void replace_invalid_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p != '\0') {
        size_t n = utf8_sequence(p);
        if (n == 0) {
            *p++ = '?';
        } else {
            p += n;
        }
    }
}

json_t *sqlparse_tree(const char *text, bool *oom)
{
    *oom = false;
    PgQueryParseResult parsed = pg_query_parse(text);
    if (parsed.error != NULL) {
        pg_query_free_parse_result(parsed);
        return NULL;
    }
    json_error_t error;
    json_t *root = json_loads(parsed.parse_tree, 0, &error);
    if (root == NULL && json_error_code(&error) == json_error_invalid_utf8) {
        replace_invalid_utf8(parsed.parse_tree);
        root = json_loads(parsed.parse_tree, 0, &error);
    }
    if (root == NULL)
        *oom = json_error_code(&error) == json_error_out_of_memory;
    pg_query_free_parse_result(parsed);
    return root;
}

/* Fills info from the parse tree; releases root. */
static void describe_tree(sql_info_t *info, json_t *root)
{
    walk_t w = {.info = info};
    sql_kind_t kind = SQL_READ;
    json_t *stmts = json_object_get(root, "stmts");
    size_t i;
    json_t *raw;
    json_array_foreach(stmts, i, raw)
    {
        sql_kind_t k = walk_statement(&w, json_object_get(raw, "stmt"));
        if (kind_strength(k) > kind_strength(kind))
            kind = k;
    }
    info->n_statements = (int)json_array_size(stmts);
    info->kind = info->n_statements == 0 ? SQL_UTILITY : kind;
    qsort(info->tables_read, (size_t)info->n_read, SQLPARSE_NAME_LEN, compare_table_names);
    qsort(info->tables_written, (size_t)info->n_written, SQLPARSE_NAME_LEN, compare_table_names);
    qsort(info->functions, (size_t)info->n_functions, SQLPARSE_NAME_LEN, compare_table_names);
    json_decref(root);
}

static void describe_unparsed(sql_info_t *info, const char *text)
{
    memset(info, 0, sizeof(*info));
    info->kind = SQL_UNPARSED;
    info->fingerprint = sqlparse_hash(text, strlen(text));
}

sql_info_t *sqlparse_analyze(const char *text)
{
    sql_info_t *info = calloc(1, sizeof(*info));
    if (info == NULL)
        return NULL;
    bool oom;
    json_t *root = sqlparse_tree(text, &oom);
    if (root == NULL) {
        if (oom)
            goto fail;
        describe_unparsed(info, text); /* rejected, or nested past jansson's limit of 2048 */
        return info;
    }
    describe_tree(info, root);

    PgQueryFingerprintResult fp = pg_query_fingerprint(text);
    info->fingerprint = fp.error == NULL ? fp.fingerprint : sqlparse_hash(text, strlen(text));
    pg_query_free_fingerprint_result(fp);

    PgQueryNormalizeResult norm = pg_query_normalize(text);
    if (norm.error == NULL && norm.normalized_query != NULL) {
        info->normalized = strdup(norm.normalized_query);
        if (info->normalized == NULL) {
            pg_query_free_normalize_result(norm);
            goto fail;
        }
    }
    pg_query_free_normalize_result(norm);
    return info;

fail:
    sql_info_free(info);
    return NULL;
}

void sql_info_free(sql_info_t *info)
{
    if (info == NULL)
        return;
    free(info->normalized);
    free(info);
}

/* ---- lexing just enough to find comments ---- */

typedef enum segment_kind {
    SEGMENT_CODE,
    SEGMENT_BLOCK_COMMENT,
    SEGMENT_LINE_COMMENT
} segment_kind_t;

static bool is_ident_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c >= 0x80;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The end of the text quoted with quote that opens at i, where a doubled quote stands for
 * itself and, with backslash_escapes, a backslash escapes the character after it. */
static size_t skip_quoted(const char *s, size_t len, size_t i, char quote, bool backslash_escapes)
{
    size_t j = i + 1;
    while (j < len) {
        if (backslash_escapes && s[j] == '\\') {
            j += 2;
        } else if (s[j] == quote) {
            if (j + 1 < len && s[j + 1] == quote)
                j += 2;
            else
                return j + 1;
        } else {
            j++;
        }
    }
    return len;
}

/* The end of the string literal whose opening quote is at i ('...' or E'...'). */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    bool backslash_escapes = i >= 1 && (s[i - 1] == 'E' || s[i - 1] == 'e') &&
                             (i < 2 || !is_ident_char((unsigned char)s[i - 2]));
    return skip_quoted(s, len, i, '\'', backslash_escapes);
}

/* The end of the quoted identifier whose opening quote is at i. */
static size_t skip_quoted_ident(const char *s, size_t len, size_t i)
{
    return skip_quoted(s, len, i, '"', false);
}

/* The end of the dollar-quoted string starting at i ($tag$...$tag$), or i when the '$' at i
 * starts none (a parameter $1, or a '$' inside an identifier). */
static size_t skip_dollar_quote(const char *s, size_t len, size_t i)
{
    if (i > 0 && is_ident_char((unsigned char)s[i - 1]))
        return i;
    size_t j = i + 1;
    while (j < len && s[j] != '$' && is_ident_char((unsigned char)s[j]) &&
           !(j == i + 1 && s[j] >= '0' && s[j] <= '9'))
        j++;
    if (j >= len || s[j] != '$')
        return i;
    size_t tag_len = j + 1 - i;
    const char *close = memmem(s + j + 1, len - (j + 1), s + i, tag_len);
    return close == NULL ? len : (size_t)(close - s) + tag_len;
}

/* The end of the block comment starting at i (comments nest), or 0 when it never ends. */
static size_t skip_block_comment(const char *s, size_t len, size_t i)
{
    int depth = 1;
    size_t j = i + 2;
    while (j + 1 < len) {
        if (s[j] == '/' && s[j + 1] == '*') {
            depth++;
            j += 2;
        } else if (s[j] == '*' && s[j + 1] == '/') {
            j += 2;
            if (--depth == 0)
                return j;
        } else {
            j++;
        }
    }
    return 0;
}

/*
 * The next segment of text from *pos: code (strings and identifiers included whole), a block
 * comment or a line comment, as [*start, *end). An unterminated block comment is code, as it
 * makes the text unparseable anyway. Returns false at the end.
 */
static bool next_segment(const char *s, size_t len, size_t *pos, size_t *start, size_t *end,
                         segment_kind_t *kind)
{
    size_t i = *pos;
    if (i >= len)
        return false;
    *start = i;
    if (i + 1 < len && s[i] == '/' && s[i + 1] == '*') {
        size_t e = skip_block_comment(s, len, i);
        if (e != 0) {
            *end = *pos = e;
            *kind = SEGMENT_BLOCK_COMMENT;
            return true;
        }
        *end = *pos = len;
        *kind = SEGMENT_CODE;
        return true;
    }
    if (i + 1 < len && s[i] == '-' && s[i + 1] == '-') {
        const char *nl = memchr(s + i, '\n', len - i);
        *end = *pos = nl == NULL ? len : (size_t)(nl - s);
        *kind = SEGMENT_LINE_COMMENT;
        return true;
    }
    while (i < len) {
        char c = s[i];
        if (i + 1 < len && ((c == '/' && s[i + 1] == '*') || (c == '-' && s[i + 1] == '-')))
            break;
        if (c == '\'') {
            i = skip_string(s, len, i);
        } else if (c == '"') {
            i = skip_quoted_ident(s, len, i);
        } else if (c == '$') {
            size_t e = skip_dollar_quote(s, len, i);
            i = e == i ? i + 1 : e;
        } else {
            i++;
        }
    }
    *end = *pos = i;
    *kind = SEGMENT_CODE;
    return true;
}

size_t sqlparse_strip_comments(const char *text, size_t len, char *out)
{
    size_t pos = 0, start, end, n = 0;
    segment_kind_t kind;
    bool after_comment = false;
    while (next_segment(text, len, &pos, &start, &end, &kind)) {
        if (kind != SEGMENT_CODE) {
            if (n > 0 && !is_space(out[n - 1]))
                out[n++] = ' ';
            after_comment = true;
            continue;
        }
        for (size_t i = start; i < end; i++) {
            if (is_space(text[i]) && (n == 0 || (after_comment && is_space(out[n - 1]))))
                continue;
            after_comment = false;
            out[n++] = text[i];
        }
    }
    while (n > 0 && is_space(out[n - 1]))
        n--;
    return n;
}

/* The end of the numeric literal starting at i: digits, a fraction, an exponent. */
static size_t skip_number(const char *s, size_t len, size_t i)
{
    size_t j = i;
    while (j < len && ((s[j] >= '0' && s[j] <= '9') || s[j] == '.' || s[j] == '_'))
        j++;
    if (j < len && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < len && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k < len && s[k] >= '0' && s[k] <= '9') {
            j = k;
            while (j < len && s[j] >= '0' && s[j] <= '9')
                j++;
        }
    }
    return j;
}

/*
 * The shape of a text without comments: every constant (a number, a string, a dollar-quoted
 * string) becomes '?', so that texts differing only in their constants (what a simple-protocol
 * client sends for every row it asks for) share one cache entry and one parse, as they share
 * one fingerprint. Identifiers, quoted ones too, and $n parameters stay. Returns the length.
 */
static size_t shape_of(const char *s, size_t len, char *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        char c = s[i];
        size_t end = i;
        if (c == '\'') {
            end = skip_string(s, len, i);
        } else if (c == '$') {
            end = skip_dollar_quote(s, len, i);
        } else if (((c >= '0' && c <= '9') ||
                    (c == '.' && i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9')) &&
                   (i == 0 || !is_ident_char((unsigned char)s[i - 1]))) {
            end = skip_number(s, len, i);
        } else if (c == '"') {
            size_t e = skip_quoted_ident(s, len, i);
            memcpy(out + n, s + i, e - i);
            n += e - i;
            i = e;
            continue;
        }
        if (end > i) {
            out[n++] = '?';
            i = end;
        } else {
            out[n++] = c;
            i++;
        }
    }
    return n;
}

/* ---- sqlcommenter tags ---- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Cuts a truncated UTF-8 string back to the end of its last whole character. */
static void trim_partial_utf8(char *s, size_t *n)
{
    size_t i = *n;
    size_t cont = 0;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80 && cont < 3) {
        i--;
        cont++;
    }
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
    if (lead >= 0xC0 && cont < need)
        *n = i - 1;
}

/* Decodes src[0, n) (%XX, and \ escapes) into dst of cap bytes, truncating safely. */
static void decode_into(char *dst, size_t cap, const char *src, size_t n)
{
    size_t out = 0;
    bool truncated = false;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < n) {
            c = src[++i];
        } else if (c == '%' && i + 2 < n && hex_value(src[i + 1]) >= 0 &&
                   hex_value(src[i + 2]) >= 0) {
            c = (char)(hex_value(src[i + 1]) * 16 + hex_value(src[i + 2]));
            i += 2;
        }
        if (out + 1 >= cap) {
            truncated = true;
            break;
        }
        dst[out++] = c;
    }
    if (truncated)
        trim_partial_utf8(dst, &out);
    dst[out] = '\0';
}

/*
 * Reads the key='value' pairs of comment content s[a, b). With out, writes at most max tags.
 * Returns the number of pairs, or -1 when the content is not a list of pairs.
 */
static int parse_tags(const char *s, size_t a, size_t b, sql_tag_t *out, int max)
{
    size_t p = a;
    int n = 0;
    while (p < b && is_space(s[p]))
        p++;
    if (p == b)
        return -1;
    while (p < b) {
        size_t key = p;
        while (p < b && s[p] != '=' && s[p] != '\'' && s[p] != ',' && !is_space(s[p]))
            p++;
        size_t key_end = p;
        if (key_end == key)
            return -1;
        while (p < b && is_space(s[p]))
            p++;
        if (p >= b || s[p] != '=')
            return -1;
        p++;
        while (p < b && is_space(s[p]))
            p++;
        if (p >= b || s[p] != '\'')
            return -1;
        size_t value = ++p;
        while (p < b && s[p] != '\'')
            p += s[p] == '\\' ? 2 : 1;
        if (p >= b)
            return -1;
        size_t value_end = p++;
        if (out != NULL && n < max) {
            decode_into(out[n].key, sizeof(out[n].key), s + key, key_end - key);
            decode_into(out[n].value, sizeof(out[n].value), s + value, value_end - value);
        }
        n++;
        while (p < b && is_space(s[p]))
            p++;
        if (p < b) {
            if (s[p] != ',')
                return -1;
            p++;
            while (p < b && is_space(s[p]))
                p++;
        }
    }
    return n;
}

int sqlparse_comment_tags(const char *text, size_t len, sql_tag_t *out, int max)
{
    size_t pos = 0, start, end, best_start = 0, best_end = 0;
    segment_kind_t kind;
    bool found = false;
    if (out == NULL || max <= 0)
        return 0;
    while (next_segment(text, len, &pos, &start, &end, &kind)) {
        if (kind == SEGMENT_BLOCK_COMMENT && parse_tags(text, start + 2, end - 2, NULL, 0) > 0) {
            best_start = start;
            best_end = end;
            found = true;
        }
    }
    if (!found)
        return 0;
    int n = parse_tags(text, best_start + 2, best_end - 2, out, max);
    return n < max ? n : max;
}

/* ---- the memo table ---- */

typedef struct entry {
    struct entry *newer, *older; /* the LRU list: cache->newest ... cache->oldest */
    sql_info_t *info;
    uint64_t hash;
    size_t len;
    char text[]; /* the key: the shape of the text without comments (shape_of) */
} entry_t;

struct sqlparse_cache {
    entry_t **slots; /* open addressing, linear probing; NULL = empty */
    uint32_t mask;   /* slots - 1; slots is a power of two at least twice the capacity */
    int capacity;
    int count;
    entry_t *newest, *oldest;
    char *scratch; /* the text being looked up, without comments */
    char *shape;   /* its shape: the key */
    size_t scratch_cap;
    uint64_t hits, misses;
};

sqlparse_cache_t *sqlparse_cache_create(int capacity)
{
    if (capacity < 1)
        capacity = 1;
    sqlparse_cache_t *cache = calloc(1, sizeof(*cache));
    if (cache == NULL)
        return NULL;
    uint32_t size = 8;
    while (size < (uint32_t)capacity * 2)
        size *= 2;
    cache->slots = calloc(size, sizeof(entry_t *));
    if (cache->slots == NULL) {
        free(cache);
        return NULL;
    }
    cache->mask = size - 1;
    cache->capacity = capacity;
    return cache;
}

static void entry_free(entry_t *e)
{
    sql_info_free(e->info);
    free(e);
}

void sqlparse_cache_free(sqlparse_cache_t *cache)
{
    if (cache == NULL)
        return;
    for (entry_t *e = cache->newest, *next; e != NULL; e = next) {
        next = e->older;
        entry_free(e);
    }
    free(cache->slots);
    free(cache->scratch);
    free(cache->shape);
    free(cache);
}

static uint32_t home_slot(const sqlparse_cache_t *cache, uint64_t hash)
{
    return (uint32_t)(hash ^ (hash >> 32)) & cache->mask;
}

static void lru_unlink(sqlparse_cache_t *cache, entry_t *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        cache->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        cache->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_newest(sqlparse_cache_t *cache, entry_t *e)
{
    e->newer = NULL;
    e->older = cache->newest;
    if (cache->newest != NULL)
        cache->newest->newer = e;
    cache->newest = e;
    if (cache->oldest == NULL)
        cache->oldest = e;
}

/* The slot holding the key, or the empty slot where it would go. */
static uint32_t find_slot(const sqlparse_cache_t *cache, uint64_t hash, const char *key, size_t len)
{
    uint32_t i = home_slot(cache, hash);
    for (entry_t *e; (e = cache->slots[i]) != NULL; i = (i + 1) & cache->mask)
        if (e->hash == hash && e->len == len && memcmp(e->text, key, len) == 0)
            return i;
    return i;
}

/* Removes the oldest entry: from the table (backward-shift deletion, no tombstones), from the
 * LRU list, and from memory. */
static void evict_oldest(sqlparse_cache_t *cache)
{
    entry_t *victim = cache->oldest;
    uint32_t i = find_slot(cache, victim->hash, victim->text, victim->len);
    cache->slots[i] = NULL;
    for (uint32_t j = (i + 1) & cache->mask; cache->slots[j] != NULL; j = (j + 1) & cache->mask) {
        uint32_t home = home_slot(cache, cache->slots[j]->hash);
        if (((j - home) & cache->mask) >= ((j - i) & cache->mask)) {
            cache->slots[i] = cache->slots[j];
            cache->slots[j] = NULL;
            i = j;
        }
    }
    lru_unlink(cache, victim);
    entry_free(victim);
    cache->count--;
}

const sql_info_t *sqlparse_cache_get(sqlparse_cache_t *cache, const char *text, size_t len)
{
    if (cache->scratch_cap < len + 1) {
        char *bigger = realloc(cache->scratch, len + 1);
        if (bigger == NULL)
            return NULL;
        cache->scratch = bigger;
        if ((bigger = realloc(cache->shape, len + 1)) == NULL)
            return NULL;
        cache->shape = bigger;
        cache->scratch_cap = len + 1;
    }
    size_t text_len = sqlparse_strip_comments(text, len, cache->scratch);
    cache->scratch[text_len] = '\0';
    size_t key_len = shape_of(cache->scratch, text_len, cache->shape);
    uint64_t hash = sqlparse_hash(cache->shape, key_len);
    uint32_t i = find_slot(cache, hash, cache->shape, key_len);
    entry_t *e = cache->slots[i];
    if (e != NULL) {
        cache->hits++;
        lru_unlink(cache, e);
        lru_push_newest(cache, e);
        return e->info;
    }

    e = malloc(sizeof(*e) + key_len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->text, cache->shape, key_len);
    e->text[key_len] = '\0';
    e->len = key_len;
    e->hash = hash;
    e->info = sqlparse_analyze(cache->scratch);
    if (e->info == NULL) {
        free(e);
        return NULL;
    }
    cache->misses++;
    if (cache->count >= cache->capacity) {
        evict_oldest(cache);
        i = find_slot(cache, hash, e->text, key_len);
    }
    cache->slots[i] = e;
    lru_push_newest(cache, e);
    cache->count++;
    return e->info;
}

int sqlparse_cache_count(const sqlparse_cache_t *cache)
{
    return cache->count;
}

void sqlparse_cache_counters(const sqlparse_cache_t *cache, uint64_t *hits, uint64_t *misses)
{
    *hits = cache->hits;
    *misses = cache->misses;
}
