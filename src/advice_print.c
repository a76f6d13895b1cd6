/*
 * advice_print.c
 *    The advice of a run for people (a table on stdout) and for programs (JSON); see
 *    advice.h.
 */
#include "advice.h"

#include "jsontext.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUERY_WIDTH 90 /* characters of a query text shown in the table */

const char *advice_hint_kind_name(cand_hint_kind_t kind)
{
    switch (kind) {
    case CAND_HINT_SELECT_STAR:
        return "select_star";
    case CAND_HINT_ORDER_NO_LIMIT:
        return "order_without_limit";
    case CAND_HINT_OFFSET:
        return "deep_offset";
    case CAND_HINT_LEADING_WILDCARD:
        return "leading_wildcard_like";
    case CAND_HINT_FUNCTION_ON_COLUMN:
        return "function_on_indexed_column";
    case CAND_HINT_LARGE_IN_LIST:
        return "large_in_list";
    case CAND_HINT_HIDDEN_CONSTANT:
        return "hidden_constant";
    }
    return "?";
}

static const char *proof_name(advice_proof_t p)
{
    return p == ADVICE_PROOF_SAMPLE ? "sample" : "hypopg";
}

/* bytes as "512 B", "8.0 kB", "4.4 MB", "1.2 GB". */
static void format_size(double bytes, char *out, size_t outlen)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, outlen, "%.0f %s", bytes, units[u]);
    else
        snprintf(out, outlen, "%.1f %s", bytes, units[u]);
}

/* The query on one line (runs of white space as one space), cut to width with "...". */
static void one_line(const char *text, char *out, size_t width)
{
    size_t n = 0;
    bool space = false;
    for (const char *p = text; *p != '\0' && n < width; p++) {
        if (isspace((unsigned char)*p)) {
            space = n > 0;
            continue;
        }
        if (space && n < width)
            out[n++] = ' ';
        space = false;
        if (n < width)
            out[n++] = *p;
    }
    out[n] = '\0';
    if (n == width && strlen(text) > width && width > 3)
        memcpy(out + width - 3, "...", 3);
}

void advice_print_text(const advice_set_t *s)
{
    printf("pgturbo advise: database \"%s\", %d quer%s from pg_stat_statements (%d with a "
           "sampled text), %.0f calls, %.1f ms\n",
           s->database, s->n_queries, s->n_queries == 1 ? "y" : "ies", s->n_sampled, s->total_calls,
           s->total_ms);
    if (s->n_advice == 0) {
        if (s->n_queries == 0)
            printf("nothing to advise: no queries on tables of this database in "
                   "pg_stat_statements\n");
        else
            printf("nothing to advise: no index cuts the cost of a frequent query by %d %% or "
                   "more and pays for its upkeep (%d candidate%s proven)\n",
                   s->min_improvement, s->n_candidates, s->n_candidates == 1 ? "" : "s");
    } else {
        int name_w = 5, table_w = 5;
        for (int i = 0; i < s->n_advice; i++) {
            const advice_t *a = &s->advice[i];
            int t = (int)(strlen(a->table->schema) + 1 + strlen(a->table->name));
            if ((int)strlen(a->name) > name_w)
                name_w = (int)strlen(a->name);
            if (t > table_w)
                table_w = t;
        }
        printf("\n%d index%s advised, most time saved first:\n\n", s->n_advice,
               s->n_advice == 1 ? "" : "es");
        printf("%-*s  %-*s  %-6s  %10s  %14s\n", name_w, "index", table_w, "table", "proof",
               "est. size", "time saved");
        for (int i = 0; i < s->n_advice; i++) {
            const advice_t *a = &s->advice[i];
            char size[32], table[2 * CAND_NAME_LEN + 2], saved[32];
            format_size(a->size_bytes, size, sizeof(size));
            snprintf(table, sizeof(table), "%s.%s", a->table->schema, a->table->name);
            snprintf(saved, sizeof(saved), "%.1f ms", a->time_saved_ms);
            printf("%s%-*s  %-*s  %-6s  %10s  %14s\n", i == 0 ? "" : "\n", name_w, a->name, table_w,
                   table, proof_name(a->proof), size, saved);
            printf("  %s\n", a->up_sql);
            if (a->proof == ADVICE_PROOF_SAMPLE)
                printf("  proof: a real index on a sample of %.0f rows (of %.0f), costs scaled "
                       "to the table\n",
                       a->sample_rows, a->table->reltuples);
            for (int h = 0; h < a->n_helps; h++) {
                const advice_help_t *help = &a->helps[h];
                const advice_query_t *q = &s->queries[help->query];
                char text[QUERY_WIDTH + 1];
                one_line(q->text, text, QUERY_WIDTH);
                printf("  %8.0f calls  cost %10.2f -> %10.2f (-%.1f %%)  %s\n", q->wq->calls,
                       help->before, help->after,
                       100.0 * (help->before - help->after) / help->before, text);
            }
        }
    }
    if (s->n_hints > 0) {
        printf("\nHints for queries no index fixes:\n");
        for (int i = 0; i < s->n_hints; i++) {
            const advice_hint_t *h = &s->hints[i];
            char text[QUERY_WIDTH + 1];
            one_line(s->queries[h->query].text, text, QUERY_WIDTH);
            printf("  - %s\n    query: %s\n", h->message, text);
        }
    }
    if (s->n_notes > 0) {
        printf("\nNotes:\n");
        for (int i = 0; i < s->n_notes; i++)
            printf("  - %s\n", s->notes[i]);
    }
}

