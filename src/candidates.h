/*
 * candidates.h
 *    Index candidates from one query text, read off its parse tree (libpg_query): pure
 *    functions, no I/O, no catalog but what the caller's callback answers.
 *
 * For every table a SELECT, UPDATE or DELETE filters (subqueries and WITH queries each on their
 * own), the candidates are:
 *   - b-tree: the columns compared by equality first (in the order the query names them), then
 *     the ORDER BY columns with their directions when the whole ORDER BY is on this table, or
 *     else one range column (<, <=, >, >=, BETWEEN): one candidate per such ending;
 *   - partial b-tree: the same without the columns compared to constants, with those constant
 *     predicates (= constant, IN (constants), IS NULL, IS NOT NULL) as the index's WHERE;
 *   - covering: each of the above with INCLUDE of the other columns the query reads from the
 *     table, when there are at most CAND_MAX_INCLUDE of them and the query reads no "*";
 *   - expression keys for data->>'key' (and ->) and lower()/upper() of a column;
 *   - GIN with jsonb_path_ops for column @> value;
 *   - one-column b-tree for each column joined by equality to another table's column (the
 *     caller keeps those that are foreign keys).
 * Whether a candidate pays is for the planner to say (proof.h), whether a constant predicate
 * is selective for the statistics (the caller).
 *
 * The analysis also reports facts for hints about queries no index fixes: SELECT *, ORDER BY
 * without LIMIT, OFFSET, leading-wildcard LIKE, functions or casts around a column, long IN
 * lists, and JSON keys given as parameters ($n, as pg_stat_statements writes every constant).
 *
 * Names are as PostgreSQL resolves identifiers, without quotes (unquoted folded to lower
 * case). A candidate's schema is "" when the query does not qualify the table.
 */
#ifndef PGTURBO_CANDIDATES_H
#define PGTURBO_CANDIDATES_H

#include <stdbool.h>
#include <stddef.h>

#define CAND_NAME_LEN    64 /* an identifier and its NUL: NAMEDATALEN */
#define CAND_VALUE_LEN   128
#define CAND_MAX_KEYS    6
#define CAND_MAX_INCLUDE 3
#define CAND_MAX_PREDS   3
#define CAND_MAX_VALUES  8 /* constants of one IN list that make a partial index's predicate */

typedef enum cand_method { CAND_BTREE, CAND_GIN } cand_method_t;

typedef enum cand_expr_kind {
    CAND_EXPR_COLUMN,     /* column */
    CAND_EXPR_JSON_FIELD, /* column ->> 'key' or column -> 'key' */
    CAND_EXPR_FUNCTION,   /* lower(column) or upper(column) */
} cand_expr_kind_t;

/* What an index key is made of. */
typedef struct cand_expr {
    cand_expr_kind_t kind;
    char column[CAND_NAME_LEN];
    char op[8];               /* CAND_EXPR_JSON_FIELD: "->>" or "->"; CAND_EXPR_FUNCTION: "" */
    char function[8];         /* CAND_EXPR_FUNCTION: "lower" or "upper" */
    char key[CAND_VALUE_LEN]; /* CAND_EXPR_JSON_FIELD: the key */
} cand_expr_t;

typedef enum cand_nulls { CAND_NULLS_DEFAULT, CAND_NULLS_FIRST, CAND_NULLS_LAST } cand_nulls_t;

typedef struct cand_key {
    cand_expr_t expr;
    bool desc;
    cand_nulls_t nulls; /* as the ORDER BY says; DEFAULT is LAST for ASC, FIRST for DESC */
    char opclass[16];   /* "jsonb_path_ops" for a GIN on jsonb; "" for the default */
} cand_key_t;

typedef enum cand_value_kind {
    CAND_VALUE_STRING,
    CAND_VALUE_NUMBER,
    CAND_VALUE_BOOL
} cand_value_kind_t;

/* A constant of the query; a number's text is digits, sign, '.', 'e' only. */
typedef struct cand_value {
    cand_value_kind_t kind;
    char text[CAND_VALUE_LEN]; /* BOOL: "true" or "false" */
} cand_value_t;

