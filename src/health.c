/*
 * health.c
 *    The judgments behind pgturbo report: score, cache assessment, index overlaps, bloat
 *    estimate, maintenance and sequence rules; see health.h.
 */
#include "health.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXALIGN(x)        (ceil((x) / 8.0) * 8.0)
#define PAGE_HEADER        24.0 /* PageHeaderData */
#define LINE_POINTER       4.0  /* ItemIdData */
#define HEAP_TUPLE_HEADER  23.0 /* HeapTupleHeaderData up to t_bits */
#define INDEX_TUPLE_HEADER 8.0  /* IndexTupleData */
#define BTREE_SPECIAL      16.0 /* BTPageOpaqueData */

const char *health_severity_name(health_severity_t s)
{
    switch (s) {
    case HEALTH_SUCCESS:
        return "success";
    case HEALTH_INFO:
        return "info";
    case HEALTH_WARNING:
        return "warning";
    case HEALTH_CRITICAL:
        return "critical";
    }
    return "info";
}

const char *health_cache_assessment(double percent)
{
    if (percent < 0)
        return "no data";
    if (percent >= 99)
        return "excellent";
    if (percent >= 95)
        return "good";
    if (percent >= 90)
        return "fair";
    return "poor";
}

double health_hit_percent(double hit, double read)
{
    if (hit + read <= 0)
        return -1;
    return hit * 100.0 / (hit + read);
}

static double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

static void set_penalty(health_score_t *out, int i, const char *factor, double penalty, double max)
{
    out->penalties[i].factor = factor;
    out->penalties[i].penalty = clamp(penalty, 0, max);
    out->penalties[i].max = max;
}

void health_score(const health_inputs_t *in, health_score_t *out)
{
    double p;

    p = in->cache_hit_percent >= 0 ? (99 - in->cache_hit_percent) * 2.5 : 0;
    set_penalty(out, 0, "cache_hit_ratio", p, 25);

    p = in->connection_percent >= 0 ? (in->connection_percent - 70) * 20 / 30 : 0;
    set_penalty(out, 1, "connections", p, 20);

    p = in->slow_query_ratio >= 0 ? in->slow_query_ratio * 400 : 0;
    set_penalty(out, 2, "slow_queries", p, 20);

    p = in->relation_bytes > 0 ? in->wasted_bytes / in->relation_bytes * 30 : 0;
    set_penalty(out, 3, "bloat", p, 15);

    p = in->index_bytes > 0 ? in->unused_index_bytes / in->index_bytes * 20 : 0;
    set_penalty(out, 4, "indexes", p + 2.0 * in->bad_indexes, 10);

    set_penalty(out, 5, "maintenance",
                2.0 * in->tables_needing_vacuum + 1.0 * in->tables_needing_analyze, 10);

    set_penalty(out, 6, "sessions", 5.0 * in->problem_sessions, 15);

    set_penalty(out, 7, "schema",
                2.0 * in->fk_without_index + 10.0 * in->sequences_critical +
                    3.0 * in->sequences_warning,
                15);

    set_penalty(out, 8, "replication", 5.0 * in->lagging_replicas, 10);

    double score = 100;
    for (int i = 0; i < HEALTH_FACTORS; i++)
        score -= out->penalties[i].penalty;
    out->score = (int)lround(clamp(score, 0, 100));
}

int health_parse_vector(const char *text, long *out, int max)
{
    int n = 0;
    const char *p = text;
    while (*p != '\0') {
        if (*p == ' ') {
            p++;
            continue;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end != ' ' && *end != '\0') || n == max)
            return -1;
        out[n++] = v;
        p = end;
    }
    return n;
}

