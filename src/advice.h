/*
 * advice.h
 *    The result of an advise run: the workload queries it looked at, the indexes it advises
 *    with their proof and the queries each helps, and hints for the queries no index fixes.
 *    advise.c makes it; advice_print.c prints it (table or JSON); migrations.c writes and
 *    applies its migrations.
 */
#ifndef PGTURBO_ADVICE_H
#define PGTURBO_ADVICE_H

#include "candidates.h"
#include "tableinfo.h"
#include "workload.h"

#include <stdbool.h>

typedef enum advice_proof {
    ADVICE_PROOF_HYPOPG, /* a hypothetical index (HypoPG) on the real table */
    ADVICE_PROOF_SAMPLE, /* a real index on a sampled temporary copy, costs scaled to the
                            real table's */
} advice_proof_t;

/* A workload query as advise saw it. */
typedef struct advice_query {
    const workload_query_t *wq;
    const char *text; /* the text analyzed and costed: the sample when there is one */
    bool sampled;
    bool frequent; /* ran at least ADVISE_FREQUENT_CALLS times, or took at least
                      ADVISE_FREQUENT_SHARE of the workload's time */
    bool costed;   /* the planner could cost it */
    double cost;   /* plan cost with no advised index */
    bool helped;   /* an advised index helps it */
} advice_query_t;

/* One query an advised index helps, with its cost before (with the indexes advised before
 * this one) and after. */
typedef struct advice_help {
    int query; /* index into advice_set_t.queries */
    double before, after;
} advice_help_t;

typedef struct advice {
    char name[CAND_NAME_LEN];
    const table_info_t *table;
    candidate_t cand;
    char *definition; /* the part of CREATE INDEX after the table, quoted */
    char *up_sql;     /* CREATE INDEX CONCURRENTLY IF NOT EXISTS ... */
    char *down_sql;   /* DROP INDEX CONCURRENTLY IF EXISTS ... */
    advice_proof_t proof;
    double sample_rows;   /* ADVICE_PROOF_SAMPLE: rows of the copy */
    double size_bytes;    /* estimated */
    double time_saved_ms; /* of the workload's time, were cost and time proportional */
    double benefit;       /* calls x cost saved, in planner cost units */
    double charge;        /* size and write maintenance, in planner cost units */
    advice_help_t *helps;
    int n_helps;
} advice_t;

typedef struct advice_hint {
    int query; /* index into advice_set_t.queries */
    cand_hint_kind_t kind;
    char message[512];
} advice_hint_t;

typedef struct advice_set {
    const char *database;
    const char *source; /* "pg_stat_statements" or "daemon" */
    const workload_t *workload;
    int min_improvement;
    advice_query_t *queries; /* the workload's queries on tables advise may index */
    int n_queries;
    int n_sampled;      /* of them, analyzed from a sampled text */
    double total_calls; /* of them */
    double total_ms;
    advice_t *advice; /* by time saved, most first */
    int n_advice;
    advice_hint_t *hints;
    int n_hints;
    char **notes; /* things the user should know about this run, one sentence each */
    int n_notes;
    int n_candidates; /* candidates proven */
} advice_set_t;

/* Frees what s holds. */
void advice_set_free(advice_set_t *s);

/* Prints s as the readable table, or as JSON (with the migrations written, when any:
 * versions[i] for s->advice[i], NULL where none was written). */
void advice_print_text(const advice_set_t *s);
void advice_print_json(const advice_set_t *s, const char *const *versions);

/* The name of a hint kind in JSON ("select_star" ...). */
const char *advice_hint_kind_name(cand_hint_kind_t kind);

#endif /* PGTURBO_ADVICE_H */
