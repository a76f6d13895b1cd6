/*
 * candidate_sql.c
 *    Names and CREATE INDEX definitions of index candidates; see candidate_sql.h.
 */
#include "candidate_sql.h"

#include "sqlparse.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

/* Appends s to out (of CAND_NAME_LEN * 4 bytes, with n used) as lower-case ASCII letters,
 * digits and single '_'. */
static void append_name_part(char *out, size_t cap, size_t *n, const char *s)
{
    for (const char *p = s; *p != '\0' && *n + 1 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        char c = isalnum(ch) && ch < 0x80 ? (char)tolower(ch) : '_';
        if (c == '_' && (*n == 0 || out[*n - 1] == '_'))
            continue;
        out[(*n)++] = c;
    }
    out[*n] = '\0';
}

static void append_separator(char *out, size_t cap, size_t *n)
{
    if (*n > 0 && out[*n - 1] != '_' && *n + 1 < cap) {
        out[(*n)++] = '_';
        out[*n] = '\0';
    }
}

void candidate_name(const candidate_t *c, char out[CAND_NAME_LEN])
{
    char full[CAND_NAME_LEN * 8];
    size_t n = 0;
    full[0] = '\0';
    append_name_part(full, sizeof(full), &n, "idx_");
    append_name_part(full, sizeof(full), &n, c->table);
    for (int i = 0; i < c->n_keys; i++) {
        const cand_key_t *k = &c->keys[i];
        append_separator(full, sizeof(full), &n);
        if (k->expr.kind == CAND_EXPR_FUNCTION) {
            append_name_part(full, sizeof(full), &n, k->expr.function);
            append_separator(full, sizeof(full), &n);
        }
        append_name_part(full, sizeof(full), &n, k->expr.column);
        if (k->expr.kind == CAND_EXPR_JSON_FIELD) {
            append_separator(full, sizeof(full), &n);
            append_name_part(full, sizeof(full), &n, k->expr.key);
        }
        if (k->desc)
            append_name_part(full, sizeof(full), &n, "_desc");
    }
    if (c->method == CAND_GIN)
        append_name_part(full, sizeof(full), &n, "_gin");
    if (c->n_include > 0)
        append_name_part(full, sizeof(full), &n, "_incl");
    for (int i = 0; i < c->n_include; i++) {
        append_separator(full, sizeof(full), &n);
        append_name_part(full, sizeof(full), &n, c->include[i]);
    }
    if (c->n_preds > 0)
        append_name_part(full, sizeof(full), &n, "_where");
    for (int i = 0; i < c->n_preds; i++) {
        append_separator(full, sizeof(full), &n);
        append_name_part(full, sizeof(full), &n, c->preds[i].column);
    }
    while (n > 0 && full[n - 1] == '_')
        full[--n] = '\0';
    if (n < CAND_NAME_LEN) {
        memcpy(out, full, n + 1);
        return;
    }
    /* 54 bytes of the name, '_', and 8 hex digits of a hash of all of it. */
    uint64_t h = sqlparse_hash(full, n);
    snprintf(out, CAND_NAME_LEN, "%.54s_%08x", full, (unsigned)(h ^ (h >> 32)));
}

/* ---- SQL ---- */

typedef struct sqlbuf {
    char *s;
    size_t n, cap;
    bool failed;
} sqlbuf_t;

static void put(sqlbuf_t *b, const char *s)
{
    if (b->failed)
        return;
    if (s == NULL) {
        b->failed = true;
        return;
    }
    size_t len = strlen(s);
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 128 : b->cap;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, len + 1);
    b->n += len;
}

/* Appends a string quoted by fn (ident or literal) and frees the quoted copy. */
static void put_quoted(sqlbuf_t *b, char *(*fn)(void *, const char *), void *ctx, const char *s)
{
    char *q = fn(ctx, s);
    put(b, q);
    free(q);
}

static void put_expr(sqlbuf_t *b, const cand_expr_t *e, const cand_quoting_t *q)
{
    switch (e->kind) {
    case CAND_EXPR_COLUMN:
        put_quoted(b, q->ident, q->ctx, e->column);
        break;
    case CAND_EXPR_JSON_FIELD:
        put(b, "(");
        put_quoted(b, q->ident, q->ctx, e->column);
        put(b, " ");
        put(b, e->op);
        put(b, " ");
        put_quoted(b, q->literal, q->ctx, e->key);
        put(b, ")");
        break;
    case CAND_EXPR_FUNCTION:
        put(b, e->function);
        put(b, "(");
        put_quoted(b, q->ident, q->ctx, e->column);
        put(b, ")");
        break;
    }
}

static void put_value(sqlbuf_t *b, const cand_value_t *v, const cand_quoting_t *q)
{
    if (v->kind == CAND_VALUE_STRING) {
        put_quoted(b, q->literal, q->ctx, v->text);
        return;
    }
    for (const char *p = v->text; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr(".+-", *p) == NULL) {
            b->failed = true;
            return;
        }
    put(b, v->text);
}

static void put_pred(sqlbuf_t *b, const cand_pred_t *p, const cand_quoting_t *q)
{
    put_quoted(b, q->ident, q->ctx, p->column);
    switch (p->kind) {
    case CAND_PRED_IS_NULL:
        put(b, " IS NULL");
        break;
    case CAND_PRED_IS_NOT_NULL:
        put(b, " IS NOT NULL");
        break;
    case CAND_PRED_EQUALS:
        put(b, " = ");
        put_value(b, &p->values[0], q);
        break;
    case CAND_PRED_IN:
        put(b, " IN (");
        for (int i = 0; i < p->n_values; i++) {
            if (i > 0)
                put(b, ", ");
            put_value(b, &p->values[i], q);
        }
        put(b, ")");
        break;
    }
}

char *candidate_definition(const candidate_t *c, const cand_quoting_t *q)
{
    sqlbuf_t b = {0};
    if (c->method == CAND_GIN)
        put(&b, "USING gin ");
    put(&b, "(");
    for (int i = 0; i < c->n_keys; i++) {
        const cand_key_t *k = &c->keys[i];
        if (i > 0)
            put(&b, ", ");
        put_expr(&b, &k->expr, q);
        if (k->opclass[0] != '\0') {
            put(&b, " ");
            put(&b, k->opclass);
        }
        if (k->desc)
            put(&b, " DESC");
        if (k->nulls == CAND_NULLS_FIRST)
            put(&b, " NULLS FIRST");
        else if (k->nulls == CAND_NULLS_LAST)
            put(&b, " NULLS LAST");
    }
    put(&b, ")");
    if (c->n_include > 0) {
        put(&b, " INCLUDE (");
        for (int i = 0; i < c->n_include; i++) {
            if (i > 0)
                put(&b, ", ");
            put_quoted(&b, q->ident, q->ctx, c->include[i]);
        }
        put(&b, ")");
    }
    for (int i = 0; i < c->n_preds; i++) {
        put(&b, i == 0 ? " WHERE " : " AND ");
        put_pred(&b, &c->preds[i], q);
    }
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
