/*
 * health.h
 *    The judgments behind pgturbo report, as pure functions over numbers the catalog gave:
 *    the health score, the cache-hit assessment, which indexes duplicate or are covered by
 *    another, the catalog-statistics bloat estimate, when a table needs VACUUM or ANALYZE,
 *    how used a sequence is, and sizes for people. No I/O and no libpq, so every rule is
 *    unit-tested directly (tests/unit/test_report.c); report.c gathers the inputs.
 *
 * The health score (0-100) starts at 100 and subtracts one penalty per factor, each capped,
 * then is rounded and clamped to 0..100:
 *
 *   factor            penalty                                                         cap
 *   cache_hit_ratio   (99 - hit %) x 2.5 when below 99 % (heap and index blocks)       25
 *   connections       (used % - 70) x 2/3 when above 70 % of max_connections           20
 *   slow_queries      slow / total queries x 400 (daemon figures only)                 20
 *   bloat             wasted bytes / bytes of tables and indexes x 30                  15
 *   indexes           unused-index bytes / index bytes x 20, plus 2 per duplicate,     10
 *                     redundant or invalid index
 *   maintenance       2 per table needing VACUUM, 1 per table needing ANALYZE          10
 *   sessions          5 per long-running query, idle-in-transaction session or          15
 *                     session waiting for a lock
 *   schema            2 per foreign key without an index, 10 per sequence >= 90 %      15
 *                     used, 3 per sequence >= 75 % used
 *   replication       5 per replica lagging by the warning threshold or more           10
 *
 * A factor whose input is unknown costs nothing: the cache hit ratio before 10,000 blocks were
 * read or hit (report.c), the slow-query ratio without the daemon's figures.
 */
#ifndef PGTURBO_HEALTH_H
#define PGTURBO_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

/* How much a finding matters, in increasing order. */
typedef enum health_severity {
    HEALTH_SUCCESS,  /* nothing to do */
    HEALTH_INFO,     /* worth knowing; small or uncertain */
    HEALTH_WARNING,  /* costs performance or space now; fix when convenient */
    HEALTH_CRITICAL, /* an outage or a severe slowdown is near; fix now */
} health_severity_t;

/* "success", "info", "warning" or "critical". */
const char *health_severity_name(health_severity_t s);

/* "excellent" (>= 99 %), "good" (>= 95 %), "fair" (>= 90 %) or "poor"; "no data" for a
 * negative percent (no block read or hit yet). */
const char *health_cache_assessment(double percent);

/* Hit percent of hit and read block counts; -1 when both are 0. */
double health_hit_percent(double hit, double read);

/* ---- the score ---- */

/* What the score is computed from. Negative ratios and percents mean unknown. */
typedef struct health_inputs {
    double cache_hit_percent;  /* heap and index blocks together */
    double connection_percent; /* client backends / max_connections x 100 */
    double slow_query_ratio;   /* slow / total queries (daemon), 0..1 */
    double wasted_bytes;       /* estimated bloat of tables and indexes */
    double relation_bytes;     /* tables and indexes, all of them */
    double unused_index_bytes; /* indexes unused since the last stats reset */
    double index_bytes;        /* all indexes */
    int bad_indexes;           /* duplicate, redundant or invalid */
    int tables_needing_vacuum;
    int tables_needing_analyze;
    int problem_sessions; /* long-running, idle in transaction, waiting for a lock */
    int fk_without_index;
    int sequences_critical; /* >= 90 % used */
    int sequences_warning;  /* >= 75 % used */
    int lagging_replicas;
} health_inputs_t;

#define HEALTH_FACTORS 9

/* One factor's share of the score. */
typedef struct health_penalty {
    const char *factor; /* a static name, as in the table above */
    double penalty;     /* 0..max */
    double max;
} health_penalty_t;

typedef struct health_score {
    int score; /* 0..100 */
    health_penalty_t penalties[HEALTH_FACTORS];
} health_score_t;

/* Fills out from in with the formula above. */
void health_score(const health_inputs_t *in, health_score_t *out);

/* ---- indexes that duplicate or are covered by another ---- */

#define HEALTH_INDEX_MAX_KEYS 32 /* PostgreSQL's INDEX_MAX_KEYS */