static bool same_text(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool same_definition(const health_index_t *a, const health_index_t *b)
{
    if (a->table != b->table || strcmp(a->am, b->am) != 0 || a->natts != b->natts ||
        a->nkeys != b->nkeys || a->unique != b->unique)
        return false;
    for (int k = 0; k < a->natts; k++)
        if (a->keys[k] != b->keys[k])
            return false;
    for (int k = 0; k < a->nkeys; k++)
        if (a->opclasses[k] != b->opclasses[k] || a->collations[k] != b->collations[k] ||
            a->options[k] != b->options[k])
            return false;
    return same_text(a->exprs, b->exprs) && same_text(a->pred, b->pred);
}

/* Whether a's key columns are a leading prefix of b's, column for column alike. */
static bool is_prefix(const health_index_t *a, const health_index_t *b)
{
    if (a->table != b->table || strcmp(a->am, b->am) != 0 || a->nkeys > b->nkeys)
        return false;
    for (int k = 0; k < a->nkeys; k++)
        if (a->keys[k] == 0 || a->keys[k] != b->keys[k] || a->opclasses[k] != b->opclasses[k] ||
            a->collations[k] != b->collations[k] || a->options[k] != b->options[k])
            return false;
    return same_text(a->pred, b->pred);
}

void health_index_overlaps(const health_index_t *idx, int n, int *duplicate, int *covered)
{
    for (int i = 0; i < n; i++)
        duplicate[i] = covered[i] = -1;

    /* Groups of equal definitions: the keeper is the first constraint, else the first. */
    for (int i = 0; i < n; i++) {
        if (!idx[i].valid || duplicate[i] != -1)
            continue;
        int keeper = i;
        for (int j = i + 1; j < n && !idx[keeper].constraint; j++)
            if (idx[j].valid && idx[j].constraint && same_definition(&idx[i], &idx[j]))
                keeper = j;
        for (int j = i; j < n; j++)
            if (j != keeper && idx[j].valid && duplicate[j] == -1 &&
                same_definition(&idx[keeper], &idx[j]))
                duplicate[j] = keeper;
    }

    for (int i = 0; i < n; i++) {
        const health_index_t *a = &idx[i];
        if (!a->valid || duplicate[i] != -1 || a->unique || a->constraint || a->exprs != NULL ||
            a->natts != a->nkeys || strcmp(a->am, "btree") != 0)
            continue;
        int best = -1;
        for (int j = 0; j < n; j++) {
            const health_index_t *b = &idx[j];
            if (j == i || !b->valid || duplicate[j] != -1 || !is_prefix(a, b))
                continue;
            /* Equal keys without uniqueness would be a duplicate; an equal unique index
             * covers a plain one. */
            if (b->nkeys == a->nkeys && !b->unique)
                continue;
            if (best == -1 || b->nkeys > idx[best].nkeys)
                best = j;
        }
        covered[i] = best;
    }
}

double health_table_bloat(const health_table_stats_t *t)
{
    if (t->tuples < 0 || t->block_size <= 0)
        return -1;
    double bs = t->block_size;
    double header = HEAP_TUPLE_HEADER + (t->has_nulls ? ceil(t->natts / 8.0) : 0);
    double tuple = MAXALIGN(header) + MAXALIGN(t->data_width) + LINE_POINTER;
    double room = (bs - PAGE_HEADER) - bs * (100 - t->fillfactor) / 100.0;
    double per_page = floor(room / tuple);
    if (per_page < 1)
        per_page = 1;
    double expected = ceil(t->tuples / per_page);
    double extra = t->pages - expected;
    return extra > 0 ? extra * bs : 0;
}

double health_btree_bloat(const health_btree_stats_t *b)
{
    if (b->tuples < 0 || b->block_size <= 0)
        return -1;
    double bs = b->block_size;
    double tuple = MAXALIGN(INDEX_TUPLE_HEADER + b->data_width) + LINE_POINTER;
    double room = bs - PAGE_HEADER - BTREE_SPECIAL;
    double leaf_per_page = floor(room * b->fillfactor / 100.0 / tuple);
    double inner_per_page = floor(room / tuple);
    if (leaf_per_page < 1)
        leaf_per_page = 1;
    if (inner_per_page < 2)
        inner_per_page = 2;
    double leaves = ceil(b->tuples / leaf_per_page);
    /* Inner levels: each holds one downlink per page of the level below. */
    double inner = 0;
    for (double level = leaves; level > 1;) {
        level = ceil(level / inner_per_page);
        inner += level;
    }
    double expected = 1 /* metapage */ + (leaves > 0 ? leaves : 1) + inner;
    double extra = b->pages - expected;
    return extra > 0 ? extra * bs : 0;
}

bool health_needs_vacuum(double live, double dead)
{
    return dead >= 1000 && dead >= 0.2 * (live + dead);
}

bool health_needs_analyze(double live, double modified, bool analyzed)
{
    if (!analyzed)
        return live >= 1000;
    return modified >= 1000 && modified >= 0.2 * live;
}

double health_sequence_used_percent(long double last, bool has_last, long double min,
                                    long double max, long double increment, long double column_max)
{
    if (!has_last)
        return 0;
    long double used, range;
    if (increment > 0) {
        if (column_max > 0 && column_max < max)
            max = column_max;
        used = last - min;
        range = max - min;
    } else {
        if (column_max > 0 && -column_max - 1 > min)
            min = -column_max - 1;
        used = max - last;
        range = max - min;
    }
    if (range <= 0)
        return 100;
    return clamp((double)(used * 100 / range), 0, 100);
}

void health_format_bytes(double bytes, char *out, size_t len)
{
    static const char *const units[] = {"bytes", "kB", "MB", "GB", "TB", "PB"};
    int u = 0;
    double v = bytes < 0 ? 0 : bytes;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%.0f bytes", v);
    else if (v < 10 && lround(v * 10) < 100)
        snprintf(out, len, "%.1f %s", v, units[u]);
    else
        snprintf(out, len, "%.0f %s", v, units[u]);
}