/* Sets key to value in obj, taking the reference; false when either is missing. */
static bool set(json_t *obj, const char *key, json_t *value)
{
    return value != NULL && json_object_set_new(obj, key, value) == 0;
}

static json_t *query_json(const advice_query_t *q)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    bool ok =
        set(o, "queryid", json_integer((json_int_t)q->wq->queryid)) &&
        set(o, "query", jsontext_string(q->text)) && set(o, "sampled", json_boolean(q->sampled)) &&
        set(o, "calls", json_real(q->wq->calls)) && set(o, "total_ms", json_real(q->wq->total_ms));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *advice_json(const advice_set_t *s, const advice_t *a, const char *version)
{
    json_t *o = json_object(), *queries = json_array();
    if (o == NULL || queries == NULL) {
        json_decref(o);
        json_decref(queries);
        return NULL;
    }
    bool ok = set(o, "name", jsontext_string(a->name)) &&
              set(o, "schema", jsontext_string(a->table->schema)) &&
              set(o, "table", jsontext_string(a->table->name)) &&
              set(o, "method", json_string(a->cand.method == CAND_GIN ? "gin" : "btree")) &&
              set(o, "definition", jsontext_string(a->definition)) &&
              set(o, "up", jsontext_string(a->up_sql)) &&
              set(o, "down", jsontext_string(a->down_sql)) &&
              set(o, "proof", json_string(proof_name(a->proof))) &&
              set(o, "estimated_size_bytes", json_real(a->size_bytes)) &&
              set(o, "time_saved_ms", json_real(a->time_saved_ms)) &&
              set(o, "benefit", json_real(a->benefit)) && set(o, "charge", json_real(a->charge));
    if (ok && a->proof == ADVICE_PROOF_SAMPLE)
        ok = set(o, "sample_rows", json_real(a->sample_rows)) &&
             set(o, "table_rows", json_real(a->table->reltuples));
    if (ok && version != NULL)
        ok = set(o, "migration_version", json_string(version));
    for (int h = 0; ok && h < a->n_helps; h++) {
        const advice_help_t *help = &a->helps[h];
        json_t *q = query_json(&s->queries[help->query]);
        ok = q != NULL && set(q, "cost_before", json_real(help->before)) &&
             set(q, "cost_after", json_real(help->after)) &&
             set(q, "improvement_pct",
                 json_real(100.0 * (help->before - help->after) / help->before)) &&
             json_array_append_new(queries, q) == 0;
        if (!ok && q != NULL)
            json_decref(q);
    }
    if (!ok || !set(o, "queries", queries)) {
        if (ok)
            queries = NULL;
        json_decref(queries);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A new container put in root under key; borrowed from root. NULL when memory runs out. */
static json_t *member(json_t *root, const char *key, json_t *container)
{
    return set(root, key, container) ? container : NULL;
}

void advice_print_json(const advice_set_t *s, const char *const *versions)
{
    const workload_t *w = s->workload;
    json_t *root = json_object();
    if (root == NULL) {
        fprintf(stderr, "pgturbo advise: out of memory writing JSON\n");
        return;
    }
    bool ok = set(root, "database", jsontext_string(s->database)) &&
              set(root, "source", json_string(s->source)) &&
              set(root, "min_improvement", json_integer(s->min_improvement)) &&
              set(root, "candidates_proven", json_integer(s->n_candidates));
    json_t *workload = ok ? member(root, "workload", json_object()) : NULL;
    json_t *advice = workload != NULL ? member(root, "advice", json_array()) : NULL;
    json_t *hints = advice != NULL ? member(root, "hints", json_array()) : NULL;
    json_t *notes = hints != NULL ? member(root, "notes", json_array()) : NULL;
    ok = notes != NULL && set(workload, "queries", json_integer(s->n_queries)) &&
         set(workload, "sampled", json_integer(s->n_sampled)) &&
         set(workload, "hidden", json_integer(w->n_hidden)) &&
         set(workload, "calls", json_real(s->total_calls)) &&
         set(workload, "total_ms", json_real(s->total_ms));
    for (int i = 0; ok && i < s->n_advice; i++) {
        json_t *a = advice_json(s, &s->advice[i], versions == NULL ? NULL : versions[i]);
        ok = a != NULL && json_array_append_new(advice, a) == 0;
    }
    for (int i = 0; ok && i < s->n_hints; i++) {
        const advice_hint_t *h = &s->hints[i];
        json_t *q = query_json(&s->queries[h->query]);
        ok = q != NULL && json_array_append_new(hints, q) == 0 &&
             set(q, "kind", json_string(advice_hint_kind_name(h->kind))) &&
             set(q, "message", jsontext_string(h->message));
    }
    for (int i = 0; ok && i < s->n_notes; i++)
        ok = json_array_append_new(notes, jsontext_string(s->notes[i])) == 0;
    char *text = ok ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    else
        fprintf(stderr, "pgturbo advise: out of memory writing JSON\n");
    free(text);
    json_decref(root);
}