typedef enum cand_pred_kind {
    CAND_PRED_IS_NULL,
    CAND_PRED_IS_NOT_NULL,
    CAND_PRED_EQUALS, /* column = values[0] */
    CAND_PRED_IN,     /* column IN (values) */
} cand_pred_kind_t;

/* A constant predicate on a column: the WHERE of a partial index. */
typedef struct cand_pred {
    cand_pred_kind_t kind;
    char column[CAND_NAME_LEN];
    int n_values;
    cand_value_t values[CAND_MAX_VALUES];
} cand_pred_t;

typedef enum cand_reason {
    CAND_FILTER,      /* equality and range filters */
    CAND_ORDER,       /* filters, then the ORDER BY */
    CAND_PARTIAL,     /* a partial index for constant predicates */
    CAND_CONTAINMENT, /* GIN for @> */
    CAND_JOIN,        /* a column joined to another table's */
} cand_reason_t;

typedef struct candidate {
    char schema[CAND_NAME_LEN]; /* as the query writes it; "" when unqualified */
    char table[CAND_NAME_LEN];
    cand_method_t method;
    cand_reason_t reason;
    int n_keys;
    cand_key_t keys[CAND_MAX_KEYS];
    int n_include;
    char include[CAND_MAX_INCLUDE][CAND_NAME_LEN];
    int n_preds; /* ANDed */
    cand_pred_t preds[CAND_MAX_PREDS];
} candidate_t;

typedef enum cand_hint_kind {
    CAND_HINT_SELECT_STAR,        /* the outermost SELECT reads * (or alias.*) of table */
    CAND_HINT_ORDER_NO_LIMIT,     /* the outermost SELECT sorts rows of table, without LIMIT */
    CAND_HINT_OFFSET,             /* OFFSET value (-1: a parameter) over table */
    CAND_HINT_LEADING_WILDCARD,   /* column LIKE/ILIKE '%...' (or '_...') */
    CAND_HINT_FUNCTION_ON_COLUMN, /* function(column) or column::type compared to a value;
                                     detail names the function or the cast */
    CAND_HINT_LARGE_IN_LIST,      /* column IN (value values ...) */
    CAND_HINT_HIDDEN_CONSTANT,    /* column ->> $n: the key is a parameter, so no expression
                                     index can be proposed from this text */
} cand_hint_kind_t;

typedef struct cand_hint {
    cand_hint_kind_t kind;
    char schema[CAND_NAME_LEN];
    char table[CAND_NAME_LEN];
    char column[CAND_NAME_LEN]; /* "" when the hint is about the table */
    char detail[CAND_NAME_LEN];
    long value;
} cand_hint_t;

/* A table the query reads or writes, as written. */
typedef struct cand_table {
    char schema[CAND_NAME_LEN];
    char table[CAND_NAME_LEN];
} cand_table_t;

typedef struct cand_analysis {
    candidate_t *cands;
    int n_cands, cap_cands;
    cand_hint_t *hints;
    int n_hints, cap_hints;
    cand_table_t *tables;
    int n_tables, cap_tables;
} cand_analysis_t;

/*
 * The catalog, as far as the analysis needs it: whether table (schema "" when unqualified)
 * has column. It places unqualified columns when a query names several tables; without it
 * (has_column NULL) such columns are placed only when the query names one table.
 */
typedef struct cand_catalog {
    bool (*has_column)(void *ctx, const char *schema, const char *table, const char *column);
    void *ctx;
} cand_catalog_t;

/*
 * Analyzes text (NUL-terminated, borrowed) into out (zeroed by the caller): its candidates,
 * without duplicates, its hint facts and its tables. catalog may be NULL. Returns 0, 1 when
 * the text does not parse (out stays empty), -1 when memory runs out. Free out with
 * cand_analysis_free() in every case.
 */
__attribute__((warn_unused_result)) int
candidates_analyze(const char *text, const cand_catalog_t *catalog, cand_analysis_t *out);

/* Frees what a holds and zeroes it. */
void cand_analysis_free(cand_analysis_t *a);

/* True when a and b describe the same index (table, method, keys, include, predicate). */
bool candidate_equal(const candidate_t *a, const candidate_t *b);

#endif /* PGTURBO_CANDIDATES_H */