/* One index, as pg_index describes it (see report.c for the query). */
typedef struct health_index {
    unsigned int table;                     /* indrelid */
    const char *am;                         /* access method name, "btree" ... */
    int natts;                              /* key and INCLUDE columns */
    int nkeys;                              /* key columns */
    long keys[HEALTH_INDEX_MAX_KEYS];       /* indkey: attribute numbers, 0 for expressions */
    long opclasses[HEALTH_INDEX_MAX_KEYS];  /* indclass, nkeys of them */
    long collations[HEALTH_INDEX_MAX_KEYS]; /* indcollation, nkeys of them */
    long options[HEALTH_INDEX_MAX_KEYS];    /* indoption (DESC, NULLS FIRST), nkeys of them */
    const char *exprs;                      /* pg_get_expr of indexprs, NULL when none */
    const char *pred;                       /* pg_get_expr of indpred, NULL when not partial */
    bool unique;
    bool constraint; /* backs a primary key, unique or exclusion constraint */
    bool valid;
} health_index_t;

/*
 * Parses an int2vector or oidvector as PostgreSQL prints it ("1 3 2") into out (at most max
 * numbers). Returns how many, or -1 when text is not such a vector or has more than max.
 */
int health_parse_vector(const char *text, long *out, int max);

/*
 * For each of the n indexes, which other one makes it unnecessary:
 *   - duplicate[i] = j: i and j have the same definition (table, method, columns, operator
 *     classes, collations, orderings, expressions, predicate, uniqueness); of each group of
 *     equal ones the first that backs a constraint, else the first, is kept and the others
 *     point at it;
 *   - covered[i] = j: i is a btree whose key columns are a leading prefix of j's (same
 *     operator classes, collations and orderings), with the same predicate, and i enforces
 *     nothing (not unique, no constraint), has no expressions and no INCLUDE columns; j is
 *     the widest such index that is valid and not itself a duplicate.
 * Both are -1 otherwise; an index that is a duplicate is never also covered. Invalid indexes
 * take no part (report.c reports them apart).
 */
void health_index_overlaps(const health_index_t *idx, int n, int *duplicate, int *covered);

/* ---- bloat from catalog statistics ---- */

/* A heap table as pg_class and pg_stats describe it. */
typedef struct health_table_stats {
    double pages;      /* relpages */
    double tuples;     /* reltuples; negative when never analyzed */
    int block_size;    /* block_size setting, usually 8192 */
    int fillfactor;    /* 10..100 */
    double data_width; /* sum over columns of (1 - null_frac) x avg_width */
    int natts;         /* columns */
    bool has_nulls;    /* some column has null_frac > 0 */
} health_table_stats_t;

/* A btree index as pg_class and pg_stats (of its table's columns) describe it. */
typedef struct health_btree_stats {
    double pages;  /* relpages, the metapage included */
    double tuples; /* reltuples */
    int block_size;
    int fillfactor;    /* leaf fillfactor, 90 by default */
    double data_width; /* sum of avg_width of its columns */
} health_btree_stats_t;

/*
 * Bytes the relation occupies beyond what its live rows need when packed to its fillfactor:
 * the usual catalog-statistics estimate (tuple header, MAXALIGN 8, line pointers, page
 * header; a btree's special space and metapage), 0 when it is not larger. TOAST is not
 * counted. Negative when the statistics are unusable (never analyzed).
 */
double health_table_bloat(const health_table_stats_t *t);
double health_btree_bloat(const health_btree_stats_t *b);

/* ---- maintenance ---- */

/* True when dead tuples are at least 1000 and at least 20 % of live + dead. */
bool health_needs_vacuum(double live, double dead);

/* True when a table of at least 1000 live rows was never analyzed, or when the rows changed
 * since the last ANALYZE are at least 1000 and at least 20 % of the live ones. */
bool health_needs_analyze(double live, double modified, bool analyzed);

/* ---- sequences ---- */

/*
 * Percent of a sequence's range used: for an ascending sequence (increment > 0) from min to
 * last of min..max, for a descending one from max down to last. column_max, when positive,
 * is the largest value the column the sequence fills can hold (32767 for smallint,
 * 2147483647 for integer) and narrows the range. 0 when the sequence was never used (last
 * is NULL: pass has_last false).
 */
double health_sequence_used_percent(long double last, bool has_last, long double min,
                                    long double max, long double increment, long double column_max);

/* ---- people ---- */

/* bytes as pg_size_pretty writes them, one decimal below 10: "812 bytes", "1.5 MB",
 * "245 MB", "3.2 GB". */
void health_format_bytes(double bytes, char *out, size_t len);

#endif /* PGTURBO_HEALTH_H */
